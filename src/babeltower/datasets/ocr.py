"""Lightning DataModule for text-line images in webdataset shards (OCR).

Samples hold ``png`` (or ``jpg``/``webp``) line images, ``txt`` (the label, logical
order) and ``json`` ``{text, lang, script, font, direction, mixed, rtl_digits, ...}``
(:mod:`babeltower.datasets.synthetic.ocr` writes them; any shards with an image, a txt
and a ``lang`` work).

YAML (LightningCLI)::

    data:
      class_path: babeltower.datasets.ocr.OCRDataModule
      init_args:
        train_shards: runs/data/ocr/train
        val_shards: runs/data/ocr/val
        batch_size: 32
        samples_per_epoch: 32000
        bucket_buffer: 512      # sort 16 batches' worth of lines by width

Batches are dicts::

    images        (B, 1, H, W) float32, ink bright, zero-padded on the right
    widths        (B,) long, valid columns per line
    text, lang, script, key   list[str]
    meta          list[dict]   the samples' json
    bad_samples   list[dict]   {"shard", "key", "reason"} skipped since the last batch

Labels stay strings: the training system turns them into CTC targets with the model's
own character set (configured once, on the model).

Width bucketing (``bucket_buffer``) is the speech DataModule's duration bucketing
(:class:`~babeltower.datasets.speech.DurationBucketedStream`, sort-and-cut over a
buffer) keyed by image width: batches of similar width waste little padding, and the
equal-batch-count guarantees across ranks hold unchanged.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L

from babeltower.datasets.pipeline import ShardStream, StreamLoaders, sample_text, single_pass_stream
from babeltower.datasets.speech import DurationBucketedStream
from babeltower.modalities.text_line import batch_lines, line_tensor

#: Shard extensions read as the line image, in order of preference.
IMAGE_KEYS: tuple[str, ...] = ("png", "jpg", "jpeg", "webp")


class LineDecoder:
    """Raw shard sample -> ``{"image": (1, H, W), "text", "lang", "script", "key", "meta"}``.

    A picklable callable. Raises on a missing field, bad JSON, an empty label or an image
    that cannot be decoded; :class:`~babeltower.datasets.pipeline.ShardStream` then skips
    the sample and reports the message in the batch's ``bad_samples``.

    Args:
        height: Line height the images are scaled to (``OCRConfig.image_height``).
        max_width: Widest line after scaling (``OCRConfig.max_width``).
        augment: Random horizontal stretch (training).
        seed: Seed of the augmentation (combined with the sample key and epoch).
    """

    def __init__(self, height: int = 32, max_width: int = 1024, augment: bool = False, seed: int = 0) -> None:
        self.height, self.max_width, self.augment, self.seed = height, max_width, augment, seed

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        from babeltower.modalities.image import decode_image

        key = sample["__key__"]
        where = f"{sample.get('__url__', '?')}/{key}"
        image_key = next((k for k in IMAGE_KEYS if k in sample), None)
        if image_key is None:
            fields = sorted(k for k in sample if not k.startswith("__"))
            raise KeyError(f"no image member ({'/'.join(IMAGE_KEYS)}) in sample; it has {fields}")
        text, meta = sample_text(sample, "label")
        lang = meta.get("lang")
        if not isinstance(lang, str) or not lang:
            raise KeyError(f"{where}.json has no 'lang' field (a language code such as \"ar\")")
        image = decode_image(sample[image_key], where=f"{where}.{image_key}")
        rng = random.Random(f"{self.seed}:{sample.get('__epoch__', 0)}:{key}") if self.augment else None
        tensor = line_tensor(image, self.height, self.max_width, rng)  # (1, H, W)
        return {"image": tensor, "text": text, "lang": lang, "script": str(meta.get("script", "")), "key": key, "meta": meta}


def collate_lines(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Pads line tensors into a batch (see the module docstring)."""
    if not samples:
        raise ValueError("collate_lines: got an empty list of samples")
    images, widths = batch_lines([s["image"] for s in samples])
    return {
        "images": images,
        "widths": widths,
        "text": [s["text"] for s in samples],
        "lang": [s["lang"] for s in samples],
        "script": [s["script"] for s in samples],
        "key": [s["key"] for s in samples],
        "meta": [s["meta"] for s in samples],
    }


def _image_width(sample: dict) -> int:
    return sample["image"].shape[-1]


class WidthBucketedStream(DurationBucketedStream):
    """Duration bucketing (sort-and-cut over a buffer) keyed by line-image width."""

    sample_length = staticmethod(_image_width)


class OCRDataModule(StreamLoaders, L.LightningDataModule):
    """Text-line images and labels from webdataset shards, for CTC training.

    Args:
        train_shards: Training shards (see ``expand_shards``).
        val_shards: Validation shards; one pass, no shuffling, last batch kept.
        image_height: Line height in pixels (``babeltower fit`` sets it to
            ``model.init_args.ocr.image_height``).
        max_width: Widest line after scaling (``babeltower fit`` sets it to
            ``model.init_args.ocr.max_width``).
        batch_size: Training batch size per rank.
        val_batch_size: Validation batch size per rank (default ``batch_size``).
        num_workers: DataLoader worker processes per rank.
        samples_per_epoch: Global training samples per epoch (needed for multi-GPU
            training: every rank then yields the same number of batches).
        resampled: Draw training shards with replacement.
        shuffle_buffer: Training sample shuffle buffer size.
        seed: Seed of shard and sample order and of the augmentation.
        augment: Random horizontal stretch of training lines (0.85-1.15).
        bucket_buffer: Width bucketing of training batches: lines sorted by width
            together (at least ``2 * batch_size``, e.g. ``16 * batch_size``); 0: off.
    """

    def __init__(
        self,
        train_shards: str | list[str],
        val_shards: str | list[str] | None = None,
        image_height: int = 32,
        max_width: int = 1024,
        batch_size: int = 32,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        samples_per_epoch: int | None = None,
        resampled: bool = False,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        augment: bool = True,
        bucket_buffer: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if bucket_buffer and bucket_buffer < 2 * batch_size:
            raise ValueError(
                f"OCRDataModule: bucket_buffer={bucket_buffer} holds fewer than two batches of batch_size={batch_size}; "
                f"use 0 (off) or at least {2 * batch_size} (e.g. {16 * batch_size})"
            )
        self.train_shards = train_shards
        self.val_shards = val_shards
        self.image_height = image_height
        self.max_width = max_width
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.samples_per_epoch = samples_per_epoch
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.augment = augment
        self.bucket_buffer = bucket_buffer
        self.train_stream: ShardStream | None = None
        self.val_stream: ShardStream | None = None

    def setup(self, stage: str | None = None) -> None:
        """Builds the streams (shard lists are checked here)."""
        if stage in (None, "fit") and self.train_stream is None:
            stream_args = dict(
                decode=LineDecoder(self.image_height, self.max_width, augment=self.augment, seed=self.seed),
                batch_size=self.batch_size,
                collate=collate_lines,
                shuffle_buffer=self.shuffle_buffer,
                seed=self.seed,
                resampled=self.resampled,
                samples_per_epoch=self.samples_per_epoch,
                drop_last=True,
            )
            if self.bucket_buffer:
                self.train_stream = WidthBucketedStream(self.train_shards, bucket_buffer=self.bucket_buffer, **stream_args)
            else:
                self.train_stream = ShardStream(self.train_shards, **stream_args)
        if stage in (None, "fit", "validate") and self.val_shards is not None and self.val_stream is None:
            self.val_stream = single_pass_stream(
                self.val_shards,
                decode=LineDecoder(self.image_height, self.max_width),
                collate=collate_lines,
                batch_size=self.val_batch_size,
                seed=self.seed,
            )
