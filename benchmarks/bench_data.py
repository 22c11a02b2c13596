"""Data pipeline throughput: babeltower's reader vs a plain webdataset loop over the same shards.

Both sides read the same tar shards, decode the PNG, apply the same training transform
(scale jitter, random crop, normalisation), tokenise the caption with the same tokenizer
and stack batches of the same size. babeltower's side adds what a training run needs:
epoch-seeded shard shuffle, sample-level split across ranks and workers, a per-worker
sample shuffle buffer, bad-sample accounting, equal batch counts per rank, and the
per-batch resume position (exact mid-epoch resume). Prints samples/s of both and the
ratio (median of --repeats runs per side, alternating which side goes first).

    python benchmarks/bench_data.py [--shards DIR] [--workers 0 2] [--batch-size 64]

Without --shards it writes 4,000 synthetic 64 px scenes into a temporary folder.
"""

from __future__ import annotations

import os

# Both sides tokenise inside DataLoader workers; without this, Rust thread pools in every
# forked worker oversubscribe the cores (babeltower's loader sets it too; set here so the
# plain loop gets the same treatment whichever side runs first).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import torch
import webdataset as wds
from PIL import Image

from babeltower.datasets.datamodule import ImageTextDataModule
from babeltower.datasets.pipeline import expand_shards
from babeltower.modalities.image import ImageTransform
from babeltower.modalities.text import default_tokenizer_path, load_tokenizer, tokenize


class PlainCollate:
    def __init__(self, tokenizer, max_length):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, samples):
        images, texts = zip(*samples)
        enc = tokenize(self.tokenizer, list(texts), self.max_length)
        return {"pixel_values": torch.stack(images), **enc}


def plain_webdataset(urls, image_size, batch_size, workers, tokenizer):
    """The peer: webdataset's documented pipeline, decode included."""
    # The training transform (scale jitter + random crop), as babeltower's training stream
    # applies: both sides do the same image work per sample.
    transform = ImageTransform(image_size, train=True)
    dataset = (
        wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node, workersplitter=wds.split_by_worker)
        .shuffle(1000)
        .decode("pil")
        .to_tuple("png", "txt")
        .map_tuple(lambda im: transform(im.convert("RGB")), lambda t: t)
        .batched(batch_size, collation_fn=PlainCollate(tokenizer, 64), partial=False)
    )
    return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)


def babeltower_loader(spec, image_size, batch_size, workers, num_samples):
    dm = ImageTextDataModule(
        train_shards=spec,  # one source (a list would mean several sources to mix)
        image_size=image_size,
        batch_size=batch_size,
        num_workers=workers,
        samples_per_epoch=num_samples,
    )
    dm.setup("fit")
    return dm.train_dataloader()


def timed(loader) -> tuple[int, float]:
    start = time.perf_counter()
    n = 0
    for batch in loader:
        n += batch["pixel_values"].shape[0]
    return n, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default=None)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side (median reported)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    tokenizer = load_tokenizer(default_tokenizer_path())
    with tempfile.TemporaryDirectory() as tmp:
        shards = args.shards
        if shards is None:
            from babeltower.datasets.synthetic.scenes import write_scene_shards

            write_scene_shards(tmp, num_train=4000, num_val=0, image_size=64, samples_per_shard=500, progress=False)
            shards = str(Path(tmp) / "train")
        urls = expand_shards(shards)
        num_samples = sum(1 for _ in wds.WebDataset(urls, shardshuffle=False))
        results = []
        for workers in args.workers:
            plain_runs, our_runs = [], []
            for repeat in range(args.repeats):
                # alternate which side goes first so page cache and clocks favour neither
                sides = ["plain", "ours"] if repeat % 2 == 0 else ["ours", "plain"]
                for side in sides:
                    if side == "plain":
                        n_plain, t = timed(plain_webdataset(urls, args.image_size, args.batch_size, workers, tokenizer))
                        plain_runs.append(n_plain / t)
                    else:
                        n_ours, t = timed(babeltower_loader(shards, args.image_size, args.batch_size, workers, num_samples))
                        our_runs.append(n_ours / t)
            plain, ours = sorted(plain_runs)[len(plain_runs) // 2], sorted(our_runs)[len(our_runs) // 2]
            row = {
                "workers": workers, "shards": len(urls), "samples_plain": n_plain, "samples_babeltower": n_ours,
                "plain_webdataset_samples_per_s": round(plain, 1),
                "babeltower_samples_per_s": round(ours, 1),
                "ratio_babeltower_over_plain": round(ours / plain, 3),
                "all_plain": [round(x, 1) for x in plain_runs], "all_babeltower": [round(x, 1) for x in our_runs],
            }
            results.append(row)
            print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
