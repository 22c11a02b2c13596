"""Text-to-image model and pipeline: attention processor, diffusers round trip, prompts."""

import pytest
import torch

from babeltower.models.t2i import (
    BabelTowerAttnProcessor,
    BabelTowerText2ImagePipeline,
    UNetConfig,
    build_unet,
    masked_mean,
    unet_kwargs,
)

TINY_UNET = dict(
    sample_size=16, block_out_channels=[16, 32], layers_per_block=1, cross_attention_levels=[False, True],
    cross_attention_dim=16, attention_head_dim=8, norm_num_groups=8,
)


def _pipeline(scheduler_cls=None, pooled=True):
    from diffusers import DDIMScheduler

    from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig, resolve_tokenizer

    torch.manual_seed(0)
    text = TextEncoder(TextEncoderConfig())
    unet = build_unet(UNetConfig(**TINY_UNET, pooled_conditioning=pooled), text.backbone.config.hidden_size)
    scheduler = (scheduler_cls or DDIMScheduler)(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    return BabelTowerText2ImagePipeline(
        unet=unet.eval(), scheduler=scheduler, text_encoder=text.backbone.eval(), tokenizer=resolve_tokenizer(text.config)
    )


def test_processor_matches_diffusers_default_with_text_padding_mask():
    from diffusers.models.attention_processor import AttnProcessor2_0

    torch.manual_seed(0)
    unet = build_unet(UNetConfig(**TINY_UNET), 32).eval()
    x = torch.randn(2, 3, 16, 16)
    states = torch.randn(2, 7, 32)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    t = torch.tensor([3, 50])
    kwargs = unet_kwargs(unet, states, mask, masked_mean(states, mask))
    with torch.no_grad():
        ours = unet(x, t, **kwargs).sample
        unet.set_attn_processor(BabelTowerAttnProcessor("math"))
        math = unet(x, t, **kwargs).sample
        unet.set_attn_processor(AttnProcessor2_0())
        reference = unet(x, t, **kwargs).sample
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(math, reference, atol=1e-5, rtol=1e-5)
    # the padding mask matters: garbage in padded positions must not change the output
    noisy = states.clone()
    noisy[1, 4:] = 100.0
    with torch.no_grad():
        unet.set_attn_processor(BabelTowerAttnProcessor("sdpa"))
        masked = unet(x, t, **unet_kwargs(unet, noisy, mask, masked_mean(noisy, mask))).sample
    torch.testing.assert_close(masked, ours, atol=1e-5, rtol=1e-5)


def test_unet_config_rejects_inconsistent_levels():
    with pytest.raises(ValueError, match="cross_attention_levels"):
        UNetConfig(block_out_channels=[16, 32], cross_attention_levels=[True])
    with pytest.raises(ValueError, match="norm_num_groups"):
        UNetConfig(block_out_channels=[12, 32], cross_attention_levels=[False, True], norm_num_groups=8)


def test_save_and_diffusers_from_pretrained_give_identical_images(tmp_path):
    from diffusers import DiffusionPipeline, UNet2DConditionModel
    from transformers import AutoModel

    pipe = _pipeline()
    prompts = ["un cercle rouge à gauche", "两个蓝色的正方形"]
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(2)]  # noqa: E731
    before = pipe(prompts, num_inference_steps=4, generator=gens(), output_type="pt").images
    pipe.save_pretrained(tmp_path / "pipe")
    # diffusers' custom-pipeline convention: the folder names its class and carries an entry module
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(tmp_path / "pipe")
    loaded = DiffusionPipeline.from_pretrained(tmp_path / "pipe", trust_remote_code=True)
    assert type(loaded).__name__ == "BabelTowerText2ImagePipeline"
    assert type(BabelTowerText2ImagePipeline.from_pretrained(tmp_path / "pipe")) is BabelTowerText2ImagePipeline
    assert all(isinstance(p, BabelTowerAttnProcessor) for p in loaded.unet.attn_processors.values())
    after = loaded(prompts, num_inference_steps=4, generator=gens(), output_type="pt").images
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    assert before.shape == (2, 3, 16, 16) and 0 <= before.min() and before.max() <= 1
    # each component loads with its own library
    UNet2DConditionModel.from_pretrained(tmp_path / "pipe" / "unet")
    AutoModel.from_pretrained(tmp_path / "pipe" / "text_encoder")


def test_image_depends_only_on_its_prompt_and_generator():
    pipe = _pipeline()
    alone = pipe(["a red circle"], num_inference_steps=3, generator=[torch.Generator().manual_seed(5)], output_type="pt")
    batch = pipe(
        ["a blue star", "a red circle", "drei gelbe Herzen oben"],
        num_inference_steps=3,
        generator=[torch.Generator().manual_seed(s) for s in (1, 5, 2)],
        output_type="pt",
    )
    torch.testing.assert_close(batch.images[1], alone.images[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "EulerDiscreteScheduler"])
def test_any_diffusers_scheduler_negative_prompt_and_batches(name):
    import diffusers

    pipe = _pipeline(getattr(diffusers, name))
    out = pipe(
        ["a red circle", "ein blaues Quadrat"],
        negative_prompt="a green star",
        num_inference_steps=3,
        num_images_per_prompt=2,
        guidance_scale=4.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert len(out.images) == 4 and out.images[0].size == (16, 16)
    assert torch.isfinite(pipe(["x"], num_inference_steps=2, output_type="pt", guidance_scale=1.0).images).all()


def test_prompt_errors_are_clear():
    pipe = _pipeline()
    with pytest.raises(ValueError, match=r"prompt\[1\] is \d+ tokens long; the text encoder reads at most"):
        pipe(["ok", "word " * 400], num_inference_steps=1)
    with pytest.raises(ValueError, match="negative_prompt has 1 entries for 2 prompts"):
        pipe(["a", "b"], negative_prompt=["c"], num_inference_steps=1)
    with pytest.raises(ValueError, match="got 1 generators for 2 images"):
        pipe(["a", "b"], generator=[torch.Generator()], num_inference_steps=1)
    with pytest.raises(ValueError, match="empty list"):
        pipe([], num_inference_steps=1)


def test_latent_pipeline_decodes_with_vae(tmp_path):
    from diffusers import AutoencoderKL, DiffusionPipeline

    from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig, resolve_tokenizer
    from diffusers import DDIMScheduler

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[8, 16], down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4, norm_num_groups=8, sample_size=32,
    ).eval()
    text = TextEncoder(TextEncoderConfig())
    unet = build_unet(UNetConfig(**{**TINY_UNET, "sample_size": 16}, in_channels=4), 32).eval()
    pipe = BabelTowerText2ImagePipeline(
        unet=unet, scheduler=DDIMScheduler(num_train_timesteps=100), text_encoder=text.backbone.eval(),
        tokenizer=resolve_tokenizer(text.config), vae=vae,
    )
    images = pipe(["a red circle"], num_inference_steps=2, output_type="pt").images
    assert images.shape == (1, 3, 32, 32)
    pipe.save_pretrained(tmp_path / "latent")
    assert DiffusionPipeline.from_pretrained(tmp_path / "latent", trust_remote_code=True).vae is not None


def test_attention_backend_survives_save_and_load(tmp_path):
    # Before: the constructor forced "sdpa", so a pipeline saved with "math" came back with sdpa.
    pipe = _pipeline()
    pipe.set_attention_backend("math")
    pipe.save_pretrained(tmp_path / "p")
    loaded = BabelTowerText2ImagePipeline.from_pretrained(tmp_path / "p")
    backends = {p.backend for p in loaded.unet.attn_processors.values()}
    assert backends == {"math"}
    assert loaded.config.attn_backend == "math"


def test_loading_a_pipeline_with_a_missing_unet_weight_fails(tmp_path):
    from safetensors.torch import load_file, save_file

    _pipeline().save_pretrained(tmp_path / "p")
    weights = next((tmp_path / "p" / "unet").glob("*.safetensors"))
    state = load_file(weights)
    removed = sorted(state)[3]
    del state[removed]
    save_file(state, weights)
    with pytest.raises(RuntimeError, match=r"unet: the weights do not match.*missing \['" + removed):
        BabelTowerText2ImagePipeline.from_pretrained(tmp_path / "p")



def test_xformers_unet_builds_on_cpu_and_is_checked_at_the_first_call():
    """A UNet configured for xformers is built on the CPU (Lightning moves it later): building
    must not probe the device; running it where xformers cannot run names the reason."""
    from babeltower.models.attention import xformers_unavailable_reason

    unet = build_unet(UNetConfig(**TINY_UNET, attn_backend="xformers", pooled_conditioning=False), 16)  # no error yet
    if xformers_unavailable_reason("cpu") is None:
        pytest.skip("xformers runs on this CPU")
    sample = torch.randn(1, unet.config.in_channels, 16, 16)
    states = torch.randn(1, 3, 16)
    with pytest.raises(RuntimeError, match="xformers"):
        unet(sample, torch.tensor([10]), encoder_hidden_states=states)
