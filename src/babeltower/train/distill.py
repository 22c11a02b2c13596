"""Multilingual text encoder by knowledge distillation (stage 1 for every head).

The recipe of Reimers & Gurevych 2020, "Making Monolingual Sentence Embeddings
Multilingual using Knowledge Distillation" (also M-CLIP's and AltCLIP's first stage):
a frozen English teacher T embeds the English side s of each parallel pair (s, t), and
the multilingual student S learns

    loss = d(S(s), T(s)) + d(S(t), T(s))

with d = MSE (default) or cosine distance, on the pooled (mean) embedding projected to
the teacher's width. Optionally the student's token states of ``s`` also regress the
teacher's token states (``token_loss_weight``), aligned by character spans since the
two tokenizers cut text differently — heads that cross-attend (diffusion) need the
sequence, not only the pooled vector.

The teacher is frozen, kept out of the checkpoint (it is rebuilt from its config), and
its sentence embeddings are cached per distinct English text: a parallel corpus repeats
each English sentence once per target language.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F

from babeltower.models.teacher import Teacher, TeacherConfig, build_teacher
from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig
from babeltower.train.contrastive import linked_tokenizer
from babeltower.train.optim import adamw_with_cosine, param_groups

LOSSES = ("mse", "cosine", "contrastive")
#: Temperature of the in-batch contrastive distillation loss.
CONTRASTIVE_TEMPERATURE = 0.05


def embedding_distance(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean distance between (B, D) student and teacher embeddings.

    "mse" and "cosine" match each pair alone. "contrastive" adds to the cosine term an
    in-batch InfoNCE (temperature 0.05) where each student embedding must pick its own
    teacher embedding among the batch's (contrastive representation distillation, Tian et
    al. 2020): a teacher whose embeddings all share one dominant direction (e5's cosines
    between unrelated sentences are ~0.7-0.8) is otherwise matched by a student that
    learns the shared direction and little of what tells sentences apart. Rows with the
    same teacher embedding (a repeated text) are not counted as negatives.
    """
    if kind == "mse":
        return F.mse_loss(student, teacher)
    cosine = (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    if kind == "cosine":
        return cosine
    s, t = F.normalize(student.float(), dim=-1), F.normalize(teacher.float(), dim=-1)
    logits = s @ t.T / CONTRASTIVE_TEMPERATURE
    same = (t @ t.T) > 0.9999
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    return cosine + F.cross_entropy(logits, torch.arange(len(s), device=s.device))


def span_alignment(teacher_offsets: torch.Tensor, student_offsets: torch.Tensor) -> torch.Tensor:
    """Row-normalised character-overlap matrix between two tokenizations of the same texts.

    Args:
        teacher_offsets: (B, Tt, 2) character spans of the teacher's tokens ((0, 0): special/pad).
        student_offsets: (B, Ts, 2) character spans of the student's tokens.

    Returns:
        (B, Tt, Ts) weights; row i averages the student tokens overlapping teacher token i
        (all-zero rows for teacher tokens without characters).
    """
    ts, te = teacher_offsets[..., 0, None].float(), teacher_offsets[..., 1, None].float()  # (B, Tt, 1)
    ss, se = student_offsets[..., None, :, 0].float(), student_offsets[..., None, :, 1].float()  # (B, 1, Ts)
    overlap = (torch.minimum(te, se) - torch.maximum(ts, ss)).clamp(min=0)  # (B, Tt, Ts)
    return overlap / overlap.sum(-1, keepdim=True).clamp(min=1e-6)


class DistillationSystem(L.LightningModule):
    """Distils a frozen teacher into the shared multilingual text encoder.

    Args:
        student: the student's architecture (its projection_dim is set to the teacher's width).
        teacher: which frozen encoder to imitate.
        loss: "mse" (default, as Reimers & Gurevych), "cosine", or "contrastive" (cosine + in-batch
            InfoNCE against the teacher's embeddings; see :func:`embedding_distance`).
        token_loss_weight: weight of token-state distillation on the English side (0: off).
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay (not on biases and norms).
        warmup_steps: linear warm-up steps before cosine decay.
        min_lr_ratio: final learning rate as a fraction of the peak.
        teacher_cache_size: distinct English texts whose teacher embedding is kept (0: no cache).
    """

    def __init__(
        self,
        student: TextEncoderConfig = TextEncoderConfig(),
        teacher: TeacherConfig = TeacherConfig(),
        loss: str = "mse",
        token_loss_weight: float = 0.0,
        learning_rate: float = 5e-4,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.0,
        teacher_cache_size: int = 200_000,
    ):
        super().__init__()
        student = student if isinstance(student, TextEncoderConfig) else TextEncoderConfig(**student)
        teacher = teacher if isinstance(teacher, TeacherConfig) else TeacherConfig(**teacher)
        if loss not in LOSSES:
            raise ValueError(f"DistillationSystem.loss must be one of {LOSSES}, got {loss!r}")
        self.save_hyperparameters()
        self.hparams["student"], self.hparams["teacher"] = asdict(student), asdict(teacher)
        built = build_teacher(teacher)
        # Kept outside the module tree: not trained, not in checkpoints, moved by hand.
        self.__dict__["teacher"] = built
        if student.projection_dim not in (None, built.dim):
            raise ValueError(
                f"DistillationSystem.student.projection_dim={student.projection_dim} does not match the teacher's "
                f"width {built.dim}; leave it null (it is set to the teacher's width) or set it to {built.dim}"
            )
        self.student = TextEncoder(dataclasses.replace(student, projection_dim=built.dim))
        self.token_projection = None
        if token_loss_weight > 0:
            if teacher.kind == "open_clip":
                raise ValueError("DistillationSystem.token_loss_weight > 0 needs a transformers teacher, not open_clip")
            self.token_projection = nn.Linear(self.student.backbone.config.hidden_size, built.token_dim)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._student_tokenizer = None

    @staticmethod
    def linked_data_args(init_args: dict) -> dict[str, tuple[str, Any]]:
        """DataModule init args these init args fix: ``{data field: (model field, value)}``.

        ``babeltower fit`` links them (:mod:`babeltower.train.launch`): the parallel text
        is tokenized with the student's tokenizer.
        """
        return {"student_tokenizer": linked_tokenizer(init_args, text="student", init_from=None)}

    # ------------------------------------------------------------------ teacher
    def teacher_model(self) -> Teacher:
        """The frozen teacher (kept out of the state dict, so out of checkpoints and exports)."""
        return self.__dict__["teacher"]

    def _teacher(self) -> Teacher:
        teacher = self.__dict__["teacher"]
        if next(teacher.parameters()).device != self.device:
            teacher.to(self.device)
        return teacher

    def teacher_embeddings(self, texts: list[str]) -> torch.Tensor:
        """(B, D) teacher sentence embeddings, from the cache where possible."""
        size = self.hparams.teacher_cache_size
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            embs = self._teacher()(missing)[0].detach().cpu()
            for text, emb in zip(missing, embs):
                self._cache[text] = emb
            while size and len(self._cache) > size:
                self._cache.popitem(last=False)
        out = torch.stack([self._cache[t] for t in texts]).to(self.device)
        if not size:
            self._cache.clear()
        return out

    def student_tokenizer(self):
        if self._student_tokenizer is None:
            from babeltower.models.text_encoder import resolve_tokenizer

            self._student_tokenizer = resolve_tokenizer(self.student.config)
        return self._student_tokenizer

    # ------------------------------------------------------------------ steps
    def forward(self, input_ids, attention_mask):
        return self.student(input_ids, attention_mask)

    def _token_loss(self, texts: list[str]) -> torch.Tensor:
        _, teacher_states, teacher_tokens = self._teacher()(texts)
        enc = self.student_tokenizer()(
            texts, padding=True, truncation=True, max_length=self.student.config.max_position_embeddings - 2,
            return_tensors="pt", return_offsets_mapping=True,
        )
        states = self.student(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)).last_hidden_state
        align = span_alignment(teacher_tokens["offset_mapping"].to(self.device), enc["offset_mapping"].to(self.device))
        aligned = self.token_projection(align @ states)  # (B, Tt, H_teacher)
        valid = align.sum(-1) > 0  # (B, Tt): teacher tokens that cover characters
        return F.mse_loss(aligned[valid], teacher_states[valid])

    def _losses(self, batch) -> dict[str, torch.Tensor]:
        kind = self.hparams.loss
        target = self.teacher_embeddings(batch["src_text"])  # (B, D)
        src = self.student(**batch["student_src"]).embeds
        tgt = self.student(**batch["student_tgt"]).embeds
        out = {"loss_src": embedding_distance(src, target, kind), "loss_tgt": embedding_distance(tgt, target, kind)}
        out["loss"] = out["loss_src"] + out["loss_tgt"]
        if self.token_projection is not None:
            out["loss_tokens"] = self._token_loss(batch["src_text"])
            out["loss"] = out["loss"] + self.hparams.token_loss_weight * out["loss_tokens"]
        with torch.no_grad():
            s, t = F.normalize(src, dim=-1), F.normalize(tgt, dim=-1)
            out["cos_src_teacher"] = (s * target).sum(-1).mean()
            out["cos_tgt_teacher"] = (t * target).sum(-1).mean()
            sim = t @ s.T  # (B, B): translation -> English, in-batch (duplicates possible)
            same = torch.tensor(
                [[a == b for b in batch["src_text"]] for a in batch["src_text"]], device=sim.device
            )
            out["x2en_acc"] = same.gather(1, sim.argmax(1, keepdim=True)).float().mean()
        return out

    def training_step(self, batch, batch_idx):
        out = self._losses(batch)
        bs = len(batch["src_text"])
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=bs)
        for key in ("loss_src", "loss_tgt", "loss_tokens", "cos_src_teacher", "cos_tgt_teacher"):
            if key in out:
                self.log(f"train/{key}", out[key], batch_size=bs, prog_bar=key == "cos_tgt_teacher")
        return out["loss"]

    def validation_step(self, batch, batch_idx):
        out = self._losses(batch)
        bs = len(batch["src_text"])
        for key, value in out.items():
            self.log(f"val/{key}", value, batch_size=bs, sync_dist=True, prog_bar=key in ("loss", "x2en_acc"))

    def configure_optimizers(self):
        modules = nn.ModuleList([m for m in (self.student, self.token_projection) if m is not None])
        return adamw_with_cosine(self, param_groups(modules, self.hparams.weight_decay), eps=1e-8)

    def export_hub(self, folder, tokenizer=None, eval_report: Optional[dict] = None, overwrite: bool = False):
        """Writes the student as a hub folder (``text_encoder/`` loads with AutoModel)."""
        from babeltower.models.hub import save_text_encoder

        return save_text_encoder(
            self.student,
            folder,
            tokenizer=tokenizer,
            eval_report=eval_report,
            overwrite=overwrite,
            extra_index={"task": "distill", "teacher": self.hparams["teacher"], "loss": self.hparams.loss},
        )
