"""End-to-end runs of the `babeltower` command: data tools, fit, export, eval.

Everything goes through ``babeltower.cli.main`` / ``lightning_cli`` with real files in
tmp folders, as a user would run it. Training happens once per module (40 steps).
"""

import io
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from babeltower.cli import main
from babeltower.train.launch import lightning_cli

REPO_ROOT = Path(__file__).resolve().parents[1]


def _png(colour, size=16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_manifest(folder: Path, records: list[dict]) -> Path:
    manifest = folder / "captions.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return manifest


def _image_records(folder: Path) -> list[dict]:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    items = [("red", "un carré rouge", "fr"), ("blue", "一个蓝色的正方形", "zh"), ("green", "مربع أخضر", "ar")]
    records = []
    for colour, text, lang in items:
        (folder / "images" / f"{colour}.png").write_bytes(_png(colour))
        records.append({"image": f"images/{colour}.png", "text": text, "lang": lang, "source": "test"})
    return records


# ----------------------------------------------------------------------------- data write
def test_data_write_manifest_reads_back_with_plain_webdataset(tmp_path, capsys):
    import webdataset as wds

    records = _image_records(tmp_path)
    manifest = _write_manifest(tmp_path, records)
    out = tmp_path / "shards"
    assert main(["data", "write", str(manifest), str(out), "--max-count", "2"]) == 0
    assert "wrote 2 shard(s)" in capsys.readouterr().out
    shards = sorted(out.glob("shard-*.tar"))
    assert [p.name for p in shards] == ["shard-000000.tar", "shard-000001.tar"]
    assert not list(out.glob("*.partial"))

    samples = list(wds.WebDataset([str(p) for p in shards], shardshuffle=False))
    assert [s["__key__"] for s in samples] == ["00000000", "00000001", "00000002"]
    for sample, record in zip(samples, records):
        assert sample["png"] == (tmp_path / record["image"]).read_bytes()
        assert sample["txt"].decode("utf-8") == record["text"]
        meta = json.loads(sample["json"])
        assert meta == {"lang": record["lang"], "source": "test"}


def _error_line(capsys, argv) -> str:
    """Runs the CLI expecting a user error: exit status 2 and one line on stderr."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("babeltower: error: ") and "\n" not in err, err
    return err


def test_data_write_manifest_line_without_lang_names_file_and_line(tmp_path, capsys):
    records = _image_records(tmp_path)
    del records[1]["lang"]
    manifest = _write_manifest(tmp_path, records)
    out = tmp_path / "shards"
    err = _error_line(capsys, ["data", "write", str(manifest), str(out)])
    assert re.search(re.escape(f"{manifest}:2") + r".*'lang'", err)
    # all or nothing: no shard (and no partial shard) of the failed run is left behind
    assert not out.exists() or not list(out.iterdir())


def test_data_write_refuses_to_replace_shards_without_overwrite(tmp_path, capsys):
    manifest = _write_manifest(tmp_path, _image_records(tmp_path))
    out = tmp_path / "shards"
    main(["data", "write", str(manifest), str(out)])
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert list(first) == ["shard-000000.tar"]

    smaller = _write_manifest(tmp_path, _image_records(tmp_path)[:1])
    err = _error_line(capsys, ["data", "write", str(smaller), str(out)])
    assert re.search(re.escape(str(out / "shard-000000.tar")) + ".*overwrite", err)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first

    main(["data", "write", str(smaller), str(out), "--overwrite"])
    assert (out / "shard-000000.tar").read_bytes() != first["shard-000000.tar"]


# ----------------------------------------------------------------------------- data synth
def test_data_synth_scenes_writes_train_and_val_shards(tmp_path, capsys):
    from babeltower.datasets.pipeline import read_tar

    out = tmp_path / "scenes"
    args = ["data", "synth", "scenes", str(out), "--num-train", "64", "--num-val", "40", "--image-size", "32"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "train: 1 shard(s)" in printed and "val: 1 shard(s)" in printed
    counts = {}
    for split in ("train", "val"):
        shards = sorted((out / split).glob("shard-*.tar"))
        assert shards, split
        samples = [s for shard in shards for s in read_tar(str(shard))]
        counts[split] = len(samples)
        image = Image.open(io.BytesIO(samples[0]["png"]))
        assert image.size == (32, 32)
        meta = json.loads(samples[0]["json"])
        assert meta["split"] == split and meta["lang"] in meta["captions"]
    assert counts == {"train": 64, "val": 40}
    err = _error_line(capsys, args)
    assert str(out) in err and "overwrite" in err


# -------------------------------------------------------------------------- data tokenizer
def test_data_tokenizer_from_scenes_is_loadable_and_not_overwritten(tmp_path, capsys):
    from babeltower.modalities.text import load_tokenizer

    out = tmp_path / "tok"
    assert main(["data", "tokenizer", str(out), "--from-scenes", "--vocab-size", "600"]) == 0
    tokenizer = load_tokenizer(out)
    assert 300 < len(tokenizer) <= 600
    for text in ["un cercle rouge", "一个绿色的三角形", "دائرة حمراء"]:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    saved = (out / "tokenizer.json").read_bytes()
    err = _error_line(capsys, ["data", "tokenizer", str(out), "--from-scenes", "--vocab-size", "300"])
    assert re.search(re.escape(str(out)) + ".*--overwrite", err)
    assert (out / "tokenizer.json").read_bytes() == saved


# ------------------------------------------------------------------- fit, export, eval
def _fit_args(train, val, root: Path, steps: int, extra=()):
    return [
        "fit",
        "--config",
        "configs/tiny/contrastive.yaml",
        "--data.init_args.train_shards",
        str(train),
        "--data.init_args.val_shards",
        str(val),
        "--trainer.default_root_dir",
        str(root),
        "--trainer.logger.init_args.save_dir",
        str(root),
        "--trainer.max_steps",
        str(steps),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained(scene_shards, tmp_path_factory):
    """A 40-step tiny contrastive run: {'root', 'ckpt', 'cli'}."""
    root = tmp_path_factory.mktemp("fit")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO_ROOT)
        cli = lightning_cli(_fit_args(scene_shards["train"], scene_shards["val"], root, 40))
    assert cli.trainer.global_step == 40
    ckpts = sorted(root.rglob("*.ckpt"))
    assert len(ckpts) == 1, ckpts
    return {"root": root, "ckpt": ckpts[0], "cli": cli}


@pytest.fixture(scope="module")
def hub_dir(trained, tmp_path_factory):
    hub = tmp_path_factory.mktemp("export") / "hub"
    assert main(["export", str(trained["ckpt"]), str(hub)]) == 0
    return hub


def test_export_writes_hub_folder_equal_to_checkpoint(trained, hub_dir, scene_shards):
    from babeltower.models.hub import load_clip
    from babeltower.tasks.common import load_system
    from babeltower.tasks.contrastive import SYSTEMS, eval_batches

    for name in ["model_index.json", "config.json", "model.safetensors", "README.md",
                 "vision_model/model.safetensors", "text_encoder/config.json", "tokenizer/tokenizer.json"]:
        assert (hub_dir / name).is_file(), name
    system = load_system(trained["ckpt"], SYSTEMS)
    loaded, tokenizer = load_clip(hub_dir)
    # the checkpoint is the trained model, not a fresh init
    trained_state = trained["cli"].model.model.state_dict()
    for key, value in system.model.state_dict().items():
        torch.testing.assert_close(value, trained_state[key], atol=0, rtol=0)

    tokenizer_dir = hub_dir / "tokenizer"
    batch = next(iter(eval_batches(scene_shards["val"], 32, tokenizer, 16)))
    with torch.no_grad():
        expected = system.model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
        actual = loaded(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    for a, b in zip(expected, actual):
        torch.testing.assert_close(b, a, atol=0, rtol=0)
    assert tokenizer.pad_token is not None


def test_export_refuses_non_empty_folder_and_keeps_user_file(trained, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("do not delete")
    assert main(["export", str(trained["ckpt"]), str(out)]) == 2
    assert re.search(re.escape(str(out)) + ".*holds files an export does not write", capsys.readouterr().err)
    assert main(["export", str(trained["ckpt"]), str(out), "--overwrite"]) == 2  # --overwrite never deletes them
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "do not delete"


def test_eval_retrieval_writes_report_for_all_languages(hub_dir, scene_shards, tmp_path, capsys):
    from babeltower.datasets.synthetic.scenes import LANGUAGES

    rep = tmp_path / "report"
    assert main(["eval", "retrieval", str(hub_dir), "--shards", scene_shards["val"], "--out", str(rep)]) == 0
    # evaluation must not switch autograd off for the rest of the process
    assert torch.is_grad_enabled()
    for name in ["retrieval.json", "retrieval.md", "retrieval.png"]:
        assert (rep / name).is_file() and (rep / name).stat().st_size > 0, name
    assert (rep / "retrieval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((rep / "retrieval.json").read_text())
    assert sorted(report["per_language"]) == sorted(LANGUAGES)
    assert report["num_images"] == 80
    assert report["bad_samples"] == 0
    for lang, row in report["per_language"].items():
        assert "t2i_r1_pool" in row and "zs_mean" in row, lang
        for metric, value in row.items():
            if not metric.startswith("num_"):
                assert 0.0 <= value <= 1.0, (lang, metric, value)
    assert "t2i_r1_pool" in report["mean"]
    assert "| en " in (rep / "retrieval.md").read_text()
    assert str(rep / "retrieval.json") in capsys.readouterr().out


# ------------------------------------------------------------------- corrupt data in fit
def test_fit_skips_truncated_png_and_reports_shard_and_key(scene_shards, tmp_path, monkeypatch, capsys):
    import webdataset as wds

    train = tmp_path / "train"
    shutil.copytree(scene_shards["train"], train)
    target = train / "shard-000000.tar"
    good = list(wds.WebDataset(str(target), shardshuffle=False))[:12]
    with wds.TarWriter(str(target), encoder=False) as sink:
        for sample in good:
            sink.write({k: v for k, v in sample.items() if k in ("__key__", "png", "txt", "json")})
        sink.write({"__key__": "broken-0001", "png": good[0]["png"][:50], "txt": good[0]["txt"],
                    "json": good[0]["json"]})

    monkeypatch.chdir(REPO_ROOT)
    root = tmp_path / "run"
    extra = [
        "--data.init_args.batch_size", "8",
        "--data.init_args.shuffle_buffer", "0",  # read shard-000000 first, in order
        "--trainer.limit_val_batches", "0",
        "--trainer.enable_checkpointing", "false",
    ]
    cli = lightning_cli(_fit_args(train, scene_shards["val"], root, 3, extra))
    assert cli.trainer.global_step == 3
    from babeltower.train.callbacks import CheckpointOnStop

    assert sum(isinstance(c, CheckpointOnStop) for c in cli.trainer.callbacks) == 1
    printed = capsys.readouterr().out
    assert "skipped 1 corrupt sample(s)" in printed
    assert f"shard={target} key=broken-0001" in printed
    report = json.loads(next(root.rglob("bad_samples.json")).read_text())
    assert report["total_all_ranks"] == 1
    (item,) = report["rank0"]
    assert item["shard"] == str(target) and item["key"] == "broken-0001"
    assert "truncated" in item["reason"] or "cannot decode" in item["reason"]


def test_fit_with_missing_shard_names_the_path(scene_shards, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    missing = tmp_path / "nowhere" / "shard-000000.tar"
    args = _fit_args(missing, scene_shards["val"], tmp_path / "run", 2)
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        lightning_cli(args)


def test_help_lists_tool_and_training_verbs(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in ("data", "eval", "export", "transcribe", "demo", "fit"):
        assert verb in out


def test_transcribe_reports_bad_files_and_goes_on(tmp_path, capsys):
    """Any rate and channel count is accepted; an unreadable or silent file gets its own error line."""
    import numpy as np
    import soundfile as sf

    from babeltower.models.asr import ASRModel, asr_tiny

    model_dir = tmp_path / "asr"
    ASRModel(asr_tiny()).save_pretrained(model_dir)
    t = np.arange(int(0.6 * 22050)) / 22050
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], axis=1) * 0.3
    sf.write(tmp_path / "good.flac", stereo, 22050)
    sf.write(tmp_path / "silent.wav", np.zeros(8000), 16000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really")
    files = [str(tmp_path / n) for n in ("broken.wav", "good.flac", "silent.wav")]
    assert main(["transcribe", str(model_dir), *files]) == 1  # some files failed: non-zero, and how many
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "2 of 3 file(s) failed"
    assert lines[0].startswith(files[0]) and "ERROR" in lines[0]
    assert lines[1].startswith(files[1]) and "RTF" in lines[1] and "ERROR" not in lines[1]
    assert lines[2].startswith(files[2]) and "ERROR" in lines[2] and "silent" in lines[2].lower()
    assert lines[3].startswith("real-time factor")
