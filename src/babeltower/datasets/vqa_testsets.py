"""VQA test sets, read for an evaluator: shard scenes and CVQA files, without Lightning.

Two readers, both returning plain item dicts that :mod:`babeltower.eval.vqa` scores:

- :func:`iter_vqa_items`: every (scene, question, language) of VQA shards (written by
  ``babeltower data synth vqa``), in shard order, through
  :func:`~babeltower.datasets.pipeline.eval_samples`: the same tar reading and sample
  checks as training (:func:`parse_vqa_meta`, :func:`decode_sample_image`); a corrupt
  scene is skipped, logged and returned in the bad-sample list.
- :func:`load_cvqa`: CVQA's published format (``.jsonl``, ``.json`` or ``.parquet``);
  a bad record raises, naming the file, the record and the field.

The shard checks and :func:`question_item` live here, not in
:mod:`babeltower.datasets.vqa`, so that reading a test set needs no Lightning; the
training DataModule imports them from this module.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

from babeltower.datasets.pipeline import eval_samples, sample_json
from babeltower.modalities.image import ImageTransform, decode_image

#: Image members a scene sample may carry, first found wins (as
#: :data:`babeltower.datasets.datamodule.IMAGE_KEYS`, which is not imported: that module needs Lightning).
IMAGE_KEYS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")

_QUESTION_FIELDS = ("qid", "type", "form", "answer_key", "texts", "paraphrases", "answer", "answers", "options", "label")


# ------------------------------------------------------------------ VQA shards
def parse_vqa_meta(sample: dict[str, Any], where: str) -> dict[str, Any]:
    """The json member of a VQA shard sample, checked; raises naming the field that is wrong."""
    if "json" not in sample:
        raise KeyError(f"{where}: no json member with 'questions'")
    meta = sample_json(sample)
    questions = meta.get("questions")
    if not isinstance(questions, list) or not questions:
        raise ValueError(f"{where}.json: 'questions' must be a non-empty list (write shards with `babeltower data synth vqa`)")
    for i, question in enumerate(questions):
        missing = [f for f in _QUESTION_FIELDS if f not in question]
        if missing:
            raise KeyError(f"{where}.json: questions[{i}] lacks {missing}")
    return meta


def decode_sample_image(sample: dict[str, Any], where: str):
    """The scene's image (first of :data:`IMAGE_KEYS`), decoded; raises naming the sample."""
    image_key = next((k for k in IMAGE_KEYS if k in sample), None)
    if image_key is None:
        fields = sorted(k for k in sample if not k.startswith("__"))
        raise KeyError(f"{where}: no image member ({'/'.join(IMAGE_KEYS)}); it has {fields}")
    return decode_image(sample[image_key], where=f"{where}.{image_key}")


def question_item(question: dict[str, Any], lang: str, text: str) -> dict[str, Any]:
    """One (question, language) as the collate function and the evaluator expect it."""
    return {
        "question": text,
        "lang": lang,
        "answer": question["answer"][lang],
        "answers": list(question["answers"][lang]),
        "options": list(question["options"][lang]),
        "label": int(question["label"][lang]),
        "qtype": question["type"],
        "form": question["form"],
        "qid": question["qid"],
        "answer_key": question["answer_key"],
    }


def _scene_decoder(image_size: int):
    """Raw scene sample -> ``{"pixel_values", "key", "meta"}`` (evaluation transform, no jitter)."""
    transform = ImageTransform(image_size, train=False)

    def decode(sample: dict) -> dict:
        where = f"{sample.get('__url__', '?')}/{sample['__key__']}"
        meta = parse_vqa_meta(sample, where)
        image = decode_sample_image(sample, where)
        return {"pixel_values": transform(image), "key": sample["__key__"], "meta": meta}

    return decode


def iter_vqa_items(shards, image_size: int, languages: Optional[list[str]] = None,
                   question_types: Optional[list[str]] = None) -> tuple[list[dict], list[dict]]:
    """Every (scene, question, language) item of VQA shards, in shard order.

    Args:
        shards: Shard specification (folder, brace pattern, glob, list).
        image_size: Image side in pixels (the model's vision tower).
        languages: Keep only these question languages (None: all).
        question_types: Keep only these question types (None: all).

    Returns:
        (items, bad_samples): items carry ``pixel_values`` (shared per scene), ``key``,
        ``group`` (scene key + question id, shared across languages) and the fields of
        :func:`question_item`; bad samples are the skipped corrupt scenes
        ``{"shard", "key", "reason"}``.
    """
    items: list[dict] = []
    bad: list[dict] = []
    for scene in eval_samples(shards, _scene_decoder(image_size), bad):
        for question in scene["meta"]["questions"]:
            if question_types and question["type"] not in question_types:
                continue
            for lang in sorted(question["texts"]):
                if languages and lang not in languages:
                    continue
                item = question_item(question, lang, question["texts"][lang])
                item.update(pixel_values=scene["pixel_values"], key=scene["key"], group=f"{scene['key']}|{question['qid']}")
                items.append(item)
    return items, bad


# ------------------------------------------------------------------ CVQA
_CVQA_FIELDS = ("Question", "Translated Question", "Options", "Translated Options", "Label", "Category", "Subset")
# CVQA's Subset is "('Language', 'Country')"; these map its language names to our codes.
CVQA_LANGUAGE_CODES: dict[str, str] = {
    "english": "en", "german": "de", "french": "fr", "spanish": "es", "russian": "ru", "arabic": "ar", "hindi": "hi",
    "korean": "ko", "chinese": "zh", "japanese": "ja", "indonesian": "id", "portuguese": "pt", "bengali": "bn",
    "marathi": "mr", "tamil": "ta", "telugu": "te", "urdu": "ur", "malay": "ms", "mongolian": "mn", "bulgarian": "bg",
    "romanian": "ro", "amharic": "am", "igbo": "ig", "irish": "ga", "breton": "br", "norwegian": "no",
    "filipino": "fil", "swahili": "sw", "sinhala": "si", "javanese": "jv", "sundanese": "su", "minangkabau": "min",
    "oromo": "om", "egyptian arabic": "ar", "moroccan arabic": "ar", "hokkien": "nan", "yoruba": "yo",
}


def _parse_subset(subset: str, where: str) -> tuple[str, str]:
    match = re.fullmatch(r"\(\s*['\"](.+?)['\"]\s*,\s*['\"](.+?)['\"]\s*\)", subset.strip())
    if match:
        return match.group(1), match.group(2)
    if "-" in subset:
        language, country = subset.split("-", 1)
        return language.strip(), country.strip()
    raise ValueError(f"{where}: Subset {subset!r} is not CVQA's \"('Language', 'Country')\" form")


def _options_field(value: Any, where: str, field: str) -> list[str]:
    if isinstance(value, str):  # an early CVQA release stored the list as its Python repr
        import ast

        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError) as exc:
            raise ValueError(f"{where}: field {field!r} is a string that is not a list literal: {value[:60]!r}") from exc
    if not isinstance(value, (list, tuple)) or len(value) < 2 or not all(isinstance(o, str) for o in value):
        raise ValueError(f"{where}: field {field!r} must be a list of at least 2 option strings, got {value!r}")
    return list(value)


def load_cvqa(path: str | Path, image_root: str | Path | None = None) -> list[dict]:
    """Reads CVQA's published format into evaluation items.

    Accepts a ``.jsonl`` (one record a line), a ``.json`` (a list of records) or, with
    pyarrow installed, a ``.parquet`` file of the Hugging Face release. Each record has
    ``Question``, ``Translated Question`` (English), ``Options``, ``Translated Options``
    (four strings each), ``Label`` (index of the right option), ``Category``, ``Subset``
    (``"('Japanese', 'Japan')"``) and ``ID``; the image comes from ``image`` (bytes,
    ``{"bytes": ...}`` or a path) or ``image_path`` (relative to ``image_root``, default
    the file's folder).

    Returns:
        One item per record: ``id``, ``lang`` (code of the subset's language, or its
        name lowercased when unknown), ``language``, ``country``, ``subset``,
        ``category``, ``question``, ``question_en``, ``options``, ``options_en``,
        ``label`` and ``image`` (encoded bytes).

    Raises:
        ValueError: A record misses a field or has a bad one (file, line and field named).
        FileNotFoundError: The file or an image path does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CVQA file {path} does not exist")
    image_root = Path(image_root) if image_root is not None else path.parent
    records = _read_records(path)
    items = []
    for index, record in enumerate(records):
        where = f"{path}:{index + 1}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        missing = [f for f in _CVQA_FIELDS if f not in record]
        if missing:
            raise ValueError(f"{where}: missing CVQA field(s) {missing}; a record needs {list(_CVQA_FIELDS)}")
        options = _options_field(record["Options"], where, "Options")
        options_en = _options_field(record["Translated Options"], where, "Translated Options")
        if len(options) != len(options_en):
            raise ValueError(f"{where}: 'Options' has {len(options)} entries but 'Translated Options' {len(options_en)}")
        label = record["Label"]
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(options):
            raise ValueError(f"{where}: 'Label' must be an option index 0..{len(options) - 1}, got {label!r}")
        language, country = _parse_subset(str(record["Subset"]), where)
        items.append({
            "id": str(record.get("ID", index)),
            "lang": CVQA_LANGUAGE_CODES.get(language.lower(), language.lower()),
            "language": language,
            "country": country,
            "subset": f"{language}-{country}",
            "category": str(record["Category"]),
            "question": str(record["Question"]),
            "question_en": str(record["Translated Question"]),
            "options": options,
            "options_en": options_en,
            "label": label,
            "image": _record_image(record, image_root, where),
        })
    return items


def _read_records(path: Path) -> list:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: invalid JSON: {exc}") from exc
        return records
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of CVQA records, got {type(data).__name__}")
        return data
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ImportError(f"reading {path} needs pyarrow: pip install pyarrow (or convert it to .jsonl)") from exc
        return pq.read_table(path).to_pylist()
    raise ValueError(f"{path}: unknown CVQA file type {suffix!r}; use .jsonl, .json or .parquet")


def _record_image(record: dict, image_root: Path, where: str) -> bytes:
    image = record.get("image")
    if isinstance(image, dict):
        image = image.get("bytes") or image.get("path")
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    if isinstance(image, str) and image:
        candidate = Path(image) if Path(image).is_absolute() else image_root / image
        if candidate.is_file():
            return candidate.read_bytes()
        import base64
        import binascii

        try:
            return base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            raise FileNotFoundError(f"{where}: image {candidate} does not exist") from None
    path = record.get("image_path")
    if isinstance(path, str) and path:
        candidate = Path(path) if Path(path).is_absolute() else image_root / path
        if not candidate.is_file():
            raise FileNotFoundError(f"{where}: image_path {candidate} does not exist")
        return candidate.read_bytes()
    raise ValueError(f"{where}: no image: give 'image' (bytes, {{'bytes': ...}} or a path) or 'image_path'")
