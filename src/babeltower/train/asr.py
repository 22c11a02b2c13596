"""CTC speech-recognition training system, with an optional SAMU-XLSR-style alignment loss.

Loss::

    loss = CTC(log_probs, labels) + align_weight * mean(1 - cos(utterance_embedding, text_embedding))

where ``text_embedding`` is the shared multilingual text encoder's pooled, projected
embedding (``TextEncoder(...).embeds``) of the transcript, frozen by default (Khurana
et al. 2022, SAMU-XLSR: pull the utterance's mean-pooled speech states towards the
sentence embedding of its transcript, so speech lands in the joint text space).
``align_weight: 0`` disables it and builds no text encoder.

The front end (:class:`~babeltower.models.asr.ASRFeatures`, log-mel + per-utterance
normalisation) and SpecAugment (training only) run here, on the device, before the
model. CTC uses ``zero_infinity``: a transcript with more tokens than output frames
(40 ms each) contributes no gradient instead of an infinite loss.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Optional

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F

from babeltower.models.asr import ASRConfig, ASRFeatures, ASRModel, greedy_decode
from babeltower.models.text_encoder import TextEncoderConfig
from babeltower.train.contrastive import text_config_from
from babeltower.train.optim import adamw_with_cosine, param_groups


def ctc_loss(log_probs, out_lengths, labels, label_lengths, blank: int) -> torch.Tensor:
    """Mean CTC loss per target token (torch ``reduction="mean"``), zero_infinity on.

    Args:
        log_probs: (B, T, V+1) log-probabilities.
        out_lengths: (B,) valid frames.
        labels: (B, L) token ids padded with any value (e.g. -100).
        label_lengths: (B,) target lengths.
        blank: blank index.
    """
    targets = labels.clamp(min=0)  # padding beyond label_lengths is ignored, but must be a valid index
    return F.ctc_loss(
        log_probs.float().transpose(0, 1),  # (T, B, V+1)
        targets,
        out_lengths,
        label_lengths,
        blank=blank,
        reduction="mean",
        zero_infinity=True,
    )


def _distilled_text_config(init_from: str, text: TextEncoderConfig) -> TextEncoderConfig:
    """:func:`text_config_from`, keeping the saved encoder's projection.

    The alignment target is the encoder's ``embeds``: for a distilled student that is its
    projection into the teacher's space, so the projection (and its width) must come
    from the folder too, not be replaced by a fresh one.
    """
    import json
    from pathlib import Path

    from babeltower.models.text_encoder import CONFIG_FILE

    config = text_config_from(init_from, text)
    saved = Path(config.pretrained) / CONFIG_FILE
    if saved.is_file():
        config = replace(config, projection_dim=json.loads(saved.read_text(encoding="utf-8")).get("projection_dim"))
    return config


class PrefixCache:
    """Float16 states per distinct clip (keyed by a BLAKE2 hash of its samples), up to ``mb`` MB.

    Nothing is evicted: a training stream cycles through its clips, so once the budget is
    spent, later clips are computed each time and the cached ones stay (an LRU would
    evict every clip just before it comes round again). ``hits``/``misses`` count lookups.
    """

    def __init__(self, mb: int):
        self.budget = mb * 2**20
        self.used = 0
        self.hits = self.misses = 0
        self._states: dict[bytes, torch.Tensor] = {}

    @staticmethod
    def key(waveform: torch.Tensor) -> bytes:
        import hashlib

        return hashlib.blake2b(waveform.detach().float().cpu().numpy().tobytes(), digest_size=16).digest()

    def __contains__(self, key: bytes) -> bool:
        found = key in self._states
        self.hits += found
        self.misses += not found
        return found

    def get(self, key: bytes) -> torch.Tensor:
        return self._states[key]

    def put(self, key: bytes, state: torch.Tensor) -> None:
        size = state.numel() * state.element_size()
        if key not in self._states and self.used + size <= self.budget:
            self._states[key] = state
            self.used += size

    def clear(self) -> None:
        self._states.clear()
        self.used = 0


class ASRSystem(L.LightningModule):
    """Trains :class:`~babeltower.models.asr.ASRModel` with CTC (+ optional text alignment).

    Args:
        asr: recognizer architecture.
        text: shared text encoder for the alignment loss; None: the default tiny
            :class:`TextEncoderConfig` (only built when ``align_weight > 0``).
        init_text_from: hub folder or text-encoder folder (e.g. a distilled encoder) to
            take the text encoder's architecture, projection, tokenizer and weights from;
            of ``text`` only pooling, attn_backend and gradient_checkpointing apply.
        freeze_text: keep the whole text encoder frozen and in eval mode.
        align_weight: weight of the 1 - cosine alignment loss; 0 disables it.
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay (not on biases, norms).
        warmup_steps: linear warm-up steps before cosine decay.
        min_lr_ratio: final learning rate as a fraction of the peak.
        spec_augment: apply SpecAugment to training features.
        encoder_init: pretrained audio encoder to start from: ``"whisper-tiny.en"`` (the
            packaged Whisper tiny.en weights) or a CTranslate2 Whisper folder; the ``asr``
            config must have Whisper's layout (:func:`~babeltower.models.asr.asr_whisper_tiny`).
            None: random initialisation.
        encoder_lr_scale: learning rate of the pretrained encoder as a fraction of
            ``learning_rate`` (the new CTC head trains at the full rate).
        frozen_blocks: None trains everything; 0 freezes the subsampling convolutions; N
            freezes them and the first N encoder blocks (no gradients, cheaper backward).
        head_only_steps: the first N optimizer steps train only the CTC head; the rest of
            the encoder that trains waits (wav2vec 2.0's ``freeze_finetune_updates``, Baevski
            et al. 2020): while CTC is on its all-blank plateau, a random head's gradients
            would only disturb the pretrained blocks.
        prefix_cache_mb: with ``frozen_blocks`` set, keep the frozen prefix's output
            (subsampling and the frozen blocks, float16) per distinct clip, up to this many MB,
            so the prefix runs once per clip instead of once per step. SpecAugment then masks
            those states in time (as wav2vec 2.0 fine-tuning masks its feature encoder's
            output) instead of masking the log-mel input. 0: no cache.
    """

    def __init__(
        self,
        asr: ASRConfig = ASRConfig(),
        text: Optional[TextEncoderConfig] = None,
        init_text_from: Optional[str] = None,
        freeze_text: bool = True,
        align_weight: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-2,
        warmup_steps: int = 200,
        min_lr_ratio: float = 0.0,
        spec_augment: bool = True,
        encoder_init: Optional[str] = None,
        encoder_lr_scale: float = 1.0,
        frozen_blocks: Optional[int] = None,
        head_only_steps: int = 0,
        prefix_cache_mb: int = 0,
    ):
        super().__init__()
        asr = asr if isinstance(asr, ASRConfig) else ASRConfig(**asr)
        if text is not None and not isinstance(text, TextEncoderConfig):
            text = TextEncoderConfig(**text)
        if align_weight < 0:
            raise ValueError(f"ASRSystem.align_weight must be >= 0, got {align_weight}")
        if init_text_from and align_weight == 0:
            raise ValueError(
                f"ASRSystem.init_text_from={init_text_from!r} has no effect with align_weight=0 (no text encoder "
                "is built); set align_weight > 0 or drop init_text_from"
            )
        self.text_encoder = None
        self.text_tokenizer = None
        if align_weight > 0:
            from babeltower.models.text_encoder import TextEncoder, resolve_tokenizer

            text = text or TextEncoderConfig()
            if init_text_from:
                text = _distilled_text_config(init_text_from, text)
            self.text_encoder = TextEncoder(text)
            if init_text_from:
                from babeltower.models.hub import load_text_encoder_weights

                load_text_encoder_weights(self.text_encoder, init_text_from)
            self.text_tokenizer = resolve_tokenizer(text)
            if freeze_text:
                self.text_encoder.requires_grad_(False)
            asr = replace(asr, text_dim=self.text_encoder.embed_dim)
        if not 0 < encoder_lr_scale <= 1:
            raise ValueError(f"ASRSystem.encoder_lr_scale must be in (0, 1], got {encoder_lr_scale}")
        if frozen_blocks is not None and not 0 <= frozen_blocks <= asr.num_layers:
            raise ValueError(f"ASRSystem.frozen_blocks must be None or 0..{asr.num_layers} (asr.num_layers), got {frozen_blocks}")
        self.model = ASRModel(asr)
        if encoder_init:
            from babeltower.models.whisper import load_whisper_encoder

            load_whisper_encoder(self.model, encoder_init)
        if frozen_blocks is not None:
            self.model.subsampling.requires_grad_(False)
            for block in self.model.blocks[:frozen_blocks]:
                block.requires_grad_(False)
        if head_only_steps < 0:
            raise ValueError(f"ASRSystem.head_only_steps must be >= 0, got {head_only_steps}")
        #: encoder parameters that train, but only after ``head_only_steps``
        self._waiting = [p for name, p in self.named_parameters()
                         if p.requires_grad and not name.startswith(self.HEAD_PREFIXES) and name.startswith("model.")]
        self.save_hyperparameters()
        # Plain dicts in the checkpoint, so it loads with torch.load(weights_only=True). The
        # stored asr config is the resolved one (vocab_size, text_dim) the weights belong to.
        self.hparams["asr"] = asdict(self.model.config)
        self.hparams["text"] = asdict(text) if text is not None else None
        self.features = ASRFeatures.for_config(asr)
        if prefix_cache_mb < 0:
            raise ValueError(f"ASRSystem.prefix_cache_mb must be >= 0 (0: no cache), got {prefix_cache_mb}")
        if prefix_cache_mb and frozen_blocks is None:
            raise ValueError("ASRSystem.prefix_cache_mb caches the frozen prefix: set frozen_blocks (0..num_layers) too")
        self.prefix_cache = PrefixCache(prefix_cache_mb) if prefix_cache_mb else None
        if self.prefix_cache is not None:
            self.model.register_load_state_dict_pre_hook(lambda *args, **kwargs: self.prefix_cache.clear())
        self.spec_augment = None
        if spec_augment:
            from babeltower.modalities.audio import SpecAugment

            # On cached prefix states, time masks only: with channel masks too (2 x up to 64 of 384
            # channels) a Whisper run was at validation CER 0.70 at step 400 against 0.41 with input masking.
            self.spec_augment = (SpecAugment(freq_masks=0) if self.prefix_cache is not None
                                 else SpecAugment(freq_width=min(27, asr.n_mels // 3)))
        self._val_refs: list[str] = []
        self._val_hyps: list[str] = []

    def train(self, mode: bool = True):
        """Keeps a frozen text encoder in eval mode (no dropout) while the rest trains."""
        super().train(mode)
        if self.text_encoder is not None and self.hparams.freeze_text:
            self.text_encoder.eval()
        return self

    def on_train_batch_start(self, batch, batch_idx):
        # After configure_optimizers (which only takes parameters that need gradients), so the
        # waiting parameters are in the optimizer and simply get no gradient (AdamW skips them).
        if self.hparams.get("head_only_steps", 0):
            waiting = self.global_step < self.hparams.head_only_steps
            for p in self._waiting:
                p.requires_grad_(not waiting)

    def forward(self, waveforms: torch.Tensor, audio_lengths: torch.Tensor):
        """Waveforms (B, N) + valid samples (B,) -> (log_probs, out_lengths, states), see ASRModel.forward."""
        if self.prefix_cache is not None:
            first = self.hparams.frozen_blocks
            x, out_lengths = self._cached_prefix(waveforms, audio_lengths, first)
            if self.spec_augment is not None and self.training:
                x = self.spec_augment(x.transpose(1, 2), out_lengths).transpose(1, 2)
            return self.model.forward_from(x, out_lengths, first)
        features, frame_lengths = self.features(waveforms, audio_lengths)  # (B, n_mels, T), (B,)
        if self.spec_augment is not None and self.training:
            features = self.spec_augment(features, frame_lengths)
        return self.model(features, frame_lengths)

    def _cached_prefix(self, waveforms: torch.Tensor, audio_lengths: torch.Tensor, num_blocks: int):
        """The frozen prefix's (B, T', d) states and (B,) lengths, computed only for clips not in the cache."""
        cache = self.prefix_cache
        keys = [cache.key(waveforms[i, : int(audio_lengths[i])]) for i in range(waveforms.shape[0])]
        fresh = {}
        missing = [i for i, key in enumerate(keys) if key not in cache]
        if missing:
            rows = torch.tensor(missing, device=waveforms.device)
            lengths = audio_lengths[rows]
            features, frame_lengths = self.features(waveforms[rows, : int(lengths.max())], lengths)
            was_training = self.model.training
            self.model.eval()  # the frozen prefix runs without dropout: a function of the clip
            try:
                with torch.no_grad():
                    x, out_lengths = self.model.encode_prefix(features, frame_lengths, num_blocks)
            finally:
                self.model.train(was_training)
            for j, i in enumerate(missing):
                fresh[keys[i]] = state = x[j, : int(out_lengths[j])].to(torch.float16).clone()
                cache.put(keys[i], state)
        states = [fresh[key] if key in fresh else cache.get(key) for key in keys]
        out_lengths = torch.tensor([len(state) for state in states], device=waveforms.device)
        x = torch.zeros(len(states), int(out_lengths.max()), states[0].shape[-1], device=waveforms.device)
        for i, state in enumerate(states):
            x[i, : len(state)] = state.float()
        return x, out_lengths

    @staticmethod
    def linked_data_args(init_args: dict) -> dict[str, tuple[str, Any]]:
        """DataModule init args these init args fix: ``{data field: (model field, value)}``.

        ``babeltower fit`` links them (:mod:`babeltower.train.launch`): transcripts are cut
        into the recognizer's CTC units (its tokenizer, its first ``vocab_size`` tokens).
        """
        asr = init_args.get("asr") or {}
        return {
            "tokenizer": ("asr.tokenizer", asr.get("tokenizer", ASRConfig.tokenizer)),
            "vocab_size": ("asr.vocab_size", asr.get("vocab_size", ASRConfig.vocab_size)),
        }

    def on_fit_start(self):
        # babeltower fit links the data's tokenizer and vocab_size to the model's; a
        # DataModule built by hand can still differ
        data_tokenizer = getattr(getattr(self.trainer, "datamodule", None), "tokenizer", None)
        if data_tokenizer is not None and data_tokenizer.get_vocab() != self.model.tokenizer.get_vocab():
            raise ValueError(
                f"the data's tokenizer ({len(data_tokenizer)} tokens) is not the ASR model's "
                f"({len(self.model.tokenizer)} tokens, from {self.model.config.tokenizer or 'the packaged default'}): "
                "build the SpeechDataModule with tokenizer=model.init_args.asr.tokenizer and "
                "vocab_size=model.init_args.asr.vocab_size (babeltower fit links them)"
            )

    def _align_loss(self, states, out_lengths, texts: list[str]) -> torch.Tensor:
        from babeltower.modalities.text import tokenize

        if self.hparams.freeze_text and self.text_encoder.training:
            # Lightning restores saved per-module modes after validation, bypassing train().
            self.text_encoder.eval()
        max_length = min(128, self.text_encoder.backbone.config.max_position_embeddings - 2)
        tokens = tokenize(self.text_tokenizer, texts, max_length)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.hparams.freeze_text):
            input_ids, attention_mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
            target = self.text_encoder(input_ids, attention_mask).embeds  # (B, D)
        speech = self.model.utterance_embedding(states, out_lengths)  # (B, D)
        return (1.0 - F.cosine_similarity(speech.float(), target.float(), dim=-1)).mean()

    def _shared_step(self, batch):
        log_probs, out_lengths, states = self(batch["waveforms"], batch["audio_lengths"])
        ctc = ctc_loss(log_probs, out_lengths, batch["labels"], batch["label_lengths"], self.model.blank_id)
        align = self._align_loss(states, out_lengths, batch["text"]) if self.text_encoder is not None else None
        loss = ctc if align is None else ctc + self.hparams.align_weight * align
        return loss, ctc, align, log_probs, out_lengths

    def training_step(self, batch, batch_idx):
        loss, ctc, align, _, _ = self._shared_step(batch)
        bs = batch["waveforms"].shape[0]
        self.log("train/ctc", ctc, batch_size=bs)
        if align is not None:
            self.log("train/align", align, batch_size=bs)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, ctc, align, log_probs, out_lengths = self._shared_step(batch)
        bs = batch["waveforms"].shape[0]
        self.log("val/ctc", ctc, prog_bar=True, batch_size=bs, sync_dist=True)
        if align is not None:
            self.log("val/align", align, batch_size=bs, sync_dist=True)
        self.log("val/loss", loss, batch_size=bs, sync_dist=True)
        hyps = self.model.decode_tokens(greedy_decode(log_probs, out_lengths, blank=self.model.blank_id))
        self._val_refs.extend(batch["text"])
        self._val_hyps.extend(hyps)

    def on_validation_epoch_start(self):
        self._val_refs, self._val_hyps = [], []

    def on_validation_epoch_end(self):
        from babeltower.eval.asr_metrics import cer, wer

        refs, hyps = self._val_refs, self._val_hyps
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Corpus CER pools errors over every rank's utterances, not a mean of rank means.
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, (refs, hyps))
            refs = [r for part in gathered for r in part[0]]
            hyps = [h for part in gathered for h in part[1]]
        if refs:
            self.log("val/cer", cer(refs, hyps), prog_bar=True)
            self.log("val/wer", wer(refs, hyps))
        self._val_refs, self._val_hyps = [], []

    def configure_optimizers(self):
        groups = param_groups(self, self.hparams.weight_decay)
        scale = self.hparams.get("encoder_lr_scale", 1.0)
        if scale != 1.0:
            # the pretrained encoder at a fraction of the rate, the new output layers at the full rate
            head = {id(p) for name, p in self.named_parameters() if name.startswith(self.HEAD_PREFIXES)}
            groups = [
                {**group, "params": [p for p in group["params"] if (id(p) in head) == is_head],
                 **({} if is_head else {"lr": self.hparams.learning_rate * scale})}
                for group in groups for is_head in (True, False)
            ]
            groups = [group for group in groups if group["params"]]
        return adamw_with_cosine(self, groups, betas=(0.9, 0.98), eps=1e-6)

    #: Parameters that a pretrained encoder does not provide (full learning rate).
    HEAD_PREFIXES = ("model.ctc_head.", "model.utterance_projection.")

    def export_hub(self, folder, eval_report: Optional[dict] = None, overwrite: bool = False):
        """Writes a hub folder: ``model_index.json``, ``asr/`` (ASRModel.save_pretrained),
        ``tokenizer/`` and a README model card. Load with ``ASRModel.from_pretrained(folder)``.

        The alignment text encoder is a training aid and is not exported.
        """
        import json

        from babeltower import __version__
        from babeltower.models.hub import MODEL_INDEX, model_card, prepare_output_folder

        folder = prepare_output_folder(folder, overwrite)
        self.model.save_pretrained(folder / "asr")
        self.model.tokenizer.save_pretrained(str(folder / "tokenizer"))
        index = {
            "_class_name": "ASRModel",
            "_babeltower_version": __version__,
            "task": "asr",
            "asr": ["babeltower", "ASRModel"],
            "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        }
        (folder / MODEL_INDEX).write_text(json.dumps(index, indent=2))
        config = self.model.config
        extra = (
            f"CTC {config.block} recognizer: {config.num_layers} layers, d_model {config.d_model}, "
            f"{config.n_mels} log-mel bins at {config.sample_rate} Hz, {config.vocab_size} BPE tokens + blank "
            f"(index {self.model.blank_id}).\n"
        )
        card = model_card(
            "babeltower multilingual speech recognizer",
            sorted((eval_report or {}).get("languages", [])),
            (eval_report or {}).get("markdown"),
            extra=extra,
            usage="Load with `babeltower.models.asr.ASRModel.from_pretrained(path)`; ",
            tag="automatic-speech-recognition",
            subfolder_note="the `tokenizer/` subfolder loads with `transformers.AutoTokenizer.from_pretrained`.",
        )
        (folder / "README.md").write_text(card)
        return folder
