"""Real text for synthetic speech: sentences and words per language, with held-out sets.

The speech head only generalises as far as the text espeak-ng is asked to read. This
module builds, per language of :data:`SPEECH_LANGUAGES`, pools of real text from
independent sources, normalised to what a transcript should be (lowercase, no
punctuation, numbers written out as they are spoken):

========== ============================================================== ==========
source     what                                                           split
========== ============================================================== ==========
udhr       clauses of the Universal Declaration of Human Rights sample     train and
           texts that ``gflanguages`` ships (Google Fonts)                 held out
cldr       CLDR names through babel: languages, territories, months,       train
           weekdays
words      random sequences of real words from ``wordfreq``'s frequency    train
           list (log-uniform rank, so rare words occur too)
numbers    numbers and dates written out (num2words; babel month names)    train
scenes     the scene captions (:mod:`babeltower.datasets.synthetic.scenes`) train and
                                                                           seen-domain
                                                                           eval
everyday   hand-written everyday sentences (:data:`EVERYDAY`): a whole     held out
           source that never reaches training                              only
========== ============================================================== ==========

A fixed share of the UDHR clauses (by a hash of the normalised text, so the split does
not depend on sampling) is held out; a held-out clause never occurs in any training
pool (:func:`language_corpus` removes every held-out text from every training source).

Japanese is written in kana (espeak-ng's ``ja`` voice reads kanji as "Chinese letter"):
kanji text is converted with ``pykakasi``. Korean–English code-switched sentences
(:func:`code_switched_corpus`) are built from Korean frames and English words of a real
frequency list, with disjoint frames and word sets for training and evaluation.

Optional dependencies: ``gflanguages``, ``wordfreq``, ``num2words``, ``pykakasi``
(``pip install babeltower[speech]``); a missing one raises an error naming it.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import re
import unicodedata
from collections.abc import Iterable

__all__ = [
    "SPEECH_LANGUAGES",
    "SOURCES",
    "HELDOUT_SOURCES",
    "EVERYDAY",
    "normalize_transcript",
    "is_heldout_text",
    "language_corpus",
    "code_switched_corpus",
    "unit_inventory",
]

#: Monolingual speech languages (the scene languages).
SPEECH_LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "ru", "ar", "hi", "ko", "zh", "ja")
#: Text sources, in the order of the module table.
SOURCES: tuple[str, ...] = ("udhr", "cldr", "words", "numbers", "scenes", "everyday")
#: Sources whose texts are only ever evaluated.
HELDOUT_SOURCES: tuple[str, ...] = ("everyday",)
#: Share of UDHR clauses held out for evaluation.
HELDOUT_UDHR_FRACTION = 0.3

_GFLANGUAGES_CODES = {
    "en": "en_Latn", "de": "de_Latn", "fr": "fr_Latn", "es": "es_Latn", "ru": "ru_Cyrl", "ar": "ar_Arab",
    "hi": "hi_Deva", "ko": "ko_Kore", "zh": "zh_Hans", "ja": "ja_Jpan",
}  # fmt: skip
_NO_SPACE = ("zh", "ja")

# Letters a normalised transcript may hold, per language (after NFC and lowercasing).
_ALLOWED = {
    "en": "a-z'",
    "de": "a-zäöüß",
    "fr": "a-zàâæçéèêëîïôœùûüÿ'",
    "es": "a-záéíóúüñ",
    "ru": "а-яё",
    "ar": "\u0621-\u063a\u0641-\u064a",
    "hi": "\u0900-\u0963\u0966-\u097f",
    "ko": "\uac00-\ud7a3",
    "zh": "\u4e00-\u9fff",
    "ja": "\u3041-\u3096\u30a1-\u30fa\u30fc",
}
_VALID = {lang: re.compile(f"[{chars} ]+") for lang, chars in _ALLOWED.items()}

# Everyday sentences, written for this module: a whole source that is only evaluated.
EVERYDAY: dict[str, list[str]] = {
    "en": [
        "please open the window", "the weather is nice today", "where is the train station",
        "i would like a cup of coffee", "my brother lives in a small town", "we are going to the market tomorrow",
        "can you help me carry this box", "the children are playing in the garden", "turn left at the next corner",
        "she reads a book every evening", "how much does this shirt cost", "the meeting starts at nine",
        "i forgot my keys at home", "dinner is ready in ten minutes", "it is raining again this morning",
        "he bought fresh bread and milk", "please speak a little more slowly", "our flight was delayed for two hours",
    ],
    "de": [
        "bitte mach das fenster auf", "das wetter ist heute schön", "wo ist der bahnhof",
        "ich hätte gern eine tasse kaffee", "mein bruder wohnt in einer kleinen stadt", "wir gehen morgen auf den markt",
        "kannst du mir mit der kiste helfen", "die kinder spielen im garten", "an der nächsten ecke links abbiegen",
        "sie liest jeden abend ein buch", "wie viel kostet dieses hemd", "das treffen beginnt um neun",
        "ich habe meine schlüssel zu hause vergessen", "das essen ist in zehn minuten fertig",
        "es regnet heute morgen schon wieder", "er hat frisches brot und milch gekauft",
        "bitte sprich etwas langsamer", "unser flug hatte zwei stunden verspätung",
    ],
    "fr": [
        "ouvre la fenêtre s'il te plaît", "il fait beau aujourd'hui", "où est la gare",
        "je voudrais une tasse de café", "mon frère habite dans une petite ville", "nous allons au marché demain",
        "peux tu m'aider à porter cette boîte", "les enfants jouent dans le jardin", "tournez à gauche au prochain coin",
        "elle lit un livre chaque soir", "combien coûte cette chemise", "la réunion commence à neuf heures",
        "j'ai oublié mes clés à la maison", "le dîner est prêt dans dix minutes", "il pleut encore ce matin",
        "il a acheté du pain frais et du lait", "parlez un peu plus lentement s'il vous plaît",
        "notre vol a eu deux heures de retard",
    ],
    "es": [
        "por favor abre la ventana", "hoy hace buen tiempo", "dónde está la estación de tren",
        "quisiera una taza de café", "mi hermano vive en un pueblo pequeño", "mañana vamos al mercado",
        "puedes ayudarme a llevar esta caja", "los niños juegan en el jardín", "gira a la izquierda en la próxima esquina",
        "ella lee un libro cada noche", "cuánto cuesta esta camisa", "la reunión empieza a las nueve",
        "olvidé mis llaves en casa", "la cena estará lista en diez minutos", "esta mañana está lloviendo otra vez",
        "compró pan fresco y leche", "por favor habla un poco más despacio", "nuestro vuelo se retrasó dos horas",
    ],
    "ru": [
        "пожалуйста открой окно", "сегодня хорошая погода", "где находится вокзал",
        "я хотел бы чашку кофе", "мой брат живёт в маленьком городе", "завтра мы пойдём на рынок",
        "помоги мне донести эту коробку", "дети играют в саду", "на следующем углу поверните налево",
        "она читает книгу каждый вечер", "сколько стоит эта рубашка", "встреча начинается в девять",
        "я забыл ключи дома", "ужин будет готов через десять минут", "сегодня утром опять идёт дождь",
        "он купил свежий хлеб и молоко", "говорите пожалуйста помедленнее", "наш рейс задержали на два часа",
    ],
    "ar": [
        "من فضلك افتح النافذة", "الطقس جميل اليوم", "أين محطة القطار",
        "أريد فنجان قهوة", "يعيش أخي في بلدة صغيرة", "سنذهب إلى السوق غدا",
        "هل يمكنك مساعدتي في حمل هذا الصندوق", "الأطفال يلعبون في الحديقة", "انعطف يسارا عند الزاوية التالية",
        "هي تقرأ كتابا كل مساء", "كم سعر هذا القميص", "يبدأ الاجتماع في الساعة التاسعة",
        "نسيت مفاتيحي في البيت", "العشاء جاهز بعد عشر دقائق", "إنها تمطر مرة أخرى هذا الصباح",
        "اشترى خبزا طازجا وحليبا", "تكلم ببطء من فضلك", "تأخرت رحلتنا ساعتين",
    ],
    "hi": [
        "कृपया खिड़की खोल दीजिए", "आज मौसम अच्छा है", "रेलवे स्टेशन कहाँ है",
        "मुझे एक कप कॉफ़ी चाहिए", "मेरा भाई एक छोटे शहर में रहता है", "हम कल बाज़ार जाएँगे",
        "क्या आप यह डिब्बा उठाने में मेरी मदद करेंगे", "बच्चे बगीचे में खेल रहे हैं", "अगले मोड़ पर बाएँ मुड़िए",
        "वह हर शाम एक किताब पढ़ती है", "इस कमीज़ की कीमत क्या है", "बैठक नौ बजे शुरू होती है",
        "मैं अपनी चाबियाँ घर पर भूल गया", "खाना दस मिनट में तैयार होगा", "आज सुबह फिर से बारिश हो रही है",
        "उसने ताज़ी रोटी और दूध खरीदा", "कृपया थोड़ा धीरे बोलिए", "हमारी उड़ान दो घंटे देर से थी",
    ],
    "ko": [
        "창문 좀 열어 주세요", "오늘 날씨가 좋네요", "기차역이 어디에 있어요",
        "커피 한 잔 주세요", "우리 형은 작은 마을에 살아요", "내일 우리는 시장에 갈 거예요",
        "이 상자 옮기는 것 좀 도와줄래요", "아이들이 정원에서 놀고 있어요", "다음 모퉁이에서 왼쪽으로 도세요",
        "그녀는 매일 저녁 책을 읽어요", "이 셔츠는 얼마예요", "회의는 아홉 시에 시작해요",
        "집에 열쇠를 두고 왔어요", "저녁은 십 분 후에 준비돼요", "오늘 아침에 또 비가 와요",
        "그는 신선한 빵과 우유를 샀어요", "조금만 천천히 말해 주세요", "비행기가 두 시간 늦게 출발했어요",
    ],
    "zh": [
        "请打开窗户", "今天天气很好", "火车站在哪里", "我想要一杯咖啡", "我哥哥住在一个小城市",
        "我们明天去市场", "你能帮我搬这个箱子吗", "孩子们在花园里玩", "在下一个路口向左转",
        "她每天晚上看书", "这件衬衫多少钱", "会议九点开始", "我把钥匙忘在家里了", "晚饭十分钟后就好",
        "今天早上又下雨了", "他买了新鲜的面包和牛奶", "请说得慢一点", "我们的航班晚了两个小时",
    ],
    "ja": [
        "まどをあけてください", "きょうはいいてんきですね", "えきはどこですか", "コーヒーをいっぱいください",
        "あにはちいさいまちにすんでいます", "あしたいちばにいきます", "このはこをはこぶのをてつだってくれますか",
        "こどもたちはにわであそんでいます", "つぎのかどをひだりにまがってください", "かのじょはまいばんほんをよみます",
        "このシャツはいくらですか", "かいぎはくじにはじまります", "かぎをいえにわすれました",
        "ばんごはんはじゅっぷんでできます", "けさまたあめがふっています", "かれはあたらしいパンとぎゅうにゅうをかいました",
        "もうすこしゆっくりはなしてください", "ひこうきがにじかんおくれました",
    ],
}  # fmt: skip


def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"speech text sources need {package} ({error}); install it with `pip install {package}` "
            "or `pip install babeltower[speech]`"
        ) from error


# --------------------------------------------------------------------- normalisation


def _zh_number(n: int) -> str:
    """A non-negative integer below 10^8 in Chinese numerals, as it is read aloud."""
    digits = "零一二三四五六七八九"
    if n < 10:
        return digits[n]

    def below_10000(x: int, leading: bool) -> str:
        out, zero = [], False
        for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
            d = x // value % 10
            if d:
                if zero and out:
                    out.append("零")
                out.append(("" if (unit == "十" and d == 1 and leading and not out) else digits[d]) + unit)
                zero = False
            elif out:
                zero = True
        return "".join(out)

    high, low = divmod(n, 10000)
    if high == 0:
        return below_10000(low, True)
    text = below_10000(high, True) + "万"
    if low:
        text += ("零" if low < 1000 else "") + below_10000(low, False)
    return text


@functools.lru_cache(maxsize=None)
def _kakasi():
    return _require("pykakasi", "pykakasi").kakasi()


def to_kana(text: str) -> str:
    """Japanese text -> hiragana (katakana kept), through pykakasi's dictionary."""
    out = []
    for item in _kakasi().convert(text):
        original = item["orig"]
        # Keep katakana words as written; kanji and hiragana become hiragana readings.
        out.append(original if re.fullmatch("[\u30a1-\u30fa\u30fc]+", original) else item["hira"])
    return "".join(out)


def spell_number(n: int, lang: str) -> str | None:
    """``n`` written out as it is spoken in ``lang``; None where no speller is available (hi)."""
    if lang == "zh":
        return _zh_number(n) if 0 <= n < 10**8 else None
    if lang == "hi":
        return None
    num2words = _require("num2words", "num2words").num2words
    try:
        words = num2words(n, lang=lang)
    except (NotImplementedError, OverflowError):
        return None
    return to_kana(words) if lang == "ja" else words


def normalize_transcript(text: str, lang: str) -> str | None:
    """A raw text -> the transcript espeak-ng is asked to speak and the model must write.

    NFC, lowercase, numbers written out, punctuation and symbols removed (an apostrophe
    stays inside English/French words), Arabic vowel marks and tatweel removed, spaces
    collapsed (removed entirely for zh/ja); Japanese in kana.

    Returns:
        The transcript, or None when it is empty or holds characters outside the
        language's letters (e.g. Latin words inside Hindi text, digits without a speller).
    """
    if lang not in _ALLOWED:
        raise ValueError(f"normalize_transcript: no speech text for language {lang!r}; available: {sorted(_ALLOWED)}")
    text = unicodedata.normalize("NFC", text).lower()
    text = re.sub(r"[\u064b-\u0652\u0640]", "", text)  # Arabic harakat, tatweel
    text = text.replace("\u2019", "'")

    def number(match: re.Match[str]) -> str:
        spelled = spell_number(int(match.group(0)), lang)
        return f" {spelled} " if spelled is not None else " \x00 "

    text = re.sub(r"\d+", number, text)
    if lang == "ja":
        text = to_kana(text)
    keep_apostrophe = lang in ("en", "fr")
    chars = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch == "'" and keep_apostrophe:
            chars.append(ch)
        elif category[0] in "PSZC" and ch != "\x00":
            chars.append(" ")
        else:
            chars.append(ch)
    text = "".join(chars)
    if keep_apostrophe:
        text = re.sub(r"(^|\s)'+|'+(\s|$)", " ", text)  # quotes, not elisions
    text = re.sub(r"\s+", "" if lang in _NO_SPACE else " ", text).strip()
    if not text or not _VALID[lang].fullmatch(text):
        return None
    return text


def _stable_fraction(text: str) -> float:
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big") / 2**64


def is_heldout_text(text: str, lang: str) -> bool:
    """Whether a UDHR clause is in the held-out share (decided by a hash of its text)."""
    return _stable_fraction(f"{lang}:{text}") < HELDOUT_UDHR_FRACTION


# ---------------------------------------------------------------------------- sources


def _chunks(words: list[str], size: int) -> Iterable[list[str]]:
    # Even pieces of at most `size` words, so no clause leaves a one-word tail.
    pieces = max(1, math.ceil(len(words) / size))
    step = math.ceil(len(words) / pieces)
    for start in range(0, len(words), step):
        yield words[start : start + step]


def udhr_clauses(lang: str, max_words: int = 10, max_chars: int = 22) -> list[str]:
    """Normalised clauses of the UDHR sample texts of gflanguages, deduplicated, in order."""
    gflanguages = _require("gflanguages", "gflanguages")
    record = gflanguages.LoadLanguages().get(_GFLANGUAGES_CODES[lang])
    if record is None:
        raise KeyError(f"gflanguages has no language {_GFLANGUAGES_CODES[lang]!r}")
    # The masthead and styles fields hold letter pairs ("AaBb") and style names, not text.
    texts = [value for fd, value in record.sample_text.ListFields()
             if isinstance(value, str) and not fd.name.startswith(("masthead", "styles"))]  # fmt: skip
    seen, clauses = set(), []
    for text in texts:
        for raw in re.split(r"[\n.,;:!?،؛।。、，；：！？]+", text):
            clause = normalize_transcript(raw, lang)
            if clause is None:
                continue
            if lang in _NO_SPACE:
                pieces = ["".join(p) for p in _chunks(list(clause), max_chars)]
            else:
                pieces = [" ".join(p) for p in _chunks(clause.split(), max_words)]
            for piece in pieces:
                if len(piece) >= 4 and piece not in seen:
                    seen.add(piece)
                    clauses.append(piece)
    return clauses


def cldr_names(lang: str) -> list[str]:
    """CLDR names in ``lang``: languages, territories, months, weekdays (babel)."""
    from babel import Locale

    locale = Locale.parse(lang)
    raw = list(locale.languages.values()) + list(locale.territories.values())
    raw += list(locale.months["format"]["wide"].values()) + list(locale.days["format"]["wide"].values())
    names = {normalize_transcript(name, lang) for name in raw}
    return sorted(name for name in names if name)


def frequent_words(lang: str, count: int = 20000) -> list[str]:
    """wordfreq's ``count`` most frequent words of ``lang``, normalised, in rank order."""
    wordfreq = _require("wordfreq", "wordfreq")
    words, seen = [], set()
    for word in wordfreq.top_n_list(lang, count):
        normal = normalize_transcript(word, lang)
        # Korean: wordfreq splits off particles and endings; keep units of >= 2 syllables.
        if normal and " " not in normal and normal not in seen and not (lang == "ko" and len(normal) < 2):
            seen.add(normal)
            words.append(normal)
    return words


def word_sequence(words: list[str], lang: str, rng: random.Random, lo: int = 2, hi: int = 7) -> str:
    """Random words at log-uniform ranks (common words often, rare ones too), joined."""
    picked = [words[min(len(words) - 1, int(math.exp(rng.uniform(0, math.log(len(words))))) - 1)]
              for _ in range(rng.randint(lo, hi))]  # fmt: skip
    return ("" if lang in _NO_SPACE else " ").join(picked)


def number_phrase(lang: str, rng: random.Random) -> str | None:
    """A number, a year or a date written out (month names from CLDR)."""
    from babel import Locale

    kind = rng.choice(("number", "year", "date"))
    if kind == "number":
        return normalize_transcript(str(int(math.exp(rng.uniform(0, math.log(100000))))), lang)
    year = rng.randint(1900, 2030)
    if kind == "year":
        return normalize_transcript(str(year), lang)
    month = Locale.parse(lang).months["format"]["wide"][rng.randint(1, 12)]
    day = rng.randint(1, 28)
    order = {"en": f"{month} {day} {year}", "zh": f"{year}年{month}{day}日", "ja": f"{year}年{month}{day}日",
             "ko": f"{year}년 {month} {day}일", "hi": f"{day} {month}"}  # fmt: skip
    return normalize_transcript(order.get(lang, f"{day} {month} {year}"), lang)


def scene_captions(lang: str, rng: random.Random) -> str:
    from babeltower.datasets.synthetic.scenes import COLOURS, COUNTS, POSITIONS, SHAPES, SIZES, SceneSpec
    from babeltower.datasets.synthetic.speech import sentence

    spec = SceneSpec(
        shape=rng.choice(SHAPES), colour=rng.choice(COLOURS), count=rng.choice(COUNTS),
        position=rng.choice(POSITIONS), size=rng.choice(SIZES),
    )  # fmt: skip
    return normalize_transcript(sentence(spec, lang), lang) or sentence(spec, lang)


@functools.lru_cache(maxsize=None)
def language_corpus(lang: str) -> dict[str, dict[str, list[str]]]:
    """Fixed text pools of one language: ``{"train": {source: texts}, "heldout": {source: texts}}``.

    ``words``, ``numbers`` and ``scenes`` are generators rather than pools: their train
    entries list the material (words; nothing for numbers/scenes) that
    :func:`draw_text` samples from. Every held-out text is removed from every training
    pool, so no held-out sentence can be spoken in training.
    """
    if lang not in SPEECH_LANGUAGES:
        raise ValueError(f"no speech text for language {lang!r}; available: {list(SPEECH_LANGUAGES)}")
    clauses = udhr_clauses(lang)
    heldout_udhr = [c for c in clauses if is_heldout_text(c, lang)]
    everyday = [t for t in (normalize_transcript(s, lang) for s in EVERYDAY[lang]) if t]
    heldout = set(heldout_udhr) | set(everyday)
    train = {
        "udhr": [c for c in clauses if c not in heldout],
        "cldr": [n for n in cldr_names(lang) if n not in heldout],
        "words": frequent_words(lang),
    }
    return {"train": train, "heldout": {"udhr": heldout_udhr, "everyday": everyday}}


#: Training mixture of monolingual sources (probabilities).
TRAIN_MIXTURE: dict[str, float] = {"udhr": 0.25, "words": 0.35, "cldr": 0.1, "numbers": 0.1, "scenes": 0.2}


def draw_text(lang: str, rng: random.Random, mixture: dict[str, float] | None = None) -> tuple[str, str]:
    """One training transcript of ``lang``: ``(text, source)``, never a held-out text."""
    corpus = language_corpus(lang)
    heldout = set(corpus["heldout"]["udhr"]) | set(corpus["heldout"]["everyday"])
    mixture = mixture or TRAIN_MIXTURE
    sources, weights = zip(*mixture.items())
    for _ in range(100):
        source = rng.choices(sources, weights)[0]
        if source == "udhr":
            text = rng.choice(corpus["train"]["udhr"])
        elif source == "cldr":
            text = rng.choice(corpus["train"]["cldr"])
        elif source == "words":
            text = word_sequence(corpus["train"]["words"], lang, rng)
        elif source == "numbers":
            text = number_phrase(lang, rng)
        elif source == "scenes":
            text = scene_captions(lang, rng)
        else:
            raise ValueError(f"draw_text: unknown source {source!r}; expected one of {SOURCES}")
        if text and text not in heldout:
            return text, source
    raise RuntimeError(f"draw_text: no training text for {lang!r} after 100 draws")


# ---------------------------------------------------------------- code-switched ko-en

# Korean frames. {N}/{N2}: an English word, {P}: an English phrase, {E}: an English
# clause, {K}: a Korean clause; ":particle" picks the allomorph after the English word.
_CS_WORD_FRAMES = [
    "오늘 {N} 에서 결과를 발표했다", "어제 {N:을} 다시 확인했다", "이번 주에는 {N:이} 조금 늦어질 것 같다",
    "우리는 새로운 {N:을} 준비하고 있다", "{N:은} 내일까지 끝내야 한다", "담당자가 {N:을} 자세히 설명해 주었다",
    "{N:과} {N2:을} 함께 검토했다", "회의 전에 {N:을} 꼭 보내 주세요", "이 {N:은} 생각보다 훨씬 복잡하다",
    "지난번 {N} 에 대해 질문이 있습니다", "그 {N:은} 정말 유명하다", "나는 {N:을} 좋아한다",
    "요즘 {N:이} 인기가 많다", "{N:을} 어디에서 샀어요", "친구가 {N:을} 추천해 주었다",
    "{N} 때문에 계획이 바뀌었다", "저는 {N:을} 처음 들어 봤어요", "{N:이} 왜 중요한지 설명해 주세요",
    "선생님이 {N:을} 가르쳐 주셨다", "주말에 {N:을} 보러 갔다", "아직 {N:을} 결정하지 못했다",
    "{N:과} 관련된 자료를 찾고 있다", "이번에는 {N:을} 바꿔 보자", "{N:은} 다음 달에 나온다",
]  # fmt: skip
_CS_WORD_FRAMES_HELDOUT = [
    "혹시 {N:을} 가지고 있어요", "동생이 {N:을} 잃어버렸다", "{N:이} 갑자기 사라졌다",
    "회사에서 {N:을} 새로 만들었다", "{N} 이야기를 들었어요", "모두가 {N:을} 기다리고 있다",
    "어머니께서 {N:과} {N2:을} 사 오셨다", "{N:은} 생각만큼 비싸지 않았다",
]  # fmt: skip
_CS_PHRASE_FRAMES = [
    "이 부분은 {P:으로} 처리했다", "다음 주까지 {P:을} 완성해야 한다", "{P} 에 대한 논의가 길어졌다",
    "요즘은 {P:이} 정말 중요하다", "우리 회사는 {P:을} 새로 도입했다", "발표에서 {P:을} 자세히 소개했다",
    "{P:을} 어떻게 생각하세요", "그는 {P} 분야의 전문가다", "오늘 수업의 주제는 {P:이다}",
    "팀원들과 {P:을} 같이 준비했다", "{P:은} 아직 초기 단계이다",
]  # fmt: skip
_CS_PHRASE_FRAMES_HELDOUT = [
    "어제 뉴스에서 {P:을} 다뤘다", "{P:이} 우리 생활을 바꾸고 있다", "학생들이 {P:을} 직접 만들어 보았다",
]  # fmt: skip
_CS_SENTENCE_FRAMES = ["{K} {E}", "{E} {K}", "그는 {E} 라고 말했다", "발표자가 {E} 라고 덧붙였다"]
_CS_SENTENCE_FRAMES_HELDOUT = ["친구가 {E} 라고 물었다", "{K} 그리고 {E}"]

_ADJECTIVES = ["new", "big", "small", "open", "smart", "digital", "global", "local", "public", "simple", "green",
               "fast", "social", "online", "mobile", "real", "free", "main", "final", "short"]  # fmt: skip

_PARTICLES = {  # particle in a frame -> (after vowel, after consonant, after ㄹ)
    "을": ("를", "을", "을"),
    "은": ("는", "은", "은"),
    "이": ("가", "이", "이"),
    "과": ("와", "과", "과"),
    "으로": ("로", "으로", "로"),
    "이다": ("다", "이다", "이다"),
}


def _final_sound(english: str) -> str:
    """"V", "C" or "L": the last sound of an English word as Korean hears it.

    From the Hangul loanword spelling when known, else from the spelling: a final l is
    ㄹ; m, n, ng, and short-vowel k/p/b are kept as a final consonant (북, 톱, 잡);
    everything else gets an epenthetic vowel in Korean (테스트, 케이크) or ends in one.
    """
    from babeltower.datasets.synthetic.speech import LOANWORDS

    last = english.split()[-1]
    hangul = LOANWORDS.get(last)
    if hangul is not None:
        coda = (ord(hangul[-1]) - 0xAC00) % 28
        return "V" if coda == 0 else "L" if coda == 8 else "C"
    if last.endswith("l") or last.endswith("le"):
        return "L"
    if re.search(r"(m|n|ng|[aeiou][kpb]|ck)$", last):
        return "C"
    return "V"


def _fill(frame: str, slots: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        text = slots[match.group(1)]
        particle = match.group(2)
        if not particle:
            return text
        if re.search("[a-z]", text.split()[-1]):
            form = _PARTICLES[particle]["VCL".index(_final_sound(text))]
        else:  # a Korean word: its own final syllable decides
            coda = (ord(text[-1]) - 0xAC00) % 28
            form = _PARTICLES[particle][0 if coda == 0 else 2 if coda == 8 else 1]
        return f"{text} {form}"

    return re.sub(r"\{(N2|N|P|E|K)(?::(\w+))?\}", replace, frame)


@functools.lru_cache(maxsize=None)
def _cs_pools() -> dict[str, dict[str, list[str]]]:
    """English words/phrases/clauses and Korean clauses for ko-en, split train/held-out.

    English words: wordfreq's frequent English words of >= 3 letters that are not
    function words, split by a hash into disjoint train and held-out sets. Loanwords
    (:data:`~babeltower.datasets.synthetic.speech.LOANWORDS`) are in both, as in real
    speech. English clauses: UDHR clauses and word sequences (train) vs the everyday
    sentences (held out); Korean clauses likewise.
    """
    from babeltower.datasets.synthetic.speech import LOANWORDS

    english = frequent_words("en", 6000)[150:]  # past the function words
    english = [w for w in english if len(w) >= 3 and "'" not in w]
    train_words = [w for w in english if _stable_fraction(f"cs:{w}") >= 0.2] + list(LOANWORDS)
    heldout_words = [w for w in english if _stable_fraction(f"cs:{w}") < 0.2] + list(LOANWORDS)
    en, ko = language_corpus("en"), language_corpus("ko")
    return {
        "train": {
            "words": train_words,
            "clauses_en": [c for c in en["train"]["udhr"] if len(c.split()) <= 8],
            "clauses_ko": [c for c in ko["train"]["udhr"] if len(c.split()) <= 6],
        },
        "heldout": {
            "words": heldout_words,
            "clauses_en": en["heldout"]["everyday"],
            "clauses_ko": ko["heldout"]["everyday"],
        },
    }


def _loanword_pairs(text: str) -> list[dict[str, str]]:
    from babeltower.datasets.synthetic.speech import LOANWORDS

    pairs, seen = [], set()
    for word in text.split():
        if word in LOANWORDS and word not in seen:
            seen.add(word)
            pairs.append({"Korean": LOANWORDS[word], "English": word})
    return pairs


def code_switched_text(level: str, rng: random.Random, split: str = "train") -> tuple[str, list[dict[str, str]]]:
    """A Korean–English sentence at one HiKE level, from the training or held-out pools.

    Args:
        level: ``"word"`` (English words in a Korean frame), ``"phrase"`` (an English
            adjective + noun or noun + noun phrase) or ``"sentence"`` (a whole English
            clause beside or inside Korean).
        rng: Source of randomness.
        split: ``"train"`` or ``"heldout"``: disjoint frames and English word sets.

    Returns:
        (text, loanword pairs {"Korean", "English"} of the English words that have one).
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"code_switched_text: split={split!r}; expected 'train' or 'heldout'")
    pools = _cs_pools()[split]
    held = split == "heldout"
    words = pools["words"]
    if level == "word":
        frame = rng.choice(_CS_WORD_FRAMES_HELDOUT if held else _CS_WORD_FRAMES)
        first, second = rng.sample(words, 2)
        text = _fill(frame, {"N": first, "N2": second})
    elif level == "phrase":
        frame = rng.choice(_CS_PHRASE_FRAMES_HELDOUT if held else _CS_PHRASE_FRAMES)
        head = rng.choice(words)
        modifier = rng.choice(_ADJECTIVES) if rng.random() < 0.5 else rng.choice(words)
        extra = f" {rng.choice(words)}" if rng.random() < 0.3 else ""
        text = _fill(frame, {"P": f"{modifier} {head}{extra}"})
    elif level == "sentence":
        frame = rng.choice(_CS_SENTENCE_FRAMES_HELDOUT if held else _CS_SENTENCE_FRAMES)
        text = _fill(frame, {"K": rng.choice(pools["clauses_ko"]), "E": rng.choice(pools["clauses_en"])})
    else:
        raise ValueError(f"code_switched_text: level={level!r}; expected word, phrase or sentence")
    return text, _loanword_pairs(text)


def code_switched_corpus(num: int, split: str, seed: int = 0) -> list[tuple[str, str, list[dict[str, str]]]]:
    """``num`` distinct (text, level, loanwords) ko-en sentences, levels in turn.

    Held-out sentences are drawn until ``num`` distinct ones exist that are not
    training sentences of the same seed's pools (the frames and words already differ).
    """
    rng = random.Random(f"cs:{seed}:{split}")
    levels = ("word", "phrase", "sentence")
    out, seen = [], set()
    attempts = 0
    while len(out) < num:
        attempts += 1
        if attempts > 50 * max(num, 1):
            raise RuntimeError(f"code_switched_corpus: only {len(out)} distinct sentences after {attempts} draws")
        level = levels[len(out) % 3]
        text, loanwords = code_switched_text(level, rng, split)
        if text not in seen:
            seen.add(text)
            out.append((text, level, loanwords))
    return out


#: Chinese character units: the hanzi of wordfreq's this many most frequent words.
ZH_UNIT_WORDS = 5000


def unit_inventory(languages: Iterable[str] = SPEECH_LANGUAGES) -> list[str]:
    """Characters of every training source (never the held-out sets), NFD-decomposed, sorted.

    Used to build the character CTC unit set: held-out texts may hold characters outside
    it (they then count as errors), so the inventory leaks nothing from evaluation.
    """
    chars: set[str] = set()
    rng = random.Random(0)
    for lang in languages:
        corpus = language_corpus(lang)
        pools = corpus["train"].values()
        if lang == "zh":
            # Hanzi: those of the most frequent words only (1,768 characters for 5,000 words
            # instead of 3,281 from every pool): the output layer is half the model's
            # compute at this size. Rarer hanzi in training text become <unk> targets.
            pools = [frequent_words("zh", ZH_UNIT_WORDS)]
        for pool in pools:
            for text in pool:
                chars.update(unicodedata.normalize("NFD", text))
        for _ in range(400):
            chars.update(unicodedata.normalize("NFD", number_phrase(lang, rng) or ""))
            chars.update(unicodedata.normalize("NFD", scene_captions(lang, rng)))
    for text in _cs_pools()["train"]["words"]:
        chars.update(text)
    for frame in _CS_WORD_FRAMES + _CS_PHRASE_FRAMES + _CS_SENTENCE_FRAMES:
        chars.update(unicodedata.normalize("NFD", re.sub(r"\{[^}]*\}", " ", frame)))
    chars.update(unicodedata.normalize("NFD", "".join(p for forms in _PARTICLES.values() for p in forms)))
    chars.discard(" ")
    return sorted(chars) + [" "]
