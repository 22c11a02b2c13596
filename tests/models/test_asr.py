"""babeltower.models.asr: tiny CTC recognizers on CPU, decoding on hand-made matrices."""

import json
import math

import pytest
import torch

from babeltower.models.asr import (
    ASRConfig,
    ASRFeatures,
    ASRModel,
    asr_tiny,
    beam_search_decode,
    greedy_decode,
)


def _model(seed: int = 0, **fields) -> ASRModel:
    torch.manual_seed(seed)
    return ASRModel(asr_tiny(**fields)).eval()


def _features(lengths, seed: int = 0, n_mels: int = 80):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(len(lengths), n_mels, max(lengths), generator=generator)  # (B, F, T)
    return features, torch.tensor(lengths)


def test_vocab_from_tokenizer_and_blank_last():
    model = _model()
    assert model.config.vocab_size == len(model.tokenizer) == 8000
    assert model.blank_id == 8000
    assert model.ctc_head.out_features == 8001


@pytest.mark.parametrize("block", ["conformer", "transformer"])
def test_shapes_and_out_lengths(block):
    model = _model(block=block, text_dim=16)
    features, lengths = _features([101, 57, 8])
    log_probs, out_lengths, states = model(features, lengths)
    # Two stride-2 convs: 101 -> 51 -> 26, 57 -> 29 -> 15, 8 -> 4 -> 2.
    assert out_lengths.tolist() == [26, 15, 2]
    assert log_probs.shape == (3, 26, 8001)
    assert states.shape == (3, 26, 64)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 26))
    assert model.utterance_embedding(states, out_lengths).shape == (3, 16)
    assert _model(text_dim=None).utterance_embedding(states, out_lengths).shape == (3, 64)


@pytest.mark.parametrize("block", ["conformer", "transformer"])
def test_padding_invariance_and_backends_agree(block):
    """An utterance gives the same outputs alone and padded in a batch; sdpa == math."""
    features, lengths = _features([90, 37])
    outputs = {}
    for backend in ("sdpa", "math"):
        model = _model(block=block, attn_backend=backend, text_dim=8)
        log_probs, out_lengths, states = model(features, lengths)
        alone, alone_lengths, alone_states = model(features[1:, :, :37], lengths[1:])
        n = int(out_lengths[1])
        assert n == int(alone_lengths[0]) == 10
        torch.testing.assert_close(log_probs[1, :n], alone[0, :n], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(
            model.utterance_embedding(states, out_lengths)[1],
            model.utterance_embedding(alone_states, alone_lengths)[0],
            atol=1e-4,
            rtol=1e-4,
        )
        outputs[backend] = log_probs
    torch.testing.assert_close(outputs["sdpa"], outputs["math"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("gradient_checkpointing", [False, True])
def test_backward_reaches_every_parameter(gradient_checkpointing):
    model = _model(text_dim=8, gradient_checkpointing=gradient_checkpointing).train()
    features, lengths = _features([60, 45])
    log_probs, out_lengths, states = model(features, lengths)
    labels = torch.tensor([[5, 6, 7], [9, 9, -100]])
    loss = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), labels.clamp(min=0), out_lengths, torch.tensor([3, 2]), blank=model.blank_id
    )
    (loss + model.utterance_embedding(states, out_lengths).square().mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0] == []


def test_features_normalised_and_padding_zero():
    front_end = ASRFeatures()
    waves = torch.randn(2, 8000) * 0.1
    features, frames = front_end(waves, torch.tensor([8000, 4000]))
    assert features.shape == (2, 80, 51) and frames.tolist() == [51, 26]
    assert features[1, :, 26:].abs().max() == 0
    valid = features[1, :, :26]
    assert abs(float(valid.mean())) < 1e-4 and abs(float(valid.std(unbiased=False)) - 1) < 1e-3


def _log_probs(rows):
    return torch.tensor(rows, dtype=torch.float32).log()[None]  # (1, T, C)


def test_greedy_decode_collapses_repeats_and_drops_blanks():
    # classes 0, 1, 2 and blank 3; best path: 1 1 3 1 2 2 3 0 -> [1, 1, 2, 0]
    best = [1, 1, 3, 1, 2, 2, 3, 0]
    rows = [[0.1] * 4 for _ in best]
    for row, c in zip(rows, best):
        row[c] = 0.7
    log_probs = _log_probs(rows)
    assert greedy_decode(log_probs) == [[1, 1, 2, 0]]
    assert greedy_decode(log_probs, torch.tensor([3])) == [[1]]  # only the valid frames
    assert greedy_decode(log_probs, blank=1) == [[3, 2, 3, 0]]


def test_beam_search_equals_greedy_on_peaked_distribution():
    torch.manual_seed(0)
    path = torch.randint(0, 6, (2, 12))  # (B, T); class 5 is the blank
    log_probs = torch.full((2, 12, 6), -12.0).scatter(-1, path[..., None], 0.0).log_softmax(-1)
    lengths = torch.tensor([12, 7])
    greedy = greedy_decode(log_probs, lengths)
    assert beam_search_decode(log_probs, lengths, beam_size=4) == greedy
    assert any(greedy)  # not a trivial all-blank case


def test_beam_search_beats_greedy_on_classic_example():
    # Two frames, classes {a=0, blank=1}, p(a) = 0.4 each frame. Best path is blank blank
    # (""), p = 0.36; but "a" sums a·a + a·_ + _·a = 0.16 + 0.24 + 0.24 = 0.64.
    log_probs = _log_probs([[0.4, 0.6], [0.4, 0.6]])
    assert greedy_decode(log_probs) == [[]]
    assert beam_search_decode(log_probs, beam_size=4) == [[0]]


def test_beam_search_keeps_repeat_with_blank_between():
    # A repeated token survives only with a blank between: a _ a -> [a, a].
    rows = [[0.9, 0.1], [0.05, 0.95], [0.9, 0.1]]  # a, blank, a -> [0, 0]
    assert beam_search_decode(_log_probs(rows), beam_size=4) == [[0, 0]] == greedy_decode(_log_probs(rows))


def test_save_load_round_trip_is_strict(tmp_path):
    model = _model(text_dim=8, block="conformer")
    model.save_pretrained(tmp_path / "asr")
    saved = json.loads((tmp_path / "asr" / "config.json").read_text())
    assert saved["vocab_size"] == 8000 and saved["tokenizer"] is None
    assert (tmp_path / "asr" / "tokenizer.json").is_file()
    loaded = ASRModel.from_pretrained(tmp_path / "asr", attn_backend="math")
    assert loaded.config.attn_backend == "math" and not loaded.training
    features, lengths = _features([70, 50])
    expected, _, expected_states = model(features, lengths)
    got, _, got_states = loaded(features, lengths)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loaded.utterance_embedding(got_states, lengths // 4),
                               model.utterance_embedding(expected_states, lengths // 4))

    from safetensors.torch import load_file, save_file

    weights = load_file(str(tmp_path / "asr" / "model.safetensors"))
    weights.pop("ctc_head.bias")
    weights["extra.weight"] = torch.zeros(1)
    save_file(weights, str(tmp_path / "asr" / "model.safetensors"))
    with pytest.raises(RuntimeError, match=r"ctc_head\.bias.*extra\.weight"):
        ASRModel.from_pretrained(tmp_path / "asr")
    with pytest.raises(ValueError, match="d_model"):
        ASRModel.from_pretrained(tmp_path / "asr", d_model=32)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="ASRConfig.block"):
        ASRConfig(block="lstm")
    with pytest.raises(ValueError, match="conv_kernel"):
        ASRConfig(conv_kernel=4)
    model = _model(max_seconds=0.5)
    with pytest.raises(ValueError, match="max_seconds"):
        model(*_features([60]))


def test_transcribe_returns_strings():
    model = _model()
    texts = model.transcribe(torch.randn(2, 4000) * 0.1, torch.tensor([4000, 3000]), beam_size=2)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert not math.isnan(float(model(*_features([20]))[0].sum()))


def test_conv1d_subsampling_shapes_and_lengths():
    import torch

    from babeltower.models.asr import ASRModel, asr_tiny

    model = ASRModel(asr_tiny(subsampling="conv1d")).eval()
    features = torch.randn(2, 80, 101)
    lengths = torch.tensor([101, 57])
    log_probs, out_lengths, states = model(features, lengths)
    assert out_lengths.tolist() == model.output_lengths(lengths).tolist() == [26, 15]
    assert log_probs.shape[:2] == (2, 26) and states.shape == (2, 26, 64)
    # padding invariance: the short utterance alone gives the same frames
    alone, _, _ = model(features[1:, :, :57], lengths[1:])
    torch.testing.assert_close(alone[0], log_probs[1, :15], atol=1e-4, rtol=1e-4)


def test_smaller_ctc_vocabulary_is_the_shared_tokenizers_first_tokens(tmp_path):
    model = _model(vocab_size=1000)
    assert len(model.tokenizer) == 1000 and model.blank_id == 1000 and model.ctc_head.out_features == 1001
    ids = model.tokenizer("vier rote Kreise oben", add_special_tokens=False)["input_ids"]
    assert max(ids) < 1000 and model.decode_tokens([ids]) == ["vier rote Kreise oben"]
    model.save_pretrained(tmp_path / "asr")
    loaded = ASRModel.from_pretrained(tmp_path / "asr")
    assert loaded.config.vocab_size == len(loaded.tokenizer) == 1000
    features, lengths = _features([70])
    torch.testing.assert_close(loaded(features, lengths)[0], model(features, lengths)[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"ASRConfig.vocab_size=100.*cannot keep only"):
        _model(vocab_size=100)


@pytest.mark.parametrize("samples", [1, 2, 200, 399])
def test_transcribe_very_short_clips_pads_instead_of_crashing(samples):
    model = _model()
    texts = model.transcribe(torch.randn(samples) * 0.1)
    assert len(texts) == 1 and isinstance(texts[0], str)
    batch = model.transcribe(torch.randn(3, 8000) * 0.1, torch.tensor([8000, 1, 150]))
    assert len(batch) == 3 and all(isinstance(t, str) for t in batch)


def test_decoding_never_emits_a_partial_character():
    model = _model()
    # Byte-level BPE: a lone byte piece that is not a whole UTF-8 character decodes to U+FFFD.
    lead = next(i for i in range(len(model.tokenizer)) if "\ufffd" in model.tokenizer.decode([i]))
    ids = model.tokenizer("한국 abc", add_special_tokens=False)["input_ids"]
    assert model.decode_tokens([[lead] + ids + [lead]]) == ["한국 abc"]
    # Random weights emit arbitrary byte pieces: every transcript is still valid text.
    from babeltower.modalities.speech_units import is_valid_text

    torch.manual_seed(0)
    texts = model.transcribe(torch.randn(4, 16000) * 0.3)
    assert all(is_valid_text(t) for t in texts)


def test_character_units_and_three_times_reduction(tmp_path):
    from babeltower.modalities.speech_units import build_char_tokenizer

    build_char_tokenizer(sorted(set("왼쪽에 큰 빨간 원 hello"))).save_pretrained(str(tmp_path / "units"))
    model = _model(subsampling="conv1d", time_reduction=3, tokenizer=str(tmp_path / "units"))
    assert model.config.vocab_size == len(model.tokenizer) and model.blank_id == model.ctc_head.out_features - 1
    features, lengths = _features([101, 57])
    log_probs, out_lengths, _ = model(features, lengths)
    assert out_lengths.tolist() == model.output_lengths(lengths).tolist() == [34, 19]
    assert log_probs.shape[1] == 34
    jamo = model.tokenizer("원", add_special_tokens=False)["input_ids"]
    assert len(jamo) == 3 and model.decode_tokens([jamo, jamo[:1]]) == ["원", ""]  # an initial alone is dropped
    model.save_pretrained(tmp_path / "asr")
    loaded = ASRModel.from_pretrained(tmp_path / "asr")
    torch.testing.assert_close(loaded(features, lengths)[0], model(features, lengths)[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="time_reduction=3 needs subsampling: conv1d"):
        ASRConfig(time_reduction=3)
