"""Lightning DataModule for multilingual VQA shards (written by ``babeltower data synth vqa``).

A shard sample is one scene: ``png`` and ``json`` with ``questions`` (see
:func:`babeltower.datasets.synthetic.vqa.scene_questions`). Training draws, per sample
and epoch, one question, one of ``languages`` and one of that question's phrasings, so
every epoch shows new question-language pairs for the same images. Validation takes
one deterministic (question, language) per scene, cycling through both by scene index;
the full evaluation over every question and language reads the shards with
:func:`babeltower.datasets.vqa_testsets.iter_vqa_items` and scores with
:mod:`babeltower.eval.vqa`.

YAML (LightningCLI)::

    data:
      class_path: babeltower.datasets.vqa.VQADataModule
      init_args:
        train_shards: runs/vqa/data/train
        val_shards: runs/vqa/data/val
        batch_size: 64
        samples_per_epoch: 20000

(``tokenizer`` and ``image_size`` come from the model section under ``babeltower fit``.)

Batches are dicts::

    pixel_values    (B_img, 3, H, W) float32   one per scene
    image_index     (B,) long       which image each question is about
    input_ids       (B, T) long     the questions, padded to the longest
    attention_mask  (B, T) long
    lang, question, answer, qtype, form, answer_key   list[str]
    answers         list[list[str]]  the 10 normalised annotator answers
    options         list[list[str]]  4 multiple-choice options;  label  list[int]
    key             list[str];  bad_samples  list[dict]
"""

from __future__ import annotations

import random
import zlib
from typing import Any

import lightning as L
import torch

from babeltower.datasets.pipeline import (
    MixedStream,
    ShardStream,
    StreamLoaders,
    single_pass_stream,
    weighted_train_stream,
)
from babeltower.datasets.vqa_testsets import decode_sample_image, parse_vqa_meta, question_item
from babeltower.modalities.image import ImageTransform


class VQADecoder:
    """Raw shard sample -> one decoded (image, question, language) item.

    Args:
        image_size: Output image side.
        train: Random question, language and phrasing per sample and epoch, and image
            jitter; otherwise a deterministic choice per scene and no jitter.
        languages: Question languages to draw from (None: every language in the sample).
        question_types: Restrict to these types (None: all).
        seed: Seed of the random choices, combined with sample key and epoch.
        questions_per_image: Training draws this many different questions of the scene
            (each in its own random language), sharing one image encoding: VQAv2 has
            ~5 questions per image, and several attributes per image teach the vision
            tower more per forward pass. Validation always takes one.
    """

    def __init__(
        self,
        image_size: int,
        *,
        train: bool,
        languages: list[str] | None = None,
        question_types: list[str] | None = None,
        seed: int = 0,
        questions_per_image: int = 1,
    ) -> None:
        if questions_per_image < 1:
            raise ValueError(f"VQADecoder: questions_per_image must be >= 1, got {questions_per_image}")
        self.transform = ImageTransform(image_size, train=train)
        self.train = train
        self.languages = list(languages) if languages else None
        self.question_types = set(question_types) if question_types else None
        self.seed = seed
        self.questions_per_image = questions_per_image

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        key = sample["__key__"]
        where = f"{sample.get('__url__', '?')}/{key}"
        meta = parse_vqa_meta(sample, where)
        questions = [q for q in meta["questions"] if self.question_types is None or q["type"] in self.question_types]
        if not questions:
            raise ValueError(f"{where}: no question of types {sorted(self.question_types or [])}")
        rng = random.Random(f"{self.seed}:{sample.get('__epoch__', 0)}:{key}")
        if self.train:
            chosen = rng.sample(questions, min(self.questions_per_image, len(questions)))
            items = [self._train_item(question, rng, where) for question in chosen]
        else:
            index = zlib.crc32(key.encode("utf-8"))
            question = questions[index % len(questions)]
            langs = self._languages(question, where)
            lang = langs[(index // len(questions)) % len(langs)]
            items = [question_item(question, lang, question["texts"][lang])]
        image = decode_sample_image(sample, where)
        return {"pixel_values": self.transform(image, rng=rng), "key": key, "items": items}

    def _languages(self, question: dict[str, Any], where: str) -> list[str]:
        langs = [lang for lang in (self.languages or sorted(question["texts"])) if lang in question["texts"]]
        if not langs:
            raise ValueError(f"{where}: no question in languages {self.languages}")
        return langs

    def _train_item(self, question: dict[str, Any], rng: random.Random, where: str) -> dict[str, Any]:
        lang = rng.choice(self._languages(question, where))
        return question_item(question, lang, rng.choice(question["paraphrases"][lang]))


class VQACollator:
    """Stacks decoded items and tokenises the questions (picklable for DataLoader workers)."""

    def __init__(self, tokenizer: Any, max_text_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_text_length = max_text_length

    def __call__(self, scenes: list[dict[str, Any]]) -> dict[str, Any]:
        if not scenes:
            raise ValueError("VQACollator: got an empty list of samples")
        items, image_index = [], []
        for i, scene in enumerate(scenes):
            for item in scene["items"]:
                items.append({**item, "key": scene["key"]})
                image_index.append(i)
        tokens = self.tokenizer(
            [item["question"] for item in items], padding="longest", truncation=True,
            max_length=self.max_text_length, return_tensors="pt",
        )
        batch: dict[str, Any] = {
            "pixel_values": torch.stack([scene["pixel_values"] for scene in scenes]),  # (B_img, 3, H, W)
            "image_index": torch.tensor(image_index, dtype=torch.long),  # (B,) item -> its image
            "input_ids": tokens["input_ids"].long(),  # (B, T)
            "attention_mask": tokens["attention_mask"].long(),  # (B, T)
        }
        for name in ("key", "question", "lang", "answer", "answers", "options", "label", "qtype", "form", "qid", "answer_key"):
            batch[name] = [item[name] for item in items]
        return batch


class VQADataModule(StreamLoaders, L.LightningDataModule):
    """Multilingual VQA scenes from webdataset shards.

    Args:
        train_shards: Training shards (folder, brace pattern, list of specs to mix).
        val_shards: Validation shards (held-out colour-shape pairs); one ordered pass.
        tokenizer: Tokenizer folder; None uses the packaged default. Must be the text
            encoder's: ``babeltower fit`` sets it from the model section (and the system
            checks at fit start).
        train_weights: Mixing weights, one per entry of ``train_shards``.
        image_size: Image side in pixels (``babeltower fit`` sets it to the vision tower's).
        batch_size: Training batch size per rank.
        val_batch_size: Validation batch size per rank (default ``batch_size``).
        num_workers: DataLoader workers per rank.
        samples_per_epoch: Global training samples per epoch (needed for several
            ranks or mixed sources; a sample is one scene with one drawn question).
        resampled: Draw training shards with replacement.
        shuffle_buffer: Training sample shuffle buffer.
        seed: Seed of shard order, sample order, jitter and question draws.
        max_text_length: Questions are truncated to this many tokens.
        languages: Question languages (None: all in the shards).
        question_types: Question types to train and validate on (None: all five).
        questions_per_image: Questions drawn per training scene (see :class:`VQADecoder`);
            a training batch then holds ``batch_size`` images and
            ``batch_size * questions_per_image`` questions.
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
        seed: int = 0,
        max_text_length: int = 64,
        languages: list[str] | None = None,
        question_types: list[str] | None = None,
        questions_per_image: int = 1,
    ) -> None:
        super().__init__()
        sources = [train_shards] if isinstance(train_shards, str) else list(train_shards)
        if not sources:
            raise ValueError("VQADataModule.train_shards is empty; give a shard spec or a list of them")
        if len(sources) > 1 and samples_per_epoch is None:
            raise ValueError(f"VQADataModule: mixing {len(sources)} train_shards sources needs samples_per_epoch")
        if question_types:
            from babeltower.datasets.synthetic.vqa import QUESTION_TYPES

            unknown = sorted(set(question_types) - set(QUESTION_TYPES))
            if unknown:
                raise ValueError(f"VQADataModule.question_types: unknown {unknown}; expected some of {list(QUESTION_TYPES)}")
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
        self.languages = languages
        self.question_types = question_types
        self.questions_per_image = questions_per_image
        self.tokenizer: Any = None
        self.train_stream: ShardStream | MixedStream | None = None
        self.val_stream: ShardStream | None = None

    def setup(self, stage: str | None = None) -> None:
        """Loads the tokenizer and builds the streams."""
        if self.tokenizer is None:
            from babeltower.modalities import text

            self.tokenizer = text.load_tokenizer_or_default(self.tokenizer_path)
        collate = VQACollator(self.tokenizer, self.max_text_length)
        if stage in (None, "fit") and self.train_stream is None:
            self.train_stream = weighted_train_stream(
                self.train_sources, self.train_weights,
                make_decoder=lambda: VQADecoder(self.image_size, train=True, languages=self.languages,
                                                question_types=self.question_types, seed=self.seed,
                                                questions_per_image=self.questions_per_image),
                collate=collate, batch_size=self.batch_size, shuffle_buffer=self.shuffle_buffer, seed=self.seed,
                resampled=self.resampled, samples_per_epoch=self.samples_per_epoch,
            )
        if stage in (None, "fit", "validate") and self.val_shards is not None and self.val_stream is None:
            self.val_stream = single_pass_stream(
                self.val_shards,
                decode=VQADecoder(self.image_size, train=False, languages=self.languages,
                                  question_types=self.question_types, seed=self.seed),
                collate=collate, batch_size=self.val_batch_size, seed=self.seed,
            )
