"""Callbacks shared by every babeltower system."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import lightning as L
import torch

log = logging.getLogger("babeltower")


class BadSampleReport(L.Callback):
    """Counts the corrupt samples the data streams skipped and reports them at the end of a run.

    Streams put the samples they skipped since their previous batch into
    ``batch["bad_samples"]`` (a list of ``{"shard", "key", "reason"}``), which works
    across DataLoader worker processes. This callback sums them over the run and all
    ranks, logs ``data/bad_samples``, prints a summary and writes ``bad_samples.json``
    into the trainer's log directory.

    Args:
        max_listed: how many skipped samples to list by shard and key in the summary.
    """

    def __init__(self, max_listed: int = 20):
        self.max_listed = max_listed
        self.skipped: list[dict] = []

    def _collect(self, batch):
        if isinstance(batch, dict):
            self.skipped.extend(batch.get("bad_samples") or [])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._collect(batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._collect(batch)

    def on_train_epoch_end(self, trainer, pl_module):
        pl_module.log("data/bad_samples", float(len(self.skipped)), reduce_fx="sum", sync_dist=True)

    def on_fit_end(self, trainer, pl_module):
        total = int(trainer.strategy.reduce(torch.tensor(float(len(self.skipped))), reduce_op="sum").item())
        if not trainer.is_global_zero:
            return
        if total == 0:
            print("babeltower: no corrupt samples were skipped.")
            return
        by_reason = Counter(item.get("reason", "?").split(":")[0] for item in self.skipped)
        print(f"babeltower: skipped {total} corrupt sample(s) over all ranks; on rank 0: {dict(by_reason)}")
        for item in self.skipped[: self.max_listed]:
            print(f"  shard={item.get('shard')} key={item.get('key')}: {item.get('reason')}")
        if trainer.log_dir:
            path = Path(trainer.log_dir) / "bad_samples.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"total_all_ranks": total, "rank0": self.skipped}, indent=2, ensure_ascii=False))
            print(f"  full list: {path}")


class CheckpointOnStop(L.Callback):
    """Writes ``last.ckpt`` when a run ends between two periodic checkpoints.

    Lightning's ``ModelCheckpoint(every_n_train_steps=N, save_last=True)`` saves only every
    N steps, so a run that ends elsewhere (``max_time`` reached, early stopping, a step
    count that is not a multiple of N) keeps the state of its previous periodic save and
    loses the updates after it. At the end of training this callback writes the final
    state into every such callback's ``last.ckpt`` (and leaves the step-named ones alone),
    unless the final step was just saved.

    Args:
        enabled: set to false to keep Lightning's behaviour.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._saved_at_step: int | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self._saved_at_step = trainer.global_step

    def on_train_end(self, trainer, pl_module):
        if not self.enabled or trainer.global_step == 0 or self._saved_at_step == trainer.global_step:
            return
        for callback in trainer.checkpoint_callbacks:
            if not callback.save_last or not callback.dirpath:
                continue
            path = Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
            if trainer.is_global_zero and path.is_symlink():  # save_last="link": do not write through it
                path.unlink()
            trainer.strategy.barrier("babeltower_checkpoint_on_stop")
            trainer.save_checkpoint(path)
            callback.last_model_path = str(path)
            if trainer.is_global_zero:
                print(f"babeltower: training stopped at step {trainer.global_step}; final state written to {path}")
