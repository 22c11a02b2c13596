"""Audio: bytes/files -> mono waveforms -> log-mel features, shared by training, eval and demos.

I/O goes through soundfile (wav/flac/ogg): torchaudio.load/save need torchcodec and
FFmpeg, which this stack lacks (../shared/notes/environment.md). Features follow
Whisper/NeMo: 16 kHz, 25 ms Hann window (n_fft 400), 10 ms hop, 80 Slaney mel bins of
the power spectrum, natural log clamped at 1e-10.
"""

from __future__ import annotations

import io
import os
import random
from typing import Sequence

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch import nn

__all__ = ["load_audio", "check_wav_complete", "save_audio", "LogMel", "SpecAugment", "bucket_by_duration"]


def _describe(path_or_bytes, where: str) -> str:
    if where:
        return where
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return f"<{len(path_or_bytes)} bytes of audio>"
    return str(path_or_bytes)


#: Declared WAV data sizes at or above this are streaming placeholders (espeak-ng
#: --stdout writes 0x7ffff000, others 0xffffffff): the real length is unknown.
_STREAMING_WAV_SIZE = 0x7FFF0000


def check_wav_complete(head: bytes, total_size: int, name: str) -> None:
    """Raises when a RIFF/WAVE file holds fewer audio bytes than its header declares.

    libsndfile reads a cut-off WAV without complaint and returns the samples that are
    there, so a truncated download would pass as a shorter clip. Streaming headers (size
    0 or a placeholder, :data:`_STREAMING_WAV_SIZE`) are accepted.

    Args:
        head: The file's first bytes (at least up to the ``data`` chunk header).
        total_size: The file's size in bytes.
        name: The file's name for the message.

    Raises:
        ValueError: The ``data`` chunk is declared longer than the file.
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    offset = 12
    while offset + 8 <= len(head):
        chunk, size = head[offset : offset + 4], int.from_bytes(head[offset + 4 : offset + 8], "little")
        if chunk == b"data":
            available = total_size - (offset + 8)
            if 0 < size < _STREAMING_WAV_SIZE and available < size:
                raise ValueError(
                    f"{name}: truncated WAV file: the header declares {size} bytes of audio but only {available} "
                    "follow; the file was cut off (copy or export it again)"
                )
            return
        offset += 8 + size + (size & 1)


def load_audio(
    path_or_bytes: str | os.PathLike | bytes,
    *,
    target_rate: int = 16000,
    where: str = "",
    min_peak: float | None = 1e-4,
    max_seconds: float | None = None,
) -> torch.Tensor:
    """Reads an audio file or encoded bytes as a mono float32 waveform at ``target_rate``.

    Channels are averaged; the rate is changed with ``torchaudio.functional.resample``
    when it differs.

    Args:
        path_or_bytes: A wav/flac/ogg path, or the file's bytes (e.g. a shard member).
        target_rate: Output sample rate in Hz.
        where: Name for error messages (shard and key) when the source is bytes.
        min_peak: Reject audio whose absolute peak after downmixing is below this
            (silence or a failed recording); None disables the check.
        max_seconds: Reject audio longer than this; None disables the check.

    Returns:
        (T,) float32 waveform.

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: Unreadable/corrupt data, a truncated WAV (fewer bytes than its
            header declares), no samples, NaN/Inf samples, silence, or too long; the
            message names the file.
    """
    name = _describe(path_or_bytes, where)
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(path_or_bytes))
    else:
        if not os.path.exists(path_or_bytes):
            raise FileNotFoundError(f"{name}: audio file does not exist")
        if os.path.isdir(path_or_bytes):
            raise ValueError(f"{name}: is a folder; expected an audio file (wav/flac/ogg)")
        source = path_or_bytes
    if isinstance(source, io.BytesIO):
        check_wav_complete(source.getbuffer()[:4096].tobytes(), source.getbuffer().nbytes, name)
    else:
        with open(source, "rb") as handle:
            check_wav_complete(handle.read(4096), os.fstat(handle.fileno()).st_size, name)
    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"{name}: cannot decode audio ({err}); expected a readable wav/flac/ogg file") from err
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"{name}: audio has 0 samples")
    if not np.isfinite(data).all():
        raise ValueError(f"{name}: audio contains NaN or Inf samples")
    seconds = data.shape[0] / rate
    if max_seconds is not None and seconds > max_seconds:
        raise ValueError(f"{name}: audio is {seconds:.2f} s long; max_seconds is {max_seconds}")
    wave = torch.from_numpy(data).mean(dim=1)  # (T,)
    peak = float(wave.abs().max())
    if min_peak is not None and peak < min_peak:
        raise ValueError(f"{name}: audio is silent (peak {peak:.2e} < min_peak {min_peak:.0e})")
    if rate != target_rate:
        wave = torchaudio.functional.resample(wave, orig_freq=rate, new_freq=target_rate)  # (T',)
    return wave.contiguous()


def save_audio(
    path: str | os.PathLike,
    waveform: torch.Tensor | np.ndarray,
    rate: int,
    *,
    overwrite: bool = False,
    subtype: str | None = None,
) -> None:
    """Writes a waveform with soundfile; the format follows the extension (.wav, .flac, .ogg).

    Args:
        path: Output file.
        waveform: (T,) mono or (C, T) multi-channel samples in [-1, 1].
        rate: Sample rate in Hz.
        overwrite: Allow replacing an existing file.
        subtype: soundfile subtype (e.g. "PCM_16", "FLOAT"); None uses the format's default.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: Bad shape, non-finite samples, or a non-positive rate.
    """
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True to replace it")
    if int(rate) != rate or rate <= 0:
        raise ValueError(f"{path}: rate={rate!r}; expected a positive integer sample rate")
    data = waveform.detach().cpu().float().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform, np.float32)
    if data.ndim == 2:
        data = data.T  # (C, T) -> (T, C), soundfile's layout
    elif data.ndim != 1:
        raise ValueError(f"{path}: waveform has shape {tuple(data.shape)}; expected (T,) or (C, T)")
    if not np.isfinite(data).all():
        raise ValueError(f"{path}: waveform contains NaN or Inf samples")
    sf.write(os.fspath(path), data, int(rate), subtype=subtype)


class LogMel(nn.Module):
    """Whisper/NeMo-style log-mel features: power mel spectrogram, then log(clamp(x, 1e-10)).

    Frames are centred (reflect padding of n_fft // 2 each side), so a clip of N
    samples gives ``N // hop + 1`` frames (:meth:`lengths_to_frames`).

    Args:
        sample_rate: Input rate in Hz.
        n_mels: Mel bins (80 with n_fft 400; more bins than that leave empty filters).
        win_ms: Window length in milliseconds.
        hop_ms: Hop in milliseconds.
        n_fft: FFT size; must be at least the window length in samples.
    """

    def __init__(self, sample_rate: int = 16000, n_mels: int = 80, win_ms: float = 25, hop_ms: float = 10, n_fft: int = 400):
        super().__init__()
        win_length = round(sample_rate * win_ms / 1000)
        self.hop_length = round(sample_rate * hop_ms / 1000)
        if win_length > n_fft:
            raise ValueError(f"LogMel: win_ms={win_ms} is {win_length} samples, more than n_fft={n_fft}; raise n_fft")
        if self.hop_length < 1:
            raise ValueError(f"LogMel: hop_ms={hop_ms} is under one sample at {sample_rate} Hz")
        self.n_mels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=self.hop_length,
            n_mels=n_mels,
            power=2.0,
            center=True,
            pad_mode="reflect",
            norm="slaney",  # Whisper and NeMo use librosa's Slaney-normalised filters
            mel_scale="slaney",
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel features.

        Args:
            waveform: (B, T) or (T,) samples.

        Returns:
            (B, n_mels, frames) float32, frames = T // hop + 1.
        """
        if waveform.dim() == 1:
            waveform = waveform[None]  # (1, T)
        if waveform.dim() != 2:
            raise ValueError(f"LogMel: waveform has shape {tuple(waveform.shape)}; expected (B, T) or (T,)")
        # fp32 even under autocast: the power spectrum spans more range than bf16 keeps.
        spec = self.mel(waveform.float())  # (B, n_mels, frames)
        return torch.log(torch.clamp(spec, min=1e-10))

    def lengths_to_frames(self, num_samples: int | torch.Tensor) -> int | torch.Tensor:
        """Number of frames :meth:`forward` gives for ``num_samples`` samples (centred framing).

        Use it to turn per-example valid sample counts of a padded batch into valid frame
        counts.

        Args:
            num_samples: An int or a (B,) integer tensor.

        Returns:
            ``num_samples // hop + 1`` with the input's type.
        """
        return num_samples // self.hop_length + 1


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al. 2019), active only in training mode.

    Each example gets its own masks; time masks stay inside its valid frames and their
    maximum width is ``time_width_ratio`` of its valid length (NeMo's adaptive width).

    Args:
        freq_masks: Number of frequency masks per example.
        freq_width: Maximum width of a frequency mask in bins.
        time_masks: Number of time masks per example.
        time_width_ratio: Maximum width of a time mask as a fraction of the valid frames.
        mask_value: Value written into masked cells (0, as NeMo; features are usually
            normalised to zero mean before this).
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 2,
        time_width_ratio: float = 0.05,
        mask_value: float = 0.0,
    ):
        super().__init__()
        if not 0 <= time_width_ratio <= 1:
            raise ValueError(f"SpecAugment: time_width_ratio={time_width_ratio}; expected a fraction in [0, 1]")
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.time_masks = time_masks
        self.time_width_ratio = time_width_ratio
        self.mask_value = mask_value

    @staticmethod
    def _band(num: int, max_width: torch.Tensor, extent: torch.Tensor, size: int, device) -> torch.Tensor:
        """(B, size) bool: ``num`` random bands per row, each within [0, extent)."""
        batch = extent.shape[0]
        positions = torch.arange(size, device=device)  # (size,)
        masked = torch.zeros(batch, size, dtype=torch.bool, device=device)
        for _ in range(num):
            width = (torch.rand(batch, device=device) * (max_width + 1)).long()  # (B,) in [0, max_width]
            width = torch.minimum(width, extent)
            start = (torch.rand(batch, device=device) * (extent - width + 1)).long()  # (B,)
            masked |= (positions >= start[:, None]) & (positions < (start + width)[:, None])
        return masked

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Masks a batch of spectrograms (returned unchanged in eval mode).

        Args:
            features: (B, F, T) features.
            lengths: (B,) valid frames per example; None means all T frames are valid.

        Returns:
            (B, F, T) masked copy of ``features``.
        """
        if not self.training:
            return features
        batch, num_bins, num_frames = features.shape
        device = features.device
        if lengths is None:
            lengths = torch.full((batch,), num_frames, device=device, dtype=torch.long)
        lengths = lengths.to(device=device, dtype=torch.long).clamp(max=num_frames)  # (B,)
        bins = torch.full((batch,), num_bins, device=device, dtype=torch.long)
        freq = self._band(self.freq_masks, torch.full_like(bins, self.freq_width), bins, num_bins, device)  # (B, F)
        max_time = (lengths.float() * self.time_width_ratio).long()  # (B,)
        time = self._band(self.time_masks, max_time, lengths, num_frames, device)  # (B, T)
        masked = freq[:, :, None] | time[:, None, :]  # (B, F, T)
        return features.masked_fill(masked, self.mask_value)


def bucket_by_duration(
    durations: Sequence[float], batch_seconds: float, *, shuffle: bool = False, seed: int = 0
) -> list[list[int]]:
    """Groups clips of similar length into batches under a padded-audio budget.

    Indices are sorted by duration (ties by index) and packed greedily, so each batch's
    padded total, longest clip × count, stays ≤ ``batch_seconds``. Deterministic; with
    ``shuffle`` the batch order (not the contents) is shuffled with ``seed``.

    Args:
        durations: Seconds per clip.
        batch_seconds: Budget of padded seconds per batch.
        shuffle: Shuffle the order of the batches.
        seed: Seed of that shuffle.

    Returns:
        Batches of indices into ``durations``; every index appears exactly once.

    Raises:
        ValueError: A non-positive budget, a negative/non-finite duration, or a clip
            longer than the budget (filter those out first, e.g. with ``max_seconds``).
    """
    if not batch_seconds > 0:
        raise ValueError(f"bucket_by_duration: batch_seconds={batch_seconds}; expected > 0")
    for i, d in enumerate(durations):
        if not (np.isfinite(d) and d >= 0):
            raise ValueError(f"bucket_by_duration: durations[{i}] = {d}; expected a finite number of seconds >= 0")
        if d > batch_seconds:
            raise ValueError(
                f"bucket_by_duration: durations[{i}] = {d} s exceeds batch_seconds={batch_seconds}; "
                "drop clips that long or raise the budget"
            )
    order = sorted(range(len(durations)), key=lambda i: (durations[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted ascending, so the new clip is the batch's longest.
        if current and durations[i] * (len(current) + 1) > batch_seconds:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    if shuffle:
        random.Random(seed).shuffle(batches)
    return batches
