"""Sharded sample streams for single-process and DDP training.

A :class:`ShardStream` is one visible pipeline of generator stages, in the style of
webdataset's ``DataPipeline``::

    shards -> read tar samples -> shuffle buffer -> decode (skip bad) -> batch + collate

What it guarantees (see ``/shared/notes/pitfalls.md``):

* Shards are shuffled per epoch with a seed shared by all ranks, then split by rank and
  by DataLoader worker; samples are shuffled with a per-(rank, worker, epoch) seed. So
  ranks see disjoint shards and no two ranks shuffle alike.
* With ``samples_per_epoch`` every rank yields exactly
  ``samples_per_epoch // (world_size * batch_size)`` batches per epoch (cycling over its
  shards, or resampling them), so DDP never waits on a rank that ran out of data, and
  ``len()`` gives Lightning the number of steps.
* A corrupt sample is skipped, logged, and reported in-band: every batch carries
  ``"bad_samples"``, the samples skipped since that worker's previous batch, because
  DataLoader workers are separate processes. A shard that cannot be opened or whose tar
  structure is broken fails the run, naming the shard.

Example:
    >>> stream = ShardStream("data/shard-{000000..000099}.tar", decode=decode, batch_size=64,
    ...                      collate=collate, samples_per_epoch=1_000_000)
    >>> loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=4)
"""

from __future__ import annotations

import glob
import itertools
import logging
import os
import random
import re
import tarfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

log = logging.getLogger(__name__)

# A URL scheme ("s3://", "https://", ...); such shards are streamed, not checked locally.
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_GLOB_CHARS = re.compile(r"[*?\[]")
_SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


class ShardReadError(RuntimeError):
    """A shard could not be opened or its tar structure is broken."""


# --------------------------------------------------------------------------- shard lists


def expand_shards(spec: str | os.PathLike | list[str]) -> list[str]:
    """Expands a shard specification into a list of shard URLs.

    Accepted forms, freely combined:

    * brace patterns: ``data/shard-{000000..000009}.tar`` (via ``braceexpand``);
    * ``::``-separated lists: ``a/shard-000000.tar::b/shard-{000..003}.tar``;
    * globs: ``data/*.tar``;
    * folders: every ``*.tar`` (``.tar.gz``, ``.tgz``) inside, sorted;
    * ``pipe:`` commands and URLs (``s3://``, ``https://``, ...), passed through;
    * a list of any of these.

    Args:
        spec: The specification.

    Returns:
        Shard URLs / paths, in order.

    Raises:
        FileNotFoundError: If a local shard, glob or folder names nothing that exists;
            the message names the missing shard and the spec it came from.
        ValueError: If the specification expands to no shards at all.
    """
    from braceexpand import braceexpand

    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    urls: list[str] = []
    for one in specs:
        one = os.fspath(one)
        for part in one.split("::"):
            part = part.strip()
            if not part:
                continue
            for url in braceexpand(part):
                urls.extend(_resolve_shard(url, one))
    if not urls:
        raise ValueError(f"shard spec {spec!r} expands to no shards")
    return urls


def _resolve_shard(url: str, spec: str) -> list[str]:
    if url.startswith("pipe:") or (_URL_SCHEME.match(url) and not url.startswith("file://")):
        return [url]
    path = re.sub(r"^file://", "", url)
    if _GLOB_CHARS.search(path):
        matches = sorted(glob.glob(path))
        if not matches:
            raise FileNotFoundError(f"no shard matches {path!r} (from shard spec {spec!r})")
        return [m for match in matches for m in _resolve_shard(match, spec)]
    if os.path.isdir(path):
        shards = sorted(
            os.path.join(path, name) for name in os.listdir(path) if name.endswith(_SHARD_SUFFIXES)
        )
        if not shards:
            raise FileNotFoundError(f"folder {path} (from shard spec {spec!r}) contains no .tar shards")
        return shards
    if not os.path.isfile(path):
        raise FileNotFoundError(f"shard {path} does not exist (from shard spec {spec!r})")
    return [path]


# ------------------------------------------------------------------------ reading tars


class _RecordingReader:
    """Wraps a byte stream, remembering its first bytes and the last ``keep`` bytes read.

    Python's tarfile silently ends iteration at an invalid or truncated header that is
    not the first one, which would turn a corrupt shard into a silently shorter one.
    The bytes kept here let :func:`read_tar` check what follows the last member.
    """

    def __init__(self, raw: Any, keep: int = 1 << 16) -> None:
        self.raw = raw
        self.keep = keep
        self.count = 0
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self._pending = raw.read(6)
        self.head = self._pending

    def read(self, size: int = -1) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            if size is None or size < 0:
                data += self.raw.read()
            elif size > len(data):
                data += self.raw.read(size - len(data))
        else:
            data = self.raw.read() if size is None or size < 0 else self.raw.read(size)
        if data:
            self.count += len(data)
            self._tail.append(data)
            self._tail_size += len(data)
            while self._tail_size - len(self._tail[0]) >= self.keep:
                self._tail_size -= len(self._tail.popleft())
        return data

    def last(self, size: int) -> bytes | None:
        """The last ``size`` bytes read, or None if fewer were kept."""
        if size > self._tail_size:
            return None
        return b"".join(self._tail)[self._tail_size - size :] if size else b""

    def close(self) -> None:
        self.raw.close()


def _is_compressed(head: bytes) -> bool:
    return head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"))


def read_tar(url: str) -> Iterator[dict[str, Any]]:
    """Reads one shard and groups its members into samples.

    Members are grouped webdataset-style: consecutive files sharing the part of the name
    before the first ``.`` of the basename form one sample, keyed by that prefix, with
    lower-cased extensions as fields (``{"__key__", "__url__", "jpg", "txt", ...}``).
    A sample with a repeated extension gets an ``"__error__"`` field instead of failing
    the shard; the decode stage reports it as a bad sample.

    Args:
        url: Local path, ``pipe:`` command or URL (opened with webdataset's ``gopen``).

    Yields:
        Raw samples (bytes values).

    Raises:
        ShardReadError: If the shard cannot be opened, is not a tar archive, or is
            truncated or corrupt.
    """
    from webdataset.gopen import gopen
    from webdataset.tariterators import base_plus_ext

    try:
        raw = gopen(url, "rb")
    except Exception as exc:  # gopen raises many types (OSError, ValueError, ...)
        raise ShardReadError(f"cannot open shard {url}: {exc}") from exc
    stream = _RecordingReader(raw)
    compressed = _is_compressed(stream.head)
    current: dict[str, Any] | None = None
    try:
        with tarfile.open(fileobj=stream, mode="r|*" if compressed else "r|") as archive:
            for member in archive:
                if not member.isreg():
                    continue
                name = member.name
                if "/" not in name and name.startswith("__") and name.endswith("__"):
                    continue  # webdataset's archive-level metadata entries
                prefix, suffix = base_plus_ext(name)
                if prefix is None:
                    continue
                extracted = archive.extractfile(member)
                data = extracted.read() if extracted is not None else b""
                # Stream mode keeps every TarInfo otherwise: memory grows with the shard.
                archive.members = []
                suffix = suffix.lower()
                if current is None or current["__key__"] != prefix:
                    if current is not None:
                        yield current
                    current = {"__key__": prefix, "__url__": url}
                if suffix in current:
                    current["__error__"] = f"duplicate member {name!r} in the shard"
                current[suffix] = data
            if not compressed:
                _check_tar_end(stream, archive.offset, url)
        if current is not None:
            yield current
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ShardReadError(f"cannot read shard {url}: {exc} (is it a complete, valid tar file?)") from exc
    finally:
        try:
            stream.close()
        except Exception as exc:  # a pipe: command's exit status is checked at close
            raise ShardReadError(f"shard {url}: closing failed: {exc}") from exc


def _check_tar_end(stream: _RecordingReader, end_offset: int, url: str) -> None:
    """Checks that a tar archive ended with its end-of-archive zero blocks."""
    buffered = stream.last(stream.count - end_offset)
    if buffered is None:
        return  # not enough history kept to check; never the case for tarfile's reads
    trailing_size = len(buffered)
    if any(buffered):
        raise ShardReadError(
            f"shard {url} is corrupt: invalid tar header at byte {end_offset}; "
            "the shard was probably damaged in transfer or written incompletely"
        )
    while True:
        chunk = stream.raw.read(1 << 16)
        if not chunk:
            break
        if any(chunk):
            raise ShardReadError(f"shard {url} is corrupt: unexpected data after the end of the tar archive")
        trailing_size += len(chunk)
    if trailing_size < 512:
        raise ShardReadError(
            f"shard {url} is truncated at byte {end_offset} (no end-of-archive marker); "
            "it was probably written or copied incompletely"
        )


# ------------------------------------------------------------------------------ stages


@dataclass(frozen=True)
class StreamContext:
    """Where an iteration runs: distributed rank, DataLoader worker and epoch."""

    rank: int
    world_size: int
    worker: int
    num_workers: int
    epoch: int


class _SkipReport:
    """Collects skipped samples of one worker until the next batch carries them out."""

    def __init__(self) -> None:
        self.pending: list[dict[str, str]] = []
        self.good = 0
        self.bad = 0
        self.raw = 0

    def skip(self, shard: str, key: str, reason: str) -> None:
        self.bad += 1
        self.pending.append({"shard": shard, "key": key, "reason": reason})
        log.warning("skipping sample %r of shard %s: %s", key, shard, reason)

    def drain(self) -> list[dict[str, str]]:
        drained, self.pending = self.pending, []
        return drained


def read_samples(urls: Iterable[str], report: _SkipReport, epoch: int = 0) -> Iterator[dict[str, Any]]:
    """Stage: shard URLs -> raw samples, tagged with ``__epoch__`` for per-sample seeding."""
    for url in urls:
        for sample in read_tar(url):
            report.raw += 1
            sample["__epoch__"] = epoch
            yield sample


def shuffle_samples(samples: Iterable[dict], buffer_size: int, rng: random.Random) -> Iterator[dict]:
    """Stage: approximate shuffle with a buffer of ``buffer_size`` samples (0: no shuffle)."""
    if buffer_size <= 1:
        yield from samples
        return
    buffer: list[dict] = []
    for sample in samples:
        if len(buffer) < buffer_size:
            buffer.append(sample)
            continue
        index = rng.randrange(len(buffer))
        buffer[index], sample = sample, buffer[index]
        yield sample
    rng.shuffle(buffer)
    yield from buffer


def decode_samples(
    samples: Iterable[dict],
    decode: Callable[[dict], dict],
    report: _SkipReport,
    max_bad_before_first_good: int = 100,
) -> Iterator[dict]:
    """Stage: raw -> decoded samples; a sample whose decode raises is skipped and reported.

    Raises:
        RuntimeError: If the first ``max_bad_before_first_good`` samples all fail: then
            the decode function or the data format is wrong, not a few samples.
    """
    for sample in samples:
        reason = sample.get("__error__")
        if reason is None:
            try:
                decoded = decode(sample)
            except Exception as exc:  # any failure of user decode code on one sample
                reason = f"{type(exc).__name__}: {exc}"
            else:
                report.good += 1
                yield decoded
                continue
        report.skip(sample.get("__url__", "?"), sample.get("__key__", "?"), reason)
        if report.good == 0 and report.bad >= max_bad_before_first_good:
            raise RuntimeError(
                f"the first {report.bad} samples all failed to decode (last: shard {sample.get('__url__')}, "
                f"key {sample.get('__key__')!r}: {reason}); check the decode function and the shards' format"
            )


def batch_samples(
    samples: Iterable[dict],
    batch_size: int,
    collate: Callable[[list[dict]], dict],
    report: _SkipReport,
    drop_last: bool,
) -> Iterator[dict]:
    """Stage: decoded samples -> collated batches with ``"bad_samples"`` attached."""
    batch: list[dict] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == batch_size:
            yield _collate(batch, collate, report)
            batch = []
    if batch and not drop_last:
        yield _collate(batch, collate, report)


def _collate(batch: list[dict], collate: Callable[[list[dict]], dict], report: _SkipReport) -> dict:
    collated = collate(batch)
    if not isinstance(collated, dict):
        raise TypeError(f"collate must return a dict (the stream adds 'bad_samples'), got {type(collated).__name__}")
    collated["bad_samples"] = report.drain()
    return collated


def _shuffled_passes(
    urls: list[str], rng: random.Random, buffer_size: int, report: _SkipReport, epoch: int
) -> Iterator[dict]:
    """Endless passes over ``urls``: shard order reshuffled and samples buffer-shuffled per pass.

    Raises:
        ValueError: If a whole pass finds no sample (the loop would never end).
    """
    while True:
        before = report.raw
        order = list(urls)
        if buffer_size > 0:
            rng.shuffle(order)
        yield from shuffle_samples(read_samples(order, report, epoch), buffer_size, rng)
        if report.raw == before:
            raise ValueError(f"shards {urls} contain no samples; cannot fill an epoch of samples_per_epoch from them")


def _resample(urls: list[str], rng: random.Random) -> Iterator[str]:
    while True:
        yield rng.choice(urls)


# ------------------------------------------------------------------------------ streams


def _distributed(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        found = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        found = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return (found[0] if rank is None else rank), (found[1] if world_size is None else world_size)


class ShardStream(IterableDataset):
    """Batches from webdataset shards, equal-length across DDP ranks when asked.

    Use with ``DataLoader(stream, batch_size=None, num_workers=N)``: the stream batches
    and collates itself. Call :meth:`set_epoch` before each epoch (Lightning does this
    through :class:`EpochLoader`); with ``num_workers > 0`` use
    ``persistent_workers=False`` so workers are re-created with the new epoch.

    Args:
        shards: Shard specification (see :func:`expand_shards`) or list of them.
        decode: Raw sample (``{"__key__", "__url__", ext: bytes}``) -> decoded sample.
            Raising skips the sample and reports the reason.
        batch_size: Samples per batch.
        collate: List of decoded samples -> batch dict.
        shuffle_buffer: Sample shuffle buffer size; 0 disables all shuffling (shards
            and samples), for evaluation.
        seed: Base seed of shard order, sample order and resampling.
        resampled: Draw shards with replacement (per rank and worker) instead of
            splitting them; needs no minimum number of shards.
        samples_per_epoch: Global samples per epoch. Every rank then yields exactly
            ``samples_per_epoch // (world_size * batch_size)`` batches. Without it (and
            not resampled) an epoch is one pass over the shards; resampled without it
            is endless.
        drop_last: Drop the last incomplete batch of a one-pass epoch.
        rank: Distributed rank; None reads it at iteration time from torch.distributed,
            else the ``RANK`` environment variable, else 0.
        world_size: Number of ranks; None reads it like ``rank`` (``WORLD_SIZE``, else 1).
    """

    def __init__(
        self,
        shards: str | list[str],
        *,
        decode: Callable[[dict], dict],
        batch_size: int,
        collate: Callable[[list[dict]], dict],
        shuffle_buffer: int = 1000,
        seed: int = 0,
        resampled: bool = False,
        samples_per_epoch: int | None = None,
        drop_last: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"ShardStream: batch_size must be >= 1, got {batch_size}")
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise ValueError(f"ShardStream: samples_per_epoch must be >= 1 or None, got {samples_per_epoch}")
        self.shards = expand_shards(shards)
        self.decode = decode
        self.batch_size = batch_size
        self.collate = collate
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.resampled = resampled
        self.samples_per_epoch = samples_per_epoch
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def __repr__(self) -> str:
        return (
            f"ShardStream({len(self.shards)} shards, batch_size={self.batch_size}, resampled={self.resampled}, "
            f"samples_per_epoch={self.samples_per_epoch}, epoch={self.epoch})"
        )

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that seeds shard and sample order of the next iteration."""
        self.epoch = int(epoch)

    def set_distributed(self, rank: int, world_size: int) -> None:
        """Fixes rank and world size (e.g. from the Lightning trainer) instead of detecting them."""
        if not 0 <= rank < world_size:
            raise ValueError(f"ShardStream: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.rank, self.world_size = rank, world_size

    def batches_per_rank(self, world_size: int | None = None) -> int:
        """Batches each rank yields per epoch (requires ``samples_per_epoch``)."""
        if self.samples_per_epoch is None:
            raise TypeError("ShardStream has no fixed length without samples_per_epoch")
        world_size = world_size or _distributed(self.rank, self.world_size)[1]
        batches = self.samples_per_epoch // (world_size * self.batch_size)
        if batches < 1:
            raise ValueError(
                f"samples_per_epoch={self.samples_per_epoch} gives no full batch per rank "
                f"(world_size={world_size}, batch_size={self.batch_size}); "
                f"use at least {world_size * self.batch_size}"
            )
        return batches

    def __len__(self) -> int:
        """Batches per epoch on this rank; TypeError when not known in advance."""
        return self.batches_per_rank()

    def context(self) -> StreamContext:
        """The rank, worker and epoch an iteration started now would use."""
        rank, world_size = _distributed(self.rank, self.world_size)
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return StreamContext(rank, world_size, worker, num_workers, self.epoch)

    def worker_quota(self, ctx: StreamContext) -> int:
        """Batches this worker yields per epoch: its share of :meth:`batches_per_rank`."""
        per_rank = self.batches_per_rank(ctx.world_size)
        return per_rank // ctx.num_workers + (1 if ctx.worker < per_rank % ctx.num_workers else 0)

    def worker_shards(self, ctx: StreamContext) -> list[str]:
        """The shards this rank and worker read (not used when resampled).

        Raises:
            ValueError: If there are fewer shards than ranks x workers.
        """
        total = ctx.world_size * ctx.num_workers
        if len(self.shards) < total:
            raise ValueError(
                f"{len(self.shards)} shards cannot be split over {ctx.world_size} ranks x {ctx.num_workers} "
                f"DataLoader workers; write at least {total} shards (smaller max_count), use fewer workers, "
                "or use resampled=True with samples_per_epoch"
            )
        order = list(self.shards)
        if self.shuffle_buffer > 0:
            # Same seed on every rank, so the split below is a partition of the shards.
            random.Random(f"shards:{self.seed}:{ctx.epoch}").shuffle(order)
        return order[ctx.rank :: ctx.world_size][ctx.worker :: ctx.num_workers]

    def iter_batches(self, ctx: StreamContext, *, endless: bool = False) -> Iterator[dict]:
        """The pipeline for one rank/worker/epoch.

        Args:
            ctx: Where it runs (see :meth:`context`).
            endless: Keep cycling or resampling shards past the epoch's quota (used by
                :class:`MixedStream`, which sets its own length).

        Yields:
            Batch dicts, each with ``"bad_samples"``.
        """
        report = _SkipReport()
        return self.batch_stage(self.decoded_samples(ctx, report, endless=endless), ctx, report, endless=endless)

    def decoded_samples(self, ctx: StreamContext, report: "_SkipReport", *, endless: bool = False) -> Iterator[dict]:
        """Stages up to decoding: shards -> read -> shuffle buffer -> decode (skips go to ``report``)."""
        rng = random.Random(f"samples:{self.seed}:{ctx.epoch}:{ctx.rank}:{ctx.worker}")
        repeat = endless or self.samples_per_epoch is not None
        if self.resampled:
            samples = shuffle_samples(read_samples(_resample(self.shards, rng), report, ctx.epoch), self.shuffle_buffer, rng)
        elif repeat:
            # Shuffle within each pass and drain the buffer at its end, so an epoch of
            # samples_per_epoch == dataset size shows every sample exactly once.
            samples = _shuffled_passes(self.worker_shards(ctx), rng, self.shuffle_buffer, report, ctx.epoch)
        else:
            samples = shuffle_samples(read_samples(self.worker_shards(ctx), report, ctx.epoch), self.shuffle_buffer, rng)
        if self.resampled and not repeat:
            log.info("ShardStream: resampled without samples_per_epoch is endless; limit steps in the trainer")
        return decode_samples(samples, self.decode, report)

    def batch_stage(
        self, samples: Iterator[dict], ctx: StreamContext, report: "_SkipReport", *, endless: bool = False
    ) -> Iterator[dict]:
        """The batching stage: decoded samples -> batches, cut to the worker's quota.

        Subclasses override it to form batches differently (e.g. duration bucketing).
        """
        batches = batch_samples(samples, self.batch_size, self.collate, report, self.drop_last)
        if self.samples_per_epoch is not None and not endless:
            batches = itertools.islice(batches, self.worker_quota(ctx))
        return batches

    def __iter__(self) -> Iterator[dict]:
        return self.iter_batches(self.context())


class MixedStream(IterableDataset):
    """Weighted mixture of several :class:`ShardStream` sources, batch by batch.

    Each batch comes from one source, chosen at random with probability proportional
    to its weight (so one collate per source is fine). Every source needs
    ``samples_per_epoch``; the mixture yields ``sum(len(s) for s in streams)`` batches
    per rank per epoch, exactly, and sources cycle past their own epoch when drawn
    more often.

    Args:
        streams: The sources.
        weights: Non-negative sampling weights, one per stream, not all zero.
        seed: Seed of the source choice (combined with epoch, rank and worker).
    """

    def __init__(self, streams: list[ShardStream], weights: list[float], seed: int = 0) -> None:
        super().__init__()
        if not streams:
            raise ValueError("MixedStream needs at least one stream")
        if len(weights) != len(streams):
            raise ValueError(f"MixedStream: {len(weights)} weights for {len(streams)} streams; give one weight per stream")
        if any(not (w >= 0) or w == float("inf") for w in weights) or sum(weights) <= 0:
            raise ValueError(f"MixedStream: weights must be finite, >= 0 and not all zero, got {weights}")
        for index, stream in enumerate(streams):
            if stream.samples_per_epoch is None:
                raise ValueError(
                    f"MixedStream: stream {index} ({stream.shards[0]}, ...) has no samples_per_epoch; "
                    "every source needs one so all ranks yield the same number of batches"
                )
        self.streams = list(streams)
        self.weights = [float(w) for w in weights]
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch here and on every source."""
        self.epoch = int(epoch)
        for stream in self.streams:
            stream.set_epoch(epoch)

    def set_distributed(self, rank: int, world_size: int) -> None:
        """Fixes rank and world size on every source."""
        for stream in self.streams:
            stream.set_distributed(rank, world_size)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return sum(len(stream) for stream in self.streams)

    def __iter__(self) -> Iterator[dict]:
        contexts = [stream.context() for stream in self.streams]
        sources = [stream.iter_batches(ctx, endless=True) for stream, ctx in zip(self.streams, contexts)]
        quota = sum(stream.worker_quota(ctx) for stream, ctx in zip(self.streams, contexts))
        ctx = contexts[0]
        rng = random.Random(f"mix:{self.seed}:{self.epoch}:{ctx.rank}:{ctx.worker}")
        choices = rng.choices(range(len(sources)), weights=self.weights, k=quota)
        for index in choices:
            yield next(sources[index])


class EpochLoader(torch.utils.data.DataLoader):
    """A DataLoader that passes Lightning's per-epoch ``set_epoch`` on to its stream.

    Lightning calls ``set_epoch`` on ``dataloader.sampler`` at the start of every epoch,
    but an IterableDataset's DataLoader only has a placeholder sampler, so the epoch
    would never reach the stream. This loader swaps in a forwarding placeholder.
    ``batch_size`` is None (the stream batches) and ``persistent_workers`` is False so
    workers are re-created, with the new epoch, every epoch.

    Args:
        dataset: A :class:`ShardStream` or :class:`MixedStream`.
        **kwargs: Other DataLoader arguments (``num_workers``, ``pin_memory``, ...).
    """

    def __init__(self, dataset: ShardStream | MixedStream, **kwargs: Any) -> None:
        kwargs.setdefault("batch_size", None)
        # The stream's batches are final; DataLoader's default_convert would walk every
        # nested field (meta dicts) of every batch for nothing.
        kwargs.setdefault("collate_fn", _identity)
        if kwargs.get("num_workers", 0) > 0:
            # Each worker tokenises its own batches; Rust-side thread pools inside every
            # forked worker oversubscribe the cores (measured: 2 workers ran 30 % slower
            # once the parent had used the tokenizer). A user's explicit setting wins.
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        kwargs["persistent_workers"] = False
        super().__init__(dataset, **kwargs)
        # DataLoader forbids reassigning `sampler` after __init__; the forwarder iterates
        # exactly like the placeholder it wraps.
        object.__setattr__(self, "sampler", _EpochForwardingSampler(self.sampler, dataset))


def _identity(batch: Any) -> Any:
    return batch


class _EpochForwardingSampler:
    def __init__(self, sampler: Any, dataset: Any) -> None:
        self.sampler = sampler
        self.dataset = dataset

    def __iter__(self) -> Iterator[Any]:
        return iter(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


# ------------------------------------------------------------------ DataModule building blocks
# Shared by every task's DataModule (image-text, parallel text, speech): functions rather
# than a base class, so each DataModule stays readable on its own.


def weighted_train_stream(
    sources: list,
    weights: list[float] | None,
    *,
    make_decoder: Callable[[], Callable[[dict], dict]],
    collate: Callable[[list[dict]], dict],
    batch_size: int,
    shuffle_buffer: int,
    seed: int,
    resampled: bool,
    samples_per_epoch: int | None,
) -> ShardStream | MixedStream:
    """One training stream per source, mixed by weight when there are several.

    Each source gets its share of ``samples_per_epoch``, so the mixture's length (the
    sum) is ``samples_per_epoch`` and its proportions follow the weights.
    """
    weights = weights or [1.0] * len(sources)
    if len(weights) != len(sources):
        raise ValueError(f"train_weights has {len(weights)} entries for {len(sources)} train_shards sources")
    streams = []
    for spec, weight in zip(sources, weights):
        samples = samples_per_epoch
        if samples is not None and len(sources) > 1:
            samples = max(batch_size, round(samples_per_epoch * weight / sum(weights)))
        streams.append(
            ShardStream(
                spec,
                decode=make_decoder(),
                batch_size=batch_size,
                collate=collate,
                shuffle_buffer=shuffle_buffer,
                seed=seed,
                resampled=resampled,
                samples_per_epoch=samples,
                drop_last=True,
            )
        )
    return streams[0] if len(streams) == 1 else MixedStream(streams, weights, seed=seed)


def single_pass_stream(shards, *, decode, collate, batch_size: int, seed: int) -> ShardStream:
    """An ordered, complete pass (validation/evaluation): no shuffle, last batch kept."""
    return ShardStream(
        shards, decode=decode, batch_size=batch_size, collate=collate, shuffle_buffer=0, seed=seed, drop_last=False
    )


def _set_distributed(stream, trainer) -> None:
    if trainer is not None:  # outside Lightning the stream reads torch.distributed / env itself
        stream.set_distributed(trainer.global_rank, trainer.world_size)


def train_loader(
    stream, trainer, *, num_workers: int, samples_per_epoch: int | None, resampled: bool, owner: str
) -> EpochLoader:
    """One rank's training batches; the epoch is set here and by Lightning each epoch."""
    _set_distributed(stream, trainer)
    if trainer is not None:
        # Lightning creates the first iterator before its set_epoch call, and when
        # resuming that iterator is used for the restored epoch: set it now.
        stream.set_epoch(trainer.current_epoch)
        if trainer.world_size > 1 and samples_per_epoch is None and not resampled:
            raise ValueError(
                f"{owner}: training on {trainer.world_size} ranks needs samples_per_epoch "
                "(or resampled=True) so that every rank yields the same number of batches"
            )
    return EpochLoader(stream, num_workers=num_workers, pin_memory=torch.cuda.is_available())


def val_loader(stream, trainer, *, num_workers: int) -> EpochLoader:
    """One pass over validation shards; fewer workers when there are fewer shards than workers."""
    _set_distributed(stream, trainer)
    world_size = trainer.world_size if trainer is not None else 1
    # A one-pass stream needs a shard per worker.
    workers = min(num_workers, len(stream.shards) // world_size)
    return EpochLoader(stream, num_workers=workers, pin_memory=torch.cuda.is_available())


class StreamLoaders:
    """``train_dataloader`` / ``val_dataloader`` of a LightningDataModule built on streams.

    Mixed into the DataModules that keep ``train_stream`` / ``val_stream`` (made in
    ``setup``), ``val_shards``, ``num_workers``, ``samples_per_epoch`` and ``resampled``.
    """

    def train_dataloader(self) -> EpochLoader:
        """One rank's training batches; the epoch is set here and by Lightning each epoch."""
        if self.train_stream is None:
            self.setup("fit")
        return train_loader(
            self.train_stream, self.trainer, num_workers=self.num_workers, samples_per_epoch=self.samples_per_epoch,
            resampled=self.resampled, owner=type(self).__name__,
        )

    def val_dataloader(self) -> EpochLoader | list:
        """One pass over the validation shards (empty when there are none)."""
        if self.val_shards is None:
            return []
        if self.val_stream is None:
            self.setup("validate")
        return val_loader(self.val_stream, self.trainer, num_workers=self.num_workers)
