"""Lightning DataModule for speech-transcript pairs in webdataset shards (ASR).

Samples hold ``flac`` (or ``wav``) audio, ``txt`` (the transcript) and ``json``
``{text, lang, voice, rate, pitch, duration, split, cs_level?, loanwords?}``.

YAML (LightningCLI)::

    data:
      class_path: babeltower.datasets.speech.SpeechDataModule
      init_args:
        train_shards: data/speech/train
        val_shards: data/speech/val
        batch_size: 32
        samples_per_epoch: 20000
        max_seconds: 20.0

Batches are dicts::

    waveforms       (B, N) float32 at 16 kHz, zero-padded to the longest clip
    audio_lengths   (B,) long, valid samples per clip
    labels          (B, L) long, transcript token ids WITHOUT <s> </s> (CTC targets),
                    padded with -100
    label_lengths   (B,) long
    text, lang, key list[str]
    meta            list[dict]   the samples' json
    bad_samples     list[dict]   {"shard", "key", "reason"} skipped since the last batch

Features (log-mel, SpecAugment) are computed by the training system, on the device.
Duration bucketing is not done: batches are drawn from the shuffle buffer in random
order, so padding grows with the spread of clip lengths (``max_seconds`` bounds it).
"""

from __future__ import annotations

import json
from typing import Any

import lightning as L
import torch

from babeltower.datasets.pipeline import (
    EpochLoader,
    MixedStream,
    ShardStream,
    single_pass_stream,
    train_loader,
    val_loader,
    weighted_train_stream,
)
from babeltower.modalities.audio import load_audio

#: Shard extensions read as the audio, in order of preference.
AUDIO_KEYS: tuple[str, ...] = ("flac", "wav", "ogg")
#: Padding value of ``labels`` (ignored positions, as in torch's cross-entropy).
LABEL_PAD = -100


class SpeechDecoder:
    """Raw shard sample -> ``{"waveform", "text", "lang", "key", "meta"}``.

    A picklable callable. Raises on a missing field, bad JSON, an empty transcript or
    audio that :func:`~babeltower.modalities.audio.load_audio` rejects (corrupt,
    silent, too long); :class:`~babeltower.datasets.pipeline.ShardStream` then skips the
    sample and reports the message in the batch's ``bad_samples``.

    Args:
        sample_rate: Output waveform rate in Hz.
        max_seconds: Longer clips are rejected (skipped).
    """

    def __init__(self, sample_rate: int = 16000, max_seconds: float | None = 20.0) -> None:
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        key = sample["__key__"]
        where = f"{sample.get('__url__', '?')}/{key}"
        audio_key = next((k for k in AUDIO_KEYS if k in sample), None)
        if audio_key is None:
            fields = sorted(k for k in sample if not k.startswith("__"))
            raise KeyError(f"no audio member ({'/'.join(AUDIO_KEYS)}) in sample; it has {fields}")
        meta: dict[str, Any] = {}
        if "json" in sample:
            try:
                meta = json.loads(sample["json"])
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(f"{where}.json: invalid JSON: {exc}") from exc
            if not isinstance(meta, dict):
                raise ValueError(f"{where}.json: expected a JSON object, got {type(meta).__name__}")
        if "txt" in sample:
            try:
                text = sample["txt"].decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise ValueError(f"{where}.txt is not UTF-8: {exc}") from exc
        elif isinstance(meta.get("text"), str):
            text = meta["text"].strip()
        else:
            raise KeyError(f"{where}: no transcript (neither a txt member nor 'text' in the json)")
        if not text:
            raise ValueError(f"{where}: the transcript is empty")
        lang = meta.get("lang")
        if not isinstance(lang, str) or not lang:
            raise KeyError(f"{where}.json has no 'lang' field (a language code such as \"de\")")
        waveform = load_audio(
            sample[audio_key],
            target_rate=self.sample_rate,
            where=f"{where}.{audio_key}",
            max_seconds=self.max_seconds,
        )  # (N,)
        return {"waveform": waveform, "text": text, "lang": lang, "key": key, "meta": meta}


def collate_speech(samples: list[dict[str, Any]], tokenizer: Any, max_text_length: int) -> dict[str, Any]:
    """Pads waveforms and tokenizes transcripts (no special tokens) into CTC targets.

    Args:
        samples: Dicts from :class:`SpeechDecoder`.
        tokenizer: A transformers tokenizer (the ASR model's).
        max_text_length: Transcripts are truncated to this many tokens.

    Returns:
        The batch dict described in the module docstring (without ``bad_samples``).
    """
    if not samples:
        raise ValueError("collate_speech: got an empty list of samples")
    texts = [s["text"] for s in samples]
    token_ids = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_text_length)["input_ids"]
    audio_lengths = torch.tensor([s["waveform"].shape[0] for s in samples], dtype=torch.long)  # (B,)
    waveforms = torch.zeros(len(samples), int(audio_lengths.max()))  # (B, N)
    for row, sample in enumerate(samples):
        waveforms[row, : sample["waveform"].shape[0]] = sample["waveform"]
    label_lengths = torch.tensor([len(ids) for ids in token_ids], dtype=torch.long)  # (B,)
    labels = torch.full((len(samples), max(1, int(label_lengths.max()))), LABEL_PAD, dtype=torch.long)  # (B, L)
    for row, ids in enumerate(token_ids):
        labels[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return {
        "waveforms": waveforms,
        "audio_lengths": audio_lengths,
        "labels": labels,
        "label_lengths": label_lengths,
        "text": texts,
        "lang": [s["lang"] for s in samples],
        "key": [s["key"] for s in samples],
        "meta": [s["meta"] for s in samples],
    }


class SpeechCollator:
    """Picklable :func:`collate_speech` bound to a tokenizer and a maximum length."""

    def __init__(self, tokenizer: Any, max_text_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_text_length = max_text_length

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_speech(samples, self.tokenizer, self.max_text_length)


class SpeechDataModule(L.LightningDataModule):
    """Speech clips and transcripts from webdataset shards, for CTC training.

    Args:
        train_shards: Training shards (see ``expand_shards``), read as one source.
        val_shards: Validation shards; one pass, no shuffling, last batch kept.
        tokenizer: Tokenizer folder (the ASR model's); None: the packaged default.
        batch_size: Training batch size per rank.
        val_batch_size: Validation batch size per rank (default ``batch_size``).
        num_workers: DataLoader worker processes per rank.
        samples_per_epoch: Global training samples per epoch (needed for multi-GPU
            training: every rank then yields the same number of batches).
        resampled: Draw training shards with replacement.
        shuffle_buffer: Training sample shuffle buffer size.
        seed: Seed of shard and sample order.
        sample_rate: Waveform rate in Hz.
        max_seconds: Clips longer than this are skipped (and reported).
        max_text_length: Transcripts are truncated to this many tokens.
    """

    def __init__(
        self,
        train_shards: str | list[str],
        val_shards: str | list[str] | None = None,
        tokenizer: str | None = None,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        samples_per_epoch: int | None = None,
        resampled: bool = False,
        shuffle_buffer: int = 500,
        seed: int = 0,
        sample_rate: int = 16000,
        max_seconds: float = 20.0,
        max_text_length: int = 256,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_shards = train_shards
        self.val_shards = val_shards
        self.tokenizer_path = tokenizer
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.samples_per_epoch = samples_per_epoch
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.max_text_length = max_text_length
        self.tokenizer: Any = None
        self.train_stream: ShardStream | None = None
        self.val_stream: ShardStream | None = None

    def setup(self, stage: str | None = None) -> None:
        """Loads the tokenizer and builds the streams (shard lists are checked here)."""
        if self.tokenizer is None:
            from babeltower.modalities import text

            self.tokenizer = text.load_tokenizer_or_default(self.tokenizer_path)
        collate = SpeechCollator(self.tokenizer, self.max_text_length)
        decoder = SpeechDecoder(self.sample_rate, self.max_seconds)
        if stage in (None, "fit") and self.train_stream is None:
            self.train_stream = ShardStream(
                self.train_shards,
                decode=decoder,
                batch_size=self.batch_size,
                collate=collate,
                shuffle_buffer=self.shuffle_buffer,
                seed=self.seed,
                resampled=self.resampled,
                samples_per_epoch=self.samples_per_epoch,
                drop_last=True,
            )
        if stage in (None, "fit", "validate") and self.val_shards is not None and self.val_stream is None:
            self.val_stream = single_pass_stream(
                self.val_shards,
                decode=decoder,
                collate=collate,
                batch_size=self.val_batch_size,
                seed=self.seed,
            )

    def train_dataloader(self) -> EpochLoader:
        """One rank's training batches; the epoch is set here and by Lightning each epoch."""
        if self.train_stream is None:
            self.setup("fit")
        return train_loader(
            self.train_stream, self.trainer, num_workers=self.num_workers, samples_per_epoch=self.samples_per_epoch,
            resampled=self.resampled, owner="SpeechDataModule",
        )

    def val_dataloader(self) -> EpochLoader | list:
        """One pass over the validation shards (empty when there are none)."""
        if self.val_shards is None:
            return []
        if self.val_stream is None:
            self.setup("validate")
        return val_loader(self.val_stream, self.trainer, num_workers=self.num_workers)
