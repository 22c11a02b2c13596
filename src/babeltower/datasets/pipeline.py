"""Sharded sample streams for single-process and DDP training, with exact mid-epoch resume.

A :class:`ShardStream` is one visible pipeline of generator stages, in the style of
webdataset's ``DataPipeline``::

    shards -> read tar samples (this reader's share) -> shuffle buffer -> decode (skip bad) -> batch + collate

What it guarantees (see ``/shared/notes/pitfalls.md``; webdataset #188/#194/#225 and
Lightning #9851/#20404 are the failure reports this answers):

* **Split by sample, not by shard.** Every epoch the shard order is shuffled with a seed
  shared by all ranks and workers; every reader (rank x DataLoader worker) walks that
  order and keeps its share of the samples: rank ``r`` of ``R`` the samples at positions
  ``r`` mod ``R``, and within a rank, blocks of ``batch_size`` samples go to its workers in
  turn (:class:`SampleSelector`). The other readers' members are skipped unread, never
  decoded. So shards of 300/100/20 samples on 2 ranks give each rank half of every
  epoch, no rank is left with the small shard, no sample appears twice in an epoch,
  and there is no minimum number of shards. Samples are then shuffled with a
  per-(rank, worker, epoch) buffer. (Each reader reads every shard's bytes; decoding,
  the expensive part, happens once per sample. Where reading bandwidth is the limit,
  ``resampled=True`` draws shards per reader instead.)
* **The seed:** ``seed=None`` (the DataModules' default) follows the run's
  ``seed_everything`` (``PL_GLOBAL_SEED``), so ``--seed_everything`` changes the order.
* **Equal training length:** with ``samples_per_epoch`` every rank yields exactly
  ``samples_per_epoch // (world_size * batch_size)`` batches per epoch (cycling over its
  share, or resampling), so DDP never waits on a rank that ran out of data, and
  ``len()`` gives Lightning the number of steps.
* **Rank-balanced validation:** :func:`single_pass_stream` (validation) splits by sample
  too, and under DDP every rank yields the same number of batches whatever the shard
  layout (70/30 samples, fewer shards than ranks, corrupt samples): a reader that runs
  out first pads with one-sample batches marked ``batch["padding"] = True`` (a repeat of
  a sample it already yielded, like DistributedSampler's padding; at most one sample per
  missing batch, so metrics move by a negligible amount). Systems must still run the
  step on a padding batch: it is there so their collectives match.
* **Bad samples:** a corrupt sample is skipped, logged, and reported in-band: every batch
  carries ``"bad_samples"``, the samples skipped while it was filled (DataLoader workers
  are separate processes). A reader's last batch is held back until its stream ends, so
  the samples skipped after it (a dropped incomplete batch) are reported with it; so
  the count reported equals the count injected for any number of workers and ranks.
  :class:`~babeltower.train.callbacks.BadSampleReport` gathers them from all ranks.
  A shard that cannot be opened or whose tar structure is broken fails the run, naming it.
* **Exact mid-epoch resume** (a feature neither open_clip nor Lightning + webdataset has):
  every batch carries its reader's position (samples taken from the shuffle stage,
  batches made). :class:`EpochLoader` strips it, records it per worker, and implements
  ``state_dict``/``load_state_dict``; Lightning therefore saves every rank's position in
  each checkpoint (gathered, so rank 0's file holds all ranks), counting only the
  batches the trainer has trained (it fetches one ahead), and restores it on
  ``--ckpt_path`` before the resumed epoch's iterator starts. Each worker then replays
  reading and shuffling, without decoding, up to its position and continues, so every
  remaining sample of the interrupted epoch is seen exactly once, also after ``kill -9``.
  Mixtures (:class:`MixedStream`) and duration-bucketed speech batches resume exactly
  too. Resume with the same number of devices and ``num_workers``; otherwise the
  interrupted epoch's data restarts from its beginning, with a warning.

Example:
    >>> stream = ShardStream("data/shard-{000000..000099}.tar", decode=decode, batch_size=64,
    ...                      collate=collate, samples_per_epoch=1_000_000)
    >>> loader = EpochLoader(stream, num_workers=4)
"""

from __future__ import annotations

import glob
import itertools
import json
import logging
import os
import random
import re
import tarfile
import warnings
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


class SampleSelector:
    """Splits one pass of an epoch's sample stream among ranks and DataLoader workers.

    Every reader walks the same shard order and counts samples. Rank ``r`` of ``R`` owns
    the samples at positions ``r`` modulo ``R``; within a rank's samples, consecutive
    blocks of ``block`` (the batch size) go to its workers in turn, so that worker ``w``
    gets exactly the samples of batches ``w, w + W, ...``, the batches the DataLoader
    asks it for. The members of other readers' samples are skipped without being read
    into memory, and never decoded.
    """

    def __init__(self, rank: int = 0, world_size: int = 1, worker: int = 0, num_workers: int = 1, block: int = 1):
        self.rank, self.world_size = rank, world_size
        self.worker, self.num_workers = worker, num_workers
        self.block = max(1, block)
        self.count = 0  # samples of the pass seen so far, all readers' included

    def take(self) -> bool:
        """Counts one more sample; True if it belongs to this reader."""
        index = self.count
        self.count += 1
        if index % self.world_size != self.rank:
            return False
        return (index // self.world_size // self.block) % self.num_workers == self.worker

    def share(self, total: int, rank: int, worker: int) -> int:
        """Samples a pass of ``total`` samples gives to ``(rank, worker)``."""
        of_rank = max(0, -(-(total - rank) // self.world_size))
        cycle = self.block * self.num_workers
        rest = of_rank % cycle
        return of_rank // cycle * self.block + min(self.block, max(0, rest - worker * self.block))


def read_tar(url: str, selector: SampleSelector | None = None) -> Iterator[dict[str, Any]]:
    """Reads one shard and groups its members into samples.

    Members are grouped webdataset-style: consecutive files sharing the part of the name
    before the first ``.`` of the basename form one sample, keyed by that prefix, with
    lower-cased extensions as fields (``{"__key__", "__url__", "jpg", "txt", ...}``).
    A sample with a repeated extension gets an ``"__error__"`` field instead of failing
    the shard; the decode stage reports it as a bad sample.

    Args:
        url: Local path, ``pipe:`` command or URL (opened with webdataset's ``gopen``).
        selector: If given, only the samples it assigns to this reader are yielded (the
            others are counted and skipped unread).

    Yields:
        Raw samples (bytes values).

    Raises:
        ShardReadError: If the shard cannot be opened, is not a tar archive, or is
            truncated or corrupt.
    """
    from webdataset.gopen import gopen

    try:
        raw = gopen(url, "rb")
    except Exception as exc:  # gopen raises many types (OSError, ValueError, ...)
        raise ShardReadError(f"cannot open shard {url}: {exc}") from exc
    try:
        head = raw.read(_BLOCK)
        if _is_compressed(head):
            members = _tarfile_members(_Replay(head, raw), url)
        else:
            members = _plain_tar_members(raw, head, url)
        yield from _group_members(members, url, selector)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ShardReadError(f"cannot read shard {url}: {exc} (is it a complete, valid tar file?)") from exc
    finally:
        try:
            raw.close()
        except Exception as exc:  # a pipe: command's exit status is checked at close
            raise ShardReadError(f"shard {url}: closing failed: {exc}") from exc


_BLOCK = 512


def _group_members(members: Iterator[tuple[str, Any]], url: str, selector: SampleSelector | None) -> Iterator[dict]:
    """Groups ``(name, data)`` members into webdataset samples (consecutive names sharing a prefix).

    ``members`` is a generator that reads a member's data only when sent True for it, so
    that another reader's samples are skipped unread.
    """
    from webdataset.tariterators import base_plus_ext

    current: dict[str, Any] | None = None
    keep = True
    wanted = None
    while True:
        try:
            name, data = members.send(wanted)
        except StopIteration:
            break
        wanted = None
        if "/" not in name and name.startswith("__") and name.endswith("__"):
            wanted = False
            continue  # webdataset's archive-level metadata entries
        prefix, suffix = base_plus_ext(name)
        if prefix is None:
            wanted = False
            continue
        if current is None or current["__key__"] != prefix:
            if current is not None and keep:
                yield current
            keep = selector is None or selector.take()
            current = {"__key__": prefix, "__url__": url}
        wanted = keep
        if not keep:
            continue
        data = members.send(True)  # the member's bytes
        wanted = None
        suffix = suffix.lower()
        if suffix in current:
            current["__error__"] = f"duplicate member {name!r} in the shard"
        current[suffix] = data
    if current is not None and keep:
        yield current


def _plain_tar_members(raw: Any, head: bytes, url: str) -> Iterator:
    """Members of an uncompressed tar stream: a small ustar/GNU/pax reader, ~10x faster than tarfile.

    Protocol (see :func:`_group_members`): yields ``(name, None)`` per regular file; the
    caller sends True to get the data back from the same ``send``, or anything else to
    skip it. Invalid headers, checksums and truncation raise :class:`ShardReadError`.
    """
    seek = bool(getattr(raw, "seekable", lambda: False)())
    offset = 0
    block = head
    long_name: str | None = None
    pax_name: str | None = None
    while True:
        if len(block) < _BLOCK:
            if offset == 0 and not block:
                raise ShardReadError(f"cannot read shard {url}: the file is empty (is it a complete, valid tar file?)")
            raise ShardReadError(
                f"shard {url} is truncated at byte {offset + len(block)} (no end-of-archive marker); "
                "it was probably written or copied incompletely"
            )
        if block.count(0) == _BLOCK:
            _check_zero_tail(raw, url)
            return
        name, size, kind = _parse_header(block, offset, url)
        offset += _BLOCK
        padded = -(-size // _BLOCK) * _BLOCK
        if kind in (b"L", b"x", b"g", b"K"):
            data = _read_exact(raw, padded, url, offset)[:size]
            if kind == b"L":
                long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif kind == b"x":
                pax_name = _pax_path(data) or pax_name
        elif kind in (b"0", b"\0", b"7"):
            name = pax_name or long_name or name
            pax_name = long_name = None
            want = yield name, None
            if want is True:
                data = _read_exact(raw, padded, url, offset)[:size]
                yield data  # the value of the caller's send(True)
            else:
                _skip_bytes(raw, padded, url, offset, seek)
        else:  # directories, links, devices: no data or data nobody reads
            pax_name = long_name = None
            _skip_bytes(raw, padded, url, offset, seek)
        offset += padded
        block = raw.read(_BLOCK)


def _parse_header(block: bytes, offset: int, url: str) -> tuple[str, int, bytes]:
    stored = block[148:156].split(b"\0", 1)[0].strip()
    try:
        checksum = int(stored, 8) if stored else -1
    except ValueError:
        checksum = -1
    computed = sum(block) - sum(block[148:156]) + 8 * 32
    if checksum != computed:
        if offset == 0:
            raise ShardReadError(f"cannot read shard {url}: not a tar archive (invalid header at byte 0; "
                                 "is it a complete, valid tar file?)")
        raise ShardReadError(
            f"shard {url} is corrupt: invalid tar header at byte {offset}; "
            "the shard was probably damaged in transfer or written incompletely"
        )
    field = block[124:136]
    if field[0] & 0x80:  # GNU base-256 size
        size = int.from_bytes(field[1:], "big")
    else:
        digits = field.split(b"\0", 1)[0].strip()
        size = int(digits, 8) if digits else 0
    name = block[0:100].split(b"\0", 1)[0]
    if block[257:262] == b"ustar":
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape"), size, block[156:157]


def _pax_path(data: bytes) -> str | None:
    path = None
    while data:
        length, _, rest = data.partition(b" ")
        try:
            record = data[: int(length)]
        except ValueError:
            break
        key, _, value = record[len(length) + 1 :].rstrip(b"\n").partition(b"=")
        if key == b"path":
            path = value.decode("utf-8", "surrogateescape")
        data = data[int(length) :]
    return path


def _read_exact(raw: Any, size: int, url: str, offset: int) -> bytes:
    data = raw.read(size) if size else b""
    if len(data) < size:
        raise ShardReadError(
            f"shard {url} is truncated at byte {offset + len(data)} (a member needs {size} bytes from byte {offset}); "
            "it was probably written or copied incompletely"
        )
    return data


def _skip_bytes(raw: Any, size: int, url: str, offset: int, seek: bool) -> None:
    if not size:
        return
    if seek:
        raw.seek(size, os.SEEK_CUR)
        return
    while size > 0:
        chunk = raw.read(min(size, 1 << 20))
        if not chunk:
            raise ShardReadError(f"shard {url} is truncated at byte {offset} (no end-of-archive marker)")
        size -= len(chunk)


def _check_zero_tail(raw: Any, url: str) -> None:
    while True:
        chunk = raw.read(1 << 16)
        if not chunk:
            return
        if chunk.count(0) != len(chunk):
            raise ShardReadError(f"shard {url} is corrupt: unexpected data after the end of the tar archive")


class _Replay:
    """A byte stream that first returns ``head``, then the rest of ``raw``."""

    def __init__(self, head: bytes, raw: Any) -> None:
        self.head, self.raw = head, raw

    def read(self, size: int = -1) -> bytes:
        if not self.head:
            return self.raw.read() if size is None or size < 0 else self.raw.read(size)
        if size is None or size < 0:
            data, self.head = self.head + self.raw.read(), b""
            return data
        data, self.head = self.head[:size], self.head[size:]
        if len(data) < size:
            data += self.raw.read(size - len(data))
        return data

    def close(self) -> None:
        self.raw.close()


def _tarfile_members(fileobj: Any, url: str) -> Iterator:
    """Members of a compressed tar, through Python's tarfile (same protocol as :func:`_plain_tar_members`)."""
    stream = _RecordingReader(fileobj)
    compressed = _is_compressed(stream.head)
    with tarfile.open(fileobj=stream, mode="r|*" if compressed else "r|") as archive:
        for member in archive:
            archive.members = []  # stream mode keeps every TarInfo otherwise
            if not member.isreg():
                continue
            want = yield member.name, None
            if want is True:
                extracted = archive.extractfile(member)
                yield extracted.read() if extracted is not None else b""
        if not compressed:
            _check_tar_end(stream, archive.offset, url)


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

#: Batch key under which a stream reports its reader's position; :class:`EpochLoader`
#: removes it before the batch reaches the model.
POSITION_KEY = "__position__"
#: Marks an item that carries only ``bad_samples`` (a reader that formed no batch).
REPORT_ONLY_KEY = "__report_only__"


def resolve_seed(seed: int | None) -> int:
    """The data seed: ``seed`` when given, else the run's ``seed_everything`` seed, else 0.

    Lightning's ``seed_everything`` (``--seed_everything`` of the CLI) exports its seed as
    ``PL_GLOBAL_SEED``, which DDP ranks and DataLoader workers inherit, so with
    ``seed=None`` the shard order, sample order and augmentation follow the run's seed.
    """
    if seed is not None:
        return int(seed)
    value = os.environ.get("PL_GLOBAL_SEED", "")
    try:
        return int(value) if value.strip() else 0
    except ValueError:
        raise ValueError(f"PL_GLOBAL_SEED={value!r} is not an integer; set seed_everything to an int") from None


@dataclass(frozen=True)
class StreamContext:
    """Where an iteration runs: distributed rank, DataLoader worker, epoch and data seed."""

    rank: int
    world_size: int
    worker: int
    num_workers: int
    epoch: int
    seed: int = 0

    @property
    def reader(self) -> int:
        """This (rank, worker)'s index among all readers of the epoch."""
        return self.rank * self.num_workers + self.worker

    @property
    def readers(self) -> int:
        """Readers splitting the epoch: ranks x DataLoader workers."""
        return self.world_size * self.num_workers


class _SkipReport:
    """One reader's accounting: skipped samples not yet reported, counts and position."""

    def __init__(self) -> None:
        self.pending: list[dict[str, str]] = []
        self.good = 0
        self.bad = 0
        self.raw = 0
        self.consumed = 0  # samples taken from the shuffle stage (decoded or skipped): the resume position
        self.batches = 0  # batches formed this epoch (including those before a resume)
        self.seen = 0  # samples of the last finished pass, all readers' (one-pass padding)
        self.last_good: dict | None = None
        self.resume: dict | None = None  # the position this reader resumed at, for the batching stage
        self.report_only = False  # may yield a bad_samples-only item (only EpochLoader understands it)

    def skip(self, shard: str, key: str, reason: str) -> None:
        self.bad += 1
        self.pending.append({"shard": shard, "key": key, "reason": reason})
        log.warning("skipping sample %r of shard %s: %s", key, shard, reason)

    def drain(self) -> list[dict[str, str]]:
        drained, self.pending = self.pending, []
        return drained

    def position(self) -> dict[str, int]:
        return {"samples": self.consumed, "batches": self.batches}


def read_samples(
    urls: Iterable[str], report: _SkipReport, epoch: int = 0, selector: SampleSelector | None = None
) -> Iterator[dict[str, Any]]:
    """Stage: shard URLs -> this reader's raw samples, tagged with ``__epoch__`` for per-sample seeding."""
    for url in urls:
        for sample in read_tar(url, selector):
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
        report.consumed += 1
        reason = sample.get("__error__")
        if reason is None:
            try:
                decoded = decode(sample)
            except Exception as exc:  # any failure of user decode code on one sample
                reason = f"{type(exc).__name__}: {exc}"
            else:
                report.good += 1
                report.last_good = decoded
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
    max_batches: int | None = None,
) -> Iterator[dict]:
    """Stage: decoded samples -> collated batches with ``"bad_samples"`` attached.

    Each batch carries the samples skipped while it was filled. The last batch is held
    back until the stream ends, so the samples skipped after it (while filling a batch
    that ``drop_last`` drops) are reported with it instead of being lost; a reader that
    forms no batch at all yields one ``{REPORT_ONLY_KEY: True, "bad_samples": [...]}``
    item instead (:class:`EpochLoader` folds it into the next batch).

    Args:
        max_batches: Stop after this many batches (the reader's quota), reading nothing more.
    """
    if max_batches is not None and max_batches <= 0:
        return
    held: dict | None = None
    formed = 0
    batch: list[dict] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) < batch_size:
            continue
        ready, batch = _collate(batch, collate, report), []
        formed += 1
        if held is not None:
            yield held
        held = ready
        if max_batches is not None and formed >= max_batches:
            break
    else:
        if batch and not drop_last:
            ready = _collate(batch, collate, report)
            if held is not None:
                yield held
            held = ready
    if held is not None:
        yield _finish(held, report)
    elif report.pending and report.report_only:
        yield {REPORT_ONLY_KEY: True, "bad_samples": report.drain(), POSITION_KEY: report.position()}


def _collate(batch: list[dict], collate: Callable[[list[dict]], dict], report: _SkipReport) -> dict:
    collated = collate(batch)
    if not isinstance(collated, dict):
        raise TypeError(f"collate must return a dict (the stream adds 'bad_samples'), got {type(collated).__name__}")
    report.batches += 1
    collated["bad_samples"] = report.drain()
    collated[POSITION_KEY] = report.position()
    return collated


def _finish(batch: dict, report: _SkipReport) -> dict:
    """The reader's last batch: add the skips after it; its position is the end of the stream."""
    batch["bad_samples"].extend(report.drain())
    batch[POSITION_KEY] = report.position()
    return batch


def _resample(urls: list[str], rng: random.Random) -> Iterator[str]:
    while True:
        yield rng.choice(urls)


def _tag_worker(batches: Iterator[dict], worker: int) -> Iterator[dict]:
    """Labels each batch's position with the DataLoader worker that made it."""
    for batch in batches:
        position = batch.get(POSITION_KEY)
        if position is not None:
            batch[POSITION_KEY] = {"worker": worker, "state": position}
        yield batch


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

    Use with ``DataLoader(stream, batch_size=None, num_workers=N)``, or better
    :class:`EpochLoader`: the stream batches and collates itself. Call :meth:`set_epoch`
    before each epoch (Lightning does this through :class:`EpochLoader`); with
    ``num_workers > 0`` use ``persistent_workers=False`` so workers are re-created with
    the new epoch.

    Args:
        shards: Shard specification (see :func:`expand_shards`) or list of them.
        decode: Raw sample (``{"__key__", "__url__", ext: bytes}``) -> decoded sample.
            Raising skips the sample and reports the reason.
        batch_size: Samples per batch.
        collate: List of decoded samples -> batch dict.
        shuffle_buffer: Sample shuffle buffer size; 0 disables all shuffling (shards
            and samples), for evaluation.
        seed: Base seed of shard order, sample order and resampling; None follows the
            run's ``seed_everything`` (see :func:`resolve_seed`).
        resampled: Draw shards with replacement (per rank and worker) instead of
            splitting the epoch's samples; needs no minimum number of shards.
        samples_per_epoch: Global samples per epoch. Every rank then yields exactly
            ``samples_per_epoch // (world_size * batch_size)`` batches. Without it (and
            not resampled) an epoch is one pass over the shards; resampled without it
            is endless.
        drop_last: Drop the last incomplete batch of a one-pass epoch.
        rank: Distributed rank; None reads it at iteration time from torch.distributed,
            else the ``RANK`` environment variable, else 0.
        world_size: Number of ranks; None reads it like ``rank`` (``WORLD_SIZE``, else 1).
        balanced: One-pass epochs on several ranks: every reader yields the same number
            of batches, padding with one-sample batches (``batch["padding"] = True``, a
            repeat of a sample it already yielded) when it ran out first. Used for
            validation, where a rank with fewer batches would stall the others' collectives.
    """

    def __init__(
        self,
        shards: str | list[str],
        *,
        decode: Callable[[dict], dict],
        batch_size: int,
        collate: Callable[[list[dict]], dict],
        shuffle_buffer: int = 1000,
        seed: int | None = None,
        resampled: bool = False,
        samples_per_epoch: int | None = None,
        drop_last: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        balanced: bool = False,
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
        self.balanced = balanced
        self.epoch = 0
        self._resume: dict | None = None
        #: Set by EpochLoader: a reader that forms no batch may then yield an item with
        #: only ``bad_samples`` (folded into the next batch), so no skip goes unreported.
        self.report_only_items = False

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

    def set_resume(self, state: dict | None) -> None:
        """Makes the next iteration of epoch ``state["epoch"]`` start at the saved positions.

        Args:
            state: ``{"epoch": int, "workers": {str(worker): position}}`` as recorded by
                :class:`EpochLoader`; None clears it.
        """
        self._resume = state

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
        """The rank, worker, epoch and seed an iteration started now would use."""
        rank, world_size = _distributed(self.rank, self.world_size)
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return StreamContext(rank, world_size, worker, num_workers, self.epoch, resolve_seed(self.seed))

    def worker_quota(self, ctx: StreamContext) -> int:
        """Batches this worker yields per epoch: its share of :meth:`batches_per_rank`."""
        per_rank = self.batches_per_rank(ctx.world_size)
        return per_rank // ctx.num_workers + (1 if ctx.worker < per_rank % ctx.num_workers else 0)

    def shard_order(self, ctx: StreamContext, pass_index: int = 0) -> list[str]:
        """The shard order of one pass of an epoch: the same on every rank and worker."""
        order = list(self.shards)
        if self.shuffle_buffer > 0:
            random.Random(f"shards:{ctx.seed}:{ctx.epoch}:{pass_index}").shuffle(order)
        return order

    def raw_samples(self, ctx: StreamContext, report: _SkipReport, *, endless: bool = False) -> Iterator[dict]:
        """Stages before decoding: this reader's share of the epoch, through the shuffle buffer."""
        rng = random.Random(f"samples:{ctx.seed}:{ctx.epoch}:{ctx.rank}:{ctx.worker}")
        repeat = endless or self.samples_per_epoch is not None
        if self.resampled:
            if not repeat:
                log.info("ShardStream: resampled without samples_per_epoch is endless; limit steps in the trainer")
            return shuffle_samples(read_samples(_resample(self.shards, rng), report, ctx.epoch), self.shuffle_buffer, rng)
        return self._passes(ctx, report, rng, repeat)

    def _passes(self, ctx: StreamContext, report: _SkipReport, rng: random.Random, repeat: bool) -> Iterator[dict]:
        # Each pass: the same shard order on every reader, every readers-th sample kept,
        # shuffled within the pass (the buffer drains at its end, so an epoch of
        # samples_per_epoch == dataset size shows every sample exactly once).
        for pass_index in itertools.count():
            selector = SampleSelector(ctx.rank, ctx.world_size, ctx.worker, ctx.num_workers, self.batch_size)
            before = report.raw
            order = self.shard_order(ctx, pass_index)
            yield from shuffle_samples(read_samples(order, report, ctx.epoch, selector), self.shuffle_buffer, rng)
            report.seen = selector.count
            if not repeat:
                return
            if report.raw == before:
                if selector.count == 0:
                    raise ValueError(
                        f"shards {self.shards[:3]}{' ...' if len(self.shards) > 3 else ''} contain no samples; "
                        "cannot fill an epoch of samples_per_epoch from them"
                    )
                raise ValueError(
                    f"the shards hold {selector.count} samples, fewer than the {ctx.readers} readers "
                    f"({ctx.world_size} ranks x {ctx.num_workers} DataLoader workers) that split them; "
                    "use fewer workers, more samples, or resampled=True"
                )

    def iter_batches(self, ctx: StreamContext, *, endless: bool = False, resume: dict | None = None) -> Iterator[dict]:
        """The pipeline for one rank/worker/epoch.

        Args:
            ctx: Where it runs (see :meth:`context`).
            endless: Keep cycling or resampling shards past the epoch's quota (used by
                :class:`MixedStream`, which sets its own length).
            resume: This reader's saved position (``{"samples", "batches"}``): the
                stream replays its reading and shuffling without decoding up to it.

        Yields:
            Batch dicts, each with ``"bad_samples"`` and the reader's position.
        """
        report = _SkipReport()
        report.report_only = self.report_only_items
        samples = self.raw_samples(ctx, report, endless=endless)
        if resume:
            samples = itertools.islice(samples, int(resume["samples"]), None)
            report.consumed, report.batches = int(resume["samples"]), int(resume["batches"])
            report.resume = resume
        return self.batch_stage(decode_samples(samples, self.decode, report), ctx, report, endless=endless)

    def batch_stage(
        self, samples: Iterator[dict], ctx: StreamContext, report: "_SkipReport", *, endless: bool = False
    ) -> Iterator[dict]:
        """The batching stage: decoded samples -> batches, cut to the worker's quota.

        Subclasses override it to form batches differently (e.g. duration bucketing).
        """
        quota = None
        if self.samples_per_epoch is not None and not endless:
            quota = self.worker_quota(ctx) - report.batches
        batches = batch_samples(samples, self.batch_size, self.collate, report, self.drop_last, max_batches=quota)
        if self.balanced and ctx.world_size > 1 and quota is None and not self.resampled and not endless:
            batches = self._pad(batches, ctx, report)
        return batches

    def _pad(self, batches: Iterator[dict], ctx: StreamContext, report: _SkipReport) -> Iterator[dict]:
        """Tops a one-pass reader up to the batch count of the fullest reader."""
        yield from batches
        # Rank 0 gets the most samples; this worker pads to what worker `ctx.worker` of
        # rank 0 could form, so every rank's workers together yield the same count.
        share = SampleSelector(0, ctx.world_size, ctx.worker, ctx.num_workers, self.batch_size).share(
            report.seen, 0, ctx.worker
        )
        target = share // self.batch_size if self.drop_last else -(-share // self.batch_size)
        missing = target - report.batches
        if missing <= 0:
            return
        sample = report.last_good if report.last_good is not None else self._first_good_sample(ctx)
        for _ in range(missing):
            padded = self.collate([sample])
            padded["bad_samples"] = report.drain()
            padded["padding"] = True
            padded[POSITION_KEY] = report.position()
            yield padded

    def _first_good_sample(self, ctx: StreamContext) -> dict:
        for sample in read_samples(self.shard_order(ctx), _SkipReport(), ctx.epoch):
            try:
                return self.decode(sample)
            except Exception:  # a bad sample; keep looking
                continue
        raise ValueError(f"no sample of {self.shards[0]} ... decodes; a rank has nothing to validate on")

    def _resume_for(self, ctx: StreamContext) -> dict | None:
        state = self._resume
        if not state or int(state.get("epoch", -1)) != ctx.epoch:
            return None
        return state.get("workers", {}).get(str(ctx.worker))

    def __iter__(self) -> Iterator[dict]:
        ctx = self.context()
        return _tag_worker(self.iter_batches(ctx, resume=self._resume_for(ctx)), ctx.worker)


class MixedStream(IterableDataset):
    """Weighted mixture of several :class:`ShardStream` sources, batch by batch.

    Each batch comes from one source, chosen at random with probability proportional
    to its weight (so one collate per source is fine). Every source needs
    ``samples_per_epoch``; the mixture yields ``sum(len(s) for s in streams)`` batches
    per rank per epoch, exactly, and sources cycle past their own epoch when drawn
    more often. Its position (for exact resume) is the number of batches drawn plus
    every source's position.

    Args:
        streams: The sources.
        weights: Non-negative sampling weights, one per stream, not all zero.
        seed: Seed of the source choice (combined with epoch, rank and worker); None
            follows ``seed_everything``.
    """

    def __init__(self, streams: list[ShardStream], weights: list[float], seed: int | None = None) -> None:
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
        self._resume: dict | None = None

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch here and on every source."""
        self.epoch = int(epoch)
        for stream in self.streams:
            stream.set_epoch(epoch)

    def set_distributed(self, rank: int, world_size: int) -> None:
        """Fixes rank and world size on every source."""
        for stream in self.streams:
            stream.set_distributed(rank, world_size)

    def set_resume(self, state: dict | None) -> None:
        """See :meth:`ShardStream.set_resume`."""
        self._resume = state

    @property
    def rank(self) -> int | None:
        return self.streams[0].rank

    @property
    def world_size(self) -> int | None:
        return self.streams[0].world_size

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return sum(len(stream) for stream in self.streams)

    def __iter__(self) -> Iterator[dict]:
        contexts = [stream.context() for stream in self.streams]
        ctx = contexts[0]
        resume = None
        if self._resume and int(self._resume.get("epoch", -1)) == ctx.epoch:
            resume = self._resume.get("workers", {}).get(str(ctx.worker))
        states = list(resume["sources"]) if resume else [None] * len(self.streams)
        sources = [
            stream.iter_batches(c, endless=True, resume=state) for stream, c, state in zip(self.streams, contexts, states)
        ]
        quota = sum(stream.worker_quota(c) for stream, c in zip(self.streams, contexts))
        rng = random.Random(f"mix:{resolve_seed(self.seed)}:{self.epoch}:{ctx.rank}:{ctx.worker}")
        choices = rng.choices(range(len(sources)), weights=self.weights, k=quota)
        done = int(resume["batches"]) if resume else 0
        return _tag_worker(self._mix(sources, choices, done, states), ctx.worker)

    @staticmethod
    def _mix(sources: list[Iterator[dict]], choices: list[int], done: int, states: list) -> Iterator[dict]:
        states = [state or {"samples": 0, "batches": 0} for state in states]
        for drawn in range(done, len(choices)):
            index = choices[drawn]
            batch = next(sources[index])
            states[index] = batch.pop(POSITION_KEY)
            batch[POSITION_KEY] = {"batches": drawn + 1, "sources": list(states)}
            yield batch


class EpochLoader(torch.utils.data.DataLoader):
    """A DataLoader for streams: per-epoch ``set_epoch`` and exact mid-epoch resume.

    Lightning calls ``set_epoch`` on ``dataloader.sampler`` at the start of every epoch,
    but an IterableDataset's DataLoader only has a placeholder sampler, so the epoch
    would never reach the stream. This loader swaps in a forwarding placeholder.
    ``batch_size`` is None (the stream batches) and ``persistent_workers`` is False so
    workers are re-created, with the new epoch, every epoch.

    Exact resume: every batch carries its reader's position (samples taken, batches
    made), which this loader removes from the batch and records per worker.
    :meth:`state_dict` returns, for every rank (gathered, so rank 0's checkpoint holds
    all of them), the positions after the batches the trainer has trained; Lightning
    saves it in the checkpoint (``loops.fit_loop.state_dict.combined_loader``) because
    the loader has ``state_dict``/``load_state_dict``, and on ``--ckpt_path`` calls
    :meth:`load_state_dict` before creating the iterator. Each worker of the resumed
    epoch then replays its shard reading and shuffle buffer without decoding up to its
    position and continues from there, so every remaining sample of the epoch is seen
    exactly once. Resuming with another world size or worker count restarts the
    interrupted epoch's data from its beginning, with a warning.

    Args:
        dataset: A :class:`ShardStream` or :class:`MixedStream`.
        trainer: The Lightning trainer, whose count of trained batches decides which
            recorded position :meth:`state_dict` returns (the trainer fetches a batch
            ahead). None: every batch this loader yielded counts as trained.
        **kwargs: Other DataLoader arguments (``num_workers``, ``pin_memory``, ...).
    """

    def __init__(self, dataset: ShardStream | MixedStream, trainer: Any = None, **kwargs: Any) -> None:
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
        if isinstance(dataset, ShardStream):
            dataset.report_only_items = True
        super().__init__(dataset, **kwargs)
        # DataLoader forbids reassigning `sampler` after __init__; the forwarder iterates
        # exactly like the placeholder it wraps.
        object.__setattr__(self, "sampler", _EpochForwardingSampler(self.sampler, dataset))
        object.__setattr__(self, "_trainer", trainer)
        object.__setattr__(self, "_positions", _PositionTrace())
        #: Skipped samples reported after the epoch's last batch (see BadSampleReport).
        object.__setattr__(self, "unreported", [])

    def __iter__(self) -> Iterator[Any]:
        trace = self._positions
        trace.start(self.dataset.epoch)
        iterator = super().__iter__()  # workers receive the resume state here
        if hasattr(self.dataset, "set_resume"):
            self.dataset.set_resume(None)  # later epochs start at their beginning
        return self._track(iterator, trace)

    def _track(self, iterator: Iterator[Any], trace: "_PositionTrace") -> Iterator[Any]:
        carried: list[dict] = []
        for item in iterator:
            if not isinstance(item, dict):
                yield item
                continue
            position = item.pop(POSITION_KEY, None)
            if item.get(REPORT_ONLY_KEY):
                carried.extend(item.get("bad_samples") or [])
                continue
            if position is not None:
                trace.record(position)
            if carried:
                item["bad_samples"] = carried + list(item.get("bad_samples") or [])
                carried = []
            yield item
        self.unreported.extend(carried)

    def drain_unreported(self) -> list[dict]:
        """Skipped samples that no batch carried (a reader that formed no batch at the end)."""
        drained = list(self.unreported)
        self.unreported.clear()
        return drained

    def _batches_trained(self) -> int:
        trainer = self._trainer
        if trainer is not None:
            try:
                return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
            except AttributeError:
                pass
        return self._positions.base_batches + len(self._positions.trace)

    def state_dict(self) -> dict[str, Any]:
        """Every rank's data position after the batches trained so far this epoch.

        A collective when torch.distributed is initialised: call it on every rank (as
        Lightning does when saving a checkpoint).
        """
        mine = self._positions.state(self._batches_trained())
        mine["num_workers"] = self.num_workers
        return {"version": 1, "ranks": _all_gather_objects(mine)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Makes the next iteration resume at this rank's saved position."""
        ranks = state_dict.get("ranks") or []
        rank, world_size = _distributed(getattr(self.dataset, "rank", None), getattr(self.dataset, "world_size", None))
        if len(ranks) != world_size or ranks[rank].get("num_workers") != self.num_workers:
            saved_workers = ranks[0].get("num_workers") if ranks else "?"
            warnings.warn(
                f"the checkpoint's data position was saved with {len(ranks)} rank(s) x {saved_workers} DataLoader "
                f"worker(s), this run has {world_size} x {self.num_workers}; the interrupted epoch's data restarts "
                "from its beginning (resume with the same devices and num_workers for an exact resume)",
                stacklevel=2,
            )
            return
        mine = ranks[rank]
        self._positions.restore(mine)
        self.dataset.set_resume({"epoch": int(mine["epoch"]), "workers": dict(mine["workers"])})


class _PositionTrace:
    """The positions of the batches of the current epoch, in the order the loader yielded them."""

    def __init__(self) -> None:
        self.epoch = 0
        self.base: dict[str, dict] = {}
        self.base_batches = 0
        self.trace: list[tuple[str, dict]] = []
        self._restored: dict | None = None

    def restore(self, saved: dict) -> None:
        self._restored = saved

    def start(self, epoch: int) -> None:
        saved, self._restored = self._restored, None
        self.epoch, self.trace = epoch, []
        if saved is not None and int(saved["epoch"]) == epoch:
            self.base, self.base_batches = dict(saved["workers"]), int(saved["batches"])
        else:
            self.base, self.base_batches = {}, 0

    def record(self, position: dict) -> None:
        self.trace.append((str(position["worker"]), position["state"]))

    def state(self, batches_trained: int) -> dict[str, Any]:
        workers = dict(self.base)
        for worker, state in self.trace[: max(0, batches_trained - self.base_batches)]:
            workers[worker] = state
        return {"epoch": self.epoch, "batches": max(batches_trained, self.base_batches), "workers": workers}


def _all_gather_objects(obj: Any) -> list[Any]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, obj)
        return gathered
    return [obj]


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
    seed: int | None,
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


def single_pass_stream(shards, *, decode, collate, batch_size: int, seed: int | None = None) -> ShardStream:
    """An ordered, complete pass (validation/evaluation): no shuffle, last batch kept.

    Under DDP every rank takes every world_size-th sample and yields the same number of
    batches (``balanced``), whatever the shard layout.
    """
    return ShardStream(
        shards, decode=decode, batch_size=batch_size, collate=collate, shuffle_buffer=0, seed=seed, drop_last=False,
        balanced=True,
    )


def eval_stream(shards, *, decode, collate, batch_size: int) -> ShardStream:
    """A whole test set as batches, for an evaluator: every sample once, in shard order.

    The reading, sample grouping, decoding and skip accounting of training, in one
    process: rank 0 of 1 whatever ``torch.distributed`` or ``RANK``/``WORLD_SIZE`` say (an
    evaluator scores the whole set; :func:`single_pass_stream` would take this rank's
    share), no shuffling, the last batch kept. A sample whose ``decode`` raises is skipped,
    logged and listed in the next batch's ``bad_samples`` (``{"shard", "key", "reason"}``).
    """
    return ShardStream(
        shards, decode=decode, batch_size=batch_size, collate=collate, shuffle_buffer=0, seed=0, drop_last=False,
        rank=0, world_size=1,
    )


def eval_samples(shards, decode: Callable[[dict], dict], skipped: list[dict[str, str]] | None = None) -> Iterator[dict]:
    """A whole test set sample by sample (as :func:`eval_stream`, unbatched).

    Args:
        shards: Shard specification (see :func:`expand_shards`).
        decode: Raw sample -> decoded sample; raising skips the sample.
        skipped: If given, each skipped sample's ``{"shard", "key", "reason"}`` is appended to it.

    Yields:
        Decoded samples, in shard order.
    """
    report = _SkipReport()
    if skipped is not None:
        report.pending = skipped
    yield from decode_samples(read_samples(expand_shards(shards), report), decode, report)


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
    return EpochLoader(stream, trainer=trainer, num_workers=num_workers, pin_memory=torch.cuda.is_available())


def val_loader(stream, trainer, *, num_workers: int) -> EpochLoader:
    """One pass over the validation shards, split by sample, equal batch counts on every rank."""
    _set_distributed(stream, trainer)
    return EpochLoader(stream, num_workers=num_workers, pin_memory=torch.cuda.is_available())


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


def sample_json(sample: dict[str, Any]) -> dict[str, Any]:
    """A raw sample's ``json`` member as a dict; the error names the shard, key and what is wrong."""
    where = f"{sample.get('__url__', '?')}/{sample.get('__key__', '?')}"
    try:
        meta = json.loads(sample["json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}.json: invalid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{where}.json: expected a JSON object, got {type(meta).__name__}")
    return meta


def sample_text(sample: dict[str, Any], noun: str = "text") -> tuple[str, dict[str, Any]]:
    """A raw sample's text (its ``txt`` member, else the json's ``text``) and json metadata.

    Args:
        sample: Raw shard sample (``__key__``, ``__url__``, members as bytes).
        noun: What the text is called in messages ("label", "transcript").

    Raises:
        ValueError / KeyError: invalid JSON, a non-UTF-8 or empty text, or no text at all;
            the message names the shard and key.
    """
    where = f"{sample.get('__url__', '?')}/{sample.get('__key__', '?')}"
    meta = sample_json(sample) if "json" in sample else {}
    if "txt" in sample:
        try:
            text = sample["txt"].decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise ValueError(f"{where}.txt is not UTF-8: {exc}") from exc
    elif isinstance(meta.get("text"), str):
        text = meta["text"].strip()
    else:
        raise KeyError(f"{where}: no {noun} (neither a txt member nor 'text' in the json)")
    if not text:
        raise ValueError(f"{where}: the {noun} is empty")
    return text, meta


def shard_texts(shards, noun: str = "text", exclude_kinds: tuple[str, ...] = (),
                skipped: list[dict[str, str]] | None = None) -> Iterator[str]:
    """The texts of a dataset (labels, transcripts), in shard order, without decoding media.

    For text models of a dataset (the character LMs of the CTC heads). Samples whose json
    ``kind`` is in ``exclude_kinds`` are passed over; a sample without a usable text is
    skipped and appended to ``skipped`` (``{"shard", "key", "reason"}``).
    """
    excluded = set(exclude_kinds)

    def decode(sample: dict[str, Any]) -> dict[str, Any]:
        text, meta = sample_text(sample, noun)
        return {"text": text, "kind": meta.get("kind")}

    for item in eval_samples(shards, decode, skipped):
        if item["kind"] is None or item["kind"] not in excluded:
            yield item["text"]
