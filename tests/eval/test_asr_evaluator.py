import jiwer
import pytest

from babeltower.eval.asr import evaluate_asr, write_asr_report

HIKE_REF = "실험 결과 제안한 algorithm 은 기존 방법 대비 accuracy 가 향상되었으며 computational efficiency 또한 크게 개선되었다"
HIKE_HYP = "실험 결과 제한화 algorithm 은 기존 방법 대비 r curacy 가 향상되었으며 환비테이션을 이펙션 시 또한 크게 개선되었다"


def test_per_language_pooled_and_code_switching(tmp_path):
    utterances = [
        {"ref": "two red circles", "hyp": "two red circle", "lang": "en"},
        {"ref": "one blue square", "hyp": "one blue square", "lang": "en"},
        {"ref": "两个红色的圆", "hyp": "两个红色圆", "lang": "zh"},
        {"ref": HIKE_REF, "hyp": HIKE_HYP, "lang": "ko-en", "meta": {"cs_level": "phrase", "loanwords": []}},
        {"ref": "오늘 meeting 에서", "hyp": "오늘 meeting 에서", "lang": "ko-en", "meta": {"cs_level": "word"}},
    ]
    report = evaluate_asr(utterances)
    en = report["per_language"]["en"]
    assert en["wer"] == pytest.approx(jiwer.wer(["two red circles", "one blue square"], ["two red circle", "one blue square"]))
    assert en["cer"] == pytest.approx(jiwer.cer(["two red circles", "one blue square"], ["two red circle", "one blue square"]))
    assert report["per_language"]["zh"]["cer_no_spaces"] == pytest.approx(1 / 6)
    mer = report["code_switching"]["mer"]
    assert round(mer["phrase"], 2) == 41.18 and mer["word"] == 0.0
    assert mer["all"] == pytest.approx((41.176470588 + 0.0) / 2, abs=1e-3)
    assert "ko-en" not in [k for k in report["per_language"] if k != "ko-en"]
    paths = write_asr_report(report, tmp_path)
    assert paths["chart"].read_bytes()[:4] == b"\x89PNG" and "chart_code_switching" in paths
    assert "41.18" in paths["markdown"].read_text()


def test_empty_input_is_an_error():
    with pytest.raises(ValueError, match="no utterances"):
        evaluate_asr([])
