import json
import math
import unicodedata

import pytest
import webdataset as wds

from babeltower.datasets.synthetic import scenes
from babeltower.datasets.synthetic.scenes import (
    ATTRIBUTES,
    LANGUAGES,
    SceneSpec,
    attribute_prompt,
    caption,
    caption_corpus,
    heldout_combinations,
    render_scene,
    sample_scenes,
    write_scene_shards,
)


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return "HAN" if name.startswith("CJK") else name.split(" ")[0]


def test_render_is_deterministic_by_seed_and_antialiased():
    spec = SceneSpec("star", "blue", 3, "left", "large", seed=11)
    a, b = render_scene(spec, 64), render_scene(spec, 64)
    assert a.size == (64, 64) and a.mode == "RGB"
    assert a.tobytes() == b.tobytes()
    other = SceneSpec("star", "blue", 3, "left", "large", seed=12)
    assert render_scene(other, 64).tobytes() != a.tobytes()
    assert len(set(a.getdata())) > 10  # edge pixels are blends, not just two colours


def test_objects_lie_in_their_region():
    for position, (axis, low) in {"left": (0, True), "right": (0, False), "top": (1, True), "bottom": (1, False)}.items():
        image = render_scene(SceneSpec("square", "red", 2, position, "small", seed=3), 64)
        red = [(x, y) for y in range(64) for x in range(64) if image.getpixel((x, y))[1] < 120]
        coords = [p[axis] for p in red]
        assert red, position
        assert (max(coords) < 32) if low else (min(coords) >= 32), position


def test_varied_style_varies_look_but_keeps_captions_true():
    # the plain style is the default and unchanged; the varied one differs, deterministically
    spec = SceneSpec("heart", "red", 1, "center", "large", seed=5)
    assert render_scene(spec, 64).tobytes() == render_scene(spec, 64, "plain").tobytes()
    varied = [render_scene(SceneSpec("heart", "red", 1, "center", "large", seed=k), 64, "varied") for k in range(30)]
    assert varied[0].tobytes() == render_scene(SceneSpec("heart", "red", 1, "center", "large", seed=0), 64, "varied").tobytes()

    def covered(image):  # share of pixels that are clearly red
        return sum(1 for r, g, b in image.getdata() if r > 140 and g < 110 and b < 110) / (64 * 64)

    plain_cover = max(covered(render_scene(SceneSpec("heart", "red", 1, "center", "large", seed=k), 64)) for k in range(30))
    assert max(covered(v) for v in varied) > 2 * plain_cover  # emoji-sized single objects occur
    backgrounds = {v.getpixel((0, 0)) for v in varied}
    assert (255, 255, 255) in backgrounds and len(backgrounds) > 10
    # many objects still stay inside their region in the varied style
    for seed in range(10):
        image = render_scene(SceneSpec("square", "blue", 3, "left", "small", seed=seed), 64, "varied")
        blue = [x for y in range(64) for x in range(64) if (lambda p: p[2] > 120 and p[0] < 100)(image.getpixel((x, y)))]
        assert blue and max(blue) < 32
    with pytest.raises(ValueError, match="style"):
        render_scene(spec, 64, "cartoon")


def test_varied_style_glossy_finish_and_wide_diamonds():
    # glossy (emoji-like) objects: the darker part of the object (its rim) sits to the lower
    # right of the object's centre; an even outline or a flat fill has no such offset.
    def glossy(image):
        size = image.size[0]
        red = [(x, y, image.getpixel((x, y))) for y in range(size) for x in range(size)]
        red = [(x, y, p) for x, y, p in red if p[0] > 90 and p[0] > p[1] + 40 and p[0] > p[2] + 40]
        if len(red) < 50:
            return False
        cx, cy = sum(x for x, _, _ in red) / len(red), sum(y for _, y, _ in red) / len(red)
        brightest = max(p[0] for _, _, p in red)
        dark = [(x, y) for x, y, p in red if p[0] < 0.8 * brightest]
        if len(dark) < 10:
            return False
        radius = (len(red) / math.pi) ** 0.5
        dx, dy = sum(x for x, _ in dark) / len(dark) - cx, sum(y for _, y in dark) / len(dark) - cy
        return dx > 0.15 * radius and dy > 0.15 * radius

    looks = [glossy(render_scene(SceneSpec("circle", "red", 1, "center", "large", seed=k), 64, "varied")) for k in range(60)]
    assert 5 <= sum(looks) <= 40
    assert not any(glossy(render_scene(SceneSpec("circle", "red", 1, "center", "large", seed=k), 64)) for k in range(60))

    # diamonds: the plain style's rhombus is 0.72 as wide as tall; the varied one widens half
    # of them, up to a square on its tip
    def aspect(image):
        ink = [(x, y) for y in range(64) for x in range(64) if sum(image.getpixel((x, y))) < 600]
        xs, ys = [p[0] for p in ink], [p[1] for p in ink]
        return (max(xs) - min(xs) + 1) / (max(ys) - min(ys) + 1)

    def diamond(k, style):
        return render_scene(SceneSpec("diamond", "blue", 1, "center", "large", seed=k), 64, style)

    plain = [aspect(diamond(k, "plain")) for k in range(20)]
    varied = [aspect(diamond(k, "varied")) for k in range(40)]
    assert max(plain) <= 0.8  # 0.72 up to pixel rounding
    assert sum(a > 0.9 for a in varied) >= 5 and sum(a < 0.8 for a in varied) >= 10


def test_sample_scenes_deterministic_and_heldout_split():
    assert list(sample_scenes(50, "train", seed=1)) == list(sample_scenes(50, "train", seed=1))
    assert list(sample_scenes(50, "train", seed=1)) != list(sample_scenes(50, "train", seed=2))
    heldout = heldout_combinations(0)
    assert heldout == heldout_combinations(0) and heldout != heldout_combinations(1)
    assert len(heldout) == round(0.2 * len(scenes.COLOURS) * len(scenes.SHAPES))
    train = list(sample_scenes(2000, "train", seed=0))
    val = list(sample_scenes(300, "val", seed=0))
    train_pairs = {(s.colour, s.shape) for s in train}
    assert train_pairs.isdisjoint(heldout)
    assert {(s.colour, s.shape) for s in val} == heldout
    assert {c for c, _ in train_pairs} == set(scenes.COLOURS)
    assert {s for _, s in train_pairs} == set(scenes.SHAPES)
    with pytest.raises(ValueError, match="unknown scene split 'test'"):
        next(sample_scenes(1, "test"))


def test_extra_colour_brown_in_train_only_with_every_language_and_style(tmp_path):
    base = list(sample_scenes(300, "train", seed=0))
    assert list(sample_scenes(300, "train", seed=0, extra_colours=())) == base  # no opt-in: same scenes as before
    train = list(sample_scenes(1000, "train", seed=0, extra_colours=["brown"]))
    assert {s.shape for s in train if s.colour == "brown"} == set(scenes.SHAPES)
    assert list(sample_scenes(100, "val", seed=0, extra_colours=["brown"])) == list(sample_scenes(100, "val", seed=0))
    with pytest.raises(ValueError, match=r"extra colours \['teal'\] unknown"):
        next(sample_scenes(1, "train", extra_colours=["teal"]))
    brown = {"en": "brown", "de": "braune", "fr": "marron", "es": "marrones", "ru": "коричневых", "ar": "بني",
             "hi": "भूरे", "ko": "갈색", "zh": "棕色", "ja": "茶色", "pt": "marrons", "it": "marroni", "tr": "kahverengi",
             "id": "cokelat", "vi": "nâu", "el": "καφέ", "fa": "قهوه"}
    spec = SceneSpec("square", "brown", 2, "left", "large", seed=4)
    assert set(brown) == set(scenes.ALL_LANGUAGES)
    for lang, word in brown.items():
        assert word in caption(spec, lang), (lang, caption(spec, lang))
    for style in scenes.STYLES:  # drawn in a brown: red > green > blue, dark
        pixels = [p for p in render_scene(SceneSpec("square", "brown", 1, "center", "large", seed=2), 32, style).getdata()]
        r, g, b = pixels[16 * 32 + 16]
        assert r > g > b and r < 200, (style, (r, g, b))
    written = write_scene_shards(tmp_path, num_train=60, num_val=5, image_size=32, languages=["en"],
                                 samples_per_shard=100, progress=False, extra_colours=["brown"])
    colours = [json.loads(s["json"])["attributes"]["colour"] for s in wds.WebDataset(str(written["train"][0]),
                                                                                     shardshuffle=False)]
    assert "brown" in colours


def test_varied_wording_draws_synonyms_in_the_same_grammar(tmp_path):
    import random

    def wordings(spec, lang):
        return {caption(spec, lang, random.Random(i)) for i in range(60)}

    purple_squares = SceneSpec("square", "purple", 2, "left", "large")
    assert wordings(purple_squares, "de") == {  # "lila" takes no endings
        "zwei große violette Quadrate links", "zwei große lila Quadrate links",
        "zwei große violette Vierecke links", "zwei große lila Vierecke links"}
    assert "ein kleiner oranger Punkt rechts" in wordings(SceneSpec("circle", "orange", 1, "right", "small"), "de")
    assert "eine kleine orange Scheibe rechts" in wordings(SceneSpec("circle", "orange", 1, "right", "small"), "de")
    assert wordings(SceneSpec("diamond", "blue", 3, "top", "small"), "ar") == {
        "ثلاثة معينات زرقاء صغيرة في الأعلى", "ثلاث ماسات زرقاء صغيرة في الأعلى"}
    assert {"一个红色的大圆在上面", "一个红色的大圆形在上面"} <= wordings(SceneSpec("circle", "red", 1, "top", "large"), "zh")
    assert wordings(purple_squares, "vi") == {caption(purple_squares, "vi")}  # no synonyms: the table's words
    assert caption(purple_squares, "de") == "zwei große violette Quadrate links"  # no rng: the table's words

    # every synonym is asked for by its captioner and has its table entry's format
    specs = [SceneSpec(shape, colour, 2, "left", size) for shape in scenes.SHAPES
             for colour in scenes.COLOURS + scenes.EXTRA_COLOURS for size in scenes.SIZES]
    for lang, kinds in scenes._SYNONYMS.items():
        asked = {}

        def record(kind, key, entry):
            asked[(kind, key)] = entry
            return entry

        for spec in specs:
            scenes._CAPTIONERS[lang](spec, record)
        for kind, table in kinds.items():
            for key, others in table.items():
                entry = asked[(kind, key)]
                for other in others:
                    assert type(other) is type(entry) and other != entry, (lang, kind, key, other)
                    assert isinstance(other, str) or len(other) == len(entry), (lang, kind, key, other)

    a = write_scene_shards(tmp_path / "a", num_train=40, num_val=0, image_size=16, languages=["de", "zh"],
                           progress=False, wording="varied")
    b = write_scene_shards(tmp_path / "b", num_train=40, num_val=0, image_size=16, languages=["de", "zh"],
                           progress=False, wording="varied")
    fixed = write_scene_shards(tmp_path / "c", num_train=40, num_val=0, image_size=16, languages=["de", "zh"],
                               progress=False)
    read = [[json.loads(s["json"])["captions"] for s in wds.WebDataset(str(w["train"][0]), shardshuffle=False)]
            for w in (a, b, fixed)]
    assert read[0] == read[1] and read[0] != read[2]
    with pytest.raises(ValueError, match="wording must be one of"):
        write_scene_shards(tmp_path / "d", num_train=1, num_val=0, progress=False, wording="random")


def test_captions_in_all_languages_and_scripts():
    spec = SceneSpec("circle", "red", 2, "top", "large")
    captions = {lang: caption(spec, lang) for lang in LANGUAGES}
    assert len(LANGUAGES) >= 10
    assert len(set(captions.values())) == len(LANGUAGES)
    scripts = {_script(ch) for text in captions.values() for ch in text if ch.isalpha()}
    assert {"LATIN", "CYRILLIC", "ARABIC", "DEVANAGARI", "HANGUL", "HAN"} <= scripts
    assert len(scripts) >= 6
    with pytest.raises(ValueError, match="no synthetic-scene captions for language 'xx'"):
        caption(spec, "xx")


@pytest.mark.parametrize(
    "spec, lang, expected",
    [
        (SceneSpec("circle", "red", 2, "top", "large"), "en", "two large red circles at the top"),
        (SceneSpec("circle", "red", 2, "top", "large"), "fr", "deux grands cercles rouges en haut"),
        (SceneSpec("star", "green", 1, "left", "small"), "fr", "une petite étoile verte à gauche"),
        (SceneSpec("circle", "red", 2, "top", "large"), "de", "zwei große rote Kreise oben"),
        (SceneSpec("diamond", "blue", 1, "right", "small"), "de", "eine kleine blaue Raute rechts"),
        (SceneSpec("heart", "purple", 1, "center", "large"), "de", "ein großes violettes Herz in der Mitte"),
        (SceneSpec("circle", "red", 2, "top", "large"), "ru", "два больших красных круга сверху"),
        (SceneSpec("star", "blue", 2, "bottom", "small"), "ru", "две маленькие синие звезды снизу"),
        (SceneSpec("heart", "yellow", 1, "left", "small"), "ru", "одно маленькое жёлтое сердце слева"),
        (SceneSpec("circle", "red", 2, "top", "large"), "ar", "دائرتان حمراوان كبيرتان في الأعلى"),
        (SceneSpec("square", "blue", 3, "left", "small"), "ar", "ثلاثة مربعات زرقاء صغيرة على اليسار"),
        (SceneSpec("circle", "red", 2, "top", "large"), "hi", "ऊपर दो बड़े लाल वृत्त"),
        (SceneSpec("circle", "red", 2, "top", "large"), "ko", "위쪽에 큰 빨간 원 두 개"),
        (SceneSpec("circle", "red", 2, "top", "large"), "zh", "两个红色的大圆形在上面"),
        (SceneSpec("circle", "red", 3, "top", "large"), "ja", "上に大きい赤い円が三つ"),
        (SceneSpec("star", "orange", 3, "right", "large"), "es", "tres estrellas naranja grandes a la derecha"),
    ],
)
def test_caption_grammar(spec, lang, expected):
    assert caption(spec, lang) == expected


def test_captions_distinguish_every_attribute():
    base = SceneSpec("circle", "red", 1, "left", "small")
    variants = [
        SceneSpec("square", "red", 1, "left", "small"),
        SceneSpec("circle", "blue", 1, "left", "small"),
        SceneSpec("circle", "red", 2, "left", "small"),
        SceneSpec("circle", "red", 1, "right", "small"),
        SceneSpec("circle", "red", 1, "left", "large"),
    ]
    for lang in LANGUAGES:
        for variant in variants:
            assert caption(variant, lang) != caption(base, lang), (lang, variant)


def test_attribute_prompts_cover_every_value_and_language():
    assert set(ATTRIBUTES) == {"colour", "shape", "count", "position", "size"}
    assert attribute_prompt("colour", "red", "en") == "a red shape"
    assert attribute_prompt("colour", "red", "de") == "ein rotes Objekt"
    assert attribute_prompt("count", 2, "fr") == "deux formes"
    for lang in LANGUAGES:
        for attribute, values in ATTRIBUTES.items():
            prompts = [attribute_prompt(attribute, value, lang) for value in values]
            assert len(set(prompts)) == len(values), (lang, attribute)
    with pytest.raises(ValueError, match="unknown value 'pink' for scene attribute 'colour'"):
        attribute_prompt("colour", "pink", "en")
    with pytest.raises(ValueError, match="unknown scene attribute 'texture'"):
        attribute_prompt("texture", "x", "en")


def test_write_scene_shards(tmp_path):
    written = write_scene_shards(tmp_path, num_train=25, num_val=7, image_size=32, languages=["en", "ja", "ar"],
                                 samples_per_shard=10, progress=False)
    assert [p.name for p in written["train"]] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert written["train"][0].parent == tmp_path / "train"
    samples = list(wds.WebDataset(str(tmp_path / "train" / "shard-{000000..000002}.tar"), shardshuffle=False).decode("pil"))
    assert len(samples) == 25
    assert [s["json"]["lang"] for s in samples[:4]] == ["en", "ja", "ar", "en"]
    first = samples[1]
    assert first["png"].size == (32, 32)
    assert set(first["json"]) == {"lang", "captions", "attributes", "split", "scene_seed"}
    assert first["txt"] == first["json"]["captions"]["ja"]
    spec = SceneSpec(**first["json"]["attributes"], seed=first["json"]["scene_seed"])
    assert first["txt"] == caption(spec, "ja")
    heldout = heldout_combinations(0)
    val = [json.loads(s["json"]) for s in wds.WebDataset(str(written["val"][0]), shardshuffle=False)]
    assert all((v["attributes"]["colour"], v["attributes"]["shape"]) in heldout for v in val)
    assert all((s["json"]["attributes"]["colour"], s["json"]["attributes"]["shape"]) not in heldout for s in samples)
    with pytest.raises(FileExistsError):
        write_scene_shards(tmp_path, num_train=5, num_val=0, progress=False)


def test_caption_corpus():
    corpus = caption_corpus()
    assert len(corpus) == len(set(corpus)) > 10_000
    assert "deux grands cercles rouges en haut" in corpus
    assert attribute_prompt("shape", "heart", "ko") in corpus
    assert caption_corpus(["en"], seed=1) != caption_corpus(["en"], seed=2)
    assert sorted(caption_corpus(["en"], seed=1)) == sorted(caption_corpus(["en"], seed=2))


@pytest.mark.parametrize(
    "spec, lang, expected",
    [
        (SceneSpec("circle", "red", 2, "top", "large"), "pt", "dois círculos vermelhos grandes na parte de cima"),
        (SceneSpec("star", "yellow", 2, "left", "small"), "pt", "duas estrelas amarelas pequenas à esquerda"),
        (SceneSpec("heart", "blue", 3, "right", "large"), "pt", "três corações azuis grandes à direita"),
        (SceneSpec("circle", "red", 2, "top", "large"), "it", "due grandi cerchi rossi in alto"),
        (SceneSpec("star", "yellow", 1, "center", "small"), "it", "una piccola stella gialla al centro"),
        (SceneSpec("circle", "red", 2, "top", "large"), "tr", "üstte iki büyük kırmızı daire"),
        (SceneSpec("circle", "red", 2, "top", "large"), "id", "dua lingkaran merah besar di atas"),
        (SceneSpec("circle", "red", 2, "top", "large"), "vi", "hai hình tròn lớn màu đỏ ở phía trên"),
        (SceneSpec("circle", "red", 2, "top", "large"), "el", "δύο μεγάλοι κόκκινοι κύκλοι πάνω"),
        (SceneSpec("heart", "green", 3, "bottom", "small"), "el", "τρεις μικρές πράσινες καρδιές κάτω"),
        (SceneSpec("square", "green", 3, "bottom", "large"), "el", "τρία μεγάλα πράσινα τετράγωνα κάτω"),
        (SceneSpec("circle", "red", 2, "top", "large"), "fa", "دو دایره قرمز بزرگ در بالا"),
        (SceneSpec("heart", "blue", 1, "left", "small"), "fa", "یک قلب آبی کوچک در سمت چپ"),
    ],
)
def test_extra_language_grammar(spec, lang, expected):
    assert caption(spec, lang) == expected


def test_extra_languages_caption_every_attribute_and_prompt():
    from babeltower.datasets.synthetic.scenes import ALL_LANGUAGES, EXTRA_LANGUAGES, code_mixed_caption

    assert len(EXTRA_LANGUAGES) >= 4 and not set(EXTRA_LANGUAGES) & set(LANGUAGES)
    assert ALL_LANGUAGES == LANGUAGES + EXTRA_LANGUAGES
    base = SceneSpec("circle", "red", 1, "left", "small")
    variants = [SceneSpec("square", "red", 1, "left", "small"), SceneSpec("circle", "blue", 1, "left", "small"),
                SceneSpec("circle", "red", 2, "left", "small"), SceneSpec("circle", "red", 1, "right", "small"),
                SceneSpec("circle", "red", 1, "left", "large")]
    for lang in EXTRA_LANGUAGES:
        assert all(caption(v, lang) != caption(base, lang) for v in variants), lang
        for attribute, values in ATTRIBUTES.items():
            assert len({attribute_prompt(attribute, v, lang) for v in values}) == len(values), (lang, attribute)
    with pytest.raises(ValueError, match="no code-mixed captions for 'pt'"):
        code_mixed_caption(base, "pt")
