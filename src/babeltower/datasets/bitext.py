"""Parallel text (bitext) for multilingual text-encoder distillation: files, shards, DataModule.

User bitext comes as OPUS / TED2020-style exports, one pair per line, English first:

* ``.tsv``: ``src<TAB>tgt<TAB>lang``, with or without a header line ``src	tgt	lang``;
* ``.jsonl`` / ``.ndjson``: ``{"src": ..., "tgt": ..., "lang": ...}``.

``src`` is the teacher's language (English), ``tgt`` its translation and ``lang`` the
language of ``tgt`` as a BCP-47 tag (``de``, ``pt-BR``, ``zh-Hant``). Bad lines are
skipped, counted by reason and logged with ``file:line`` in a :class:`BitextReport`;
:func:`write_bitext_shards` turns a file into the shard format of
:func:`~babeltower.datasets.synthetic.parallel.write_parallel_shards`, which
:class:`ParallelTextDataModule` reads.

YAML (LightningCLI)::

    data:
      class_path: babeltower.datasets.bitext.ParallelTextDataModule
      init_args:
        train_shards: data/parallel/train
        val_shards: data/parallel/val
        teacher_tokenizer: /models/all-MiniLM-L6-v2
        batch_size: 64
        samples_per_epoch: 100000

Batches are dicts::

    src_text, tgt_text      list[str]   English source and its translation
    lang, source, key       list[str]   language of tgt, origin ("scenes", "cldr:units", ...), sample key
    student_src             {"input_ids", "attention_mask"}: (B, T) long, student tokenizer
    student_tgt             {"input_ids", "attention_mask"}: (B, T) long, student tokenizer
    teacher_src             {"input_ids", "attention_mask"}: (B, T) long, teacher tokenizer;
                            only when teacher_tokenizer is set
    bad_samples             list[dict]  {"shard", "key", "reason"} skipped since the last batch
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from babeltower.datasets.pipeline import (
    MixedStream,
    ShardStream,
    StreamLoaders,
    sample_json,
    single_pass_stream,
    weighted_train_stream,
)

log = logging.getLogger(__name__)

#: Reasons a bitext line is skipped, as counted in :attr:`BitextReport.skipped`.
SKIP_REASONS: tuple[str, ...] = (
    "not_utf8", "bad_json", "not_an_object", "wrong_columns", "missing_side", "empty_text", "bad_lang"
)

_TSV_HEADER = ["src", "tgt", "lang"]
_TSV_SUFFIXES = (".tsv",)
_JSONL_SUFFIXES = (".jsonl", ".ndjson")

# language[-Script][-REGION]: what babel and the tokenizers' language lists can name.
_TAG_PATTERN = re.compile(r"(?P<language>[A-Za-z]{2,3})(?:[-_](?P<script>[A-Za-z]{4}))?(?:[-_](?P<region>[A-Za-z]{2}|\d{3}))?")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-]")


# ---------------------------------------------------------------------- language tags


@functools.lru_cache(maxsize=1)
def _cldr_codes() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    from babel import Locale

    english = Locale("en")
    return frozenset(english.languages), frozenset(english.scripts), frozenset(english.territories)


def normalize_language_tag(tag: str) -> str:
    """Checks a language tag and returns it in BCP-47 form (``pt_br`` -> ``pt-BR``).

    A tag is ``language[-Script][-REGION]``: a 2-3 letter language code that CLDR names
    (so ``xx`` and ``klingon`` fail, ``tlh`` passes), an optional 4-letter script
    (``Hant``) and an optional 2-letter or 3-digit region (``BR``, ``419``), all known
    to CLDR. ``_`` separators are accepted.

    Args:
        tag: The tag.

    Returns:
        The tag with canonical case and ``-`` separators.

    Raises:
        ValueError: Naming the part that is malformed or unknown.
    """
    if not isinstance(tag, str):
        raise ValueError(f"language tag must be a string, got {type(tag).__name__}")
    match = _TAG_PATTERN.fullmatch(tag.strip())
    if match is None:
        raise ValueError(f"language tag {tag!r} is not of the form language[-Script][-REGION] (e.g. 'de', 'pt-BR', 'zh-Hant')")
    languages, scripts, regions = _cldr_codes()
    language, script, region = match["language"].lower(), match["script"], match["region"]
    if language not in languages:
        raise ValueError(f"language tag {tag!r}: {language!r} is not a language code known to CLDR (e.g. 'de', 'fil', 'yue')")
    parts = [language]
    if script:
        script = script.title()
        if script not in scripts:
            raise ValueError(f"language tag {tag!r}: {script!r} is not an ISO 15924 script known to CLDR (e.g. 'Hant', 'Cyrl')")
        parts.append(script)
    if region:
        region = region.upper()
        if region not in regions:
            raise ValueError(f"language tag {tag!r}: {region!r} is not a region known to CLDR (e.g. 'BR', '419')")
        parts.append(region)
    return "-".join(parts)


# ---------------------------------------------------------------------- reading files


@dataclass
class BitextReport:
    """What :func:`read_bitext` kept and skipped, with the first few skips as ``file:line: reason``.

    One report can collect several files (pass it to each call).

    Attributes:
        max_examples: How many skipped lines to keep in ``examples``.
        lines: Non-blank lines read (header lines included).
        kept: Pairs yielded.
        skipped: Skipped lines by reason (see :data:`SKIP_REASONS`).
        examples: The first ``max_examples`` skips, ``"file:line: reason: detail"``.
    """

    max_examples: int = 20
    lines: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        """Total skipped lines."""
        return sum(self.skipped.values())

    def skip(self, where: str, reason: str, detail: str) -> None:
        """Counts one skipped line and logs it as a warning."""
        self.skipped[reason] += 1
        message = f"{where}: {reason}: {detail}"
        if len(self.examples) < self.max_examples:
            self.examples.append(message)
            log.warning("skipping bitext line %s", message)
        elif self.num_skipped == self.max_examples + 1:
            log.warning("more bad bitext lines; further ones are counted but not logged")

    def summary(self) -> str:
        """One line: kept, skipped by reason."""
        reasons = ", ".join(f"{reason}={n}" for reason, n in sorted(self.skipped.items())) or "none"
        return f"{self.kept} pairs kept, {self.num_skipped} lines skipped ({reasons})"


def read_bitext(path: str | Path, report: BitextReport | None = None) -> Iterator[dict]:
    """Reads a ``.tsv`` or ``.jsonl`` bitext file, skipping and reporting bad lines.

    A generator cannot also return its report, so the caller passes one in and reads
    it after iterating (or while: it is updated line by line). Without one, skipped
    lines are still logged and a summary is logged at the end.

    Blank lines are ignored. A line is skipped, with its reason counted, when it is not
    UTF-8 (``not_utf8``), is invalid JSON (``bad_json``) or not a JSON object
    (``not_an_object``), has other than 3 tab-separated columns (``wrong_columns``),
    lacks ``src``/``tgt``/``lang`` or has a non-string one (``missing_side``), has an
    empty text after stripping (``empty_text``) or a malformed or unknown language tag
    (``bad_lang``, see :func:`normalize_language_tag`).

    Args:
        path: The file; the suffix (``.tsv``, ``.jsonl``, ``.ndjson``) picks the format.
        report: Collects counts and examples of skipped lines.

    Yields:
        ``{"src", "tgt", "lang", "source": "bitext:<file name>", "line": n}`` with texts
        stripped and ``lang`` normalised (``pt_br`` -> ``pt-BR``).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the suffix is not one of the supported ones.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _TSV_SUFFIXES + _JSONL_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported bitext format {suffix!r}; expected .tsv (src<TAB>tgt<TAB>lang) or .jsonl "
            '({"src", "tgt", "lang"} per line)'
        )
    if not path.is_file():
        raise FileNotFoundError(f"bitext file {path} does not exist")
    own_report = report is None
    report = BitextReport() if report is None else report
    parse = _parse_tsv_line if suffix in _TSV_SUFFIXES else _parse_json_line
    source = f"bitext:{path.name}"
    first = True
    # Binary lines, decoded one by one, so one bad byte skips a line and not the file.
    with path.open("rb") as lines:
        for line_number, raw in enumerate(lines, start=1):
            where = f"{path}:{line_number}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                report.lines += 1
                report.skip(where, "not_utf8", str(exc))
                continue
            if not line.strip():
                continue
            report.lines += 1
            if first:
                first = False
                line = line.lstrip("\ufeff")  # a byte-order mark from Windows editors
                if parse is _parse_tsv_line and [c.strip().lower() for c in line.split("\t")] == _TSV_HEADER:
                    continue
            try:
                src, tgt, lang = parse(line)
                lang = _check_pair(src, tgt, lang)
            except _BadLine as bad:
                report.skip(where, bad.reason, bad.detail)
                continue
            report.kept += 1
            yield {"src": src.strip(), "tgt": tgt.strip(), "lang": lang, "source": source, "line": line_number}
    if own_report and report.num_skipped:
        log.warning("%s: %s", path, report.summary())


class _BadLine(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _parse_tsv_line(line: str) -> tuple[Any, Any, Any]:
    columns = line.split("\t")
    if len(columns) != 3:
        raise _BadLine("wrong_columns", f"expected 3 tab-separated columns src, tgt, lang; got {len(columns)}")
    return columns[0], columns[1], columns[2].strip()


def _parse_json_line(line: str) -> tuple[Any, Any, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _BadLine("bad_json", f"{exc.msg} at column {exc.colno}") from None
    if not isinstance(record, dict):
        raise _BadLine("not_an_object", f'expected {{"src", "tgt", "lang"}}, got a JSON {type(record).__name__}')
    return record.get("src"), record.get("tgt"), record.get("lang")


def _check_pair(src: Any, tgt: Any, lang: Any) -> str:
    """Validates one pair; returns the normalised language tag."""
    for name, value in (("src", src), ("tgt", tgt), ("lang", lang)):
        if not isinstance(value, str):
            what = "missing" if value is None else f"a {type(value).__name__}, not a string"
            raise _BadLine("missing_side", f"field {name!r} is {what}")
    for name, value in (("src", src), ("tgt", tgt), ("lang", lang)):
        if not value.strip():
            raise _BadLine("empty_text", f"field {name!r} is empty")
    try:
        return normalize_language_tag(lang)
    except ValueError as exc:
        raise _BadLine("bad_lang", str(exc)) from None


def write_bitext_shards(
    path: str | Path,
    out_dir: str | Path,
    *,
    prefix: str = "bitext",
    max_count: int = 5000,
    overwrite: bool = False,
) -> tuple[list[Path], BitextReport]:
    """Writes a bitext file as parallel-text shards (the format of ``write_parallel_shards``).

    Each pair becomes ``{key}.txt`` (``src``) and ``{key}.json``
    (``{"src", "tgt", "lang", "source": "bitext:<file name>"}``), keyed
    ``{file stem}-L{line:09d}`` so a sample leads back to its line.

    Args:
        path: A ``.tsv`` or ``.jsonl`` file (see :func:`read_bitext`).
        out_dir: Output folder.
        prefix: Shard file name prefix.
        max_count: Maximum samples per shard.
        overwrite: Replace existing shards.

    Returns:
        The shard paths and the report of kept and skipped lines.

    Raises:
        ValueError: If the file has no valid pair (the message has the report summary).
        FileExistsError: If shards exist and ``overwrite`` is False.
    """
    from babeltower.datasets.writer import write_shards

    path = Path(path)
    report = BitextReport()
    stem = _UNSAFE_KEY_CHARS.sub("_", path.stem) or "bitext"

    def samples() -> Iterator[dict]:
        for pair in read_bitext(path, report):
            yield {
                "__key__": f"{stem}-L{pair['line']:09d}",
                "txt": pair["src"],
                "json": {"src": pair["src"], "tgt": pair["tgt"], "lang": pair["lang"], "source": pair["source"]},
            }

    iterator = samples()
    first = next(iterator, None)
    if first is None:
        examples = "; ".join(report.examples[:3])
        raise ValueError(f"{path}: no valid bitext pair: {report.summary()}" + (f"; e.g. {examples}" if examples else ""))
    shards = write_shards(_chain(first, iterator), out_dir, prefix=prefix, max_count=max_count, overwrite=overwrite)
    if report.num_skipped:
        log.warning("%s: %s", path, report.summary())
    return shards, report


def _chain(first: dict, rest: Iterator[dict]) -> Iterator[dict]:
    yield first
    yield from rest


# ----------------------------------------------------------------------- DataModule


class ParallelTextDecoder:
    """Raw shard sample -> ``{"src", "tgt", "lang", "source", "key"}``.

    Picklable for DataLoader workers. Raises on a missing or empty field, so
    :class:`~babeltower.datasets.pipeline.ShardStream` skips the sample and reports it.
    ``src`` is the json's ``src``, or the ``txt`` member when the json has none.
    """

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        key = sample["__key__"]
        where = f"{sample.get('__url__', '?')}/{key}"
        if "json" not in sample:
            raise KeyError(f"{where}: no json member with 'tgt' and 'lang'")
        meta = sample_json(sample)
        if "src" not in meta and "txt" in sample:
            try:
                meta["src"] = sample["txt"].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{where}.txt is not UTF-8: {exc}") from exc
        fields = {}
        for name in ("src", "tgt", "lang"):
            value = meta.get(name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}.json: field {name!r} must be a non-empty string, got {value!r}")
            fields[name] = value.strip()
        source = meta.get("source")
        return {**fields, "source": source if isinstance(source, str) and source else "unknown", "key": key}


class ParallelTextCollator:
    """Decoded pairs -> batch dict (see the module docstring); tokenizes with student and teacher.

    Args:
        student_tokenizer: transformers tokenizer for ``src`` and ``tgt``.
        teacher_tokenizer: transformers tokenizer for ``src``, or None for no
            ``teacher_src`` in the batch.
        max_text_length: Texts are truncated to this many tokens (special tokens included).
    """

    def __init__(self, student_tokenizer: Any, teacher_tokenizer: Any | None, max_text_length: int) -> None:
        self.student_tokenizer = student_tokenizer
        self.teacher_tokenizer = teacher_tokenizer
        self.max_text_length = max_text_length

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        from babeltower.modalities.text import tokenize

        if not samples:
            raise ValueError("ParallelTextCollator: got an empty list of samples")
        src = [s["src"] for s in samples]
        tgt = [s["tgt"] for s in samples]
        batch = {
            "src_text": src,
            "tgt_text": tgt,
            "lang": [s["lang"] for s in samples],
            "source": [s["source"] for s in samples],
            "key": [s["key"] for s in samples],
            "student_src": tokenize(self.student_tokenizer, src, self.max_text_length),  # (B, T) each
            "student_tgt": tokenize(self.student_tokenizer, tgt, self.max_text_length),  # (B, T') each
        }
        if self.teacher_tokenizer is not None:
            batch["teacher_src"] = tokenize(self.teacher_tokenizer, src, self.max_text_length)  # (B, T'') each
        return batch


class ParallelTextDataModule(StreamLoaders, L.LightningDataModule):
    """English -> translation pairs from webdataset shards, for distilling a text encoder.

    Reads the shards of ``write_parallel_shards`` / ``write_bitext_shards``; the
    streams, DDP splitting, epochs and mixing are those of ``ImageTextDataModule``.

    Args:
        train_shards: Training shards (see ``expand_shards``). A list of several specs
            makes each one a source, mixed batch by batch according to ``train_weights``.
        val_shards: Validation shards; one pass, no shuffling, last batch kept.
        student_tokenizer: Student tokenizer folder; None uses the packaged default.
            ``babeltower fit`` sets it to the student's.
        teacher_tokenizer: Teacher tokenizer folder (e.g. the sentence-transformers
            model folder); None leaves ``teacher_src`` out of the batch.
        batch_size: Training batch size per rank.
        val_batch_size: Validation batch size per rank (default ``batch_size``).
        num_workers: DataLoader worker processes per rank.
        samples_per_epoch: Global training samples per epoch; every rank then yields
            ``samples_per_epoch // (world_size * batch_size)`` batches. Needed for
            multi-GPU training and for mixing sources.
        resampled: Draw training shards with replacement.
        shuffle_buffer: Training sample shuffle buffer size.
        seed: Seed of shard order, sample order and mixing; None (default) follows the
            run's ``seed_everything``.
        max_text_length: Texts are truncated to this many tokens, for both tokenizers.
        train_weights: Mixing weights, one per entry of ``train_shards`` (default equal).
    """

    def __init__(
        self,
        train_shards: str | list[str],
        val_shards: str | list[str] | None = None,
        student_tokenizer: str | None = None,
        teacher_tokenizer: str | None = None,
        batch_size: int = 64,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        samples_per_epoch: int | None = None,
        resampled: bool = False,
        shuffle_buffer: int = 1000,
        seed: int | None = None,
        max_text_length: int = 64,
        train_weights: list[float] | None = None,
    ) -> None:
        super().__init__()
        sources = [train_shards] if isinstance(train_shards, str) else list(train_shards)
        if not sources:
            raise ValueError("ParallelTextDataModule.train_shards is empty; give a shard spec or a list of them")
        if train_weights is not None and len(train_weights) != len(sources):
            raise ValueError(
                f"ParallelTextDataModule.train_weights has {len(train_weights)} entries but train_shards has "
                f"{len(sources)} sources; give one weight per source"
            )
        if len(sources) > 1 and samples_per_epoch is None:
            raise ValueError(
                f"ParallelTextDataModule: mixing {len(sources)} train_shards sources needs samples_per_epoch "
                "(the mixture's epoch length); or give one spec string to read them as one source"
            )
        if max_text_length < 2:
            raise ValueError(f"ParallelTextDataModule.max_text_length={max_text_length} leaves no room for special tokens; use >= 2")
        self.save_hyperparameters()
        self.train_sources = sources
        self.val_shards = val_shards
        self.student_tokenizer_path = student_tokenizer
        self.teacher_tokenizer_path = teacher_tokenizer
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.samples_per_epoch = samples_per_epoch
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.max_text_length = max_text_length
        self.train_weights = train_weights
        self.student_tokenizer: Any = None
        self.teacher_tokenizer: Any = None
        self.train_stream: ShardStream | MixedStream | None = None
        self.val_stream: ShardStream | None = None

    def setup(self, stage: str | None = None) -> None:
        """Loads the tokenizers and builds the streams (shard lists are checked here)."""
        from babeltower.modalities import text

        if self.student_tokenizer is None:
            self.student_tokenizer = text.load_tokenizer_or_default(self.student_tokenizer_path)
        if self.teacher_tokenizer is None and self.teacher_tokenizer_path is not None:
            self.teacher_tokenizer = text.load_tokenizer(self.teacher_tokenizer_path)
        collate = ParallelTextCollator(self.student_tokenizer, self.teacher_tokenizer, self.max_text_length)
        if stage in (None, "fit") and self.train_stream is None:
            self.train_stream = self._build_train_stream(collate)
        if stage in (None, "fit", "validate") and self.val_shards is not None and self.val_stream is None:
            self.val_stream = single_pass_stream(
                self.val_shards,
                decode=ParallelTextDecoder(),
                collate=collate,
                batch_size=self.val_batch_size,
                seed=self.seed,
            )

    def _build_train_stream(self, collate: ParallelTextCollator) -> ShardStream | MixedStream:
        return weighted_train_stream(
            self.train_sources,
            self.train_weights,
            make_decoder=ParallelTextDecoder,
            collate=collate,
            batch_size=self.batch_size,
            shuffle_buffer=self.shuffle_buffer,
            seed=self.seed,
            resampled=self.resampled,
            samples_per_epoch=self.samples_per_epoch,
        )
