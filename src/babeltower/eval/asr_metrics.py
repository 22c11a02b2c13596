"""Speech-recognition metrics as pure functions (no torch).

Conventions follow ../shared/notes/metrics.md and the reference implementations they
name, so numbers compare with published ones:

* ``wer`` / ``cer``: jiwer 4.0 — corpus-pooled (S + D + I) / (H + S + D) with jiwer's
  default transforms. Words: runs of 2+ whitespace characters become one space, the
  text is stripped, then split on the space character only (a lone tab stays inside a
  word, as in jiwer). Characters: strip only; spaces count as characters.
* ``cer_no_spaces``: lmms-eval's CER for zh/ja/yue — whitespace and punctuation removed
  first, then pooled like ``cer``.
* ``mixed_error_rate`` / ``corpus_mer`` / ``hike_pier``: HiKE's Korean–English
  code-switching metrics (github ThetaOne-AI/HiKE, src/metrics/mer.py, src/utils.py,
  src/main.py): per-utterance rates in percent, averaged (not pooled).
* ``pier``: point-of-interest error rate (github enesyugan/PIER-CodeSwitching-Evaluation,
  ``get_idsh``).

Edit operations come from ``edit_ops``, a plain dynamic-programming Levenshtein whose
backtrace breaks ties the way rapidfuzz's ``Levenshtein.editops`` (used by jiwer and
PIER) does, so hit/substitution/deletion/insertion counts — not just their sum — agree
with the reference tools.
"""

from __future__ import annotations

import json
import re
import string
import sys
import unicodedata
from functools import lru_cache
from typing import Hashable, Iterable, Mapping, Sequence

__all__ = [
    "edit_ops",
    "edit_ops_counts",
    "wer",
    "cer",
    "cer_no_spaces",
    "hike_normalize",
    "apply_loanwords",
    "hike_tokens",
    "mixed_error_rate",
    "corpus_mer",
    "pier",
    "english_poi",
    "tagged_poi",
    "split_latin_from_hangul",
    "hike_pier",
    "corpus_pier",
    "CS_LEVELS",
]

CS_LEVELS = ("word", "phrase", "sentence")
"""HiKE's code-switching levels, in the order HiKE reports them."""


# --------------------------------------------------------------------------------------
# Levenshtein with rapidfuzz's tie-breaking


def edit_ops(ref_tokens: Sequence[Hashable], hyp_tokens: Sequence[Hashable]) -> list[tuple[str, int, int]]:
    """Edit operations turning ``ref_tokens`` into ``hyp_tokens``.

    Minimal-cost Levenshtein alignment (substitution, deletion and insertion cost 1).
    Among equal-cost alignments it picks the one rapidfuzz's ``Levenshtein.editops``
    picks: common prefix and suffix are matched first, and the backtrace from the end
    prefers a deletion, then an insertion, then the diagonal.

    Args:
        ref_tokens: Reference tokens (words or characters).
        hyp_tokens: Hypothesis tokens.

    Returns:
        ``(tag, ref_pos, hyp_pos)`` in order, tag one of ``"replace"``, ``"delete"``,
        ``"insert"``. As in rapidfuzz, an insertion's ``ref_pos`` is the reference index
        it is inserted before (``len(ref_tokens)`` at the end). Matches are not listed.
    """
    ref, hyp = list(ref_tokens), list(hyp_tokens)
    # Matching the common affix first is what rapidfuzz does; it changes which of several
    # equal-cost alignments is reported.
    prefix = 0
    while prefix < len(ref) and prefix < len(hyp) and ref[prefix] == hyp[prefix]:
        prefix += 1
    suffix = 0
    while (
        suffix < len(ref) - prefix and suffix < len(hyp) - prefix and ref[len(ref) - 1 - suffix] == hyp[len(hyp) - 1 - suffix]
    ):
        suffix += 1
    a = ref[prefix : len(ref) - suffix]
    b = hyp[prefix : len(hyp) - suffix]
    n, m = len(a), len(b)

    # dist[j][i]: distance between a[:i] and b[:j] (row per hypothesis token, as in
    # rapidfuzz's bit-parallel matrix, so the backtrace conditions read the same).
    dist = [list(range(n + 1))]
    for j in range(1, m + 1):
        prev, row = dist[-1], [j] + [0] * n
        bj = b[j - 1]
        for i in range(1, n + 1):
            row[i] = min(prev[i] + 1, row[i - 1] + 1, prev[i - 1] + (a[i - 1] != bj))
        dist.append(row)

    ops: list[tuple[str, int, int]] = []
    col, row = n, m
    while row and col:
        if dist[row][col] - dist[row][col - 1] == 1:  # rapidfuzz: VP bit set -> delete
            col -= 1
            ops.append(("delete", col + prefix, row + prefix))
            continue
        row -= 1
        if row and dist[row][col] - dist[row][col - 1] == -1:  # VN bit set -> insert
            ops.append(("insert", col + prefix, row + prefix))
            continue
        col -= 1
        if a[col] != b[row]:
            ops.append(("replace", col + prefix, row + prefix))
    while col:
        col -= 1
        ops.append(("delete", col + prefix, row + prefix))
    while row:
        row -= 1
        ops.append(("insert", col + prefix, row + prefix))
    ops.reverse()
    return ops


def edit_ops_counts(ref_tokens: Sequence[Hashable], hyp_tokens: Sequence[Hashable]) -> tuple[int, int, int, int]:
    """Counts of the minimal alignment's operations.

    Args:
        ref_tokens: Reference tokens.
        hyp_tokens: Hypothesis tokens.

    Returns:
        ``(hits, substitutions, deletions, insertions)``; hits + substitutions +
        deletions == len(ref_tokens).
    """
    subs = dels = ins = 0
    for tag, _, _ in edit_ops(ref_tokens, hyp_tokens):
        if tag == "replace":
            subs += 1
        elif tag == "delete":
            dels += 1
        else:
            ins += 1
    return len(ref_tokens) - subs - dels, subs, dels, ins


# --------------------------------------------------------------------------------------
# WER / CER (jiwer 4.0)


def _jiwer_words(text: str) -> list[str]:
    """jiwer's ``wer_default``: RemoveMultipleSpaces, Strip, split on " " dropping empties."""
    return [w for w in re.sub(r"\s\s+", " ", text).strip().split(" ") if w]


def _jiwer_chars(text: str) -> list[str]:
    """jiwer's ``cer_default``: Strip, then every character (spaces included)."""
    return list(text.strip())


def _as_list(texts: str | Sequence[str], name: str) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] is {type(t).__name__}; expected a str")
    return texts


def _pooled_error_rate(references, hypotheses, tokenize) -> float:
    refs = _as_list(references, "references")
    hyps = _as_list(hypotheses, "hypotheses")
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references and {len(hyps)} hypotheses; expected one hypothesis per reference")
    errors = ref_len = insertions = 0
    for ref, hyp in zip(refs, hyps):
        ref_tokens = tokenize(ref)
        _, s, d, i = edit_ops_counts(ref_tokens, tokenize(hyp))
        errors += s + d + i
        insertions += i
        ref_len += len(ref_tokens)
    if ref_len == 0:
        # jiwer 4.0: when the whole corpus has no reference tokens it returns the raw
        # insertion count (0 for silence transcribed as silence), not a rate.
        return float(insertions)
    return errors / ref_len


def wer(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """Word error rate, jiwer 4.0 ``jiwer.wer`` with its default transform.

    Errors and reference words are summed over the corpus before dividing. Empty
    references inside a corpus add their insertions to the errors and nothing to the
    denominator; if every reference is empty the result is the insertion count (jiwer).

    Args:
        references: Reference transcripts (a single str counts as one).
        hypotheses: Hypotheses, one per reference.

    Returns:
        (S + D + I) / (H + S + D) as a fraction (not percent).
    """
    return _pooled_error_rate(references, hypotheses, _jiwer_words)


def cer(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """Character error rate, jiwer 4.0 ``jiwer.cer`` with its default transform.

    Texts are stripped; every other character, spaces included, is a token
    (``cer("a b", "ab") == 1/3``). Pooled over the corpus like :func:`wer`.

    Args:
        references: Reference transcripts.
        hypotheses: Hypotheses, one per reference.

    Returns:
        Pooled character error rate as a fraction.
    """
    return _pooled_error_rate(references, hypotheses, _jiwer_chars)


@lru_cache(maxsize=1)
def _punctuation() -> frozenset[str]:
    # Same set jiwer's RemovePunctuation uses: every code point of category P*.
    return frozenset(chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)).startswith("P"))


def _remove_punctuation(text: str) -> str:
    punct = _punctuation()
    return "".join(ch for ch in text if ch not in punct)


def cer_no_spaces(
    references: str | Sequence[str], hypotheses: str | Sequence[str], remove_punctuation: bool = True
) -> float:
    """CER with whitespace (and punctuation) removed first, lmms-eval style (zh/ja/yue).

    Report it separately from :func:`cer` as "CER, no spaces".

    Args:
        references: Reference transcripts.
        hypotheses: Hypotheses, one per reference.
        remove_punctuation: Also delete Unicode punctuation (categories P*).

    Returns:
        Pooled character error rate over the cleaned texts, as a fraction.
    """

    def chars(text: str) -> list[str]:
        text = "".join(text.split())
        return list(_remove_punctuation(text) if remove_punctuation else text)

    return _pooled_error_rate(references, hypotheses, chars)


# --------------------------------------------------------------------------------------
# HiKE mixed error rate


def _expand_contractions(s: str) -> str:
    # jiwer's ExpandCommonEnglishContractions, which HiKE's normaliser uses; order matters
    # (the specific words before the generic suffixes).
    for pattern, repl in (
        (r"won't", "will not"),
        (r"can\'t", "can not"),
        (r"let\'s", "let us"),
        (r"n\'t", " not"),
        (r"\'re", " are"),
        (r"\'s", " is"),
        (r"\'d", " would"),
        (r"\'ll", " will"),
        (r"\'t", " not"),
        (r"\'ve", " have"),
        (r"\'m", " am"),
    ):
        s = re.sub(pattern, repl, s)
    return s


def hike_normalize(text: str) -> str:
    """HiKE's hypothesis normaliser (src/utils.py ``normalize_text``), step for step.

    Lowercase; expand English contractions (jiwer's list: won't→will not, can't→can
    not, let's→let us, n't→ not, 're→ are, 's→ is, 'd→ would, 'll→ will, 't→ not,
    've→ have, 'm→ am); drop Kaldi non-words (``<unk>``, ``[noise]``); "—" between two
    word characters becomes a space (jiwer SubstituteWords matches it as a whole word);
    delete punctuation (every P* character, so "bug-fix" → "bugfix" and any remaining
    "—" just disappears); ASCII whitespace to spaces; collapse and strip spaces.

    Args:
        text: A raw hypothesis.

    Returns:
        The normalised text, words joined by single spaces.
    """
    s = text.lower()
    s = _expand_contractions(s)
    s = re.sub(r"[<\[][^>\]]*[>\]]", "", s)
    s = re.sub(r"\b—\b", " ", s)
    s = _remove_punctuation(s)
    for ws in string.whitespace:
        s = s.replace(ws, " ")
    return " ".join(_jiwer_words(s))


def _loanword_pairs(loanwords) -> list[tuple[str, str]]:
    if loanwords is None:
        return []
    if isinstance(loanwords, str):  # HiKE stores the list as a JSON string
        loanwords = json.loads(loanwords)
    pairs = []
    for i, item in enumerate(loanwords):
        if isinstance(item, Mapping):
            if "Korean" not in item or "English" not in item:
                raise ValueError(f"loanwords[{i}] = {item!r} needs keys 'Korean' and 'English'")
            pairs.append((item["Korean"], item["English"]))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            pairs.append((item[0], item[1]))
        else:
            raise ValueError(f"loanwords[{i}] = {item!r}; expected {{'Korean': ..., 'English': ...}} or a (korean, english) pair")
    return pairs


def apply_loanwords(text: str, loanwords) -> str:
    """Replaces each loanword's Korean form by its English form (plain substring replace).

    Args:
        text: Reference or hypothesis.
        loanwords: HiKE's per-utterance list: dicts ``{"Korean": ..., "English": ...}``,
            ``(korean, english)`` pairs, a JSON string of the dicts, or None.

    Returns:
        The text with every occurrence replaced, pairs applied in order.
    """
    for korean, english in _loanword_pairs(loanwords):
        if korean:  # "".replace would insert the English form between every character
            text = text.replace(korean, english)
    return text


def hike_tokens(text: str) -> list[str]:
    """MER tokens: each precomposed Hangul syllable alone, other runs split on whitespace.

    HiKE's ``SpaceKoreanChars`` then jiwer's default word split. Compatibility jamo
    (ㅋㅋ) are not syllables and stay whole.

    Args:
        text: Normalised text.

    Returns:
        Tokens in order.
    """
    s = re.sub(r"([\uAC00-\uD7A3])", r" \1 ", text)
    s = re.sub(r"\s+", " ", s).strip()
    return _jiwer_words(s)


def mixed_error_rate(
    reference: str, hypothesis: str, loanwords=None, normalize_hypothesis: bool = True
) -> float:
    """HiKE's per-utterance mixed error rate, in percent.

    Loanwords are substituted in both texts, then only the hypothesis is normalised
    (the reference is the dataset's normalised text), then MER = 100 (S + D + I) / N over
    :func:`hike_tokens`. With an empty reference HiKE returns 100 × insertions.

    Args:
        reference: Normalised reference (HiKE's ``text_normalized``).
        hypothesis: Raw model output.
        loanwords: The utterance's loanword list (see :func:`apply_loanwords`).
        normalize_hypothesis: Apply :func:`hike_normalize` to the hypothesis.

    Returns:
        MER in percent (may exceed 100).
    """
    reference = apply_loanwords(reference, loanwords)
    hypothesis = apply_loanwords(hypothesis, loanwords)
    if normalize_hypothesis:
        hypothesis = hike_normalize(hypothesis)
    ref_tokens = hike_tokens(reference)
    _, s, d, i = edit_ops_counts(ref_tokens, hike_tokens(hypothesis))
    if not ref_tokens:
        return 100.0 * i
    return 100.0 * (s + d + i) / len(ref_tokens)


def _item_field(item: Mapping, index: int, *names: str):
    for name in names:
        if name in item:
            return item[name]
    raise ValueError(f"items[{index}] has no {' / '.join(repr(n) for n in names)} field (keys: {sorted(item)})")


def _mean_by_level(scores: list[float], levels: list[str | None]) -> dict[str, float]:
    result = {"all": sum(scores) / len(scores)}
    for level in CS_LEVELS:
        picked = [s for s, lv in zip(scores, levels) if lv == level]
        if picked:
            result[level] = sum(picked) / len(picked)
    return result


def _levels(items: Sequence[Mapping]) -> list[str | None]:
    levels = []
    for index, item in enumerate(items):
        level = item.get("level", item.get("cs_level"))
        if level is not None and level not in CS_LEVELS:
            raise ValueError(f"items[{index}]['level'] = {level!r}; expected one of {CS_LEVELS} or None")
        levels.append(level)
    return levels


def corpus_mer(items: Iterable[Mapping]) -> dict[str, float]:
    """Mean per-utterance MER overall and per code-switching level (HiKE's report).

    Args:
        items: Mappings with ``ref`` (or ``reference``), ``hyp`` (or ``hypothesis``),
            optional ``level`` (or HiKE's ``cs_level``) in word/phrase/sentence, and
            optional ``loanwords``.

    Returns:
        ``{"all": mean, "word": ..., "phrase": ..., "sentence": ...}`` in percent; a
        level with no items is absent.

    Raises:
        ValueError: No items, a missing field, or an unknown level.
    """
    items = list(items)
    if not items:
        raise ValueError("corpus_mer: no items")
    scores = [
        mixed_error_rate(
            _item_field(item, k, "ref", "reference"), _item_field(item, k, "hyp", "hypothesis"), item.get("loanwords")
        )
        for k, item in enumerate(items)
    ]
    return _mean_by_level(scores, _levels(items))


# --------------------------------------------------------------------------------------
# PIER


def pier(reference_tokens: Sequence[str], hypothesis_tokens: Sequence[str], poi_mask: Sequence[bool]) -> float:
    """Point-of-interest error rate of one utterance, in percent.

    Word-level edit operations (see :func:`edit_ops`); a substitution or deletion counts
    when its reference word is a point of interest, an insertion when the reference word
    it precedes is one, and an insertion after the last reference word only when that
    word is one (PIER's ``get_idsh``). PIER = 100 (S + D + I) / (H + S + D), the
    denominator being the number of points of interest.

    Args:
        reference_tokens: Reference words.
        hypothesis_tokens: Hypothesis words.
        poi_mask: One bool per reference word, True at points of interest.

    Returns:
        PIER in percent; 0.0 when the reference has no point of interest (as PIER does).
    """
    if len(poi_mask) != len(reference_tokens):
        raise ValueError(f"poi_mask has {len(poi_mask)} entries for {len(reference_tokens)} reference tokens; expected one per token")
    num_poi = sum(bool(m) for m in poi_mask)
    if num_poi == 0:
        return 0.0
    n = len(reference_tokens)
    errors = 0
    for _, ref_pos, _ in edit_ops(reference_tokens, hypothesis_tokens):
        if ref_pos < n:
            errors += bool(poi_mask[ref_pos])
        else:  # only insertions point past the end
            errors += bool(poi_mask[-1])
    return 100.0 * errors / num_poi


def _is_latin_letter(ch: str) -> bool:
    return ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN")


def english_poi(reference: str) -> tuple[list[str], list[bool]]:
    """Splits a Korean–English reference into words, marking Latin-script words as POIs.

    A word is a point of interest when it contains a Latin letter ("algorithm", "GPU",
    "iPhone12"); Hangul words and bare digit strings are not.

    Args:
        reference: Reference text.

    Returns:
        ``(tokens, mask)`` with tokens split as jiwer splits words.
    """
    tokens = _jiwer_words(reference)
    return tokens, [any(_is_latin_letter(ch) for ch in tok) for tok in tokens]


def tagged_poi(reference: str) -> tuple[list[str], list[bool]]:
    """Reads PIER's tagged reference format, ``"나는 <tag machine learning> 을 공부"``.

    HiKE's ``text_pier_labeled`` uses it: every word inside ``<tag ...>`` is a point of
    interest.

    Args:
        reference: Tagged reference text.

    Returns:
        ``(tokens, mask)`` with the tags removed.
    """
    tokens: list[str] = []
    mask: list[bool] = []
    pos = 0
    for match in re.finditer(r"<tag\s+([^>]*)>", reference):
        outside = _jiwer_words(reference[pos : match.start()])
        inside = _jiwer_words(match.group(1))
        tokens += outside + inside
        mask += [False] * len(outside) + [True] * len(inside)
        pos = match.end()
    rest = _jiwer_words(reference[pos:])
    return tokens + rest, mask + [False] * len(rest)


# Code points of Unicode's Hangul script (Scripts.txt), for the lookahead of HiKE's
# add_space, which uses the third-party ``regex`` module's \p{Script=Hangul}.
_HANGUL_SCRIPT = (
    "\u1100-\u11ff\u302e\u302f\u3131-\u318e\u3200-\u321e\u3260-\u327e\ua960-\ua97c"
    "\uac00-\ud7a3\ud7b0-\ud7c6\ud7cb-\ud7fb\uffa0-\uffbe\uffc2-\uffc7\uffca-\uffcf"
    "\uffd2-\uffd7\uffda-\uffdc"
)


def split_latin_from_hangul(text: str) -> str:
    """Puts a space between an ASCII letter/digit run and the Hangul that follows it.

    HiKE does this to the hypothesis before PIER so a particle glued to an English
    word does not turn the word into an error: "bug는" → "bug 는".

    Args:
        text: Normalised hypothesis.

    Returns:
        The text with the spaces added.
    """
    return re.sub(rf"([A-Za-z0-9]+)(?=[{_HANGUL_SCRIPT}])", r"\1 ", text)


# HiKE appends this non-POI word to both texts so PIER always has a "rest" region; a
# side effect is that insertions after the last real word never count.
_HIKE_PIER_SENTINEL = "뷁"


def hike_pier(reference: str, hypothesis: str, loanwords=None, normalize_hypothesis: bool = True) -> float:
    """PIER of the English words of one utterance, computed as HiKE's main.py does.

    Loanwords substituted in both texts; the hypothesis normalised and
    :func:`split_latin_from_hangul`; points of interest from ``<tag ...>`` markup when
    the reference has it (HiKE's ``text_pier_labeled``), else the Latin-script words
    (:func:`english_poi`); HiKE's sentinel word appended to both (its ``pier_fixed``).

    Args:
        reference: Reference, tagged or plain.
        hypothesis: Raw model output.
        loanwords: The utterance's loanword list.
        normalize_hypothesis: Apply :func:`hike_normalize` to the hypothesis.

    Returns:
        PIER in percent.
    """
    reference = apply_loanwords(reference, loanwords)
    hypothesis = apply_loanwords(hypothesis, loanwords)
    if normalize_hypothesis:
        hypothesis = hike_normalize(hypothesis)
    hypothesis = split_latin_from_hangul(hypothesis)
    ref_tokens, mask = tagged_poi(reference) if "<tag" in reference else english_poi(reference)
    hyp_tokens = _jiwer_words(hypothesis)
    return pier(ref_tokens + [_HIKE_PIER_SENTINEL], hyp_tokens + [_HIKE_PIER_SENTINEL], mask + [False])


def corpus_pier(items: Iterable[Mapping]) -> dict[str, float]:
    """Mean per-utterance :func:`hike_pier` overall and per code-switching level.

    Args:
        items: As for :func:`corpus_mer`; ``ref_pier`` (HiKE's tagged reference) is used
            instead of ``ref`` when present.

    Returns:
        ``{"all": mean, "word": ..., ...}`` in percent; a level with no items is absent.
    """
    items = list(items)
    if not items:
        raise ValueError("corpus_pier: no items")
    scores = [
        hike_pier(
            _item_field(item, k, "ref_pier", "ref", "reference"),
            _item_field(item, k, "hyp", "hypothesis"),
            item.get("loanwords"),
        )
        for k, item in enumerate(items)
    ]
    return _mean_by_level(scores, _levels(items))

