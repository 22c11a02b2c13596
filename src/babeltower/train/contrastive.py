"""Contrastive vision-text training system (CLIP / InfoNCE) for LightningCLI.

Loss: symmetric InfoNCE over cosine similarities scaled by a learnable temperature
(Radford et al. 2021). Under DDP/FSDP, features are all-gathered *with gradients*
(``torch.distributed.nn.functional.all_gather``) and each rank computes the loss of
its own rows against the global batch (open_clip's ``local_loss=True,
gather_with_grad=True``), which is exact and memory-light.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Optional

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F

from babeltower.modalities.image import check_image_size
from babeltower.models.clip import CLIPConfig, CLIPModel
from babeltower.models.text_encoder import TextEncoderConfig
from babeltower.models.vision import VisionConfig
from babeltower.train.optim import adamw_with_cosine, param_groups


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gathers (B, D) rows from every rank into (world*B, D), keeping gradients."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of local rows against the global (gathered) batch.

    Args:
        image_features: (B, D) L2-normalised local image features.
        text_features: (B, D) L2-normalised local text features.
        scale: () inverse temperature.
    """
    all_image = gather_with_grad(image_features)  # (W*B, D)
    all_text = gather_with_grad(text_features)  # (W*B, D)
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    b = image_features.shape[0]
    labels = torch.arange(b, device=image_features.device) + rank * b
    logits_per_image = scale * image_features @ all_text.T  # (B, W*B)
    logits_per_text = scale * text_features @ all_image.T  # (B, W*B)
    return 0.5 * (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels))


def check_data_tokenizer(trainer, text_encoder) -> None:
    """Fails fast when the DataModule tokenises with another vocabulary than the text encoder's."""
    from babeltower.models.text_encoder import resolve_tokenizer

    data_tokenizer = getattr(getattr(trainer, "datamodule", None), "tokenizer", None)
    if data_tokenizer is None:
        return
    model_tokenizer = resolve_tokenizer(text_encoder.config)
    if data_tokenizer.get_vocab() != model_tokenizer.get_vocab():
        raise ValueError(
            f"the data's tokenizer ({len(data_tokenizer)} tokens) is not the text encoder's "
            f"({len(model_tokenizer)} tokens, from {text_encoder.config.tokenizer or 'the packaged default'}): "
            "build the DataModule with the model's tokenizer folder (babeltower fit links data.init_args.tokenizer "
            "to the model's)"
        )


def text_encoder_folder(init_from: str) -> str:
    """The text-encoder folder of ``init_from``: its ``text_encoder/`` (a hub) or itself."""
    from pathlib import Path

    folder = Path(init_from)
    return str(folder / "text_encoder") if (folder / "text_encoder").is_dir() else str(folder)


def linked_tokenizer(init_args: dict, text: str = "text", init_from: Optional[str] = "init_from") -> tuple[str, Any]:
    """``(model field, tokenizer)`` of the text encoder that a system's init args build.

    For ``linked_data_args``: the tokenizer :func:`~babeltower.models.text_encoder.resolve_tokenizer`
    loads — the ``init_from`` folder's, else ``text.tokenizer``, else ``text.pretrained``'s,
    else None (the packaged default).

    Args:
        init_args: the system's init args (a dict; config dataclasses as dicts).
        text: the key of its TextEncoderConfig.
        init_from: the key of its "start the text encoder from this folder" argument, if any.
    """
    if init_from and init_args.get(init_from):
        return init_from, text_encoder_folder(init_args[init_from])
    config = init_args.get(text) or {}
    if config.get("tokenizer"):
        return f"{text}.tokenizer", config["tokenizer"]
    if config.get("pretrained"):
        return f"{text}.pretrained", config["pretrained"]
    return f"{text}.tokenizer", None


def text_config_from(init_from: str, text: TextEncoderConfig) -> TextEncoderConfig:
    """The text-encoder config of a saved (e.g. distilled) encoder, keeping run-time fields of ``text``."""
    from pathlib import Path

    folder = Path(text_encoder_folder(init_from))
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"init_from={init_from!r}: expected a babeltower hub folder with text_encoder/ or a text encoder "
            f"folder with config.json; {folder / 'config.json'} is missing"
        )
    return TextEncoderConfig(
        pretrained=str(folder),
        tokenizer=str(folder),
        pooling=text.pooling,
        attn_backend=text.attn_backend,
        gradient_checkpointing=text.gradient_checkpointing,
        # None: the folder's own values (the imported e5 folder: its prefixes, a frozen backbone)
        query_prefix=text.query_prefix,
        passage_prefix=text.passage_prefix,
        trainable_layers=text.trainable_layers,
        cache_size=text.cache_size,
        frozen_autocast=text.frozen_autocast,
    )


class ContrastiveSystem(L.LightningModule):
    """Trains :class:`~babeltower.models.clip.CLIPModel` on image-text batches.

    Args:
        vision: vision tower architecture.
        text: shared text encoder (``pretrained`` to start from real weights).
        embed_dim: joint embedding width.
        init_from: hub folder or text-encoder folder to initialise the text encoder from
            (e.g. a distilled multilingual student, ``babeltower export`` of a distill run);
            its architecture and tokenizer come from the folder (of ``text`` only pooling,
            attn_backend and gradient_checkpointing apply). None trains from scratch.
        freeze_text: keep the text encoder's backbone frozen (LiT-style locked text).
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay (not applied to biases, norms, logit_scale).
        warmup_steps: linear warm-up steps before cosine decay.
        min_lr_ratio: final learning rate as a fraction of the peak.
        betas: AdamW betas (CLIP uses (0.9, 0.98)).
    """

    def __init__(
        self,
        vision: VisionConfig = VisionConfig(),
        text: TextEncoderConfig = TextEncoderConfig(),
        embed_dim: int = 32,
        init_from: Optional[str] = None,
        freeze_text: bool = False,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.1,
        warmup_steps: int = 50,
        min_lr_ratio: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.98),
    ):
        super().__init__()
        vision = vision if isinstance(vision, VisionConfig) else VisionConfig(**vision)
        text = text if isinstance(text, TextEncoderConfig) else TextEncoderConfig(**text)
        if init_from:
            text = text_config_from(init_from, text)
        self.save_hyperparameters()
        # Plain dicts in the checkpoint, so it loads with torch.load(weights_only=True)
        # (LightningCLI's --ckpt_path parsing does); LightningCLI's own `_class_path` stays.
        self.hparams["vision"], self.hparams["text"] = asdict(vision), asdict(text)
        self.hparams["betas"] = list(betas)
        self.model = CLIPModel(CLIPConfig(vision=vision, text=text, embed_dim=embed_dim))
        if init_from:
            from babeltower.models.hub import load_text_encoder_weights

            load_text_encoder_weights(self.model.text, init_from)
        if freeze_text:
            self.model.text.backbone.requires_grad_(False)

    @staticmethod
    def linked_data_args(init_args: dict) -> dict[str, tuple[str, Any]]:
        """DataModule init args these init args fix: ``{data field: (model field, value)}``.

        ``babeltower fit`` links them (:mod:`babeltower.train.launch`): the data tokenizes
        with the text encoder's tokenizer and resizes images to the vision tower's side.
        """
        vision = init_args.get("vision") or {}
        return {
            "tokenizer": linked_tokenizer(init_args),
            "image_size": ("vision.image_size", vision.get("image_size", VisionConfig.image_size)),
        }

    def forward(self, pixel_values, input_ids, attention_mask):
        return self.model(pixel_values, input_ids, attention_mask)

    def on_fit_start(self):
        check_data_tokenizer(self.trainer, self.model.text)

    def _shared_step(self, batch):
        # babeltower fit links data.init_args.image_size to the tower's; a DataModule built by
        # hand can still differ, and is named here rather than left to a shape error inside
        # the patch embedding
        check_image_size(batch["pixel_values"], self.model.config.vision.image_size, where="data.init_args.image_size")
        image_features, text_features, scale = self(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
        loss = clip_loss(image_features, text_features, scale)
        with torch.no_grad():
            sim = image_features @ text_features.T  # (B, B), local batch
            target = torch.arange(sim.shape[0], device=sim.device)
            i2t = (sim.argmax(dim=1) == target).float().mean()
            t2i = (sim.argmax(dim=0) == target).float().mean()
        return loss, scale, i2t, t2i

    def training_step(self, batch, batch_idx):
        loss, scale, i2t, t2i = self._shared_step(batch)
        bs = batch["pixel_values"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/scale", scale, batch_size=bs)
        self.log("train/i2t_acc", i2t, batch_size=bs)
        self.log("train/t2i_acc", t2i, prog_bar=True, batch_size=bs)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, _, i2t, t2i = self._shared_step(batch)
        bs = batch["pixel_values"].shape[0]
        self.log("val/loss", loss, prog_bar=True, batch_size=bs, sync_dist=True)
        self.log("val/i2t_acc", i2t, batch_size=bs, sync_dist=True)
        self.log("val/t2i_acc", t2i, prog_bar=True, batch_size=bs, sync_dist=True)

    def configure_optimizers(self):
        return adamw_with_cosine(self, param_groups(self.model, self.hparams.weight_decay), eps=1e-6)

    def export_hub(self, folder, tokenizer=None, eval_report: Optional[dict] = None, overwrite: bool = False):
        """Writes a hub folder (see :func:`babeltower.models.hub.save_clip`)."""
        from babeltower.models.hub import save_clip

        return save_clip(self.model, folder, tokenizer=tokenizer, eval_report=eval_report, overwrite=overwrite)
