"""Text-to-image inference: babeltower's pipeline vs diffusers' own denoising loop.

Both sides run the same UNet (the main job's tiny 32 px UNet, random weights: speed does
not depend on them), the same text encoder, the same scheduler (DPM-Solver++ by default)
and the same number of steps with classifier-free guidance, on the same prompts:

- babeltower: ``BabelTowerText2ImagePipeline.__call__`` (prompt encoding with the
  multilingual encoder, the UNet's attention routed through babeltower's ``attention``
  with SDPA, PIL output);
- peer: diffusers' ``StableDiffusionPipeline.__call__`` — diffusers' own denoising loop —
  fed the same prompt and negative-prompt states (``prompt_embeds``) and returning the
  final sample (``output_type="latent"``: pixel space has no VAE to decode), with
  diffusers' default ``AttnProcessor2_0`` (SDPA).

The UNet is built without the pooled-text class embedding on both sides, since
StableDiffusionPipeline has no way to pass it. The peer's prompt encoding is done
outside its timed loop; babeltower's is timed (a small handicap for babeltower).

    python benchmarks/bench_t2i.py [--batch 8] [--steps 25] [--repeats 3] [--scheduler dpm++]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def build(scheduler_name: str):
    from babeltower.models.t2i import BabelTowerText2ImagePipeline, UNetConfig, build_unet, scheduler_class
    from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig, resolve_tokenizer

    torch.manual_seed(0)
    text = TextEncoder(TextEncoderConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128))
    unet = build_unet(UNetConfig(pooled_conditioning=False), text.backbone.config.hidden_size).eval()
    scheduler = scheduler_class(scheduler_name)(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", steps_offset=1)
    pipe = BabelTowerText2ImagePipeline(
        unet=unet, scheduler=scheduler, text_encoder=text.backbone.eval(), tokenizer=resolve_tokenizer(text.config)
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def peer_pipeline(pipe):
    """diffusers' StableDiffusionPipeline around a copy of the same UNet and scheduler."""
    import copy

    from diffusers import StableDiffusionPipeline
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet = copy.deepcopy(pipe.unet)
    unet.set_attn_processor(AttnProcessor2_0())
    peer = StableDiffusionPipeline(
        vae=None, text_encoder=None, tokenizer=None, unet=unet, scheduler=copy.deepcopy(pipe.scheduler),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    peer.set_progress_bar_config(disable=True)
    return peer


def run_ours(pipe, prompts, steps, guidance):
    gens = [torch.Generator().manual_seed(i) for i in range(len(prompts))]
    return pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, generator=gens, output_type="pil").images


def run_peer(peer, embeds, negative, steps, guidance, side):
    gens = [torch.Generator().manual_seed(i) for i in range(embeds.shape[0])]
    # StableDiffusionPipeline sizes latents as height // vae_scale_factor (8 without a VAE).
    factor = peer.vae_scale_factor
    return peer(
        prompt_embeds=embeds, negative_prompt_embeds=negative, num_inference_steps=steps, guidance_scale=guidance,
        generator=gens, height=side * factor, width=side * factor, output_type="latent",
    ).images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scheduler", default="dpm++", choices=["dpm++", "ddim", "ddpm"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from babeltower.datasets.synthetic.scenes import LANGUAGES, caption, sample_scenes

    specs = list(sample_scenes(args.batch, "val", seed=0))
    prompts = [caption(spec, LANGUAGES[i % len(LANGUAGES)]) for i, spec in enumerate(specs)]
    pipe = build(args.scheduler)
    peer = peer_pipeline(pipe)
    # The peer gets the same text states, padded to one length (it has no attention mask).
    with torch.no_grad():
        tokens = pipe.tokenizer(prompts, padding="max_length", max_length=32, return_tensors="pt")
        embeds = pipe.text_encoder(**tokens).last_hidden_state
        empty = pipe.tokenizer([""] * len(prompts), padding="max_length", max_length=32, return_tensors="pt")
        negative = pipe.text_encoder(**empty).last_hidden_state

    side = pipe.unet.config.sample_size
    run_ours(pipe, prompts[:1], 2, args.guidance)  # warm-up
    run_peer(peer, embeds[:1], negative[:1], 2, args.guidance, side)
    times = {"babeltower": [], "diffusers": []}
    for r in range(args.repeats):
        order = ["babeltower", "diffusers"] if r % 2 == 0 else ["diffusers", "babeltower"]
        for name in order:
            start = time.perf_counter()
            if name == "babeltower":
                run_ours(pipe, prompts, args.steps, args.guidance)
            else:
                run_peer(peer, embeds, negative, args.steps, args.guidance, side)
            times[name].append(args.batch / (time.perf_counter() - start))
    ours, theirs = statistics.median(times["babeltower"]), statistics.median(times["diffusers"])
    fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    print(f"| device | scheduler | steps | batch | babeltower images/s | diffusers loop images/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| CPU ({args.threads} threads) | {args.scheduler} | {args.steps} | {args.batch} | {ours:.2f} ({fmt(times['babeltower'])}) "
        f"| {theirs:.2f} ({fmt(times['diffusers'])}) | **{ours / theirs:.2f}** |"
    )


if __name__ == "__main__":
    main()
