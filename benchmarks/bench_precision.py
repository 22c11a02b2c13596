"""Seconds per training step of each main-job head, fp32 against bf16 autocast, on this CPU.

Runs every demo config (the main job's own recipes, on the data of the last `make demo`)
for a few steps through the real LightningCLI, once per precision, in one process, and times
the steps after a warm-up with a callback. bf16-mixed is Lightning's CPU autocast
(torch.autocast("cpu", torch.bfloat16)): matmuls and convolutions in bf16, weights and
optimizer state in fp32.

    python benchmarks/bench_precision.py [--heads distill,contrastive,t2i,asr,vqa,ocr] [--steps 30]

Needs `make demo` (or `babeltower demo all`) run once: it reads runs/demo/data and the hubs.
Writes benchmarks/results/precision.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lightning as L

# head -> (demo config, train shards, val shards, extra CLI arguments the main job passes)
DEMO = "runs/demo"
HEADS = {
    "distill": ("configs/tiny/distill_demo.yaml", f"{DEMO}/data/parallel/train", f"{DEMO}/data/parallel/val", []),
    "contrastive": ("configs/tiny/contrastive_demo.yaml", f"{DEMO}/data/scenes/train", f"{DEMO}/data/scenes/val", []),
    "t2i": ("configs/t2i/tiny.yaml", f"{DEMO}/data/scenes/train", f"{DEMO}/data/scenes/val", []),
    "asr": ("configs/tiny/asr_demo.yaml", f"{DEMO}/data/speech/train", f"{DEMO}/data/speech/val", []),
    "vqa": ("configs/tiny/vqa_demo.yaml", f"{DEMO}/data/vqa/train", f"{DEMO}/data/vqa/val", []),
    "ocr": ("configs/tiny/ocr_demo.yaml", f"{DEMO}/data/ocr/train", f"{DEMO}/data/ocr/val", []),
}


class StepTimer(L.Callback):
    """Wall time of each training step after ``warmup`` steps (data loading included)."""

    def __init__(self, warmup: int):
        self.warmup, self.times, self._last = warmup, [], None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        if self._last is not None and trainer.global_step > self.warmup:
            self.times.append(now - self._last)
        self._last = now


def time_head(head: str, precision: str, steps: int, warmup: int) -> dict:
    from babeltower.train.launch import lightning_cli

    config, train, val, extra = HEADS[head]
    with tempfile.TemporaryDirectory() as tmp:
        cli = lightning_cli([
            "--config", config, "--trainer.default_root_dir", tmp, "--trainer.logger.init_args.save_dir", tmp,
            "--data.init_args.train_shards", train, "--data.init_args.val_shards", val,
            "--trainer.max_steps", str(steps + warmup), "--trainer.precision", precision,
            "--trainer.val_check_interval", str(10 * (steps + warmup)), "--trainer.enable_progress_bar", "false",
            *extra,
        ], run=False)
        timer = StepTimer(warmup)
        cli.trainer.callbacks.append(timer)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    times = sorted(timer.times)
    return {"head": head, "precision": precision, "steps": len(times),
            "s_per_step_median": times[len(times) // 2], "s_per_step_mean": sum(times) / len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/precision.json")
    args = parser.parse_args()
    rows = []
    for head in args.heads.split(","):
        for precision in ("32-true", "bf16-mixed"):
            row = time_head(head, precision, args.steps, args.warmup)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n| head | fp32 s/step | bf16-mixed s/step | speed-up |\n|---|---|---|---|")
    for head in args.heads.split(","):
        fp32, bf16 = (r["s_per_step_median"] for r in rows if r["head"] == head)
        print(f"| {head} | {fp32:.3f} | {bf16:.3f} | {fp32 / bf16:.2f}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
