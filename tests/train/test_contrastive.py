import math

import pytest
import torch
import torch.nn.functional as F

from babeltower.train.contrastive import ContrastiveSystem, clip_loss
from babeltower.train.optim import cosine_with_warmup


def test_clip_loss_matches_open_clip():
    import open_clip

    torch.manual_seed(0)
    img = F.normalize(torch.randn(8, 16), dim=-1)
    txt = F.normalize(torch.randn(8, 16), dim=-1)
    scale = torch.tensor(14.0)
    torch.testing.assert_close(clip_loss(img, txt, scale), open_clip.ClipLoss()(img, txt, scale))


def test_cosine_with_warmup():
    assert cosine_with_warmup(0, 10, 100) == pytest.approx(0.1)
    assert cosine_with_warmup(9, 10, 100) == pytest.approx(1.0)
    assert cosine_with_warmup(55, 10, 100) == pytest.approx(0.5)
    assert cosine_with_warmup(100, 10, 100, min_ratio=0.1) == pytest.approx(0.1)


def _fit_args(shards, root, steps, extra=()):
    return [
        "fit",
        "--config",
        "configs/tiny/contrastive.yaml",
        "--data.init_args.train_shards",
        shards["train"],
        "--data.init_args.val_shards",
        shards["val"],
        "--trainer.default_root_dir",
        str(root),
        "--trainer.logger.init_args.save_dir",
        str(root),
        "--trainer.max_steps",
        str(steps),
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]


def _losses(root):
    import csv

    rows = list(csv.DictReader(open(next(root.rglob("metrics.csv")))))
    return [float(r["train/loss"]) for r in rows if r.get("train/loss")]


def test_fit_through_cli_loss_falls_and_resume(scene_shards, tmp_path, monkeypatch):
    """A real `babeltower fit` on scene shards: the loss falls; --ckpt_path resumes."""
    from babeltower.train.launch import lightning_cli

    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[2])
    cli = lightning_cli(_fit_args(scene_shards, tmp_path / "run", 120, ["--trainer.log_every_n_steps", "10"]))
    losses = _losses(tmp_path / "run")
    assert len(losses) >= 8
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.3, losses
    assert cli.trainer.global_step == 120
    ckpt = next((tmp_path / "run").rglob("*.ckpt"))
    resumed = lightning_cli(_fit_args(scene_shards, tmp_path / "resumed", 130, ["--ckpt_path", str(ckpt)]))
    assert resumed.trainer.global_step == 130


def test_system_from_dicts_and_frozen_text():
    system = ContrastiveSystem(
        vision={"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "heads": 2},
        text={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
        embed_dim=16,
        freeze_text=True,
    )
    assert system.model.config.vision.output_dim == 16
    assert not any(p.requires_grad for p in system.model.text.backbone.parameters())
    assert isinstance(system.hparams["vision"], dict)


def test_data_tokenizer_must_match_text_encoder():
    from types import SimpleNamespace

    from babeltower.modalities.text import default_tokenizer_path, load_tokenizer, train_tokenizer
    from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig
    from babeltower.train.contrastive import check_data_tokenizer

    encoder = TextEncoder(TextEncoderConfig(hidden_size=32, num_hidden_layers=1))
    same = SimpleNamespace(datamodule=SimpleNamespace(tokenizer=load_tokenizer(default_tokenizer_path())))
    check_data_tokenizer(same, encoder)  # no error
    other = train_tokenizer(["un cercle rouge", "a red circle"] * 20, vocab_size=300)
    with pytest.raises(ValueError, match="data.init_args.tokenizer"):
        check_data_tokenizer(SimpleNamespace(datamodule=SimpleNamespace(tokenizer=other)), encoder)


def test_image_size_mismatch_between_data_and_model_is_named():
    from babeltower.models.vision import vit_tiny

    system = ContrastiveSystem(vision=vit_tiny())  # 32 px
    batch = {"pixel_values": torch.randn(2, 3, 16, 16), "input_ids": torch.ones(2, 4, dtype=torch.long),
             "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    with pytest.raises(ValueError, match=r"data.init_args.image_size: images are 16x16 but the model expects 32x32"):
        system.training_step(batch, 0)
