"""Training throughput: babeltower's ContrastiveSystem (Lightning) vs a plain open_clip loop.

Both sides train the same tiny CLIP configuration on the same in-memory batches for the
same number of steps:
- babeltower: ``ContrastiveSystem`` driven by ``lightning.Trainer.fit`` (AdamW + cosine
  schedule, logging, progress bar disabled), its open_clip ViT with babeltower's
  attention dispatch and the shared XLM-R-style text encoder;
- peer: ``open_clip.CustomTextCLIP`` with the *same* vision config and the *same* HF
  text backbone (loaded by open_clip's ``HFTextEncoder`` from a local folder, mean
  pooler, linear projection), trained by a hand-written loop with ``open_clip.ClipLoss``
  and AdamW.

Batches are decoded once up front so that only model + optimizer work is timed; the
data pipeline has its own benchmark (bench_data.py). Prints the median samples/s of ``--repeats`` runs per side (alternating which
side goes first) and the ratio.

    python benchmarks/bench_contrastive.py [--steps 60] [--batch-size 64] [--size tiny|b32]
        [--device cpu|cuda] [--precision 32-true|bf16-mixed]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from babeltower.modalities.text import default_tokenizer_path, load_tokenizer
from babeltower.models.text_encoder import TextEncoderConfig
from babeltower.models.vision import VisionConfig

SIZES = {
    # width/layers/heads of both towers; image size and patch
    "tiny": dict(image_size=32, patch_size=4, width=64, layers=3, heads=4, text_width=64, text_layers=3, embed=64),
    "b32": dict(image_size=224, patch_size=32, width=768, layers=12, heads=12, text_width=768, text_layers=12, embed=512),
}


def make_batches(n: int, batch_size: int, image_size: int, seq_len: int, vocab: int, seed: int = 0):
    """Random pixel/token batches (fixed, identical for both sides)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        lengths = torch.randint(seq_len // 2, seq_len + 1, (batch_size,), generator=g)
        mask = (torch.arange(seq_len)[None, :] < lengths[:, None]).long()
        ids = torch.randint(5, vocab, (batch_size, seq_len), generator=g) * mask + (1 - mask)  # pad id 1
        batches.append(
            {
                "pixel_values": torch.randn(batch_size, 3, image_size, image_size, generator=g),
                "input_ids": ids,
                "attention_mask": mask,
                "bad_samples": [],
            }
        )
    return batches


def bench_babeltower(size, batches, steps, device, precision):
    import lightning as L

    from babeltower.train.contrastive import ContrastiveSystem

    torch.manual_seed(0)
    system = ContrastiveSystem(
        vision=VisionConfig(
            image_size=size["image_size"], patch_size=size["patch_size"], width=size["width"],
            layers=size["layers"], heads=size["heads"],
        ),
        text=TextEncoderConfig(
            hidden_size=size["text_width"], num_hidden_layers=size["text_layers"], num_attention_heads=size["heads"],
            intermediate_size=4 * size["text_width"],
        ),
        embed_dim=size["embed"],
        warmup_steps=10,
    )

    class Cycle(torch.utils.data.IterableDataset):
        def __iter__(self):
            for i in range(steps):
                yield batches[i % len(batches)]

    loader = torch.utils.data.DataLoader(Cycle(), batch_size=None)
    timer = {}

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, idx):
            if idx == 5:  # skip warm-up steps
                if device == "cuda":
                    torch.cuda.synchronize()
                timer["start"] = time.perf_counter()

        def on_train_end(self, trainer, module):
            if device == "cuda":
                torch.cuda.synchronize()
            timer["end"] = time.perf_counter()

    trainer = L.Trainer(
        accelerator=device, devices=1, precision=precision, max_steps=steps, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[Timer()],
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(system, train_dataloaders=loader)
    samples = (steps - 5) * batches[0]["pixel_values"].shape[0]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return samples / (timer["end"] - timer["start"]), system, peak


def bench_open_clip(size, batches, steps, device, precision, text_backbone_dir):
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    model = open_clip.CustomTextCLIP(
        embed_dim=size["embed"],
        vision_cfg=CLIPVisionCfg(
            image_size=size["image_size"], patch_size=size["patch_size"], width=size["width"],
            layers=size["layers"], head_width=size["width"] // size["heads"],
        ),
        text_cfg=CLIPTextCfg(
            hf_model_name=str(text_backbone_dir), hf_tokenizer_name=str(text_backbone_dir),
            hf_model_pretrained=False, hf_proj_type="linear", hf_pooler_type="mean_pooler",
        ),
    ).to(device)
    loss_fn = open_clip.ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model.train()
    start = None
    for i in range(steps):
        if i == 5:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        batch = batches[i % len(batches)]
        images = batch["pixel_values"].to(device, non_blocking=True)
        ids = batch["input_ids"].to(device, non_blocking=True)
        with autocast:
            # open_clip's HFTextEncoder builds its mask from pad_token_id (== our pad id 1)
            img, txt, scale = model(images, ids)[:3]
            loss = loss_fn(img, txt, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)
    if device == "cuda":
        torch.cuda.synchronize()
    samples = (steps - 5) * batches[0]["pixel_values"].shape[0]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return samples / (time.perf_counter() - start), peak


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--seq-len", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side (median reported), order alternating")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()
    size = SIZES[args.size]
    vocab = len(load_tokenizer(default_tokenizer_path()))
    batches = make_batches(8, args.batch_size, size["image_size"], args.seq_len, vocab)

    ours_runs, peer_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            # alternate which side runs first, so warm caches / clocks favour neither
            if repeat % 2 == 0:
                ours, system, our_peak = bench_babeltower(size, batches, args.steps, args.device, args.precision)
            # the same HF backbone architecture for open_clip's HFTextEncoder
            system.model.text.save_pretrained(Path(tmp) / str(repeat))
            peer, peer_peak = bench_open_clip(
                size, batches, args.steps, args.device, args.precision, Path(tmp) / str(repeat)
            )
            if repeat % 2 == 1:
                ours, system, our_peak = bench_babeltower(size, batches, args.steps, args.device, args.precision)
            ours_runs.append(ours)
            peer_runs.append(peer)
    ours, peer = sorted(ours_runs)[len(ours_runs) // 2], sorted(peer_runs)[len(peer_runs) // 2]
    result = {
        "size": args.size, "device": args.device, "precision": args.precision, "batch_size": args.batch_size,
        "steps_timed": args.steps - 5, "babeltower_samples_per_s": round(ours, 1),
        "open_clip_samples_per_s": round(peer, 1), "ratio_babeltower_over_open_clip": round(ours / peer, 3),
        "babeltower_peak_gib": our_peak, "open_clip_peak_gib": peer_peak,
        "torch_threads": torch.get_num_threads(), "repeats": args.repeats,
        "all_babeltower": [round(x, 1) for x in ours_runs], "all_open_clip": [round(x, 1) for x in peer_runs],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
