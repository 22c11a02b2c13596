"""VQA head: fuses the vision tower's patch tokens with the shared encoder's question states.

Architecture (single-stream fusion, as in ViLT, Kim et al. 2021, on top of two towers)::

    image (B, 3, H, W) --VisionTower--> patch tokens (B, N, Cv) --Linear--> (B, N, D) + type[0]
    question ids (B, T) --TextEncoder--> states (B, T, Ct) --Linear--> (B, T, D) + type[1]
    [ANS] (1, 1, D) ++ patches ++ question --FusionBlock x L (pre-norm, babeltower attention)-->
    z = LayerNorm(x[:, 0])  (B, D)

Two ways to turn ``z`` into an answer, both trained together and both kept:

- ``classify``: a linear layer over the answer vocabulary (``config.answers``, pairs
  ``[lang, text]``), masked to the question's language at inference. Standard VQA
  practice (Anderson et al. 2018) with VQAv2's soft targets.
- ``score``: each candidate answer text goes through the *same* shared text encoder
  (pooled state -> ``answer_proj``); the score is the scaled cosine of ``query_proj(z)``
  and that embedding. It handles multiple-choice options and answer strings outside
  the vocabulary (CVQA's options), which a classifier cannot.

``answer_mode`` picks which one :meth:`VQAModel.answer` uses; the evaluator reports both.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from babeltower.models.attention import ATTENTION_BACKENDS, attention
from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig
from babeltower.models.vision import VisionConfig, VisionTower

ANSWER_MODES: tuple[str, ...] = ("score", "classify")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class VQAConfig:
    """Architecture of the VQA model."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    """The ViT vision tower; its patch tokens (not the pooled embedding) feed the fusion."""
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    """The shared multilingual text encoder: encodes questions and candidate answers."""
    hidden_size: int = 64
    """Width D of the fusion transformer."""
    fusion_layers: int = 2
    """Number of fusion blocks (joint self-attention over [ANS], patches and question)."""
    fusion_heads: int = 4
    """Attention heads per fusion block; must divide hidden_size."""
    mlp_ratio: float = 4.0
    """Fusion MLP width as a multiple of hidden_size."""
    dropout: float = 0.0
    """Dropout in the fusion blocks (attention probabilities and residual branches)."""
    answers: list[list[str]] = field(default_factory=list)
    """Classification vocabulary: ``[lang, answer]`` pairs (``VQASystem`` fills in every
    canonical answer of the synthetic scenes when it is not given). Empty: no classifier,
    scoring only."""
    answer_groups: list[str] = field(default_factory=list)
    """Optional meaning of each vocabulary answer (same length as ``answers``), e.g. the
    value key ``"red"`` for ``[en, red]``, ``[fr, rouge]`` and ``[ja, 赤]``. Answers of one
    group share one classifier row, so every language's questions train the same classes
    and answers agree across languages. Empty: one class per ``[lang, answer]`` pair."""
    global_image_token: bool = False
    """Also feed the vision tower's pooled embedding (its CLS output, what the contrastive
    head trains) as one extra fusion token beside the patch tokens."""
    match_token: bool = False
    """Also feed a multiplicative image-question token, ``W_o((W_i v) * (W_q q))`` of the pooled
    image embedding ``v`` and the pooled question state ``q`` (low-rank bilinear pooling,
    Kim et al. 2017, "Hadamard Product for Low-rank Bilinear Pooling"): a direct path for
    yes/no questions, which must compare a value named in the question with the picture."""
    answer_mode: str = "score"
    """How :meth:`VQAModel.answer` picks an answer: "score" (candidate texts through the
    shared encoder) or "classify" (the vocabulary classifier)."""
    init_logit_scale: float = math.log(10.0)
    """Initial log inverse temperature of the candidate-scoring cosine."""
    attn_backend: str = "sdpa"
    """Fusion attention kernel: "sdpa", "math" or "xformers" (towers keep their own)."""

    def __post_init__(self) -> None:
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**self.vision)
        if isinstance(self.text, dict):
            self.text = TextEncoderConfig(**self.text)
        if self.hidden_size <= 0 or self.fusion_layers < 0:
            raise ValueError(f"VQAConfig: hidden_size must be > 0 and fusion_layers >= 0, got {self.hidden_size}, {self.fusion_layers}")
        if self.hidden_size % self.fusion_heads:
            raise ValueError(f"VQAConfig.fusion_heads={self.fusion_heads} must divide hidden_size={self.hidden_size}")
        if self.answer_mode not in ANSWER_MODES:
            raise ValueError(f"VQAConfig.answer_mode must be one of {ANSWER_MODES}, got {self.answer_mode!r}")
        if self.answer_mode == "classify" and not self.answers:
            raise ValueError("VQAConfig.answer_mode='classify' needs a non-empty answers vocabulary")
        if self.attn_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"VQAConfig.attn_backend must be one of {ATTENTION_BACKENDS}, got {self.attn_backend!r}")
        self.answers = [list(pair) for pair in self.answers]
        for i, pair in enumerate(self.answers):
            if len(pair) != 2 or not all(isinstance(x, str) and x for x in pair):
                raise ValueError(f"VQAConfig.answers[{i}] must be a [lang, answer] pair of non-empty strings, got {pair!r}")
        if len({tuple(p) for p in self.answers}) != len(self.answers):
            raise ValueError("VQAConfig.answers has duplicate [lang, answer] pairs")
        self.answer_groups = [str(g) for g in self.answer_groups]
        if self.answer_groups and len(self.answer_groups) != len(self.answers):
            raise ValueError(
                f"VQAConfig.answer_groups must name one group per answer ({len(self.answers)}), got {len(self.answer_groups)}"
            )

    def to_dict(self) -> dict:
        fields = asdict(self)
        fields["text"].update(pretrained=None, tokenizer=None)  # the hub folder holds both
        return fields


class FusionBlock(nn.Module):
    """Pre-norm transformer block whose attention is :func:`babeltower.models.attention.attention`."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, backend: str):
        super().__init__()
        self.heads, self.dropout, self.backend = heads, dropout, backend
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, S, D), mask (B, S) bool (True = real token) -> (B, S, D)."""
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, S, hs)
        y = attention(q, k, v, mask[:, None, None, :], dropout_p=self.dropout if self.training else 0.0,
                      backend=self.backend)  # (B, nh, S, hs)
        x = x + self.drop(self.out_proj(y.transpose(1, 2).reshape(b, s, d)))
        return x + self.drop(self.mlp(self.norm2(x)))


class VQAModel(nn.Module):
    """Image + question -> fused vector -> answer (classification and/or candidate scoring)."""

    def __init__(self, config: VQAConfig):
        super().__init__()
        self.config = config
        self.vision = VisionTower(config.vision)
        self.vision.vit.output_tokens = True  # open_clip then returns (pooled, patch tokens)
        self.text = TextEncoder(config.text)
        d = config.hidden_size
        text_width = self.text.backbone.config.hidden_size
        self.image_proj = nn.Linear(config.vision.width, d)
        self.question_proj = nn.Linear(text_width, d)
        self.type_embedding = nn.Parameter(torch.zeros(2, d))
        self.answer_token = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.normal_(self.type_embedding, std=0.02)
        nn.init.normal_(self.answer_token, std=0.02)
        self.blocks = nn.ModuleList(
            FusionBlock(d, config.fusion_heads, config.mlp_ratio, config.dropout, config.attn_backend)
            for _ in range(config.fusion_layers)
        )
        self.norm = nn.LayerNorm(d)
        if config.answer_groups:
            groups = sorted(set(config.answer_groups))
            index = torch.tensor([groups.index(g) for g in config.answer_groups])
        else:
            groups, index = config.answers, torch.arange(len(config.answers))
        self.register_buffer("_answer_rows", index, persistent=False)  # (A,) classifier row of each answer
        self.classifier = nn.Linear(d, len(groups)) if config.answers else None
        self.global_proj = nn.Linear(config.vision.output_dim, d) if config.global_image_token else None
        if config.match_token:
            self.match_image = nn.Linear(config.vision.output_dim, 4 * d)
            self.match_question = nn.Linear(text_width, 4 * d)
            self.match_out = nn.Linear(4 * d, d)
        else:
            self.match_image = self.match_question = self.match_out = None
        self.query_proj = nn.Linear(d, d)
        self.answer_proj = nn.Linear(text_width, d)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))
        langs = sorted({lang for lang, _ in config.answers})
        self._answer_index = {(lang, text): i for i, (lang, text) in enumerate(config.answers)}
        self.answer_languages = langs

    # ------------------------------------------------------------------ encoding
    def fuse(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        image_index: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Images and (B, T) question tokens -> (B, D) fused answer vectors.

        ``pixel_values`` is (B, 3, H, W), or (B_img, 3, H, W) with ``image_index`` (B,)
        naming each question's image, so several questions share one image encoding.
        """
        pooled, patches = self.vision.vit(pixel_values)  # (B_img, Co), (B_img, N, Cv)
        if image_index is not None:
            pooled, patches = pooled[image_index], patches[image_index]  # (B, Co), (B, N, Cv)
        text_out = self.text(input_ids, attention_mask)
        states = text_out.last_hidden_state  # (B, T, Ct)
        image = self.image_proj(patches) + self.type_embedding[0]  # (B, N, D)
        if self.match_out is not None:
            match = self.match_out(torch.tanh(self.match_image(pooled)) * torch.tanh(self.match_question(text_out.pooled)))
            image = torch.cat([match[:, None] + self.type_embedding[0], image], dim=1)  # (B, 1+N, D)
        if self.global_proj is not None:
            image = torch.cat([self.global_proj(pooled)[:, None] + self.type_embedding[0], image], dim=1)  # (B, 1+N, D)
        question = self.question_proj(states) + self.type_embedding[1]  # (B, T, D)
        b = image.shape[0]
        x = torch.cat([self.answer_token.expand(b, -1, -1), image, question], dim=1)  # (B, 1+N+T, D)
        mask = torch.cat(
            [torch.ones(b, 1 + image.shape[1], dtype=torch.bool, device=x.device), attention_mask.bool()], dim=1
        )  # (B, 1+N+T)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x[:, 0])  # (B, D)

    def encode_answers(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(K, T) tokenised candidate answers -> (K, D) L2-normalised answer embeddings."""
        pooled = self.text(input_ids, attention_mask).pooled  # (K, Ct)
        return F.normalize(self.answer_proj(pooled), dim=-1)

    def score(self, fused: torch.Tensor, answer_embeds: torch.Tensor) -> torch.Tensor:
        """(B, D) fused vectors x (K, D) or (B, K, D) answer embeddings -> (B, K) logits."""
        query = F.normalize(self.query_proj(fused), dim=-1)  # (B, D)
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        if answer_embeds.dim() == 2:
            return scale * query @ answer_embeds.T
        return scale * torch.einsum("bd,bkd->bk", query, answer_embeds)

    def classify(self, fused: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, A) logits over ``config.answers`` (answers of one group share a row)."""
        if self.classifier is None:
            raise RuntimeError("this VQA model has no classifier (VQAConfig.answers is empty); use answer_mode='score'")
        return self.classifier(fused)[:, self._answer_rows]

    def forward(self, pixel_values, input_ids, attention_mask, image_index=None):
        """Returns the fused (B, D) vector; see :meth:`classify` and :meth:`score`."""
        return self.fuse(pixel_values, input_ids, attention_mask, image_index)

    # ------------------------------------------------------------------ inference
    def language_mask(self, langs: list[str], device=None) -> torch.Tensor:
        """(B, A) bool: which vocabulary answers are in each question's language."""
        rows = [[lang == vocab_lang for vocab_lang, _ in self.config.answers] for lang in langs]
        return torch.tensor(rows, dtype=torch.bool, device=device)

    @torch.no_grad()
    def answer(
        self,
        pixel_values: torch.Tensor,
        questions: list[str],
        tokenizer,
        *,
        langs: list[Optional[str]],
        candidates: Optional[list[list[str]]] = None,
        mode: Optional[str] = None,
        max_length: int = 64,
    ) -> list[dict]:
        """Answers a batch of questions, deterministically.

        Args:
            pixel_values: (B, 3, H, W) preprocessed images.
            questions: B question strings.
            tokenizer: The text encoder's tokenizer.
            langs: Each question's language; None allows every vocabulary language.
            candidates: Per question, the options to choose from (multiple choice);
                None: the vocabulary answers of the question's language.
            mode: "score" or "classify"; default ``config.answer_mode``.
            max_length: Longest token sequence kept.

        Returns:
            Per question ``{"answer": str or None, "index": int or None, "scores": [...]}``;
            ``index`` is into ``candidates`` when given. With ``classify`` an option
            outside the vocabulary cannot be chosen; if no option is in the
            vocabulary the answer is None (counted wrong), never a random pick.
        """
        from babeltower.modalities.text import tokenize

        batch = tokenize(tokenizer, questions, max_length)
        device = pixel_values.device
        fused = self.fuse(pixel_values, batch["input_ids"].to(device), batch["attention_mask"].to(device))  # (B, D)
        return self.answer_from_fused(fused, tokenizer, langs=langs, candidates=candidates, mode=mode,
                                      max_length=max_length)

    @torch.no_grad()
    def answer_from_fused(
        self,
        fused: torch.Tensor,
        tokenizer,
        *,
        langs: list[Optional[str]],
        candidates: Optional[list[list[str]]] = None,
        mode: Optional[str] = None,
        max_length: int = 64,
        answer_cache: Optional[dict[str, torch.Tensor]] = None,
    ) -> list[dict]:
        """:meth:`answer` for already fused (B, D) vectors (the evaluator fuses once, answers twice).

        ``answer_cache`` maps candidate texts to their (D,) embeddings across calls.
        """
        mode = mode or self.config.answer_mode
        if mode not in ANSWER_MODES:
            raise ValueError(f"mode must be one of {ANSWER_MODES}, got {mode!r}")
        if candidates is None:
            candidates = [
                [text for vocab_lang, text in self.config.answers if lang is None or vocab_lang == lang]
                for lang in langs
            ]
            for lang, cands in zip(langs, candidates):
                if not cands:
                    raise ValueError(f"no vocabulary answers for language {lang!r}; the model knows {self.answer_languages}")
        results = []
        if mode == "score":
            cache = answer_cache if answer_cache is not None else {}
            missing = sorted({c for cands in candidates for c in cands} - set(cache))
            if missing:
                for text, embed in zip(missing, self._embed_texts(missing, tokenizer, max_length, fused.device)):
                    cache[text] = embed
            for row, cands in zip(fused, candidates):
                logits = self.score(row[None], torch.stack([cache[c] for c in cands]))[0]  # (K,)
                scores = logits.tolist()
                best = max(range(len(cands)), key=lambda i: (scores[i], -i))
                results.append({"answer": cands[best], "index": best, "scores": scores})
            return results
        logits = self.classify(fused)  # (B, A)
        for row, cands, lang in zip(logits, candidates, langs):
            scores, known = [], []
            for text in cands:
                index = self._vocab_index(text, lang)
                scores.append(float(row[index]) if index is not None else float("-inf"))
                known.append(index is not None)
            if not any(known):
                results.append({"answer": None, "index": None, "scores": scores})
                continue
            best = max((i for i in range(len(cands)) if known[i]), key=lambda i: (scores[i], -i))
            results.append({"answer": cands[best], "index": best, "scores": scores})
        return results

    def _vocab_index(self, text: str, lang: Optional[str]) -> Optional[int]:
        if lang is not None:
            return self._answer_index.get((lang, text))
        matches = [i for (vocab_lang, vocab_text), i in self._answer_index.items() if vocab_text == text]
        return matches[0] if matches else None

    def _embed_texts(self, texts: list[str], tokenizer, max_length: int, device) -> torch.Tensor:
        from babeltower.modalities.text import tokenize

        batch = tokenize(tokenizer, texts, max_length)
        return self.encode_answers(batch["input_ids"].to(device), batch["attention_mask"].to(device))

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, folder: str | Path, tokenizer=None) -> Path:
        """Writes ``config.json``, ``model.safetensors`` (every weight but the text
        encoder) and ``text_encoder/`` (AutoModel-loadable, with the tokenizer)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.text.save_pretrained(folder / "text_encoder", tokenizer=tokenizer)
        (folder / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not k.startswith("text.")}
        save_file(state, str(folder / WEIGHTS_FILE))
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, map_location: str = "cpu") -> "VQAModel":
        """Loads a folder written by :meth:`save_pretrained`, strictly (missing/unexpected keys are errors)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        for name in (CONFIG_FILE, WEIGHTS_FILE, "text_encoder"):
            if not (folder / name).exists():
                raise FileNotFoundError(f"{folder} is not a babeltower VQA model folder: {name} is missing")
        raw = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        known = set(VQAConfig.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{folder / CONFIG_FILE}: unknown VQAConfig fields {unknown}; known: {sorted(known)}")
        text_encoder = TextEncoder.from_pretrained(folder / "text_encoder")
        raw["text"] = text_encoder.config
        model = cls(VQAConfig(**raw))
        model.text = text_encoder
        from babeltower.models.hub import strict_load

        state = load_file(str(folder / WEIGHTS_FILE), device=map_location)
        strict_load(model, state, str(folder / WEIGHTS_FILE), exclude="text.")  # text_encoder/ loaded above
        return model.eval()


def vqa_tiny(**overrides) -> VQAConfig:
    """The CPU test size: 32 px ViT (width 32, 2 layers), text hidden 32, fusion width 32."""
    from babeltower.models.vision import vit_tiny

    base = dict(vision=vit_tiny(), text=TextEncoderConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                         intermediate_size=64), hidden_size=32, fusion_layers=1,
                fusion_heads=2)
    return VQAConfig(**{**base, **overrides})
