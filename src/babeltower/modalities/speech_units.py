"""Character CTC units for speech recognition, and text that is valid by construction.

A CTC recognizer over byte-level BPE pieces can emit a byte sequence that is not UTF-8
(half of a Hangul syllable, a lone Devanagari lead byte): the tokenizer then decodes it
to U+FFFD. Two guarantees here:

* :func:`build_char_tokenizer` makes a transformers tokenizer whose units are whole
  Unicode characters after NFD decomposition: Hangul syllables split into their
  conjoining jamo (so ~70 units cover every syllable, open vocabulary), Latin, Cyrillic,
  Arabic and kana letters lose their combining accents into separate marks. Every unit
  is a complete code point, so no output can hold a partial UTF-8 sequence.
* :func:`clean_transcript` is applied to every decoded hypothesis (any unit set): NFC
  recomposition, then removal of whatever cannot stand as a character of text: U+FFFD
  (a byte-level model's partial sequence), conjoining jamo left over after composition
  (a syllable without its vowel), and combining marks with no base letter before them.

The tokenizer is a plain ``PreTrainedTokenizerFast`` (BPE model without merges, so each
character is one token; NFD normaliser; Fuse decoder), saved and loaded like the shared
one: ``tokenizer.save_pretrained(folder)``; ``AutoTokenizer.from_pretrained(folder)``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = ["SPECIAL_TOKENS", "build_char_tokenizer", "clean_transcript", "is_valid_text"]

#: Special tokens, ids 0 and 1; never CTC targets (unknown characters map to <unk>).
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<unk>")

_CONJOINING_JAMO = re.compile("[\u1100-\u11ff\ua960-\ua97f\ud7b0-\ud7ff]")


def build_char_tokenizer(characters: Iterable[str]):
    """A character-level ``PreTrainedTokenizerFast`` over ``characters`` (NFD-decomposed).

    Args:
        characters: The unit inventory; each item one code point (composed characters
            are decomposed and their parts added). A space should be among them.

    Returns:
        The tokenizer: ids 0, 1 are ``<pad>``, ``<unk>``; then the sorted characters.

    Raises:
        ValueError: An item is not a single character.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    units: set[str] = set()
    for item in characters:
        if not isinstance(item, str) or len(item) != 1:
            raise ValueError(f"build_char_tokenizer: {item!r} is not a single character")
        units.update(unicodedata.normalize("NFD", item))
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for char in sorted(units):
        vocab.setdefault(char, len(vocab))
    model = models.BPE(vocab=vocab, merges=[], unk_token="<unk>", fuse_unk=False)
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.NFD()
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>")


def clean_transcript(text: str) -> str:
    """A decoded hypothesis -> NFC text made only of whole characters.

    Drops U+FFFD, conjoining jamo that did not compose into a syllable, and combining
    marks without a base character (at the start or after a space); collapses spaces.
    """
    text = unicodedata.normalize("NFC", text.replace("\ufffd", ""))
    text = _CONJOINING_JAMO.sub("", text)
    chars: list[str] = []
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Mc", "Me"):
            if not chars or chars[-1].isspace():
                continue
        chars.append(char)
    return re.sub(r"\s+", " ", "".join(chars)).strip()


def is_valid_text(text: str) -> bool:
    """True when ``text`` is what :func:`clean_transcript` would leave unchanged (valid, whole characters)."""
    return "\ufffd" not in text and clean_transcript(text) == text
