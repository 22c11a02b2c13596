"""Text-to-image training: CLI fit + resume with EMA, stages, loss weighting, export, generate."""

from pathlib import Path

import pytest
import torch

from babeltower.cli import main
from babeltower.train.launch import lightning_cli
from babeltower.train.t2i import Text2ImageSystem, min_snr_weights, sample_timesteps

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_UNET = dict(
    sample_size=16, block_out_channels=[16, 32], layers_per_block=1, cross_attention_levels=[False, True],
    cross_attention_dim=16, attention_head_dim=8, norm_num_groups=8,
)


def _fit_args(shards, root, steps, extra=()):
    return [
        "fit", "--config", "configs/t2i/tiny.yaml",
        "--model.init_args.init_from", "null",
        "--model.init_args.unet", str(TINY_UNET).replace("'", '"').replace("False", "false").replace("True", "true"),
        "--data.init_args.batch_size", "8",
        "--data.init_args.samples_per_epoch", "64",
        "--data.init_args.num_workers", "0",
        "--data.init_args.train_shards", shards["train"],
        "--data.init_args.val_shards", shards["val"],
        "--trainer.default_root_dir", str(root),
        "--trainer.logger.init_args.save_dir", str(root),
        "--trainer.max_steps", str(steps),
        "--trainer.val_check_interval", "4",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *extra,
    ]


def _system(**kwargs):
    from babeltower.models.t2i import UNetConfig

    torch.manual_seed(0)
    return Text2ImageSystem(unet=UNetConfig(**TINY_UNET), **kwargs)


def _batch(system, n=4, size=16):
    from babeltower.modalities.text import tokenize

    tokens = tokenize(system.tokenizer, ["a red circle", "ein blaues Quadrat", "三个黄色的星形", "une étoile"][:n], 32)
    return {"pixel_values": torch.randn(n, 3, size, size), **tokens}


@pytest.fixture(scope="module")
def fitted(scene_shards, tmp_path_factory):
    root = tmp_path_factory.mktemp("t2i_fit")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO_ROOT)
        cli = lightning_cli(_fit_args(scene_shards, root, 6))
    assert cli.trainer.global_step == 6
    return {"root": root, "ckpt": sorted(root.rglob("last.ckpt"))[0], "system": cli.model}


def test_fit_trains_unet_and_ema_tracks_it(fitted):
    system = fitted["system"]
    fresh = _system()
    diffs = [(a - b).abs().max().item() for a, b in zip(system.unet.parameters(), fresh.unet.parameters())]
    assert max(diffs) > 0  # the UNet trained
    ema_gap = max((a - b).abs().max().item() for a, b in zip(system.ema_unet.parameters(), system.unet.parameters()))
    assert ema_gap > 0  # EMA lags the weights ...
    # ... but moved with them from the initialisation (decay warm-up (1+s)/(10+s) < 1)
    assert max((a - b).abs().max().item() for a, b in zip(system.ema_unet.parameters(), fresh.unet.parameters())) > 0
    assert all(not p.requires_grad for p in system.text_encoder.parameters())


def test_resume_restores_ema_and_continues(fitted, scene_shards, tmp_path):
    saved = torch.load(fitted["ckpt"], map_location="cpu", weights_only=True)
    ema_keys = [k for k in saved["state_dict"] if k.startswith("ema_unet.")]
    assert ema_keys, "EMA weights must be in the checkpoint"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO_ROOT)
        cli = lightning_cli(_fit_args(scene_shards, tmp_path, 8, ["--ckpt_path", str(fitted["ckpt"])]))
    assert cli.trainer.global_step == 8
    system = cli.model
    assert system.ema_unet is not None and next(system.ema_unet.parameters()).device.type == "cpu"
    key = ema_keys[0]
    resumed = system.state_dict()[key]
    assert not torch.equal(resumed, saved["state_dict"][key])  # two more EMA updates happened on top


def test_export_and_generate_from_cli(fitted, tmp_path, capsys):
    hub = tmp_path / "hub"
    assert main(["export", str(fitted["ckpt"]), str(hub)]) == 0
    for name in ["model_index.json", "pipeline_babeltower.py", "unet/config.json", "text_encoder/config.json",
                 "scheduler/scheduler_config.json", "tokenizer/tokenizer.json", "README.md"]:
        assert (hub / name).is_file(), name
    out = tmp_path / "images"
    args = ["generate", str(hub), "--prompt", "un cercle rouge à gauche", "--prompt", "两个蓝色的正方形",
            "--num-images", "2", "--steps", "3", "--out", str(out)]
    assert main(args) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["00_00.png", "00_01.png", "01_00.png", "01_01.png"]
    first = (out / "00_00.png").read_bytes()
    assert main(args) == 2  # refuses to overwrite
    assert "would be overwritten" in capsys.readouterr().err
    assert (out / "00_00.png").read_bytes() == first
    assert main(args + ["--overwrite", "--scheduler", "ddim"]) == 0
    assert main(["generate", str(hub), "--prompt", " ", "--out", str(tmp_path / "e")]) == 2
    assert "is empty" in capsys.readouterr().err
    assert main(["generate", str(hub), "--prompt", "mot " * 300, "--out", str(tmp_path / "long")]) == 2
    assert "tokens long" in capsys.readouterr().err
    assert not (tmp_path / "long").exists()
    # the exported UNet is the checkpoint's EMA UNet
    from babeltower.models.hub import load_t2i_pipeline

    state = torch.load(fitted["ckpt"], map_location="cpu", weights_only=True)["state_dict"]
    unet = load_t2i_pipeline(hub).unet.state_dict()
    assert set(unet) == {k[len("ema_unet."):] for k in state if k.startswith("ema_unet.")}
    for key, value in unet.items():
        torch.testing.assert_close(value, state[f"ema_unet.{key}"], atol=0, rtol=0)


def test_stage_one_trains_only_cross_attention_kv_and_text_projections():
    system = _system(trainable="cross_attention_kv", ema_decay=None)
    before = {k: v.clone() for k, v in system.unet.state_dict().items()}
    params = [p for p in system.unet.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    system.train()
    system.diffusion_loss(_batch(system)).backward()
    opt.step()
    changed = {k for k, v in system.unet.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(
        ("attn2.to_k" in k or "attn2.to_v" in k or k.startswith(("encoder_hid_proj", "class_embedding"))) for k in changed
    )
    assert any("attn2.to_k" in k for k in changed) and any(k.startswith("encoder_hid_proj") for k in changed)


def test_init_unet_keeps_weights_and_refreshes_text_projection_for_new_encoder(tmp_path):
    from babeltower.models.t2i import UNetConfig, build_unet

    source = build_unet(UNetConfig(**TINY_UNET), text_hidden_size=48)  # an "English" encoder of width 48
    source.save_pretrained(tmp_path / "unet")
    system = _system(init_unet=str(tmp_path), trainable="cross_attention_kv")  # width 32 here
    own, src = system.unet.state_dict(), source.state_dict()
    conv = "conv_in.weight"
    torch.testing.assert_close(own[conv], src[conv], atol=0, rtol=0)
    assert own["encoder_hid_proj.weight"].shape != src["encoder_hid_proj.weight"].shape


def test_min_snr_weights_match_definition():
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    t = torch.tensor([0, 10, 500, 999])
    alpha = sched.alphas_cumprod[t]
    snr = alpha / (1 - alpha)
    eps = min_snr_weights(sched.alphas_cumprod, t, 5.0, "epsilon")
    v = min_snr_weights(sched.alphas_cumprod, t, 5.0, "v_prediction")
    torch.testing.assert_close(eps, torch.minimum(snr, torch.tensor(5.0)) / snr)
    torch.testing.assert_close(v, torch.minimum(snr, torch.tensor(5.0)) / (snr + 1))
    assert eps[0] < 1e-2 and eps[-1] == pytest.approx(1.0)  # low noise down-weighted, high noise kept


def test_logit_normal_timesteps_follow_the_logit_normal_density():
    n, T = 200_000, 1000
    g = torch.Generator().manual_seed(0)
    uniform = sample_timesteps(n, T, "uniform", generator=g)
    ln = sample_timesteps(n, T, "logit_normal", 0.0, 1.0, generator=g)
    shifted = sample_timesteps(n, T, "logit_normal", 1.0, 1.0, generator=g)
    for t in (uniform, ln, shifted):
        assert t.dtype == torch.long and int(t.min()) >= 0 and int(t.max()) <= T - 1
    # P(t < 100) = P(u < logit(0.1)) = Phi(-2.197) = 0.0140 for N(0, 1); uniform: 0.1.
    assert (ln < 100).float().mean().item() == pytest.approx(0.0140, abs=0.002)
    assert (uniform < 100).float().mean().item() == pytest.approx(0.1, abs=0.004)
    assert (ln < 500).float().mean().item() == pytest.approx(0.5, abs=0.005)  # median at the middle
    assert (shifted < 500).float().mean().item() == pytest.approx(0.1587, abs=0.004)  # Phi(-1): noisier
    with pytest.raises(ValueError, match="timestep_sampling='lognorm'"):
        sample_timesteps(4, T, "lognorm")
    with pytest.raises(ValueError, match="timestep_sampling"):
        _system(timestep_sampling="lognorm")


def test_validation_loss_draws_uniform_timesteps_whatever_the_training_sampling():
    uniform, ln = _system(), _system(timestep_sampling="logit_normal", logit_mean=3.0)
    ln.load_state_dict(uniform.state_dict())
    batch = _batch(uniform)
    for system in (uniform, ln):
        system.eval()
    val = [s.diffusion_loss(batch, torch.Generator().manual_seed(1), drop=False) for s in (uniform, ln)]
    torch.testing.assert_close(val[0], val[1])
    train = [s.diffusion_loss(batch, torch.Generator().manual_seed(1), drop=True) for s in (uniform, ln)]
    assert not torch.allclose(train[0], train[1])


def test_caption_dropout_replaces_captions_with_the_empty_prompt():
    system = _system(caption_dropout=0.5)
    batch = _batch(system)
    seed = next(s for s in range(100) if 0 < (torch.rand(4, generator=torch.Generator().manual_seed(s)) < 0.5).sum() < 4)
    expected = (torch.rand(4, generator=torch.Generator().manual_seed(seed)) < 0.5).nonzero().flatten().tolist()
    ids, mask = system._drop_captions(batch["input_ids"], batch["attention_mask"], torch.Generator().manual_seed(seed))
    null = system.tokenizer("")["input_ids"]
    dropped = [i for i in range(4) if not torch.equal(ids[i], batch["input_ids"][i])]
    assert dropped == expected
    for i in dropped:
        assert ids[i, : len(null)].tolist() == null and mask[i].sum() == len(null)


def test_v_prediction_in_latent_space_trains(tmp_path):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        block_out_channels=[8, 16], down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4, norm_num_groups=8, sample_size=32,
    )
    vae.save_pretrained(tmp_path / "vae")
    from babeltower.models.t2i import UNetConfig

    system = Text2ImageSystem(
        unet=UNetConfig(**{**TINY_UNET, "in_channels": 4}), vae=str(tmp_path / "vae"), prediction_type="v_prediction"
    )
    loss = system.diffusion_loss(_batch(system, size=32))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is None for p in system.vae.parameters())
    assert system.pipeline()(["a red circle"], num_inference_steps=2, output_type="pt").images.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="latent channels"):
        Text2ImageSystem(unet=UNetConfig(**TINY_UNET), vae=str(tmp_path / "vae"))


def test_eval_t2i_cli_writes_report_grid_and_reuses_judge(fitted, tmp_path, capsys):
    import json

    from babeltower.eval.judge import JudgeConfig, train_judge

    judge_dir = tmp_path / "judge"
    train_judge(image_size=16, num_train=64, steps=2, batch_size=16, config=JudgeConfig(image_size=16, channels=[4, 8],
                hidden_size=16), progress=False).save_pretrained(judge_dir)
    out = tmp_path / "eval"
    args = ["eval", "t2i", str(fitted["ckpt"]), "--out", str(out), "--judge", str(judge_dir), "--languages", "en,fr,ja",
            "--num-scenes", "3", "--steps", "2"]
    assert main(args) == 0
    report = json.loads((out / "t2i.json").read_text())
    assert set(report["per_language"]) == {"en", "fr", "ja"}
    assert 0.0 <= report["cross_lingual_attribute_agreement"] <= 1.0
    assert report["sampling"]["steps"] == 2 and report["code_mixed"]["examples"]["fr"] != ""
    for name in ("t2i.md", "t2i.png", "grid.png"):
        assert (out / name).is_file(), name
    # a judge trained at another size is refused with a clear message
    other = tmp_path / "judge32"
    train_judge(image_size=32, num_train=32, steps=1, batch_size=16, config=JudgeConfig(image_size=32, channels=[4, 8],
                hidden_size=16), progress=False).save_pretrained(other)
    assert main(args[:5] + ["--judge", str(other)] + args[7:]) == 2
    assert "works at 32 px but the model generates 16 px" in capsys.readouterr().err


def test_fit_in_bf16_mixed_precision(scene_shards, tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO_ROOT)
        cli = lightning_cli(_fit_args(scene_shards, tmp_path, 2, ["--trainer.precision", "bf16-mixed"]))
    assert cli.trainer.global_step == 2
    assert all(torch.isfinite(p).all() for p in cli.model.unet.parameters())


def _vision_hub(tmp_path, image_size=16):
    from babeltower.models.clip import CLIPConfig, CLIPModel
    from babeltower.models.hub import save_clip
    from babeltower.models.text_encoder import TextEncoderConfig
    from babeltower.models.vision import VisionConfig

    torch.manual_seed(1)
    config = CLIPConfig(
        vision=VisionConfig(image_size=image_size, patch_size=4, width=24, layers=1, heads=2),
        text=TextEncoderConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        embed_dim=16,
    )
    model = CLIPModel(config).eval()
    return model, save_clip(model, tmp_path / "clip_hub")


def test_repa_aligns_mid_block_features_to_the_frozen_vision_tower(scene_shards, tmp_path, monkeypatch):
    import csv

    clip, hub = _vision_hub(tmp_path)
    monkeypatch.chdir(REPO_ROOT)
    cli = lightning_cli(_fit_args(scene_shards, tmp_path / "run", 8, ["--model.init_args.repa_from", str(hub),
                                                                     "--trainer.log_every_n_steps", "1"]))
    system = cli.model
    # the vision tower is the hub's and stays frozen; the projector trains with the UNet
    for key, value in clip.vision.vit.state_dict().items():
        assert torch.equal(system.repa_vision.vit.state_dict()[key], value), key
    optimized = {id(p) for group in cli.trainer.optimizers[0].param_groups for p in group["params"]}
    assert all(id(p) in optimized for p in system.repa_projector.parameters())
    assert not any(id(p) in optimized for p in system.repa_vision.parameters())
    rows = list(csv.DictReader(open(sorted((tmp_path / "run").rglob("metrics.csv"))[0])))
    repa = [float(r["train/repa"]) for r in rows if r.get("train/repa")]
    assert len(repa) == 8 and all(0 <= value <= 2 for value in repa)

    # the loss is 1 - cosine against the tower's patch tokens of the clean image (UNet mid
    # block 8x8 pooled onto the tower's 4x4 grid), and gradients reach the UNet through it
    system.train()
    batch = _batch(system)
    system.diffusion_loss(batch, generator=torch.Generator().manual_seed(0))
    features = system._mid_hook.output.detach()
    assert features.shape[-2:] == (8, 8)
    _, tokens = system.repa_vision(batch["pixel_values"])
    pooled = torch.nn.functional.adaptive_avg_pool2d(features, 4).flatten(2).transpose(1, 2)
    expected = 1 - torch.nn.functional.cosine_similarity(system.repa_projector(pooled), tokens, dim=-1).mean()
    system.diffusion_loss(batch, generator=torch.Generator().manual_seed(0))  # same noise and timesteps
    loss = system.repa_loss(batch["pixel_values"])
    assert torch.allclose(loss, expected, atol=1e-5)
    loss.backward()
    assert system.unet.mid_block.resnets[0].conv1.weight.grad.abs().sum() > 0
    assert system._mid_hook.output is None  # used once, then dropped
    system.eval()
    system.diffusion_loss(batch)
    assert system._mid_hook.output is None  # validation and sampling keep nothing
    pipe = system.pipeline(use_ema=False)  # copying the UNet copies an empty hook, not the system
    hooks = list(pipe.unet.mid_block._forward_hooks.values())
    assert len(hooks) == 1 and hooks[0] is not system._mid_hook and hooks[0].output is None


def test_repa_from_needs_a_contrastive_hub_at_the_unets_size(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a contrastive hub folder with vision_model/"):
        _system(repa_from=str(tmp_path))
    _, hub = _vision_hub(tmp_path, image_size=32)
    with pytest.raises(ValueError, match="reads 32-px images, the UNet draws 16-px ones"):
        _system(repa_from=str(hub))
