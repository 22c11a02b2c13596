"""Builds the default tokenizer packaged at src/babeltower/assets/tokenizer/.

The corpus is deterministic and offline:

- Unicode CLDR localized strings shipped with the ``babel`` package, for the locales
  in ``LOCALES``: language, territory, script and currency names, month / day /
  quarter names, unit names and patterns, relative-date phrases, time-zone names;
- the synthetic scene captions from
  ``babeltower.datasets.synthetic.scenes.caption_corpus()``, when that module exists
  (a note is printed otherwise; re-run the script once it lands).

Usage::

    python scripts/build_default_tokenizer.py            # writes the packaged asset
    python scripts/build_default_tokenizer.py --out DIR  # writes elsewhere

Runs in a few seconds; the same inputs give a byte-identical tokenizer.json.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import time
from pathlib import Path
from typing import Iterator

from babeltower.modalities.text import default_tokenizer_path, train_tokenizer

# 50 locales over the scripts babeltower's tasks cover: Latin, Cyrillic, Greek, Arabic,
# Hebrew, Devanagari and other Brahmic scripts, Thai, Hangul, Han (simplified and
# traditional), Kana, Georgian, Armenian, Ethiopic.
LOCALES: tuple[str, ...] = (
    "en", "de", "fr", "es", "it", "pt", "nl", "sv", "da", "nb", "fi", "pl", "cs", "hu", "ro",
    "tr", "vi", "id", "sw", "ru", "uk", "bg", "sr", "el", "ar", "fa", "ur", "he", "hi", "mr",
    "ne", "bn", "ta", "te", "kn", "ml", "gu", "pa", "th", "lo", "km", "my", "ko", "zh",
    "zh_Hant", "ja", "ka", "hy", "am", "yo",
)
SCENES_MODULE = "babeltower.datasets.synthetic.scenes"


def cldr_strings(locale_name: str) -> Iterator[str]:
    """Yields the localized CLDR strings of one locale, in a fixed order."""
    from babel import Locale

    locale = Locale.parse(locale_name)
    yield from locale.languages.values()
    yield from locale.territories.values()
    yield from locale.scripts.values()
    yield from locale.currencies.values()
    for table in (locale.months, locale.days, locale.quarters):
        for context in ("format", "stand-alone"):
            for width in ("wide", "abbreviated"):
                yield from table.get(context, {}).get(width, {}).values()
    yield from locale.eras.get("wide", {}).values()
    data = locale._data  # babel exposes units and date fields only through its raw CLDR dict
    for names in data["unit_display_names"].values():
        yield from names.values()
    for lengths in data["unit_patterns"].values():
        for plurals in lengths.values():
            # Fill the number slot so captions like "3 kilometres" are in the corpus.
            yield from (pattern.replace("{0}", "3") for pattern in plurals.values() if isinstance(pattern, str))
    for widths in data["date_fields"].values():
        for entry in widths.values():
            if isinstance(entry, str):
                yield entry
            elif isinstance(entry, dict):
                yield from (s.replace("{0}", "2") for s in entry.values() if isinstance(s, str))
    for zone in data["meta_zones"].values():
        for names in zone.values():
            if isinstance(names, dict):
                yield from (name for name in names.values() if isinstance(name, str))


def scene_captions() -> list[str]:
    """Returns the synthetic scene captions, or [] (with a note) if the module is not there yet."""
    if importlib.util.find_spec(SCENES_MODULE) is None:
        print(f"note: {SCENES_MODULE} is not present; building from CLDR strings only. Re-run once it lands.")
        return []
    scenes = importlib.import_module(SCENES_MODULE)  # errors inside the module are real errors: let them raise
    if not hasattr(scenes, "caption_corpus"):
        print(f"note: {SCENES_MODULE} has no caption_corpus(); building from CLDR strings only.")
        return []
    return [str(caption) for caption in scenes.caption_corpus()]


def build_corpus() -> tuple[list[str], list[str]]:
    """Returns the training strings: (CLDR strings, deduplicated in first-seen order; scene captions)."""
    seen: dict[str, None] = {}
    for locale_name in LOCALES:
        for text in cldr_strings(locale_name):
            text = text.strip()
            if text:
                seen.setdefault(text, None)
    return list(seen), scene_captions()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=default_tokenizer_path(), help="output folder")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--min-frequency", type=int, default=2)
    parser.add_argument("--model-max-length", type=int, default=128)
    args = parser.parse_args()

    start = time.perf_counter()
    cldr, captions = build_corpus()
    tokenizer = train_tokenizer(
        cldr + captions, vocab_size=args.vocab_size, min_frequency=args.min_frequency, model_max_length=args.model_max_length
    )
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(args.out))
    files = sorted(p for p in args.out.iterdir() if p.is_file())
    size = sum(p.stat().st_size for p in files)
    digest = hashlib.sha256((args.out / "tokenizer.json").read_bytes()).hexdigest()[:16]
    print(
        f"trained on {len(cldr)} CLDR strings from {len(LOCALES)} locales + {len(captions)} scene captions in {time.perf_counter() - start:.1f}s: "
        f"vocab {len(tokenizer)}, {size / 1e6:.2f} MB in {args.out} ({', '.join(p.name for p in files)}), "
        f"tokenizer.json sha256 {digest}"
    )


if __name__ == "__main__":
    main()
