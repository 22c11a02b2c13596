"""VQA training system for LightningCLI: both answer heads of :class:`~babeltower.models.vqa.VQAModel`.

Losses, summed:

- ``score``: cross-entropy over the candidate answers of the question's language (every
  vocabulary answer of that language, encoded through the shared text encoder each
  step), target the canonical answer. This is what lets the model choose among
  multiple-choice options it has never seen as classes.
- ``classify``: soft-target cross-entropy over the vocabulary answers of the question's
  language, targets VQAv2's ``min(1, #annotators who gave it / 3)`` normalised to a
  distribution (the soft scores of Teney et al. 2018, used as a distribution).

``init_from`` starts vision tower and text encoder from a contrastive hub folder
(``babeltower export`` / the main job's ``contrastive*/hub``), strictly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import lightning as L
import torch
import torch.nn.functional as F

from babeltower.modalities.image import check_image_size
from babeltower.models.text_encoder import TextEncoderConfig
from babeltower.models.vision import VisionConfig
from babeltower.models.vqa import VQAConfig, VQAModel
from babeltower.train.optim import adamw_with_cosine, param_groups


def configs_from_hub(init_from: str, vision: VisionConfig, text: TextEncoderConfig) -> tuple[VisionConfig, TextEncoderConfig]:
    """Vision and text configs of a contrastive hub folder, keeping run-time fields of ours."""
    folder = Path(init_from)
    vision_config = folder / "vision_model" / "config.json"
    text_folder = folder / "text_encoder"
    if not vision_config.is_file() or not (text_folder / "config.json").is_file():
        raise FileNotFoundError(
            f"init_from={init_from!r} is not a contrastive hub folder: it needs vision_model/config.json and "
            "text_encoder/ (written by ContrastiveSystem.export_hub / `babeltower export`)"
        )
    saved = json.loads(vision_config.read_text())
    vision = replace(VisionConfig(**saved), attn_backend=vision.attn_backend,
                     gradient_checkpointing=vision.gradient_checkpointing)
    if text.pretrained:  # an explicitly chosen pretrained encoder (e.g. the imported e5) stays
        return vision, text
    text = TextEncoderConfig(pretrained=str(text_folder), tokenizer=str(text_folder), pooling=text.pooling,
                             attn_backend=text.attn_backend, gradient_checkpointing=text.gradient_checkpointing)
    return vision, text


def load_towers_from_hub(model: VQAModel, init_from: str, text: bool = True) -> None:
    """Copies the hub's vision tower (strict) and, with ``text``, its text encoder backbone (strict) into ``model``."""
    from safetensors.torch import load_file

    from babeltower.models.hub import load_text_encoder_weights, strict_load

    vision_file = Path(init_from) / "vision_model" / "model.safetensors"
    if not vision_file.is_file():
        raise FileNotFoundError(f"init_from={init_from!r}: {vision_file} is missing")
    strict_load(model.vision.vit, load_file(str(vision_file)), str(vision_file))
    if text:
        load_text_encoder_weights(model.text, init_from)


class VQASystem(L.LightningModule):
    """Trains :class:`~babeltower.models.vqa.VQAModel` on :class:`~babeltower.datasets.vqa.VQADataModule` batches.

    Args:
        vision: Vision tower architecture (replaced by the hub's when ``init_from``).
        text: Shared text encoder (replaced by the hub's when ``init_from``).
        hidden_size: Fusion width.
        fusion_layers: Fusion blocks.
        fusion_heads: Fusion attention heads.
        dropout: Fusion dropout.
        answers: Answer vocabulary ``[[lang, text], ...]``; None: the synthetic scenes'
            answers in every language.
        answer_groups: The meaning of each answer (one string per answer; answers of one
            group share a classifier row across languages); None with ``answers`` None:
            the scenes' value keys; None with ``answers`` given: one class per answer.
        global_image_token: Feed the vision tower's pooled embedding to the fusion as
            one extra token (what a contrastive ``init_from`` has trained most).
        match_token: Feed a multiplicative image x question token (low-rank bilinear
            pooling) to the fusion: the path yes/no questions need.
        answer_mode: Which head :meth:`VQAModel.answer` uses by default ("score"/"classify").
        attn_backend: Fusion attention kernel.
        init_from: Contrastive hub folder to start the vision tower from, and the text
            encoder too unless ``text.pretrained`` names one (e.g. the imported e5,
            frozen with ``text.trainable_layers: 0`` and its question cache).
        score_weight: Weight of the candidate-scoring loss.
        classify_weight: Weight of the classification loss (0 disables it).
        freeze_vision_steps: Keep the vision tower frozen for this many steps (lets the
            fusion settle on pretrained features first; 0: train everything throughout).
        learning_rate: Peak AdamW learning rate.
        weight_decay: AdamW weight decay (not on biases, norms, scalars).
        warmup_steps: Linear warm-up steps.
        min_lr_ratio: Final learning rate as a fraction of the peak.
    """

    def __init__(
        self,
        vision: VisionConfig = VisionConfig(),
        text: TextEncoderConfig = TextEncoderConfig(),
        hidden_size: int = 64,
        fusion_layers: int = 2,
        fusion_heads: int = 4,
        dropout: float = 0.0,
        answers: Optional[list[list[str]]] = None,
        answer_groups: Optional[list[str]] = None,
        global_image_token: bool = True,
        match_token: bool = True,
        answer_mode: str = "score",
        attn_backend: str = "sdpa",
        init_from: Optional[str] = None,
        score_weight: float = 1.0,
        classify_weight: float = 1.0,
        freeze_vision_steps: int = 0,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.05,
    ):
        super().__init__()
        vision = vision if isinstance(vision, VisionConfig) else VisionConfig(**vision)
        text = text if isinstance(text, TextEncoderConfig) else TextEncoderConfig(**text)
        own_text = bool(text.pretrained)
        if init_from:
            vision, text = configs_from_hub(init_from, vision, text)
        if answers is None:
            from babeltower.datasets.synthetic.vqa import answer_vocabulary, answer_vocabulary_groups

            answers = answer_vocabulary()
            answer_groups = answer_vocabulary_groups(answers) if answer_groups is None else answer_groups
        self.save_hyperparameters()
        # Plain containers in the checkpoint (torch.load(weights_only=True) reads it).
        self.hparams["vision"], self.hparams["text"] = asdict(vision), asdict(text)
        self.hparams["answers"] = [list(a) for a in answers]
        self.hparams["answer_groups"] = list(answer_groups or [])
        config = VQAConfig(vision=vision, text=text, hidden_size=hidden_size, fusion_layers=fusion_layers,
                           fusion_heads=fusion_heads, dropout=dropout, answers=answers,
                           answer_groups=list(answer_groups or []), global_image_token=global_image_token,
                           match_token=match_token,
                           answer_mode=answer_mode,
                           attn_backend=attn_backend)
        self.model = VQAModel(config)
        if init_from:
            load_towers_from_hub(self.model, init_from, text=not own_text)
        self._vocab_tokens: Optional[dict] = None
        self._lang_vocab: dict[str, list[tuple[int, str]]] = {}
        for a, ((lang, _), normalised) in enumerate(zip(config.answers, self._normalise_vocabulary(config.answers))):
            self._lang_vocab.setdefault(lang, []).append((a, normalised))

    @staticmethod
    def _normalise_vocabulary(answers: list[list[str]]) -> list[str]:
        from babeltower.eval.vqa import normalize_answer

        return [normalize_answer(text, lang) for lang, text in answers]

    def forward(self, pixel_values, input_ids, attention_mask, image_index=None):
        return self.model(pixel_values, input_ids, attention_mask, image_index)

    @staticmethod
    def linked_data_args(init_args: dict) -> dict:
        """DataModule init args these init args fix: ``{data field: (model field, value)}``.

        ``babeltower fit`` links them (:mod:`babeltower.train.launch`): the towers' tokenizer
        and image side, the hub's when ``init_from`` (as :func:`configs_from_hub` reads them).
        """
        from babeltower.train.contrastive import linked_tokenizer

        init_from = init_args.get("init_from")
        if init_from:
            saved = Path(init_from) / "vision_model" / "config.json"
            size = json.loads(saved.read_text()).get("image_size") if saved.is_file() else None
            size = size or (init_args.get("vision") or {}).get("image_size", VisionConfig.image_size)
            text = init_args.get("text") or {}
            if text.get("pretrained"):  # an explicit encoder stays (see configs_from_hub)
                return {"tokenizer": linked_tokenizer(init_args, init_from=None), "image_size": ("init_from", size)}
            return {"tokenizer": ("init_from", str(Path(init_from) / "text_encoder")), "image_size": ("init_from", size)}

        vision = init_args.get("vision") or {}
        return {
            "tokenizer": linked_tokenizer(init_args, init_from=None),
            "image_size": ("vision.image_size", vision.get("image_size", VisionConfig.image_size)),
        }

    def on_fit_start(self):
        from babeltower.train.contrastive import check_data_tokenizer

        check_data_tokenizer(self.trainer, self.model.text)

    # ------------------------------------------------------------------ targets
    def _vocabulary_tokens(self) -> dict:
        if self._vocab_tokens is None:
            from babeltower.models.text_encoder import resolve_tokenizer
            from babeltower.modalities.text import tokenize

            tokenizer = resolve_tokenizer(self.model.text.config)
            texts = [text for _, text in self.model.config.answers]
            self._vocab_tokens = tokenize(tokenizer, texts, 32)
        return {k: v.to(self.device) for k, v in self._vocab_tokens.items()}

    def _targets(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, A) language mask, (B,) canonical answer index, (B, A) soft target distribution."""
        index = self.model._answer_index
        mask = self.model.language_mask(batch["lang"], device=self.device)  # (B, A)
        canonical, soft = [], torch.zeros(mask.shape, device=self.device)
        for row, (lang, answer, humans) in enumerate(zip(batch["lang"], batch["answer"], batch["answers"])):
            if (lang, answer) not in index:
                raise ValueError(
                    f"answer {answer!r} ({lang}) of sample {batch['key'][row]} is not in the model's answer vocabulary; "
                    "set model.init_args.answers to a vocabulary that contains the data's answers"
                )
            canonical.append(index[(lang, answer)])
            for a, normalised in self._lang_vocab.get(lang, ()):
                soft[row, a] = min(1.0, sum(1 for h in humans if h == normalised) / 3)
            if soft[row].sum() == 0:
                soft[row, index[(lang, answer)]] = 1.0
        return mask, torch.tensor(canonical, device=self.device), soft / soft.sum(dim=1, keepdim=True)

    # ------------------------------------------------------------------ steps
    def _shared_step(self, batch):
        hp = self.hparams
        check_image_size(batch["pixel_values"], self.model.config.vision.image_size, where="data.init_args.image_size")
        fused = self(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], batch.get("image_index"))  # (B, D)
        mask, canonical, soft = self._targets(batch)
        tokens = self._vocabulary_tokens()
        vocab = self.model.encode_answers(tokens["input_ids"], tokens["attention_mask"])  # (A, D)
        score_logits = self.model.score(fused, vocab).masked_fill(~mask, float("-inf"))  # (B, A)
        loss = hp.score_weight * F.cross_entropy(score_logits, canonical)
        out = {"score_logits": score_logits, "canonical": canonical, "mask": mask}
        if self.model.classifier is not None:
            class_logits = self.model.classify(fused).masked_fill(~mask, float("-inf"))  # (B, A)
            log_probs = F.log_softmax(class_logits, dim=-1).masked_fill(~mask, 0.0)
            classify_loss = -(soft * log_probs).sum(dim=-1).mean()
            if hp.classify_weight > 0:
                loss = loss + hp.classify_weight * classify_loss
            out["class_logits"] = class_logits
        out["loss"] = loss
        return out

    def on_train_batch_start(self, batch, batch_idx):
        frozen = self.global_step < self.hparams.freeze_vision_steps
        self.model.vision.requires_grad_(not frozen)

    def training_step(self, batch, batch_idx):
        out = self._shared_step(batch)
        bs = batch["input_ids"].shape[0]
        acc = (out["score_logits"].argmax(-1) == out["canonical"]).float().mean()
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=bs)
        self.log("train/score_acc", acc, prog_bar=True, batch_size=bs)
        if "class_logits" in out:
            self.log("train/classify_acc", (out["class_logits"].argmax(-1) == out["canonical"]).float().mean(), batch_size=bs)
        if batch.get("bad_samples"):
            self.log("train/bad_samples", float(len(batch["bad_samples"])), reduce_fx="sum", batch_size=bs)
        return out["loss"]

    def validation_step(self, batch, batch_idx):
        from babeltower.eval.vqa import vqa_soft_accuracy

        out = self._shared_step(batch)
        bs = batch["input_ids"].shape[0]
        self.log("val/loss", out["loss"], prog_bar=True, batch_size=bs, sync_dist=True)
        answers = self.model.config.answers
        for name, logits in (("score", out["score_logits"]), ("classify", out.get("class_logits"))):
            if logits is None:
                continue
            predictions = [answers[i][1] for i in logits.argmax(-1).tolist()]
            soft = [vqa_soft_accuracy(p, humans, lang)
                    for p, humans, lang in zip(predictions, batch["answers"], batch["lang"])]
            self.log(f"val/{name}_vqa_acc", sum(soft) / len(soft), prog_bar=name == "score", batch_size=bs, sync_dist=True)

    def configure_optimizers(self):
        return adamw_with_cosine(self, param_groups(self.model, self.hparams.weight_decay), betas=(0.9, 0.98))

    # ------------------------------------------------------------------ export
    def export_hub(self, folder, eval_report: Optional[dict] = None, overwrite: bool = False):
        """Writes a hub folder: ``model_index.json``, ``vqa/`` (:meth:`VQAModel.save_pretrained`),
        ``tokenizer/`` and a model card with the evaluation table."""
        from babeltower import __version__
        from babeltower.models.hub import MODEL_INDEX, model_card, prepare_output_folder
        from babeltower.models.text_encoder import resolve_tokenizer

        folder = prepare_output_folder(folder, overwrite)
        tokenizer = resolve_tokenizer(self.model.text.config)
        self.model.save_pretrained(folder / "vqa", tokenizer=tokenizer)
        tokenizer.save_pretrained(str(folder / "tokenizer"))
        index = {"_class_name": "VQAModel", "_babeltower_version": __version__, "task": "vqa",
                 "vqa": ["babeltower", "VQAModel"], "tokenizer": ["transformers", "PreTrainedTokenizerFast"]}
        (folder / MODEL_INDEX).write_text(json.dumps(index, indent=2))
        config = self.model.config
        extra = (
            f"Visual question answering: ViT patch tokens ({config.vision.image_size} px, patch {config.vision.patch_size}) "
            f"and the shared multilingual encoder's question states, fused by {config.fusion_layers} transformer blocks "
            f"(width {config.hidden_size}); answers by scoring candidate texts through the shared encoder "
            f"(default: {config.answer_mode}) or by classifying over {len(config.answers)} answers.\n"
        )
        languages = sorted((eval_report or {}).get("per_language", {}) or self.model.answer_languages)
        card = model_card(
            "babeltower multilingual VQA", languages, (eval_report or {}).get("markdown"), extra=extra,
            usage="Load with `babeltower.models.vqa.VQAModel.from_pretrained(path + '/vqa')`, or run "
                  "`babeltower vqa PATH IMAGE \"question\"`; ",
            tag="visual-question-answering",
            subfolder_note="`vqa/text_encoder/` loads with `transformers.AutoModel.from_pretrained`.",
        )
        (folder / "README.md").write_text(card)
        return folder
