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
        bucket_buffer: 512          # sort 16 batches' worth of clips by duration

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

Duration bucketing (``bucket_buffer``, training only): without it batches take clips in
shuffle-buffer order, so each is padded to its longest clip and padding grows with the
spread of clip lengths. With it, :class:`DurationBucketedStream` fills a buffer of
``bucket_buffer`` decoded clips (after the shuffle buffer), sorts it by length, cuts it
into batches of ``batch_size`` and yields those in random order (the sort-and-cut
bucketing of ESPnet/NeMo/lhotse, over a buffer rather than the whole corpus). Batches
keep a fixed size, so the pipeline's guarantees hold unchanged: with
``samples_per_epoch`` every rank yields the same number of batches, an epoch reads
exactly the clips the unbucketed stream would (the last buffer of an epoch takes only
what the remaining batches need), skipped samples still ride in ``bad_samples``, and
the order is fixed by seed, epoch, rank and worker. It costs memory for the buffer's
waveforms (512 clips of 3 s: about 100 MB per DataLoader worker) and a sort per
buffer. :func:`~babeltower.modalities.audio.bucket_by_duration` packs to a
padded-seconds budget instead, with a data-dependent number of batches; that would
break equal batch counts across ranks, so it is not used here.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import lightning as L
import torch

from babeltower.datasets.pipeline import (
    POSITION_KEY,
    REPORT_ONLY_KEY,
    ShardStream,
    StreamContext,
    StreamLoaders,
    _collate,
    _SkipReport,
    eval_stream,
    sample_text,
    single_pass_stream,
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
        min_peak: Quieter clips are rejected as silent (skipped); None keeps them (a test
            set's silence is scored, not dropped).
    """

    def __init__(self, sample_rate: int = 16000, max_seconds: float | None = 20.0, min_peak: float | None = 1e-4) -> None:
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.min_peak = min_peak

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        key = sample["__key__"]
        where = f"{sample.get('__url__', '?')}/{key}"
        audio_key = next((k for k in AUDIO_KEYS if k in sample), None)
        if audio_key is None:
            fields = sorted(k for k in sample if not k.startswith("__"))
            raise KeyError(f"no audio member ({'/'.join(AUDIO_KEYS)}) in sample; it has {fields}")
        text, meta = sample_text(sample, "transcript")
        lang = meta.get("lang")
        if not isinstance(lang, str) or not lang:
            raise KeyError(f"{where}.json has no 'lang' field (a language code such as \"de\")")
        waveform = load_audio(
            sample[audio_key],
            target_rate=self.sample_rate,
            where=f"{where}.{audio_key}",
            min_peak=self.min_peak,
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
    batch = collate_clips(samples)  # waveforms, audio_lengths, text, lang, key, meta
    token_ids = tokenizer(batch["text"], add_special_tokens=False, truncation=True, max_length=max_text_length)["input_ids"]
    label_lengths = torch.tensor([len(ids) for ids in token_ids], dtype=torch.long)  # (B,)
    labels = torch.full((len(samples), max(1, int(label_lengths.max()))), LABEL_PAD, dtype=torch.long)  # (B, L)
    for row, ids in enumerate(token_ids):
        labels[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return {**batch, "labels": labels, "label_lengths": label_lengths}


class SpeechCollator:
    """Picklable :func:`collate_speech` bound to a tokenizer and a maximum length."""

    def __init__(self, tokenizer: Any, max_text_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_text_length = max_text_length

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_speech(samples, self.tokenizer, self.max_text_length)


def collate_clips(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Pads decoded clips into a batch without tokenizing (evaluation: the model decodes).

    Returns:
        ``waveforms`` (B, N) zero-padded, ``audio_lengths`` (B,) long, and the ``text``,
        ``lang``, ``key``, ``meta`` lists.
    """
    if not samples:
        raise ValueError("collate_clips: got an empty list of samples")
    audio_lengths = torch.tensor([s["waveform"].shape[0] for s in samples], dtype=torch.long)  # (B,)
    waveforms = torch.zeros(len(samples), int(audio_lengths.max()))  # (B, N)
    for row, sample in enumerate(samples):
        waveforms[row, : sample["waveform"].shape[0]] = sample["waveform"]
    return {
        "waveforms": waveforms,
        "audio_lengths": audio_lengths,
        **{name: [s[name] for s in samples] for name in ("text", "lang", "key", "meta")},
    }


def speech_eval_batches(
    shards: str | list[str], *, sample_rate: int = 16000, max_seconds: float | None = 30.0, batch_size: int = 16
) -> ShardStream:
    """A speech test set, whole and in shard order, as batches for an evaluator.

    Read and checked as training clips are (:class:`SpeechDecoder`: audio, transcript,
    ``lang``, duration), through :func:`~babeltower.datasets.pipeline.eval_stream`: a bad
    clip is skipped, logged and listed in a batch's ``bad_samples``. Silent clips are kept.

    Args:
        shards: Shard specification (folder, brace pattern, glob, list).
        sample_rate: Waveform rate in Hz (the model's).
        max_seconds: Longer clips are skipped (None: no limit).
        batch_size: Clips per batch.

    Returns:
        A stream of :func:`collate_clips` batches plus ``bad_samples``.
    """
    decode = SpeechDecoder(sample_rate, max_seconds, min_peak=None)
    return eval_stream(shards, decode=decode, collate=collate_clips, batch_size=batch_size)


def bucket_samples(
    samples: Iterable[dict],
    *,
    batch_size: int,
    buffer_batches: int,
    collate: Callable[[list[dict]], dict],
    report: _SkipReport,
    rng: random.Random | Callable[[int], random.Random],
    drop_last: bool,
    max_batches: int | None = None,
    length: Callable[[dict], int] | None = None,
    resume: dict | None = None,
) -> Iterator[dict]:
    """Stage: decoded clips -> batches of similar duration (sort-and-cut over a buffer).

    Takes ``buffer_batches * batch_size`` clips, sorts them by waveform length (stable,
    so equal lengths keep their shuffled order), cuts them into batches of
    ``batch_size`` and yields those in an order shuffled with ``rng``; then the next
    buffer. Clips skipped while a buffer fills are reported by its first batch; those
    skipped after the last batch (in a buffer that ``drop_last`` drops) by the last batch.

    Args:
        samples: Decoded samples with a ``"waveform"`` (N,) tensor.
        batch_size: Samples per batch.
        buffer_batches: Batches' worth of clips sorted together (>= 1).
        collate: List of samples -> batch dict.
        report: The stream's skip report, drained into each batch's ``bad_samples``.
        rng: Orders the batches of each buffer: a generator, or a function of the
            buffer's index returning one (what an exact resume needs).
        drop_last: Drop a final incomplete batch (one-pass epochs). The clips dropped
            are the last to arrive, as without bucketing, not the longest.
        max_batches: Stop after this many batches; the last buffer then takes only the
            clips those batches need, so exactly ``max_batches * batch_size`` are read.
        length: Sample -> the size to sort by; None: the waveform's length (other
            modalities pass theirs, e.g. a line image's width).
        resume: A saved position (``{"buffer", "skip"}``; the samples before the buffer
            were skipped upstream): the buffer is rebuilt and its first ``skip``
            batches, trained before the interruption, are dropped.

    Yields:
        Batch dicts, each with ``"bad_samples"`` and the reader's position.
    """
    if batch_size < 1 or buffer_batches < 1:
        raise ValueError(
            f"bucket_samples: need batch_size >= 1 and buffer_batches >= 1, got {batch_size} and {buffer_batches}"
        )
    rng_for = (lambda index: rng) if isinstance(rng, random.Random) else rng
    samples = iter(samples)
    produced = 0
    buffer_index = int(resume.get("buffer", 0)) if resume else 0
    skip = int(resume.get("skip", 0)) if resume else 0
    held: dict | None = None
    while max_batches is None or produced < max_batches:
        start_samples, start_batches = report.consumed, report.batches
        room = buffer_batches if max_batches is None else min(buffer_batches, max_batches - produced)
        buffer = list(itertools.islice(samples, room * batch_size))
        ran_out = len(buffer) < room * batch_size
        if drop_last:
            del buffer[len(buffer) - len(buffer) % batch_size :]
        if not buffer:
            break
        buffer.sort(key=length or (lambda sample: sample["waveform"].shape[0]))
        batches = [buffer[start : start + batch_size] for start in range(0, len(buffer), batch_size)]
        rng_for(buffer_index).shuffle(batches)
        produced += skip  # trained before the interruption
        if skip:
            report.drain()  # already reported with this buffer's first batch, before the interruption
        for number in range(skip, len(batches)):
            collated = _collate(batches[number], collate, report)
            collated[POSITION_KEY] = {
                "samples": start_samples, "batches": start_batches, "buffer": buffer_index, "skip": number + 1
            }
            if held is not None:
                yield held
            held = collated
            produced += 1
            if max_batches is not None and produced >= max_batches:
                break
        report.batches = start_batches + len(batches)
        buffer_index += 1
        skip = 0
        if ran_out:
            break  # the source ran out: a one-pass epoch is over
    if held is not None:
        held["bad_samples"].extend(report.drain())
        if held[POSITION_KEY]["skip"] == report.batches - held[POSITION_KEY]["batches"]:
            # the held batch ends its buffer: the position moves past everything read
            held[POSITION_KEY] = {"samples": report.consumed, "batches": report.batches, "buffer": buffer_index, "skip": 0}
        yield held
    elif report.pending and report.report_only:
        yield {REPORT_ONLY_KEY: True, "bad_samples": report.drain()}


class DurationBucketedStream(ShardStream):
    """A :class:`~babeltower.datasets.pipeline.ShardStream` whose batches group clips of similar duration.

    The pipeline is ShardStream's up to decoding (same shards, same sample order for a
    given seed, epoch, rank and worker); the batching stage is :func:`bucket_samples`
    instead of taking clips in arrival order::

        shards -> read -> shuffle buffer -> decode (skip bad) -> bucket buffer: sort, cut, shuffle batches

    Args:
        shards: Shard specification, as for ShardStream.
        bucket_buffer: Clips sorted together; rounded down to whole batches, at least
            two batches' worth.
        **kwargs: ShardStream's other arguments (``decode``, ``batch_size``, ``collate``,
            ``samples_per_epoch``, ...).
    """

    #: Sample -> size to bucket by (None: waveform length); subclasses for other modalities set it.
    sample_length: Callable[[dict], int] | None = None

    def __init__(self, shards: str | list[str], *, bucket_buffer: int, **kwargs: Any) -> None:
        super().__init__(shards, **kwargs)
        if bucket_buffer < 2 * self.batch_size:
            raise ValueError(
                f"bucket_buffer={bucket_buffer} holds fewer than two batches of batch_size={self.batch_size}, "
                f"so there is nothing to group; use at least {2 * self.batch_size} (e.g. {16 * self.batch_size}), "
                "or 0 to turn bucketing off"
            )
        self.bucket_buffer = bucket_buffer

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", bucket_buffer={self.bucket_buffer})"

    def batch_stage(self, samples: Iterator[dict], ctx: StreamContext, report: _SkipReport, *, endless: bool = False):
        """Bucketed batching over ShardStream's decoded samples (the same clips an epoch reads)."""
        return bucket_samples(
            samples,
            batch_size=self.batch_size,
            buffer_batches=self.bucket_buffer // self.batch_size,
            collate=self.collate,
            report=report,
            # One generator per buffer, so a resumed run orders a rebuilt buffer alike.
            rng=lambda index: random.Random(f"buckets:{ctx.seed}:{ctx.epoch}:{ctx.rank}:{ctx.worker}:{index}"),
            drop_last=self.drop_last,
            max_batches=self.worker_quota(ctx) - report.batches
            if self.samples_per_epoch is not None and not endless else None,
            length=self.sample_length,
            resume=report.resume,
        )


class SpeechDataModule(StreamLoaders, L.LightningDataModule):
    """Speech clips and transcripts from webdataset shards, for CTC training.

    Args:
        train_shards: Training shards (see ``expand_shards``), read as one source.
        val_shards: Validation shards; one pass, no shuffling, last batch kept.
        tokenizer: Tokenizer folder (the ASR model's; ``babeltower fit`` sets it from
            the model section, as ``vocab_size``); None: the packaged default.
        vocab_size: The ASR model's CTC vocabulary size (``ASRConfig.vocab_size``); below
            the tokenizer's size, transcripts are tokenized with its first ``vocab_size``
            tokens only (``truncate_bpe_tokenizer``). 0: the whole tokenizer.
        batch_size: Training batch size per rank.
        val_batch_size: Validation batch size per rank (default ``batch_size``).
        num_workers: DataLoader worker processes per rank.
        samples_per_epoch: Global training samples per epoch (needed for multi-GPU
            training: every rank then yields the same number of batches).
        resampled: Draw training shards with replacement.
        shuffle_buffer: Training sample shuffle buffer size.
        seed: Seed of shard and sample order; None (default) follows the run's
            ``seed_everything``.
        sample_rate: Waveform rate in Hz.
        max_seconds: Clips longer than this are skipped (and reported).
        max_text_length: Transcripts are truncated to this many tokens.
        bucket_buffer: Duration bucketing of training batches: clips sorted by length
            together (see the module docstring; at least ``2 * batch_size``, e.g.
            ``16 * batch_size``). 0: off, batches in shuffle-buffer order.
    """

    def __init__(
        self,
        train_shards: str | list[str],
        val_shards: str | list[str] | None = None,
        tokenizer: str | None = None,
        vocab_size: int = 0,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        samples_per_epoch: int | None = None,
        resampled: bool = False,
        shuffle_buffer: int = 500,
        seed: int | None = None,
        sample_rate: int = 16000,
        max_seconds: float = 20.0,
        max_text_length: int = 256,
        bucket_buffer: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_shards = train_shards
        self.val_shards = val_shards
        self.tokenizer_path = tokenizer
        if vocab_size < 0:
            raise ValueError(f"SpeechDataModule: vocab_size must be >= 0 (0: the whole tokenizer), got {vocab_size}")
        self.vocab_size = vocab_size
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
        self.bucket_buffer = bucket_buffer
        if bucket_buffer and bucket_buffer < 2 * batch_size:
            raise ValueError(
                f"SpeechDataModule: bucket_buffer={bucket_buffer} holds fewer than two batches of "
                f"batch_size={batch_size}; "
                f"use 0 (off) or at least {2 * batch_size} (e.g. {16 * batch_size})"
            )
        self.tokenizer: Any = None
        self.train_stream: ShardStream | None = None
        self.val_stream: ShardStream | None = None

    def setup(self, stage: str | None = None) -> None:
        """Loads the tokenizer and builds the streams (shard lists are checked here)."""
        if self.tokenizer is None:
            from babeltower.modalities import text

            self.tokenizer = text.load_tokenizer_or_default(self.tokenizer_path)
            if self.vocab_size:
                name = f"SpeechDataModule vocab_size={self.vocab_size}, tokenizer {self.tokenizer_path or 'the packaged default'}"
                self.tokenizer = text.truncate_bpe_tokenizer(self.tokenizer, self.vocab_size, name)
        collate = SpeechCollator(self.tokenizer, self.max_text_length)
        decoder = SpeechDecoder(self.sample_rate, self.max_seconds)
        if stage in (None, "fit") and self.train_stream is None:
            stream_args = dict(
                decode=decoder,
                batch_size=self.batch_size,
                collate=collate,
                shuffle_buffer=self.shuffle_buffer,
                seed=self.seed,
                resampled=self.resampled,
                samples_per_epoch=self.samples_per_epoch,
                drop_last=True,
            )
            if self.bucket_buffer:
                self.train_stream = DurationBucketedStream(
                    self.train_shards, bucket_buffer=self.bucket_buffer, **stream_args
                )
            else:
                self.train_stream = ShardStream(self.train_shards, **stream_args)
        if stage in (None, "fit", "validate") and self.val_shards is not None and self.val_stream is None:
            self.val_stream = single_pass_stream(
                self.val_shards,
                decode=decoder,
                collate=collate,
                batch_size=self.val_batch_size,
                seed=self.seed,
            )
