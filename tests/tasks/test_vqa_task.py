"""The VQA task module: synth via the CLI, evaluate (shards and CVQA format) into the harness schema, the vqa verb."""

import io
import json

import pytest
import torch
from PIL import Image

from babeltower.models.text_encoder import TextEncoderConfig
from babeltower.models.vision import VisionConfig


@pytest.fixture(scope="module")
def hub_and_data(tmp_path_factory):
    from babeltower.cli import main
    from babeltower.train.vqa import VQASystem

    root = tmp_path_factory.mktemp("vqa_task")
    assert main(["data", "synth", "vqa", str(root / "data"), "--num-train", "4", "--num-val", "3",
                 "--image-size", "32", "--languages", "en,de,ja"]) == 0
    torch.manual_seed(0)
    system = VQASystem(vision=VisionConfig(image_size=32, patch_size=8, width=32, layers=1, heads=2),
                       text=TextEncoderConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                              intermediate_size=64),
                       hidden_size=32, fusion_layers=1, fusion_heads=2)
    hub = system.export_hub(root / "hub")
    return hub, root


def test_registered_and_evaluates_into_the_harness_schema(hub_and_data, tmp_path):
    from babeltower.tasks import TASKS, evaluators

    hub, root = hub_and_data
    assert TASKS["vqa"].NAME == "vqa" and "vqa" in evaluators()
    result = TASKS["vqa"].evaluate(str(hub), data=str(root / "data" / "val"), out=str(tmp_path), seed=0,
                                   languages=["en", "ja"])
    assert result["task"] == "vqa" and result["primary"] == "vqa_acc" and result["higher_is_better"]
    assert set(result["per_language"]) == {"en", "ja"}
    assert result["n"] == 3 * 10 * 2  # scenes x questions x languages
    for name in ("vqa_acc", "mc_acc", "consistency", "consistency_all"):
        assert 0.0 <= result["metrics"][name] <= 1.0
    assert set(result["groups"]["question_type"]) >= {"colour", "shape", "count", "position", "size", "count/yesno"}
    assert "classify" in result["groups"]["other_mode"]
    assert all(s["lang"] in ("en", "ja") and s["prompt_hash"] for s in result["samples"])
    assert (tmp_path / "vqa.md").is_file() and (tmp_path / "vqa.png").is_file()
    again = TASKS["vqa"].evaluate(str(hub), data=str(root / "data" / "val"), out=None, seed=0, languages=["en", "ja"])
    assert again["metrics"] == result["metrics"] and again["samples"] == result["samples"]  # deterministic


def test_cvqa_format_file(hub_and_data, tmp_path):
    from babeltower.tasks import vqa

    hub, _ = hub_and_data
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (30, 150, 55)).save(buffer, format="PNG")
    (tmp_path / "green.png").write_bytes(buffer.getvalue())
    records = [{"ID": f"q{i}", "Subset": "('Japanese', 'Japan')", "Question": "図形は何色ですか？",
                "Translated Question": "What colour is the shape?", "Options": ["赤", "緑", "青", "紫"],
                "Translated Options": ["red", "green", "blue", "purple"], "Label": 1, "Category": "Colours",
                "image_path": "green.png"} for i in range(3)]
    (tmp_path / "cvqa.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    result = vqa.evaluate(str(hub), data=None, out=str(tmp_path / "out"), cvqa=str(tmp_path / "cvqa.json"))
    assert result["primary"] == "mc_acc" and result["per_language"]["ja"]["n"] == 3
    assert set(result["groups"]["subset"]) == {"Japanese-Japan/local", "Japanese-Japan/en"}
    assert all(s["prediction"] in ("赤", "緑", "青", "紫", "red", "green", "blue", "purple") for s in result["samples"])
    assert (tmp_path / "out" / "cvqa.md").is_file()


def test_vqa_verb_answers_in_the_question_language(hub_and_data, tmp_path, capsys):
    from babeltower.cli import main

    hub, _ = hub_and_data
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (235, 195, 0)).save(buffer, format="PNG")
    image = tmp_path / "scene.png"
    image.write_bytes(buffer.getvalue())
    assert main(["vqa", str(hub), str(image), "Welche Farbe haben die Objekte?"]) == 0
    from babeltower.datasets.synthetic.vqa import ANSWERS

    first, second = capsys.readouterr().out.strip().splitlines()[-2:]
    assert first in set(ANSWERS["de"].values()) | {"1", "2", "3", "4"}
    assert second.startswith("[de]")
    assert main(["vqa", str(hub), str(image), "What colour?", "--options", "red", "yellow"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-2] in ("red", "yellow")
    assert main(["vqa", str(hub), str(tmp_path / "missing.png"), "What?"]) == 2


def test_demo_script_asks_in_ten_languages(hub_and_data, tmp_path, monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[2] / "scripts" / "vqa_demo.py"
    spec = importlib.util.spec_from_file_location("vqa_demo", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.chdir(tmp_path)
    hub, _ = hub_and_data
    assert module.main([str(hub)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "vqa_demo_scene.png").is_file()
    for lang in ("en", "de", "fr", "es", "ru", "ar", "hi", "ko", "zh", "ja"):
        assert out.count(f"[{lang}]") == 5  # one open question per type
    assert module.main([str(hub), "--question", "¿Cuántas figuras hay?"]) == 0
    assert "[es] ¿Cuántas figuras hay? ->" in capsys.readouterr().out
