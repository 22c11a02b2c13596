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
    across DataLoader worker processes; skips after a reader's last batch ride on that
    batch, and the rare leftovers are drained from the loaders at epoch end. This
    callback gathers them from every rank, logs ``data/bad_samples``, prints a summary
    and writes ``bad_samples.json`` into the trainer's log directory. Its list is part
    of the checkpoint, so a resumed run reports the skips from before the interruption
    too. Under DDP every rank takes part in the gathering (``trainer.log_dir`` itself
    is a broadcast), and rank 0 alone writes.

    A sample is counted once however often it was skipped (validation reads the same
    corrupt sample every epoch): ``total_all_ranks`` is the number of distinct
    ``(shard, key)``; ``skips`` counts every skip.

    Args:
        max_listed: how many skipped samples to list by shard and key in the summary.
    """

    def __init__(self, max_listed: int = 20):
        self.max_listed = max_listed
        self.skipped: list[dict] = []

    def _collect(self, batch):
        if isinstance(batch, dict):
            self.skipped.extend(batch.get("bad_samples") or [])

    def _drain_loaders(self, loaders):
        for loader in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
            drain = getattr(loader, "drain_unreported", None)
            if drain is not None:
                self.skipped.extend(drain())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._collect(batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._collect(batch)

    def on_validation_epoch_end(self, trainer, pl_module):
        self._drain_loaders(trainer.val_dataloaders)

    def on_train_epoch_end(self, trainer, pl_module):
        self._drain_loaders(trainer.train_dataloader)
        pl_module.log("data/bad_samples", float(len(self.skipped)), reduce_fx="sum", sync_dist=True)

    def state_dict(self):
        # Called on every rank when a checkpoint is saved; rank 0 writes the file, so it
        # must hold every rank's list.
        return {"skipped_by_rank": _gather(self.skipped)}

    def load_state_dict(self, state_dict):
        by_rank = state_dict.get("skipped_by_rank") or []
        rank = torch.distributed.get_rank() if _distributed() else 0
        if len(by_rank) == _world_size():
            self.skipped = list(by_rank[rank])
        else:  # another world size: keep the counts on rank 0 so the total stays right
            self.skipped = [item for items in by_rank for item in items] if rank == 0 else []

    def on_fit_end(self, trainer, pl_module):
        by_rank = _gather(self.skipped)
        log_dir = trainer.log_dir  # a broadcast: every rank must ask
        if not trainer.is_global_zero:
            return
        everything = [item for items in by_rank for item in items]
        unique = {(item.get("shard"), item.get("key")): item for item in everything}
        total = len(unique)
        if total == 0:
            print("babeltower: no corrupt samples were skipped.")
            return
        by_reason = Counter(item.get("reason", "?").split(":")[0] for item in unique.values())
        print(f"babeltower: skipped {total} corrupt sample(s) over all ranks ({len(everything)} skips): {dict(by_reason)}")
        for item in list(unique.values())[: self.max_listed]:
            print(f"  shard={item.get('shard')} key={item.get('key')}: {item.get('reason')}")
        if log_dir:
            path = Path(log_dir) / "bad_samples.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            report = {
                "total_all_ranks": total,
                "skips": len(everything),
                "samples": sorted(unique.values(), key=lambda item: (str(item.get("shard")), str(item.get("key")))),
                "per_rank": [len(items) for items in by_rank],
                "rank0": by_rank[0],
            }
            path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
            print(f"  full list: {path}")


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _world_size() -> int:
    return torch.distributed.get_world_size() if _distributed() else 1


def _gather(obj):
    """Every rank's ``obj``, in rank order (a collective under DDP)."""
    if not _distributed():
        return [obj]
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


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
