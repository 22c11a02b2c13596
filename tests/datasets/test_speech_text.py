"""babeltower.datasets.synthetic.speech_text: real text sources and held-out sets for speech."""

import random
import re

import pytest

pytest.importorskip("gflanguages")
pytest.importorskip("wordfreq")

from babeltower.datasets.synthetic import speech_text  # noqa: E402
from babeltower.datasets.synthetic.speech import sample_utterances  # noqa: E402
from babeltower.datasets.synthetic.speech_text import (  # noqa: E402
    _zh_number,
    code_switched_corpus,
    code_switched_text,
    language_corpus,
    normalize_transcript,
)


def test_normalize_writes_numbers_out_and_drops_punctuation():
    assert normalize_transcript("Hello, World! 25 apples.", "en") == "hello world twenty five apples"
    assert normalize_transcript("l'homme, dit-il", "fr") == "l'homme dit il"
    assert normalize_transcript("«Привет», 3 раза", "ru") == "привет три раза"
    assert normalize_transcript("مَرْحَبًا بِكُمْ", "ar") == "مرحبا بكم"
    assert normalize_transcript("本を2冊読む。", "ja") == "ほんをにさつよむ"  # kanji -> kana (pykakasi)
    assert normalize_transcript("我有 3 个苹果。", "zh") == "我有三个苹果"
    assert normalize_transcript("मेरे पास 5 सेब", "hi") is None  # no Hindi number speller: never a digit label
    assert normalize_transcript("hello мир", "en") is None  # another script
    assert [_zh_number(n) for n in (7, 10, 20, 110, 1987, 10005)] == ["七", "十", "二十", "一百一十", "一千九百八十七", "一万零五"]
    with pytest.raises(ValueError, match="language 'xx'"):
        normalize_transcript("x", "xx")


@pytest.mark.parametrize("lang", ["en", "ko", "ja"])
def test_heldout_texts_never_in_training_pools(lang):
    corpus = language_corpus(lang)
    heldout = set(corpus["heldout"]["udhr"]) | set(corpus["heldout"]["everyday"])
    assert len(corpus["heldout"]["everyday"]) >= 15 and corpus["heldout"]["udhr"]
    for pool in corpus["train"].values():
        assert heldout.isdisjoint(pool)
    rng = random.Random(0)
    drawn = [speech_text.draw_text(lang, rng) for _ in range(3000)]
    assert heldout.isdisjoint(text for text, _ in drawn)
    assert {source for _, source in drawn} == {"udhr", "cldr", "words", "numbers", "scenes"}
    assert len({text for text, _ in drawn}) > 1500  # mostly distinct: open vocabulary, not a grammar


def test_no_validation_sentence_occurs_in_training():
    languages = ["en", "es", "ko", "ja"]
    train = sample_utterances(4000, "train", languages=languages, seed=0)
    val = sample_utterances(40, "val", languages=languages, seed=0)
    train_texts = {u.text for u in train}
    unseen = [u for u in val if u.group in ("heldout", "code_switched")]
    assert len(unseen) > 100 and {u.group for u in val} == {"scene", "heldout", "code_switched"}
    assert not [u.text for u in unseen if u.text in train_texts]
    assert all(u.group == "train" for u in train)


def test_code_switched_corpus_many_distinct_sentences_per_level():
    heldout = code_switched_corpus(90, "heldout")
    train = code_switched_corpus(600, "train")
    for corpus in (heldout, train):
        levels = [level for _, level, _ in corpus]
        assert {levels.count(level) for level in ("word", "phrase", "sentence")} == {len(corpus) // 3}
        assert len({text for text, _, _ in corpus}) == len(corpus)
        for text, level, loanwords in corpus:
            assert re.search("[\uac00-\ud7a3]", text) and re.search("[a-z]", text), text
            assert text == " ".join(text.split())
            for pair in loanwords:
                assert pair["English"] in text.split()
    assert {t for t, _, _ in heldout}.isdisjoint(t for t, _, _ in train)
    # English words come from a real frequency list, disjoint between the splits (loanwords aside).
    rng = random.Random(1)
    assert len({code_switched_text("word", rng)[0] for _ in range(300)}) > 250
    with pytest.raises(ValueError, match="split='test'"):
        code_switched_text("word", rng, "test")
