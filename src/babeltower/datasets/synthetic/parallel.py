"""Parallel text (English -> other language) for distilling a multilingual text encoder.

The recipe of Reimers & Gurevych (2020), "Making Monolingual Sentence Embeddings
Multilingual using Knowledge Distillation", needs pairs ``(src, tgt)`` where ``src`` is
English (the teacher's language) and ``tgt`` its translation; the student learns
``student(src) ~ teacher(src)`` and ``student(tgt) ~ teacher(src)``. Two built-in
sources provide such pairs without a download:

* ``scenes``: the synthetic scene grammar (:mod:`babeltower.datasets.synthetic.scenes`),
  with its compositional split: ``val`` pairs describe only held-out (colour, shape)
  combinations, whose words all occur in training but never together.
* ``cldr``: real localized strings from Unicode CLDR, as shipped with ``babel``:
  language, territory, month, weekday and unit names in :data:`CLDR_LOCALES`. A
  deterministic 5% of the entries (by source and key, in every locale at once) is
  held out as ``val``.

For a multilingual teacher (multilingual-e5-small imported by
:func:`babeltower.models.e5.import_e5`, which embeds every language itself), two more
real, monolingual sources give text far beyond the scene grammar; a monolingual sample
has ``src == tgt`` (the student learns ``student(x) ~ teacher(x)``):

* ``udhr``: the Universal Declaration of Human Rights excerpts that ``gflanguages``
  ships as sample texts, one line per sample, for the languages of
  :data:`XLMR_LANGUAGES` (about 90). The lines of the ``specimen_32`` field (one article,
  e.g. article 24 "Everyone has the right to rest and leisure") are held out as ``val``
  in every language; a val line also contained in a training line is dropped.
* ``wordfreq``: the most frequent words of the 42 ``wordfreq`` languages; a
  deterministic 5% of (language, word) is held out.

Shards (``write_parallel_shards``) use the writer's conventions, so any webdataset
reader sees the English side as ``txt``::

    train/parallel-000000.tar
        scenes-00000012-de.txt    "two large red circles at the top"
        scenes-00000012-de.json   {"src": ..., "tgt": "zwei große rote Kreise oben",
                                   "lang": "de", "source": "scenes"}

Example:
    >>> next(scene_pairs("train", 1, languages=["fr"]))
    {'src': 'two small yellow squares on the right', 'tgt': 'deux petits carrés jaunes à droite', 'lang': 'fr', 'source': 'scenes', 'scene': 0}
    >>> [p["tgt"] for p in cldr_pairs(["de"]) if p["key"] == "DE"]
    ['Deutschland']
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from babeltower.datasets.synthetic.scenes import LANGUAGES, caption, sample_scenes

#: CLDR locales of :func:`cldr_pairs` by default: 49 locales over Latin, Cyrillic, Greek,
#: Arabic, Hebrew, Brahmic scripts, Thai, Lao, Khmer, Myanmar, Hangul, Han (simplified
#: and traditional), Kana, Georgian, Armenian and Ethiopic; the same set the default
#: tokenizer was trained on (scripts/build_default_tokenizer.py), minus English.
CLDR_LOCALES: tuple[str, ...] = (
    "de", "fr", "es", "it", "pt", "nl", "sv", "da", "nb", "fi", "pl", "cs", "hu", "ro",
    "tr", "vi", "id", "sw", "ru", "uk", "bg", "sr", "el", "ar", "fa", "ur", "he", "hi", "mr",
    "ne", "bn", "ta", "te", "kn", "ml", "gu", "pa", "th", "lo", "km", "my", "ko", "zh",
    "zh_Hant", "ja", "ka", "hy", "am", "yo",
)

#: The CLDR tables :func:`cldr_pairs` reads, as their ``source`` names.
CLDR_SOURCES: tuple[str, ...] = ("cldr:languages", "cldr:territories", "cldr:months", "cldr:weekdays", "cldr:units")

#: Fraction of CLDR entries held out for ``val`` (see :func:`cldr_split`).
CLDR_VAL_FRACTION: float = 0.05

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-]")


# --------------------------------------------------------------------------- scenes


def scene_pairs(
    split: str,
    num: int,
    languages: list[str] | None = None,
    seed: int = 0,
    *,
    unique: bool = False,
) -> Iterator[dict]:
    """English -> other-language caption pairs of synthetic scenes.

    Scenes come from :func:`~babeltower.datasets.synthetic.scenes.sample_scenes`, so the
    split is the scene data's own: ``train`` scenes never show a held-out (colour,
    shape) combination and ``val`` scenes show only those.

    Captions depend on the scene's attributes, not its render seed, so a split has few
    distinct captions (at most 870 train and 210 val per language with the default
    held-out set) and a large ``num`` repeats them.

    Args:
        split: ``"train"`` or ``"val"``.
        num: Number of scenes drawn; each gives one pair per language.
        languages: Target languages, a subset of ``scenes.LANGUAGES``; None uses all of
            them. English is skipped (the trainer uses ``src`` for the identity pair).
        seed: Dataset seed (scenes and held-out combinations), as in ``sample_scenes``.
        unique: Skip a scene whose English caption was already produced, so that in
            retrieval over the pairs every query has exactly one right answer. Then
            fewer than ``num`` scenes contribute.

    Yields:
        ``{"src", "tgt", "lang", "source": "scenes", "scene": index}``, where ``scene`` is
        the index of the scene in ``sample_scenes(num, split, seed)``.

    Raises:
        ValueError: If ``split`` is unknown, ``num`` is negative or a language has no
            scene captions.
    """
    targets = _scene_languages(languages)
    if num < 0:
        raise ValueError(f"scene_pairs: num must be >= 0, got {num}")
    seen: set[str] = set()
    for index, spec in enumerate(sample_scenes(num, split, seed)):
        src = caption(spec, "en")
        if unique:
            if src in seen:
                continue
            seen.add(src)
        for lang in targets:
            yield {"src": src, "tgt": caption(spec, lang), "lang": lang, "source": "scenes", "scene": index}


def _scene_languages(languages: list[str] | None) -> list[str]:
    chosen = list(LANGUAGES) if languages is None else list(languages)
    unknown = [lang for lang in chosen if lang not in LANGUAGES]
    if unknown:
        raise ValueError(f"no synthetic-scene captions for languages {unknown}; choose from {LANGUAGES}")
    targets = [lang for lang in chosen if lang != "en"]
    if not targets:
        raise ValueError(f"languages={chosen} has no non-English language; choose from {LANGUAGES[1:]}")
    return targets


# ----------------------------------------------------------------------------- CLDR


def cldr_language_tag(locale_name: str) -> str:
    """A babel locale name as a BCP-47 tag: ``zh_Hant`` -> ``zh-Hant``, ``pt_BR`` -> ``pt-BR``."""
    return locale_name.replace("_", "-")


def cldr_split(source: str, key: str) -> str:
    """``"val"`` for a deterministic :data:`CLDR_VAL_FRACTION` of CLDR entries, else ``"train"``.

    The split hashes ``(source, key)`` and not the locale, so an entry (say, the
    territory ``DE``) is held out in every language at once and the student never saw
    the concept in training.
    """
    digest = hashlib.sha256(f"{source}\x00{key}".encode("utf-8")).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < CLDR_VAL_FRACTION else "train"


def _cldr_tables(locale) -> dict[str, dict[str, str]]:
    """``source -> {key: name}`` for one babel Locale, keys as strings."""
    from babel.units import get_unit_name

    # Unit ids are CLDR's ("length-meter"); babel exposes their list only through the
    # raw data, but their names through get_unit_name (with parent-locale fallback).
    unit_ids = sorted(locale._data["unit_display_names"])
    units = {unit: get_unit_name(unit, length="long", locale=locale) for unit in unit_ids}
    return {
        "cldr:languages": dict(locale.languages),
        "cldr:territories": dict(locale.territories),
        "cldr:months": {f"month-{k}": v for k, v in locale.months["format"]["wide"].items()},
        # babel numbers weekdays from Monday = 0.
        "cldr:weekdays": {f"weekday-{k}": v for k, v in locale.days["format"]["wide"].items()},
        "cldr:units": {unit: name for unit, name in units.items() if name},
    }


def cldr_pairs(locales: list[str] | None = None, split: str | None = None) -> Iterator[dict]:
    """English -> localized names from Unicode CLDR (``babel``'s locale data).

    For each locale and table (:data:`CLDR_SOURCES`) the English name of a key is
    paired with its name in the locale, e.g. territory ``DE``: ``"Germany"`` ->
    ``"Deutschland"``. Entries whose localized name is empty, missing in English or
    equal to the English one (ignoring case) are skipped: they teach nothing about the
    language. Order: locales as given, then tables as in ``CLDR_SOURCES``, then sorted
    keys.

    Args:
        locales: babel locale names (``de``, ``zh_Hant``, ...); None uses
            :data:`CLDR_LOCALES`.
        split: ``"train"`` or ``"val"`` keeps only that part (see :func:`cldr_split`);
            None yields both.

    Yields:
        ``{"src", "tgt", "lang", "source", "key"}``, ``lang`` a BCP-47 tag
        (``zh-Hant``) and ``key`` the CLDR key (``DE``, ``month-1``, ``length-meter``).

    Raises:
        ValueError: If a locale is unknown to babel, is English, or ``split`` is not
            None, ``"train"`` or ``"val"``.
    """
    from babel import Locale, UnknownLocaleError

    if split not in (None, "train", "val"):
        raise ValueError(f"cldr_pairs: split must be None, 'train' or 'val', got {split!r}")
    names = list(CLDR_LOCALES) if locales is None else list(locales)
    parsed = []
    for name in names:
        try:
            locale = Locale.parse(name)
        except (UnknownLocaleError, ValueError, TypeError) as exc:
            raise ValueError(
                f"cldr_pairs: locale {name!r} is not in babel's CLDR data ({exc}); use names such as 'de', "
                "'pt_BR', 'zh_Hant' (see babel.localedata.locale_identifiers())"
            ) from exc
        if locale.language == "en":
            raise ValueError(f"cldr_pairs: locale {name!r} is English, the source side; remove it from locales")
        parsed.append((name, locale))
    english = _cldr_tables(Locale("en"))
    for name, locale in parsed:
        lang = cldr_language_tag(name)
        for source, table in _cldr_tables(locale).items():
            english_table = english[source]
            for key in sorted(table):
                tgt, src = table[key], english_table.get(key)
                if not tgt or not src or tgt.strip().casefold() == src.strip().casefold():
                    continue
                if split is not None and cldr_split(source, key) != split:
                    continue
                yield {"src": src, "tgt": tgt, "lang": lang, "source": source, "key": key}


# ------------------------------------------------------- monolingual real text (UDHR, words)

#: XLM-R's 100 training languages (Conneau et al. 2020), which multilingual-e5 inherits, as
#: ISO 639-1 codes where one exists; the UDHR source keeps only these.
XLMR_LANGUAGES: tuple[str, ...] = (
    "af", "am", "ar", "as", "az", "be", "bg", "bn", "br", "bs", "ca", "cs", "cy", "da", "de", "el", "en", "eo",
    "es", "et", "eu", "fa", "fi", "fil", "fr", "fy", "ga", "gd", "gl", "gu", "ha", "he", "hi", "hr", "hu", "hy",
    "id", "is", "it", "ja", "jv", "ka", "kk", "km", "kn", "ko", "ku", "ky", "la", "lo", "lt", "lv", "mg", "mk",
    "ml", "mn", "mr", "ms", "my", "nb", "ne", "nl", "nn", "om", "or", "pa", "pl", "ps", "pt", "ro", "ru", "sa",
    "sd", "si", "sk", "sl", "so", "sq", "sr", "su", "sv", "sw", "ta", "te", "th", "tl", "tr", "ug", "uk", "ur",
    "uz", "vi", "xh", "yi", "zh",
)

#: gflanguages sample-text fields used for training, and the one held out (a different article).
UDHR_TRAIN_FIELDS: tuple[str, ...] = ("specimen_16", "specimen_21", "specimen_36", "specimen_48", "tester", "styles")
UDHR_VAL_FIELDS: tuple[str, ...] = ("specimen_32",)

# Second scripts kept besides CLDR's likely script of a language (gflanguages also lists
# transcriptions such as English in Deseret, which teach an encoder nothing useful).
_UDHR_EXTRA_SCRIPTS: frozenset[str] = frozenset({"zh_Hant", "sr_Latn"})

#: Fraction of wordfreq words held out for ``val``.
WORDFREQ_VAL_FRACTION: float = 0.05


def _held_out(fraction: float, *parts: str) -> bool:
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _udhr_records(languages: list[str] | None) -> list[tuple[str, str, dict]]:
    """(gflanguages id, BCP-47 tag, {field: text}) for every kept language with a sample text."""
    try:
        import gflanguages
    except ImportError as error:
        raise ImportError("the UDHR source needs gflanguages: pip install 'babeltower[text]' (gflanguages==0.7.11)") from error
    wanted = set(XLMR_LANGUAGES if languages is None else languages)
    records = []
    table = gflanguages.LoadLanguages()
    from babel.core import get_global

    likely = get_global("likely_subtags")

    def usual_script(lang_id: str) -> bool:
        lang, _, script = lang_id.partition("_")
        default = likely.get(lang, "").split("_")
        return lang_id in _UDHR_EXTRA_SCRIPTS or (len(default) > 1 and default[1] == script)

    ids = sorted(k for k, v in table.items() if v.HasField("sample_text") and k.split("_")[0] in wanted and usual_script(k))
    scripts_per_lang = Counter(k.split("_")[0] for k in ids)
    for lang_id in ids:
        lang, script = lang_id.split("_", 1)
        tag = lang if scripts_per_lang[lang] == 1 else f"{lang}-{script}"
        sample = table[lang_id].sample_text
        fields = {f.name: value for f, value in sample.ListFields() if isinstance(value, str)}
        records.append((lang_id, tag, fields))
    if languages is not None:
        found = {k.split("_")[0] for k in ids}
        missing = sorted(set(languages) - found)
        if missing:
            raise ValueError(f"udhr_texts: gflanguages has no sample text for {missing}")
    return records


def udhr_texts(languages: list[str] | None = None, split: str | None = None, min_words: int = 3) -> Iterator[dict]:
    """Monolingual UDHR lines from gflanguages' sample texts (``src == tgt``).

    Args:
        languages: language codes (default :data:`XLMR_LANGUAGES`).
        split: ``"train"`` (lines of :data:`UDHR_TRAIN_FIELDS`), ``"val"`` (lines of
            :data:`UDHR_VAL_FIELDS` that no training line contains) or None (both).
        min_words: shorter lines are skipped (counting characters / 4 for scripts
            written without spaces).

    Yields:
        ``{"src", "tgt", "lang", "source": "udhr", "key"}``, each line once per language.
    """
    if split not in (None, "train", "val"):
        raise ValueError(f"udhr_texts: split must be None, 'train' or 'val', got {split!r}")
    for lang_id, tag, fields in _udhr_records(languages):
        def lines(names):
            out = []
            for name in names:
                for line in fields.get(name, "").split("\n"):
                    line = " ".join(line.split())
                    if max(len(line.split()), len(line) // 4) >= min_words and line not in out:
                        out.append(line)
            return out

        train = lines(UDHR_TRAIN_FIELDS)
        val = [line for line in lines(UDHR_VAL_FIELDS) if not any(line in t or t in line for t in train)]
        chosen = {"train": train, "val": val, None: train + val}[split]
        for i, line in enumerate(chosen):
            yield {"src": line, "tgt": line, "lang": tag, "source": "udhr", "key": f"{lang_id}-{i:03d}"}


def wordfreq_texts(languages: list[str] | None = None, per_language: int = 2000, split: str | None = None) -> Iterator[dict]:
    """The ``per_language`` most frequent words of each wordfreq language (``src == tgt``).

    Words without a letter (numbers, punctuation) are skipped. A deterministic
    :data:`WORDFREQ_VAL_FRACTION` of (language, word) is ``val``.

    Yields:
        ``{"src", "tgt", "lang", "source": "wordfreq", "key"}``.
    """
    try:
        import wordfreq
    except ImportError as error:
        raise ImportError("the word-list source needs wordfreq: pip install 'babeltower[text]' (wordfreq==3.1.1)") from error
    if split not in (None, "train", "val"):
        raise ValueError(f"wordfreq_texts: split must be None, 'train' or 'val', got {split!r}")
    available = sorted(wordfreq.available_languages("best"))
    chosen = available if languages is None else list(languages)
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ValueError(f"wordfreq_texts: wordfreq has no word list for {unknown}; available: {available}")
    for lang in chosen:
        for rank, word in enumerate(wordfreq.top_n_list(lang, per_language, wordlist="best")):
            if not any(ch.isalpha() for ch in word):
                continue
            part = "val" if _held_out(WORDFREQ_VAL_FRACTION, "wordfreq", lang, word) else "train"
            if split is None or part == split:
                yield {"src": word, "tgt": word, "lang": lang, "source": "wordfreq", "key": f"{rank:05d}"}


# ---------------------------------------------------------------------------- shards


def _sample(key: str, pair: dict) -> dict:
    return {
        "__key__": _UNSAFE_KEY_CHARS.sub("_", key),
        "txt": pair["src"],
        "json": {"src": pair["src"], "tgt": pair["tgt"], "lang": pair["lang"], "source": pair["source"]},
    }


def _split_samples(
    split: str, num_scenes: int, *, cldr: bool, languages: list[str] | None, locales: list[str] | None, seed: int,
    progress: bool, udhr: bool = False, udhr_languages: list[str] | None = None, words_per_language: int = 0,
    word_languages: list[str] | None = None,
) -> list[dict]:
    from tqdm.auto import tqdm

    samples = []
    # Val scene pairs are de-duplicated: they are the retrieval evaluation set, and two
    # copies of one caption would make a right answer count as wrong.
    pairs = scene_pairs(split, num_scenes, languages, seed, unique=split == "val")
    per_scene = len(_scene_languages(languages))
    bar = tqdm(pairs, total=num_scenes * per_scene, desc=f"parallel/{split} scenes", unit="pair", disable=not progress)
    for pair in bar:
        samples.append(_sample(f"scenes-{pair['scene']:08d}-{pair['lang']}", pair))
    if cldr:
        for pair in cldr_pairs(locales, split=split):
            source = pair["source"].split(":", 1)[1]
            samples.append(_sample(f"cldr-{source}-{pair['lang']}-{pair['key']}", pair))
    if udhr:
        for pair in udhr_texts(udhr_languages, split=split):
            samples.append(_sample(f"udhr-{pair['key']}", pair))
    if words_per_language:
        for pair in wordfreq_texts(word_languages, words_per_language, split=split):
            samples.append(_sample(f"wordfreq-{pair['lang']}-{pair['key']}", pair))
    if split == "train":
        # Shards are written in one order and the reader's shuffle buffer is small, so
        # interleave sources and languages here; otherwise a batch would be all-CLDR or
        # all one language.
        random.Random(f"parallel:{seed}:{split}").shuffle(samples)
    return samples


def _counts(samples: list[dict]) -> dict:
    return {
        "total": len(samples),
        "by_lang": dict(sorted(Counter(s["json"]["lang"] for s in samples).items())),
        "by_source": dict(sorted(Counter(s["json"]["source"] for s in samples).items())),
    }


def write_parallel_shards(
    out_dir: str | Path,
    *,
    num_scene_train: int = 20000,
    num_scene_val: int = 500,
    cldr: bool = True,
    languages: list[str] | None = None,
    locales: list[str] | None = None,
    seed: int = 0,
    samples_per_shard: int = 5000,
    overwrite: bool = False,
    progress: bool = True,
    udhr: bool = False,
    udhr_languages: list[str] | None = None,
    words_per_language: int = 0,
    word_languages: list[str] | None = None,
) -> dict[str, list[Path]]:
    """Writes train and val shards of English -> other-language text pairs.

    Each sample is ``{key}.txt`` (the English ``src``) and ``{key}.json`` with
    ``{"src", "tgt", "lang", "source"}``. Keys say where a pair came from:
    ``scenes-{scene:08d}-{lang}`` or ``cldr-{table}-{lang}-{cldr key}``. Training samples
    are shuffled before writing; val samples keep generation order (scenes, then CLDR).
    The counts per split, language and source are printed and saved as
    ``out_dir/counts.json``.

    Args:
        out_dir: Shards go to ``out_dir/train/parallel-*.tar`` and ``out_dir/val/parallel-*.tar``.
        num_scene_train: Training scenes (each gives one pair per language).
        num_scene_val: Validation scenes drawn; repeated captions are dropped (see
            ``scene_pairs(unique=True)``), so fewer remain.
        cldr: Add the CLDR pairs (:func:`cldr_pairs`), split by :func:`cldr_split`.
        languages: Scene target languages (default: all but English).
        locales: CLDR locales (default: :data:`CLDR_LOCALES`).
        seed: Scene dataset seed; also seeds the training shuffle.
        samples_per_shard: Maximum samples per shard.
        overwrite: Replace existing shards instead of refusing.
        progress: Show a tqdm progress bar for scene pairs.
        udhr: Add monolingual UDHR lines (:func:`udhr_texts`; for a multilingual teacher).
        udhr_languages: Their languages (default :data:`XLMR_LANGUAGES`).
        words_per_language: Add this many frequent words per language (:func:`wordfreq_texts`); 0: none.
        word_languages: Their languages (default: every wordfreq language).

    Returns:
        ``{"train": [...], "val": [...]}`` shard paths; a split without samples gets [].

    Raises:
        FileExistsError: If shards exist and ``overwrite`` is False.
        ValueError: If a count is negative, or a language or locale is unknown.
    """
    from babeltower.datasets.writer import write_shards

    if num_scene_train < 0 or num_scene_val < 0:
        raise ValueError(
            f"write_parallel_shards: num_scene_train and num_scene_val must be >= 0, got {num_scene_train} and {num_scene_val}"
        )
    out_dir = Path(out_dir)
    written: dict[str, list[Path]] = {}
    counts: dict[str, dict] = {}
    for split, num in (("train", num_scene_train), ("val", num_scene_val)):
        samples = _split_samples(
            split, num, cldr=cldr, languages=languages, locales=locales, seed=seed, progress=progress,
            udhr=udhr, udhr_languages=udhr_languages, words_per_language=words_per_language,
            word_languages=word_languages,
        )
        counts[split] = _counts(samples)
        if not samples:
            written[split] = []
            continue
        written[split] = write_shards(
            samples, out_dir / split, prefix="parallel", max_count=samples_per_shard, overwrite=overwrite
        )
    (out_dir / "counts.json").write_text(json.dumps(counts, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for split, summary in counts.items():
        languages_text = " ".join(f"{lang}={n}" for lang, n in summary["by_lang"].items())
        sources_text = " ".join(f"{source}={n}" for source, n in summary["by_source"].items())
        print(f"parallel/{split}: {summary['total']} pairs in {len(written[split])} shards; {sources_text}; {languages_text}")
    return written
