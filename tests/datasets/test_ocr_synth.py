"""OCR line synthesis: real text per language, raqm layout, logical-order labels, held-out fonts, tofu."""

import io
import json
import random
from collections import Counter

import pytest
from PIL import Image

from babeltower.datasets.synthetic import ocr
from babeltower.modalities import bidi

pytest.importorskip("gflanguages")
pytest.importorskip("wordfreq")


@pytest.fixture(scope="module")
def fonts():
    try:
        return ocr.check_fonts()
    except RuntimeError as error:  # a machine without the Debian font packages
        pytest.skip(str(error))


def test_every_script_has_training_and_held_out_fonts(fonts):
    for script in ocr.SCRIPTS:
        train = {f.name(script) for f in fonts[script]["train"]}
        held_out = {f.name(script) for f in fonts[script]["eval"]}
        assert train and held_out and not train & held_out, script


def test_lines_of_every_language_are_real_text_with_logical_labels(fonts):
    stats = Counter()
    samples = list(ocr.generate_lines(22, "test", seed=3, stats=stats))
    assert stats["written"] == 22
    langs = {s["json"]["lang"] for s in samples}
    assert langs == set(ocr.LANGUAGES)
    for s in samples:
        meta = s["json"]
        assert s["txt"] == meta["text"] and s["txt"].strip()
        assert meta["font_held_out"] is True  # test lines only use held-out fonts
        assert ocr.text_split(s["txt"]) == "eval"  # and held-out texts
        image = Image.open(io.BytesIO(s["png"]))
        assert image.height >= 16 and image.width >= 8
        json.dumps(meta)
        # no invisible format characters (RLM from CLDR dates) or odd spaces in labels
        assert all(ch == " " or not ch.isspace() for ch in s["txt"])
        assert not any(ch in s["txt"] for ch in "\u200e\u200f\u061c")


def test_training_lines_use_training_fonts_and_texts(fonts):
    samples = list(ocr.generate_lines(11, "train", seed=1, train_height=32))
    for s in samples:
        assert s["json"]["font_held_out"] is False
        assert ocr.text_split(s["txt"]) == "train"
        assert Image.open(io.BytesIO(s["png"])).height == 32


def test_arabic_with_digits_and_latin_keeps_logical_order(fonts):
    text = "ذهبت إلى New York في 2024"  # Arabic, a Latin name and a year: reading order
    arabic = next(f for f in fonts["Arab"]["train"] if f.file == "NotoSansArabic-Regular.ttf")
    sample = ocr.render_sample(text, "ar", arabic, random.Random(0), held_out_fonts=False, augment_strength=0)
    assert sample.meta["text"] == text  # the label is the reading order, not the drawn order
    assert sample.meta["direction"] == "rtl" and sample.meta["rtl_digits"] and sample.meta["mixed"]
    # Drawn left to right the year comes first and the Arabic letters run backwards.
    assert bidi.to_visual(text) == "2024 يف New York ىلإ تبهذ"
    assert bidi.to_logical(bidi.to_visual(text)) == text
    # The Latin run is drawn (by the fallback font) left of the Arabic: ink on both sides.
    grey = sample.image.convert("L")
    assert grey.getbbox() is not None and grey.width > 3 * grey.height


def test_whole_string_shaping_joins_arabic_letters(fonts):
    arabic = str(ocr.find_font("NotoSansArabic-Regular.ttf"))
    joined = ocr.draw_line("سلام", (arabic, 0), None, 32)
    isolated = ocr.draw_line(" ".join("سلام"), (arabic, 0), None, 32)
    # Joined letters take their connected forms: narrower than the same letters apart.
    assert joined.width < isolated.width - 20


def test_tofu_lines_are_detected_and_counted(fonts):
    devanagari = (str(ocr.find_font("NotoSansDevanagari-Regular.ttf")), 0)
    with pytest.raises(ocr.TofuError, match="U\\+4E2D"):
        ocr.assign_fonts("नमस्ते 中", devanagari, None)
    # Latin inside a Devanagari line goes to the fallback face instead of becoming tofu.
    latin = (str(ocr.find_font("NotoSans-Regular.ttf")), 0)
    faces = ocr.assign_fonts("नमस्ते abc", devanagari, latin)
    assert faces[0] == devanagari and faces[-1] == latin


def test_unknown_language_or_split_is_an_error():
    with pytest.raises(ValueError, match="no OCR line synthesis for languages"):
        next(ocr.generate_lines(1, "train", languages=("xx",)))
    with pytest.raises(ValueError, match="unknown split"):
        next(ocr.generate_lines(1, "dev"))


def test_same_seed_same_lines(fonts):
    a = [s["txt"] for s in ocr.generate_lines(6, "val", seed=5)]
    b = [s["txt"] for s in ocr.generate_lines(6, "val", seed=5)]
    assert a == b
