"""Logical <-> visual order of bidirectional text (Arabic with digits or Latin), via GNU FriBidi.

Text is stored and reported in *logical* (reading) order. A text-line recogniser that
scans an image from left to right, though, sees *visual* order: the letters of an
Arabic word run right to left, while digits and Latin words inside it still run left
to right. The OCR head therefore trains CTC on the visual order of each label and turns
its visual-order output back into logical order, both with the Unicode bidirectional
algorithm (UAX #9) as FriBidi implements it — the same library Pillow's raqm layout uses
to draw the line, so drawing and labels agree.

The paragraph direction is chosen by :func:`base_direction` (the majority of strongly
directional characters), not the first strong character: a visual-order string alone
cannot tell "abc 123 <Arabic>" read left to right from "<Arabic> 123 abc" read right to
left, so the synthesiser and the decoder both use this one rule.

FriBidi is GNU FriBidi's C library (Debian ``libfribidi0``; Pillow's raqm needs it too),
loaded with ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import unicodedata

#: FriBidi paragraph types (fribidi-bidi-types.h): strong | letter (| rtl).
_PAR_LTR = 0x110
_PAR_RTL = 0x111
_RTL_CLASSES = frozenset({"R", "AL"})
#: Bidi-mirrored pairs (UAX #9 rule L4): drawn at an odd level, "(" shows as ")".
_MIRROR = dict(zip("()[]{}<>«»‹›", ")(][}{><»«›‹"))


@functools.lru_cache(maxsize=1)
def _fribidi() -> ctypes.CDLL:
    name = ctypes.util.find_library("fribidi") or "libfribidi.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise ImportError(
            f"GNU FriBidi ({name}) could not be loaded: {exc}. Install it (Debian/Ubuntu: apt-get install "
            "libfribidi0; macOS: brew install fribidi); Pillow's raqm text layout needs it as well"
        ) from exc
    lib.fribidi_log2vis.restype = ctypes.c_byte
    lib.fribidi_log2vis.argtypes = [
        ctypes.POINTER(ctypes.c_uint32),  # const FriBidiChar *str
        ctypes.c_int,  # FriBidiStrIndex len
        ctypes.POINTER(ctypes.c_uint32),  # FriBidiParType *pbase_dir
        ctypes.POINTER(ctypes.c_uint32),  # FriBidiChar *visual_str
        ctypes.POINTER(ctypes.c_int),  # positions_L_to_V
        ctypes.POINTER(ctypes.c_int),  # positions_V_to_L
        ctypes.POINTER(ctypes.c_byte),  # FriBidiLevel *embedding_levels
    ]
    return lib


def has_rtl(text: str) -> bool:
    """True if ``text`` holds a strongly right-to-left character (Arabic, Hebrew, ...)."""
    return any(unicodedata.bidirectional(ch) in _RTL_CLASSES for ch in text)


def base_direction(text: str) -> str:
    """"rtl" if right-to-left letters outnumber left-to-right ones, else "ltr"."""
    rtl = sum(unicodedata.bidirectional(ch) in _RTL_CLASSES for ch in text)
    ltr = sum(unicodedata.bidirectional(ch) == "L" for ch in text)
    return "rtl" if rtl > ltr else "ltr"


def bidi_layout(text: str, direction: str | None = None) -> tuple[list[int], list[int]]:
    """Embedding levels and the visual-to-logical map of one line.

    Args:
        text: One line in logical order (no newlines).
        direction: Paragraph direction "ltr" / "rtl"; None: :func:`base_direction`.

    Returns:
        ``(levels, visual_to_logical)``: ``levels[i]`` is the embedding level of logical
        character i (odd = right to left); ``visual_to_logical[j]`` is the logical index
        of the character drawn at visual position j (left to right).
    """
    n = len(text)
    if n == 0:
        return [], []
    direction = direction or base_direction(text)
    if direction not in ("ltr", "rtl"):
        raise ValueError(f"bidi_layout: direction must be 'ltr', 'rtl' or None, got {direction!r}")
    if not has_rtl(text):  # fast path, and no FriBidi needed for most lines
        if direction == "ltr":
            return [0] * n, list(range(n))
    lib = _fribidi()
    chars = (ctypes.c_uint32 * n)(*map(ord, text))
    base = ctypes.c_uint32(_PAR_RTL if direction == "rtl" else _PAR_LTR)
    visual = (ctypes.c_uint32 * n)()
    l2v, v2l = (ctypes.c_int * n)(), (ctypes.c_int * n)()
    levels = (ctypes.c_byte * n)()
    if not lib.fribidi_log2vis(chars, n, ctypes.byref(base), visual, l2v, v2l, levels):
        raise RuntimeError(f"fribidi_log2vis failed on {text!r}")
    return list(levels), list(v2l)


def to_visual(text: str, direction: str | None = None) -> str:
    """Logical -> visual order: the characters as drawn from left to right.

    Brackets at a right-to-left level are mirrored ("(" is drawn as ")"), as a renderer
    does; letters are not shaped (the label keeps base letters, not presentation forms).
    """
    if not has_rtl(text) and (direction or "ltr") == "ltr":
        return text
    levels, v2l = bidi_layout(text, direction)
    return "".join(_MIRROR.get(text[i], text[i]) if levels[i] % 2 else text[i] for i in v2l)


def to_logical(visual: str, direction: str | None = None) -> str:
    """Visual (left-to-right scan) -> logical order: the inverse of :func:`to_visual`.

    UAX #9 reordering reverses runs by level; the levels of a visual string equal those
    of its logical string for Arabic/Hebrew text with embedded numbers and LTR words
    (character classes do not depend on position), so applying the reordering to the
    visual string undoes it.
    """
    if not has_rtl(visual) and (direction or "ltr") == "ltr":
        return visual
    return to_visual(visual, direction or base_direction(visual))
