"""Stage 1 -> stage 2 through the `babeltower` command: parallel text, distillation fit,
bitext evaluation, export, and a contrastive head started from the distilled encoder."""

import json
from pathlib import Path

import pytest
import torch

from babeltower.cli import main
from babeltower.train.launch import lightning_cli

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
    out = tmp_path_factory.mktemp("parallel")
    assert main(["data", "synth", "parallel", str(out), "--num-train", "60", "--num-val", "60", "--no-cldr"]) == 0
    return out


@pytest.fixture(scope="module")
def distilled(parallel, tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    import os

    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        lightning_cli(
            [
                "fit", "--config", "configs/tiny/distill_demo.yaml",
                "--data.init_args.train_shards", str(parallel / "train"),
                "--data.init_args.val_shards", str(parallel / "val"),
                "--data.init_args.samples_per_epoch", "1280", "--data.init_args.num_workers", "0",
                "--model.init_args.student.hidden_size", "32", "--model.init_args.student.num_hidden_layers", "1",
                "--model.init_args.student.num_attention_heads", "2", "--model.init_args.student.intermediate_size", "64",
                "--model.init_args.warmup_steps", "5",
                "--trainer.max_steps", "30", "--trainer.val_check_interval", "30", "--trainer.log_every_n_steps", "5",
                "--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root),
                "--trainer.enable_progress_bar", "false",
            ]
        )
    finally:
        os.chdir(cwd)
    ckpt = next(root.rglob("last.ckpt"))
    hub = root / "hub"
    assert main(["export", str(ckpt), str(hub)]) == 0
    return {"root": root, "ckpt": ckpt, "hub": hub}


def test_distillation_loss_falls(distilled):
    import csv

    rows = list(csv.DictReader(open(next(distilled["root"].rglob("metrics.csv")))))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) >= 4 and losses[-1] < losses[0]


def test_exported_student_loads_with_transformers(distilled):
    from transformers import AutoModel

    from babeltower.models.hub import load_text_encoder

    encoder, tokenizer, index = load_text_encoder(distilled["hub"])
    assert index["task"] == "distill" and index["teacher"]["kind"] == "sentence-transformer"
    assert encoder.embed_dim == 384
    enc = tokenizer(["zwei rote Kreise links"], return_tensors="pt")
    hf = AutoModel.from_pretrained(distilled["hub"] / "text_encoder").eval()
    with torch.no_grad():
        torch.testing.assert_close(
            hf(**enc).last_hidden_state, encoder(enc["input_ids"], enc["attention_mask"]).last_hidden_state,
            atol=1e-5, rtol=1e-5,
        )


def test_eval_bitext_reports_student_and_teacher(distilled, parallel, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["eval", "bitext", str(distilled["hub"]), "--shards", str(parallel / "val"), "--out", str(out)]) == 0
    report = json.loads((out / "bitext.json").read_text())
    assert len(report["languages"]) == 9
    for lang, row in report["per_language"].items():
        for key in ("x2en_acc", "en2x_acc", "teacher_x2en_acc", "cos_tgt", "teacher_cos", "cos_src"):
            assert -1.0 <= row[key] <= 1.0, (lang, key)
        assert row["num_pairs"] >= 10
    assert (out / "bitext.png").read_bytes()[:4] == b"\x89PNG"
    # the English teacher cannot read Hangul/Han/Devanagari: its direct retrieval is poor there
    for lang in ("ko", "zh", "hi"):
        assert report["per_language"][lang]["teacher_x2en_acc"] < 0.5


def test_contrastive_starts_from_distilled_encoder(distilled, scene_shards, tmp_path, monkeypatch):
    """init_from takes the student's architecture, tokenizer and weights (strictly)."""
    from babeltower.models.hub import load_text_encoder

    monkeypatch.chdir(REPO_ROOT)
    cli = lightning_cli(
        [
            "--config", "configs/tiny/contrastive.yaml",
            "--data.init_args.train_shards", scene_shards["train"], "--data.init_args.val_shards", scene_shards["val"],
            "--model.init_args.init_from", str(distilled["hub"]),
            "--trainer.default_root_dir", str(tmp_path),
            "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
        ],
        run=False,
    )
    student, _, _ = load_text_encoder(distilled["hub"])
    # the data's tokenizer follows init_from (linked), so captions use the student's vocabulary
    assert cli.datamodule.tokenizer_path == str(distilled["hub"] / "text_encoder")
    text = cli.model.model.text
    assert text.config.hidden_size == 32
    for (name, a), b in zip(text.backbone.state_dict().items(), student.backbone.state_dict().values()):
        assert torch.equal(a, b), name
