"""Synthetic multilingual scenes: coloured shapes with hand-written captions.

Each scene shows 1-3 identical objects (one shape, one colour, one size) in one region
of a light background. Captions describe it in ten languages and seven scripts, with
each language's own grammar: number words and plural forms, gender and case agreement
of adjectives (fr *deux grands cercles rouges*, ru *два больших красных круга*), the
Arabic dual, Japanese counters and Chinese measure words.

The data is the suite's built-in demo and test set. A deterministic ~20% of the
(colour, shape) combinations is held out of training and makes up the validation
split, so retrieval on ``val`` measures compositional generalisation rather than
memorisation.

Example:
    >>> spec = SceneSpec(shape="circle", colour="red", count=2, position="top", size="large", seed=7)
    >>> caption(spec, "fr")
    'deux grands cercles rouges en haut'
    >>> render_scene(spec, 64).size
    (64, 64)
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from PIL import Image, ImageDraw

SHAPES: list[str] = ["circle", "square", "triangle", "star", "diamond", "heart"]
COLOURS: list[str] = ["red", "green", "blue", "yellow", "purple", "orange"]
COUNTS: list[int] = [1, 2, 3]
POSITIONS: list[str] = ["left", "right", "top", "bottom", "center"]
SIZES: list[str] = ["small", "large"]

#: Colours the captions of every language and both picture styles know beyond
#: :data:`COLOURS`, for data that opts in (``extra_colours=``, ``data synth scenes
#: --extra-colours``): brown, the seventh colour of the emoji circles, squares and hearts.
#: Not in :data:`ATTRIBUTES`, so attribute prompts, the judge and VQA keep six colours.
EXTRA_COLOURS: list[str] = ["brown"]

#: Attribute name -> values, as used by :func:`attribute_prompt` (counts as strings).
ATTRIBUTES: dict[str, list[str]] = {
    "colour": list(COLOURS),
    "shape": list(SHAPES),
    "count": [str(c) for c in COUNTS],
    "position": list(POSITIONS),
    "size": list(SIZES),
}

#: Caption languages (ISO 639-1). Scripts: Latin, Cyrillic, Arabic, Devanagari, Hangul,
#: Han, Hiragana and Katakana.
LANGUAGES: list[str] = ["en", "de", "fr", "es", "ru", "ar", "hi", "ko", "zh", "ja"]

_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (30, 150, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 195, 0),
    "purple": (135, 55, 180),
    "orange": (245, 125, 15),
    "brown": (125, 80, 45),
}

# Object diameter as a fraction of the image side.
_DIAMETER: dict[str, float] = {"small": 0.14, "large": 0.24}

# Region (x0, y0, x1, y1) in image fractions that every object of a scene lies inside.
_REGIONS: dict[str, tuple[float, float, float, float]] = {
    "left": (0.02, 0.12, 0.46, 0.88),
    "right": (0.54, 0.12, 0.98, 0.88),
    "top": (0.12, 0.02, 0.88, 0.46),
    "bottom": (0.12, 0.54, 0.88, 0.98),
    "center": (0.24, 0.24, 0.76, 0.76),
}

_SUPERSAMPLE = 4  # draw at 4x and downsample: cheap anti-aliasing for PIL polygons


@dataclass(frozen=True)
class SceneSpec:
    """Everything that determines a scene; the image is a pure function of it.

    Attributes:
        shape: One of ``SHAPES``.
        colour: One of ``COLOURS`` or ``EXTRA_COLOURS``.
        count: Number of objects, 1-3.
        position: Region of the image, one of ``POSITIONS``.
        size: ``"small"`` or ``"large"``.
        seed: Seed for the layout, background tint and colour shade.
    """

    shape: str
    colour: str
    count: int
    position: str
    size: str
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("shape", SHAPES), ("colour", COLOURS + EXTRA_COLOURS), ("position", POSITIONS),
                              ("size", SIZES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"SceneSpec.{name}={getattr(self, name)!r} is not one of {allowed}")
        if self.count not in COUNTS:
            raise ValueError(f"SceneSpec.count={self.count!r} is not one of {COUNTS}")

    def attributes(self) -> dict[str, str | int]:
        """The scene's attributes (without the seed), as stored in the shards' json."""
        return {k: v for k, v in asdict(self).items() if k != "seed"}


# --------------------------------------------------------------------------- rendering


def _unit_polygons() -> dict[str, list[tuple[float, float]]]:
    """Outlines of the non-circular shapes, centred at 0 and fitting the unit circle."""

    def regular(n: int, radius: float, phase: float) -> list[tuple[float, float]]:
        return [(radius * math.cos(phase + 2 * math.pi * i / n), radius * math.sin(phase + 2 * math.pi * i / n)) for i in range(n)]

    star = []
    for i in range(10):
        radius = 1.0 if i % 2 == 0 else 0.42
        angle = -math.pi / 2 + math.pi * i / 5
        star.append((radius * math.cos(angle), radius * math.sin(angle)))
    # The classic parametric heart, scaled to the unit circle; y grows downwards in PIL.
    heart = []
    for i in range(48):
        t = 2 * math.pi * i / 48
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        heart.append((x / 17.0, -(y + 2.5) / 17.0))
    # The triangle's centroid sits below its circumcentre's visual centre; shift it down.
    triangle = [(x, y + 0.12) for x, y in regular(3, 1.0, -math.pi / 2)]
    return {
        "square": [(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)],
        "triangle": triangle,
        "star": star,
        "diamond": [(0.0, -1.0), (0.72, 0.0), (0.0, 1.0), (-0.72, 0.0)],
        "heart": heart,
    }


_POLYGONS = _unit_polygons()


def _layout(spec: SceneSpec, rng: random.Random, diameter: float | None = None) -> list[tuple[float, float]]:
    """Object centres (image fractions) inside the spec's region, non-overlapping if possible."""
    radius = (diameter or _DIAMETER[spec.size]) / 2
    x0, y0, x1, y1 = _REGIONS[spec.position]
    lo_x, hi_x = x0 + radius, max(x0 + radius, x1 - radius)
    lo_y, hi_y = y0 + radius, max(y0 + radius, y1 - radius)
    best: list[tuple[float, float]] = []
    best_gap = -math.inf
    # Rejection sampling: keep the layout whose closest pair is farthest apart, and stop
    # at the first one without overlap (with a small margin between objects).
    for _ in range(40):
        centres = [(rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)) for _ in range(spec.count)]
        gap = min(
            (math.dist(a, b) - 2 * radius for i, a in enumerate(centres) for b in centres[i + 1 :]),
            default=math.inf,
        )
        if gap > best_gap:
            best, best_gap = centres, gap
        if gap >= 0.02:
            break
    return best


#: Scene picture styles: "plain" (the original flat look, what every head's data uses by
#: default) and "varied" (shades, sizes, backgrounds, outlines and highlights drawn from a
#: wider range, so that a plain emoji-like picture of one big red circle is not new).
STYLES: tuple[str, ...] = ("plain", "varied")

#: Extra shades per colour for the "varied" style: the flat design palettes emoji fonts
#: draw with (Material-like reds, lime and grass greens, sky and royal blues, ...).
_SHADES: dict[str, list[tuple[int, int, int]]] = {
    "red": [(244, 67, 54), (221, 46, 68), (229, 57, 53), (198, 40, 40)],
    "green": [(124, 179, 66), (76, 175, 80), (120, 177, 89), (46, 160, 67)],
    "blue": [(30, 136, 229), (85, 172, 238), (33, 150, 243), (25, 118, 210)],
    "yellow": [(253, 216, 53), (255, 204, 77), (255, 235, 59), (250, 200, 20)],
    "purple": [(171, 71, 188), (170, 142, 214), (156, 39, 176), (123, 31, 162)],
    "orange": [(255, 152, 0), (244, 144, 12), (251, 140, 0), (255, 112, 67)],
    "brown": [(141, 110, 99), (121, 85, 72), (93, 64, 55), (160, 100, 60)],
}


def _scale_rgb(rgb: tuple[int, ...], factor: float, towards_white: float = 0.0) -> tuple[int, int, int]:
    out = [c * factor for c in rgb]
    out = [c + (255 - c) * towards_white for c in out]
    return tuple(max(0, min(255, round(c))) for c in out)  # type: ignore[return-value]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, radius: float, fill,
                corner: float = 0.0, width: float = 1.0) -> None:
    """``corner``: rounded-corner radius of a square (fraction of its half side); ``width``:
    horizontal stretch of a diamond (1.0 = the default rhombus, 1/0.72 = a square on its tip)."""
    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
    elif shape == "square" and corner > 0:
        half = 0.82 * radius
        draw.rounded_rectangle((cx - half, cy - half, cx + half, cy + half), radius=corner * half, fill=fill)
    else:
        stretch = width if shape == "diamond" else 1.0
        draw.polygon([(cx + x * radius * stretch, cy + y * radius) for x, y in _POLYGONS[shape]], fill=fill)


#: Where the glossy finish puts its specular spot, per shape (unit-circle coordinates,
#: inside the shape's upper left part).
_GLOSS_SPOT: dict[str, tuple[float, float]] = {
    "circle": (-0.42, -0.45), "square": (-0.45, -0.48), "heart": (-0.45, -0.42),
    "diamond": (-0.16, -0.38), "triangle": (-0.08, -0.05), "star": (0.0, -0.2),
}


def _draw_glossy(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, radius: float, fill,
                 var: random.Random, width: float = 1.0) -> None:
    """An emoji-like finish: a darker rim, lower right, under a lit body, and a specular spot.

    The look of the glossy emoji fonts (Noto Color Emoji's circles, squares and hearts):
    a rounded square, a body shaded darker towards its lower right edge, and a small
    light ellipse near its upper left.
    """
    corner = var.uniform(0.15, 0.35) if shape == "square" else 0.0
    _draw_shape(draw, shape, cx, cy, radius, _scale_rgb(fill, var.uniform(0.62, 0.8)), corner, width)
    inset = var.uniform(0.06, 0.12)
    _draw_shape(draw, shape, cx - inset * 0.5 * radius, cy - inset * 0.6 * radius, radius * (1 - inset), fill, corner,
                width)
    if var.random() < 0.8:
        sx, sy = _GLOSS_SPOT[shape]
        rx, ry = radius * var.uniform(0.12, 0.2), radius * var.uniform(0.08, 0.14)
        spot = _scale_rgb(fill, 1.0, towards_white=var.uniform(0.45, 0.8))
        x, y = cx + sx * radius, cy + sy * radius
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=spot)


def render_scene(spec: SceneSpec, image_size: int = 64, style: str = "plain") -> Image.Image:
    """Draws a scene.

    Args:
        spec: What to draw.
        image_size: Output height and width in pixels.
        style: "plain" or "varied" (:data:`STYLES`). The varied style draws, from the
            scene's seed: a white, tinted or pastel background; one of several shades of the
            colour; a glossy, emoji-like finish (about a third of scenes: darker rim to the
            lower right, specular spot, rounded squares), else a darker outline (about a
            third) and a light highlight (about a quarter); half the diamonds wider, up to a
            square on its tip (how emoji fonts draw them); sizes scaled by 0.8-1.25, a single
            large object 0.3-0.44 of the image side, and up to 0.95 in the centre (emoji-like).
            Captions stay true: large is still larger
            than small, and objects stay in their region (a single centred one may outgrow it,
            still centred).

    Returns:
        An RGB image of ``image_size`` x ``image_size`` pixels.
    """
    if style not in STYLES:
        raise ValueError(f"render_scene: style must be one of {STYLES}, got {style!r}")
    rng = random.Random(spec.seed)
    canvas = image_size * _SUPERSAMPLE
    # A light, slightly tinted background so that the colour of the scene is carried by
    # the objects alone but the background is not a constant.
    base = rng.randint(222, 246)
    background = tuple(min(255, base + rng.randint(-8, 8)) for _ in range(3))
    fill = tuple(max(0, min(255, c + rng.randint(-12, 12))) for c in _RGB[spec.colour])
    diameter, outline, highlight, glossy, width = _DIAMETER[spec.size], None, None, False, 1.0
    # varied style: one large object in the centre may grow to emoji size, still centred
    emoji_sized = style == "varied" and spec.count == 1 and spec.position == "center" and spec.size == "large"
    if style == "varied":
        # A second generator, so the plain style's draws (and pictures) stay as they were.
        var = random.Random(f"varied:{spec.seed}")
        pick = var.random()
        if pick < 0.3:
            background = (255, 255, 255)
        elif pick < 0.45:
            hue = [var.randint(200, 255) for _ in range(3)]
            background = tuple(hue)
        else:
            base = var.randint(195, 250)
            background = tuple(min(255, base + var.randint(-10, 10)) for _ in range(3))
        shade = var.choice([_RGB[spec.colour], *_SHADES[spec.colour]])
        fill = _scale_rgb(shade, var.uniform(0.88, 1.1))
        if emoji_sized:
            diameter = var.uniform(0.3, 0.95)
        elif spec.count == 1 and spec.size == "large":
            diameter = var.uniform(0.3, 0.44)  # as large as the region allows
        else:
            diameter *= var.uniform(0.8, 1.25)
        glossy = var.random() < 0.35
        if spec.shape == "diamond" and var.random() < 0.5:
            width = var.uniform(1.0, 1 / 0.72)  # up to a square standing on its tip (emoji fonts' diamonds)
        if not glossy and var.random() < 0.35:
            outline = (var.choice([_scale_rgb(fill, 0.55), (30, 30, 30)]), var.uniform(0.06, 0.12))
        if not glossy and var.random() < 0.25:
            highlight = _scale_rgb(fill, 1.0, towards_white=var.uniform(0.25, 0.45))
    image = Image.new("RGB", (canvas, canvas), background)
    draw = ImageDraw.Draw(image)
    radius = diameter / 2 * canvas
    if emoji_sized:
        centres = [(0.5 + rng.uniform(-0.03, 0.03), 0.5 + rng.uniform(-0.03, 0.03))]
    else:
        centres = _layout(spec, rng, diameter)
    for cx, cy in centres:
        cx, cy = cx * canvas, cy * canvas
        if glossy:
            _draw_glossy(draw, spec.shape, cx, cy, radius, fill, var, width)
        elif outline is not None:
            colour, thickness = outline
            _draw_shape(draw, spec.shape, cx, cy, radius, colour, width=width)
            _draw_shape(draw, spec.shape, cx, cy, radius * (1 - thickness), fill, width=width)
        else:
            _draw_shape(draw, spec.shape, cx, cy, radius, fill, width=width)
        if highlight is not None:
            _draw_shape(draw, spec.shape, cx - 0.12 * radius, cy - 0.15 * radius, radius * 0.45, highlight, width=width)
    # BOX averaging of exact 4x4 blocks is the fastest correct anti-aliasing filter here.
    return image.resize((image_size, image_size), Image.Resampling.BOX)


# ----------------------------------------------------------------------------- captions

#: How a captioner gets a word: ``pick(kind, key, entry)`` returns the language table's own
#: ``entry`` for ``kind`` ("shape", "colour", "size") and ``key``, or one of its synonyms
#: (:data:`_SYNONYMS`) in the same grammatical format.
_Pick = Callable[[str, str, Any], Any]


def _table_word(kind: str, key: str, entry: Any) -> Any:
    return entry


_EN_SHAPES = {
    "circle": ("circle", "circles"),
    "square": ("square", "squares"),
    "triangle": ("triangle", "triangles"),
    "star": ("star", "stars"),
    "diamond": ("diamond", "diamonds"),
    "heart": ("heart", "hearts"),
}
_EN_POSITIONS = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom", "center": "in the center"}
_EN_NUMBERS = {1: "one", 2: "two", 3: "three"}


def _caption_en(s: SceneSpec, pick: _Pick = _table_word) -> str:
    noun = pick("shape", s.shape, _EN_SHAPES[s.shape])[0 if s.count == 1 else 1]
    return f"{_EN_NUMBERS[s.count]} {s.size} {s.colour} {noun} {_EN_POSITIONS[s.position]}"


# German: gender, plural; adjectives in the nominative, mixed declension after "ein(e)"
# and strong declension after bare numerals. "lila"/"orange" are indeclinable in the
# standard language, so the declinable "violett"/"orangefarben" are used.
_DE_SHAPES = {  # noun, plural, gender
    "circle": ("Kreis", "Kreise", "m"),
    "square": ("Quadrat", "Quadrate", "n"),
    "triangle": ("Dreieck", "Dreiecke", "n"),
    "star": ("Stern", "Sterne", "m"),
    "diamond": ("Raute", "Rauten", "f"),
    "heart": ("Herz", "Herzen", "n"),
}
_DE_COLOURS = {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "purple": "violett", "orange": "orangefarben",
               "brown": "braun"}
_DE_SIZES = {"small": "klein", "large": "groß"}
_DE_POSITIONS = {"left": "links", "right": "rechts", "top": "oben", "bottom": "unten", "center": "in der Mitte"}
_DE_ENDINGS_AFTER_EIN = {"m": "er", "n": "es", "f": "e"}
_DE_NUMBERS = {2: "zwei", 3: "drei"}
#: Colour words that take no endings ("ein lila Quadrat").
_DE_INDECLINABLE = {"lila"}


def _de_inflect(stem: str, ending: str) -> str:
    """Adjective stem + ending; "orange" + "e" stays "orange", "lila" takes none."""
    if stem in _DE_INDECLINABLE:
        return stem
    return stem + ending[1:] if stem.endswith("e") and ending.startswith("e") else stem + ending


def _caption_de(s: SceneSpec, pick: _Pick = _table_word) -> str:
    singular, plural, gender = pick("shape", s.shape, _DE_SHAPES[s.shape])
    size, colour = _DE_SIZES[s.size], pick("colour", s.colour, _DE_COLOURS[s.colour])
    if s.count == 1:
        ending = _DE_ENDINGS_AFTER_EIN[gender]
        article = "eine" if gender == "f" else "ein"
        phrase = f"{article} {_de_inflect(size, ending)} {_de_inflect(colour, ending)} {singular}"
    else:
        phrase = f"{_DE_NUMBERS[s.count]} {_de_inflect(size, 'e')} {_de_inflect(colour, 'e')} {plural}"
    return f"{phrase} {_DE_POSITIONS[s.position]}"


# French: size adjective before the noun, colour after; both agree in gender and number.
# "orange" is invariable.
_FR_SHAPES = {  # singular, plural, gender
    "circle": ("cercle", "cercles", "m"),
    "square": ("carré", "carrés", "m"),
    "triangle": ("triangle", "triangles", "m"),
    "star": ("étoile", "étoiles", "f"),
    "diamond": ("losange", "losanges", "m"),
    "heart": ("cœur", "cœurs", "m"),
}
_FR_COLOURS = {  # (m sg, f sg, m pl, f pl)
    "red": ("rouge", "rouge", "rouges", "rouges"),
    "green": ("vert", "verte", "verts", "vertes"),
    "blue": ("bleu", "bleue", "bleus", "bleues"),
    "yellow": ("jaune", "jaune", "jaunes", "jaunes"),
    "purple": ("violet", "violette", "violets", "violettes"),
    "orange": ("orange", "orange", "orange", "orange"),
    "brown": ("marron", "marron", "marron", "marron"),
}
_FR_SIZES = {"small": ("petit", "petite", "petits", "petites"), "large": ("grand", "grande", "grands", "grandes")}
_FR_POSITIONS = {"left": "à gauche", "right": "à droite", "top": "en haut", "bottom": "en bas", "center": "au centre"}


def _fr_form(forms: tuple[str, str, str, str], gender: str, plural: bool) -> str:
    return forms[(2 if plural else 0) + (1 if gender == "f" else 0)]


def _caption_fr(s: SceneSpec, pick: _Pick = _table_word) -> str:
    singular, plural_noun, gender = pick("shape", s.shape, _FR_SHAPES[s.shape])
    plural = s.count > 1
    number = {1: "un" if gender == "m" else "une", 2: "deux", 3: "trois"}[s.count]
    size = _fr_form(_FR_SIZES[s.size], gender, plural)
    colour = _fr_form(pick("colour", s.colour, _FR_COLOURS[s.colour]), gender, plural)
    noun = plural_noun if plural else singular
    return f"{number} {size} {noun} {colour} {_FR_POSITIONS[s.position]}"


# Spanish: adjectives after the noun (colour, then size), agreeing in gender and number;
# "naranja" used invariably as a colour noun-adjective.
_ES_SHAPES = {
    "circle": ("círculo", "círculos", "m"),
    "square": ("cuadrado", "cuadrados", "m"),
    "triangle": ("triángulo", "triángulos", "m"),
    "star": ("estrella", "estrellas", "f"),
    "diamond": ("rombo", "rombos", "m"),
    "heart": ("corazón", "corazones", "m"),
}
_ES_COLOURS = {  # (m sg, f sg, m pl, f pl)
    "red": ("rojo", "roja", "rojos", "rojas"),
    "green": ("verde", "verde", "verdes", "verdes"),
    "blue": ("azul", "azul", "azules", "azules"),
    "yellow": ("amarillo", "amarilla", "amarillos", "amarillas"),
    "purple": ("morado", "morada", "morados", "moradas"),
    "orange": ("naranja", "naranja", "naranja", "naranja"),
    "brown": ("marrón", "marrón", "marrones", "marrones"),
}
_ES_SIZES = {"small": ("pequeño", "pequeña", "pequeños", "pequeñas"), "large": ("grande", "grande", "grandes", "grandes")}
_ES_POSITIONS = {"left": "a la izquierda", "right": "a la derecha", "top": "arriba", "bottom": "abajo", "center": "en el centro"}


def _caption_es(s: SceneSpec, pick: _Pick = _table_word) -> str:
    singular, plural_noun, gender = pick("shape", s.shape, _ES_SHAPES[s.shape])
    plural = s.count > 1
    number = {1: "un" if gender == "m" else "una", 2: "dos", 3: "tres"}[s.count]
    colour = _fr_form(pick("colour", s.colour, _ES_COLOURS[s.colour]), gender, plural)
    size = _fr_form(_ES_SIZES[s.size], gender, plural)
    noun = plural_noun if plural else singular
    return f"{number} {noun} {colour} {size} {_ES_POSITIONS[s.position]}"


# Russian numeral agreement: один/одна/одно + nominative singular; два/две, три + genitive
# singular noun with adjectives in the genitive plural for masculine and neuter nouns and
# (the preferred) nominative plural for feminine nouns: "две большие красные звезды".
_RU_SHAPES = {  # nominative singular, genitive singular, gender
    "circle": ("круг", "круга", "m"),
    "square": ("квадрат", "квадрата", "m"),
    "triangle": ("треугольник", "треугольника", "m"),
    "star": ("звезда", "звезды", "f"),
    "diamond": ("ромб", "ромба", "m"),
    "heart": ("сердце", "сердца", "n"),
}
_RU_ADJECTIVES = {  # nom sg m, nom sg f, nom sg n, nom pl, gen pl
    "red": ("красный", "красная", "красное", "красные", "красных"),
    "green": ("зелёный", "зелёная", "зелёное", "зелёные", "зелёных"),
    "blue": ("синий", "синяя", "синее", "синие", "синих"),
    "yellow": ("жёлтый", "жёлтая", "жёлтое", "жёлтые", "жёлтых"),
    "purple": ("фиолетовый", "фиолетовая", "фиолетовое", "фиолетовые", "фиолетовых"),
    "orange": ("оранжевый", "оранжевая", "оранжевое", "оранжевые", "оранжевых"),
    "brown": ("коричневый", "коричневая", "коричневое", "коричневые", "коричневых"),
    "small": ("маленький", "маленькая", "маленькое", "маленькие", "маленьких"),
    "large": ("большой", "большая", "большое", "большие", "больших"),
}
_RU_POSITIONS = {"left": "слева", "right": "справа", "top": "сверху", "bottom": "снизу", "center": "в центре"}


def _caption_ru(s: SceneSpec, pick: _Pick = _table_word) -> str:
    nominative, genitive, gender = pick("shape", s.shape, _RU_SHAPES[s.shape])
    size = pick("size", s.size, _RU_ADJECTIVES[s.size])
    colour = pick("colour", s.colour, _RU_ADJECTIVES[s.colour])
    if s.count == 1:
        slot = {"m": 0, "f": 1, "n": 2}[gender]
        number = {"m": "один", "f": "одна", "n": "одно"}[gender]
        phrase = f"{number} {size[slot]} {colour[slot]} {nominative}"
    else:
        slot = 3 if gender == "f" else 4
        number = {2: "две" if gender == "f" else "два", 3: "три"}[s.count]
        phrase = f"{number} {size[slot]} {colour[slot]} {genitive}"
    return f"{phrase} {_RU_POSITIONS[s.position]}"


# Arabic: adjectives follow the noun (colour, then size) and agree with it; the dual has
# its own noun and adjective forms; 3 takes the opposite gender of the singular noun
# (ثلاث دوائر / ثلاثة مربعات) and non-human plurals take feminine singular adjectives.
_AR_SHAPES = {  # singular, dual, plural, gender
    "circle": ("دائرة", "دائرتان", "دوائر", "f"),
    "square": ("مربع", "مربعان", "مربعات", "m"),
    "triangle": ("مثلث", "مثلثان", "مثلثات", "m"),
    "star": ("نجمة", "نجمتان", "نجوم", "f"),
    "diamond": ("معين", "معينان", "معينات", "m"),
    "heart": ("قلب", "قلبان", "قلوب", "m"),
}
_AR_ADJECTIVES = {  # m sg, f sg, m dual, f dual
    "red": ("أحمر", "حمراء", "أحمران", "حمراوان"),
    "green": ("أخضر", "خضراء", "أخضران", "خضراوان"),
    "blue": ("أزرق", "زرقاء", "أزرقان", "زرقاوان"),
    "yellow": ("أصفر", "صفراء", "أصفران", "صفراوان"),
    "purple": ("بنفسجي", "بنفسجية", "بنفسجيان", "بنفسجيتان"),
    "orange": ("برتقالي", "برتقالية", "برتقاليان", "برتقاليتان"),
    "brown": ("بني", "بنية", "بنيان", "بنيتان"),
    "small": ("صغير", "صغيرة", "صغيران", "صغيرتان"),
    "large": ("كبير", "كبيرة", "كبيران", "كبيرتان"),
}
_AR_POSITIONS = {"left": "على اليسار", "right": "على اليمين", "top": "في الأعلى", "bottom": "في الأسفل", "center": "في الوسط"}


def _caption_ar(s: SceneSpec, pick: _Pick = _table_word) -> str:
    singular, dual, plural, gender = pick("shape", s.shape, _AR_SHAPES[s.shape])
    colour, size = pick("colour", s.colour, _AR_ADJECTIVES[s.colour]), _AR_ADJECTIVES[s.size]
    feminine = gender == "f"
    if s.count == 1:
        slot = 1 if feminine else 0
        phrase = f"{singular} {colour[slot]} {size[slot]}"
    elif s.count == 2:
        slot = 3 if feminine else 2
        phrase = f"{dual} {colour[slot]} {size[slot]}"
    else:
        three = "ثلاث" if feminine else "ثلاثة"
        phrase = f"{three} {plural} {colour[1]} {size[1]}"
    return f"{phrase} {_AR_POSITIONS[s.position]}"


# Hindi: all shape nouns are masculine; -ā adjectives inflect (छोटा/छोटे, हरा/हरे), others
# (लाल, बैंगनी, नारंगी) do not. Position first: "ऊपर दो बड़े लाल वृत्त".
_HI_SHAPES = {  # singular, plural
    "circle": ("वृत्त", "वृत्त"),
    "square": ("वर्ग", "वर्ग"),
    "triangle": ("त्रिभुज", "त्रिभुज"),
    "star": ("तारा", "तारे"),
    "diamond": ("समचतुर्भुज", "समचतुर्भुज"),
    "heart": ("दिल", "दिल"),
}
_HI_ADJECTIVES = {  # m sg, m pl, f
    "red": ("लाल", "लाल", "लाल"),
    "green": ("हरा", "हरे", "हरी"),
    "blue": ("नीला", "नीले", "नीली"),
    "yellow": ("पीला", "पीले", "पीली"),
    "purple": ("बैंगनी", "बैंगनी", "बैंगनी"),
    "orange": ("नारंगी", "नारंगी", "नारंगी"),
    "brown": ("भूरा", "भूरे", "भूरी"),
    "small": ("छोटा", "छोटे", "छोटी"),
    "large": ("बड़ा", "बड़े", "बड़ी"),
}
_HI_POSITIONS = {"left": "बाईं ओर", "right": "दाईं ओर", "top": "ऊपर", "bottom": "नीचे", "center": "बीच में"}
_HI_NUMBERS = {1: "एक", 2: "दो", 3: "तीन"}


def _caption_hi(s: SceneSpec, pick: _Pick = _table_word) -> str:
    slot = 0 if s.count == 1 else 1
    noun = _HI_SHAPES[s.shape][slot]
    size, colour = _HI_ADJECTIVES[s.size][slot], _HI_ADJECTIVES[s.colour][slot]
    return f"{_HI_POSITIONS[s.position]} {_HI_NUMBERS[s.count]} {size} {colour} {noun}"


# Korean: position + 에, attributive adjectives, noun, native number + counter 개.
_KO_SHAPES = {"circle": "원", "square": "정사각형", "triangle": "삼각형", "star": "별", "diamond": "마름모", "heart": "하트"}
_KO_COLOURS = {"red": "빨간", "green": "초록색", "blue": "파란", "yellow": "노란", "purple": "보라색", "orange": "주황색",
               "brown": "갈색"}
_KO_SIZES = {"small": "작은", "large": "큰"}
_KO_POSITIONS = {"left": "왼쪽에", "right": "오른쪽에", "top": "위쪽에", "bottom": "아래쪽에", "center": "가운데에"}
_KO_NUMBERS = {1: "한", 2: "두", 3: "세"}


def _caption_ko(s: SceneSpec, pick: _Pick = _table_word) -> str:
    return (
        f"{_KO_POSITIONS[s.position]} {_KO_SIZES[s.size]} {pick('colour', s.colour, _KO_COLOURS[s.colour])} "
        f"{pick('shape', s.shape, _KO_SHAPES[s.shape])} {_KO_NUMBERS[s.count]} 개"
    )


# Chinese: numeral + measure word 个, colour + 的, size, shape noun, 在 + position.
_ZH_SHAPES = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形", "diamond": "菱形", "heart": "心形"}
_ZH_COLOURS = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "orange": "橙色", "brown": "棕色"}
_ZH_SIZES = {"small": "小", "large": "大"}
_ZH_POSITIONS = {"left": "左边", "right": "右边", "top": "上面", "bottom": "下面", "center": "中间"}
_ZH_NUMBERS = {1: "一", 2: "两", 3: "三"}


def _caption_zh(s: SceneSpec, pick: _Pick = _table_word) -> str:
    colour, shape = pick("colour", s.colour, _ZH_COLOURS[s.colour]), pick("shape", s.shape, _ZH_SHAPES[s.shape])
    return f"{_ZH_NUMBERS[s.count]}个{colour}的{_ZH_SIZES[s.size]}{shape}在{_ZH_POSITIONS[s.position]}"


# Japanese: position に, adjectives, noun が, native counter つ.
_JA_SHAPES = {"circle": "円", "square": "正方形", "triangle": "三角形", "star": "星", "diamond": "ひし形", "heart": "ハート"}
_JA_COLOURS = {"red": "赤い", "green": "緑の", "blue": "青い", "yellow": "黄色い", "purple": "紫の", "orange": "オレンジ色の",
               "brown": "茶色の"}
_JA_SIZES = {"small": "小さい", "large": "大きい"}
_JA_POSITIONS = {"left": "左", "right": "右", "top": "上", "bottom": "下", "center": "中央"}
_JA_NUMBERS = {1: "一つ", 2: "二つ", 3: "三つ"}


def _caption_ja(s: SceneSpec, pick: _Pick = _table_word) -> str:
    return (
        f"{_JA_POSITIONS[s.position]}に{_JA_SIZES[s.size]}{pick('colour', s.colour, _JA_COLOURS[s.colour])}"
        f"{pick('shape', s.shape, _JA_SHAPES[s.shape])}が{_JA_NUMBERS[s.count]}"
    )


# Portuguese (neutral between Brazil and Portugal): adjectives after the noun, colour then
# size, agreeing in gender and number; "dois/duas" agree too; "laranja" is invariable.
_PT_SHAPES = {
    "circle": ("círculo", "círculos", "m"),
    "square": ("quadrado", "quadrados", "m"),
    "triangle": ("triângulo", "triângulos", "m"),
    "star": ("estrela", "estrelas", "f"),
    "diamond": ("losango", "losangos", "m"),
    "heart": ("coração", "corações", "m"),
}
_PT_COLOURS = {  # (m sg, f sg, m pl, f pl)
    "red": ("vermelho", "vermelha", "vermelhos", "vermelhas"),
    "green": ("verde", "verde", "verdes", "verdes"),
    "blue": ("azul", "azul", "azuis", "azuis"),
    "yellow": ("amarelo", "amarela", "amarelos", "amarelas"),
    "purple": ("roxo", "roxa", "roxos", "roxas"),
    "orange": ("laranja", "laranja", "laranja", "laranja"),
    "brown": ("marrom", "marrom", "marrons", "marrons"),
}
_PT_SIZES = {"small": ("pequeno", "pequena", "pequenos", "pequenas"), "large": ("grande", "grande", "grandes", "grandes")}
_PT_POSITIONS = {"left": "à esquerda", "right": "à direita", "top": "na parte de cima", "bottom": "na parte de baixo",
                 "center": "no centro"}


def _caption_pt(s: SceneSpec, pick: _Pick = _table_word) -> str:
    singular, plural_noun, gender = pick("shape", s.shape, _PT_SHAPES[s.shape])
    plural = s.count > 1
    number = {1: "um" if gender == "m" else "uma", 2: "dois" if gender == "m" else "duas", 3: "três"}[s.count]
    colour = _fr_form(pick("colour", s.colour, _PT_COLOURS[s.colour]), gender, plural)
    size = _fr_form(_PT_SIZES[s.size], gender, plural)
    return f"{number} {plural_noun if plural else singular} {colour} {size} {_PT_POSITIONS[s.position]}"


# Italian: the size adjective before the noun ("un grande cerchio"), the colour after it,
# both agreeing; "blu" and "viola" are invariable.
_IT_SHAPES = {
    "circle": ("cerchio", "cerchi", "m"),
    "square": ("quadrato", "quadrati", "m"),
    "triangle": ("triangolo", "triangoli", "m"),
    "star": ("stella", "stelle", "f"),
    "diamond": ("rombo", "rombi", "m"),
    "heart": ("cuore", "cuori", "m"),
}
_IT_COLOURS = {  # (m sg, f sg, m pl, f pl)
    "red": ("rosso", "rossa", "rossi", "rosse"),
    "green": ("verde", "verde", "verdi", "verdi"),
    "blue": ("blu", "blu", "blu", "blu"),
    "yellow": ("giallo", "gialla", "gialli", "gialle"),
    "purple": ("viola", "viola", "viola", "viola"),
    "orange": ("arancione", "arancione", "arancioni", "arancioni"),
    "brown": ("marrone", "marrone", "marroni", "marroni"),
}
_IT_SIZES = {"small": ("piccolo", "piccola", "piccoli", "piccole"), "large": ("grande", "grande", "grandi", "grandi")}
_IT_POSITIONS = {"left": "a sinistra", "right": "a destra", "top": "in alto", "bottom": "in basso", "center": "al centro"}


def _caption_it(s: SceneSpec, pick: _Pick = _table_word) -> str:
    singular, plural_noun, gender = pick("shape", s.shape, _IT_SHAPES[s.shape])
    plural = s.count > 1
    number = {1: "un" if gender == "m" else "una", 2: "due", 3: "tre"}[s.count]
    size = _fr_form(_IT_SIZES[s.size], gender, plural)
    colour = _fr_form(pick("colour", s.colour, _IT_COLOURS[s.colour]), gender, plural)
    return f"{number} {size} {plural_noun if plural else singular} {colour} {_IT_POSITIONS[s.position]}"


# Turkish: the locative phrase first, then numeral, size, colour and noun; a noun after a
# numeral stays singular ("iki büyük kırmızı daire").
_TR_SHAPES = {"circle": "daire", "square": "kare", "triangle": "üçgen", "star": "yıldız", "diamond": "eşkenar dörtgen",
              "heart": "kalp"}
_TR_COLOURS = {"red": "kırmızı", "green": "yeşil", "blue": "mavi", "yellow": "sarı", "purple": "mor", "orange": "turuncu",
               "brown": "kahverengi"}
_TR_SIZES = {"small": "küçük", "large": "büyük"}
_TR_POSITIONS = {"left": "solda", "right": "sağda", "top": "üstte", "bottom": "altta", "center": "ortada"}
_TR_NUMBERS = {1: "bir", 2: "iki", 3: "üç"}


def _caption_tr(s: SceneSpec, pick: _Pick = _table_word) -> str:
    return (f"{_TR_POSITIONS[s.position]} {_TR_NUMBERS[s.count]} {_TR_SIZES[s.size]} {_TR_COLOURS[s.colour]} "
            f"{pick('shape', s.shape, _TR_SHAPES[s.shape])}")


# Indonesian: numeral before the noun, no plural marking after it, colour and size after
# the noun ("dua lingkaran merah besar di atas").
_ID_SHAPES = {"circle": "lingkaran", "square": "persegi", "triangle": "segitiga", "star": "bintang",
              "diamond": "belah ketupat", "heart": "hati"}
_ID_COLOURS = {"red": "merah", "green": "hijau", "blue": "biru", "yellow": "kuning", "purple": "ungu", "orange": "oranye",
               "brown": "cokelat"}
_ID_SIZES = {"small": "kecil", "large": "besar"}
_ID_POSITIONS = {"left": "di sebelah kiri", "right": "di sebelah kanan", "top": "di atas", "bottom": "di bawah",
                 "center": "di tengah"}
_ID_NUMBERS = {1: "satu", 2: "dua", 3: "tiga"}


def _caption_id(s: SceneSpec, pick: _Pick = _table_word) -> str:
    shape, colour = pick("shape", s.shape, _ID_SHAPES[s.shape]), pick("colour", s.colour, _ID_COLOURS[s.colour])
    return f"{_ID_NUMBERS[s.count]} {shape} {colour} {_ID_SIZES[s.size]} {_ID_POSITIONS[s.position]}"


# Vietnamese: numeral, the shape noun with its classifier word ("hình", "ngôi"), size, then
# "màu" + colour; nouns do not inflect for number.
_VI_SHAPES = {"circle": "hình tròn", "square": "hình vuông", "triangle": "hình tam giác", "star": "ngôi sao",
              "diamond": "hình thoi", "heart": "hình trái tim"}
_VI_COLOURS = {"red": "đỏ", "green": "xanh lá", "blue": "xanh dương", "yellow": "vàng", "purple": "tím", "orange": "cam",
               "brown": "nâu"}
_VI_SIZES = {"small": "nhỏ", "large": "lớn"}
_VI_POSITIONS = {"left": "ở bên trái", "right": "ở bên phải", "top": "ở phía trên", "bottom": "ở phía dưới",
                 "center": "ở giữa"}
_VI_NUMBERS = {1: "một", 2: "hai", 3: "ba"}


def _caption_vi(s: SceneSpec, pick: _Pick = _table_word) -> str:
    return (f"{_VI_NUMBERS[s.count]} {_VI_SHAPES[s.shape]} {_VI_SIZES[s.size]} màu {_VI_COLOURS[s.colour]} "
            f"{_VI_POSITIONS[s.position]}")


# Greek: numeral, size and colour adjectives before the noun, all in the nominative and
# agreeing in gender and number (ένας/μία/ένα; τρεις for masculine and feminine, τρία for
# neuter); "μπλε", "μωβ" and "πορτοκαλί" are used indeclinably.
_EL_SHAPES = {  # singular, plural, gender
    "circle": ("κύκλος", "κύκλοι", "m"),
    "square": ("τετράγωνο", "τετράγωνα", "n"),
    "triangle": ("τρίγωνο", "τρίγωνα", "n"),
    "star": ("αστέρι", "αστέρια", "n"),
    "diamond": ("ρόμβος", "ρόμβοι", "m"),
    "heart": ("καρδιά", "καρδιές", "f"),
}
_EL_ADJECTIVES = {  # (m sg, f sg, n sg, m pl, f pl, n pl)
    "red": ("κόκκινος", "κόκκινη", "κόκκινο", "κόκκινοι", "κόκκινες", "κόκκινα"),
    "green": ("πράσινος", "πράσινη", "πράσινο", "πράσινοι", "πράσινες", "πράσινα"),
    "blue": ("μπλε",) * 6,
    "yellow": ("κίτρινος", "κίτρινη", "κίτρινο", "κίτρινοι", "κίτρινες", "κίτρινα"),
    "purple": ("μωβ",) * 6,
    "orange": ("πορτοκαλί",) * 6,
    "brown": ("καφέ",) * 6,
    "small": ("μικρός", "μικρή", "μικρό", "μικροί", "μικρές", "μικρά"),
    "large": ("μεγάλος", "μεγάλη", "μεγάλο", "μεγάλοι", "μεγάλες", "μεγάλα"),
}
_EL_POSITIONS = {"left": "αριστερά", "right": "δεξιά", "top": "πάνω", "bottom": "κάτω", "center": "στο κέντρο"}


def _caption_el(s: SceneSpec, pick: _Pick = _table_word) -> str:
    singular, plural_noun, gender = pick("shape", s.shape, _EL_SHAPES[s.shape])
    slot = {"m": 0, "f": 1, "n": 2}[gender] + (3 if s.count > 1 else 0)
    number = {1: {"m": "ένας", "f": "μία", "n": "ένα"}[gender], 2: "δύο", 3: "τρία" if gender == "n" else "τρεις"}[s.count]
    size, colour = _EL_ADJECTIVES[s.size][slot], _EL_ADJECTIVES[s.colour][slot]
    return f"{number} {size} {colour} {plural_noun if s.count > 1 else singular} {_EL_POSITIONS[s.position]}"


# Persian: numeral, the noun (singular after a numeral), then colour and size, linked by
# the ezafe: a short vowel that ordinary spelling leaves unwritten, also after the silent h
# of دایره and ستاره, as the CLDR names do ("دو دایره قرمز بزرگ در سمت چپ"); position last.
_FA_SHAPES = {"circle": "دایره", "square": "مربع", "triangle": "مثلث", "star": "ستاره", "diamond": "لوزی", "heart": "قلب"}
_FA_COLOURS = {"red": "قرمز", "green": "سبز", "blue": "آبی", "yellow": "زرد", "purple": "بنفش", "orange": "نارنجی",
               "brown": "قهوه\u200cای"}
_FA_SIZES = {"small": "کوچک", "large": "بزرگ"}
_FA_POSITIONS = {"left": "در سمت چپ", "right": "در سمت راست", "top": "در بالا", "bottom": "در پایین", "center": "در وسط"}
_FA_NUMBERS = {1: "یک", 2: "دو", 3: "سه"}


def _caption_fa(s: SceneSpec, pick: _Pick = _table_word) -> str:
    shape, colour = pick("shape", s.shape, _FA_SHAPES[s.shape]), pick("colour", s.colour, _FA_COLOURS[s.colour])
    return f"{_FA_NUMBERS[s.count]} {shape} {colour} {_FA_SIZES[s.size]} {_FA_POSITIONS[s.position]}"


#: Other words native speakers use for the same shape or colour, in the format of the
#: language's own table (noun forms and gender, adjective forms): "Punkt" and "Scheibe"
#: beside "Kreis", "disque" beside "cercle", 方块 beside 正方形, 四角 beside 正方形,
#: "karo" and "wajik" beside the geometric terms, Russian голубой (light blue) beside
#: синий. Used by :func:`caption` with ``rng=`` (``data synth scenes --wording varied``), so
#: a model trained on the scenes is not lost on the other word; without ``rng`` a caption
#: keeps its table's word. The emoji's CLDR names (datasets/synthetic/emoji.py) showed
#: which everyday words the fixed grammar lacked; the lists here go beyond them.
_SYNONYMS: dict[str, dict[str, dict[str, list]]] = {
    "en": {"shape": {"circle": [("disc", "discs"), ("dot", "dots")], "diamond": [("rhombus", "rhombuses")]}},
    "de": {
        "shape": {"circle": [("Punkt", "Punkte", "m"), ("Scheibe", "Scheiben", "f")],
                  "square": [("Viereck", "Vierecke", "n")], "diamond": [("Rhombus", "Rhomben", "m")]},
        "colour": {"purple": ["lila"], "orange": ["orange"]},
    },
    "fr": {"shape": {"circle": [("disque", "disques", "m"), ("rond", "ronds", "m")]}},
    "es": {"shape": {"circle": [("disco", "discos", "m")]},
           "colour": {"purple": [("violeta",) * 4], "brown": [("café",) * 4]}},
    "pt": {"shape": {"circle": [("disco", "discos", "m")]}, "colour": {"purple": [("violeta",) * 4]}},
    "it": {"shape": {"circle": [("disco", "dischi", "m")]}},
    "ru": {
        "shape": {"circle": [("кружок", "кружка", "m")]},
        "colour": {"blue": [("голубой", "голубая", "голубое", "голубые", "голубых")]},
        "size": {"small": [("небольшой", "небольшая", "небольшое", "небольшие", "небольших")]},
    },
    "ar": {"shape": {"diamond": [("ماسة", "ماستان", "ماسات", "f")]},
           "colour": {"purple": [("أرجواني", "أرجوانية", "أرجوانيان", "أرجوانيتان")]}},
    "ko": {"shape": {"circle": ["동그라미"], "square": ["사각형", "네모"]},
           "colour": {"red": ["빨간색"], "green": ["녹색"], "yellow": ["노란색"], "blue": ["파란색"], "orange": ["오렌지색"]}},
    "zh": {"shape": {"circle": ["圆", "圆圈"], "square": ["方块", "方形"], "heart": ["心", "爱心"], "star": ["星星"]},
           "colour": {"brown": ["褐色", "咖啡色"]}},
    "ja": {"shape": {"circle": ["丸"], "square": ["四角", "四角形"]},
           "colour": {"orange": ["オレンジの"], "yellow": ["黄色の"], "brown": ["茶色い"]}},
    "tr": {"shape": {"circle": ["yuvarlak"], "diamond": ["karo"]}},
    "id": {"shape": {"square": ["bujur sangkar"], "diamond": ["wajik"]}, "colour": {"orange": ["jingga"], "brown": ["coklat"]}},
    "fa": {"colour": {"red": ["سرخ"], "brown": ["قهوه ای"]}},
}

#: Wordings of :func:`write_scene_shards`: "fixed" (each language's table words) or
#: "varied" (a synonym from :data:`_SYNONYMS` drawn per caption).
WORDINGS: tuple[str, ...] = ("fixed", "varied")


_CAPTIONERS = {
    "en": _caption_en,
    "de": _caption_de,
    "fr": _caption_fr,
    "es": _caption_es,
    "ru": _caption_ru,
    "ar": _caption_ar,
    "hi": _caption_hi,
    "ko": _caption_ko,
    "zh": _caption_zh,
    "ja": _caption_ja,
    "pt": _caption_pt,
    "it": _caption_it,
    "tr": _caption_tr,
    "id": _caption_id,
    "vi": _caption_vi,
    "el": _caption_el,
    "fa": _caption_fa,
}

#: Caption languages added for measuring cross-lingual transfer (AltCLIP's claim): captions
#: (:func:`caption`) only, no code-mixed captions or attribute prompts; not in ``LANGUAGES``,
#: so the default data and the main job are unchanged; pass them in ``languages=``.
EXTRA_LANGUAGES: list[str] = ["pt", "it", "tr", "id", "vi", "el", "fa"]

#: Every language :func:`caption` knows.
ALL_LANGUAGES: list[str] = LANGUAGES + EXTRA_LANGUAGES


def _check_language(lang: str) -> None:
    if lang not in _CAPTIONERS:
        raise ValueError(f"no synthetic-scene captions for language {lang!r}; available: {ALL_LANGUAGES}")


def caption(spec: SceneSpec, lang: str, rng: Optional[random.Random] = None) -> str:
    """Describes a scene in one language.

    Args:
        spec: The scene.
        lang: One of ``ALL_LANGUAGES``.
        rng: Draws each shape, colour or size word from the table's word and its synonyms
            (:data:`_SYNONYMS`, in the same grammar); None keeps the table's word.

    Returns:
        A grammatical noun phrase naming count, size, colour, shape and position.

    Raises:
        ValueError: If ``lang`` is not one of ``ALL_LANGUAGES``.
    """
    _check_language(lang)
    if rng is None:
        return _CAPTIONERS[lang](spec)
    synonyms = _SYNONYMS.get(lang, {})

    def pick(kind: str, key: str, entry: Any) -> Any:
        others = synonyms.get(kind, {}).get(key)
        return rng.choice([entry, *others]) if others else entry

    return _CAPTIONERS[lang](spec, pick)


# ------------------------------------------------------------------- code-mixed captions
# Insertional code-switching (Muysken 2000; the "phrase" level of HiKE's Korean-English
# benchmark): an English noun phrase "<colour> <shape noun>" is inserted into the matrix
# language's sentence in place of its own colour and shape words. The matrix language
# keeps everything else: numeral and counter, size adjective (agreeing with the gender of
# the noun the English one replaces, as loanwords take their translation's gender),
# position phrase and word order. The English noun carries English number (circle /
# circles); in zh and ja the inserted phrase is set off by spaces.


def _en_noun_phrase(s: SceneSpec) -> str:
    return f"{s.colour} {_EN_SHAPES[s.shape][0 if s.count == 1 else 1]}"


def _code_mixed_de(s: SceneSpec, np_: str) -> str:
    size, gender = _DE_SIZES[s.size], _DE_SHAPES[s.shape][2]
    if s.count == 1:
        article = "eine" if gender == "f" else "ein"
        phrase = f"{article} {size}{_DE_ENDINGS_AFTER_EIN[gender]} {np_}"
    else:
        phrase = f"{_DE_NUMBERS[s.count]} {size}e {np_}"
    return f"{phrase} {_DE_POSITIONS[s.position]}"


def _code_mixed_fr(s: SceneSpec, np_: str) -> str:
    gender = _FR_SHAPES[s.shape][2]
    number = {1: "un" if gender == "m" else "une", 2: "deux", 3: "trois"}[s.count]
    size = _fr_form(_FR_SIZES[s.size], gender, s.count > 1)
    return f"{number} {size} {np_} {_FR_POSITIONS[s.position]}"


def _code_mixed_es(s: SceneSpec, np_: str) -> str:
    gender = _ES_SHAPES[s.shape][2]
    number = {1: "un" if gender == "m" else "una", 2: "dos", 3: "tres"}[s.count]
    size = _fr_form(_ES_SIZES[s.size], gender, s.count > 1)
    return f"{number} {np_} {size} {_ES_POSITIONS[s.position]}"


def _code_mixed_ru(s: SceneSpec, np_: str) -> str:
    gender, size = _RU_SHAPES[s.shape][2], _RU_ADJECTIVES[s.size]
    if s.count == 1:
        slot = {"m": 0, "f": 1, "n": 2}[gender]
        number = {"m": "один", "f": "одна", "n": "одно"}[gender]
    else:
        slot = 3 if gender == "f" else 4
        number = {2: "две" if gender == "f" else "два", 3: "три"}[s.count]
    return f"{number} {size[slot]} {np_} {_RU_POSITIONS[s.position]}"


def _code_mixed_ar(s: SceneSpec, np_: str) -> str:
    size, feminine = _AR_ADJECTIVES[s.size], _AR_SHAPES[s.shape][3] == "f"
    if s.count == 1:
        phrase = f"{np_} {size[1 if feminine else 0]}"
    elif s.count == 2:
        phrase = f"{np_} {size[3 if feminine else 2]}"
    else:
        phrase = f"{'ثلاث' if feminine else 'ثلاثة'} {np_} {size[1]}"
    return f"{phrase} {_AR_POSITIONS[s.position]}"


def _code_mixed_hi(s: SceneSpec, np_: str) -> str:
    size = _HI_ADJECTIVES[s.size][0 if s.count == 1 else 1]
    return f"{_HI_POSITIONS[s.position]} {_HI_NUMBERS[s.count]} {size} {np_}"


def _code_mixed_ko(s: SceneSpec, np_: str) -> str:
    return f"{_KO_POSITIONS[s.position]} {_KO_SIZES[s.size]} {np_} {_KO_NUMBERS[s.count]} 개"


def _code_mixed_zh(s: SceneSpec, np_: str) -> str:
    return f"{_ZH_NUMBERS[s.count]}个{_ZH_SIZES[s.size]} {np_} 在{_ZH_POSITIONS[s.position]}"


def _code_mixed_ja(s: SceneSpec, np_: str) -> str:
    return f"{_JA_POSITIONS[s.position]}に{_JA_SIZES[s.size]} {np_} が{_JA_NUMBERS[s.count]}"


_CODE_MIXERS = {
    "de": _code_mixed_de,
    "fr": _code_mixed_fr,
    "es": _code_mixed_es,
    "ru": _code_mixed_ru,
    "ar": _code_mixed_ar,
    "hi": _code_mixed_hi,
    "ko": _code_mixed_ko,
    "zh": _code_mixed_zh,
    "ja": _code_mixed_ja,
}


def code_mixed_caption(spec: SceneSpec, lang: str, insert_lang: str = "en") -> str:
    """Describes a scene in ``lang`` with an English colour–shape noun phrase inserted.

    Insertional code-switching: the English phrase ``"<colour> <shape noun>"`` replaces
    the matrix language's colour and shape words; numeral, counter, size adjective,
    position phrase and word order stay those of ``lang`` (see the comment above the
    implementation for agreement and spacing).

    Example:
        >>> spec = SceneSpec(shape="circle", colour="red", count=2, position="top", size="large")
        >>> code_mixed_caption(spec, "fr")
        'deux grands red circles en haut'
        >>> code_mixed_caption(spec, "ja")
        '上に大きい red circles が二つ'

    Args:
        spec: The scene.
        lang: The matrix language, one of ``LANGUAGES``. For ``lang == insert_lang``
            there is nothing to switch and the monolingual :func:`caption` is returned.
        insert_lang: Language of the inserted noun phrase; only ``"en"`` is supported.

    Returns:
        The code-mixed caption.

    Raises:
        ValueError: If ``lang`` is not one of ``LANGUAGES`` or ``insert_lang`` is not ``"en"``.
    """
    _check_language(lang)
    if lang != insert_lang and lang not in _CODE_MIXERS:
        raise ValueError(f"code_mixed_caption: no code-mixed captions for {lang!r}; available: {sorted(_CODE_MIXERS)}")
    if insert_lang != "en":
        raise ValueError(
            f"code_mixed_caption: insert_lang={insert_lang!r} is not supported; only 'en' (English noun "
            "phrases inserted into the other languages) is implemented"
        )
    if lang == insert_lang:
        return caption(spec, lang)
    return _CODE_MIXERS[lang](spec, _en_noun_phrase(spec))


# ---------------------------------------------------------------------- attribute prompts
# Short label prompts for zero-shot classification of one attribute. Each language uses
# its generic word for "shape" (de Objekt, fr forme, ru фигура, ar شكل, hi आकृति, ...),
# with the attribute word agreeing with it.

_PROMPTS: dict[str, dict[str, dict[str, str]]] = {
    "en": {
        "colour": {c: f"a {c} shape" for c in COLOURS},
        "shape": {
            "circle": "a circle", "square": "a square", "triangle": "a triangle",
            "star": "a star", "diamond": "a diamond", "heart": "a heart",
        },
        "count": {"1": "one shape", "2": "two shapes", "3": "three shapes"},
        "position": {p: f"a shape {phrase}" for p, phrase in _EN_POSITIONS.items()},
        "size": {"small": "a small shape", "large": "a large shape"},
    },
    "de": {
        "colour": {c: f"ein {_DE_COLOURS[c]}es Objekt" for c in COLOURS},
        "shape": {k: f"{'eine' if g == 'f' else 'ein'} {sg}" for k, (sg, _, g) in _DE_SHAPES.items()},
        "count": {"1": "ein Objekt", "2": "zwei Objekte", "3": "drei Objekte"},
        "position": {p: f"ein Objekt {phrase}" for p, phrase in _DE_POSITIONS.items()},
        "size": {"small": "ein kleines Objekt", "large": "ein großes Objekt"},
    },
    "fr": {
        "colour": {c: f"une forme {_FR_COLOURS[c][1]}" for c in COLOURS},
        "shape": {k: f"{'une' if g == 'f' else 'un'} {sg}" for k, (sg, _, g) in _FR_SHAPES.items()},
        "count": {"1": "une forme", "2": "deux formes", "3": "trois formes"},
        "position": {p: f"une forme {phrase}" for p, phrase in _FR_POSITIONS.items()},
        "size": {"small": "une petite forme", "large": "une grande forme"},
    },
    "es": {
        "colour": {c: f"una forma {_ES_COLOURS[c][1]}" for c in COLOURS},
        "shape": {k: f"{'una' if g == 'f' else 'un'} {sg}" for k, (sg, _, g) in _ES_SHAPES.items()},
        "count": {"1": "una forma", "2": "dos formas", "3": "tres formas"},
        "position": {p: f"una forma {phrase}" for p, phrase in _ES_POSITIONS.items()},
        "size": {"small": "una forma pequeña", "large": "una forma grande"},
    },
    "ru": {
        "colour": {c: f"{_RU_ADJECTIVES[c][1]} фигура" for c in COLOURS},
        "shape": {k: nom for k, (nom, _, _) in _RU_SHAPES.items()},
        "count": {"1": "одна фигура", "2": "две фигуры", "3": "три фигуры"},
        "position": {p: f"фигура {phrase}" for p, phrase in _RU_POSITIONS.items()},
        "size": {"small": "маленькая фигура", "large": "большая фигура"},
    },
    "ar": {
        "colour": {c: f"شكل {_AR_ADJECTIVES[c][0]}" for c in COLOURS},
        "shape": {k: sg for k, (sg, _, _, _) in _AR_SHAPES.items()},
        "count": {"1": "شكل واحد", "2": "شكلان", "3": "ثلاثة أشكال"},
        "position": {p: f"شكل {phrase}" for p, phrase in _AR_POSITIONS.items()},
        "size": {"small": "شكل صغير", "large": "شكل كبير"},
    },
    "hi": {
        "colour": {c: f"एक {_HI_ADJECTIVES[c][2]} आकृति" for c in COLOURS},
        "shape": {k: f"एक {sg}" for k, (sg, _) in _HI_SHAPES.items()},
        "count": {"1": "एक आकृति", "2": "दो आकृतियाँ", "3": "तीन आकृतियाँ"},
        "position": {p: f"{phrase} एक आकृति" for p, phrase in _HI_POSITIONS.items()},
        "size": {"small": "एक छोटी आकृति", "large": "एक बड़ी आकृति"},
    },
    "ko": {
        "colour": {c: f"{_KO_COLOURS[c]} 도형" for c in COLOURS},
        "shape": dict(_KO_SHAPES),
        "count": {"1": "도형 한 개", "2": "도형 두 개", "3": "도형 세 개"},
        "position": {p: f"{phrase} 있는 도형" for p, phrase in _KO_POSITIONS.items()},
        "size": {"small": "작은 도형", "large": "큰 도형"},
    },
    "zh": {
        "colour": {c: f"一个{_ZH_COLOURS[c]}的形状" for c in COLOURS},
        "shape": {k: f"一个{v}" for k, v in _ZH_SHAPES.items()},
        "count": {"1": "一个形状", "2": "两个形状", "3": "三个形状"},
        "position": {p: f"在{phrase}的形状" for p, phrase in _ZH_POSITIONS.items()},
        "size": {"small": "一个小形状", "large": "一个大形状"},
    },
    "ja": {
        "colour": {c: f"{_JA_COLOURS[c]}図形" for c in COLOURS},
        "shape": dict(_JA_SHAPES),
        "count": {"1": "図形が一つ", "2": "図形が二つ", "3": "図形が三つ"},
        "position": {p: f"{phrase}にある図形" for p, phrase in _JA_POSITIONS.items()},
        "size": {"small": "小さい図形", "large": "大きい図形"},
    },
}


# Label prompts of EXTRA_LANGUAGES, with each language's generic word for "shape": pt/it
# forma (f), tr şekil, id bentuk, vi hình, el σχήμα (n), fa شکل.
_PROMPTS.update({
    "pt": {
        "colour": {c: f"uma forma {_PT_COLOURS[c][1]}" for c in COLOURS},
        "shape": {k: f"{'uma' if g == 'f' else 'um'} {sg}" for k, (sg, _, g) in _PT_SHAPES.items()},
        "count": {"1": "uma forma", "2": "duas formas", "3": "três formas"},
        "position": {p: f"uma forma {phrase}" for p, phrase in _PT_POSITIONS.items()},
        "size": {"small": "uma forma pequena", "large": "uma forma grande"},
    },
    "it": {
        "colour": {c: f"una forma {_IT_COLOURS[c][1]}" for c in COLOURS},
        "shape": {k: f"{'una' if g == 'f' else 'un'} {sg}" for k, (sg, _, g) in _IT_SHAPES.items()},
        "count": {"1": "una forma", "2": "due forme", "3": "tre forme"},
        "position": {p: f"una forma {phrase}" for p, phrase in _IT_POSITIONS.items()},
        "size": {"small": "una piccola forma", "large": "una grande forma"},
    },
    "tr": {
        "colour": {c: f"{_TR_COLOURS[c]} bir şekil" for c in COLOURS},
        "shape": {k: f"bir {v}" for k, v in _TR_SHAPES.items()},
        "count": {"1": "bir şekil", "2": "iki şekil", "3": "üç şekil"},
        "position": {p: f"{phrase} bir şekil" for p, phrase in _TR_POSITIONS.items()},
        "size": {"small": "küçük bir şekil", "large": "büyük bir şekil"},
    },
    "id": {
        "colour": {c: f"sebuah bentuk {_ID_COLOURS[c]}" for c in COLOURS},
        "shape": {k: f"sebuah {v}" for k, v in _ID_SHAPES.items()},
        "count": {"1": "satu bentuk", "2": "dua bentuk", "3": "tiga bentuk"},
        "position": {p: f"sebuah bentuk {phrase}" for p, phrase in _ID_POSITIONS.items()},
        "size": {"small": "sebuah bentuk kecil", "large": "sebuah bentuk besar"},
    },
    "vi": {
        "colour": {c: f"một hình màu {_VI_COLOURS[c]}" for c in COLOURS},
        "shape": {k: f"một {v}" for k, v in _VI_SHAPES.items()},
        "count": {"1": "một hình", "2": "hai hình", "3": "ba hình"},
        "position": {p: f"một hình {phrase}" for p, phrase in _VI_POSITIONS.items()},
        "size": {"small": "một hình nhỏ", "large": "một hình lớn"},
    },
    "el": {
        "colour": {c: f"ένα {_EL_ADJECTIVES[c][2]} σχήμα" for c in COLOURS},
        "shape": {k: f"{ {'m': 'ένας', 'f': 'μία', 'n': 'ένα'}[g]} {sg}" for k, (sg, _, g) in _EL_SHAPES.items()},
        "count": {"1": "ένα σχήμα", "2": "δύο σχήματα", "3": "τρία σχήματα"},
        "position": {p: f"ένα σχήμα {phrase}" for p, phrase in _EL_POSITIONS.items()},
        "size": {"small": "ένα μικρό σχήμα", "large": "ένα μεγάλο σχήμα"},
    },
    "fa": {
        "colour": {c: f"یک شکل {_FA_COLOURS[c]}" for c in COLOURS},
        "shape": {k: f"یک {v}" for k, v in _FA_SHAPES.items()},
        "count": {"1": "یک شکل", "2": "دو شکل", "3": "سه شکل"},
        "position": {p: f"یک شکل {phrase}" for p, phrase in _FA_POSITIONS.items()},
        "size": {"small": "یک شکل کوچک", "large": "یک شکل بزرگ"},
    },
})


def attribute_prompt(attribute: str, value: str, lang: str) -> str:
    """A short label prompt for zero-shot classification of one scene attribute.

    Args:
        attribute: One of ``ATTRIBUTES`` (``colour``, ``shape``, ``count``, ``position``,
            ``size``).
        value: One of ``ATTRIBUTES[attribute]`` (counts as strings, ``"1"``-``"3"``; an
            int is accepted too).
        lang: One of ``LANGUAGES``.

    Returns:
        E.g. ``"a red shape"``, ``"ein rotes Objekt"``, ``"красная фигура"``.

    Raises:
        ValueError: If the attribute, value or language is unknown.
    """
    _check_language(lang)
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown scene attribute {attribute!r}; expected one of {list(ATTRIBUTES)}")
    value = str(value)
    if value not in ATTRIBUTES[attribute]:
        raise ValueError(f"unknown value {value!r} for scene attribute {attribute!r}; expected one of {ATTRIBUTES[attribute]}")
    return _PROMPTS[lang][attribute][value]


def attribute_prompt_ensemble(attribute: str, value: str, lang: str, num_captions: int = 24, seed: int = 0) -> list[str]:
    """Prompts for one attribute value: the short label plus full captions that have it.

    CLIP's zero-shot classifier averages the embeddings of many prompt templates per
    class (Radford et al. 2021, "prompt ensembling"). Here the templates are the
    scene grammar itself: ``num_captions`` captions of scenes with ``attribute=value``
    and the other attributes drawn at random (deterministic by ``seed``). Only text is
    generated; no image is involved.
    """
    prompts = [attribute_prompt(attribute, value, lang)]
    rng = random.Random(f"{attribute}/{value}/{seed}")
    for _ in range(num_captions):
        fields = {name: rng.choice(values) for name, values in ATTRIBUTES.items()}
        fields[attribute] = str(value)
        spec = SceneSpec(
            shape=fields["shape"], colour=fields["colour"], count=int(fields["count"]),
            position=fields["position"], size=fields["size"],
        )
        prompts.append(caption(spec, lang))
    return prompts


# ------------------------------------------------------------------------------- splits


def _check_extra_colours(extra_colours: Sequence[str]) -> None:
    unknown = [c for c in extra_colours if c not in EXTRA_COLOURS]
    if unknown:
        raise ValueError(f"extra colours {unknown} unknown; the scenes know {EXTRA_COLOURS} beyond {COLOURS}")


def heldout_combinations(seed: int = 0) -> set[tuple[str, str]]:
    """The (colour, shape) pairs that never appear in training scenes.

    About 20% of all pairs are held out, at most two per colour and two per shape, so
    every colour and every shape is still seen in training with most partners.

    Args:
        seed: Chooses which pairs; the same seed always gives the same set.

    Returns:
        Set of ``(colour, shape)`` tuples.
    """
    rng = random.Random(f"heldout:{seed}")
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    rng.shuffle(pairs)
    target = round(0.2 * len(pairs))
    per_colour = {c: 0 for c in COLOURS}
    per_shape = {s: 0 for s in SHAPES}
    chosen: set[tuple[str, str]] = set()
    for colour, shape in pairs:
        if len(chosen) == target:
            break
        if per_colour[colour] < 2 and per_shape[shape] < 2:
            chosen.add((colour, shape))
            per_colour[colour] += 1
            per_shape[shape] += 1
    return chosen


def sample_scenes(num: int, split: str, seed: int = 0, extra_colours: Sequence[str] = ()) -> Iterator[SceneSpec]:
    """Draws scene specs for one split.

    Args:
        num: How many scenes.
        split: ``"train"`` (combinations outside :func:`heldout_combinations`) or
            ``"val"`` (only held-out combinations).
        seed: Seed of the whole dataset; the same (num, split, seed) gives the same scenes.
        extra_colours: Colours of :data:`EXTRA_COLOURS` to draw beside :data:`COLOURS`,
            with every shape, in the ``train`` split only (the held-out combinations are
            drawn among :data:`COLOURS`, so ``val`` is unchanged). Empty: the same scenes
            as before extra colours existed.

    Yields:
        Scene specs; each carries its own derived seed for rendering.

    Raises:
        ValueError: If ``split`` is not ``"train"`` or ``"val"``.
    """
    if split not in ("train", "val"):
        raise ValueError(f"unknown scene split {split!r}; expected 'train' or 'val'")
    _check_extra_colours(extra_colours)
    heldout = heldout_combinations(seed)
    pairs = sorted(heldout) if split == "val" else sorted(set((c, s) for c in COLOURS for s in SHAPES) - heldout)
    if split == "train":
        pairs += [(c, s) for c in extra_colours for s in SHAPES]
    rng = random.Random(f"scenes:{seed}:{split}")
    for _ in range(num):
        colour, shape = rng.choice(pairs)
        yield SceneSpec(
            shape=shape,
            colour=colour,
            count=rng.choice(COUNTS),
            position=rng.choice(POSITIONS),
            size=rng.choice(SIZES),
            seed=rng.getrandbits(31),
        )


# ------------------------------------------------------------------------------ writing


def _encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # Level 1 keeps writing fast; these flat-colour images compress well anyway.
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _scene_samples(
    num: int, split: str, *, image_size: int, languages: list[str], seed: int, progress: bool, style: str = "plain",
    extra_colours: Sequence[str] = (), wording: str = "fixed",
) -> Iterator[dict]:
    from tqdm.auto import tqdm

    specs = sample_scenes(num, split, seed, extra_colours)
    for index, spec in enumerate(tqdm(specs, total=num, desc=f"scenes/{split}", unit="scene", disable=not progress)):
        captions = {
            lang: caption(spec, lang, random.Random(f"wording:{spec.seed}:{lang}") if wording == "varied" else None)
            for lang in languages
        }
        lang = languages[index % len(languages)]
        yield {
            "__key__": f"{split}-{index:08d}",
            "png": _encode_png(render_scene(spec, image_size, style)),
            "txt": captions[lang],
            "json": {
                "lang": lang,
                "captions": captions,
                "attributes": spec.attributes(),
                "split": split,
                "scene_seed": spec.seed,
            },
        }


def write_scene_shards(
    out_dir: str | Path,
    *,
    num_train: int,
    num_val: int,
    image_size: int = 64,
    languages: list[str] | None = None,
    seed: int = 0,
    samples_per_shard: int = 1000,
    overwrite: bool = False,
    progress: bool = True,
    style: str = "plain",
    extra_colours: Sequence[str] = (),
    wording: str = "fixed",
) -> dict[str, list[Path]]:
    """Writes train and val shards of synthetic scenes.

    Sample ``i`` of a split has its ``txt`` caption in ``languages[i % len(languages)]``
    and all captions in ``json["captions"]``, so a DataModule can also pick a caption
    language at random per sample.

    Args:
        out_dir: Shards go to ``out_dir/train/shard-*.tar`` and ``out_dir/val/shard-*.tar``.
        num_train: Number of training scenes (held-out combinations excluded).
        num_val: Number of validation scenes (held-out combinations only).
        image_size: Image height and width in pixels.
        languages: Caption languages; defaults to all of ``LANGUAGES``.
        seed: Dataset seed (scenes and held-out combinations).
        samples_per_shard: Maximum samples per shard.
        overwrite: Replace existing shards instead of refusing.
        progress: Show a tqdm progress bar.
        style: Picture style, "plain" or "varied" (see :func:`render_scene`).
        extra_colours: Colours of :data:`EXTRA_COLOURS` added to the train split (see
            :func:`sample_scenes`).
        wording: "fixed" or "varied" (:data:`WORDINGS`): with "varied" every caption draws
            its shape, colour and size words from the language's synonyms (:func:`caption`).

    Returns:
        ``{"train": [...], "val": [...]}`` lists of the written shard paths.

    Raises:
        FileExistsError: If shards exist and ``overwrite`` is False.
        ValueError: If a language is unknown or a count is negative.
    """
    from babeltower.datasets.writer import write_shards

    languages = list(languages) if languages else list(LANGUAGES)
    for lang in languages:
        _check_language(lang)
    if num_train < 0 or num_val < 0:
        raise ValueError(f"write_scene_shards: num_train and num_val must be >= 0, got {num_train} and {num_val}")
    if style not in STYLES:
        raise ValueError(f"write_scene_shards: style must be one of {STYLES}, got {style!r}")
    _check_extra_colours(extra_colours)
    if wording not in WORDINGS:
        raise ValueError(f"write_scene_shards: wording must be one of {WORDINGS}, got {wording!r}")
    out_dir = Path(out_dir)
    written: dict[str, list[Path]] = {}
    for split, num in (("train", num_train), ("val", num_val)):
        if num == 0:
            written[split] = []
            continue
        samples = _scene_samples(num, split, image_size=image_size, languages=languages, seed=seed, progress=progress,
                                 style=style, extra_colours=extra_colours, wording=wording)
        written[split] = write_shards(
            samples, out_dir / split, prefix="shard", max_count=samples_per_shard, overwrite=overwrite
        )
    return written


def caption_corpus(languages: list[str] | None = None, seed: int = 0) -> list[str]:
    """Every caption and attribute prompt, for training a tokenizer.

    Enumerates all attribute combinations (so every word form of every language occurs)
    and every attribute prompt, in a seeded shuffled order.

    Args:
        languages: Languages to include; defaults to all of ``LANGUAGES``.
        seed: Shuffles the order.

    Returns:
        List of distinct strings.
    """
    languages = list(languages) if languages else list(LANGUAGES)
    for lang in languages:
        _check_language(lang)
    texts: set[str] = set()
    for shape in SHAPES:
        for colour in COLOURS:
            for count in COUNTS:
                for position in POSITIONS:
                    for size in SIZES:
                        spec = SceneSpec(shape=shape, colour=colour, count=count, position=position, size=size)
                        texts.update(caption(spec, lang) for lang in languages)
    for lang in languages:
        for attribute, values in ATTRIBUTES.items():
            texts.update(attribute_prompt(attribute, value, lang) for value in values)
    corpus = sorted(texts)
    random.Random(f"corpus:{seed}").shuffle(corpus)
    return corpus
