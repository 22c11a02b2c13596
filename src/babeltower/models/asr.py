"""CTC speech recognition head: conv subsampling, Conformer (or Transformer) blocks, CTC.

Pipeline, in the order data flows::

    waveform (B, N) --ASRFeatures--> log-mel (B, n_mels, T)      [outside ASRModel]
        --Conv2dSubsampling (4x)--> (B, T', d) + sinusoidal positions
        --blocks (attention() with a key padding mask)--> states (B, T', d)
        --ctc_head--> log_probs (B, T', V + 1)

Design choices:

* The front end (:class:`ASRFeatures`: LogMel + per-utterance normalisation) is *not* a
  submodule of :class:`ASRModel`. It has no weights, so the model's state dict and
  ``model.safetensors`` hold learnable tensors only; the training system runs it (and
  SpecAugment) before the model, and :meth:`ASRModel.transcribe` builds one from the
  config for inference on raw waveforms.
* Vocabulary: the shared byte-level BPE tokenizer (``vocab_size`` tokens) plus one CTC
  blank appended at index ``blank_id == vocab_size`` (NeMo's convention), so token ids
  and CTC output indices coincide and special tokens simply never occur in targets. A
  ``vocab_size`` below the tokenizer's keeps its first (most frequent) tokens and the
  merges that make them: the same ids, a smaller output layer.
* Conformer block (Gulati et al. 2020): ½ macaron feed-forward, self-attention, conv
  module, ½ feed-forward, LayerNorm. The conv module's normalisation is a LayerNorm
  over channels instead of BatchNorm (NeMo's ``conv_norm_type: layer_norm``): BatchNorm
  statistics would mix in padding frames and differ between batch and single-utterance
  inference. Positions are absolute sinusoids added after subsampling (no relative
  position bias), so every block can use the project's one :func:`attention` kernel.
* Padding: frames beyond each utterance's length are zeroed before every convolution
  (subsampling and depthwise) and masked out as attention keys, so an utterance's
  outputs are the same alone or padded inside a batch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from babeltower.models.charlm import LMFusion, _logaddexp
from babeltower.models.attention import ATTENTION_BACKENDS, attention
from babeltower.models.text_encoder import masked_mean

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
BLOCK_TYPES: tuple[str, ...] = ("conformer", "transformer")
SUBSAMPLING_TYPES: tuple[str, ...] = ("conv2d", "conv1d", "whisper")
ACTIVATIONS: tuple[str, ...] = ("silu", "gelu")
POSITION_TYPES: tuple[str, ...] = ("sinusoidal", "whisper")
FEATURE_TYPES: tuple[str, ...] = ("utterance_norm", "whisper")
#: LogMel's 10 ms hop: feature frames per second of audio.
FRAMES_PER_SECOND = 100
#: Time reduction of the "conv2d" subsampling (two stride-2 convolutions).
SUBSAMPLING_FACTOR = 4
#: Shorter clips are padded with silence to this length before transcription (the
#: 25 ms STFT window and the 4x subsampling need a few frames).
MIN_SECONDS = 0.1


@dataclass
class ASRConfig:
    """Architecture of the CTC speech recognizer."""

    n_mels: int = 80
    """Log-mel bins of the input features (LogMel, 16 kHz, 25 ms window, 10 ms hop)."""

    sample_rate: int = 16000
    """Waveform rate the front end expects (used by ASRFeatures / transcribe)."""

    subsampling: str = "conv2d"
    """Time reduction before the blocks (4x: 10 ms frames become 40 ms frames): "conv2d" =
    two stride-2 3x3 Conv2d + GELU (NeMo style); "conv1d" = two stride-2 Conv1d over time
    (Whisper style, much cheaper on CPU); "whisper" = Whisper's own pair (stride 1, then
    stride 2: 20 ms frames, ``time_reduction`` 2), the layout its pretrained weights need."""

    time_reduction: int = 4
    """Frames of 10 ms per encoder frame: 4 (40 ms; both subsamplings), or 3 or 2 ("conv1d"
    only). CTC needs at least one encoder frame per output unit: characters of fast speech
    need 3."""

    d_model: int = 144
    """Width of the encoder states (also the subsampling conv channels)."""

    num_layers: int = 4
    """Number of encoder blocks."""

    num_heads: int = 4
    """Attention heads per block; must divide d_model."""

    ff_mult: int = 4
    """Feed-forward inner width as a multiple of d_model."""

    conv_kernel: int = 15
    """Depthwise convolution kernel of the Conformer conv module (odd, in 40 ms frames)."""

    activation: str = "silu"
    """Feed-forward activation: "silu" (babeltower's blocks) or "gelu" (Whisper's)."""

    positions: str = "sinusoidal"
    """Absolute position table added after subsampling: "sinusoidal" (Vaswani et al.,
    sine and cosine interleaved) or "whisper" (Whisper's table: all sines, then all
    cosines), which pretrained Whisper weights expect."""

    features: str = "utterance_norm"
    """Front-end normalisation of the log-mel features (:class:`ASRFeatures`):
    "utterance_norm" (zero mean, unit variance per utterance) or "whisper" (log10,
    floored 8 below the utterance's maximum, then (x + 4) / 4), which pretrained
    Whisper weights expect."""

    block: str = "conformer"
    """Encoder block type: "conformer" (FF/2, attention, conv module, FF/2) or
    "transformer" (pre-LN attention + feed-forward)."""

    dropout: float = 0.1
    """Dropout on residual branches, positions and attention probabilities."""

    attn_backend: str = "sdpa"
    """Attention kernel: "sdpa", "math" (reference) or "xformers" (CUDA only)."""

    vocab_size: int = 0
    """CTC vocabulary size V; the CTC head has V + 1 outputs (blank = V). 0: the whole
    tokenizer. Fewer than the tokenizer has: the CTC units are the tokenizer's first V
    tokens (:func:`babeltower.modalities.text.truncate_bpe_tokenizer`: the same ids, BPE
    merges cut to those), so transcripts split into more, shorter pieces and the output
    layer, its softmax and the CTC loss shrink by the same factor."""

    tokenizer: Optional[str] = None
    """Tokenizer folder; None: babeltower's packaged default tokenizer."""

    text_dim: Optional[int] = None
    """Output width of utterance_embedding's projection (the text encoder's embedding
    width, for the SAMU-XLSR-style alignment loss); None: no projection, the pooled
    states (width d_model) are the embedding."""

    gradient_checkpointing: bool = False
    """Recompute block activations in backward to save memory (training mode only)."""

    max_seconds: float = 30.0
    """Longest input accepted, in seconds of audio; longer features raise an error."""

    def __post_init__(self) -> None:
        if self.block not in BLOCK_TYPES:
            raise ValueError(f"ASRConfig.block must be one of {BLOCK_TYPES}, got {self.block!r}")
        if self.subsampling not in SUBSAMPLING_TYPES:
            raise ValueError(f"ASRConfig.subsampling must be one of {SUBSAMPLING_TYPES}, got {self.subsampling!r}")
        if self.time_reduction not in CONV1D_STRIDES:
            raise ValueError(f"ASRConfig.time_reduction must be one of {sorted(CONV1D_STRIDES)}, got {self.time_reduction}")
        for name, value, allowed in (("activation", self.activation, ACTIVATIONS), ("positions", self.positions, POSITION_TYPES),
                                     ("features", self.features, FEATURE_TYPES)):
            if value not in allowed:
                raise ValueError(f"ASRConfig.{name} must be one of {allowed}, got {value!r}")
        if self.subsampling == "whisper" and self.time_reduction != 2:
            raise ValueError(
                f"ASRConfig.subsampling='whisper' reduces time 2x (stride 1, then 2); set time_reduction: 2, got {self.time_reduction}"
            )
        if self.subsampling == "conv2d" and self.time_reduction != 4:
            raise ValueError(
                f"ASRConfig.time_reduction={self.time_reduction} needs subsampling: conv1d (conv2d reduces time 4x)"
            )
        if self.attn_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"ASRConfig.attn_backend must be one of {ATTENTION_BACKENDS}, got {self.attn_backend!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"ASRConfig.d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            raise ValueError(f"ASRConfig.conv_kernel must be a positive odd number, got {self.conv_kernel}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ASRConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.vocab_size < 0:
            raise ValueError(f"ASRConfig.vocab_size must be >= 0 (0: from the tokenizer), got {self.vocab_size}")
        if self.text_dim is not None and self.text_dim <= 0:
            raise ValueError(f"ASRConfig.text_dim must be a positive int or None, got {self.text_dim}")


def asr_tiny(**overrides) -> ASRConfig:
    """A test-sized recognizer: d_model 64, 2 Conformer layers, 4 heads."""
    fields = dict(d_model=64, num_layers=2, num_heads=4, ff_mult=2, conv_kernel=7)
    fields.update(overrides)
    return ASRConfig(**fields)


def asr_small(**overrides) -> ASRConfig:
    """The default size: d_model 144, 4 Conformer layers (about Conformer-S width)."""
    return ASRConfig(**overrides)


def asr_whisper_tiny(**overrides) -> ASRConfig:
    """Whisper tiny's audio encoder (Radford et al. 2022): width 384, 4 pre-LN Transformer
    blocks of 6 heads, GELU, 20 ms frames, Whisper's positions and features. Its
    pretrained weights load with :func:`babeltower.models.whisper.load_whisper_encoder`."""
    fields = dict(d_model=384, num_layers=4, num_heads=6, ff_mult=4, block="transformer", subsampling="whisper",
                  time_reduction=2, activation="gelu", positions="whisper", features="whisper", dropout=0.0)
    fields.update(overrides)
    return ASRConfig(**fields)


def load_asr_tokenizer(config: ASRConfig):
    """The tokenizer named by ``config.tokenizer`` (None: the packaged default)."""
    from babeltower.modalities.text import load_tokenizer_or_default

    return load_tokenizer_or_default(config.tokenizer)


def lengths_to_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) lengths -> (B, size) bool, True at valid positions."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def _conv_out_length(lengths: torch.Tensor, stride: int = 2) -> torch.Tensor:
    # kernel 3, padding 1: floor((L + 2 - 3) / stride) + 1
    return torch.div(lengths - 1, stride, rounding_mode="floor") + 1


# --- front end ---------------------------------------------------------------------------


class ASRFeatures(nn.Module):
    """Waveforms -> normalised log-mel features and frame counts (no learnable weights).

    Normalisation is per utterance over all bins and its valid frames (zero mean, unit
    variance; NeMo's ``normalize: all_features``). Per-bin normalisation would erase a
    steady tone, and a global constant would depend on the recording level. Padding
    frames are set to 0.

    Args:
        n_mels: Mel bins.
        sample_rate: Waveform rate in Hz.
    """

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000, normalization: str = "utterance_norm"):
        super().__init__()
        from babeltower.modalities.audio import LogMel

        if normalization not in FEATURE_TYPES:
            raise ValueError(f"ASRFeatures: normalization must be one of {FEATURE_TYPES}, got {normalization!r}")
        self.normalization = normalization
        self.logmel = LogMel(sample_rate=sample_rate, n_mels=n_mels)

    @classmethod
    def for_config(cls, config: "ASRConfig") -> "ASRFeatures":
        """The front end a model with ``config`` was trained with."""
        return cls(config.n_mels, config.sample_rate, config.features)

    def forward(self, waveforms: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: waveforms (B, N) padded samples; audio_lengths (B,) valid samples.

        Returns:
            features (B, n_mels, T) float32 and frame_lengths (B,) long.
        """
        features = self.logmel(waveforms)  # (B, n_mels, T)
        frame_lengths = self.logmel.lengths_to_frames(audio_lengths.long()).clamp(max=features.shape[-1])  # (B,)
        valid = lengths_to_mask(frame_lengths, features.shape[-1])[:, None, :]  # (B, 1, T)
        if self.normalization == "whisper":
            # Whisper's log_mel_spectrogram: log10, floor at (max - 8), (x + 4) / 4. Padding
            # gets the floor, as the zero samples Whisper pads its 30 s windows with do.
            features = features / math.log(10.0)
            floor = features.masked_fill(~valid, -math.inf).amax(dim=(1, 2), keepdim=True) - 8.0  # (B, 1, 1)
            features = (torch.maximum(features, floor) + 4.0) / 4.0
            return torch.where(valid, features, (floor + 4.0) / 4.0), frame_lengths
        count = (frame_lengths * features.shape[1]).clamp(min=1).to(features.dtype)[:, None, None]  # (B, 1, 1)
        mean = (features * valid).sum(dim=(1, 2), keepdim=True) / count
        var = ((features - mean).square() * valid).sum(dim=(1, 2), keepdim=True) / count
        features = (features - mean) / (var.sqrt() + 1e-5)
        return features.masked_fill(~valid, 0.0), frame_lengths


# --- encoder -----------------------------------------------------------------------------


class Conv2dSubsampling(nn.Module):
    """Two stride-2 3x3 Conv2d + GELU over (time, mel), then a linear map to d_model."""

    def __init__(self, n_mels: int, d_model: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, d_model, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(d_model, d_model, kernel_size=3, stride=2, padding=1)
        freq = (((n_mels - 1) // 2 + 1) - 1) // 2 + 1
        self.out_proj = nn.Linear(d_model * freq, d_model)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # features: (B, F, T); zero padding frames so they look like the convs' own zero padding.
        x = features.masked_fill(~lengths_to_mask(lengths, features.shape[-1])[:, None, :], 0.0)
        x = x.transpose(1, 2).unsqueeze(1)  # (B, 1, T, F)
        x = F.gelu(self.conv1(x))  # (B, C, T1, F1)
        lengths = _conv_out_length(lengths)
        x = x.masked_fill(~lengths_to_mask(lengths, x.shape[2])[:, None, :, None], 0.0)
        x = F.gelu(self.conv2(x))  # (B, C, T2, F2)
        lengths = _conv_out_length(lengths)
        b, c, t, f = x.shape
        x = x.permute(0, 2, 1, 3).reshape(b, t, c * f)  # (B, T2, C*F2)
        return self.out_proj(x), lengths  # (B, T2, d)


#: Conv1d subsampling strides (first, second conv) per time reduction.
CONV1D_STRIDES: dict[int, tuple[int, int]] = {2: (2, 1), 3: (3, 1), 4: (2, 2)}
#: Whisper's subsampling strides (its 2x: the first convolution keeps 10 ms frames).
WHISPER_STRIDES: tuple[int, int] = (1, 2)


class Conv1dSubsampling(nn.Module):
    """Two Conv1d (kernel 3) + GELU over time with the mel bins as channels (2x, 3x or 4x).

    Whisper's front-end convolutions: about d_model/3 times fewer multiply-adds than the
    Conv2d subsampling at the same width (it never convolves over frequency), which
    matters on CPUs. Strides :data:`CONV1D_STRIDES`: 4x (40 ms frames, 25/s) is enough
    for BPE pieces; character units of fast French or Spanish speech exceed 25/s, which
    CTC cannot align (it needs at least one frame per unit), so character models use 3x.
    """

    def __init__(self, n_mels: int, d_model: int, strides: tuple[int, int] = CONV1D_STRIDES[4]):
        super().__init__()
        self.strides = tuple(strides)
        self.conv1 = nn.Conv1d(n_mels, d_model, kernel_size=3, stride=self.strides[0], padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, kernel_size=3, stride=self.strides[1], padding=1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = features.masked_fill(~lengths_to_mask(lengths, features.shape[-1])[:, None, :], 0.0)  # (B, F, T)
        x = F.gelu(self.conv1(x))  # (B, d, T1)
        lengths = _conv_out_length(lengths, self.strides[0])
        x = x.masked_fill(~lengths_to_mask(lengths, x.shape[-1])[:, None, :], 0.0)
        x = F.gelu(self.conv2(x))  # (B, d, T2)
        return x.transpose(1, 2), _conv_out_length(lengths, self.strides[1])  # (B, T2, d)


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(length, dim) sine/cosine position table (Vaswani et al. 2017)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]  # (T, 1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: dim // 2])
    return table.to(dtype)


def whisper_positions(length: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(length, dim) Whisper's position table: ``dim / 2`` sines, then ``dim / 2`` cosines,
    timescales from 1 to 10,000 (Radford et al. 2022, ``whisper.model.sinusoids``)."""
    half = dim // 2
    inv_timescales = torch.exp(-math.log(10000.0) / (half - 1) * torch.arange(half, device=device, dtype=torch.float32))
    scaled = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_timescales[None, :]  # (T, dim/2)
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1).to(dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention (HF names q_proj/k_proj/v_proj/out_proj) over :func:`attention`."""

    def __init__(self, config: ASRConfig):
        super().__init__()
        d = config.d_model
        self.num_heads, self.dropout, self.backend = config.num_heads, config.dropout, config.attn_backend
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, T, d); mask: (B, 1, 1, T) bool, True = real frame
        b, t, d = x.shape
        q, k, v = (proj(x).view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))  # (B, nh, T, hs)
        y = attention(q, k, v, mask, dropout_p=self.dropout if self.training else 0.0, backend=self.backend)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))  # (B, T, d)


class FeedForward(nn.Module):
    """LayerNorm -> Linear -> SiLU (or GELU) -> dropout -> Linear -> dropout."""

    def __init__(self, config: ASRConfig):
        super().__init__()
        d = config.d_model
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, d * config.ff_mult)
        self.fc2 = nn.Linear(d * config.ff_mult, d)
        self.dropout = nn.Dropout(config.dropout)
        self.activation = F.gelu if config.activation == "gelu" else F.silu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(self.activation(self.fc1(self.norm(x))))))


class ConvModule(nn.Module):
    """Conformer conv module: LN, pointwise conv + GLU, depthwise conv, LN, SiLU, pointwise conv."""

    def __init__(self, config: ASRConfig):
        super().__init__()
        d = config.d_model
        self.norm = nn.LayerNorm(d)
        self.pointwise_in = nn.Conv1d(d, 2 * d, kernel_size=1)
        self.depthwise = nn.Conv1d(d, d, kernel_size=config.conv_kernel, padding=config.conv_kernel // 2, groups=d)
        self.conv_norm = nn.LayerNorm(d)  # LayerNorm, not BatchNorm: see the module docstring
        self.pointwise_out = nn.Conv1d(d, d, kernel_size=1)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # x: (B, T, d); valid: (B, T) bool
        y = F.glu(self.pointwise_in(self.norm(x).transpose(1, 2)), dim=1)  # (B, d, T)
        y = self.depthwise(y.masked_fill(~valid[:, None, :], 0.0))  # (B, d, T)
        y = F.silu(self.conv_norm(y.transpose(1, 2)))  # (B, T, d)
        return self.dropout(self.pointwise_out(y.transpose(1, 2)).transpose(1, 2))  # (B, T, d)


class ConformerBlock(nn.Module):
    """x + FF/2, x + MHSA, x + Conv, x + FF/2, then LayerNorm (Gulati et al. 2020)."""

    def __init__(self, config: ASRConfig):
        super().__init__()
        self.ff1 = FeedForward(config)
        self.attn_norm = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config)
        self.conv = ConvModule(config)
        self.ff2 = FeedForward(config)
        self.final_norm = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.dropout(self.attn(self.attn_norm(x), valid[:, None, None, :]))
        x = x + self.conv(x, valid)
        x = x + 0.5 * self.ff2(x)
        return self.final_norm(x)


class TransformerBlock(nn.Module):
    """Pre-LN transformer encoder block: x + MHSA(LN x), x + FF(LN x)."""

    def __init__(self, config: ASRConfig):
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config)
        self.ff = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), valid[:, None, None, :]))
        return x + self.ff(x)


class ASRModel(LMFusion, nn.Module):
    """CTC speech recognizer over the shared tokenizer's vocabulary.

    Args:
        config: the architecture; ``vocab_size`` 0 is resolved from the tokenizer and
            written back into ``self.config``.

    Attributes:
        tokenizer: the shared byte-level BPE tokenizer, cut to its first ``vocab_size``
            tokens when the config asks for fewer (token id == CTC output index).
        blank_id: index of the CTC blank, ``== config.vocab_size`` (the last output).
    """

    def __init__(self, config: ASRConfig):
        super().__init__()
        self.tokenizer = load_asr_tokenizer(config)
        if config.vocab_size == 0:
            config = dataclasses.replace(config, vocab_size=len(self.tokenizer))
        elif config.vocab_size < len(self.tokenizer):
            from babeltower.modalities.text import truncate_bpe_tokenizer

            name = f"ASRConfig.vocab_size={config.vocab_size}, tokenizer {config.tokenizer or 'the packaged default'}"
            self.tokenizer = truncate_bpe_tokenizer(self.tokenizer, config.vocab_size, name)
        self.config = config
        self.blank_id = config.vocab_size
        if config.subsampling == "conv2d":
            self.subsampling = Conv2dSubsampling(config.n_mels, config.d_model)
        else:
            strides = WHISPER_STRIDES if config.subsampling == "whisper" else CONV1D_STRIDES[config.time_reduction]
            self.subsampling = Conv1dSubsampling(config.n_mels, config.d_model, strides)
        self.positions = whisper_positions if config.positions == "whisper" else sinusoidal_positions
        self.dropout = nn.Dropout(config.dropout)
        block = ConformerBlock if config.block == "conformer" else TransformerBlock
        self.blocks = nn.ModuleList(block(config) for _ in range(config.num_layers))
        # A Transformer stack is pre-LN and needs a final norm; a Conformer block ends in one.
        self.final_norm = nn.LayerNorm(config.d_model) if config.block == "transformer" else nn.Identity()
        self.ctc_head = nn.Linear(config.d_model, config.vocab_size + 1)
        self.utterance_projection = (
            nn.Linear(config.d_model, config.text_dim) if config.text_dim is not None else None
        )

    #: Fusion settings of an attached character LM, chosen on one half of the open-vocabulary
    #: validation set for the Whisper-encoder recogniser (scripts/tune_asr_lm.py; the scratch
    #: Conformer of session 8 had 0.5 / 1.5).
    LM_DEFAULTS = {"alpha": 0.35, "beta": 2.0, "beam_size": 8}

    def lm_units(self) -> list[str]:
        """The text each output id stands for (special tokens and the blank: "")."""
        if getattr(self, "_lm_units", None) is None:
            special = set(self.tokenizer.all_special_ids)
            self._lm_units = [
                "" if i in special else self.tokenizer.decode([i], clean_up_tokenization_spaces=False)
                for i in range(self.config.vocab_size)
            ] + [""]
        return self._lm_units

    def lm_text(self, text: str) -> str:
        """``text`` as the CTC output spells it (the tokenizer's normalisation): what a character LM is trained on."""
        units = self.lm_units()
        return "".join(units[i] for i in self.tokenizer(text, add_special_tokens=False)["input_ids"] if i < len(units))

    @property
    def decoding(self) -> str:
        """How :meth:`transcribe` decodes by default, in words (for reports)."""
        return self.lm_description() if self.lm is not None else "greedy CTC"

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) feature frame counts -> (B,) encoder frame counts (subsampling)."""
        if self.config.subsampling != "conv2d":
            first, second = self.subsampling.strides
            return _conv_out_length(_conv_out_length(lengths, first), second)
        return _conv_out_length(_conv_out_length(lengths))

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encodes log-mel features and scores every output frame.

        Args:
            features: (B, n_mels, T) normalised log-mel features (see :class:`ASRFeatures`).
            lengths: (B,) valid frames per utterance.

        Returns:
            log_probs (B, T', V + 1) float32 CTC log-probabilities (blank last),
            out_lengths (B,) valid output frames, states (B, T', d) encoder states.
        """
        if features.dim() != 3 or features.shape[1] != self.config.n_mels:
            raise ValueError(
                f"ASRModel expects features (B, n_mels={self.config.n_mels}, T), got {tuple(features.shape)}"
            )
        max_frames = int(self.config.max_seconds * FRAMES_PER_SECOND) + 1
        if features.shape[-1] > max_frames:
            raise ValueError(
                f"input has {features.shape[-1]} frames ({features.shape[-1] / FRAMES_PER_SECOND:.1f} s), over "
                f"ASRConfig.max_seconds={self.config.max_seconds}; split the audio or raise max_seconds"
            )
        x, out_lengths = self.encode_prefix(features, lengths, 0)
        return self.forward_from(x, out_lengths, 0)

    def encode_prefix(self, features: torch.Tensor, lengths: torch.Tensor, num_blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Subsampling, positions and the first ``num_blocks`` blocks: (B, T', d) states and (B,) lengths.

        With :meth:`forward_from` it splits :meth:`forward` in two, so a training system
        can cache the output of a frozen prefix per clip.
        """
        lengths = lengths.to(features.device).long()
        x, out_lengths = self.subsampling(features, lengths)  # (B, T', d)
        x = self.dropout(x + self.positions(x.shape[1], x.shape[2], x.device, x.dtype))
        return self._run_blocks(x, out_lengths, 0, num_blocks), out_lengths

    def forward_from(
        self, x: torch.Tensor, out_lengths: torch.Tensor, first_block: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The blocks from ``first_block`` on, the final norm and the CTC head (see :meth:`forward`)."""
        x = self._run_blocks(x, out_lengths, first_block, len(self.blocks))
        states = self.final_norm(x)  # (B, T', d)
        log_probs = F.log_softmax(self.ctc_head(states).float(), dim=-1)  # (B, T', V+1)
        return log_probs, out_lengths, states

    def _run_blocks(self, x: torch.Tensor, out_lengths: torch.Tensor, first: int, stop: int) -> torch.Tensor:
        valid = lengths_to_mask(out_lengths, x.shape[1])  # (B, T')
        for block in self.blocks[first:stop]:
            if self.config.gradient_checkpointing and self.training:
                from torch.utils.checkpoint import checkpoint

                x = checkpoint(block, x, valid, use_reentrant=False)
            else:
                x = block(x, valid)
        return x

    def utterance_embedding(self, states: torch.Tensor, out_lengths: torch.Tensor) -> torch.Tensor:
        """Mean of the valid encoder states, projected to ``text_dim`` (SAMU-XLSR-style).

        Args:
            states: (B, T', d) from :meth:`forward`.
            out_lengths: (B,) valid frames.

        Returns:
            (B, text_dim), or (B, d) when ``config.text_dim`` is None.
        """
        pooled = masked_mean(states, lengths_to_mask(out_lengths, states.shape[1]))  # (B, d)
        return self.utterance_projection(pooled) if self.utterance_projection is not None else pooled

    # --- decoding ------------------------------------------------------------------------

    def decode_tokens(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        """Token id lists -> valid text: tokenizer decode (special tokens skipped), then
        :func:`~babeltower.modalities.speech_units.clean_transcript`.

        With character units every token is a whole code point; with byte-level BPE a
        path can end inside a UTF-8 sequence, which decodes to U+FFFD: the clean-up drops
        those incomplete sequences (and orphan jamo or combining marks), so no
        transcript ever holds a replacement or partial character.
        """
        from babeltower.modalities.speech_units import clean_transcript

        return [clean_transcript(self.tokenizer.decode(list(ids), skip_special_tokens=True)) for ids in token_ids]

    @torch.no_grad()
    def transcribe(
        self, waveforms: torch.Tensor, audio_lengths: Optional[torch.Tensor] = None, beam_size: int = 1
    ) -> list[str]:
        """Waveforms at ``config.sample_rate`` -> transcripts (greedy, or beam search if beam_size > 1).

        Args:
            waveforms: (B, N) padded or (N,) samples.
            audio_lengths: (B,) valid samples; None: all N.
            beam_size: 1 for greedy decoding, else CTC prefix beam search width. With an
                attached character LM (:meth:`attach_lm`, a folder's ``charlm.json.gz``) the
                search always fuses it, with the saved beam unless ``beam_size`` > 1.
        """
        if waveforms.dim() == 1:
            waveforms = waveforms[None]
        if waveforms.dim() != 2:
            raise ValueError(f"transcribe expects waveforms (B, N) or (N,), got shape {tuple(waveforms.shape)}")
        if audio_lengths is None:
            audio_lengths = torch.full((waveforms.shape[0],), waveforms.shape[1], dtype=torch.long)
        # A clip shorter than the STFT window (even 1 sample) cannot be framed: pad it with
        # silence to MIN_SECONDS, which then counts as part of the clip.
        minimum = max(MIN_SECONDS * self.config.sample_rate, 1)
        if waveforms.shape[1] < minimum:
            waveforms = F.pad(waveforms, (0, int(minimum) - waveforms.shape[1]))
        audio_lengths = audio_lengths.clamp(min=int(minimum))
        device = next(self.parameters()).device
        front_end = ASRFeatures.for_config(self.config).to(device)
        features, frame_lengths = front_end(waveforms.to(device), audio_lengths.to(device))
        was_training = self.training
        self.eval()
        try:
            log_probs, out_lengths, _ = self(features, frame_lengths)
        finally:
            self.train(was_training)
        if self.lm is not None:
            tokens = self.lm_decode(log_probs, out_lengths, self.lm_units(), self.blank_id, beam_size=beam_size)
        elif beam_size > 1:
            tokens = beam_search_decode(log_probs, out_lengths, beam_size=beam_size, blank=self.blank_id)
        else:
            tokens = greedy_decode(log_probs, out_lengths, blank=self.blank_id)
        return self.decode_tokens(tokens)

    # --- save / load ---------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path) -> Path:
        """Writes ``config.json`` (ASRConfig, vocab_size resolved, tokenizer null),
        ``model.safetensors`` and the tokenizer files into ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        fields = dataclasses.asdict(self.config)
        fields["tokenizer"] = None  # the folder holds the tokenizer itself
        fields["gradient_checkpointing"] = False
        (folder / CONFIG_FILE).write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))
        self.tokenizer.save_pretrained(str(folder))
        self.save_lm(folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, map_location: str = "cpu", lm: bool = True, **overrides) -> "ASRModel":
        """Loads a folder written by :meth:`save_pretrained` (or a hub folder with ``asr/``), strictly.

        Args:
            folder: the model folder, or an exported hub folder containing ``asr/``.
            map_location: device for the weights.
            lm: attach the folder's character LM (``charlm.json.gz``) when it has one.
            **overrides: run-time ASRConfig fields (``attn_backend``, ``dropout``,
                ``gradient_checkpointing``, ``max_seconds``).

        Returns:
            The model in eval mode.

        Raises:
            FileNotFoundError: a required file is missing (named).
            ValueError: unknown config fields, or an override that changes weights.
            RuntimeError: missing/unexpected/mis-shaped weights (keys named).
        """
        from safetensors.torch import load_file

        from babeltower.models.hub import strict_load

        folder = Path(folder)
        if (folder / "asr").is_dir():
            folder = folder / "asr"
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(
                    f"{str(folder)!r} is not a babeltower ASR folder: {name} is missing "
                    "(ASRModel.save_pretrained writes it)"
                )
        fields = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(ASRConfig)}
        unknown = sorted(set(fields) - known) + sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"{folder / CONFIG_FILE}: unknown ASRConfig fields {unknown}; known: {sorted(known)}")
        runtime = {"attn_backend", "dropout", "gradient_checkpointing", "max_seconds"}
        if set(overrides) - runtime:
            raise ValueError(f"cannot override {sorted(set(overrides) - runtime)} when loading saved weights")
        fields.update(overrides, tokenizer=str(folder))
        model = cls(ASRConfig(**fields))
        if len(model.tokenizer) != model.config.vocab_size:
            raise ValueError(
                f"{folder}: the tokenizer has {len(model.tokenizer)} tokens but {CONFIG_FILE} has "
                f"vocab_size={model.config.vocab_size}"
            )
        strict_load(model, load_file(str(folder / WEIGHTS_FILE), device=map_location), str(folder / WEIGHTS_FILE))
        if lm:
            model.load_lm(folder)
        return model.to(map_location).eval()


# --- CTC decoding ------------------------------------------------------------------------


def _blank_index(log_probs: torch.Tensor, blank: Optional[int]) -> int:
    return log_probs.shape[-1] - 1 if blank is None else blank


def greedy_decode(
    log_probs: torch.Tensor, lengths: Optional[torch.Tensor] = None, blank: Optional[int] = None
) -> list[list[int]]:
    """Best-path CTC decoding: argmax per frame, collapse repeats, drop blanks.

    Args:
        log_probs: (B, T, C) scores (log-probabilities or logits).
        lengths: (B,) valid frames; None: all T.
        blank: blank index; None: the last class (``ASRModel.blank_id``).

    Returns:
        One token id list per utterance.
    """
    blank = _blank_index(log_probs, blank)
    best = log_probs.argmax(dim=-1).cpu()  # (B, T)
    lengths = [best.shape[1]] * best.shape[0] if lengths is None else lengths.tolist()
    out = []
    for row, length in zip(best.tolist(), lengths):
        tokens, previous = [], None
        for token in row[:length]:
            if token != previous and token != blank:
                tokens.append(token)
            previous = token
        out.append(tokens)
    return out


def beam_search_decode(
    log_probs: torch.Tensor,
    lengths: Optional[torch.Tensor] = None,
    beam_size: int = 8,
    blank: Optional[int] = None,
    token_candidates: Optional[int] = None,
) -> list[list[int]]:
    """CTC prefix beam search (Hannun et al. 2014), no language model.

    Each prefix keeps two log-probabilities, ending in blank and ending in a token, so
    that all alignments of a prefix are summed (unlike best path). Per frame, only the
    ``token_candidates`` most likely tokens plus each beam's last token are tried as
    extensions (the latter keeps the "repeat collapses into the prefix" mass exact).

    Args:
        log_probs: (B, T, C) log-probabilities.
        lengths: (B,) valid frames; None: all T.
        beam_size: prefixes kept after each frame.
        blank: blank index; None: the last class.
        token_candidates: tokens tried per frame; None: ``beam_size`` (all if C is smaller).

    Returns:
        The most probable prefix per utterance, as token id lists.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    blank = _blank_index(log_probs, blank)
    scores = log_probs.detach().float().cpu()
    num_classes = scores.shape[-1]
    k = min(num_classes, (token_candidates or beam_size) + 1)  # +1: blank may be among the top
    lengths = [scores.shape[1]] * scores.shape[0] if lengths is None else lengths.tolist()
    results = []
    for b, length in enumerate(lengths):
        frames = scores[b, :length]  # (T, C)
        top = frames.topk(k, dim=-1).indices.tolist()  # (T, k)
        frames_list = frames.tolist()
        neg_inf = -math.inf
        beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg_inf)}  # prefix -> (p_blank, p_token)
        for t in range(length):
            lp = frames_list[t]
            candidates = {c for c in top[t] if c != blank}
            candidates.update(prefix[-1] for prefix in beams if prefix)
            nxt: dict[tuple[int, ...], list[float]] = {}

            def entry(prefix):
                if prefix not in nxt:
                    nxt[prefix] = [neg_inf, neg_inf]
                return nxt[prefix]

            for prefix, (p_b, p_nb) in beams.items():
                total = _logaddexp(p_b, p_nb)
                e = entry(prefix)
                e[0] = _logaddexp(e[0], total + lp[blank])  # blank: prefix unchanged, now ends in blank
                last = prefix[-1] if prefix else None
                for c in candidates:
                    p = lp[c]
                    if c == last:
                        e[1] = _logaddexp(e[1], p_nb + p)  # repeat without blank collapses into prefix
                        grown = entry(prefix + (c,))
                        grown[1] = _logaddexp(grown[1], p_b + p)  # blank in between: a new token
                    else:
                        grown = entry(prefix + (c,))
                        grown[1] = _logaddexp(grown[1], total + p)
            ranked = sorted(nxt.items(), key=lambda item: _logaddexp(*item[1]), reverse=True)[:beam_size]
            beams = {prefix: (p[0], p[1]) for prefix, p in ranked}
        best = max(beams.items(), key=lambda item: _logaddexp(*item[1]))[0]
        results.append(list(best))
    return results
