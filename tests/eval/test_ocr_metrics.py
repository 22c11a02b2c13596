"""OCR metrics: CER as jiwer computes it, NED as OmniDocBench/PaddleOCR, exact lines, groups."""

import pytest

from babeltower.eval.ocr import edit_distance, evaluate_lines, line_accuracy, ned, score_lines


def test_known_values():
    refs, hyps = ["abc", "hello"], ["abd", "helo"]
    # per line: 1 edit / max(3, 3) and 1 edit / max(5, 4) -> NED = 1 - (1/3 + 1/5) / 2
    assert ned(refs, hyps) == pytest.approx(1 - (1 / 3 + 1 / 5) / 2)
    assert score_lines([{"ref": r, "hyp": h} for r, h in zip(refs, hyps)])["cer"] == pytest.approx(2 / 8)
    assert line_accuracy(refs, hyps) == 0.0
    assert line_accuracy(["x y", "z"], ["x y", "q"]) == 0.5
    assert edit_distance("kitten", "sitting") == 3
    # The hypothesis longer than the reference: normalised by the longer one (NED stays in [0, 1]).
    assert ned(["ab"], ["abcd"]) == pytest.approx(1 - 2 / 4)
    assert ned([""], [""]) == 1.0


def test_cer_matches_jiwer():
    jiwer = pytest.importorskip("jiwer")
    refs = ["مرحبا 123", "Привет мир", "नमस्ते दुनिया", "a b"]
    hyps = ["مرحب 128", "Привет мир!", "नमस्त दुनिया", "ab"]
    got = score_lines([{"ref": r, "hyp": h} for r, h in zip(refs, hyps)])["cer"]
    assert got == pytest.approx(jiwer.cer(refs, hyps))


def test_groups_per_script_language_and_kind():
    lines = [
        {"ref": "abc", "hyp": "abc", "lang": "en", "script": "Latn"},
        {"ref": "abcd", "hyp": "abed", "lang": "de", "script": "Latn"},
        {"ref": "العدد 12 abc", "hyp": "العدد 13 abc", "lang": "ar", "script": "Arab"},
        {"ref": "中文 OK", "hyp": "中文 OK", "lang": "zh", "script": "Hans"},
    ]
    result = evaluate_lines(lines)
    assert set(result["groups"]["script"]) == {"Latn", "Arab", "Hans"}
    assert result["groups"]["script"]["Latn"]["cer"] == pytest.approx(1 / 7)
    assert result["groups"]["script"]["Latn"]["n"] == 2
    assert result["groups"]["kind"]["rtl_digits"]["n"] == 1
    assert result["groups"]["kind"]["rtl_digits"]["cer"] == pytest.approx(1 / 12)
    assert result["groups"]["kind"]["mixed"]["n"] == 2  # Arabic + Latin, Han + Latin
    # each script counts once in the mean, whatever its number of lines
    assert result["metrics"]["mean_cer_over_scripts"] == pytest.approx((1 / 7 + 1 / 12 + 0) / 3)
    assert result["per_language"]["zh"]["line_accuracy"] == 1.0
    assert "| Arab |" in result["markdown"]


def test_bad_input():
    with pytest.raises(ValueError, match="2 references and 1 hypotheses"):
        ned(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no lines"):
        evaluate_lines([])
