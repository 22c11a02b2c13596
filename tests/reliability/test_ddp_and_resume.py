"""Reliability suite (issue 16): 2-rank DDP with uneven shards and corrupt samples; kill -9 and resume.

Run with ``make test-reliability`` (``pytest -m reliability tests/reliability``). Each test
drives tests/reliability/fit_script.py in subprocesses, with a timeout, so a hang fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from babeltower.datasets.writer import write_shards

pytestmark = pytest.mark.reliability

SCRIPT = Path(__file__).with_name("fit_script.py")
REPEATS = int(os.environ.get("BABELTOWER_RELIABILITY_REPEATS", "10"))


def _shards(folder: Path, sizes: list[int], corrupt: set[str], prefix: str) -> str:
    """One shard per size; samples named ``{prefix}{index}``; the keys in ``corrupt`` hold invalid JSON."""
    folder.mkdir(parents=True)
    index = 0
    for shard, size in enumerate(sizes):
        samples = []
        for _ in range(size):
            key = f"{prefix}{index:05d}"
            meta = '{"n": ' if key in corrupt else {"n": index}  # a str is written verbatim
            samples.append({"__key__": key, "json": meta})
            index += 1
        write_shards(samples, folder, prefix=f"shard{shard:03d}", max_count=size)
    return str(folder)


def _run(out: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), str(out), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _seen(out: Path, rank: int) -> list[dict]:
    path = out / f"seen-rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_two_rank_ddp_with_uneven_shards_and_corrupt_samples(tmp_path):
    """Train shards 300/100/20 and validation shards 70/30 on 2 gloo ranks, repeated: no hang, crash,
    duplicate, starvation or lost bad-sample report (bars of issue 16)."""
    # All shard sizes are even, so a sample's rank is its position's parity whatever the shard
    # order: three corrupt samples per rank, and samples_per_epoch = every good sample.
    train_bad = {"t00010", "t00151", "t00222", "t00305", "t00400", "t00419"}
    val_bad = {"v00003", "v00088"}
    train = _shards(tmp_path / "train", [300, 100, 20], train_bad, "t")
    val = _shards(tmp_path / "val", [70, 30], val_bad, "v")
    good_train = {f"t{i:05d}" for i in range(420)} - train_bad
    failures, durations = [], []
    for repeat in range(REPEATS):
        out = tmp_path / f"run{repeat}"
        start = time.monotonic()
        try:
            result = _run(out, "--train", train, "--val", val, "--devices", "2", "--batch-size", "9",
                          "--samples-per-epoch", "414", "--epochs", "2", "--seed", str(repeat))
        except subprocess.TimeoutExpired:
            failures.append(f"run {repeat}: hung (timeout)")
            continue
        durations.append(time.monotonic() - start)
        if result.returncode != 0 or not (out / "done").exists():
            failures.append(f"run {repeat}: exit {result.returncode}\n{result.stderr[-3000:]}")
            continue
        seen = {rank: _seen(out, rank) for rank in range(2)}
        for epoch in range(2):
            keys = {rank: [k for row in seen[rank] if row["epoch"] == epoch for k in row["keys"]] for rank in range(2)}
            assert [len(keys[0]), len(keys[1])] == [207, 207], (repeat, epoch)  # 23 batches of 9 on each rank
            everything = keys[0] + keys[1]
            assert len(set(everything)) == len(everything), f"run {repeat} epoch {epoch}: duplicates"
            assert set(everything) == good_train  # every good sample once, none starved
        val_counts = [json.loads((out / f"val-rank{rank}.json").read_text()) for rank in range(2)]
        assert val_counts[0] == val_counts[1] and len(val_counts[0]) == 2, val_counts
        (report_path,) = list(out.rglob("bad_samples.json"))
        report = json.loads(report_path.read_text())
        assert report["total_all_ranks"] == len(train_bad | val_bad)
        assert {item["key"] for item in report["samples"]} == train_bad | val_bad
    assert not failures, "\n".join(failures)
    print(f"\n{REPEATS} two-rank runs, {sum(durations):.0f} s in all, max {max(durations):.1f} s")


def test_kill_9_mid_epoch_then_resume_sees_every_sample_exactly_once(tmp_path):
    """kill -9 after a mid-epoch checkpoint; --ckpt_path resumes the data where the checkpoint was."""
    from babeltower.datasets.pipeline import EpochLoader, ShardStream

    bad = {"k00007", "k00061", "k00100"}
    train = _shards(tmp_path / "train", [60, 40, 20], bad, "k")
    out = tmp_path / "run"
    common = ["--train", train, "--workers", "2", "--batch-size", "5", "--samples-per-epoch", "100",
              "--epochs", "2", "--ckpt-every", "3"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(out), *common, "--step-sleep", "0.25"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    checkpoint, deadline = None, time.monotonic() + 240
    try:
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            saved = sorted((out / "ckpt").glob("epoch=1-step=*.ckpt"), key=lambda p: int(p.stem.split("=")[-1]))
            if not saved:
                continue
            step = int(saved[-1].stem.split("=")[-1])
            trained = max((row["step"] for row in _seen(out, 0)), default=0)
            if 24 <= step and trained >= step + 2:  # mid-epoch 1 (steps 20..39), past the checkpoint
                checkpoint = saved[-1]
                os.kill(process.pid, signal.SIGKILL)
                break
    finally:
        if process.poll() is None and checkpoint is None:
            process.kill()
        process.wait(timeout=30)
    assert checkpoint is not None, f"never reached a mid-epoch checkpoint: {process.stdout.read()[-3000:] if process.stdout else ''}"
    assert process.returncode == -signal.SIGKILL
    ckpt_step = int(checkpoint.stem.split("=")[-1])
    before = [row for row in _seen(out, 0) if row["epoch"] == 1 and row["step"] < ckpt_step]
    (out / "seen-rank0.jsonl").rename(out / "seen-killed.jsonl")

    result = _run(out, *common, "--ckpt-path", str(checkpoint))
    assert result.returncode == 0, result.stderr[-3000:]
    after = [row for row in _seen(out, 0) if row["epoch"] == 1]
    assert after and after[0]["step"] == ckpt_step  # continues at the next step

    stream = ShardStream(train, decode=_decode, collate=_collate, batch_size=5, shuffle_buffer=40,
                         samples_per_epoch=100, seed=0)
    stream.set_epoch(1)
    reference = [k for batch in EpochLoader(stream, num_workers=2) for k in batch["key"]]
    resumed = [k for row in before + after for k in row["keys"]]
    assert len(resumed) == len(set(resumed)) == 100  # each sample of the epoch exactly once
    assert Counter(resumed) == Counter(reference)
    assert not set(resumed) & bad


def _decode(sample):
    return {"key": sample["__key__"], "n": json.loads(sample["json"])["n"]}


def _collate(samples):
    return {"key": [s["key"] for s in samples]}


def test_two_rank_resume_from_a_mid_epoch_checkpoint(tmp_path):
    """DDP: checkpoints gather every rank's data position; resuming mid-epoch sees the epoch's rest once."""
    bad = {"t00010", "t00151", "t00222", "t00305", "t00400", "t00419"}
    train = _shards(tmp_path / "train", [300, 100, 20], bad, "t")
    common = ["--train", train, "--devices", "2", "--batch-size", "9", "--samples-per-epoch", "414",
              "--epochs", "2", "--ckpt-every", "5"]
    first, second = tmp_path / "first", tmp_path / "second"
    result = _run(first, *common)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = first / "ckpt" / "epoch=1-step=30.ckpt"  # epoch 1 is steps 23..45
    result = _run(second, *common, "--ckpt-path", str(checkpoint))
    assert result.returncode == 0, result.stderr[-3000:]
    keys = []
    for rank in range(2):
        keys += [k for row in _seen(first, rank) if row["epoch"] == 1 and row["step"] < 30 for k in row["keys"]]
        keys += [k for row in _seen(second, rank) if row["epoch"] == 1 for k in row["keys"]]
    assert len(keys) == len(set(keys)) == 414
    assert set(keys) == {f"t{i:05d}" for i in range(420)} - bad
    (report_path,) = list(second.rglob("bad_samples.json"))
    report = json.loads(report_path.read_text())
    assert {item["key"] for item in report["samples"]} == bad  # skips before the interruption included
