import math

import numpy as np
import pytest
import soundfile as sf
import torch

from babeltower.modalities.audio import LogMel, SpecAugment, bucket_by_duration, load_audio, save_audio


def _stereo_sine(rate: int, seconds: float, freq: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    left = 0.5 * np.sin(2 * math.pi * freq * t)
    return np.stack([left, 0.8 * left], axis=0).astype(np.float32)  # (2, T)


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_round_trip_resamples_to_16k_mono_and_keeps_frequency(tmp_path, ext):
    path = tmp_path / f"tone.{ext}"
    save_audio(path, _stereo_sine(22050, 0.5, 440.0), 22050)
    assert sf.info(str(path)).channels == 2 and sf.info(str(path)).samplerate == 22050
    wave = load_audio(path)
    assert wave.dtype == torch.float32 and wave.dim() == 1
    assert abs(wave.numel() - 8000) <= 1
    spectrum = torch.fft.rfft(wave).abs()
    peak_hz = int(spectrum.argmax()) * 16000 / wave.numel()
    assert abs(peak_hz - 440.0) <= 16000 / wave.numel()  # within one FFT bin (2 Hz)
    assert wave.abs().max() == pytest.approx(0.45, abs=0.01)  # downmix = mean of the 0.5 and 0.4 channels


def test_load_from_bytes_keeps_rate(tmp_path):
    path = tmp_path / "a.wav"
    save_audio(path, torch.sin(torch.arange(1600) * 0.3) * 0.3, 16000)
    wave = load_audio(path.read_bytes(), where="shard-0/key-7")
    assert wave.shape == (1600,)


def test_save_refuses_to_overwrite(tmp_path):
    path = tmp_path / "a.wav"
    save_audio(path, torch.zeros(10) + 0.1, 16000)
    with pytest.raises(FileExistsError, match="a.wav"):
        save_audio(path, torch.zeros(10), 16000)
    save_audio(path, torch.full((20,), 0.2), 16000, overwrite=True)
    assert sf.info(str(path)).frames == 20


def _write_float(path, data, rate=16000):
    sf.write(str(path), data, rate, subtype="FLOAT")
    return path


def test_bad_audio_raises_naming_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(ValueError, match="corrupt.wav.*cannot decode"):
        load_audio(corrupt)
    with pytest.raises(ValueError, match="shard-3/key-9.*cannot decode"):
        load_audio(b"not audio at all", where="shard-3/key-9")

    empty = _write_float(tmp_path / "empty.wav", np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="empty.wav.*0 samples"):
        load_audio(empty)

    data = np.full(1600, 0.1, np.float32)
    data[5] = np.nan
    with pytest.raises(ValueError, match="nan.wav.*NaN or Inf"):
        load_audio(_write_float(tmp_path / "nan.wav", data))
    data[5] = np.inf
    with pytest.raises(ValueError, match="inf.wav.*NaN or Inf"):
        load_audio(_write_float(tmp_path / "inf.wav", data))

    silent = _write_float(tmp_path / "silent.wav", np.full(1600, 1e-6, np.float32))
    with pytest.raises(ValueError, match="silent.wav.*silent"):
        load_audio(silent)
    assert load_audio(silent, min_peak=None).shape == (1600,)

    long = _write_float(tmp_path / "long.wav", np.full(16000 * 3, 0.1, np.float32))
    with pytest.raises(ValueError, match="long.wav.*3.00 s.*max_seconds"):
        load_audio(long, max_seconds=2.0)
    assert load_audio(long, max_seconds=None).shape == (48000,)

    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav")


def test_logmel_shape_and_frames():
    logmel = LogMel()
    feats = logmel(torch.randn(8000) * 0.1)
    assert feats.shape == (1, 80, 51)  # 8000 // 160 + 1, centred frames
    assert torch.isfinite(feats).all()
    assert logmel(torch.zeros(2, 8000)).min() == pytest.approx(math.log(1e-10))  # clamp before log
    for n in (201, 319, 320, 321, 4321, 8001):  # reflect padding needs more than n_fft // 2 samples
        assert logmel(torch.randn(n)).shape[-1] == logmel.lengths_to_frames(n)
    lengths = torch.tensor([8000, 4321, 1600])
    assert logmel.lengths_to_frames(lengths).tolist() == [51, 28, 11]
    assert logmel(torch.randn(3, 4321)).shape == (3, 80, logmel.lengths_to_frames(4321))
    with pytest.raises(ValueError, match="n_fft"):
        LogMel(win_ms=50)


def test_specaugment_training_only_and_respects_lengths():
    torch.manual_seed(0)
    aug = SpecAugment(freq_masks=2, freq_width=27, time_masks=2, time_width_ratio=0.2, mask_value=0.0)
    feats = torch.randn(4, 80, 100) + 5.0  # no natural zeros
    lengths = torch.tensor([100, 60, 30, 100])

    aug.eval()
    assert torch.equal(aug(feats, lengths), feats)

    aug.train()
    out = aug(feats, lengths)
    assert out.shape == feats.shape
    masked = out == 0
    assert masked.any() and not torch.equal(out, feats)
    # outside masks, values are untouched
    assert torch.equal(out[~masked], feats[~masked])
    # time masks only inside valid frames: a column masked across every bin is a time mask
    full_columns = masked.all(dim=1)  # (B, T)
    for b, length in enumerate(lengths.tolist()):
        assert not full_columns[b, length:].any()
        assert full_columns[b].sum() <= 2 * int(0.2 * length)
    # examples get their own masks
    assert not torch.equal(masked[0], masked[3])


def test_bucket_by_duration_budget_and_coverage():
    rng = np.random.default_rng(0)
    durations = rng.uniform(0.5, 8.0, size=200).tolist()
    batches = bucket_by_duration(durations, batch_seconds=30.0)
    flat = sorted(i for batch in batches for i in batch)
    assert flat == list(range(200))
    for batch in batches:
        assert max(durations[i] for i in batch) * len(batch) <= 30.0
    assert batches == bucket_by_duration(durations, batch_seconds=30.0)  # deterministic
    shuffled = bucket_by_duration(durations, 30.0, shuffle=True, seed=1)
    assert shuffled != batches and sorted(map(tuple, shuffled)) == sorted(map(tuple, batches))
    assert shuffled == bucket_by_duration(durations, 30.0, shuffle=True, seed=1)
    # greedy packing of sorted clips
    assert bucket_by_duration([1.0, 3.0, 1.0, 2.0], batch_seconds=4.0) == [[0, 2], [3], [1]]
    with pytest.raises(ValueError, match=r"durations\[1\] = 9.0"):
        bucket_by_duration([1.0, 9.0], batch_seconds=4.0)


def test_truncated_wav_and_folder_raise_naming_the_file(tmp_path):
    import soundfile as sf

    full = tmp_path / "full.wav"
    sf.write(full, np.full(16000, 0.1, np.float32), 16000, subtype="PCM_16")
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    # libsndfile alone returns the first half without complaint.
    assert sf.read(cut)[0].shape == (7978,) or sf.read(cut)[0].shape[0] < 16000
    with pytest.raises(ValueError, match=r"cut.wav: truncated WAV file: the header declares 32000 bytes"):
        load_audio(cut)
    with pytest.raises(ValueError, match=r"shard-1/k.wav: truncated WAV"):
        load_audio(data[:-100], where="shard-1/k.wav")
    assert load_audio(full).shape == (16000,)
    # A streaming header (espeak-ng --stdout: data size 0x7ffff000) is not a truncation.
    streaming = bytearray(data)
    offset = streaming.index(b"data") + 4
    streaming[offset : offset + 4] = (0x7FFFF000).to_bytes(4, "little")
    assert load_audio(bytes(streaming)).shape == (16000,)
    with pytest.raises(ValueError, match="is a folder; expected an audio file"):
        load_audio(tmp_path)
