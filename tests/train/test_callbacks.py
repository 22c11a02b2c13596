"""CheckpointOnStop: a run that ends between periodic checkpoints keeps its final state."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from babeltower.train.callbacks import CheckpointOnStop


def _fit(tmp_path, max_steps, callbacks, save_last=True):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1, save_last=save_last)
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_steps=max_steps,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[checkpoint, *callbacks],
    )
    model = BoringModel()
    trainer.fit(model)
    return tmp_path / "ckpt", model


def _step(path):
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def test_without_the_callback_last_ckpt_lags_behind(tmp_path):
    # The behaviour this callback exists for: Lightning alone keeps step 8 of a 10-step run.
    ckpt_dir, _ = _fit(tmp_path, 10, [])
    assert _step(ckpt_dir / "last.ckpt") == 8


def test_final_state_written_to_last_ckpt(tmp_path):
    ckpt_dir, model = _fit(tmp_path, 10, [CheckpointOnStop()])
    state = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 10
    for name, value in model.state_dict().items():
        torch.testing.assert_close(state["state_dict"][name], value)
    # The periodic checkpoints are untouched.
    assert sorted(p.name for p in ckpt_dir.glob("epoch=*.ckpt")) == ["epoch=0-step=4.ckpt", "epoch=0-step=8.ckpt"]
    assert _step(ckpt_dir / "epoch=0-step=8.ckpt") == 8


def test_no_extra_write_when_the_last_step_was_saved(tmp_path):
    ckpt_dir, _ = _fit(tmp_path, 8, [CheckpointOnStop()])
    assert _step(ckpt_dir / "last.ckpt") == 8
    assert len(list(ckpt_dir.glob("*.ckpt"))) == 3


def test_disabled_and_no_save_last_leave_lightning_alone(tmp_path):
    ckpt_dir, _ = _fit(tmp_path / "off", 10, [CheckpointOnStop(enabled=False)])
    assert _step(ckpt_dir / "last.ckpt") == 8
    ckpt_dir, _ = _fit(tmp_path / "nolast", 10, [CheckpointOnStop()], save_last=False)
    assert not (ckpt_dir / "last.ckpt").exists()


def test_symlinked_last_is_replaced_not_written_through(tmp_path):
    ckpt_dir, _ = _fit(tmp_path, 10, [CheckpointOnStop()], save_last="link")
    assert not (ckpt_dir / "last.ckpt").is_symlink()
    assert _step(ckpt_dir / "last.ckpt") == 10
    assert _step(ckpt_dir / "epoch=0-step=8.ckpt") == 8
