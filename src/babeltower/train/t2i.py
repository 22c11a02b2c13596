"""Text-to-image diffusion training system for LightningCLI (AltDiffusion-style).

DDPM training (Ho et al., 2020) of a diffusers ``UNet2DConditionModel`` whose
cross-attention reads the shared multilingual text encoder's token states (see
:mod:`babeltower.models.t2i`), with:

- epsilon or v prediction (Salimans & Ho, 2022);
- caption dropout (the caption becomes the empty prompt with probability
  ``caption_dropout``) so that classifier-free guidance (Ho & Salimans, 2022) works;
- optional min-SNR-gamma loss weighting (Hang et al., 2023, "Efficient Diffusion Training
  via Min-SNR Weighting Strategy");
- uniform or logit-normal training timesteps (Esser et al., 2024, "Scaling Rectified Flow
  Transformers for High-Resolution Image Synthesis", Sec. 3.1: more training on the
  middle noise levels, which they find the hardest to learn);
- EMA weights kept as a frozen submodule, so they move with the module to any device,
  are sharded with it and are saved in and restored from every checkpoint (diffusers
  issue #3871: EMA weights on the wrong device after resume);
- AltDiffusion's two stages (Ye et al., 2023) as configuration: ``trainable:
  cross_attention_kv`` trains only the cross-attention key/value projections and the
  text projections (concept alignment, stage 1), ``trainable: all`` the whole UNet
  (stage 2); ``init_unet`` starts from a saved UNet;
- pixel space by default, latent space when ``vae`` names a diffusers ``AutoencoderKL``;
- representation alignment (REPA; Yu et al., 2025, "Representation Alignment for
  Generation: Training Diffusion Transformers Is Easier Than You Think"): with
  ``repa_from`` naming a contrastive hub folder, a small MLP maps the UNet's mid-block
  features of the *noisy* image onto the frozen vision tower's patch tokens of the *clean*
  image, and ``repa_weight`` x (1 - cosine) joins the loss. The generator then borrows
  what the contrastive head already learnt to see instead of finding it from the pixel
  loss alone (in the main job: colour and count come sooner; shape does not). The MLP is
  for training only; exports hold the UNet.

The text encoder is frozen (as in AltDiffusion and Stable Diffusion) unless
``freeze_text: false``.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
import torch.nn.functional as F

from babeltower.models.t2i import (
    UNetConfig,
    build_unet,
    encode_prompt_states,
    repa_alignment_loss,
    repa_projector,
    unet_kwargs,
)
from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig, resolve_tokenizer
from babeltower.train.contrastive import check_data_tokenizer, linked_tokenizer, text_config_from
from babeltower.train.optim import adamw_with_cosine

#: Which UNet parameters each ``trainable`` setting trains (name substrings).
TRAINABLE = {
    "all": None,
    # AltDiffusion stage 1: cross-attention K/V (attn2 in diffusers' transformer blocks)
    # and the projections of the text states into the UNet.
    "cross_attention_kv": ("attn2.to_k.", "attn2.to_v.", "encoder_hid_proj.", "class_embedding."),
}


def min_snr_weights(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Per-sample loss weights min(SNR, gamma) / SNR (epsilon) or / (SNR + 1) (v).

    From Hang et al. (2023), in the form diffusers' training scripts use.
    """
    alpha = alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alpha / (1 - alpha)
    clipped = snr.clamp(max=gamma)
    return clipped / (snr + 1) if prediction_type == "v_prediction" else clipped / snr


#: How training timesteps are drawn (``timestep_sampling``).
TIMESTEP_SAMPLING = ("uniform", "logit_normal")


def sample_timesteps(
    n: int,
    num_train_timesteps: int,
    sampling: str = "uniform",
    mean: float = 0.0,
    std: float = 1.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Draws ``n`` discrete training timesteps in ``[0, num_train_timesteps)`` (on the CPU).

    ``"uniform"``: every timestep equally often (DDPM). ``"logit_normal"``: ``t = floor(T *
    sigmoid(u))`` with ``u ~ N(mean, std)``, the logit-normal density of Esser et al. (2024),
    Sec. 3.1 (their best setting: mean 0, std 1): the middle of the noise schedule is drawn
    most, the nearly clean and the nearly pure-noise ends least; ``mean > 0`` shifts the
    weight towards noisier timesteps.
    """
    if sampling == "uniform":
        return torch.randint(0, num_train_timesteps, (n,), generator=generator)
    if sampling == "logit_normal":
        u = torch.randn(n, generator=generator) * std + mean
        return (torch.sigmoid(u) * num_train_timesteps).long().clamp_(0, num_train_timesteps - 1)
    raise ValueError(f"timestep_sampling={sampling!r}; expected one of {TIMESTEP_SAMPLING}")


class _KeepTrainingOutput:
    """Forward hook keeping a module's last training-mode output (REPA reads the mid block's).

    A plain object rather than a bound method, so that copying the UNet (EMA, export) copies
    an empty hook instead of the whole training system, and so that it pickles.
    """

    def __init__(self):
        self.output: Optional[torch.Tensor] = None

    def __call__(self, module, inputs, output) -> None:
        self.output = output if module.training else None

    def __deepcopy__(self, memo):
        return _KeepTrainingOutput()


class Text2ImageSystem(L.LightningModule):
    """Trains a text-conditioned diffusion UNet on image-caption batches.

    Args:
        unet: UNet architecture (``sample_size`` is the image side in pixel space).
        text: shared text encoder (a config; ``pretrained`` for real weights).
        init_from: hub folder or text-encoder folder to take the text encoder from (e.g.
            the multilingual contrastive or distilled encoder); of ``text`` then only
            ``attn_backend`` applies.
        freeze_text: keep the text encoder frozen.
        init_unet: a saved pipeline folder (with ``unet/``) or UNet folder to start from;
            weights whose shape differs (the text projections, when the text encoder
            changed, as in AltDiffusion) are left freshly initialised and listed in the log.
        trainable: ``"all"`` (stage 2) or ``"cross_attention_kv"`` (stage 1).
        prediction_type: ``"epsilon"`` or ``"v_prediction"``.
        num_train_timesteps: diffusion steps of the training noise schedule.
        beta_schedule: diffusers beta schedule (``squaredcos_cap_v2`` = cosine).
        caption_dropout: probability of training on the empty prompt instead.
        snr_gamma: min-SNR gamma; None for the plain (unweighted) loss.
        timestep_sampling: ``"uniform"`` or ``"logit_normal"`` training timesteps
            (:func:`sample_timesteps`); validation always draws them uniformly, so its
            loss compares across settings.
        logit_mean: mean of the logit-normal's underlying normal.
        logit_std: its standard deviation.
        ema_decay: EMA decay (with warm-up ``(1 + step) / (10 + step)``); None: no EMA.
        vae: folder of a diffusers ``AutoencoderKL`` for latent diffusion; None: pixels.
        learning_rate: peak AdamW learning rate (cosine decay after warm-up).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps.
        repa_from: contrastive hub folder whose frozen vision tower's patch tokens the
            UNet's mid-block features are aligned to (REPA); None: no alignment.
        repa_weight: weight of the alignment loss (REPA's lambda; 0.5 in the paper).
    """

    def __init__(
        self,
        unet: UNetConfig = UNetConfig(),
        text: TextEncoderConfig = TextEncoderConfig(),
        init_from: Optional[str] = None,
        freeze_text: bool = True,
        init_unet: Optional[str] = None,
        trainable: str = "all",
        prediction_type: str = "epsilon",
        num_train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2",
        caption_dropout: float = 0.1,
        snr_gamma: Optional[float] = 5.0,
        timestep_sampling: str = "uniform",
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        ema_decay: Optional[float] = 0.999,
        vae: Optional[str] = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
        repa_from: Optional[str] = None,
        repa_weight: float = 0.5,
    ):
        super().__init__()
        from diffusers import DDPMScheduler

        unet = unet if isinstance(unet, UNetConfig) else UNetConfig(**unet)
        text = text if isinstance(text, TextEncoderConfig) else TextEncoderConfig(**text)
        if init_from:
            text = text_config_from(init_from, text)
        if trainable not in TRAINABLE:
            raise ValueError(f"trainable={trainable!r}; expected one of {sorted(TRAINABLE)}")
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type={prediction_type!r}; expected 'epsilon' or 'v_prediction'")
        if timestep_sampling not in TIMESTEP_SAMPLING:
            raise ValueError(f"timestep_sampling={timestep_sampling!r}; expected one of {TIMESTEP_SAMPLING}")
        if logit_std <= 0:
            raise ValueError(f"logit_std={logit_std}; expected a positive standard deviation")
        if not 0.0 <= caption_dropout < 1.0:
            raise ValueError(f"caption_dropout={caption_dropout}; expected a probability in [0, 1)")
        if repa_weight < 0:
            raise ValueError(f"repa_weight={repa_weight}; expected a weight >= 0")
        self.save_hyperparameters()
        self.hparams["unet"], self.hparams["text"] = asdict(unet), asdict(text)

        self.text_encoder = TextEncoder(text)
        if init_from:
            from babeltower.models.hub import load_text_encoder_weights

            load_text_encoder_weights(self.text_encoder, init_from)
        if freeze_text:
            self.text_encoder.requires_grad_(False).eval()
        self.tokenizer = resolve_tokenizer(text)
        hidden = self.text_encoder.backbone.config.hidden_size

        self.vae = None
        if vae is not None:
            from diffusers import AutoencoderKL

            self.vae = AutoencoderKL.from_pretrained(vae).requires_grad_(False).eval()
            if unet.in_channels != self.vae.config.latent_channels:
                raise ValueError(
                    f"unet.in_channels={unet.in_channels} but the VAE at {vae} has "
                    f"{self.vae.config.latent_channels} latent channels; set unet.in_channels to match"
                )
        self.unet = build_unet(unet, hidden)
        if init_unet:
            self._load_init_unet(init_unet)
        self._apply_trainable(trainable)
        self.ema_unet = None
        if ema_decay is not None:
            self.ema_unet = copy.deepcopy(self.unet).requires_grad_(False).eval()
        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule, prediction_type=prediction_type
        )
        self.repa_vision = self.repa_projector = None
        self._mid_hook = _KeepTrainingOutput()
        if repa_from is not None:
            self._build_repa(repa_from, unet)
        null = self.tokenizer("", return_tensors="pt")["input_ids"][0]  # e.g. [<s>, </s>]
        self.register_buffer("null_ids", null.long(), persistent=False)

    # ------------------------------------------------------------------ set-up helpers

    def _load_init_unet(self, path: str) -> None:
        from diffusers import UNet2DConditionModel

        folder = Path(path)
        if (folder / "unet").is_dir():
            folder = folder / "unet"
        source = UNet2DConditionModel.from_pretrained(str(folder)).state_dict()
        own = self.unet.state_dict()
        kept = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
        fresh = sorted(set(own) - set(kept))
        unknown = sorted(set(source) - set(own))
        if unknown:
            raise RuntimeError(f"init_unet={path!r}: weights {unknown[:8]} do not exist in the configured UNet")
        if any(not k.startswith(("encoder_hid_proj.", "class_embedding.")) for k in fresh):
            bad = [k for k in fresh if not k.startswith(("encoder_hid_proj.", "class_embedding."))]
            raise RuntimeError(f"init_unet={path!r}: shapes differ for {bad[:8]}; the UNet config does not match")
        self.unet.load_state_dict({**own, **kept})
        if fresh:
            print(f"init_unet: {len(fresh)} text-projection weights start fresh (new text encoder width): {fresh}")

    def _build_repa(self, repa_from: str, unet: UNetConfig) -> None:
        from babeltower.models.hub import load_vision_tower

        if not (Path(repa_from) / "vision_model").is_dir():
            raise FileNotFoundError(
                f"repa_from={repa_from!r} is not a contrastive hub folder with vision_model/ "
                "(written by `babeltower export` of a contrastive checkpoint)"
            )
        if self.vae is not None:
            raise ValueError("repa_from aligns pixel-space UNet features to the vision tower's input; unset vae")
        self.repa_vision = load_vision_tower(repa_from).requires_grad_(False).eval()
        if self.repa_vision.config.image_size != unet.sample_size:
            raise ValueError(
                f"repa_from={repa_from!r}: its vision tower reads {self.repa_vision.config.image_size}-px images, "
                f"the UNet draws {unet.sample_size}-px ones; align to a contrastive hub trained at the UNet's size"
            )
        self.repa_vision.vit.output_tokens = True  # open_clip returns (pooled, patch tokens)
        self.repa_projector = repa_projector(unet.block_out_channels[-1], self.repa_vision.config.width)
        self.unet.mid_block.register_forward_hook(self._mid_hook)

    def repa_loss(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """1 - cosine between the projected mid-block features of the last UNet call and the
        frozen vision tower's patch tokens of the clean images, averaged over positions."""
        features, self._mid_hook.output = self._mid_hook.output, None  # (B, C, h, w), from the noisy images
        with torch.no_grad():
            _, tokens = self.repa_vision(pixel_values)  # (B, N, width), N = grid x grid
        return repa_alignment_loss(self.repa_projector, features, tokens)

    def _apply_trainable(self, trainable: str) -> None:
        patterns = TRAINABLE[trainable]
        if patterns is None:
            return
        for name, p in self.unet.named_parameters():
            p.requires_grad_(any(s in name for s in patterns))

    @staticmethod
    def linked_data_args(init_args: dict) -> dict[str, tuple[str, Any]]:
        """DataModule init args these init args fix: ``{data field: (model field, value)}``.

        ``babeltower fit`` links them (:mod:`babeltower.train.launch`): the text encoder's
        tokenizer and, in pixel space, the image side (the UNet's ``sample_size``). With a
        ``vae`` the image side is the latent side times the VAE's downscale: set it in the data.
        """
        links = {"tokenizer": linked_tokenizer(init_args)}
        if not init_args.get("vae"):
            unet = init_args.get("unet") or {}
            links["image_size"] = ("unet.sample_size", unet.get("sample_size", UNetConfig.sample_size))
        return links

    def on_fit_start(self):
        check_data_tokenizer(self.trainer, self.text_encoder)
        if self.hparams.freeze_text:
            self.text_encoder.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        # Frozen parts stay in eval mode (no dropout) whatever Lightning toggles.
        if self.hparams.freeze_text:
            self.text_encoder.eval()
        if self.ema_unet is not None:
            self.ema_unet.eval()
        if self.vae is not None:
            self.vae.eval()
        if self.repa_vision is not None:
            self.repa_vision.eval()
        return self

    # ---------------------------------------------------------------------- training

    def _images(self, batch) -> torch.Tensor:
        """Batch pixels -> the diffusion space ([-1, 1] pixels, or scaled VAE latents)."""
        from babeltower.modalities.image import CLIP_MEAN, CLIP_STD

        x = batch["pixel_values"]
        # ImageTextDataModule normalises with CLIP's mean/std; undo it, then map to [-1, 1].
        mean = x.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = x.new_tensor(CLIP_STD).view(1, 3, 1, 1)
        x = (x * std + mean) * 2 - 1
        if self.vae is not None:
            with torch.no_grad():
                x = self.vae.encode(x).latent_dist.sample() * self.vae.config.scaling_factor
        return x

    def _drop_captions(self, ids: torch.Tensor, mask: torch.Tensor, generator=None):
        """Replaces a ``caption_dropout`` fraction of captions by the empty prompt."""
        p = self.hparams.caption_dropout
        if p <= 0:
            return ids, mask
        drop = torch.rand(ids.shape[0], generator=generator, device="cpu").to(ids.device) < p
        if not drop.any():
            return ids, mask
        ids, mask = ids.clone(), mask.clone()
        n = min(len(self.null_ids), ids.shape[1])
        ids[drop] = self.text_encoder.pad_token_id
        ids[drop, :n] = self.null_ids[:n]
        mask[drop] = 0
        mask[drop, :n] = 1
        return ids, mask

    def diffusion_loss(self, batch, generator: Optional[torch.Generator] = None, drop: bool = True) -> torch.Tensor:
        """The (weighted) denoising loss of one batch; ``generator`` fixes noise and timesteps.

        ``drop=False`` (validation) also draws the timesteps uniformly, whatever
        ``timestep_sampling`` is.
        """
        x0 = self._images(batch)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if drop:
            ids, mask = self._drop_captions(ids, mask, generator)
        with torch.set_grad_enabled(not self.hparams.freeze_text and self.training):
            states, pooled = encode_prompt_states(self.text_encoder.backbone, ids, mask)
        b = x0.shape[0]
        sched = self.noise_scheduler
        hp = self.hparams
        t = sample_timesteps(
            b, sched.config.num_train_timesteps, hp.timestep_sampling if drop else "uniform",
            hp.logit_mean, hp.logit_std, generator,
        ).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device="cpu").to(x0.device, x0.dtype)
        noisy = sched.add_noise(x0, noise, t)
        target = noise if self.hparams.prediction_type == "epsilon" else sched.get_velocity(x0, noise, t)
        pred = self.unet(noisy, t, **unet_kwargs(self.unet, states, mask, pooled)).sample
        per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        if self.hparams.snr_gamma is not None:
            per_sample = per_sample * min_snr_weights(
                sched.alphas_cumprod, t, self.hparams.snr_gamma, self.hparams.prediction_type
            )
        return per_sample.mean()

    def training_step(self, batch, batch_idx):
        loss = self.diffusion_loss(batch)
        size = batch["input_ids"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        if self.repa_projector is not None:
            align = self.repa_loss(batch["pixel_values"])
            self.log("train/repa", align, prog_bar=True, batch_size=size)
            loss = loss + self.hparams.repa_weight * align
        return loss

    def validation_step(self, batch, batch_idx):
        # Fixed noise and timesteps per batch, no caption dropout: comparable across runs.
        g = torch.Generator().manual_seed(1000 + batch_idx)
        loss = self.diffusion_loss(batch, generator=g, drop=False)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0], sync_dist=True)

    def optimizer_step(self, *args, **kwargs):
        # EMA right after the weights change, inside the step: checkpoint callbacks (which
        # run at batch end) then save weights and EMA of the same step.
        super().optimizer_step(*args, **kwargs)
        self._update_ema()

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema_unet is None:
            return
        step = self.global_step
        decay = min(self.hparams.ema_decay, (1 + step) / (10 + step))
        for ema, p in zip(self.ema_unet.parameters(), self.unet.parameters()):
            ema.lerp_(p.detach().to(ema.dtype), 1 - decay)
        for ema, b in zip(self.ema_unet.buffers(), self.unet.buffers()):
            ema.copy_(b)

    def configure_optimizers(self):
        params = [p for p in self.unet.parameters() if p.requires_grad]
        if self.repa_projector is not None:
            params += list(self.repa_projector.parameters())
        if not self.hparams.freeze_text:
            params += [p for p in self.text_encoder.parameters() if p.requires_grad]
        return adamw_with_cosine(self, params, eps=1e-8, min_lr_ratio=0.1)

    # ------------------------------------------------------------------------ export

    def pipeline(self, use_ema: bool = True, scheduler: str = "dpm++"):
        """A :class:`~babeltower.models.t2i.BabelTowerText2ImagePipeline` with copies of the weights.

        Args:
            use_ema: take the EMA UNet (when there is one).
            scheduler: ``"dpm++"`` (DPMSolverMultistep, 2nd order), ``"ddim"`` or
                ``"ddpm"``; all share the training noise schedule and prediction type.
        """
        from babeltower.models.t2i import BabelTowerText2ImagePipeline, scheduler_class

        sched_class = scheduler_class(scheduler)
        source = self.ema_unet if (use_ema and self.ema_unet is not None) else self.unet
        unet = copy.deepcopy(source).float().cpu().eval()
        text_encoder = copy.deepcopy(self.text_encoder.backbone).float().cpu().eval()
        vae = copy.deepcopy(self.vae).float().cpu().eval() if self.vae is not None else None
        sched = sched_class.from_config(self.noise_scheduler.config)
        return BabelTowerText2ImagePipeline(
            unet=unet, scheduler=sched, text_encoder=text_encoder, tokenizer=self.tokenizer, vae=vae,
            attn_backend=self.hparams.unet["attn_backend"],
        )

    def export_hub(self, folder, tokenizer=None, eval_report: Optional[dict] = None, overwrite: bool = False):
        """Writes a diffusers pipeline folder (``DiffusionPipeline.from_pretrained`` loads it)."""
        from babeltower.models.hub import prepare_output_folder, t2i_model_card

        folder = prepare_output_folder(folder, overwrite)
        pipe = self.pipeline()
        if tokenizer is not None:
            pipe.tokenizer = tokenizer
        pipe.save_pretrained(str(folder))
        (folder / "README.md").write_text(t2i_model_card(eval_report), encoding="utf-8")
        return folder
