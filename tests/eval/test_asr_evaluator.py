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


def test_groups_summary_and_invalid_outputs(tmp_path):
    def u(ref, hyp, lang, group, **meta):
        return {"ref": ref, "hyp": hyp, "lang": lang, "meta": {"group": group, **meta}}

    utterances = [
        u("two red circles", "two red circles", "en", "scene"),
        u("please open the window", "please open the window", "en", "heldout"),
        u("hola", "hora", "es", "heldout"),
        u("오늘 meeting 에서", "오늘 meeting 에서", "ko-en", "code_switched", cs_level="word"),
        u("dos", "d\ufffds", "es", "scene"),
    ]
    report = evaluate_asr(utterances)
    groups = report["groups"]
    assert list(groups) == ["scene", "heldout", "code_switched"]
    assert groups["heldout"]["per_language"]["es"]["cer"] == pytest.approx(0.25)
    assert groups["heldout"]["mean_cer"] == pytest.approx((0.0 + 0.25) / 2) and groups["heldout"]["max_cer"] == 0.25
    assert groups["code_switched"]["code_switching"]["mer"]["word"] == 0.0
    assert report["summary"] == {
        "heldout_mean_cer": pytest.approx(0.125), "heldout_max_cer": 0.25,
        "scene_mean_cer": pytest.approx((0.0 + jiwer.cer("dos", "d\ufffds")) / 2), "code_switched_mer": 0.0,
    }
    assert report["invalid_outputs"] == 1
    assert "Held-out real sentences" in report["markdown"] and "U+FFFD or partial characters: 1" in report["markdown"]
    write_asr_report(report, tmp_path)
    assert (tmp_path / "asr.json").is_file()


def _shard(path, samples):
    import io
    import json
    import tarfile

    with tarfile.open(path, "w") as tar:
        for key, members in samples.items():
            for ext, data in members.items():
                data = data if isinstance(data, bytes) else json.dumps(data).encode()
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _wav(seconds):
    import io

    import numpy as np
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(np.arange(int(16000 * seconds)) * 0.07), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _silence(seconds):
    import io

    import numpy as np
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(16000 * seconds)), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_evaluate_asr_shards_end_to_end(tmp_path):
    import torch

    from babeltower.eval.asr import evaluate_asr_shards
    from babeltower.models.asr import ASRModel, asr_tiny

    torch.manual_seed(0)
    ASRModel(asr_tiny()).save_pretrained(tmp_path / "model")
    samples = {
        "a": {"wav": _wav(0.5), "txt": b"two red circles", "json": {"lang": "en", "group": "scene"}},
        "b": {"wav": _wav(0.01), "txt": b"hola", "json": {"lang": "es", "group": "heldout"}},  # 160 samples
        "c": {"wav": _wav(0.3), "txt": "오늘 data 를".encode(), "json": {"lang": "ko-en", "group": "code_switched", "cs_level": "word"}},
    }
    _shard(tmp_path / "val-0.tar", samples)
    report = evaluate_asr_shards(tmp_path / "model", tmp_path, tmp_path / "out", batch_size=2)
    assert [s["id"] for s in report["samples"]] == ["a", "b", "c"]
    assert set(report["groups"]) == {"scene", "heldout", "code_switched"} and report["invalid_outputs"] == 0
    assert (tmp_path / "out" / "samples.jsonl").read_text().count("\n") == 3
    assert report["bad_samples"] == {"count": 0, "samples": []}
    # Bad clips (a truncated wav, no language, silence is kept) are skipped and counted by the
    # datasets layer, each named by shard, key and reason; the rest is scored.
    (tmp_path / "bad").mkdir()
    _shard(tmp_path / "bad" / "val-1.tar", {
        "k": {"wav": _wav(0.5)[:-400], "txt": b"x", "json": {"lang": "en"}},
        "good": {"wav": _wav(0.5), "txt": b"two red circles", "json": {"lang": "en"}},
        "nolang": {"wav": _wav(0.5), "txt": b"x", "json": {}},
        "silent": {"wav": _silence(0.5), "txt": b"nothing", "json": {"lang": "en"}},
    })
    report = evaluate_asr_shards(tmp_path / "model", tmp_path / "bad", None)
    assert [s["id"] for s in report["samples"]] == ["good", "silent"]
    assert report["bad_samples"]["count"] == 2
    reasons = {b["key"]: b["reason"] for b in report["bad_samples"]["samples"]}
    assert reasons["k"].startswith("ValueError") and "val-1.tar/k" in reasons["k"] and "truncated WAV" in reasons["k"]
    assert "nolang.json has no" in reasons["nolang"] and "field (a language code" in reasons["nolang"]
    assert all(b["shard"].endswith("val-1.tar") for b in report["bad_samples"]["samples"])
    # Nothing readable: an error, not an empty report.
    (tmp_path / "worse").mkdir()
    _shard(tmp_path / "worse" / "val-2.tar", {"k": {"wav": _wav(0.5)[:-400], "txt": b"x", "json": {"lang": "en"}}})
    with pytest.raises(ValueError, match="no utterances"):
        evaluate_asr_shards(tmp_path / "model", tmp_path / "worse", None)
