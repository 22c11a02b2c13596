"""Text-to-image diffusion head: a diffusers UNet conditioned on the shared text encoder.

The design follows AltDiffusion (Chen et al., 2022, "AltCLIP"; Ye et al., 2023,
"AltDiffusion: A Multilingual Text-to-Image Diffusion Model"): the UNet's
cross-attention reads the token states of a multilingual text encoder. Two choices make
every file of a saved pipeline loadable by plain transformers / diffusers:

- the text encoder in the pipeline is the transformers backbone itself (e.g. an
  ``XLMRobertaModel``), and the width match between its hidden size ``H`` and the
  UNet's ``cross_attention_dim`` is the UNet's own ``encoder_hid_proj`` (diffusers'
  ``encoder_hid_dim_type="text_proj"``);
- optionally (``pooled_conditioning``) the masked mean of the token states is added to
  the timestep embedding through the UNet's ``class_embedding`` (diffusers'
  ``class_embed_type="projection"``), a global summary of the prompt that, like the
  pooled text embedding SDXL adds to its time embedding, makes small models follow
  prompts sooner.

Attention goes through :func:`babeltower.models.attention.attention` by way of a
diffusers attention processor, so ``attn_backend`` (sdpa, math, xformers) applies as in
the other heads.

Example:
    >>> pipe = BabelTowerText2ImagePipeline.from_pretrained("runs/demo/t2i/hub")
    >>> images = pipe(["un cercle rouge à gauche"], num_inference_steps=25).images
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import torch

from babeltower.models.attention import ATTENTION_BACKENDS, attention
from babeltower.models.text_encoder import masked_mean

__all__ = [
    "UNetConfig",
    "build_unet",
    "BabelTowerAttnProcessor",
    "set_attention_backend",
    "encode_prompt_states",
    "masked_mean",
    "unet_kwargs",
    "BabelTowerText2ImagePipeline",
    "SCHEDULERS",
    "scheduler_class",
]


@dataclass
class UNetConfig:
    """Architecture of the denoising UNet (a diffusers ``UNet2DConditionModel``).

    Attributes:
        sample_size: Side of the UNet's input in pixels (pixel space) or latent cells.
        in_channels: Input channels (3 for RGB pixels, the VAE's latent channels otherwise).
        block_out_channels: Channels per resolution level.
        layers_per_block: ResNet layers per down block (up blocks get one more).
        cross_attention_levels: Per level, whether it has cross-attention transformer
            blocks (``CrossAttnDownBlock2D``/``CrossAttnUpBlock2D``) or plain ResNets.
        cross_attention_dim: Width of the keys/values the UNet's cross-attention reads.
        attention_head_dim: Channels per attention head.
        norm_num_groups: GroupNorm groups (must divide every entry of block_out_channels).
        pooled_conditioning: Also add the masked mean of the text states to the timestep
            embedding (``class_embed_type="projection"``).
        attn_backend: ``"sdpa"``, ``"math"`` or ``"xformers"``.
    """

    sample_size: int = 32
    in_channels: int = 3
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    layers_per_block: int = 1
    cross_attention_levels: list[bool] = field(default_factory=lambda: [False, True, True])
    cross_attention_dim: int = 64
    attention_head_dim: int = 16
    norm_num_groups: int = 8
    pooled_conditioning: bool = True
    attn_backend: str = "sdpa"

    def __post_init__(self) -> None:
        if len(self.cross_attention_levels) != len(self.block_out_channels):
            raise ValueError(
                f"UNetConfig.cross_attention_levels has {len(self.cross_attention_levels)} entries but "
                f"block_out_channels has {len(self.block_out_channels)}; give one bool per level"
            )
        if not any(self.cross_attention_levels):
            raise ValueError("UNetConfig.cross_attention_levels: at least one level needs cross-attention")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"UNetConfig.norm_num_groups={self.norm_num_groups} does not divide block_out_channels {bad}")
        if self.attn_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"UNetConfig.attn_backend must be one of {ATTENTION_BACKENDS}, got {self.attn_backend!r}")


def build_unet(config: UNetConfig, text_hidden_size: int):
    """A ``UNet2DConditionModel`` for ``config`` reading text states of width ``text_hidden_size``."""
    from diffusers import UNet2DConditionModel

    levels = config.cross_attention_levels
    down = tuple("CrossAttnDownBlock2D" if c else "DownBlock2D" for c in levels)
    up = tuple("CrossAttnUpBlock2D" if c else "UpBlock2D" for c in reversed(levels))
    kwargs: dict[str, Any] = {}
    if config.pooled_conditioning:
        kwargs.update(class_embed_type="projection", projection_class_embeddings_input_dim=text_hidden_size)
    unet = UNet2DConditionModel(
        sample_size=config.sample_size,
        in_channels=config.in_channels,
        out_channels=config.in_channels,
        down_block_types=down,
        up_block_types=up,
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        cross_attention_dim=config.cross_attention_dim,
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
        encoder_hid_dim=text_hidden_size,
        encoder_hid_dim_type="text_proj",
        **kwargs,
    )
    set_attention_backend(unet, config.attn_backend)
    return unet


class BabelTowerAttnProcessor:
    """diffusers attention processor that calls babeltower's :func:`attention`.

    It does what diffusers' ``AttnProcessor2_0`` does (group/spatial norm, q/k/v
    projections, the padding mask of the text tokens, output projection, residual), with
    the attention product itself dispatched to the configured backend.

    Args:
        backend: ``"sdpa"``, ``"math"`` or ``"xformers"``.
    """

    def __init__(self, backend: str = "sdpa") -> None:
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attn_backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
        self.backend = backend

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        temb: Optional[torch.Tensor] = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)  # (B, HW, C)
        batch, source_length, _ = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape
        if attention_mask is not None:
            # diffusers passes an additive bias (B, 1, S); expand it to (B, heads, 1, S).
            attention_mask = attn.prepare_attention_mask(attention_mask, source_length, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)  # (B, nh, T, hs)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)  # (B, nh, S, hs)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = attention(query, key, value, attention_mask, scale=attn.scale, backend=self.backend)  # (B, nh, T, hs)
        hidden_states = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def set_attention_backend(unet, backend: str) -> None:
    """Routes every attention layer of ``unet`` through babeltower's ``attention(backend=...)``.

    The device is checked where it is known, at the first call (``attention()`` probes
    xformers on the tensors' device): models are built on the CPU and moved later, so
    ``backend="xformers"`` must be accepted here for a UNet that will run on CUDA.

    Raises:
        ValueError: an unknown backend.
    """
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attn_backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
    unet.set_attn_processor(BabelTowerAttnProcessor(backend))


def encode_prompt_states(backbone, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token states (B, T, H) and their masked mean (B, H) from a transformers encoder."""
    states = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return states, masked_mean(states, attention_mask)


def unet_kwargs(unet, states: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor) -> dict[str, Any]:
    """Conditioning keyword arguments of ``unet.forward`` for text states and mask."""
    kwargs: dict[str, Any] = {"encoder_hidden_states": states, "encoder_attention_mask": mask}
    if getattr(unet.config, "class_embed_type", None) == "projection":
        kwargs["class_labels"] = pooled
    return kwargs


def repa_projector(unet_channels: int, width: int) -> torch.nn.Module:
    """REPA's projector (Yu et al. 2025): a 3-layer MLP with SiLU, applied per spatial
    position, from the UNet's mid-block channels (hidden 4x as wide) to the vision tower's width."""
    hidden = 4 * unet_channels
    return torch.nn.Sequential(
        torch.nn.Linear(unet_channels, hidden), torch.nn.SiLU(),
        torch.nn.Linear(hidden, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, width),
    )


def repa_alignment_loss(projector: torch.nn.Module, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """1 - cosine between projected UNet features (B, C, h, w) and a vision tower's patch
    tokens (B, N, width) of the clean images, averaged over the N = side x side positions;
    the features are average-pooled onto the tokens' grid when their sides differ."""
    side = math.isqrt(tokens.shape[1])
    if features.shape[-1] != side or features.shape[-2] != side:
        features = torch.nn.functional.adaptive_avg_pool2d(features, side)
    projected = projector(features.flatten(2).transpose(1, 2))  # (B, N, width)
    return (1 - torch.nn.functional.cosine_similarity(projected.float(), tokens.float(), dim=-1)).mean()


#: File (without .py) that a saved pipeline folder carries for diffusers' custom-pipeline loader.
PIPELINE_MODULE = "pipeline_babeltower"
PIPELINE_MODULE_SOURCE = (
    '"""diffusers custom-pipeline entry point of a babeltower text-to-image pipeline."""\n'
    "from babeltower.models.t2i import BabelTowerText2ImagePipeline  # noqa: F401\n"
)


def check_weights_complete(pipe, folder) -> None:
    """Strict loading for a pipeline folder: every weight file holds exactly its module's keys.

    diffusers and transformers fill a missing weight with a fresh random init and only
    warn; a babeltower folder missing a UNet weight must fail instead of drawing noise.

    Raises:
        RuntimeError: naming the file and the missing or unexpected keys.
    """
    from safetensors import safe_open

    for name in ("unet", "text_encoder", "vae"):
        module = getattr(pipe, name, None)
        if module is None:
            continue
        files = sorted((folder / name).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{folder / name} holds no .safetensors weights for the {name}")
        saved: set[str] = set()
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                saved.update(handle.keys())
        if getattr(module, "pooler", None) is not None and not any(k.startswith("pooler.") for k in saved):
            # transformers adds a freshly initialised pooler that was never saved; the
            # pipeline reads token states only, so the random layer is dropped, not used.
            module.pooler = None
        expected = set(module.state_dict())
        missing, unexpected = sorted(expected - saved), sorted(saved - expected)
        if missing or unexpected:
            raise RuntimeError(
                f"{folder / name}: the weights do not match the {name} (missing {missing[:8]}, unexpected "
                f"{unexpected[:8]}); the folder is damaged or from another model: export it again"
            )


def _diffusers_base():
    from diffusers import DiffusionPipeline

    return DiffusionPipeline


class BabelTowerText2ImagePipeline(_diffusers_base()):
    """Multilingual text-to-image pipeline (a ``diffusers.DiffusionPipeline``).

    Components: ``unet`` (``UNet2DConditionModel``), ``scheduler`` (any diffusers
    scheduler: DDPM, DDIM, DPMSolverMultistep, ...), ``text_encoder`` (a transformers
    encoder model), ``tokenizer`` and an optional ``vae`` (``AutoencoderKL``; None means
    the UNet works in pixel space). ``save_pretrained`` writes ``model_index.json`` and
    one subfolder per component; ``DiffusionPipeline.from_pretrained`` loads it back.

    Args:
        unet: the denoiser.
        scheduler: the sampler.
        text_encoder: the multilingual text encoder (transformers ``PreTrainedModel``).
        tokenizer: its tokenizer.
        vae: optional latent autoencoder.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["vae"]

    def __init__(self, unet, scheduler, text_encoder, tokenizer, vae=None, attn_backend: str = "sdpa"):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer, vae=vae)
        # Loaded pipelines get diffusers' default processors; route attention through ours,
        # with the backend the pipeline was built or saved with (model_index.json keeps it).
        self.set_attention_backend(attn_backend)

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """diffusers' ``save_pretrained`` plus the custom-pipeline entry point.

        ``model_index.json``'s ``_class_name`` becomes ``[PIPELINE_MODULE, class name]``
        and ``PIPELINE_MODULE.py`` (a one-line import of this class) is written beside it,
        diffusers' convention for pipelines that live outside diffusers, so that plain
        ``diffusers.DiffusionPipeline.from_pretrained(folder)`` returns this class.
        """
        import json
        from pathlib import Path

        super().save_pretrained(save_directory, *args, **kwargs)
        folder = Path(save_directory)
        index_path = folder / "model_index.json"
        index = json.loads(index_path.read_text(encoding="utf-8"))
        index["_class_name"] = [PIPELINE_MODULE, type(self).__name__]
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (folder / f"{PIPELINE_MODULE}.py").write_text(PIPELINE_MODULE_SOURCE, encoding="utf-8")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' ``from_pretrained``; the folder's entry-point module is trusted only if
        it is exactly the one-line import :meth:`save_pretrained` writes (anything else still
        needs the caller's ``trust_remote_code=True``)."""
        from pathlib import Path

        folder = Path(pretrained_model_name_or_path)
        entry = folder / f"{PIPELINE_MODULE}.py"
        if entry.is_file() and entry.read_text(encoding="utf-8") == PIPELINE_MODULE_SOURCE:
            kwargs.setdefault("trust_remote_code", True)
        if "text_encoder" not in kwargs and (folder / "text_encoder" / "config.json").is_file():
            from babeltower.models.text_encoder import load_backbone

            # without the unsaved pooler BERT-family classes add (transformers would report it missing)
            dtype = {"dtype": kwargs["torch_dtype"]} if kwargs.get("torch_dtype") is not None else {}
            kwargs["text_encoder"] = load_backbone(folder / "text_encoder", **dtype)
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if Path(pretrained_model_name_or_path).is_dir():
            check_weights_complete(pipe, Path(pretrained_model_name_or_path))
        return pipe

    def set_attention_backend(self, backend: str) -> None:
        """Chooses the attention kernel of the UNet (``sdpa``, ``math`` or ``xformers``);
        ``save_pretrained`` records it, so a loaded pipeline uses it again."""
        set_attention_backend(self.unet, backend)
        self.register_to_config(attn_backend=backend)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell (1 in pixel space)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1

    @property
    def image_size(self) -> int:
        """Default side of the generated images in pixels."""
        return self.unet.config.sample_size * self.vae_scale_factor

    @property
    def max_prompt_tokens(self) -> int:
        """Longest prompt in tokens (special tokens included) the text encoder accepts."""
        limit = getattr(self.text_encoder.config, "max_position_embeddings", None) or 512
        # RoBERTa-family position ids start after the padding index.
        offset = (self.text_encoder.config.pad_token_id + 1) if "roberta" in self.text_encoder.config.model_type else 0
        tok_limit = getattr(self.tokenizer, "model_max_length", None)
        limit = limit - offset
        if isinstance(tok_limit, int) and 0 < tok_limit < limit:
            limit = tok_limit
        return int(limit)

    def check_prompts(self, prompts: list[str]) -> None:
        """Raises ValueError naming the prompt that is not a string or is too long."""
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise ValueError(f"prompt[{i}] is a {type(prompt).__name__}, expected a string")
            n = len(self.tokenizer(prompt)["input_ids"])
            if n > self.max_prompt_tokens:
                raise ValueError(
                    f"prompt[{i}] is {n} tokens long; the text encoder reads at most {self.max_prompt_tokens} "
                    f"(shorten it): {prompt[:80]!r}"
                )

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(states (B, T, H), mask (B, T), pooled (B, H)) for a list of prompts."""
        self.check_prompts(prompts)
        tokens = self.tokenizer(prompts, padding="longest", return_tensors="pt")
        ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
        states, pooled = encode_prompt_states(self.text_encoder, ids, mask)
        return states, mask, pooled

    @staticmethod
    def _pad_cat(a: tuple, b: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Concatenates two (states, mask, pooled) batches, padding the shorter token axis."""
        (sa, ma, pa), (sb, mb, pb) = a, b
        t = max(sa.shape[1], sb.shape[1])

        def pad(s, m):
            extra = t - s.shape[1]
            if extra:
                s = torch.cat([s, s.new_zeros(s.shape[0], extra, s.shape[2])], 1)
                m = torch.cat([m, m.new_zeros(m.shape[0], extra)], 1)
            return s, m

        sa, ma = pad(sa, ma)
        sb, mb = pad(sb, mb)
        return torch.cat([sa, sb]), torch.cat([ma, mb]), torch.cat([pa, pb])

    @torch.no_grad()
    def __call__(
        self,
        prompt: Union[str, list[str]],
        negative_prompt: Optional[Union[str, list[str]]] = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
        num_images_per_prompt: int = 1,
        generator: Optional[Union[torch.Generator, list[torch.Generator]]] = None,
        height: Optional[int] = None,
        width: Optional[int] = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback: Optional[Callable[[int, int, torch.Tensor], None]] = None,
    ):
        """Generates images for prompts in any language the text encoder knows.

        Args:
            prompt: one prompt or a list.
            negative_prompt: what to steer away from (with guidance > 1); None uses the
                empty prompt, as in training's caption dropout.
            num_inference_steps: denoising steps.
            guidance_scale: classifier-free guidance weight; <= 1 disables guidance.
            num_images_per_prompt: images per prompt.
            generator: one generator, or one per image (then image i depends only on its
                prompt and its generator, not on the rest of the batch).
            height, width: output size; default the UNet's sample size (times the VAE's
                downsampling factor when there is a VAE).
            output_type: ``"pil"``, ``"np"`` (B, H, W, 3 floats in [0, 1]) or ``"pt"``
                (B, 3, H, W in [0, 1]).
            return_dict: return an ``ImagePipelineOutput`` (else a tuple).
            callback: called as ``callback(step, timestep, latents)`` after each step.

        Returns:
            ``ImagePipelineOutput`` with ``images``.
        """
        from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
        from diffusers.utils.torch_utils import randn_tensor

        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts:
            raise ValueError("prompt: got an empty list; give at least one prompt")
        if negative_prompt is None:
            negatives = [""] * len(prompts)
        else:
            negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else list(negative_prompt)
            if len(negatives) != len(prompts):
                raise ValueError(f"negative_prompt has {len(negatives)} entries for {len(prompts)} prompts")
        if num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt={num_images_per_prompt}; expected >= 1")
        batch = len(prompts) * num_images_per_prompt
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for {batch} images; give one per image or a single one")
        device = self._execution_device
        dtype = self.unet.dtype

        repeat = lambda xs: [x for x in xs for _ in range(num_images_per_prompt)]  # noqa: E731
        cond = self.encode_prompt(repeat(prompts), device)
        guided = guidance_scale > 1.0
        if guided:
            cond = self._pad_cat(self.encode_prompt(repeat(negatives), device), cond)
        states, mask, pooled = (x.to(dtype) if x.is_floating_point() else x for x in cond)

        scale = self.vae_scale_factor
        height = height or self.image_size
        width = width or self.image_size
        if height % scale or width % scale:
            raise ValueError(f"height={height} and width={width} must be multiples of the VAE's factor {scale}")
        shape = (batch, self.unet.config.in_channels, height // scale, width // scale)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = latents * self.scheduler.init_noise_sigma
        extra = {"generator": generator} if "generator" in _step_params(self.scheduler) else {}

        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = torch.cat([latents, latents]) if guided else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            pred = self.unet(model_input, t, **unet_kwargs(self.unet, states, mask, pooled)).sample
            if guided:
                uncond, text = pred.chunk(2)
                pred = uncond + guidance_scale * (text - uncond)
            latents = self.scheduler.step(pred, t, latents, **extra).prev_sample
            if callback is not None:
                callback(i, int(t), latents)

        if self.vae is not None:
            images = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        else:
            images = latents
        images = (images / 2 + 0.5).clamp(0, 1).float()  # (B, 3, H, W) in [0, 1]
        if output_type == "pt":
            out = images
        elif output_type in ("np", "pil"):
            out = images.permute(0, 2, 3, 1).cpu().numpy()
            if output_type == "pil":
                out = self.numpy_to_pil(out)
        else:
            raise ValueError(f"output_type={output_type!r}; expected 'pil', 'np' or 'pt'")
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=out) if return_dict else (out,)


#: Scheduler short names (CLI, ``Text2ImageSystem.pipeline``) -> diffusers class names.
SCHEDULERS = {"dpm++": "DPMSolverMultistepScheduler", "ddim": "DDIMScheduler", "ddpm": "DDPMScheduler"}


def scheduler_class(name: str):
    """The diffusers scheduler class for a short name in :data:`SCHEDULERS`."""
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"scheduler={name!r}; choose one of {sorted(SCHEDULERS)}")
    return getattr(diffusers, SCHEDULERS[name])


def _step_params(scheduler) -> set[str]:
    import inspect

    return set(inspect.signature(scheduler.step).parameters)
