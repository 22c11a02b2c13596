"""VQA test-set readers (datasets/vqa_testsets.py): shard scenes and CVQA files, without Lightning."""

import io
import json
import subprocess
import sys

import pytest

from babeltower.datasets.synthetic.vqa import write_vqa_shards
from babeltower.datasets.vqa_testsets import IMAGE_KEYS, iter_vqa_items, load_cvqa


@pytest.fixture(scope="module")
def val_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa_testsets")
    write_vqa_shards(root, num_train=0, num_val=3, image_size=32, seed=0, samples_per_shard=10, progress=False)
    return root / "val"


# ----------------------------------------------------------------- VQA shards
def test_every_scene_question_and_language_in_shard_order(val_shards):
    items, bad = iter_vqa_items(str(val_shards), 32, languages=["en", "ja"])
    assert bad == [] and len(items) == 3 * 10 * 2  # scenes x questions x languages
    assert {it["lang"] for it in items} == {"en", "ja"}
    assert items[0]["pixel_values"].shape == (3, 32, 32)
    keys = list(dict.fromkeys(it["key"] for it in items))
    assert len(keys) == 3 and keys == sorted(keys)
    for group in {it["group"] for it in items}:  # one group per (scene, question), shared by the languages
        members = [it for it in items if it["group"] == group]
        assert sorted(it["lang"] for it in members) == ["en", "ja"] and len({it["qid"] for it in members}) == 1
    for it in items:
        assert it["options"][it["label"]] == it["answer"] and len(it["answers"]) == 10
    counts, _ = iter_vqa_items(str(val_shards), 32, languages=["de"], question_types=["count"])
    assert len(counts) == 3 * 2 and {it["qtype"] for it in counts} == {"count"}  # open + yes/no per scene
    again, _ = iter_vqa_items(str(val_shards), 32, languages=["en", "ja"])
    assert [(it["group"], it["lang"], it["question"]) for it in again] == [
        (it["group"], it["lang"], it["question"]) for it in items]


def test_corrupt_scene_is_skipped_and_named(val_shards, tmp_path, corrupt_tar_member):
    shard = next(val_shards.glob("*.tar"))
    (tmp_path / shard.name).write_bytes(corrupt_tar_member(shard, "00000001.json", b"{not json"))
    items, bad = iter_vqa_items(str(tmp_path), 32, languages=["en"])
    assert len(items) == 2 * 10
    assert len(bad) == 1 and bad[0]["key"].endswith("00000001") and bad[0]["shard"].endswith(shard.name)
    assert "invalid JSON" in bad[0]["reason"] and "00000001.json" in bad[0]["reason"]


def test_no_shards_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match=str(tmp_path / "nothing")):
        iter_vqa_items(str(tmp_path / "nothing"), 32)


def test_image_members_match_the_datamodule():
    from babeltower.datasets.datamodule import IMAGE_KEYS as DATAMODULE_IMAGE_KEYS

    assert IMAGE_KEYS == DATAMODULE_IMAGE_KEYS


def test_readers_and_metrics_run_without_lightning(val_shards):
    """eval/ runs without Lightning: neither the readers nor the metrics may pull it in."""
    code = (
        "import sys\n"
        "sys.modules['lightning'] = None\nsys.modules['pytorch_lightning'] = None\n"
        "from babeltower.datasets.vqa_testsets import iter_vqa_items, load_cvqa\n"
        "from babeltower.eval.vqa import score_vqa\n"
        f"items, bad = iter_vqa_items({str(val_shards)!r}, 32, languages=['en'])\n"
        "preds = [{'prediction': it['answer'], 'choice': it['label']} for it in items]\n"
        "summary, _ = score_vqa(items, preds)\n"
        "assert summary['n'] == 30 and summary['metrics']['mc_acc'] == 1.0, summary['metrics']\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


# ----------------------------------------------------------------- CVQA
def _png_bytes():
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_load_cvqa_jsonl_hand_made(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(_png_bytes())
    records = [
        {"ID": "5919991144272485961_0", "Subset": "('Japanese', 'Japan')", "Question": "この料理は何ですか？",
         "Translated Question": "What is this dish?", "Options": ["寿司", "ラーメン", "天ぷら", "うどん"],
         "Translated Options": ["Sushi", "Ramen", "Tempura", "Udon"], "Label": 1, "Category": "Food",
         "Image Type": "Self", "Image Source": "Self-open", "License": "CC BY-SA", "image_path": "img/a.png"},
        {"ID": "x1", "Subset": "('Spanish', 'Mexico')", "Question": "¿De qué color es?",
         "Translated Question": "What colour is it?", "Options": "['rojo', 'azul', 'verde', 'negro']",
         "Translated Options": ["red", "blue", "green", "black"], "Label": 0, "Category": "Objects",
         "image_path": "img/a.png"},
    ]
    path = tmp_path / "cvqa.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    items = load_cvqa(path)
    assert [it["lang"] for it in items] == ["ja", "es"]
    assert items[0]["subset"] == "Japanese-Japan" and items[0]["country"] == "Japan"
    assert items[0]["options"][items[0]["label"]] == "ラーメン"
    assert items[0]["options_en"][1] == "Ramen" and items[0]["question_en"] == "What is this dish?"
    assert items[1]["options"] == ["rojo", "azul", "verde", "negro"]  # the string-literal list of an early release
    assert items[0]["image"].startswith(b"\x89PNG")


def test_load_cvqa_errors_name_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"Question": "q", "Options": ["a", "b"], "Label": 0}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing CVQA field\(s\)"):
        load_cvqa(path)
    record = {"ID": "1", "Subset": "('English', 'UK')", "Question": "q", "Translated Question": "q",
              "Options": ["a", "b", "c", "d"], "Translated Options": ["a", "b", "c", "d"], "Label": 4,
              "Category": "c", "image": "missing.png"}
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ValueError, match="'Label' must be an option index 0..3"):
        load_cvqa(path)


@pytest.mark.parametrize("change,needle", [
    ({"Options": "not a list"}, r"bad.jsonl:2: field 'Options' is a string that is not a list literal"),
    ({"Translated Options": ["a", "b"]}, r"bad.jsonl:2: 'Options' has 4 entries but 'Translated Options' 2"),
    ({"Subset": "Japanese"}, r"bad.jsonl:2: Subset 'Japanese' is not CVQA's"),
    ({"image": "missing.png"}, r"bad.jsonl:2: image .*missing.png does not exist"),
    ({"image_path": "gone.png"}, r"bad.jsonl:2: image_path .*gone.png does not exist"),
    ({}, r"bad.jsonl:2: no image"),
])
def test_load_cvqa_bad_record_names_file_record_and_field(tmp_path, change, needle):
    (tmp_path / "a.png").write_bytes(_png_bytes())
    good = {"ID": "1", "Subset": "('English', 'UK')", "Question": "q", "Translated Question": "q",
            "Options": ["a", "b", "c", "d"], "Translated Options": ["a", "b", "c", "d"], "Label": 0,
            "Category": "c", "image_path": "a.png"}
    bad = {k: v for k, v in good.items() if k != "image_path"} | change
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises((ValueError, FileNotFoundError), match=needle):
        load_cvqa(path)


def test_load_cvqa_file_level_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="CVQA file .*absent.jsonl does not exist"):
        load_cvqa(tmp_path / "absent.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"ID": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2: invalid JSON"):
        load_cvqa(tmp_path / "broken.jsonl")
    (tmp_path / "dict.json").write_text('{"ID": 1}')
    with pytest.raises(ValueError, match="expected a JSON list of CVQA records, got dict"):
        load_cvqa(tmp_path / "dict.json")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unknown CVQA file type '.csv'"):
        load_cvqa(tmp_path / "data.csv")
