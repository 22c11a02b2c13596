"""CTC text-line recogniser: conv stem, Transformer encoder, CTC over characters.

Pipeline, in the order data flows::

    line image (B, 1, H, W), ink bright, zero-padded on the right   [modalities.text_line]
        --ConvStem (4x narrower, H -> 1)--> frames (B, W/4, d) + sinusoidal positions
        --blocks (attention() with a key padding mask)--> states (B, W/4, d)
        --ctc_head--> log_probs (B, W/4, V + 1)

Design choices:

* The CRNN layout (Shi et al. 2015) with the recurrent layers replaced by a Transformer
  encoder, as in SVTR / PARSeq-style encoders: each output frame covers a 4-pixel column
  of a 32-pixel-high line; self-attention gives every frame the whole line as context,
  which is what Devanagari needs (a vowel sign drawn left of its consonant is read after
  it) and what CTC alone cannot provide.
* Output units are characters (``charset``, NFC code points) plus a blank at index
  ``len(charset)`` (NeMo's convention: blank last). Characters rather than the shared BPE
  tokenizer's ids: a line image shows characters, every CJK character is its own unit
  either way, and CTC needs at least one frame per unit, which a BPE token spanning
  several narrow Latin letters would waste. The README reports the comparison.
* Reading order: the encoder scans left to right, so CTC targets are the *visual* order
  of each label and :meth:`OCRModel.recognize` returns logical order through the
  bidirectional algorithm (:mod:`babeltower.modalities.bidi`): Arabic with digits and
  Latin comes out as it is read.
* Padding columns are zeroed after every stem convolution and masked out as attention
  keys, so a line's outputs are the same alone or padded inside a batch. BatchNorm in the
  stem sees padding as background, which it is (zero = no ink).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from babeltower.models.asr import greedy_decode, lengths_to_mask, sinusoidal_positions
from babeltower.models.attention import ATTENTION_BACKENDS, attention
from babeltower.models.charlm import LMFusion

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
#: Horizontal pixels per output frame.
STRIDE = 4


@dataclass
class OCRConfig:
    """Architecture of the CTC line recogniser."""

    charset: str = ""
    """Output characters, one unit each (blank is appended at index len(charset)). Empty:
    the training system fills in every character the OCR synthesiser can produce for
    ``languages`` (:func:`babeltower.datasets.synthetic.ocr.language_charset`); saved
    folders always hold the resolved characters."""

    languages: tuple[str, ...] = ("en", "de", "fr", "es", "vi", "ru", "ar", "hi", "ko", "zh", "ja")
    """Languages the recogniser is trained for (used to build an empty ``charset``)."""

    image_height: int = 32
    """Height the line images are scaled to, in pixels (a multiple of 16)."""

    max_width: int = 1024
    """Widest input after scaling; longer lines are squeezed horizontally."""

    stem_channels: tuple[int, ...] = (32, 64, 96, 128)
    """Channels of the four stem convolutions (strides (2,2), (2,2), (2,1), (2,1))."""

    d_model: int = 192
    """Width of the encoder states."""

    num_layers: int = 4
    """Transformer encoder blocks."""

    num_heads: int = 4
    """Attention heads per block; must divide d_model."""

    ff_mult: int = 2
    """Feed-forward inner width as a multiple of d_model."""

    dropout: float = 0.0
    """Dropout on residual branches and attention probabilities."""

    attn_backend: str = "sdpa"
    """Attention kernel: "sdpa", "math" (reference) or "xformers" (CUDA only)."""

    def __post_init__(self) -> None:
        self.languages = tuple(self.languages)
        self.stem_channels = tuple(self.stem_channels)
        if self.attn_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"OCRConfig.attn_backend must be one of {ATTENTION_BACKENDS}, got {self.attn_backend!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"OCRConfig.d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        if self.image_height % 16 or self.image_height < 16:
            raise ValueError(f"OCRConfig.image_height must be a multiple of 16 (the stem halves it 4 times), got {self.image_height}")
        if len(self.stem_channels) != 4:
            raise ValueError(f"OCRConfig.stem_channels needs 4 entries, got {self.stem_channels}")
        if len(set(self.charset)) != len(self.charset):
            repeated = sorted({c for c in self.charset if self.charset.count(c) > 1})
            raise ValueError(f"OCRConfig.charset repeats characters {repeated[:10]}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"OCRConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.max_width < 16:
            raise ValueError(f"OCRConfig.max_width must be >= 16, got {self.max_width}")


def ocr_tiny(**overrides) -> OCRConfig:
    """A test-sized recogniser: d_model 32, 2 layers, 2 heads, small stem."""
    fields = dict(d_model=32, num_layers=2, num_heads=2, stem_channels=(8, 16, 16, 32))
    fields.update(overrides)
    return OCRConfig(**fields)


class ConvStem(nn.Module):
    """(B, 1, H, W) -> (B, W/4, d): four 3x3 convolutions + BatchNorm + GELU, H folded into channels."""

    STRIDES = ((2, 2), (2, 2), (2, 1), (2, 1))

    def __init__(self, config: OCRConfig):
        super().__init__()
        channels = (1,) + config.stem_channels
        self.convs = nn.ModuleList(
            nn.Conv2d(channels[i], channels[i + 1], 3, stride=stride, padding=1, bias=False)
            for i, stride in enumerate(self.STRIDES)
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) for c in config.stem_channels)
        self.proj = nn.Linear(config.stem_channels[-1] * (config.image_height // 16), config.d_model)

    @staticmethod
    def output_widths(widths: torch.Tensor) -> torch.Tensor:
        for stride in ConvStem.STRIDES:
            widths = (widths - 1) // stride[1] + 1
        return widths

    def forward(self, images: torch.Tensor, widths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images
        for conv, norm, stride in zip(self.convs, self.norms, self.STRIDES):
            x = F.gelu(norm(conv(x)))  # (B, C, H', W')
            widths = (widths - 1) // stride[1] + 1
            valid = lengths_to_mask(widths, x.shape[-1])  # (B, W')
            x = x * valid[:, None, None, :].to(x.dtype)
        b, c, h, w = x.shape
        frames = self.proj(x.permute(0, 3, 1, 2).reshape(b, w, c * h))  # (B, W', d)
        return frames, widths


class EncoderBlock(nn.Module):
    """Pre-LN Transformer block: x + attn(LN(x)), x + FF(LN(x)), over :func:`attention`."""

    def __init__(self, config: OCRConfig):
        super().__init__()
        d = config.d_model
        self.num_heads, self.dropout_p, self.backend = config.num_heads, config.dropout, config.attn_backend
        self.attn_norm = nn.LayerNorm(d)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))
        self.ff_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, d * config.ff_mult)
        self.fc2 = nn.Linear(d * config.ff_mult, d)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, T, d); mask: (B, 1, 1, T) bool, True = real frame
        b, t, d = x.shape
        h = self.attn_norm(x)
        q, k, v = (proj(h).view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))  # (B, nh, T, hs)
        y = attention(q, k, v, mask, dropout_p=self.dropout_p if self.training else 0.0, backend=self.backend)
        x = x + self.dropout(self.out_proj(y.transpose(1, 2).reshape(b, t, d)))
        return x + self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(self.ff_norm(x))))))


#: Scripts whose letters have look-alikes in each other (Latin a/Cyrillic а/Greek α, p/р/ρ, ...).
CONFUSABLE_SCRIPTS: tuple[str, ...] = ("LATIN", "CYRILLIC", "GREEK")


def _letter_script(ch: str) -> str | None:
    """"LATIN", "CYRILLIC" or "GREEK" for a letter of those scripts, else None."""
    import unicodedata

    if not ch.isalpha():
        return None
    script = unicodedata.name(ch, "").split(" ")[0]
    return script if script in CONFUSABLE_SCRIPTS else None


def script_consistent_decode(log_probs: torch.Tensor, lengths: torch.Tensor | None, blank: int,
                             charset: str) -> list[list[int]]:
    """Best-path CTC decoding where each word is written in one script of look-alikes.

    Latin, Cyrillic and Greek share letter shapes (a/а/α, o/о/ο, p/р/ρ, and in italics
    u/и, n/п, m/т), so a line recogniser reading "право" may emit "nраво". Words do not mix
    these scripts in any of the suite's languages, so after the greedy path (argmax per
    frame, repeats collapsed, blanks dropped) every word (characters between spaces) that
    holds letters of two or more of them is rewritten in its majority script: each minority
    letter becomes the most probable letter of the majority script over the frames that
    emitted it. Ties and single-script words are left as they are; other scripts, digits and
    punctuation are never touched. A word-level version of the script-consistency rule used
    against homoglyph spoofing (Unicode TR #39, "mixed-script confusables").

    Args:
        log_probs: (B, T, V+1) log-probabilities (``charset`` then blank, or blank anywhere).
        lengths: (B,) valid frames, or None for all.
        blank: the blank index.
        charset: the recogniser's characters, index i = class i.

    Returns:
        One id list per line, in the model's (visual) order.
    """
    scripts = [_letter_script(ch) for ch in charset]
    by_script = {name: torch.tensor([i for i, s in enumerate(scripts) if s == name], dtype=torch.long)
                 for name in CONFUSABLE_SCRIPTS}
    best = log_probs.argmax(dim=-1).cpu()  # (B, T)
    scores = log_probs.detach().float().cpu()
    lengths_list = [best.shape[1]] * best.shape[0] if lengths is None else lengths.tolist()
    out = []
    for b, length in enumerate(lengths_list):
        emitted: list[tuple[int, list[int]]] = []  # (class id, frames that emitted it)
        previous = None
        for t, token in enumerate(best[b, :length].tolist()):
            if token != blank and token == previous:
                emitted[-1][1].append(t)
            elif token != blank:
                emitted.append((token, [t]))
            previous = token
        ids = [token for token, _ in emitted]
        start = 0
        for end in range(len(emitted) + 1):
            if end < len(emitted) and not (emitted[end][0] < len(charset) and charset[emitted[end][0]].isspace()):
                continue
            word = range(start, end)
            counts: dict[str, int] = {}
            for i in word:
                script = scripts[ids[i]] if ids[i] < len(charset) else None
                if script:
                    counts[script] = counts.get(script, 0) + 1
            if len(counts) > 1:
                ranked = sorted(counts.items(), key=lambda kv: -kv[1])
                if ranked[0][1] > ranked[1][1] and len(by_script[ranked[0][0]]):
                    majority, allowed = ranked[0][0], by_script[ranked[0][0]]
                    for i in word:
                        script = scripts[ids[i]] if ids[i] < len(charset) else None
                        if script and script != majority:
                            frames = scores[b, emitted[i][1]][:, allowed]  # (frames, |allowed|)
                            ids[i] = int(allowed[frames.max(dim=0).values.argmax()])
            start = end + 1
        out.append(ids)
    return out


class OCRModel(LMFusion, nn.Module):
    """Line image -> CTC log-probabilities over ``config.charset`` + blank.

    Args:
        config: The architecture; ``config.charset`` must be resolved (non-empty).
    """

    def __init__(self, config: OCRConfig):
        super().__init__()
        if not config.charset:
            raise ValueError(
                "OCRModel needs OCRConfig.charset (the output characters); OCRSystem fills it from the languages, "
                "or pass the characters"
            )
        self.config = config
        self.stem = ConvStem(config)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.ctc_head = nn.Linear(config.d_model, len(config.charset) + 1)
        self._index = {ch: i for i, ch in enumerate(config.charset)}

    @property
    def decoding(self) -> str:
        """How :meth:`recognize` decodes, in words (for reports)."""
        return self.lm_description() if self.lm is not None else "greedy CTC, one look-alike script per word"

    @property
    def blank_id(self) -> int:
        return len(self.config.charset)

    def forward(self, images: torch.Tensor, widths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 1, H, W) + valid widths (B,) -> log_probs (B, T, V+1), out_lengths (B,)."""
        if images.shape[-2] != self.config.image_height:
            raise ValueError(f"OCRModel expects lines {self.config.image_height} px high, got {images.shape[-2]}")
        x, lengths = self.stem(images, widths)  # (B, T, d), (B,)
        x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype)[None]
        mask = lengths_to_mask(lengths, x.shape[1])[:, None, None, :]  # (B, 1, 1, T)
        for block in self.blocks:
            x = block(x, mask)
        return F.log_softmax(self.ctc_head(self.norm(x)).float(), dim=-1), lengths

    # --- text <-> ids --------------------------------------------------------------------

    def encode_text(self, text: str) -> tuple[list[int], int]:
        """A label (logical order) -> CTC target ids in visual order, and how many characters were unknown (dropped)."""
        from babeltower.modalities.bidi import to_visual

        ids, unknown = [], 0
        for ch in to_visual(text):
            index = self._index.get(ch)
            if index is None:
                unknown += 1
            else:
                ids.append(index)
        return ids, unknown

    def decode_ids(self, ids: Sequence[int]) -> str:
        """CTC output ids (visual order) -> text in logical order."""
        from babeltower.modalities.bidi import to_logical

        return to_logical("".join(self.config.charset[i] for i in ids if i < len(self.config.charset)))

    @torch.no_grad()
    def recognize(self, images: torch.Tensor, widths: torch.Tensor, script_consistency: bool = True) -> list[str]:
        """Transcripts (logical order) of a padded batch of line tensors.

        With an attached LM (:meth:`attach_lm`; a saved folder's ``charlm.json.gz``), CTC
        prefix beam search with the LM fused in; else greedy CTC where, with
        ``script_consistency``, each word keeps one of the scripts that share look-alike
        letters (Latin, Cyrillic, Greek): see :func:`script_consistent_decode`.
        """
        log_probs, lengths = self(images, widths)
        if self.lm is not None:
            paths = self.lm_decode(log_probs, lengths, list(self.config.charset) + [""], self.blank_id)
        elif script_consistency:
            paths = script_consistent_decode(log_probs, lengths, self.blank_id, self.config.charset)
        else:
            paths = greedy_decode(log_probs, lengths, blank=self.blank_id)
        return [self.decode_ids(ids) for ids in paths]

    @torch.no_grad()
    def read(self, lines: Sequence, batch_size: int = 32) -> list[str]:
        """Transcribes PIL line images (any size and colour), in batches of similar width."""
        from babeltower.modalities.text_line import batch_lines, line_tensor

        tensors = [line_tensor(image, self.config.image_height, self.config.max_width) for image in lines]
        order = sorted(range(len(tensors)), key=lambda i: tensors[i].shape[-1])
        device = next(self.parameters()).device
        out: list[str] = [""] * len(tensors)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            images, widths = batch_lines([tensors[i] for i in chunk])
            for i, text in zip(chunk, self.recognize(images.to(device), widths.to(device))):
                out[i] = text
        return out

    # --- save / load ---------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path) -> Path:
        """Writes ``config.json`` (OCRConfig with the resolved charset) and ``model.safetensors``,
        and the attached LM with its fusion weights (``charlm.json.gz``), if any."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        fields = dataclasses.asdict(self.config)
        (folder / CONFIG_FILE).write_text(json.dumps(fields, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))
        self.save_lm(folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, map_location: str = "cpu", lm: bool = True, **overrides) -> "OCRModel":
        """Loads a folder written by :meth:`save_pretrained` (or a hub folder with ``ocr/``), strictly.

        Args:
            folder: The model folder, or an exported hub folder containing ``ocr/``.
            map_location: Device for the weights.
            lm: Attach the folder's character LM (``charlm.json.gz``) when it has one.
            **overrides: Run-time fields only (``attn_backend``, ``dropout``, ``max_width``).

        Raises:
            FileNotFoundError: A required file is missing (named).
            ValueError: Unknown config fields, or an override that changes weights.
            RuntimeError: Missing/unexpected/mis-shaped weights (keys named).
        """
        from safetensors.torch import load_file

        from babeltower.models.hub import strict_load

        folder = Path(folder)
        if (folder / "ocr").is_dir():
            folder = folder / "ocr"
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(
                    f"{str(folder)!r} is not a babeltower OCR folder: {name} is missing (OCRModel.save_pretrained writes it)"
                )
        fields = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(OCRConfig)}
        unknown = sorted(set(fields) - known) + sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"{folder / CONFIG_FILE}: unknown OCRConfig fields {unknown}; known: {sorted(known)}")
        runtime = {"attn_backend", "dropout", "max_width"}
        if set(overrides) - runtime:
            raise ValueError(f"cannot override {sorted(set(overrides) - runtime)} when loading saved weights; only {sorted(runtime)}")
        if not fields.get("charset"):
            raise ValueError(f"{folder / CONFIG_FILE}: 'charset' is empty; a saved recogniser must list its characters")
        fields.update(overrides)
        model = cls(OCRConfig(**fields))
        strict_load(model, load_file(str(folder / WEIGHTS_FILE), device=map_location), str(folder / WEIGHTS_FILE))
        if lm:
            model.load_lm(folder)
        return model.to(map_location).eval()
