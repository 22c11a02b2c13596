"""The OCR task module: `babeltower ocr MODEL IMAGE...` on good and bad images, evaluate() schema."""

import argparse
import io
import json

import numpy as np
import pytest
from PIL import Image

from babeltower.models.ocr import OCRModel, ocr_tiny
from babeltower.tasks import ocr as task


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ocr_hub")
    OCRModel(ocr_tiny(charset="abcdefghijklmnopqrstuvwxyz 0123456789")).save_pretrained(folder / "ocr")
    return folder


def _line(mode="RGB", size=(160, 32)):
    image = Image.new(mode, size, "white" if mode in ("RGB", "L") else None)
    return image


@pytest.fixture()
def images(tmp_path):
    paths = {}
    _line().save(tmp_path / "good.png")
    paths["good"] = tmp_path / "good.png"
    (tmp_path / "empty.png").write_bytes(b"")
    paths["empty"] = tmp_path / "empty.png"
    (tmp_path / "garbage.jpg").write_bytes(b"not an image at all" * 10)
    paths["garbage"] = tmp_path / "garbage.jpg"
    Image.new("RGB", (1, 1), "white").save(tmp_path / "pixel.png")
    paths["pixel"] = tmp_path / "pixel.png"
    Image.new("CMYK", (160, 32), (0, 0, 0, 0)).save(tmp_path / "cmyk.jpg")
    paths["cmyk"] = tmp_path / "cmyk.jpg"
    Image.fromarray(np.full((32, 160), 60000, dtype=np.uint16)).save(tmp_path / "deep.png")
    paths["deep"] = tmp_path / "deep.png"
    frames = [Image.new("L", (160, 32), v) for v in (255, 0)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    paths["anim"] = tmp_path / "anim.gif"
    paths["missing"] = tmp_path / "missing.png"
    return paths


def _run(hub, paths, as_json=False):
    args = argparse.Namespace(model=str(hub), images=[str(p) for p in paths], json=as_json, lm=None)
    return task.read_images(args)


def test_bad_images_get_errors_naming_the_file_and_the_rest_are_read(hub, images, capsys):
    order = ["good", "empty", "garbage", "pixel", "cmyk", "deep", "anim", "missing"]
    code = _run(hub, [images[k] for k in order], as_json=True)
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["image"] for r in rows] == [str(images[k]) for k in order]
    by_name = dict(zip(order, rows))
    for bad in ("empty", "garbage", "pixel", "missing"):
        assert str(images[bad]) in by_name[bad]["error"], by_name[bad]
    assert "empty" in by_name["empty"]["error"]
    assert "too small" in by_name["pixel"]["error"]
    # CMYK, 16-bit and animated images are decoded (first frame), not refused.
    for good in ("good", "cmyk", "deep", "anim"):
        assert "text" in by_name[good] and "error" not in by_name[good], by_name[good]
    assert "animated" in err and str(images["anim"]) in err
    assert code == 1 and "4 of 8 image(s) failed" in err


def test_all_good_exits_zero_with_plain_output(hub, images, capsys):
    assert _run(hub, [images["good"], images["cmyk"]]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[0].startswith(str(images["good"]) + "\t")


def test_verb_registration():
    parser = argparse.ArgumentParser()
    handlers = task.add_verbs(parser.add_subparsers(dest="verb"))
    assert handlers == {"ocr": task.read_images, "ocr-lm": task.build_lm}
    args = parser.parse_args(["ocr", "model", "a.png", "b.png", "--json"])
    assert args.images == ["a.png", "b.png"] and args.json and args.lm is None
    args = parser.parse_args(["ocr-lm", "shards", "--into", "hub", "--exclude-kinds", "sample,mixed"])
    assert (args.order, args.alpha, args.beta, args.exclude_kinds) == (5, 0.3, 1.2, "sample,mixed")


def test_evaluate_returns_a_task_result(hub, tmp_path):
    pytest.importorskip("gflanguages")
    from babeltower.datasets.synthetic import ocr

    try:
        ocr.check_fonts(("Latn",))
    except RuntimeError as error:
        pytest.skip(str(error))
    ocr.write_ocr_dataset(tmp_path / "data", num_train=0, num_val=0, num_test=6, languages=("en", "de"), shard_size=3)
    result = task.evaluate(str(hub), data=str(tmp_path / "data" / "test"), out=str(tmp_path / "eval"))
    assert result["task"] == "ocr" and result["primary"] == "cer" and result["n"] == 6
    assert set(result["per_language"]) == {"en", "de"} and "Latn" in result["groups"]["script"]
    assert (tmp_path / "eval" / "ocr.md").is_file()
    again = task.evaluate(str(hub), data=str(tmp_path / "data" / "test"), out=None)
    assert json.dumps(again["samples"], sort_keys=True) == json.dumps(result["samples"], sort_keys=True)


def test_ocr_lm_trains_on_labels_goes_next_to_the_weights_and_is_used(hub, tmp_path, capsys):
    import shutil

    from babeltower.datasets.writer import write_shards
    from babeltower.models.charlm import LM_FILE

    rows = [("the cat", "words"), ("the hat", "words"), ("secret sentence one", "sample"), ("bad", None)]
    samples = []
    for i, (text, kind) in enumerate(rows):
        sample = {"__key__": f"k{i}", "txt": text.encode(), "json": json.dumps({"text": text, "lang": "en", "kind": kind}).encode()}
        if kind is None:  # unreadable label: skipped and counted, not fatal
            sample = {"__key__": f"k{i}", "json": b"{not json"}
        samples.append(sample)
    write_shards(iter(samples), tmp_path / "lines", max_count=10)
    folder = tmp_path / "hub"
    shutil.copytree(hub, folder)
    parser = argparse.ArgumentParser()
    task.add_verbs(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["ocr-lm", str(tmp_path / "lines"), "--into", str(folder), "--exclude-kinds", "sample", "--order", "3"])
    assert task.build_lm(args) == 0
    out = capsys.readouterr().out
    assert "from 2 labels" in out and "1 unreadable sample(s) skipped" in out
    lm_path = folder / "ocr" / LM_FILE
    from babeltower.models.charlm import CharNgramLM

    lm, fusion = CharNgramLM.load_with_fusion(lm_path)
    assert fusion == {"alpha": 0.3, "beta": 1.2, "beam_size": 8} and lm.order == 3
    assert "s" not in lm.counts[""] and "t" in lm.counts[""]  # the excluded kind never reached the counts
    with pytest.raises(SystemExit, match="--overwrite"):
        task.build_lm(args)  # an existing LM is not replaced silently
    model = task.load(folder)
    assert model.lm is not None and "beam search" in model.decoding
    assert task.load(folder, lm="none").lm is None
    with pytest.raises(SystemExit, match="not an OCRModel folder"):
        task.build_lm(parser.parse_args(["ocr-lm", str(tmp_path / "lines"), "--into", str(tmp_path)]))
