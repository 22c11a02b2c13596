"""CTC training system of the text-line recogniser (:class:`~babeltower.models.ocr.OCRModel`).

Loss: CTC between the model's per-frame log-probabilities and each label's characters in
*visual* order (:meth:`OCRModel.encode_text`), mean over target characters
(``zero_infinity``: a label with more characters than the line has frames gives no
gradient instead of an infinite loss; such lines are counted in ``train/too_long``).
Characters outside the model's character set are dropped from the target and counted
(``train/unknown_chars``). Validation reports CER (jiwer's definition) and exact line
accuracy on greedy transcripts in logical order.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Optional

import lightning as L
import torch
import torch.distributed as dist

from babeltower.models.ocr import OCRConfig, OCRModel
from babeltower.train.asr import ctc_loss
from babeltower.train.optim import adamw_with_cosine, param_groups


def resolve_charset(config: OCRConfig) -> OCRConfig:
    """``config`` with an empty ``charset`` filled from the synthesiser's languages."""
    if config.charset:
        return config
    from babeltower.datasets.synthetic.ocr import language_charset

    return replace(config, charset=language_charset(tuple(config.languages)))


class OCRSystem(L.LightningModule):
    """Trains :class:`~babeltower.models.ocr.OCRModel` with CTC.

    Args:
        ocr: Recogniser architecture (an empty ``charset`` is filled from ``languages``).
        learning_rate: Peak AdamW learning rate.
        weight_decay: AdamW weight decay (not on biases, norms).
        warmup_steps: Linear warm-up steps before cosine decay.
        min_lr_ratio: Final learning rate as a fraction of the peak.
    """

    def __init__(
        self,
        ocr: OCRConfig = OCRConfig(),
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-2,
        warmup_steps: int = 200,
        min_lr_ratio: float = 0.02,
    ):
        super().__init__()
        ocr = ocr if isinstance(ocr, OCRConfig) else OCRConfig(**ocr)
        self.model = OCRModel(resolve_charset(ocr))
        self.save_hyperparameters()
        # Plain types in the checkpoint (loads with weights_only=True); the stored config is the
        # resolved one (its charset) the weights belong to.
        self.hparams["ocr"] = asdict(self.model.config)
        self._val: list[tuple[str, str]] = []

    def forward(self, images: torch.Tensor, widths: torch.Tensor):
        """Images (B, 1, H, W) + widths (B,) -> (log_probs (B, T, V+1), out_lengths (B,))."""
        return self.model(images, widths)

    @staticmethod
    def linked_data_args(init_args: dict) -> dict[str, tuple[str, Any]]:
        """DataModule init args these init args fix: ``{data field: (model field, value)}``.

        ``babeltower fit`` links them (:mod:`babeltower.train.launch`): lines are scaled to
        the recognizer's height and cut at its widest line.
        """
        ocr = init_args.get("ocr") or {}
        return {field: (f"ocr.{field}", ocr.get(field, getattr(OCRConfig, field))) for field in ("image_height", "max_width")}

    def on_fit_start(self):
        # babeltower fit links these; a DataModule built by hand can still differ
        data = getattr(self.trainer, "datamodule", None)
        config = self.model.config
        for field in ("image_height", "max_width"):
            value = getattr(data, field, None)
            if value is not None and value != getattr(config, field):
                raise ValueError(
                    f"data.init_args.{field}={value} differs from model.init_args.ocr.{field}={getattr(config, field)}; "
                    "set them equal (the model reads lines at the size it was trained on)"
                )

    def _targets(self, texts: list[str]):
        encoded = [self.model.encode_text(text) for text in texts]
        lengths = torch.tensor([len(ids) for ids, _ in encoded], dtype=torch.long)
        targets = torch.full((len(texts), max(1, int(lengths.max()))), -100, dtype=torch.long)
        for row, (ids, _) in enumerate(encoded):
            targets[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        unknown = sum(n for _, n in encoded)
        return targets.to(self.device), lengths.to(self.device), unknown

    def _shared_step(self, batch):
        log_probs, out_lengths = self(batch["images"], batch["widths"])
        targets, target_lengths, unknown = self._targets(batch["text"])
        loss = ctc_loss(log_probs, out_lengths, targets, target_lengths, self.model.blank_id)
        return loss, log_probs, out_lengths, target_lengths, unknown

    def training_step(self, batch, batch_idx):
        loss, _, out_lengths, target_lengths, unknown = self._shared_step(batch)
        bs = batch["images"].shape[0]
        self.log("train/ctc", loss, prog_bar=True, batch_size=bs)
        self.log("train/unknown_chars", float(unknown), reduce_fx="sum", batch_size=bs)
        self.log("train/too_long", (target_lengths > out_lengths).sum().float(), reduce_fx="sum", batch_size=bs)
        return loss

    def validation_step(self, batch, batch_idx):
        from babeltower.models.asr import greedy_decode

        loss, log_probs, out_lengths, _, _ = self._shared_step(batch)
        self.log("val/ctc", loss, prog_bar=True, batch_size=batch["images"].shape[0], sync_dist=True)
        hyps = [self.model.decode_ids(ids) for ids in greedy_decode(log_probs, out_lengths, blank=self.model.blank_id)]
        self._val.extend(zip(batch["text"], hyps))

    def on_validation_epoch_start(self):
        self._val = []

    def on_validation_epoch_end(self):
        from babeltower.eval.asr_metrics import cer

        pairs = self._val
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, pairs)  # corpus CER pools every rank's lines
            pairs = [p for part in gathered for p in part]
        if pairs:
            refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
            self.log("val/cer", cer(refs, hyps), prog_bar=True)
            self.log("val/line_accuracy", sum(r == h for r, h in pairs) / len(pairs))
        self._val = []

    def configure_optimizers(self):
        return adamw_with_cosine(self, param_groups(self.model, self.hparams.weight_decay), betas=(0.9, 0.98), eps=1e-6)

    def export_hub(self, folder, eval_report: Optional[dict] = None, overwrite: bool = False):
        """Writes a hub folder: ``model_index.json``, ``ocr/`` (OCRModel.save_pretrained) and a
        README model card. Load with ``OCRModel.from_pretrained(folder)``."""
        import json

        from babeltower import __version__
        from babeltower.models.hub import MODEL_INDEX, model_card, prepare_output_folder

        folder = prepare_output_folder(folder, overwrite)
        self.model.save_pretrained(folder / "ocr")
        index = {"_class_name": "OCRModel", "_babeltower_version": __version__, "task": "ocr", "ocr": ["babeltower", "OCRModel"]}
        (folder / MODEL_INDEX).write_text(json.dumps(index, indent=2))
        config = self.model.config
        extra = (
            f"CTC text-line recogniser: conv stem + {config.num_layers} Transformer layers, d_model {config.d_model}, "
            f"lines scaled to {config.image_height} px high, {len(config.charset)} characters + blank. "
            "Transcripts are in logical (reading) order, also for Arabic lines with digits and Latin words.\n"
        )
        card = model_card(
            "babeltower multilingual text-line OCR",
            sorted((eval_report or {}).get("per_language", {}) or config.languages),
            (eval_report or {}).get("markdown"),
            extra=extra,
            usage="Load with `babeltower.models.ocr.OCRModel.from_pretrained(path)` and call `.read([PIL images])`, "
                  "or run `babeltower ocr PATH IMAGE...`; ",
            tag="image-to-text",
            subfolder_note="the `ocr/` subfolder holds config.json and model.safetensors.",
        )
        (folder / "README.md").write_text(card)
        return folder
