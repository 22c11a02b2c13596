"""Answer normalisation for exact-match scoring of short answers (VQA), per language.

English follows the official VQAv2 ``vqaEval`` exactly (its punctuation handling, number
words to digits, articles, contraction table, and its quirks); the other languages get
the documented equivalent in :func:`normalize_answer`. Text in, text out: the synthetic
data writes normalised annotator answers with it (as the VQAv2 release stores them) and
:mod:`babeltower.eval.vqa` scores with it.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# ------------------------------------------------------------------ official VQAv2 tables
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
    "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
    "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
MANUAL_MAP: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES: tuple[str, ...] = ("a", "an", "the")
PUNCT: tuple[str, ...] = (";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")


def process_punctuation(text: str) -> str:
    """vqaEval's ``processPunctuation``, unchanged (see the module docstring)."""
    out = text
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or (re.search(_COMMA_STRIP, text) is not None):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # The official code passes re.UNICODE (32) as the positional `count` argument.
    return _PERIOD_STRIP.sub("", out, int(re.UNICODE))


def process_digit_article(text: str) -> str:
    """vqaEval's ``processDigitArticle``, unchanged: lowercase, number words, articles, contractions."""
    words = []
    for word in text.lower().split():
        word = MANUAL_MAP.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


# ---------------------------------------------------------------- other languages
_NUMBER_WORDS: dict[str, dict[str, str]] = {
    "en": dict(MANUAL_MAP),
    "de": {"null": "0", "eins": "1", "ein": "1", "eine": "1", "zwei": "2", "drei": "3", "vier": "4", "fünf": "5",
           "sechs": "6", "sieben": "7", "acht": "8", "neun": "9", "zehn": "10", "keins": "0", "keine": "0"},
    "fr": {"zéro": "0", "aucun": "0", "un": "1", "une": "1", "deux": "2", "trois": "3", "quatre": "4", "cinq": "5",
           "six": "6", "sept": "7", "huit": "8", "neuf": "9", "dix": "10"},
    "es": {"cero": "0", "ninguno": "0", "uno": "1", "una": "1", "un": "1", "dos": "2", "tres": "3", "cuatro": "4",
           "cinco": "5", "seis": "6", "siete": "7", "ocho": "8", "nueve": "9", "diez": "10"},
    "ru": {"ноль": "0", "один": "1", "одна": "1", "одно": "1", "два": "2", "две": "2", "три": "3", "четыре": "4",
           "пять": "5", "шесть": "6", "семь": "7", "восемь": "8", "девять": "9", "десять": "10"},
    "ar": {"صفر": "0", "واحد": "1", "واحدة": "1", "اثنان": "2", "اثنين": "2", "اثنتان": "2", "ثلاثة": "3", "ثلاث": "3",
           "أربعة": "4", "أربع": "4", "خمسة": "5", "ستة": "6", "سبعة": "7", "ثمانية": "8", "تسعة": "9", "عشرة": "10"},
    "hi": {"शून्य": "0", "एक": "1", "दो": "2", "तीन": "3", "चार": "4", "पाँच": "5", "पांच": "5", "छह": "6", "सात": "7",
           "आठ": "8", "नौ": "9", "दस": "10"},
    "ko": {"영": "0", "하나": "1", "한": "1", "둘": "2", "두": "2", "셋": "3", "세": "3", "넷": "4", "네": "4",
           "다섯": "5", "여섯": "6", "일곱": "7", "여덟": "8", "아홉": "9", "열": "10"},
    "zh": {"零": "0", "一": "1", "二": "2", "两": "2", "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "八": "8",
           "九": "9", "十": "10"},
    "ja": {"零": "0", "一": "1", "二": "2", "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "八": "8", "九": "9",
           "十": "10", "ひとつ": "1", "ふたつ": "2", "みっつ": "3", "一つ": "1", "二つ": "2", "三つ": "3", "四つ": "4"},
}
_LANG_ARTICLES: dict[str, frozenset[str]] = {
    "en": frozenset(ARTICLES),
    "de": frozenset("der die das den dem des ein eine einen einem einer".split()),
    "fr": frozenset("le la les l' un une des du de".split()),
    "es": frozenset("el la los las un una unos unas lo".split()),
}
# Counter words after a number: zh 个/只/块, ja つ/個/枚, ko 개 (also written apart).
_COUNTERS = {"zh": "个只块", "ja": "つ個枚", "ko": "개"}
# Korean "네" is both "yes" and the number word "four" (as determiner, 네 개); only map it
# to 4 when a counter follows.
_NEEDS_COUNTER = {"ko": {"네"}}


def _strip_punctuation(text: str) -> str:
    chars = []
    for i, ch in enumerate(text):
        if ch == "." and i + 1 < len(text) and text[i + 1].isdigit():
            chars.append(ch)  # a decimal point stays, as in vqaEval
        elif ch in "'’" and chars and chars[-1].isalpha() and i + 1 < len(text) and text[i + 1].isalpha():
            chars.append("'")  # elision/contraction apostrophes (l'étoile, don't) stay inside the word
        elif unicodedata.category(ch).startswith("P") or ch in PUNCT or unicodedata.category(ch) in ("Sm", "Sk"):
            chars.append(" ")
        else:
            chars.append(ch)
    return "".join(chars)


def _native_digits(text: str) -> str:
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() and not ch.isascii() else ch for ch in text)


@functools.lru_cache(maxsize=65536)
def normalize_answer(text: str, lang: str) -> str:
    """Normalises an answer for exact-match scoring in ``lang`` (module docstring).

    For ``"en"`` this is exactly vqaEval's prediction processing
    (``processDigitArticle(processPunctuation(x))``).

    Examples:
        >>> normalize_answer("Two.", "en")
        '2'
        >>> normalize_answer("L'étoile", "fr")
        'étoile'
        >>> normalize_answer("두 개", "ko")
        '2'
    """
    text = _clean(text)
    if lang == "en":
        return process_digit_article(process_punctuation(text))
    text = unicodedata.normalize("NFKC", text).casefold()
    if lang == "ru":
        text = text.replace("ё", "е")
    text = _native_digits(_strip_punctuation(text))
    numbers = _NUMBER_WORDS.get(lang, {})
    if lang in _COUNTERS:
        compact = text.replace(" ", "")
        match = re.fullmatch(rf"(\d+|{'|'.join(map(re.escape, sorted(numbers, key=len, reverse=True)))})([{_COUNTERS[lang]}]?)", compact)
        if match and (match.group(2) or match.group(1) not in _NEEDS_COUNTER.get(lang, ())):
            word = match.group(1)
            return numbers.get(word, word)
        return " ".join(text.split())
    words = text.split()
    # Elided articles (fr l', d') come off the front of the word.
    if lang == "fr":
        words = [re.sub(r"^(l|d|qu)'", "", w) for w in words]
    articles = _LANG_ARTICLES.get(lang, frozenset())
    if len(words) == 1:
        return numbers.get(words[0], words[0])
    out = [numbers.get(w, w) for w in words if w not in articles]
    return " ".join(out)
