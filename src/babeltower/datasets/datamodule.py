"""Lightning DataModule for image-text pairs in webdataset shards.

YAML (LightningCLI)::

    data:
      class_path: babeltower.datasets.datamodule.ImageTextDataModule
      init_args:
        train_shards: data/scenes/train
        val_shards: data/scenes/val
        batch_size: 128
        samples_per_epoch: 20000
        caption_languages: [en, de, fr, es, ru, ar, hi, ko, zh, ja]

``tokenizer`` and ``image_size`` are not set here: ``babeltower fit`` takes them from the
model section (the text encoder's tokenizer, the vision tower's side).

Batches are dicts::

    pixel_values    (B, 3, H, W) float32, CLIP-normalised
    input_ids       (B, T) long, padded to the longest caption in the batch
    attention_mask  (B, T) long
    lang, key       list[str]
    meta            list[dict]   the samples' json
    bad_samples     list[dict]   {"shard", "key", "reason"} skipped since the last batch
    padding         True         only on a DDP validation padding batch (see pipeline)

Every DataModule here shares :mod:`babeltower.datasets.pipeline`'s guarantees: samples
split across ranks and workers by sample (uneven shards neither starve a rank nor repeat
a sample), the order driven by ``seed_everything`` (``seed=None``), rank-balanced
validation, every corrupt sample reported once, and exact mid-epoch resume from a
checkpoint (``fit --ckpt_path``; the loader's position is saved in the checkpoint).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import lightning as L
import torch

from babeltower.datasets.pipeline import (
    MixedStream,
    ShardStream,
    StreamLoaders,
    sample_json,
    resolve_seed,
    single_pass_stream,
    weighted_train_stream,
)
from babeltower.modalities.image import ImageTransform, decode_image

log = logging.getLogger(__name__)

#: Shard extensions read as the image, in order of preference.
IMAGE_KEYS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")


class ImageTextDecoder:
    """Raw shard sample -> ``{"pixel_values", "text", "lang", "key", "meta"}``.

    A picklable callable (DataLoader workers may be spawned). Raises on any missing or
    bad field; :class:`~babeltower.datasets.pipeline.ShardStream` then skips the sample
    and reports the message.

    Args:
        image_size: Output image side.
        train: Training-mode image jitter, and random caption language choice.
        caption_languages: If set and the sample's json has ``captions: {lang: text}``,
            training picks one of these languages at random per sample (a cheap
            multilingual augmentation); otherwise the ``txt`` member is used.
        seed: Seed of the caption-language choice and image jitter, combined with the
            sample key and epoch so it is reproducible and differs across epochs.
    """

    def __init__(
        self,
        image_size: int,
        *,
        train: bool,
        caption_languages: list[str] | None = None,
        seed: int = 0,
    ) -> None:
        self.transform = ImageTransform(image_size, train=train)
        self.train = train
        self.caption_languages = list(caption_languages) if caption_languages else None
        self.seed = seed

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        key = sample["__key__"]
        where = f"{sample.get('__url__', '?')}/{key}"
        image_key = next((k for k in IMAGE_KEYS if k in sample), None)
        if image_key is None:
            fields = sorted(k for k in sample if not k.startswith("__"))
            raise KeyError(f"no image member ({'/'.join(IMAGE_KEYS)}) in sample; it has {fields}")
        if "json" not in sample:
            raise KeyError("no json member with 'lang' in sample")
        meta = sample_json(sample)
        # str seeds hash with SHA-512, so the stream is reproducible across processes.
        rng = random.Random(f"{self.seed}:{sample.get('__epoch__', 0)}:{key}")
        text, lang = self._pick_caption(sample, meta, rng, where)
        image = decode_image(sample[image_key], where=f"{where}.{image_key}")
        return {
            "pixel_values": self.transform(image, rng=rng),  # (3, H, W)
            "text": text,
            "lang": lang,
            "key": key,
            "meta": meta,
        }

    def _pick_caption(
        self, sample: dict[str, Any], meta: dict[str, Any], rng: random.Random, where: str
    ) -> tuple[str, str]:
        captions = meta.get("captions")
        if self.train and self.caption_languages and isinstance(captions, dict):
            available = [lang for lang in self.caption_languages if isinstance(captions.get(lang), str)]
            if available:
                lang = rng.choice(available)
                return captions[lang], lang
        if "txt" not in sample:
            raise KeyError("no txt member (caption) in sample")
        lang = meta.get("lang")
        if not isinstance(lang, str) or not lang:
            raise KeyError(f"{where}.json has no 'lang' field (a language code such as \"de\")")
        try:
            text = sample["txt"].decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise ValueError(f"{where}.txt is not UTF-8: {exc}") from exc
        if not text:
            raise ValueError(f"{where}.txt is empty")
        return text, lang


def collate_image_text(samples: list[dict[str, Any]], tokenizer: Any, max_text_length: int) -> dict[str, Any]:
    """Stacks decoded image-text samples into a batch and tokenizes the captions.

    Args:
        samples: Dicts with ``pixel_values`` (3, H, W), ``text``, ``lang``, ``key``,
            ``meta`` (as made by :class:`ImageTextDecoder`).
        tokenizer: A transformers tokenizer with a pad token.
        max_text_length: Captions are truncated to this many tokens.

    Returns:
        ``pixel_values`` (B, 3, H, W), ``input_ids`` and ``attention_mask`` (B, T) long
        (padded to the longest caption), ``lang``, ``key``, ``meta`` lists.

    Raises:
        ValueError: If the tokenizer has no pad token or there are no samples.
    """
    if not samples:
        raise ValueError("collate_image_text: got an empty list of samples")
    if tokenizer.pad_token is None:
        raise ValueError(
            f"collate_image_text: tokenizer {type(tokenizer).__name__} has no pad_token; "
            "set one (e.g. tokenizer.pad_token = '<pad>') to batch captions of different lengths"
        )
    tokens = tokenizer(
        [s["text"] for s in samples],
        padding="longest",
        truncation=True,
        max_length=max_text_length,
        return_tensors="pt",
    )
    return {
        "pixel_values": torch.stack([s["pixel_values"] for s in samples]),  # (B, 3, H, W)
        "input_ids": tokens["input_ids"].long(),  # (B, T)
        "attention_mask": tokens["attention_mask"].long(),  # (B, T)
        "lang": [s["lang"] for s in samples],
        "key": [s["key"] for s in samples],
        "meta": [s["meta"] for s in samples],
    }


class ImageTextCollator:
    """Picklable ``collate_image_text`` bound to a tokenizer and a maximum length."""

    def __init__(self, tokenizer: Any, max_text_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_text_length = max_text_length

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_image_text(samples, self.tokenizer, self.max_text_length)


class ImageTextDataModule(StreamLoaders, L.LightningDataModule):
    """Image-caption pairs from webdataset shards, for contrastive (CLIP-style) training.

    Args:
        train_shards: Training shards (see ``expand_shards``). A list of several specs
            makes each one a source, mixed batch by batch according to ``train_weights``.
        val_shards: Validation shards; one pass, no shuffling, last batch kept.
        tokenizer: Tokenizer folder; None uses the packaged default tokenizer.
            ``babeltower fit`` sets it to the model's text encoder's.
        train_weights: Mixing weights, one per entry of ``train_shards`` (default equal).
        image_size: Image side in pixels (``babeltower fit`` sets it to the model's).
        batch_size: Training batch size per rank.
        val_batch_size: Validation batch size per rank (default ``batch_size``).
        num_workers: DataLoader worker processes per rank.
        samples_per_epoch: Global training samples per epoch; every rank then yields
            ``samples_per_epoch // (world_size * batch_size)`` batches. Needed for
            multi-GPU training and for mixing sources.
        resampled: Draw training shards with replacement.
        shuffle_buffer: Training sample shuffle buffer size.
        seed: Seed of shard order, sample order, mixing, jitter and caption languages;
            None (default) follows the run's ``seed_everything`` (``PL_GLOBAL_SEED``).
        max_text_length: Captions are truncated to this many tokens.
        caption_languages: Training picks one of these caption languages per sample
            when the sample's json has ``captions``; None always uses ``txt``.
    """

    def __init__(
        self,
        train_shards: str | list[str],
        val_shards: str | list[str] | None = None,
        tokenizer: str | None = None,
        train_weights: list[float] | None = None,
        image_size: int = 32,
        batch_size: int = 32,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        samples_per_epoch: int | None = None,
        resampled: bool = False,
        shuffle_buffer: int = 1000,
        seed: int | None = None,
        max_text_length: int = 64,
        caption_languages: list[str] | None = None,
    ) -> None:
        super().__init__()
        sources = [train_shards] if isinstance(train_shards, str) else list(train_shards)
        if not sources:
            raise ValueError("ImageTextDataModule.train_shards is empty; give a shard spec or a list of them")
        if train_weights is not None and len(train_weights) != len(sources):
            raise ValueError(
                f"ImageTextDataModule.train_weights has {len(train_weights)} entries but train_shards has "
                f"{len(sources)} sources; give one weight per source"
            )
        if len(sources) > 1 and samples_per_epoch is None:
            raise ValueError(
                f"ImageTextDataModule: mixing {len(sources)} train_shards sources needs samples_per_epoch "
                "(the mixture's epoch length); or give one spec string to read them as one source"
            )
        self.save_hyperparameters()
        self.train_sources = sources
        self.val_shards = val_shards
        self.tokenizer_path = tokenizer
        self.train_weights = train_weights
        self.image_size = image_size
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.samples_per_epoch = samples_per_epoch
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.max_text_length = max_text_length
        self.caption_languages = caption_languages
        self.tokenizer: Any = None
        self.train_stream: ShardStream | MixedStream | None = None
        self.val_stream: ShardStream | None = None

    def setup(self, stage: str | None = None) -> None:
        """Loads the tokenizer and builds the streams (shard lists are checked here)."""
        if self.tokenizer is None:
            from babeltower.modalities import text

            self.tokenizer = text.load_tokenizer_or_default(self.tokenizer_path)
        collate = ImageTextCollator(self.tokenizer, self.max_text_length)
        if stage in (None, "fit") and self.train_stream is None:
            self.train_stream = self._build_train_stream(collate)
        if stage in (None, "fit", "validate") and self.val_shards is not None and self.val_stream is None:
            self.val_stream = single_pass_stream(
                self.val_shards,
                decode=ImageTextDecoder(self.image_size, train=False),
                collate=collate,
                batch_size=self.val_batch_size,
                seed=self.seed,
            )

    def _build_train_stream(self, collate: ImageTextCollator) -> ShardStream | MixedStream:
        return weighted_train_stream(
            self.train_sources,
            self.train_weights,
            make_decoder=lambda: ImageTextDecoder(
                self.image_size, train=True, caption_languages=self.caption_languages, seed=resolve_seed(self.seed)
            ),
            collate=collate,
            batch_size=self.batch_size,
            shuffle_buffer=self.shuffle_buffer,
            seed=self.seed,
            resampled=self.resampled,
            samples_per_epoch=self.samples_per_epoch,
        )
