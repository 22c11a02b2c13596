"""Write webdataset shards from manifests, folders or Python iterables.

The shards follow the img2dataset / open_clip conventions, so any webdataset reader
can use them::

    shard-000000.tar
        00000000.jpg    encoded image (or .png/.webp; audio: .flac/.wav/.mp3)
        00000000.txt    caption / transcript, UTF-8
        00000000.json   metadata; always has "lang"

Example:
    >>> write_dataset("captions.jsonl", "shards/")          # or a folder of files
    [PosixPath('shards/shard-000000.tar'), ...]
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: File suffix -> shard extension for media files.
IMAGE_EXTENSIONS: dict[str, str] = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp"}
AUDIO_EXTENSIONS: dict[str, str] = {".flac": "flac", ".wav": "wav", ".mp3": "mp3"}
MEDIA_EXTENSIONS: dict[str, str] = {**IMAGE_EXTENSIONS, **AUDIO_EXTENSIONS}

# webdataset splits a member name at the first "." of its basename into key and
# extension, so keys must not contain dots; slashes would create directories.
_KEY_PATTERN = re.compile(r"[A-Za-z0-9_\-]+")


def _shard_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(re.escape(prefix) + r"-\d{6}\.tar")


def _encode_sample(sample: dict[str, Any], index: int) -> dict[str, Any]:
    """Validates one sample and turns every field into bytes."""
    if not isinstance(sample, dict):
        raise TypeError(f"sample #{index}: expected a dict with '__key__' and extension keys, got {type(sample).__name__}")
    key = sample.get("__key__")
    if not isinstance(key, str) or not _KEY_PATTERN.fullmatch(key):
        raise ValueError(
            f"sample #{index}: '__key__' must be a non-empty string of letters, digits, '_' or '-' "
            f"(webdataset splits names at the first '.'), got {key!r}"
        )
    encoded: dict[str, Any] = {"__key__": key}
    for ext, value in sample.items():
        if ext.startswith("_"):
            continue  # webdataset metadata such as __url__ is never written
        if isinstance(value, (bytes, bytearray, memoryview)):
            encoded[ext] = bytes(value)
        elif isinstance(value, str):
            encoded[ext] = value.encode("utf-8")
        elif ext == "json" or ext.endswith(".json"):
            try:
                encoded[ext] = json.dumps(value, ensure_ascii=False).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise TypeError(f"sample {key!r}: field {ext!r} is not JSON-serialisable: {exc}") from exc
        else:
            raise TypeError(
                f"sample {key!r}: field {ext!r} has type {type(value).__name__}; expected bytes "
                "(encoded media), str (txt) or a dict/list (json)"
            )
    if len(encoded) == 1:
        raise ValueError(f"sample {key!r}: has no data fields besides '__key__'")
    return encoded


def write_shards(
    samples: Iterable[dict],
    out_dir: str | Path,
    *,
    prefix: str = "shard",
    max_count: int = 1000,
    max_size_mb: float = 256,
    overwrite: bool = False,
) -> list[Path]:
    """Writes samples into ``out_dir/{prefix}-000000.tar``, ``...-000001.tar``, ...

    Each shard is first written as ``*.tar.partial`` and renamed when complete, so an
    interrupted run never leaves a truncated shard under a real shard name.

    Args:
        samples: Dicts with ``__key__`` and extension keys: ``jpg``/``png``/``webp``/
            ``flac``/``wav``/``mp3`` bytes, ``txt`` str, ``json`` dict.
        out_dir: Output folder (created if needed).
        prefix: Shard file name prefix.
        max_count: Maximum samples per shard.
        max_size_mb: Shard size (MB, 10^6 bytes) after which a new shard is started.
        overwrite: Replace existing ``{prefix}-NNNNNN.tar`` shards in ``out_dir``; all of
            them are deleted first so no stale shard of an earlier, larger run remains.

    Returns:
        Paths of the written shards, in order.

    Raises:
        FileExistsError: If a shard with this prefix exists and ``overwrite`` is False.
        ValueError: If there are no samples, or a sample key is invalid or repeated.
        TypeError: If a field cannot be encoded to bytes.
    """
    import webdataset as wds

    if max_count < 1:
        raise ValueError(f"write_shards: max_count must be >= 1, got {max_count}")
    if max_size_mb <= 0:
        raise ValueError(f"write_shards: max_size_mb must be > 0, got {max_size_mb}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pattern = _shard_pattern(prefix)
    existing = sorted(p for p in out_dir.iterdir() if pattern.fullmatch(p.name))
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more shards named {prefix}-NNNNNN.tar)" if len(existing) > 1 else ""
        raise FileExistsError(
            f"{existing[0]} already exists{more}; pass overwrite=True (CLI: --overwrite) to replace them, "
            "or choose another output folder or prefix"
        )
    for path in existing:
        path.unlink()

    iterator = iter(samples)
    first = next(iterator, None)
    if first is None:
        raise ValueError(f"write_shards: no samples to write to {out_dir}")

    written: list[Path] = []

    def finish_shard(partial_name: str) -> None:
        final = Path(partial_name[: -len(".partial")])
        os.replace(partial_name, final)
        written.append(final)

    # "%" in a user prefix would break ShardWriter's %-formatting of the shard number.
    name_pattern = str(out_dir / f"{prefix.replace('%', '%%')}-%06d.tar.partial")
    seen_keys: set[str] = set()
    sink = wds.ShardWriter(
        name_pattern,
        maxcount=max_count,
        maxsize=max_size_mb * 1e6,
        post=finish_shard,
        verbose=0,
        encoder=False,
        mtime=0,  # fixed timestamps make shards reproducible; an int, since a float adds a pax header per member
    )
    try:
        for index, sample in enumerate(_chain(first, iterator)):
            encoded = _encode_sample(sample, index)
            key = encoded["__key__"]
            if key in seen_keys:
                raise ValueError(f"sample #{index}: duplicate __key__ {key!r}; keys must be unique within a dataset")
            seen_keys.add(key)
            sink.write(encoded)
    except BaseException:
        # All or nothing: a failed run leaves neither a partial shard nor the complete
        # shards before it, so fixing the data and re-running needs no --overwrite.
        current = sink.fname
        sink.post = None
        sink.close()
        for leftover in [Path(current) if current else None, *written]:
            if leftover is not None and leftover.exists():
                leftover.unlink()
        raise
    sink.close()
    return written


def _chain(first: dict, rest: Iterator[dict]) -> Iterator[dict]:
    yield first
    yield from rest


def _read_media(path: Path, where: str) -> tuple[str, bytes]:
    extension = MEDIA_EXTENSIONS.get(path.suffix.lower())
    if extension is None:
        raise ValueError(f"{where}: unsupported media file type {path.suffix!r} ({path}); expected one of {sorted(MEDIA_EXTENSIONS)}")
    if not path.is_file():
        raise FileNotFoundError(f"{where}: media file {path} does not exist")
    return extension, path.read_bytes()


def samples_from_manifest(path: str | Path) -> Iterator[dict]:
    """Reads a JSONL manifest into shard samples.

    One JSON object per line::

        {"image": "images/cat.jpg", "text": "eine Katze", "lang": "de", "source": "web"}

    ``image`` (or ``audio``) is a file path, relative to the manifest's folder unless
    absolute; ``text`` becomes the ``txt`` member; every other field, ``lang``
    included, goes into ``json``. An optional ``key`` field sets the sample key
    (letters, digits, ``_``, ``-``); otherwise keys are the line's sample index.

    Args:
        path: The ``.jsonl`` file.

    Yields:
        Sample dicts for :func:`write_shards`.

    Raises:
        ValueError: Naming file, line and field, for bad JSON, a missing ``lang``, a
            missing or doubled media field or a bad ``text``/``key``.
        FileNotFoundError: If the manifest or a media file it names does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    root = path.parent
    index = 0
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            media_fields = [f for f in ("image", "audio") if f in record]
            if len(media_fields) != 1:
                raise ValueError(
                    f"{where}: needs exactly one of the fields 'image' or 'audio' (a file path), got {media_fields or 'neither'}"
                )
            media_field = media_fields[0]
            media_value = record.pop(media_field)
            if not isinstance(media_value, str) or not media_value:
                raise ValueError(f"{where}: field {media_field!r} must be a file path string, got {media_value!r}")
            lang = record.get("lang")
            if not isinstance(lang, str) or not lang:
                raise ValueError(f"{where}: missing field 'lang' (a language code such as \"de\"), got {lang!r}")
            media_path = Path(media_value)
            if not media_path.is_absolute():
                media_path = root / media_path
            allowed = IMAGE_EXTENSIONS if media_field == "image" else AUDIO_EXTENSIONS
            if media_path.suffix.lower() not in allowed:
                raise ValueError(
                    f"{where}: field {media_field!r} names {media_value!r}, which is not one of {sorted(allowed)}"
                )
            extension, data = _read_media(media_path, f"{where}: field {media_field!r}")
            key = record.pop("key", None)
            if key is None:
                key = f"{index:08d}"
            elif not isinstance(key, str) or not _KEY_PATTERN.fullmatch(key):
                raise ValueError(f"{where}: field 'key' must contain only letters, digits, '_' or '-', got {key!r}")
            sample: dict[str, Any] = {"__key__": key, extension: data}
            text = record.pop("text", None)
            if text is not None:
                if not isinstance(text, str):
                    raise ValueError(f"{where}: field 'text' must be a string, got {type(text).__name__}")
                sample["txt"] = text
            sample["json"] = record
            index += 1
            yield sample


def _folder_key(relative_stem: Path) -> str:
    # Keys must not contain "." or "/" (see _KEY_PATTERN); map them to "_" and "__".
    key = "__".join(relative_stem.parts)
    return re.sub(r"[^A-Za-z0-9_\-]", "_", key)


def samples_from_folder(path: str | Path) -> Iterator[dict]:
    """Reads a folder (recursively) of ``stem.jpg`` + ``stem.txt`` + ``stem.json`` files.

    Files are grouped by folder and stem. Each group needs exactly one media file
    (jpg/jpeg/png/webp/flac/wav/mp3) and a ``stem.json`` object with ``lang``;
    ``stem.txt`` is optional. Other files are ignored with a warning.

    Args:
        path: The folder.

    Yields:
        Sample dicts for :func:`write_shards`, in sorted path order.

    Raises:
        ValueError: Naming the file: missing/invalid json, json without ``lang``, a
            stem with two media files, or txt/json without a media file.
        NotADirectoryError: If ``path`` is not a folder.
    """
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder of media/txt/json files")
    groups: dict[Path, dict[str, Path]] = {}
    for file in sorted(root.rglob("*")):
        if not file.is_file() or file.name.startswith("."):
            continue
        suffix = file.suffix.lower()
        if suffix in MEDIA_EXTENSIONS:
            role = "media"
        elif suffix in (".txt", ".json"):
            role = suffix[1:]
        else:
            log.warning("samples_from_folder: ignoring %s (not media, .txt or .json)", file)
            continue
        stem = file.with_suffix("")
        group = groups.setdefault(stem, {})
        if role in group:
            raise ValueError(f"{file}: {group[role].name} has the same stem; keep one {role} file per sample")
        group[role] = file
    keys: dict[str, Path] = {}
    for stem, group in groups.items():
        if "media" not in group:
            orphan = group.get("json") or group.get("txt")
            raise ValueError(f"{orphan}: no media file with the same stem ({sorted(MEDIA_EXTENSIONS)})")
        media = group["media"]
        json_path = group.get("json")
        if json_path is None:
            raise ValueError(f"{media}: missing {stem.name}.json next to it with at least {{\"lang\": \"..\"}}")
        try:
            meta = json.loads(json_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{json_path}: invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
        if not isinstance(meta, dict):
            raise ValueError(f"{json_path}: expected a JSON object, got {type(meta).__name__}")
        if not isinstance(meta.get("lang"), str) or not meta["lang"]:
            raise ValueError(f"{json_path}: missing field 'lang' (a language code such as \"de\")")
        key = _folder_key(stem.relative_to(root))
        if key in keys:
            raise ValueError(f"{media}: its sample key {key!r} collides with {keys[key]}; rename one of them")
        keys[key] = media
        extension, data = _read_media(media, str(media))
        sample: dict[str, Any] = {"__key__": key, extension: data, "json": meta}
        if "txt" in group:
            sample["txt"] = group["txt"].read_text(encoding="utf-8").strip()
        yield sample


def write_dataset(
    source: str | Path,
    out_dir: str | Path,
    *,
    prefix: str = "shard",
    max_count: int = 1000,
    max_size_mb: float = 256,
    overwrite: bool = False,
) -> list[Path]:
    """Writes shards from a JSONL manifest or a folder (``babeltower data write``).

    Args:
        source: A ``.jsonl`` manifest (see :func:`samples_from_manifest`) or a folder
            (see :func:`samples_from_folder`).
        out_dir: Output folder for the shards.
        prefix: Shard file name prefix.
        max_count: Maximum samples per shard.
        max_size_mb: Shard size (MB) after which a new shard is started.
        overwrite: Replace existing shards.

    Returns:
        Paths of the written shards.

    Raises:
        FileNotFoundError: If ``source`` does not exist.
        ValueError: If ``source`` is neither a folder nor a ``.jsonl`` file, or its data
            is invalid (see the readers).
    """
    source = Path(source)
    if source.is_dir():
        samples = samples_from_folder(source)
    elif source.is_file():
        if source.suffix.lower() not in (".jsonl", ".ndjson"):
            raise ValueError(f"{source}: expected a .jsonl manifest or a folder of media/txt/json files")
        samples = samples_from_manifest(source)
    else:
        raise FileNotFoundError(f"data source {source} does not exist (expected a .jsonl manifest or a folder)")
    return write_shards(
        samples, out_dir, prefix=prefix, max_count=max_count, max_size_mb=max_size_mb, overwrite=overwrite
    )
