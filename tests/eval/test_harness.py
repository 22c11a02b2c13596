"""The unified harness: one schema, one results JSON, one report, byte-identical for a seed."""

import json

import pytest
import torch
import yaml

from babeltower.cli import main
from babeltower.eval.harness import data_fingerprint, languages_by_tasks, prompt_hash, task_result


def _result(**overrides):
    args = dict(metrics={"acc": 0.5}, per_language={"en": {"acc": 0.5, "n": 2}}, primary="acc",
                higher_is_better=True, data={"source": None, "sha256": ""},
                samples=[{"id": "0", "lang": "en", "reference": "a", "prediction": "b", "prompt_hash": prompt_hash("q")}])
    args.update(overrides)
    return task_result("demo", **args)


def test_task_result_validates_the_schema():
    assert _result()["n"] == 1
    with pytest.raises(ValueError, match="primary metric 'cer' is not among"):
        _result(primary="cer")
    with pytest.raises(ValueError, match=r"per_language\['ko'\] has no sample count 'n'"):
        _result(per_language={"ko": {"acc": 1.0}})
    with pytest.raises(ValueError, match=r"samples\[0\] lacks \['prompt_hash'\]"):
        _result(samples=[{"id": "0", "lang": "en", "reference": "a", "prediction": "b"}])


def test_languages_by_tasks_table_reads_each_primary_metric():
    results = {"retrieval": _result(per_language={"en": {"acc": 0.9, "n": 1}, "de": {"acc": 0.7, "n": 1}}),
               "asr": _result(metrics={"cer": 0.2}, primary="cer", higher_is_better=False,
                              per_language={"de": {"cer": 0.3, "n": 4}})}
    columns, rows = languages_by_tasks(results)
    assert columns == ["retrieval (acc↑)", "asr (cer↓)"]
    assert rows["de"] == {"retrieval (acc↑)": 0.7, "asr (cer↓)": 0.3}
    assert rows["en"]["asr (cer↓)"] is None  # no English speech: an empty cell, not a zero


def test_data_fingerprint_changes_with_the_bytes(tmp_path):
    (tmp_path / "a.tar").write_bytes(b"one")
    first = data_fingerprint(str(tmp_path / "a.tar"), files=[tmp_path / "a.tar"])
    (tmp_path / "a.tar").write_bytes(b"two")
    assert data_fingerprint(str(tmp_path / "a.tar"), files=[tmp_path / "a.tar"])["sha256"] != first["sha256"]


@pytest.fixture(scope="module")
def clip_hub(tmp_path_factory):
    from babeltower.models.clip import CLIPConfig, CLIPModel
    from babeltower.models.hub import save_clip
    from babeltower.models.text_encoder import TextEncoderConfig
    from babeltower.models.vision import vit_tiny

    torch.manual_seed(0)
    config = CLIPConfig(vision=vit_tiny(), embed_dim=16, text=TextEncoderConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    return save_clip(CLIPModel(config).eval(), tmp_path_factory.mktemp("hub") / "clip")


def test_suite_writes_one_json_and_report_byte_identical_for_a_seed(clip_hub, scene_shards, tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"seed": 3, "tasks": {
        "retrieval": {"model": str(clip_hub), "data": scene_shards["val"], "options": {"pool_size": 10}},
        "retrieval_again": {"task": "retrieval", "model": str(clip_hub), "data": scene_shards["val"]},
    }}))
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert main(["eval", "--suite", str(suite), "--out", str(out), "--languages", "en,de,ar"]) == 0
    first, second = ((out / "results.json").read_bytes() for out in outs)
    assert first == second
    results = json.loads(first)
    assert set(results["tasks"]) == {"retrieval", "retrieval_again"}
    assert results["provenance"]["seed"] == 3 and results["provenance"]["versions"]["torch"]
    retrieval = results["tasks"]["retrieval"]
    assert retrieval["options"]["pool_size"] == 10 and results["tasks"]["retrieval_again"]["options"]["pool_size"] == 20
    assert set(retrieval["per_language"]) == {"en", "de", "ar"}
    assert retrieval["per_language"]["de"]["n"] == 80
    assert len(retrieval["samples"]) == 240 and {"reference", "prediction", "prompt_hash"} <= set(retrieval["samples"][0])
    assert len(retrieval["data"]["sha256"]) == 64
    report = (outs[0] / "report.md").read_text()
    assert report.index("Languages x tasks") < report.index("## retrieval")
    assert "| ar |" in report
    page = (outs[0] / "report.html").read_text()
    assert "<table>" in page and "data:image/png;base64," in page and "http" not in page.replace("http-equiv", "")


def test_suite_errors_name_the_entry(clip_hub, scene_shards, tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"tasks": {"retrieval": {"model": str(clip_hub), "data": scene_shards["val"],
                                                             "options": {"pool_sise": 10}}}}))
    assert main(["eval", "--suite", str(suite), "--out", str(tmp_path / "o")]) == 2
    assert "evaluation 'retrieval': unknown option(s) ['pool_sise']" in capsys.readouterr().err
    suite.write_text(yaml.safe_dump({"tasks": {"speech": {"model": str(clip_hub)}}}))
    assert main(["eval", "--suite", str(suite), "--out", str(tmp_path / "o")]) == 2
    assert "unknown evaluation 'speech'" in capsys.readouterr().err
