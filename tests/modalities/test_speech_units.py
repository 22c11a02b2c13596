"""babeltower.modalities.speech_units: whole-character CTC units and valid decoded text."""

import unicodedata

import pytest

from babeltower.modalities.speech_units import build_char_tokenizer, clean_transcript, is_valid_text

TEXTS = ["왼쪽에 큰 빨간 원", "niño élan", "हम कल बाज़ार जाएँगे", "がっこうへいく", "今天天气很好", "مرحبا بكم", "ёлка"]


def test_char_tokenizer_round_trips_every_script_with_few_units():
    tokenizer = build_char_tokenizer(sorted(set("".join(TEXTS))))
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert len(ids) == len(unicodedata.normalize("NFD", text))
        assert clean_transcript(tokenizer.decode(ids)) == text
    # Hangul is decomposed into jamo: any syllable of those jamo is representable.
    assert tokenizer.unk_token_id not in tokenizer("빨", add_special_tokens=False)["input_ids"]
    assert tokenizer("x", add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id]
    with pytest.raises(ValueError, match="not a single character"):
        build_char_tokenizer(["ab"])


def test_clean_transcript_drops_partial_characters():
    assert clean_transcript("ab\ufffdc") == "abc"
    assert clean_transcript(unicodedata.normalize("NFD", "한국") + "\u1100") == "한국"  # orphan initial jamo
    assert clean_transcript("\u1161\u11a8 가") == "가"  # a vowel and a final without an initial
    assert clean_transcript("\u0301e  \u093e") == "e"  # combining marks without a base
    assert clean_transcript("ने") == "ने" and clean_transcript(unicodedata.normalize("NFD", "é")) == "é"
    assert is_valid_text("한국 é") and not is_valid_text("a\ufffd") and not is_valid_text("\u1100")
