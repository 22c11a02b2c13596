"""Character n-gram LM (Witten–Bell) and CTC prefix beam search with LM fusion."""

import math

import pytest
import torch

from babeltower.models.asr import beam_search_decode, greedy_decode
from babeltower.models.charlm import EOS, CharNgramLM, ctc_beam_search_lm

TEXTS = ["the cat", "the hat", "then the", "a theme", "other than the"]


def test_probabilities_sum_to_one_over_the_vocabulary_and_unknown():
    lm = CharNgramLM.fit(TEXTS, order=4)
    vocabulary = sorted(lm.counts[""])  # every character seen (EOS included)
    for context in ["", "th", "xyz", "the", "\x02\x02\x02"]:
        total = sum(lm.prob(context, ch) for ch in vocabulary)
        unknown = lm.prob(context, "Q")  # one unknown symbol takes the uniform share left
        assert math.isclose(total + unknown, 1.0, rel_tol=1e-9), context
    assert lm.prob("th", "e") > lm.prob("th", "c") > 0  # seen continuation beats unseen
    assert EOS in vocabulary


def test_lm_prefers_text_like_its_training_lines_and_saves_losslessly(tmp_path):
    lm = CharNgramLM.fit(TEXTS, order=5)
    assert lm.score("the cat") > lm.score("thc cat")
    assert lm.perplexity(["the hat"]) < lm.perplexity(["xq zvw"])
    path = lm.save(tmp_path / "charlm.json.gz", fusion={"alpha": 0.4, "beta": 1.0, "beam_size": 4})
    loaded, fusion = CharNgramLM.load_with_fusion(path)
    assert fusion == {"alpha": 0.4, "beta": 1.0, "beam_size": 4}
    assert loaded.order == 5 and loaded.score("the cat") == lm.score("the cat")


def test_load_names_the_file_when_it_is_not_an_lm(tmp_path):
    bad = tmp_path / "charlm.json.gz"
    bad.write_text("not gzip")
    with pytest.raises(ValueError, match="charlm.json.gz"):
        CharNgramLM.load(bad)


def _frames(rows, units):
    """(1, T, C) log-probs from per-frame {unit: prob} dicts (the rest share what is left)."""
    index = {u: i for i, u in enumerate(units)}
    out = torch.full((len(rows), len(units)), 1e-6)
    for t, row in enumerate(rows):
        for unit, p in row.items():
            out[t, index[unit]] = p
    out = out / out.sum(-1, keepdim=True)
    return out.log()[None]


UNITS = ["t", "h", "e", "c", " ", "a", ""]  # blank last
BLANK = len(UNITS) - 1


def test_without_lm_it_is_plain_prefix_beam_search():
    torch.manual_seed(0)
    log_probs = torch.randn(3, 12, len(UNITS)).log_softmax(-1)
    lengths = torch.tensor([12, 9, 5])
    ours = ctc_beam_search_lm(log_probs, lengths, UNITS, BLANK, None, beam_size=16, token_candidates=len(UNITS),
                              token_min_logp=-math.inf, blank_skip=1.0)
    reference = beam_search_decode(log_probs, lengths, beam_size=16, blank=BLANK, token_candidates=len(UNITS))
    assert ours == reference


def test_lm_fixes_an_ambiguous_character_that_greedy_gets_wrong():
    blank = {"": 0.9}
    frames = [{"t": 0.9}, blank, {"h": 0.9}, blank, {"c": 0.5, "e": 0.45}, blank]  # "thc" or "the"?
    log_probs = _frames(frames, UNITS)
    greedy = "".join(UNITS[i] for i in greedy_decode(log_probs, blank=BLANK)[0])
    assert greedy == "thc"
    lm = CharNgramLM.fit(TEXTS, order=4)
    fused = ctc_beam_search_lm(log_probs, None, UNITS, BLANK, lm, alpha=0.5, beta=0.0)[0]
    assert "".join(UNITS[i] for i in fused) == "the"
    # a confident frame is not overruled by the same LM
    frames[4] = {"c": 0.999, "e": 1e-5}
    fused = ctc_beam_search_lm(_frames(frames, UNITS), None, UNITS, BLANK, lm, alpha=0.5, beta=0.0)[0]
    assert "".join(UNITS[i] for i in fused) == "thc"


def test_repeated_characters_need_a_blank_between_them():
    units = ["l", "o", ""]
    # l l (no blank) o  -> "lo";  l blank l o -> "llo"
    merged = _frames([{"l": 0.95}, {"l": 0.95}, {"o": 0.95}], units)
    split = _frames([{"l": 0.95}, {"": 0.95}, {"l": 0.95}, {"o": 0.95}], units)
    lm = CharNgramLM.fit(["hello", "lo"], order=3)
    assert ctc_beam_search_lm(merged, None, units, 2, lm, alpha=0.1) == [[0, 1]]
    assert ctc_beam_search_lm(split, None, units, 2, lm, alpha=0.1) == [[0, 0, 1]]


def test_ocr_model_decodes_with_an_attached_lm_and_keeps_logical_order(tmp_path):
    from babeltower.modalities.bidi import to_visual
    from babeltower.models.ocr import OCRModel, ocr_tiny

    charset = "abc 123عدلب"
    torch.manual_seed(0)
    model = OCRModel(ocr_tiny(charset=charset)).eval()
    text = "عدد 123 لعب abc"  # Arabic + digits + Latin, reading order (Arabic the majority)
    ids, _ = model.encode_text(text)
    frames = []
    for i in ids:  # a confident emission then a blank per character
        frames += [{charset[i]: 0.9}, {"": 0.9}]
    units = list(charset) + [""]
    log_probs = _frames(frames, units)
    lm = CharNgramLM.fit([to_visual(text)], order=3)
    path = ctc_beam_search_lm(log_probs, None, units, model.blank_id, lm, alpha=0.3, beta=1.0)[0]
    assert model.decode_ids(path) == text
    model.attach_lm(lm, alpha=0.3, beta=1.0, beam_size=4)
    assert "beam 4" in model.decoding and "3-gram" in model.decoding
    model.save_pretrained(tmp_path / "ocr")
    loaded = OCRModel.from_pretrained(tmp_path / "ocr")
    assert loaded.lm is not None and loaded.lm_fusion == {"alpha": 0.3, "beta": 1.0, "beam_size": 4}
    assert OCRModel.from_pretrained(tmp_path / "ocr", lm=False).lm is None
    images, widths = torch.rand(2, 1, 32, 48), torch.tensor([48, 30])
    assert len(loaded.recognize(images, widths)) == 2


def test_asr_model_fuses_an_lm_over_its_own_units_and_saves_it(tmp_path):
    from babeltower.models.asr import ASRModel, asr_tiny

    torch.manual_seed(0)
    model = ASRModel(asr_tiny()).eval()
    units = model.lm_units()
    assert len(units) == model.config.vocab_size + 1 and units[model.blank_id] == ""
    assert all(units[i] == "" for i in model.tokenizer.all_special_ids)
    spelt = model.lm_text("please open the window")
    assert spelt.replace(" ", "") and "<" not in spelt  # the tokenizer's own spelling, no special tokens
    wave = torch.randn(16000) * 0.1
    plain = model.transcribe(wave)
    assert model.decoding == "greedy CTC"
    lm = CharNgramLM.fit([model.lm_text(t) for t in ("please open the window", "the window is open")], order=4)
    model.attach_lm(lm, alpha=0.5)
    assert model.lm_fusion == {"alpha": 0.5, "beta": ASRModel.LM_DEFAULTS["beta"], "beam_size": 8} and "4-gram" in model.decoding
    fused = model.transcribe(wave)
    assert isinstance(fused[0], str) and "\ufffd" not in fused[0]
    model.save_pretrained(tmp_path / "asr")
    loaded = ASRModel.from_pretrained(tmp_path / "asr")
    assert loaded.lm is not None and loaded.transcribe(wave) == fused
    assert ASRModel.from_pretrained(tmp_path / "asr", lm=False).transcribe(wave) == plain
    with pytest.raises(ValueError, match="unknown LM fusion settings"):
        model.attach_lm(lm, gamma=1.0)
