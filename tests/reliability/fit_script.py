"""A tiny Lightning fit on babeltower's streams, run as a subprocess by the reliability tests.

    python tests/reliability/fit_script.py OUT --train DIR --val DIR [--devices 2] [--workers 2]
        [--samples-per-epoch N] [--epochs 2] [--step-sleep 0.0] [--ckpt-every 0] [--ckpt-path CKPT]

Every rank appends the keys of each trained batch to OUT/seen-rank{R}.jsonl as
``{"epoch", "step", "keys"}`` (flushed per step, so a kill -9 keeps what was trained),
validation batch counts to OUT/val-rank{R}.json, and BadSampleReport writes
OUT/logs/.../bad_samples.json. Validation does an all_reduce per batch, like a
contrastive loss's all_gather, so unequal validation batch counts would fail or hang.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import lightning as L
import torch

from babeltower.datasets.pipeline import ShardStream, StreamLoaders, single_pass_stream
from babeltower.train.callbacks import BadSampleReport


def decode(sample: dict) -> dict:
    meta = json.loads(sample["json"])  # corrupt samples hold invalid JSON
    return {"key": sample["__key__"], "x": float(meta["n"])}


def collate(samples: list[dict]) -> dict:
    return {"key": [s["key"] for s in samples], "x": torch.tensor([[s["x"]] for s in samples])}


class KeyData(StreamLoaders, L.LightningDataModule):
    def __init__(self, train: str, val: str, batch_size: int, workers: int, samples_per_epoch: int | None):
        super().__init__()
        self.train_shards, self.val_shards = train, val
        self.batch_size, self.num_workers = batch_size, workers
        self.samples_per_epoch, self.resampled = samples_per_epoch, False
        self.train_stream = self.val_stream = None

    def setup(self, stage=None):
        if self.train_stream is None:
            self.train_stream = ShardStream(self.train_shards, decode=decode, collate=collate,
                                            batch_size=self.batch_size, shuffle_buffer=40,
                                            samples_per_epoch=self.samples_per_epoch)
        if self.val_stream is None and self.val_shards:
            self.val_stream = single_pass_stream(self.val_shards, decode=decode, collate=collate,
                                                 batch_size=self.batch_size)


class KeyRecorder(L.LightningModule):
    def __init__(self, out: str, step_sleep: float):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.out, self.step_sleep = Path(out), step_sleep
        self.val_batches = 0

    def training_step(self, batch, batch_idx):
        with open(self.out / f"seen-rank{self.global_rank}.jsonl", "a") as sink:
            sink.write(json.dumps({"epoch": self.current_epoch, "step": self.global_step, "keys": batch["key"]}) + "\n")
        if self.step_sleep:
            time.sleep(self.step_sleep)
        return self.layer(batch["x"] / 1000.0).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.val_batches += 1
        loss = self.layer(batch["x"] / 1000.0).pow(2).mean()
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(loss.detach().clone())  # a collective per validation batch
        self.log("val/loss", loss, batch_size=len(batch["key"]), sync_dist=True)

    def on_validation_epoch_end(self):
        path = self.out / f"val-rank{self.global_rank}.json"
        counts = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps(counts + [self.val_batches]))
        self.val_batches = 0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--train", required=True)
    parser.add_argument("--val", default=None)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--samples-per-epoch", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--step-sleep", type=float, default=0.0)
    parser.add_argument("--ckpt-every", type=int, default=0)
    parser.add_argument("--ckpt-path", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(args.seed, workers=True)
    torch.set_num_threads(1)
    callbacks = [BadSampleReport()]
    if args.ckpt_every:
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(
            dirpath=out / "ckpt", every_n_train_steps=args.ckpt_every, save_top_k=-1, filename="{epoch}-{step}"))
    trainer = L.Trainer(
        accelerator="cpu", devices=args.devices, strategy="ddp" if args.devices > 1 else "auto",
        max_epochs=args.epochs, callbacks=callbacks, logger=L.pytorch.loggers.CSVLogger(out / "logs"),
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        enable_checkpointing=bool(args.ckpt_every), log_every_n_steps=1,
    )
    data = KeyData(args.train, args.val, args.batch_size, args.workers, args.samples_per_epoch)
    trainer.fit(KeyRecorder(str(out), args.step_sleep), datamodule=data, ckpt_path=args.ckpt_path)
    if trainer.is_global_zero:
        (out / "done").write_text("ok")


if __name__ == "__main__":
    main()
