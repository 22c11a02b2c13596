"""Synthetic multilingual visual question answering on the scenes of :mod:`.scenes`.

Every scene (1-3 identical objects: one shape, colour, size, in one region) gets ten
questions: an open question and a yes/no question about each of its five attributes
(colour, shape, count, position, size). Each question exists in all ten languages of
:data:`~babeltower.datasets.synthetic.scenes.LANGUAGES`, written as a native speaker
would ask it, with two or three phrasings per question type and language and the
grammar each language needs: number agreement with the object count ("Is the shape
red?" / "Are the shapes red?"), gender and number of predicate adjectives (fr *Les
formes sont-elles vertes ?*, ru *Фигуры зелёные?*), the Arabic dual (*الشكلان*),
Korean subject particles chosen by the noun's final consonant (*별이* / *하트가*).

Answers are in the question's language. Each question carries:

- ``answer``: the canonical answer (citation form, e.g. ``"grün"``, ``"2"``, ``"oui"``);
- ``raw_answers``: ten synthetic annotators' answers with realistic disagreement:
  most give the canonical form, some a synonym or variant ("two", "violet", "on the
  left", "Yes."), a share (more for counting and size) a wrong answer;
- ``answers``: those ten after the language's answer normalisation, as the VQAv2
  release stores its human answers (see :func:`babeltower.modalities.answers.normalize_answer`);
- ``options`` / ``label``: four multiple-choice options in the question's language
  (CVQA's format: the correct one at index ``label``).

The same question in the ten languages shares ``qid``, so cross-lingual consistency is
measurable. Held-out colour-shape pairs follow :func:`scenes.sample_scenes`: ``val``
scenes only show combinations that ``train`` never shows.

Example:
    >>> spec = SceneSpec(shape="star", colour="green", count=2, position="left", size="small", seed=3)
    >>> [q["texts"]["fr"] for q in scene_questions(spec, seed=0)][:1]
    ['De quelle couleur sont les formes ?']
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from babeltower.datasets.synthetic.scenes import (
    COLOURS,
    COUNTS,
    LANGUAGES,
    POSITIONS,
    SHAPES,
    SIZES,
    SceneSpec,
    render_scene,
    sample_scenes,
)

#: Question types, one per scene attribute.
QUESTION_TYPES: tuple[str, ...] = ("colour", "shape", "count", "position", "size")
#: Question forms: an open question (answer: an attribute value) and a yes/no question.
QUESTION_FORMS: tuple[str, ...] = ("open", "yesno")
#: Number of synthetic annotators per question (VQAv2 collects 10).
NUM_ANNOTATORS = 10
#: Number of multiple-choice options (CVQA uses 4).
NUM_OPTIONS = 4

_VALUES: dict[str, list[str]] = {
    "colour": list(COLOURS),
    "shape": list(SHAPES),
    "count": [str(c) for c in COUNTS],
    "position": list(POSITIONS),
    "size": list(SIZES),
}

# --------------------------------------------------------------------------- answers
# Canonical answers (citation forms) per language, keyed by a language-independent value
# key. Counts are digits in every language: the VQAv2 normalisation maps number words to
# digits, and the per-language normalisation here does the same for every language.
_NUMBERS = {"1": "1", "2": "2", "3": "3", "4": "4"}

ANSWERS: dict[str, dict[str, str]] = {
    "en": {
        "red": "red", "green": "green", "blue": "blue", "yellow": "yellow", "purple": "purple", "orange": "orange",
        "circle": "circle", "square": "square", "triangle": "triangle", "star": "star", "diamond": "diamond",
        "heart": "heart", "left": "left", "right": "right", "top": "top", "bottom": "bottom", "center": "center",
        "small": "small", "large": "large", "yes": "yes", "no": "no",
        "medium": "medium", "huge": "huge", "maybe": "maybe", "unsure": "can't tell",
    },
    "de": {
        "red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "purple": "lila", "orange": "orange",
        "circle": "Kreis", "square": "Quadrat", "triangle": "Dreieck", "star": "Stern", "diamond": "Raute",
        "heart": "Herz", "left": "links", "right": "rechts", "top": "oben", "bottom": "unten", "center": "Mitte",
        "small": "klein", "large": "groß", "yes": "ja", "no": "nein",
        "medium": "mittelgroß", "huge": "riesig", "maybe": "vielleicht", "unsure": "nicht erkennbar",
    },
    "fr": {
        "red": "rouge", "green": "vert", "blue": "bleu", "yellow": "jaune", "purple": "violet", "orange": "orange",
        "circle": "cercle", "square": "carré", "triangle": "triangle", "star": "étoile", "diamond": "losange",
        "heart": "cœur", "left": "gauche", "right": "droite", "top": "haut", "bottom": "bas", "center": "centre",
        "small": "petit", "large": "grand", "yes": "oui", "no": "non",
        "medium": "moyen", "huge": "énorme", "maybe": "peut-être", "unsure": "impossible à dire",
    },
    "es": {
        "red": "rojo", "green": "verde", "blue": "azul", "yellow": "amarillo", "purple": "morado", "orange": "naranja",
        "circle": "círculo", "square": "cuadrado", "triangle": "triángulo", "star": "estrella", "diamond": "rombo",
        "heart": "corazón", "left": "izquierda", "right": "derecha", "top": "arriba", "bottom": "abajo",
        "center": "centro", "small": "pequeño", "large": "grande", "yes": "sí", "no": "no",
        "medium": "mediano", "huge": "enorme", "maybe": "quizás", "unsure": "no se sabe",
    },
    "ru": {
        "red": "красный", "green": "зелёный", "blue": "синий", "yellow": "жёлтый", "purple": "фиолетовый",
        "orange": "оранжевый", "circle": "круг", "square": "квадрат", "triangle": "треугольник", "star": "звезда",
        "diamond": "ромб", "heart": "сердце", "left": "слева", "right": "справа", "top": "сверху",
        "bottom": "снизу", "center": "в центре", "small": "маленький", "large": "большой", "yes": "да", "no": "нет",
        "medium": "средний", "huge": "огромный", "maybe": "возможно", "unsure": "нельзя сказать",
    },
    "ar": {
        "red": "أحمر", "green": "أخضر", "blue": "أزرق", "yellow": "أصفر", "purple": "بنفسجي", "orange": "برتقالي",
        "circle": "دائرة", "square": "مربع", "triangle": "مثلث", "star": "نجمة", "diamond": "معين", "heart": "قلب",
        "left": "اليسار", "right": "اليمين", "top": "الأعلى", "bottom": "الأسفل", "center": "الوسط",
        "small": "صغير", "large": "كبير", "yes": "نعم", "no": "لا",
        "medium": "متوسط", "huge": "ضخم", "maybe": "ربما", "unsure": "لا يمكن التحديد",
    },
    "hi": {
        "red": "लाल", "green": "हरा", "blue": "नीला", "yellow": "पीला", "purple": "बैंगनी", "orange": "नारंगी",
        "circle": "वृत्त", "square": "वर्ग", "triangle": "त्रिभुज", "star": "तारा", "diamond": "समचतुर्भुज",
        "heart": "दिल", "left": "बाईं ओर", "right": "दाईं ओर", "top": "ऊपर", "bottom": "नीचे", "center": "बीच में",
        "small": "छोटा", "large": "बड़ा", "yes": "हाँ", "no": "नहीं",
        "medium": "मध्यम", "huge": "विशाल", "maybe": "शायद", "unsure": "कहना मुश्किल है",
    },
    "ko": {
        "red": "빨간색", "green": "초록색", "blue": "파란색", "yellow": "노란색", "purple": "보라색", "orange": "주황색",
        "circle": "원", "square": "정사각형", "triangle": "삼각형", "star": "별", "diamond": "마름모", "heart": "하트",
        "left": "왼쪽", "right": "오른쪽", "top": "위쪽", "bottom": "아래쪽", "center": "가운데",
        "small": "작아요", "large": "커요", "yes": "네", "no": "아니요",
        "medium": "중간", "huge": "거대해요", "maybe": "아마도", "unsure": "알 수 없음",
    },
    "zh": {
        "red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "orange": "橙色",
        "circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形", "diamond": "菱形", "heart": "心形",
        "left": "左边", "right": "右边", "top": "上面", "bottom": "下面", "center": "中间",
        "small": "小", "large": "大", "yes": "是", "no": "否",
        "medium": "中等", "huge": "巨大", "maybe": "也许", "unsure": "无法确定",
    },
    "ja": {
        "red": "赤", "green": "緑", "blue": "青", "yellow": "黄色", "purple": "紫", "orange": "オレンジ",
        "circle": "円", "square": "正方形", "triangle": "三角形", "star": "星", "diamond": "ひし形", "heart": "ハート",
        "left": "左", "right": "右", "top": "上", "bottom": "下", "center": "真ん中",
        "small": "小さい", "large": "大きい", "yes": "はい", "no": "いいえ",
        "medium": "中くらい", "huge": "巨大", "maybe": "たぶん", "unsure": "わからない",
    },
}

#: Extra multiple-choice distractors per question type (value keys), beyond the type's values.
_EXTRA_OPTIONS: dict[str, list[str]] = {"size": ["medium", "huge"], "count": ["4"], "yesno": ["maybe", "unsure"]}

# Variants real annotators type for the same value: synonyms, inflected forms, phrases,
# number words and native digits. Some normalise to the canonical answer ("Two." -> "2"),
# others stay different strings ("violet", "on the left") and so cost soft accuracy,
# which is what VQAv2's 10-annotator scoring is for.
VARIANTS: dict[str, dict[str, list[str]]] = {
    "en": {
        "purple": ["violet", "Purple"], "blue": ["Blue", "dark blue"], "green": ["Green"], "red": ["Red"],
        "diamond": ["rhombus", "diamonds"], "circle": ["circles", "round"], "star": ["stars"], "heart": ["hearts"],
        "square": ["squares"], "triangle": ["triangles"],
        "1": ["one", "One."], "2": ["two", "Two"], "3": ["three", "3 shapes"],
        "left": ["on the left", "the left", "left side"], "right": ["on the right", "the right", "right side"],
        "top": ["at the top", "the top", "up"], "bottom": ["at the bottom", "the bottom", "down"],
        "center": ["middle", "in the center", "centre"], "small": ["Small", "tiny"], "large": ["big", "Large"],
        "yes": ["Yes", "yes.", "yeah"], "no": ["No", "no.", "nope"],
    },
    "de": {
        "purple": ["violett"], "orange": ["orangefarben"], "red": ["Rot"], "blue": ["Blau"],
        "circle": ["Kreise"], "square": ["Viereck", "Quadrate"], "diamond": ["Rhombus"], "star": ["Sterne"],
        "heart": ["Herzen"], "triangle": ["Dreiecke"],
        "1": ["eins", "Eins."], "2": ["zwei", "Zwei"], "3": ["drei"],
        "left": ["linke Seite", "Links"], "right": ["rechte Seite", "Rechts"], "top": ["Oben", "ganz oben"],
        "bottom": ["Unten", "ganz unten"], "center": ["in der Mitte", "mittig"],
        "small": ["Klein", "winzig"], "large": ["gross", "Groß"], "yes": ["Ja", "ja."], "no": ["Nein", "nein."],
    },
    "fr": {
        "purple": ["mauve", "Violet"], "green": ["verte"], "blue": ["bleue"], "red": ["Rouge"],
        "circle": ["rond", "cercles"], "heart": ["coeur"], "star": ["étoiles"], "square": ["carrés"],
        "diamond": ["losanges"], "triangle": ["triangles"],
        "1": ["un", "une"], "2": ["deux", "Deux"], "3": ["trois"],
        "left": ["à gauche", "Gauche"], "right": ["à droite", "Droite"], "top": ["en haut", "Haut"],
        "bottom": ["en bas", "Bas"], "center": ["au centre", "milieu"],
        "small": ["petite", "petits"], "large": ["grande", "grands"], "yes": ["Oui", "oui."], "no": ["Non", "non."],
    },
    "es": {
        "purple": ["violeta", "púrpura"], "orange": ["anaranjado"], "red": ["roja"], "yellow": ["amarilla"],
        "circle": ["circulo", "círculos"], "triangle": ["triangulo"], "heart": ["corazon"], "star": ["estrellas"],
        "square": ["cuadrados"], "diamond": ["rombos"],
        "1": ["uno", "una"], "2": ["dos", "Dos"], "3": ["tres"],
        "left": ["a la izquierda", "Izquierda"], "right": ["a la derecha", "Derecha"], "top": ["Arriba", "en la parte de arriba"],
        "bottom": ["Abajo", "en la parte de abajo"], "center": ["en el centro", "medio"],
        "small": ["pequeña", "chico"], "large": ["grandes", "Grande"], "yes": ["si", "Sí"], "no": ["No", "no."],
    },
    "ru": {
        "green": ["зеленый", "Зелёный"], "yellow": ["желтый"], "blue": ["голубой", "Синий"], "purple": ["сиреневый"],
        "red": ["Красный"], "heart": ["сердечко"], "circle": ["круги", "кружок"], "star": ["звёзды"],
        "square": ["квадраты"], "triangle": ["треугольники"], "diamond": ["ромбы"],
        "1": ["один", "одна"], "2": ["два", "две"], "3": ["три", "Три"],
        "left": ["Слева", "левая сторона"], "right": ["Справа", "правая сторона"], "top": ["вверху", "наверху"],
        "bottom": ["внизу", "Снизу"], "center": ["посередине", "в середине"],
        "small": ["маленькие", "маленькая"], "large": ["большие", "большая"], "yes": ["Да", "да."], "no": ["Нет", "нет."],
    },
    "ar": {
        "purple": ["أرجواني"], "orange": ["برتقالية"], "red": ["حمراء"], "green": ["خضراء"],
        "star": ["نجم", "نجوم"], "circle": ["دوائر"], "heart": ["قلوب"], "square": ["مربعات"],
        "triangle": ["مثلثات"], "diamond": ["معينات"],
        "1": ["واحد", "١"], "2": ["اثنان", "٢"], "3": ["ثلاثة", "٣"],
        "left": ["على اليسار", "يسار"], "right": ["على اليمين", "يمين"], "top": ["في الأعلى", "فوق"],
        "bottom": ["في الأسفل", "تحت"], "center": ["في الوسط", "المنتصف"],
        "small": ["صغيرة", "صغيران"], "large": ["كبيرة", "كبيران"], "yes": ["أجل", "نعم."], "no": ["كلا", "لا."],
    },
    "hi": {
        "purple": ["जामुनी"], "green": ["हरी"], "blue": ["नीली"], "yellow": ["पीली"],
        "circle": ["गोला"], "star": ["तारे"], "heart": ["दिल का आकार"],
        "1": ["एक", "१"], "2": ["दो", "२"], "3": ["तीन", "३"],
        "left": ["बाएँ", "बाईं तरफ़"], "right": ["दाएँ", "दाईं तरफ़"], "top": ["ऊपर की ओर", "सबसे ऊपर"],
        "bottom": ["नीचे की ओर", "सबसे नीचे"], "center": ["केंद्र में", "बीच"],
        "small": ["छोटी", "छोटे"], "large": ["बड़ी", "बड़े"], "yes": ["हां", "जी हाँ"], "no": ["ना", "जी नहीं"],
    },
    "ko": {
        "red": ["빨강", "빨간"], "blue": ["파랑", "파란"], "yellow": ["노랑"], "green": ["녹색", "초록"],
        "purple": ["보라"], "orange": ["오렌지색"],
        "circle": ["동그라미"], "square": ["네모"], "triangle": ["세모"], "heart": ["하트 모양"],
        "1": ["한 개", "하나", "1개"], "2": ["두 개", "둘", "2개"], "3": ["세 개", "셋", "3개"],
        "left": ["왼편", "왼쪽에"], "right": ["오른편", "오른쪽에"], "top": ["위", "위쪽에"],
        "bottom": ["아래", "아래쪽에"], "center": ["중앙", "가운데에"],
        "small": ["작음", "작은 편"], "large": ["큼", "큰 편"], "yes": ["예", "네."], "no": ["아니오", "아니요."],
    },
    "zh": {
        "red": ["红", "红的"], "green": ["绿", "绿的"], "blue": ["蓝", "蓝的"], "yellow": ["黄", "黄的"],
        "purple": ["紫", "紫的"], "orange": ["橘色", "橙"],
        "circle": ["圆", "圆圈"], "square": ["方形"], "star": ["星星", "五角星"], "heart": ["爱心"],
        "triangle": ["三角"], "diamond": ["菱形的"],
        "1": ["一个", "一"], "2": ["两个", "二"], "3": ["三个", "三"],
        "left": ["左侧", "在左边"], "right": ["右侧", "在右边"], "top": ["上方", "在上面"],
        "bottom": ["下方", "在下面"], "center": ["中央", "在中间"],
        "small": ["小的", "很小"], "large": ["大的", "很大"], "yes": ["是的", "有", "对"], "no": ["不是", "没有", "不"],
    },
    "ja": {
        "red": ["赤色", "赤い"], "blue": ["青色", "青い"], "green": ["緑色"], "yellow": ["黄", "黄色い"],
        "purple": ["紫色"], "orange": ["オレンジ色"],
        "circle": ["丸"], "square": ["四角"], "triangle": ["三角"], "diamond": ["菱形"], "star": ["星形"],
        "1": ["一つ", "1つ", "1個"], "2": ["二つ", "2つ", "2個"], "3": ["三つ", "3つ", "3個"],
        "left": ["左側", "左の方"], "right": ["右側", "右の方"], "top": ["上の方", "上側"],
        "bottom": ["下の方", "下側"], "center": ["中央", "まんなか"],
        "small": ["小さめ", "小さいです"], "large": ["大きめ", "大きいです"], "yes": ["うん", "はい。"], "no": ["いや", "いいえ。"],
    },
}

# Probability that one annotator gives a wrong value, per question type; counting and
# size are harder for people too (VQAv2's "number" answers have the lowest agreement).
_WRONG_RATE = {"colour": 0.05, "shape": 0.06, "count": 0.12, "position": 0.07, "size": 0.12, "yesno": 0.06}
_VARIANT_RATE = 0.25


def answer_text(key: str, lang: str) -> str:
    """The canonical answer for a value key (``"red"``, ``"2"``, ``"yes"``, ...) in ``lang``."""
    if key in _NUMBERS:
        return _NUMBERS[key]
    try:
        return ANSWERS[lang][key]
    except KeyError:
        raise ValueError(f"no {lang!r} answer for value {key!r}; languages: {sorted(ANSWERS)}") from None


def answer_keys(lang: str) -> dict[str, str]:
    """Every answer string of ``lang`` (canonical forms and annotator variants) -> its value key.

    Used to tell whether answers in different languages mean the same thing
    (cross-lingual consistency). Keys are raw strings; callers normalise both sides.
    """
    table = {answer_text(k, lang): k for k in list(ANSWERS[lang]) + list(_NUMBERS)}
    for key, variants in VARIANTS[lang].items():
        for variant in variants:
            table.setdefault(variant, key)
    return table


def answer_vocabulary(languages: list[str] | None = None) -> list[list[str]]:
    """The canonical answers of every question type and distractor, as ``[lang, text]`` pairs.

    This is the classification vocabulary of :class:`babeltower.models.vqa.VQAModel`
    and the candidate set of open questions; it is sorted by (language, text).
    """
    languages = list(languages) if languages else list(LANGUAGES)
    pairs = set()
    for lang in languages:
        _check_lang(lang)
        for key in list(ANSWERS[lang]) + list(_NUMBERS):
            pairs.add((lang, answer_text(key, lang)))
    return [list(p) for p in sorted(pairs)]


def answer_vocabulary_groups(vocabulary: list[list[str]]) -> list[str]:
    """The value key of each ``[lang, text]`` pair of :func:`answer_vocabulary` (``[fr, rouge]`` -> ``red``):
    the language-independent classes of :attr:`babeltower.models.vqa.VQAConfig.answer_groups`."""
    groups = []
    for lang, text in vocabulary:
        _check_lang(lang)
        key = answer_keys(lang).get(text)
        if key is None:
            raise ValueError(f"[{lang}, {text}] is not a canonical answer of the synthetic scenes")
        groups.append(key)
    return groups


def _check_lang(lang: str) -> None:
    if lang not in ANSWERS:
        raise ValueError(f"no VQA questions for language {lang!r}; available: {sorted(ANSWERS)}")


# ------------------------------------------------------------------------- questions
# Per language: open-question phrasings per type and number ("sg" for one object, "pl"
# for two or three; languages without the distinction use "any"), and yes/no phrasings
# with a "{v}" slot filled by _yesno_value(). Arabic also distinguishes the dual.


def _ko_particle(noun: str, with_batchim: str, without: str) -> str:
    """Korean particle after ``noun``: 이/은 after a final consonant (batchim), 가/는 after a vowel."""
    last = noun[-1]
    if "가" <= last <= "힣":
        return with_batchim if (ord(last) - 0xAC00) % 28 else without
    return with_batchim  # digits and Latin letters are read with a final consonant often enough


_OPEN: dict[str, dict[str, dict[str, list[str]]]] = {
    "en": {
        "colour": {"sg": ["What colour is the shape?", "What color is the object in the picture?", "Which colour does the shape have?"],
                   "pl": ["What colour are the shapes?", "What color are the objects in the picture?", "Which colour do the shapes have?"]},
        "shape": {"sg": ["What shape is it?", "Which shape is shown in the image?", "What kind of shape can you see?"],
                  "pl": ["What shape are they?", "Which shape is shown in the image?", "What kind of shapes can you see?"]},
        "count": {"any": ["How many shapes are there?", "How many objects can you see?", "How many shapes are in the picture?"]},
        "position": {"sg": ["Where is the shape?", "In which part of the image is the object?", "Where is the shape located in the picture?"],
                     "pl": ["Where are the shapes?", "In which part of the image are the objects?", "Where are the shapes located in the picture?"]},
        "size": {"sg": ["Is the shape small or large?", "What size is the object?", "How big is the shape?"],
                 "pl": ["Are the shapes small or large?", "What size are the objects?", "How big are the shapes?"]},
    },
    "de": {
        "colour": {"sg": ["Welche Farbe hat das Objekt?", "Welche Farbe hat die Form im Bild?", "In welcher Farbe ist das Objekt?"],
                   "pl": ["Welche Farbe haben die Objekte?", "Welche Farbe haben die Formen im Bild?", "In welcher Farbe sind die Objekte?"]},
        "shape": {"sg": ["Welche Form hat das Objekt?", "Was für eine Form ist im Bild zu sehen?", "Welche Form siehst du?"],
                  "pl": ["Welche Form haben die Objekte?", "Was für Formen sind im Bild zu sehen?", "Welche Form siehst du?"]},
        "count": {"any": ["Wie viele Objekte sind im Bild?", "Wie viele Formen siehst du?", "Wie viele Objekte gibt es?"]},
        "position": {"sg": ["Wo ist das Objekt?", "Wo befindet sich die Form im Bild?", "In welchem Teil des Bildes ist das Objekt?"],
                     "pl": ["Wo sind die Objekte?", "Wo befinden sich die Formen im Bild?", "In welchem Teil des Bildes sind die Objekte?"]},
        "size": {"sg": ["Ist das Objekt klein oder groß?", "Wie groß ist die Form?"],
                 "pl": ["Sind die Objekte klein oder groß?", "Wie groß sind die Formen?"]},
    },
    "fr": {
        "colour": {"sg": ["De quelle couleur est la forme ?", "Quelle est la couleur de l'objet ?", "La forme est de quelle couleur ?"],
                   "pl": ["De quelle couleur sont les formes ?", "Quelle est la couleur des objets ?", "Les formes sont de quelle couleur ?"]},
        "shape": {"sg": ["Quelle est la forme de l'objet ?", "Quelle forme voit-on sur l'image ?", "Quel type de forme est représenté ?"],
                  "pl": ["Quelle est la forme des objets ?", "Quelle forme voit-on sur l'image ?", "Quel type de forme est représenté ?"]},
        "count": {"any": ["Combien de formes y a-t-il ?", "Combien d'objets voit-on sur l'image ?", "Combien y a-t-il de formes sur l'image ?"]},
        "position": {"sg": ["Où se trouve la forme ?", "Où est l'objet sur l'image ?", "Dans quelle partie de l'image se trouve la forme ?"],
                     "pl": ["Où se trouvent les formes ?", "Où sont les objets sur l'image ?", "Dans quelle partie de l'image se trouvent les formes ?"]},
        "size": {"sg": ["La forme est-elle petite ou grande ?", "Quelle est la taille de l'objet ?"],
                 "pl": ["Les formes sont-elles petites ou grandes ?", "Quelle est la taille des objets ?"]},
    },
    "es": {
        "colour": {"sg": ["¿De qué color es la figura?", "¿Qué color tiene el objeto?", "¿De qué color es la figura de la imagen?"],
                   "pl": ["¿De qué color son las figuras?", "¿Qué color tienen los objetos?", "¿De qué color son las figuras de la imagen?"]},
        "shape": {"sg": ["¿Qué forma tiene la figura?", "¿Qué figura se ve en la imagen?", "¿Qué tipo de figura aparece?"],
                  "pl": ["¿Qué forma tienen las figuras?", "¿Qué figuras se ven en la imagen?", "¿Qué tipo de figura aparece?"]},
        "count": {"any": ["¿Cuántas figuras hay?", "¿Cuántos objetos se ven en la imagen?", "¿Cuántas figuras hay en la imagen?"]},
        "position": {"sg": ["¿Dónde está la figura?", "¿En qué parte de la imagen está el objeto?", "¿Dónde se encuentra la figura?"],
                     "pl": ["¿Dónde están las figuras?", "¿En qué parte de la imagen están los objetos?", "¿Dónde se encuentran las figuras?"]},
        "size": {"sg": ["¿La figura es pequeña o grande?", "¿De qué tamaño es el objeto?"],
                 "pl": ["¿Las figuras son pequeñas o grandes?", "¿De qué tamaño son los objetos?"]},
    },
    "ru": {
        "colour": {"sg": ["Какого цвета фигура?", "Какой цвет у фигуры на картинке?", "Какого цвета объект на изображении?"],
                   "pl": ["Какого цвета фигуры?", "Какой цвет у фигур на картинке?", "Какого цвета объекты на изображении?"]},
        "shape": {"sg": ["Какой формы фигура?", "Какая фигура изображена на картинке?", "Что это за фигура?"],
                  "pl": ["Какой формы фигуры?", "Какие фигуры изображены на картинке?", "Что это за фигуры?"]},
        "count": {"any": ["Сколько фигур на картинке?", "Сколько здесь фигур?", "Сколько объектов на изображении?"]},
        "position": {"sg": ["Где находится фигура?", "В какой части картинки фигура?", "Где расположена фигура?"],
                     "pl": ["Где находятся фигуры?", "В какой части картинки фигуры?", "Где расположены фигуры?"]},
        "size": {"sg": ["Фигура маленькая или большая?", "Какого размера фигура?"],
                 "pl": ["Фигуры маленькие или большие?", "Какого размера фигуры?"]},
    },
    "ar": {
        # {g}: "the shape(s)" in the genitive after لون/حجم; {n}: nominative; {verb}: يقع/تقع.
        "colour": {"any": ["ما لون {g}؟", "ما هو لون {g} في الصورة؟", "ما اللون الذي يظهر في الصورة؟"]},
        "shape": {"any": ["ما الشكل الموجود في الصورة؟", "ما نوع الشكل في الصورة؟", "أي شكل تراه في الصورة؟"]},
        "count": {"any": ["كم شكلاً في الصورة؟", "كم عدد الأشكال في الصورة؟", "كم شكلاً تراه؟"]},
        "position": {"any": ["أين {n}؟", "أين {verb} {n} في الصورة؟", "في أي جزء من الصورة {n}؟"]},
        "size": {"any": ["هل {n} {small} أم {large}؟", "ما حجم {g}؟"]},
    },
    "hi": {
        "colour": {"sg": ["आकृति किस रंग की है?", "चित्र में आकृति का रंग क्या है?", "यह आकृति किस रंग की है?"],
                   "pl": ["आकृतियाँ किस रंग की हैं?", "चित्र में आकृतियों का रंग क्या है?", "ये आकृतियाँ किस रंग की हैं?"]},
        "shape": {"sg": ["चित्र में कौन-सी आकृति है?", "यह कैसी आकृति है?"],
                  "pl": ["चित्र में कौन-सी आकृतियाँ हैं?", "ये कैसी आकृतियाँ हैं?"]},
        "count": {"any": ["चित्र में कितनी आकृतियाँ हैं?", "कितनी आकृतियाँ दिख रही हैं?", "यहाँ कितनी आकृतियाँ हैं?"]},
        "position": {"sg": ["आकृति कहाँ है?", "चित्र में आकृति कहाँ स्थित है?"],
                     "pl": ["आकृतियाँ कहाँ हैं?", "चित्र में आकृतियाँ कहाँ स्थित हैं?"]},
        "size": {"sg": ["आकृति छोटी है या बड़ी?", "आकृति कितनी बड़ी है?"],
                 "pl": ["आकृतियाँ छोटी हैं या बड़ी?", "आकृतियाँ कितनी बड़ी हैं?"]},
    },
    "ko": {
        "colour": {"any": ["도형은 무슨 색인가요?", "그림 속 도형의 색깔은 무엇인가요?", "도형이 어떤 색이에요?"]},
        "shape": {"any": ["어떤 도형이 있나요?", "그림에 있는 도형은 무엇인가요?", "이 도형의 모양은 무엇인가요?"]},
        "count": {"any": ["도형이 몇 개 있나요?", "그림에 도형이 몇 개인가요?", "도형은 모두 몇 개예요?"]},
        "position": {"any": ["도형은 어디에 있나요?", "도형이 그림의 어느 쪽에 있나요?", "도형의 위치는 어디인가요?"]},
        "size": {"any": ["도형은 작은가요, 큰가요?", "도형의 크기는 어떤가요?", "도형이 큰 편인가요, 작은 편인가요?"]},
    },
    "zh": {
        "colour": {"any": ["图形是什么颜色的？", "图中的图形是什么颜色？", "图形的颜色是什么？"]},
        "shape": {"any": ["图中是什么形状？", "这是什么图形？", "图片里有什么形状？"]},
        "count": {"any": ["图中有几个图形？", "一共有多少个图形？", "图片里有几个图形？"]},
        "position": {"any": ["图形在哪里？", "图形在图片的什么位置？", "图形位于图中的哪个位置？"]},
        "size": {"any": ["图形是大还是小？", "图形的大小如何？", "图形是大的还是小的？"]},
    },
    "ja": {
        "colour": {"any": ["図形は何色ですか？", "画像の図形は何色ですか？", "図形の色は何ですか？"]},
        "shape": {"any": ["どんな形の図形ですか？", "画像に写っている図形は何ですか？", "この図形の形は何ですか？"]},
        "count": {"any": ["図形はいくつありますか？", "画像に図形が何個ありますか？", "図形は全部でいくつですか？"]},
        "position": {"any": ["図形はどこにありますか？", "図形は画像のどの辺りにありますか？", "図形の位置はどこですか？"]},
        "size": {"any": ["図形は大きいですか、小さいですか？", "図形の大きさはどうですか？"]},
    },
}

_YESNO: dict[str, dict[str, dict[str, list[str]]]] = {
    "en": {
        "colour": {"sg": ["Is the shape {v}?", "Is the object in the picture {v}?"], "pl": ["Are the shapes {v}?", "Are the objects in the picture {v}?"]},
        "shape": {"any": ["Is there a {v} in the picture?", "Can you see a {v}?", "Does the image contain a {v}?"]},
        "count": {"any": ["Do you see exactly {v}?", "Does the picture show exactly {v}?"]},
        "position": {"sg": ["Is the shape {v}?", "Is the object located {v}?"], "pl": ["Are the shapes {v}?", "Are the objects located {v}?"]},
        "size": {"sg": ["Is the shape {v}?", "Is the object {v}?"], "pl": ["Are the shapes {v}?", "Are the objects {v}?"]},
    },
    "de": {
        "colour": {"sg": ["Ist das Objekt {v}?", "Ist die Form im Bild {v}?"], "pl": ["Sind die Objekte {v}?", "Sind die Formen im Bild {v}?"]},
        "shape": {"any": ["Gibt es im Bild {v}?", "Siehst du {v}?"]},
        "count": {"any": ["Siehst du genau {v}?", "Gibt es im Bild genau {v}?"]},
        "position": {"sg": ["Ist das Objekt {v}?", "Befindet sich die Form {v}?"], "pl": ["Sind die Objekte {v}?", "Befinden sich die Formen {v}?"]},
        "size": {"sg": ["Ist das Objekt {v}?", "Ist die Form {v}?"], "pl": ["Sind die Objekte {v}?", "Sind die Formen {v}?"]},
    },
    "fr": {
        "colour": {"sg": ["La forme est-elle {v} ?", "Est-ce que la forme est {v} ?"], "pl": ["Les formes sont-elles {v} ?", "Est-ce que les formes sont {v} ?"]},
        "shape": {"any": ["Y a-t-il {v} sur l'image ?", "Voit-on {v} sur l'image ?", "Est-ce qu'il y a {v} ?"]},
        "count": {"any": ["Y a-t-il exactement {v} sur l'image ?", "Voit-on exactement {v} ?"]},
        "position": {"sg": ["La forme est-elle {v} ?", "Est-ce que la forme se trouve {v} ?"], "pl": ["Les formes sont-elles {v} ?", "Est-ce que les formes se trouvent {v} ?"]},
        "size": {"sg": ["La forme est-elle {v} ?", "Est-ce que la forme est {v} ?"], "pl": ["Les formes sont-elles {v} ?", "Est-ce que les formes sont {v} ?"]},
    },
    "es": {
        "colour": {"sg": ["¿La figura es {v}?", "¿Es {v} la figura?"], "pl": ["¿Las figuras son {v}?", "¿Son {v} las figuras?"]},
        "shape": {"any": ["¿Hay {v} en la imagen?", "¿Se ve {v} en la imagen?", "¿Aparece {v}?"]},
        "count": {"any": ["¿Hay exactamente {v} en la imagen?", "¿Hay exactamente {v}?"]},
        "position": {"sg": ["¿La figura está {v}?", "¿Está la figura {v}?"], "pl": ["¿Las figuras están {v}?", "¿Están las figuras {v}?"]},
        "size": {"sg": ["¿La figura es {v}?", "¿Es {v} la figura?"], "pl": ["¿Las figuras son {v}?", "¿Son {v} las figuras?"]},
    },
    "ru": {
        "colour": {"sg": ["Фигура {v}?", "Это {v} фигура?"], "pl": ["Фигуры {v}?", "Это {v} фигуры?"]},
        "shape": {"any": ["Есть ли на картинке {v}?", "На изображении есть {v}?"]},
        "count": {"any": ["На картинке ровно {v}?", "Здесь ровно {v}?"]},
        "position": {"sg": ["Фигура находится {v}?", "Фигура расположена {v}?"], "pl": ["Фигуры находятся {v}?", "Фигуры расположены {v}?"]},
        "size": {"sg": ["Фигура {v}?", "Это {v} фигура?"], "pl": ["Фигуры {v}?", "Это {v} фигуры?"]},
    },
    "ar": {
        "colour": {"any": ["هل لون {g} {v}؟", "هل لون {g} في الصورة {v}؟"]},
        "shape": {"any": ["هل {exist} {v} في الصورة؟", "هل {appear} {v} في الصورة؟"]},
        "count": {"any": ["هل في الصورة {v} بالضبط؟", "هل يوجد في الصورة {v} فقط؟"]},
        "position": {"any": ["هل {n} {v}؟", "هل {verb} {n} {v}؟"]},
        "size": {"any": ["هل {n} {v}؟", "هل {n} في الصورة {v}؟"]},
    },
    "hi": {
        "colour": {"sg": ["क्या आकृति {v} है?", "क्या चित्र में आकृति {v} है?"], "pl": ["क्या आकृतियाँ {v} हैं?", "क्या चित्र में आकृतियाँ {v} हैं?"]},
        "shape": {"any": ["क्या चित्र में कोई {v} है?", "क्या आपको {v} दिख रहा है?"]},
        "count": {"sg": ["क्या चित्र में ठीक {v} है?"], "pl": ["क्या चित्र में ठीक {v} हैं?"]},
        "position": {"sg": ["क्या आकृति {v} है?", "क्या चित्र में आकृति {v} स्थित है?"], "pl": ["क्या आकृतियाँ {v} हैं?", "क्या चित्र में आकृतियाँ {v} स्थित हैं?"]},
        "size": {"sg": ["क्या आकृति {v} है?", "क्या चित्र में आकृति {v} है?"], "pl": ["क्या आकृतियाँ {v} हैं?", "क्या चित्र में आकृतियाँ {v} हैं?"]},
    },
    "ko": {
        "colour": {"any": ["도형이 {v}인가요?", "도형의 색이 {v}인가요?"]},
        "shape": {"any": ["그림에 {v} 있나요?", "{v} 보이나요?"]},
        "count": {"any": ["도형이 정확히 {v} 개인가요?", "도형이 딱 {v} 개 있나요?"]},
        "position": {"any": ["도형이 {v} 있나요?", "도형이 그림의 {v} 있나요?"]},
        "size": {"any": ["도형이 {v}?", "도형의 크기가 {v}?"]},
    },
    "zh": {
        "colour": {"any": ["图形是{v}的吗？", "图中的图形是{v}的吗？"]},
        "shape": {"any": ["图片里有{v}吗？", "图中能看到{v}吗？"]},
        "count": {"any": ["图中正好有{v}个图形吗？", "图片里恰好有{v}个图形吗？"]},
        "position": {"any": ["图形在{v}吗？", "图形位于图片的{v}吗？"]},
        "size": {"any": ["图形是{v}的吗？", "图形很{v}吗？"]},
    },
    "ja": {
        "colour": {"any": ["図形の色は{v}ですか？", "画像の図形は{v}ですか？"]},
        "shape": {"any": ["画像に{v}はありますか？", "{v}が見えますか？"]},
        "count": {"any": ["図形はちょうど{v}ですか？", "図形がちょうど{v}ありますか？"]},
        "position": {"any": ["図形は{v}にありますか？", "図形は画像の{v}の方にありますか？"]},
        "size": {"any": ["図形は{v}ですか？", "図形は{v}方ですか？"]},
    },
}

# Forms of the asked value inside yes/no questions.
_FR_COLOUR_F = {"red": ("rouge", "rouges"), "green": ("verte", "vertes"), "blue": ("bleue", "bleues"),
                "yellow": ("jaune", "jaunes"), "purple": ("violette", "violettes"), "orange": ("orange", "orange")}
_ES_COLOUR_F = {"red": ("roja", "rojas"), "green": ("verde", "verdes"), "blue": ("azul", "azules"),
                "yellow": ("amarilla", "amarillas"), "purple": ("morada", "moradas"), "orange": ("naranja", "naranja")}
_RU_COLOUR_F = {"red": ("красная", "красные"), "green": ("зелёная", "зелёные"), "blue": ("синяя", "синие"),
                "yellow": ("жёлтая", "жёлтые"), "purple": ("фиолетовая", "фиолетовые"), "orange": ("оранжевая", "оранжевые")}
_HI_COLOUR_F = {"red": "लाल", "green": "हरी", "blue": "नीली", "yellow": "पीली", "purple": "बैंगनी", "orange": "नारंगी"}
_SIZE_F = {  # (sg, pl) forms agreeing with the language's word for "shape"
    "fr": {"small": ("petite", "petites"), "large": ("grande", "grandes")},
    "es": {"small": ("pequeña", "pequeñas"), "large": ("grande", "grandes")},
    "ru": {"small": ("маленькая", "маленькие"), "large": ("большая", "большие")},
    "hi": {"small": ("छोटी", "छोटी"), "large": ("बड़ी", "बड़ी")},
}
_AR_SIZE = {"small": ("صغير", "صغيران", "صغيرة"), "large": ("كبير", "كبيران", "كبيرة")}  # 1, 2, 3 objects
_AR_NOUN = {1: ("الشكل", "الشكل"), 2: ("الشكلان", "الشكلين"), 3: ("الأشكال", "الأشكال")}  # nominative, genitive
_SHAPE_INDEF = {
    "en": {s: s for s in SHAPES},
    "de": {"circle": "einen Kreis", "square": "ein Quadrat", "triangle": "ein Dreieck", "star": "einen Stern",
           "diamond": "eine Raute", "heart": "ein Herz"},
    "fr": {"circle": "un cercle", "square": "un carré", "triangle": "un triangle", "star": "une étoile",
           "diamond": "un losange", "heart": "un cœur"},
    "es": {"circle": "un círculo", "square": "un cuadrado", "triangle": "un triángulo", "star": "una estrella",
           "diamond": "un rombo", "heart": "un corazón"},
}
_AR_FEMININE_SHAPES = {"circle", "star"}
_POSITION_PHRASE = {
    "en": {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom", "center": "in the center"},
    "de": {"left": "links", "right": "rechts", "top": "oben", "bottom": "unten", "center": "in der Mitte"},
    "fr": {"left": "à gauche", "right": "à droite", "top": "en haut", "bottom": "en bas", "center": "au centre"},
    "es": {"left": "a la izquierda", "right": "a la derecha", "top": "arriba", "bottom": "abajo", "center": "en el centro"},
    "ru": {"left": "слева", "right": "справа", "top": "сверху", "bottom": "снизу", "center": "в центре"},
    "ar": {"left": "على اليسار", "right": "على اليمين", "top": "في الأعلى", "bottom": "في الأسفل", "center": "في الوسط"},
    "hi": {"left": "बाईं ओर", "right": "दाईं ओर", "top": "ऊपर", "bottom": "नीचे", "center": "बीच में"},
    "ko": {"left": "왼쪽에", "right": "오른쪽에", "top": "위쪽에", "bottom": "아래쪽에", "center": "가운데에"},
    "zh": {"left": "左边", "right": "右边", "top": "上面", "bottom": "下面", "center": "中间"},
    "ja": {"left": "左", "right": "右", "top": "上", "bottom": "下", "center": "真ん中"},
}
_COUNT_PHRASE = {
    "en": {"1": "one shape", "2": "two shapes", "3": "three shapes"},
    "de": {"1": "ein Objekt", "2": "zwei Objekte", "3": "drei Objekte"},
    "fr": {"1": "une forme", "2": "deux formes", "3": "trois formes"},
    "es": {"1": "una figura", "2": "dos figuras", "3": "tres figuras"},
    "ru": {"1": "одна фигура", "2": "две фигуры", "3": "три фигуры"},
    "ar": {"1": "شكل واحد", "2": "شكلان", "3": "ثلاثة أشكال"},
    "hi": {"1": "एक आकृति", "2": "दो आकृतियाँ", "3": "तीन आकृतियाँ"},
    "ko": {"1": "한", "2": "두", "3": "세"},
    "zh": {"1": "一", "2": "两", "3": "三"},
    "ja": {"1": "一つ", "2": "二つ", "3": "三つ"},
}


def _yesno_value(qtype: str, value: str, lang: str, count: int) -> str:
    """The asked value as it appears inside a yes/no question in ``lang`` (agreement included)."""
    plural = count > 1
    if qtype == "count":
        return _COUNT_PHRASE[lang][value]
    if qtype == "position":
        return _POSITION_PHRASE[lang][value]
    if qtype == "shape":
        if lang in _SHAPE_INDEF:
            return _SHAPE_INDEF[lang][value]
        noun = ANSWERS[lang][value]
        if lang == "ko":
            return noun + _ko_particle(noun, "이", "가")
        return noun
    if qtype == "colour":
        if lang == "fr":
            return _FR_COLOUR_F[value][plural]
        if lang == "es":
            return _ES_COLOUR_F[value][plural]
        if lang == "ru":
            return _RU_COLOUR_F[value][plural]
        if lang == "hi":
            return _HI_COLOUR_F[value]
        return ANSWERS[lang][value]  # en, de (predicative, uninflected), ar (agrees with لون), ko, zh, ja
    if qtype == "size":
        if lang in _SIZE_F:
            return _SIZE_F[lang][value][plural]
        if lang == "ar":
            return _AR_SIZE[value][count - 1]
        if lang == "ko":
            return {"small": "작은가요", "large": "큰가요"}[value]
        if lang == "zh":
            return {"small": "小", "large": "大"}[value]
        if lang == "ja":
            return {"small": "小さい", "large": "大きい"}[value]
        return ANSWERS[lang][value]  # en, de
    raise ValueError(f"unknown question type {qtype!r}; expected one of {QUESTION_TYPES}")


def _slots(lang: str, count: int, qtype: str, value: str | None) -> dict[str, str]:
    slots: dict[str, str] = {}
    if lang == "ar":
        nominative, genitive = _AR_NOUN[count]
        slots.update(n=nominative, g=genitive, verb="يقع" if count < 3 else "تقع",
                     small=_AR_SIZE["small"][count - 1], large=_AR_SIZE["large"][count - 1])
        if qtype == "shape" and value is not None:
            feminine = value in _AR_FEMININE_SHAPES
            slots["exist"], slots["appear"] = ("توجد", "تظهر") if feminine else ("يوجد", "يظهر")
    if value is not None:
        slots["v"] = _yesno_value(qtype, value, lang, count)
    return slots


def question_phrasings(qtype: str, form: str, lang: str, count: int, value: str | None = None) -> list[str]:
    """Every phrasing of one question in one language.

    Args:
        qtype: One of :data:`QUESTION_TYPES`.
        form: ``"open"`` or ``"yesno"``.
        lang: One of :data:`LANGUAGES`.
        count: Number of objects in the scene (chooses singular, dual or plural wording;
            never revealed by a counting question).
        value: For yes/no questions, the asked value key (``"red"``, ``"2"``, ...).

    Returns:
        The phrasings, in a fixed order.

    Raises:
        ValueError: If the type, form, language or value is unknown.
    """
    _check_lang(lang)
    if qtype not in QUESTION_TYPES:
        raise ValueError(f"unknown question type {qtype!r}; expected one of {QUESTION_TYPES}")
    if form not in QUESTION_FORMS:
        raise ValueError(f"unknown question form {form!r}; expected one of {QUESTION_FORMS}")
    if form == "yesno" and value not in _VALUES[qtype]:
        raise ValueError(f"yes/no {qtype} question needs a value in {_VALUES[qtype]}, got {value!r}")
    table = (_OPEN if form == "open" else _YESNO)[lang][qtype]
    # A yes/no counting question agrees with the asked number, not with the scene.
    grammatical_count = int(value) if (form == "yesno" and qtype == "count") else count
    number = "any" if "any" in table else ("sg" if grammatical_count == 1 else "pl")
    slots = _slots(lang, count, qtype, value if form == "yesno" else None)
    return [template.format(**slots) for template in table[number]]


# ------------------------------------------------------------------- annotators, choices


def _annotate(truth: str, qtype: str, lang: str, rng: random.Random, values: list[str]) -> list[str]:
    """Ten annotators' raw answers: canonical, a variant, or (rarely) a wrong value."""
    answers = []
    wrong_rate = _WRONG_RATE[qtype]
    for _ in range(NUM_ANNOTATORS):
        key = truth
        if rng.random() < wrong_rate:
            key = rng.choice([v for v in values if v != truth])
        variants = VARIANTS[lang].get(key, [])
        if variants and rng.random() < _VARIANT_RATE:
            answers.append(rng.choice(variants))
        else:
            answers.append(answer_text(key, lang))
    return answers


def _options(truth: str, qtype: str, lang: str, rng: random.Random) -> tuple[list[str], int]:
    pool_keys = _VALUES[qtype] + _EXTRA_OPTIONS.get(qtype, []) if qtype != "yesno" else ["yes", "no"] + _EXTRA_OPTIONS["yesno"]
    distractors = [k for k in pool_keys if k != truth]
    rng.shuffle(distractors)
    keys = [truth] + distractors[: NUM_OPTIONS - 1]
    rng.shuffle(keys)
    return [answer_text(k, lang) for k in keys], keys.index(truth)


def scene_questions(
    spec: SceneSpec, seed: int = 0, languages: list[str] | None = None, include_raw: bool = True
) -> list[dict]:
    """The ten questions of one scene, each in every language.

    Args:
        spec: The scene.
        seed: Seed of phrasing choice, yes/no values, annotators and option order.
        languages: Languages to write; defaults to all of :data:`LANGUAGES`.
        include_raw: Keep ``raw_answers`` (the shards store only the normalised
            ``answers``, as the VQAv2 release does; the same seed gives the same raw ones).

    Returns:
        One dict per question: ``qid``, ``type``, ``form``, ``value`` (asked value of a
        yes/no question, else None), ``answer_key`` (language-independent answer),
        ``answer_type`` (VQAv2's ``"yes/no"``, ``"number"`` or ``"other"``) and per
        language: ``texts`` (the chosen phrasing), ``paraphrases`` (all phrasings),
        ``answer`` (canonical), ``raw_answers`` and ``answers`` (10 annotators, raw and
        normalised), ``options`` and ``label``.
    """
    from babeltower.modalities.answers import normalize_answer

    languages = list(languages) if languages else list(LANGUAGES)
    attributes = {"colour": spec.colour, "shape": spec.shape, "count": str(spec.count),
                  "position": spec.position, "size": spec.size}
    rng = random.Random(f"vqa:{seed}:{spec}")
    questions = []
    for qtype in QUESTION_TYPES:
        truth = attributes[qtype]
        for form in QUESTION_FORMS:
            value = None
            if form == "yesno":
                value = truth if rng.random() < 0.5 else rng.choice([v for v in _VALUES[qtype] if v != truth])
                key = "yes" if value == truth else "no"
                answer_type = "yes/no"
            else:
                key = truth
                answer_type = "number" if qtype == "count" else "other"
            question = {"qid": f"{qtype}-{form}", "type": qtype, "form": form, "value": value,
                        "answer_key": key, "answer_type": answer_type,
                        "texts": {}, "paraphrases": {}, "answer": {}, "answers": {}, "options": {}, "label": {}}
            if include_raw:
                question["raw_answers"] = {}
            annotate_values = _VALUES[qtype] if form == "open" else ["yes", "no"]
            wrong_type = qtype if form == "open" else "yesno"
            for lang in languages:
                phrasings = question_phrasings(qtype, form, lang, spec.count, value)
                question["paraphrases"][lang] = phrasings
                question["texts"][lang] = rng.choice(phrasings)
                question["answer"][lang] = answer_text(key, lang)
                raw = _annotate(key, wrong_type, lang, rng, annotate_values)
                if include_raw:
                    question["raw_answers"][lang] = raw
                question["answers"][lang] = [normalize_answer(a, lang) for a in raw]
                options, label = _options(key, qtype if form == "open" else "yesno", lang, rng)
                question["options"][lang] = options
                question["label"][lang] = label
            questions.append(question)
    return questions


# --------------------------------------------------------------------------- language ID


def guess_language(question: str, languages: list[str] | None = None) -> str:
    """The most likely question language, from its script and its words.

    Script decides where it is unique (Hangul -> ko, kana -> ja, Han without kana ->
    zh, Arabic -> ar, Devanagari -> hi, Cyrillic -> ru). Latin-script text is scored by
    character trigrams shared with this module's question phrasings; ties go to
    English. Deterministic, and meant for the ``babeltower vqa`` command when no
    ``--lang`` is given.
    """
    languages = list(languages) if languages else list(LANGUAGES)
    counts = {"ko": 0, "kana": 0, "han": 0, "ar": 0, "hi": 0, "ru": 0, "latin": 0}
    for ch in question:
        code = ord(ch)
        if 0xAC00 <= code <= 0xD7A3 or 0x1100 <= code <= 0x11FF:
            counts["ko"] += 1
        elif 0x3040 <= code <= 0x30FF:
            counts["kana"] += 1
        elif 0x4E00 <= code <= 0x9FFF:
            counts["han"] += 1
        elif 0x0600 <= code <= 0x06FF:
            counts["ar"] += 1
        elif 0x0900 <= code <= 0x097F:
            counts["hi"] += 1
        elif 0x0400 <= code <= 0x04FF:
            counts["ru"] += 1
        elif ch.isalpha():
            counts["latin"] += 1
    script_lang = [("ko", counts["ko"]), ("ja", counts["kana"]), ("ar", counts["ar"]), ("hi", counts["hi"]),
                   ("ru", counts["ru"])]
    best, best_count = max(script_lang, key=lambda item: item[1])
    if best_count > 0 and best in languages and best_count >= counts["latin"]:
        return best
    if counts["han"] > 0 and counts["han"] >= counts["latin"]:
        return "ja" if counts["kana"] and "ja" in languages else ("zh" if "zh" in languages else languages[0])
    latin = [lang for lang in ("en", "de", "fr", "es") if lang in languages]
    if not latin:
        return languages[0]
    grams = _trigrams(question)
    scores = {lang: len(grams & _latin_profile(lang)) for lang in latin}
    top = max(scores.values())
    return "en" if "en" in latin and scores["en"] == top else max(latin, key=lambda lang: (scores[lang], lang == "en"))


def _trigrams(text: str) -> set[str]:
    text = f" {unicodedata.normalize('NFC', text.lower())} "
    return {text[i : i + 3] for i in range(len(text) - 2)}


_PROFILES: dict[str, set[str]] = {}


def _latin_profile(lang: str) -> set[str]:
    if lang not in _PROFILES:
        grams: set[str] = set()
        for table in (_OPEN[lang], _YESNO[lang]):
            for by_number in table.values():
                for templates in by_number.values():
                    for template in templates:
                        grams |= _trigrams(template.replace("{v}", ""))
        grams |= _trigrams(" ".join(ANSWERS[lang].values()))
        _PROFILES[lang] = grams
    return _PROFILES[lang]


# ------------------------------------------------------------------------------ writing


def _encode_png(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _vqa_samples(num: int, split: str, *, image_size: int, languages: list[str], seed: int, progress: bool) -> Iterator[dict]:
    from tqdm.auto import tqdm

    specs = sample_scenes(num, split, seed)
    for index, spec in enumerate(tqdm(specs, total=num, desc=f"vqa/{split}", unit="scene", disable=not progress)):
        yield {
            "__key__": f"{split}-{index:08d}",
            "png": _encode_png(render_scene(spec, image_size)),
            "json": {
                "scene": spec.attributes(),
                "scene_seed": spec.seed,
                "split": split,
                "languages": languages,
                "questions": scene_questions(spec, seed=seed * 1_000_003 + index, languages=languages, include_raw=False),
            },
        }


def write_vqa_shards(
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
) -> dict[str, list[Path]]:
    """Writes train and val shards of multilingual VQA scenes.

    One sample per scene: ``png`` (the image) and ``json`` with ``scene`` (its
    attributes), ``split``, ``languages`` and ``questions`` (see :func:`scene_questions`).
    ``val`` scenes only show held-out colour-shape pairs.

    Args:
        out_dir: Shards go to ``out_dir/train`` and ``out_dir/val``.
        num_train: Training scenes.
        num_val: Validation scenes.
        image_size: Image side in pixels.
        languages: Question languages; defaults to all of :data:`LANGUAGES`.
        seed: Dataset seed (scenes, held-out pairs, questions, annotators).
        samples_per_shard: Maximum scenes per shard.
        overwrite: Replace existing shards instead of refusing.
        progress: Show a tqdm progress bar.

    Returns:
        ``{"train": [...], "val": [...]}`` lists of shard paths.

    Raises:
        FileExistsError: If shards exist and ``overwrite`` is False.
        ValueError: If a language is unknown or a count is negative.
    """
    from babeltower.datasets.writer import write_shards

    languages = list(languages) if languages else list(LANGUAGES)
    for lang in languages:
        _check_lang(lang)
    if num_train < 0 or num_val < 0:
        raise ValueError(f"write_vqa_shards: num_train and num_val must be >= 0, got {num_train} and {num_val}")
    out_dir = Path(out_dir)
    written: dict[str, list[Path]] = {}
    for split, num in (("train", num_train), ("val", num_val)):
        if num == 0:
            written[split] = []
            continue
        samples = _vqa_samples(num, split, image_size=image_size, languages=languages, seed=seed, progress=progress)
        written[split] = write_shards(samples, out_dir / split, prefix="shard", max_count=samples_per_shard, overwrite=overwrite)
    return written


def question_corpus(languages: list[str] | None = None) -> list[str]:
    """Every question phrasing and answer string, e.g. to extend a tokenizer's corpus."""
    languages = list(languages) if languages else list(LANGUAGES)
    texts: set[str] = set()
    for lang in languages:
        _check_lang(lang)
        for qtype in QUESTION_TYPES:
            for count in COUNTS:
                texts.update(question_phrasings(qtype, "open", lang, count))
                for value in _VALUES[qtype]:
                    texts.update(question_phrasings(qtype, "yesno", lang, count, value))
        texts.update(answer_keys(lang))
    return sorted(texts)
