"""Synthetic multilingual text-line images for OCR: real text, real fonts, whole-string layout.

Each sample is one line of text drawn into an image::

    png   the line image (train: grey, resized to ``train_height`` px; eval: RGB, as drawn)
    txt   the label, UTF-8, in logical (reading) order
    json  {text, lang, script, kind, font, font_size, direction, mixed, rtl_digits,
           augmentations, split}

**Text** is real text of each language, not only scene captions (``kind``):

* ``sample``: Universal Declaration of Human Rights sentences that Google Fonts ships as
  sample texts (``gflanguages``), cut into line-sized word spans;
* ``words``: runs of the language's frequent words (``wordfreq`` top lists);
* ``cldr``: names of languages, territories, months and weekdays in the language (CLDR
  via ``babel``);
* ``number`` / ``date``: numbers, prices, percentages and dates formatted by CLDR rules
  for the locale, plus phone-number and code-like digit strings;
* ``caption``: the scene captions of :mod:`babeltower.datasets.synthetic.scenes`;
* ``mixed``: a line of one script with a run of another inside (Latin words or digits
  inside Arabic, English inside Chinese, Japanese, Korean, Hindi and Russian lines).

**Held-out texts**: a line whose SHA-1 falls in the eval bucket (1 in ``EVAL_TEXT_BUCKETS``)
is only ever written to the eval splits, and the others only to train, so no eval line's
text is a training line. **Held-out fonts**: every script has fonts marked ``eval_only``
(:data:`FONTS`), which are never used for training lines; the eval splits draw only from
them (``test``) or from the training fonts (``val``, for validation during training).

**Rendering** is whole strings through Pillow's raqm layout (HarfBuzz shaping, FriBidi
reordering), never character by character, so Arabic letters join and Devanagari
conjuncts and vowel signs form. A line whose characters one font does not cover (Latin
inside an Arabic or Devanagari font) is split into runs of equal bidi level and font; each
run is shaped whole and the runs are placed in visual order (:mod:`babeltower.modalities.bidi`).

**Tofu**: before drawing, every character is checked against the font's character map
(fontTools ``getBestCmap``); a line with a character no chosen font covers is skipped and
counted (``stats["skipped_tofu"]``), so a tofu box never gets a label.

**Augmentation** (recorded per sample): font size, stroke width, colours, backgrounds
(flat, gradient, paper noise), slight rotation and shear, blur, Gaussian noise, JPEG.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import random
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from babeltower.modalities import bidi
from babeltower.modalities.text_line import resize_to_height

log = logging.getLogger(__name__)

#: language -> (script, gflanguages id, babel locale).
LANGUAGES: dict[str, tuple[str, str, str]] = {
    "en": ("Latn", "en_Latn", "en"),
    "de": ("Latn", "de_Latn", "de"),
    "fr": ("Latn", "fr_Latn", "fr"),
    "es": ("Latn", "es_Latn", "es"),
    "vi": ("Latn", "vi_Latn", "vi"),
    "ru": ("Cyrl", "ru_Cyrl", "ru"),
    "ar": ("Arab", "ar_Arab", "ar"),
    "hi": ("Deva", "hi_Deva", "hi"),
    "ko": ("Hang", "ko_Kore", "ko"),
    "zh": ("Hans", "zh_Hans", "zh_Hans"),
    "ja": ("Jpan", "ja_Jpan", "ja"),
}
SCRIPTS: tuple[str, ...] = ("Latn", "Cyrl", "Arab", "Deva", "Hang", "Hans", "Jpan")
#: Lines per language: 1 in this many text hashes is reserved for evaluation.
EVAL_TEXT_BUCKETS = 8
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Text kinds and their sampling weights.
KINDS: dict[str, float] = {"sample": 0.25, "words": 0.3, "cldr": 0.1, "number": 0.07, "date": 0.06, "caption": 0.07, "mixed": 0.15}
#: Characters per line at most (CJK lines count double width).
MAX_LINE_CHARS = 28


@dataclass(frozen=True)
class FontSpec:
    """One font face.

    Attributes:
        file: File name, searched in :func:`font_dirs`.
        scripts: Scripts it is used for.
        index: Face index inside a .ttc collection, per script (e.g. the KR face for Hang).
        eval_only: Held out: never used for training lines.
    """

    file: str
    scripts: tuple[str, ...]
    index: tuple[tuple[str, int], ...] = ()
    eval_only: bool = False

    def face_index(self, script: str) -> int:
        return dict(self.index).get(script, 0)

    def name(self, script: str) -> str:
        index = self.face_index(script)
        return f"{self.file}#{index}" if self.file.endswith(".ttc") else self.file


_LC = ("Latn", "Cyrl")
_CJK_INDEX = (("Jpan", 0), ("Hang", 1), ("Hans", 2))
_CJK_MONO_INDEX = (("Jpan", 5), ("Hang", 6), ("Hans", 7))
#: Fonts per script (Debian fonts-noto-core, fonts-noto-cjk, fonts-dejavu, fonts-liberation).
#: The eval-only ones are held out; where a script has few families (Arabic, Devanagari,
#: CJK) the held-out face is a family's other weight or style, else a whole family.
FONTS: tuple[FontSpec, ...] = (
    FontSpec("NotoSans-Regular.ttf", _LC),
    FontSpec("NotoSans-Bold.ttf", _LC),
    FontSpec("NotoSans-Italic.ttf", _LC),
    FontSpec("NotoSerif-Regular.ttf", _LC),
    FontSpec("NotoSerif-Bold.ttf", _LC),
    FontSpec("NotoSansDisplay-Regular.ttf", _LC),
    FontSpec("DejaVuSans.ttf", _LC),
    FontSpec("DejaVuSerif.ttf", _LC),
    FontSpec("DejaVuSansMono.ttf", _LC),
    FontSpec("DejaVuSans-Bold.ttf", _LC),
    FontSpec("LiberationSans-Regular.ttf", _LC),
    FontSpec("LiberationMono-Regular.ttf", _LC),
    FontSpec("LiberationSerif-Regular.ttf", _LC, eval_only=True),
    FontSpec("LiberationSerif-Bold.ttf", _LC, eval_only=True),
    FontSpec("NotoSerifDisplay-Regular.ttf", _LC, eval_only=True),
    FontSpec("DejaVuSerifCondensed-Italic.ttf", _LC, eval_only=True),
    FontSpec("NotoSansArabic-Regular.ttf", ("Arab",)),
    FontSpec("NotoSansArabic-Bold.ttf", ("Arab",)),
    FontSpec("NotoNaskhArabic-Bold.ttf", ("Arab",)),
    FontSpec("NotoKufiArabic-Regular.ttf", ("Arab",)),
    FontSpec("NotoNaskhArabic-Regular.ttf", ("Arab",), eval_only=True),
    FontSpec("NotoKufiArabic-Bold.ttf", ("Arab",), eval_only=True),
    FontSpec("NotoSansDevanagari-Regular.ttf", ("Deva",)),
    FontSpec("NotoSansDevanagari-Bold.ttf", ("Deva",)),
    FontSpec("NotoSerifDevanagari-Regular.ttf", ("Deva",)),
    FontSpec("NotoSerifDevanagari-Bold.ttf", ("Deva",), eval_only=True),
    FontSpec("NotoSansCJK-Regular.ttc", ("Jpan", "Hang", "Hans"), _CJK_INDEX),
    FontSpec("NotoSansCJK-Bold.ttc", ("Jpan", "Hang", "Hans"), _CJK_INDEX),
    FontSpec("NotoSansCJK-Regular.ttc", ("Jpan", "Hang", "Hans"), _CJK_MONO_INDEX),
    FontSpec("NotoSerifCJK-Regular.ttc", ("Jpan", "Hang", "Hans"), _CJK_INDEX),
    FontSpec("NotoSerifCJK-Bold.ttc", ("Jpan", "Hang", "Hans"), _CJK_INDEX, eval_only=True),
)
#: Font for runs the script's font lacks (Latin words inside Arabic or Devanagari lines).
FALLBACK_FONTS: dict[bool, str] = {False: "NotoSans-Regular.ttf", True: "LiberationSerif-Regular.ttf"}


class TofuError(ValueError):
    """A line holds a character that none of its fonts can draw."""


# ------------------------------------------------------------------------------- fonts


def font_dirs() -> list[Path]:
    """Folders searched for fonts: ``$BABELTOWER_FONT_DIRS`` (os.pathsep-separated), then system folders."""
    extra = [Path(p) for p in os.environ.get("BABELTOWER_FONT_DIRS", "").split(os.pathsep) if p]
    return extra + [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts"]


@functools.lru_cache(maxsize=None)
def find_font(file: str) -> Path | None:
    """Path of a font file in :func:`font_dirs` (recursive), or None."""
    for folder in font_dirs():
        if folder.is_dir():
            for path in folder.rglob(file):
                return path
    return None


@functools.lru_cache(maxsize=None)
def font_cmap(path: str, index: int = 0) -> frozenset[int]:
    """Code points a font face maps to a glyph (fontTools best cmap)."""
    from fontTools.ttLib import TTFont

    face = TTFont(path, fontNumber=index, lazy=True)
    return frozenset(face.getBestCmap() or {})


@functools.lru_cache(maxsize=256)
def _pil_font(path: str, index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, index=index, layout_engine=ImageFont.Layout.RAQM)


def check_fonts(scripts: tuple[str, ...] = SCRIPTS) -> dict[str, dict[str, list[FontSpec]]]:
    """The installed fonts per script, split into training and held-out ones.

    Raises:
        RuntimeError: If raqm is missing, or a script has no training or no held-out
            font installed (names the files and the packages that hold them).
    """
    from PIL import features

    if not features.check("raqm"):
        raise RuntimeError(
            "Pillow was built without raqm text layout (HarfBuzz + FriBidi); Arabic and Devanagari would be drawn "
            "wrongly. Install Pillow's binary wheel (it bundles raqm) and libfribidi0"
        )
    found: dict[str, dict[str, list[FontSpec]]] = {s: {"train": [], "eval": []} for s in scripts}
    for spec in FONTS:
        if find_font(spec.file) is None:
            continue
        for script in spec.scripts:
            if script in found:
                found[script]["eval" if spec.eval_only else "train"].append(spec)
    for script, split in found.items():
        for part in ("train", "eval"):
            if not split[part]:
                wanted = [f.file for f in FONTS if script in f.scripts and f.eval_only == (part == "eval")]
                raise RuntimeError(
                    f"no {part} font for script {script}: none of {wanted} is in {[str(d) for d in font_dirs()]}; "
                    "install Debian fonts-noto-core fonts-noto-cjk fonts-dejavu-core fonts-liberation, or point "
                    "BABELTOWER_FONT_DIRS at a folder holding them"
                )
    return found


# -------------------------------------------------------------------------------- text


def text_split(text: str) -> str:
    """"eval" for held-out line texts (1 in ``EVAL_TEXT_BUCKETS`` SHA-1 buckets), else "train"."""
    return "eval" if hashlib.sha1(text.encode("utf-8")).digest()[0] % EVAL_TEXT_BUCKETS == 0 else "train"


def _no_space_script(lang: str) -> bool:
    return lang in ("zh", "ja")


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


@functools.lru_cache(maxsize=None)
def sample_sentences(lang: str) -> tuple[str, ...]:
    """The gflanguages sample texts of ``lang`` (UDHR sentences), one text per field, deduplicated."""
    import gflanguages

    code = LANGUAGES[lang][1]
    language = gflanguages.LoadLanguages().get(code)
    if language is None:
        raise KeyError(f"gflanguages has no language {code!r}")
    texts = []
    for field, value in language.sample_text.ListFields():
        if isinstance(value, str) and field.name not in ("styles", "masthead_full", "masthead_partial"):
            texts.extend(part.strip() for part in value.split("\n") if part.strip())
    return tuple(dict.fromkeys(texts))


@functools.lru_cache(maxsize=None)
def frequent_words(lang: str, n: int = 4000) -> tuple[str, ...]:
    """Frequent words of ``lang`` (wordfreq), only those written in its own script."""
    import wordfreq

    script = LANGUAGES[lang][0]
    words = [w for w in wordfreq.top_n_list(lang, n) if all(_in_script(ch, script) for ch in w)]
    return tuple(words)


def _in_script(ch: str, script: str) -> bool:
    name = unicodedata.name(ch, "")
    if script in ("Latn",):
        return name.startswith("LATIN") or ch in "'-"
    if script == "Cyrl":
        return name.startswith("CYRILLIC") or ch in "-"
    if script == "Arab":
        return name.startswith("ARABIC")
    if script == "Deva":
        return name.startswith("DEVANAGARI")
    if script == "Hang":
        return name.startswith("HANGUL")
    if script == "Hans":
        return name.startswith("CJK UNIFIED")
    if script == "Jpan":
        return name.startswith(("CJK UNIFIED", "HIRAGANA", "KATAKANA"))
    raise ValueError(f"unknown script {script!r}")


@functools.lru_cache(maxsize=None)
def cldr_names(lang: str) -> tuple[str, ...]:
    """Language, territory, month and weekday names in ``lang`` (CLDR via babel)."""
    from babel import Locale

    locale = Locale.parse(LANGUAGES[lang][2])
    names: list[str] = []
    names += list(locale.languages.values())[:400]
    names += list(locale.territories.values())
    for context in ("format",):
        for width in ("wide", "abbreviated"):
            names += list(locale.months[context][width].values())
            names += list(locale.days[context][width].values())
    return tuple(dict.fromkeys(n for n in names if n and "\n" not in n and _width(n) <= MAX_LINE_CHARS))


def _chunk(text: str, lang: str, rng: random.Random) -> str:
    """A line-sized span of a longer text (word boundaries; characters for zh/ja)."""
    if _no_space_script(lang):
        length = rng.randint(4, 13)
        start = rng.randrange(max(1, len(text) - length + 1))
        return text[start : start + length].strip()
    words = text.split()
    count = rng.randint(1, 5)
    start = rng.randrange(max(1, len(words) - count + 1))
    return " ".join(words[start : start + count])


def _cased(word: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.2:
        return word[:1].upper() + word[1:]
    if roll < 0.27:
        return word.upper()
    return word


def _words_line(lang: str, rng: random.Random) -> str:
    words = frequent_words(lang)
    if _no_space_script(lang):
        return "".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
    line = " ".join(rng.choice(words) for _ in range(rng.randint(1, 5)))
    line = _cased(line, rng) if LANGUAGES[lang][0] in _LC else line
    if rng.random() < 0.2:
        line += rng.choice([".", ",", ":", "!", "?", ";"]) if lang != "ar" else rng.choice(["،", ".", "؟", ":"])
    return line


def _number_line(lang: str, rng: random.Random) -> str:
    from babel import numbers

    locale = LANGUAGES[lang][2]
    roll = rng.random()
    value = round(rng.uniform(0, 10 ** rng.randint(1, 7)), rng.choice([0, 0, 1, 2]))
    if roll < 0.3:
        return numbers.format_decimal(value, locale=locale)
    if roll < 0.5:
        currency = rng.choice(["USD", "EUR", "JPY", "RUB", "INR", "KRW", "CNY", "SAR", "VND", "GBP"])
        return numbers.format_currency(value, currency, locale=locale)
    if roll < 0.65:
        return numbers.format_percent(rng.uniform(0, 1.5), locale=locale, decimal_quantization=False)[:12]
    if roll < 0.8:
        return f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(100, 9999)} {rng.randint(10, 9999)}"
    # A number with a unit or label word of the language.
    word = rng.choice(frequent_words(lang)[:1500])
    number = numbers.format_decimal(rng.randint(1, 99999), locale=locale)
    return f"{number} {word}" if rng.random() < 0.5 else f"{word} {number}"


def _date_line(lang: str, rng: random.Random) -> str:
    import datetime as dt

    from babel import dates

    day = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 100))
    fmt = rng.choice(["short", "medium", "long", "full"])
    if rng.random() < 0.25:
        moment = dt.datetime(day.year, day.month, day.day, rng.randrange(24), rng.randrange(60))
        return dates.format_datetime(moment, "medium", locale=LANGUAGES[lang][2])
    return dates.format_date(day, fmt, locale=LANGUAGES[lang][2])


def _caption_line(lang: str, rng: random.Random) -> str:
    from babeltower.datasets.synthetic import scenes

    spec = scenes.SceneSpec(
        shape=rng.choice(scenes.SHAPES),
        colour=rng.choice(scenes.COLOURS),
        count=rng.choice(scenes.COUNTS),
        position=rng.choice(scenes.POSITIONS),
        size=rng.choice(scenes.SIZES),
    )
    if lang == "vi":  # no Vietnamese captioner: an English one (the line stays Latin)
        return scenes.caption(spec, "en")
    if rng.random() < 0.3 and lang != "en":
        return scenes.code_mixed_caption(spec, lang)
    return scenes.caption(spec, lang)


def _mixed_line(lang: str, rng: random.Random) -> str:
    """A line of ``lang`` with an inserted run of another script (or digits for Arabic)."""
    own = _words_line(lang, rng) if rng.random() < 0.6 else _chunk(rng.choice(sample_sentences(lang)), lang, rng)
    if LANGUAGES[lang][0] in _LC and lang != "ru":  # Latin lines: Cyrillic words inside (fonts cover both)
        other = "ru"
        insert = " ".join(rng.choice(frequent_words(other)[:1500]) for _ in range(rng.randint(1, 2)))
    elif lang == "ar":
        roll = rng.random()
        if roll < 0.4:
            insert = str(rng.randint(1, 99999)) if rng.random() < 0.7 else f"{rng.randint(1, 28)}/{rng.randint(1, 12)}/{rng.randint(1950, 2049)}"
        elif roll < 0.8:
            insert = " ".join(_cased(rng.choice(frequent_words("en")[:2000]), rng) for _ in range(rng.randint(1, 2)))
        else:
            insert = f"{_cased(rng.choice(frequent_words('en')[:2000]), rng)} {rng.randint(1, 999)}"
    else:
        insert = " ".join(_cased(rng.choice(frequent_words("en")[:2000]), rng) for _ in range(rng.randint(1, 2)))
        if rng.random() < 0.3:
            insert += f" {rng.randint(1, 2049)}"
    parts = own.split(" ") if not _no_space_script(lang) else [own[: len(own) // 2], own[len(own) // 2 :]]
    at = rng.randint(0, len(parts))
    if _no_space_script(lang):
        return (parts[0] + " " + insert + " " + parts[1]).strip()
    return " ".join(parts[:at] + [insert] + parts[at:])


def make_text(lang: str, kind: str, rng: random.Random) -> str:
    """One line of text of ``lang`` from the source ``kind`` (see the module docstring)."""
    if kind == "sample":
        text = _chunk(rng.choice(sample_sentences(lang)), lang, rng)
    elif kind == "words":
        text = _words_line(lang, rng)
    elif kind == "cldr":
        text = rng.choice(cldr_names(lang))
    elif kind == "number":
        text = _number_line(lang, rng)
    elif kind == "date":
        text = _date_line(lang, rng)
    elif kind == "caption":
        text = _caption_line(lang, rng)
    elif kind == "mixed":
        text = _mixed_line(lang, rng)
    else:
        raise ValueError(f"unknown text kind {kind!r}; known: {sorted(KINDS)}")
    # Invisible format characters (CLDR puts RLM/ALM into Arabic dates and prices) cannot be
    # read off an image; other spaces (NBSP, narrow NBSP) become plain spaces.
    text = "".join(ch for ch in unicodedata.normalize("NFC", text) if unicodedata.category(ch) != "Cf")
    text = " ".join(text.split())
    while _width(text) > MAX_LINE_CHARS * (2 if _no_space_script(lang) or lang == "ko" else 1) and " " in text:
        text = text.rsplit(" ", 1)[0]
    if _width(text) > 2 * MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS]
    return text.strip()


def is_mixed_script(text: str) -> bool:
    """True if the line holds letters of two or more script families (digits do not count)."""
    families = set()
    for ch in text:
        if not ch.isalpha():
            continue
        name = unicodedata.name(ch, "")
        families.add(name.split(" ")[0] if not name.startswith(("CJK", "HIRAGANA", "KATAKANA")) else "CJK")
    return len(families) > 1


def is_rtl_with_digits(text: str) -> bool:
    """True for a right-to-left line with (European or Arabic-Indic) digits in it."""
    return bidi.has_rtl(text) and any(ch.isdigit() for ch in text)


# --------------------------------------------------------------------------- rendering


def _runs(text: str, levels: list[int], fonts: list[tuple[str, int]]) -> list[tuple[int, int]]:
    """Maximal logical spans [start, end) of equal bidi level and font."""
    runs, start = [], 0
    for i in range(1, len(text) + 1):
        if i == len(text) or levels[i] != levels[start] or fonts[i] != fonts[start]:
            runs.append((start, i))
            start = i
    return runs


def assign_fonts(text: str, primary: tuple[str, int], fallback: tuple[str, int] | None) -> list[tuple[str, int]]:
    """The font of each character: the primary face where it has the glyph, else the fallback.

    Spaces and other characters both faces lack a glyph for stay with their neighbour's
    face (whitespace needs no glyph).

    Raises:
        TofuError: A visible character neither face can draw.
    """
    cmaps = [font_cmap(*primary)] + ([font_cmap(*fallback)] if fallback else [])
    faces = [primary] + ([fallback] if fallback else [])
    chosen: list[tuple[str, int] | None] = []
    for ch in text:
        if ch.isspace() or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            chosen.append(None)  # marks join their base character's run
            continue
        for face, cmap in zip(faces, cmaps):
            if ord(ch) in cmap:
                chosen.append(face)
                break
        else:
            raise TofuError(f"U+{ord(ch):04X} {unicodedata.name(ch, '?')} is in none of {[Path(f[0]).name for f in faces]}")
    previous = next((c for c in chosen if c is not None), primary)
    resolved = []
    for face in chosen:
        previous = face or previous
        resolved.append(previous)
    return resolved


def draw_line(
    text: str,
    primary: tuple[str, int],
    fallback: tuple[str, int] | None,
    size: int,
    *,
    lang: str | None = None,
    direction: str | None = None,
    fill: int | tuple = 0,
    background: int | tuple = 255,
    stroke_width: int = 0,
    mode: str = "L",
) -> Image.Image:
    """Draws one line with raqm: whole runs of one level and one face, in visual order.

    Args:
        text: The line, logical order.
        primary: (font path, face index) of the line's script.
        fallback: Face for characters the primary lacks (e.g. Latin in an Arabic line).
        size: Font size in pixels.
        lang: BCP 47 language for raqm's language-specific shaping (locl).
        direction: Paragraph direction; None: :func:`babeltower.modalities.bidi.base_direction`.
        fill, background: Text and background colour in ``mode``.
        stroke_width: Outline width in pixels (a bolder look).
        mode: Pillow image mode.

    Returns:
        The line cropped to its ink with a margin, or raises TofuError / ValueError
        (nothing visible drawn).
    """
    faces = assign_fonts(text, primary, fallback)
    levels, v2l = bidi.bidi_layout(text, direction)
    runs = _runs(text, levels, faces)
    l2v = {logical: visual for visual, logical in enumerate(v2l)}
    runs.sort(key=lambda span: min(l2v[i] for i in range(*span)))  # visual order, left to right
    pieces = []
    for start, end in runs:
        font = _pil_font(faces[start][0], faces[start][1], size)
        run_dir = "rtl" if levels[start] % 2 else "ltr"
        piece = text[start:end]
        pieces.append((piece, font, run_dir, font.getlength(piece, direction=run_dir, language=lang)))
    width = int(sum(p[3] for p in pieces) + 2 * size + 2 * stroke_width)
    height = int(size * 2.2)
    image = Image.new(mode, (max(width, 8), height), background)
    draw = ImageDraw.Draw(image)
    x, baseline = size, int(size * 1.4)
    for piece, font, run_dir, length in pieces:
        draw.text((x, baseline), piece, font=font, fill=fill, anchor="ls", direction=run_dir, language=lang,
                  stroke_width=stroke_width, stroke_fill=fill)
        x += length
    box = _ink_box(image, background)
    if box is None:
        raise ValueError(f"nothing visible was drawn for {text!r}")
    margin = max(2, size // 6)
    left, top, right, bottom = box
    return image.crop((max(0, left - margin), max(0, top - margin), min(image.width, right + margin), min(image.height, bottom + margin)))


def _ink_box(image: Image.Image, background) -> tuple[int, int, int, int] | None:
    bg = Image.new(image.mode, image.size, background)
    from PIL import ImageChops

    return ImageChops.difference(image, bg).convert("L").point(lambda v: 255 if v > 16 else 0).getbbox()


# ------------------------------------------------------------------------ augmentation


def _colours(rng: random.Random) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    dark = tuple(rng.randint(0, 90) for _ in range(3))
    light = tuple(rng.randint(175, 255) for _ in range(3))
    return (light, dark) if rng.random() < 0.15 else (dark, light)  # (text, background)


def augment(image: Image.Image, background: tuple[int, int, int], rng: random.Random, strength: float = 1.0) -> tuple[Image.Image, list[str]]:
    """Backgrounds, geometry, blur, noise and JPEG on an RGB line image; returns it and the names applied."""
    import numpy as np

    applied: list[str] = []
    if rng.random() < 0.35 * strength:  # shear and rotate slightly
        shear = rng.uniform(-0.25, 0.25)
        image = image.transform(
            (image.width + int(abs(shear) * image.height), image.height),
            Image.Transform.AFFINE,
            (1, shear, -shear * image.height if shear > 0 else 0, 0, 1, 0),
            Image.Resampling.BILINEAR,
            fillcolor=background,
        )
        applied.append(f"shear{shear:+.2f}")
    if rng.random() < 0.35 * strength:
        angle = rng.uniform(-2.0, 2.0)
        image = image.rotate(angle, Image.Resampling.BILINEAR, expand=True, fillcolor=background)
        applied.append(f"rotate{angle:+.1f}")
    array = np.asarray(image, dtype=np.float32)
    if rng.random() < 0.3 * strength:  # gradient or paper-like background
        h, w = array.shape[:2]
        ramp = np.linspace(0, rng.uniform(-60, 60), w, dtype=np.float32)[None, :, None]
        mask = (np.abs(array - np.asarray(background, np.float32)).sum(-1, keepdims=True) < 30).astype(np.float32)
        array = array + ramp * mask
        applied.append("gradient")
    if rng.random() < 0.4 * strength:
        sigma = rng.uniform(3, 18)
        array = array + np.random.default_rng(rng.getrandbits(32)).normal(0, sigma, array.shape).astype(np.float32)
        applied.append(f"noise{sigma:.0f}")
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    if rng.random() < 0.3 * strength:
        radius = rng.uniform(0.3, 1.1)
        image = image.filter(ImageFilter.GaussianBlur(radius))
        applied.append(f"blur{radius:.1f}")
    if rng.random() < 0.3 * strength:
        quality = rng.randint(25, 80)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        applied.append(f"jpeg{quality}")
    return image, applied


# ---------------------------------------------------------------------------- samples


@dataclass
class LineSample:
    """One rendered line: the image and its json record."""

    image: Image.Image
    meta: dict[str, Any]


def render_sample(text: str, lang: str, font: FontSpec, rng: random.Random, *, held_out_fonts: bool, augment_strength: float = 1.0) -> LineSample:
    """Draws ``text`` in ``font`` with random size, colours, stroke and augmentation.

    Raises:
        TofuError: The fonts lack a glyph of the line.
    """
    script = LANGUAGES[lang][0]
    primary = (str(find_font(font.file)), font.face_index(script))
    fallback = None
    if script in ("Arab", "Deva"):
        fallback_file = FALLBACK_FONTS[held_out_fonts]
        fallback = (str(find_font(fallback_file) or find_font(FALLBACK_FONTS[False])), 0)
    size = rng.randint(20, 44)
    text_colour, background = _colours(rng)
    stroke = 1 if rng.random() < 0.1 * augment_strength and size >= 28 else 0
    direction = bidi.base_direction(text)
    image = draw_line(text, primary, fallback, size, lang=lang, direction=direction, fill=text_colour,
                      background=background, stroke_width=stroke, mode="RGB")
    image, applied = augment(image, background, rng, augment_strength)
    meta = {
        "text": text,
        "lang": lang,
        "script": script,
        "font": font.name(script),
        "font_held_out": font.eval_only,
        "font_size": size,
        "stroke_width": stroke,
        "direction": direction,
        "mixed": is_mixed_script(text),
        "rtl_digits": is_rtl_with_digits(text),
        "augmentations": applied,
    }
    return LineSample(image, meta)


def generate_lines(
    num: int,
    split: str,
    *,
    languages: tuple[str, ...] = tuple(LANGUAGES),
    seed: int = 0,
    stats: Counter | None = None,
    train_height: int = 32,
    max_width: int = 800,
) -> Iterator[dict[str, Any]]:
    """Samples for ``write_shards``: ``num`` lines of one split, languages in turn.

    Args:
        num: Lines to write.
        split: "train" (training fonts, training texts, images resized to
            ``train_height``), "val" (training fonts, held-out texts) or "test" (held-out
            fonts and texts; images as drawn, RGB: what a user would pass).
        languages: Language codes of :data:`LANGUAGES`.
        seed: Dataset seed.
        stats: Counter updated with ``written``, ``skipped_tofu``, ``skipped_<reason>``.
        train_height: Height of the stored training images.
        max_width: Widest stored training image; longer lines are skipped (counted).

    Yields:
        ``{"__key__", "png", "txt", "json"}`` dicts.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    unknown = sorted(set(languages) - set(LANGUAGES))
    if unknown:
        raise ValueError(f"no OCR line synthesis for languages {unknown}; available: {sorted(LANGUAGES)}")
    fonts = check_fonts(tuple(sorted({LANGUAGES[l][0] for l in languages})))
    stats = stats if stats is not None else Counter()
    rng = random.Random(f"ocr:{seed}:{split}")
    want_text = "train" if split == "train" else "eval"
    kinds, weights = list(KINDS), list(KINDS.values())
    written = attempts = 0
    while written < num:
        attempts += 1
        if attempts > 50 * num + 1000:
            raise RuntimeError(f"OCR synthesis of split {split!r}: only {written} of {num} lines after {attempts} attempts ({dict(stats)})")
        lang = languages[written % len(languages)]
        kind = rng.choices(kinds, weights)[0]
        try:
            text = make_text(lang, kind, rng)
        except (KeyError, IndexError, ValueError) as exc:
            stats[f"skipped_text_{type(exc).__name__}"] += 1
            continue
        if not text or text_split(text) != want_text:
            continue
        if bidi.has_rtl(text) and bidi.to_logical(bidi.to_visual(text)) != text:
            # Drawn exactly like another reading order ("<ar> 123 abc" looks like "<ar> abc 123"):
            # no recogniser can tell which was meant, so the line would carry a label it cannot earn.
            stats["skipped_bidi_ambiguous"] += 1
            continue
        script = LANGUAGES[lang][0]
        pool = fonts[script]["eval" if split == "test" else "train"]
        # A font lacking a glyph of the line is passed over for another of the pool (so the
        # held-out fonts do not only get the lines that happen to avoid, say, Vietnamese
        # letters); a line no font of the pool can draw is skipped and counted.
        sample, empty = None, False
        for font in rng.sample(pool, len(pool)):
            try:
                sample = render_sample(text, lang, font, rng, held_out_fonts=split == "test")
                break
            except TofuError as exc:
                stats["tofu_font_passed_over"] += 1
                log.debug("%r has tofu in %s: %s", text, font.file, exc)
            except ValueError:
                empty = True
                break
        if empty:
            stats["skipped_empty"] += 1
            continue
        if sample is None:
            stats["skipped_tofu"] += 1
            stats[f"skipped_tofu_{lang}"] += 1
            continue
        image = sample.image
        if split == "train":
            image = resize_to_height(image.convert("L"), train_height)
            if image.width > max_width:
                stats["skipped_too_wide"] += 1
                continue
        sample.meta.update(kind=kind, split=split)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1 if split == "train" else 6)
        yield {"__key__": f"{split}{written:08d}", "png": buffer.getvalue(), "txt": text, "json": sample.meta}
        written += 1
        stats["written"] += 1
        stats[f"written_{lang}"] += 1


def write_ocr_dataset(
    out: str | Path,
    *,
    num_train: int = 20000,
    num_val: int = 550,
    num_test: int = 1100,
    languages: tuple[str, ...] = tuple(LANGUAGES),
    seed: int = 0,
    overwrite: bool = False,
    shard_size: int = 1000,
    workers: int = 1,
) -> dict[str, list[Path]]:
    """Writes ``out/{train,val,test}/shard-*.tar`` and ``out/stats.json``; returns ``{split: paths}``.

    ``workers > 1`` renders the training split in that many processes (one shard
    sequence each, seeds ``seed*1000 + i``).
    """
    from babeltower.datasets.writer import write_shards

    out = Path(out)
    paths: dict[str, list[Path]] = {}
    report: dict[str, dict] = {}
    for split, num in (("train", num_train), ("val", num_val), ("test", num_test)):
        if num <= 0:
            continue
        if split == "train" and workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            per = [num // workers + (1 if i < num % workers else 0) for i in range(workers)]
            with ProcessPoolExecutor(workers) as pool:
                futures = [pool.submit(_write_part, out / split, n, languages, seed * 1000 + i, overwrite, shard_size, f"part{i}")
                           for i, n in enumerate(per)]
                results = [f.result() for f in futures]
            paths[split] = sorted(p for r in results for p in r[0])
            stats = sum((Counter(r[1]) for r in results), Counter())
        else:
            stats = Counter()
            paths[split] = write_shards(
                generate_lines(num, split, languages=languages, seed=seed, stats=stats),
                out / split, max_count=shard_size, overwrite=overwrite,
            )
        report[split] = dict(sorted(stats.items()))
        log.info("OCR %s: %s", split, report[split])
    out.mkdir(parents=True, exist_ok=True)
    (out / "stats.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return paths


def _write_part(folder, num, languages, seed, overwrite, shard_size, prefix):
    from babeltower.datasets.writer import write_shards

    stats: Counter = Counter()
    written = write_shards(generate_lines(num, "train", languages=languages, seed=seed, stats=stats), folder,
                           prefix=prefix, max_count=shard_size, overwrite=overwrite)
    return written, dict(stats)


def charset_of(texts) -> str:
    """The characters of ``texts``, most frequent first (ties by code point), without whitespace except the space."""
    counts = Counter(ch for text in texts for ch in text if ch == " " or not ch.isspace())
    return "".join(ch for ch, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def language_charset(languages: tuple[str, ...] = tuple(LANGUAGES), words: int = 4000) -> str:
    """Characters the synthesiser can produce for ``languages``: a model's output alphabet.

    The union of the sources' characters (sample texts, frequent words, CLDR names),
    digits, ASCII punctuation and the letters of the English words inserted in mixed lines.
    """
    import string

    texts = [string.printable.strip() + " ", "،؛؟٫٬٪٠١٢٣٤٥٦٧٨٩。、，：；！？「」・ー％￥€£₹₩₽₫"]
    for lang in languages:
        texts += list(sample_sentences(lang)) + list(frequent_words(lang, words)) + list(cldr_names(lang))
        for kind in ("number", "date", "caption"):
            r = random.Random(f"charset:{lang}:{kind}")
            texts += [make_text(lang, kind, r) for _ in range(300)]
    return charset_of(texts)
