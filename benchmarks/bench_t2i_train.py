"""Text-to-image training step time per UNet layout: where the main job's minutes go.

One optimizer step (forward, v-loss, backward, AdamW) of the UNets of
``configs/t2i/tiny.yaml`` (cross-attention at 8x8 only) and ``configs/t2i/tiny_quality.yaml``
(cross-attention at 16x16 and 8x8), on random 32-px pixels and random text states of the
distilled student's width, at the configs' batch size. A third row is the main job's step
with REPA (``repa_from``: the contrastive head's 32-px ViT, width 64 x 3 layers, run on
the clean images without gradients, and the 3-layer MLP on the mid-block features). Speed
does not depend on the weights, so all start from random ones; each is timed in
alternation after a warm-up.

    python benchmarks/bench_t2i_train.py [--batch 8] [--steps 15] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import yaml

from babeltower.models.t2i import UNetConfig, build_unet, repa_alignment_loss, repa_projector

CONFIGS = {"tiny.yaml (main job)": "configs/t2i/tiny.yaml", "tiny_quality.yaml": "configs/t2i/tiny_quality.yaml"}
#: The main job's contrastive vision tower (what REPA aligns to).
REPA_VISION = dict(image_size=32, patch_size=4, width=64, layers=3, heads=4)


def build(config_path: str, text_width: int, repa: bool = False):
    fields = yaml.safe_load(open(config_path, encoding="utf-8"))["model"]["init_args"]["unet"]
    torch.manual_seed(0)
    unet = build_unet(UNetConfig(**fields), text_width)
    params = list(unet.parameters())
    if repa:  # the same parts Text2ImageSystem(repa_from=) adds
        from babeltower.models.vision import VisionConfig, VisionTower

        vision = VisionTower(VisionConfig(**REPA_VISION)).requires_grad_(False).eval()
        vision.vit.output_tokens = True
        projector = repa_projector(fields["block_out_channels"][-1], REPA_VISION["width"])
        kept = {}
        unet.mid_block.register_forward_hook(lambda module, inputs, output: kept.update(mid=output))
        unet.repa = (vision, projector, kept)
        params += list(projector.parameters())
    return unet, torch.optim.AdamW(params, lr=1e-3)


def step(unet, optimizer, batch: int, text_width: int) -> None:
    size = unet.config.sample_size
    x = torch.randn(batch, unet.config.in_channels, size, size)
    states = torch.randn(batch, 12, text_width)
    t = torch.randint(0, 1000, (batch,))
    extra = {"class_labels": states.mean(1)} if unet.config.class_embed_type else {}
    loss = unet(x, t, encoder_hidden_states=states, **extra).sample.pow(2).mean()
    if hasattr(unet, "repa"):
        vision, projector, kept = unet.repa
        with torch.no_grad():
            _, tokens = vision(x)
        loss = loss + 0.5 * repa_alignment_loss(projector, kept["mid"], tokens)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--text-width", type=int, default=64, help="width of the text states (the distilled student: 64)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {name: build(path, args.text_width) for name, path in CONFIGS.items()}
    models["tiny.yaml + REPA (main job)"] = build(CONFIGS["tiny.yaml (main job)"], args.text_width, repa=True)
    for unet, optimizer in models.values():
        for _ in range(3):
            step(unet, optimizer, args.batch, args.text_width)
    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.repeats):
        for name in (list(models) if r % 2 == 0 else list(reversed(models))):
            unet, optimizer = models[name]
            start = time.perf_counter()
            for _ in range(args.steps):
                step(unet, optimizer, args.batch, args.text_width)
            times[name].append((time.perf_counter() - start) / args.steps * 1000)
    print("| UNet | parameters | ms per training step | steps in 190 s |")
    print("|---|---|---|---|")
    for name, (unet, _) in models.items():
        ms = statistics.median(times[name])
        params = sum(p.numel() for p in unet.parameters()) / 1e6  # the UNet (REPA's MLP is training-only)
        print(f"| {name} | {params:.2f} M | {ms:.0f} ({', '.join(f'{t:.0f}' for t in times[name])}) | {190_000 / ms:.0f} |")


if __name__ == "__main__":
    main()
