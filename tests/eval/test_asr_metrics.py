import random

import jiwer
import pytest
from rapidfuzz.distance import Levenshtein

from babeltower.eval.asr_metrics import (
    apply_loanwords,
    cer,
    cer_no_spaces,
    corpus_mer,
    corpus_pier,
    edit_ops,
    edit_ops_counts,
    english_poi,
    hike_normalize,
    hike_pier,
    hike_tokens,
    mixed_error_rate,
    pier,
    split_latin_from_hangul,
    tagged_poi,
    wer,
)

HIKE_REF = "실험 결과 제안한 algorithm 은 기존 방법 대비 accuracy 가 향상되었으며 computational efficiency 또한 크게 개선되었다"
HIKE_HYP = "실험 결과 제한화 algorithm 은 기존 방법 대비 r curacy 가 향상되었으며 환비테이션을 이펙션 시 또한 크게 개선되었다"

# Alphabet with multi-space, tab, unicode (Hangul, accents, CJK) so the jiwer transforms are exercised.
_ALPHABET = ["a", "b", "c", " ", " ", "  ", "é", "한", "국", "語", "\t"]


def _random_text(rng: random.Random, max_len: int = 14) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, max_len)))


def test_edit_ops_match_rapidfuzz_exactly():
    rng = random.Random(0)
    for _ in range(1000):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 12))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 12))]
        expected = [(op.tag, op.src_pos, op.dest_pos) for op in Levenshtein.editops(a, b)]
        assert edit_ops(a, b) == expected, (a, b)


def test_edit_ops_counts_small():
    assert edit_ops_counts("kitten", "sitting") == (4, 2, 0, 1)
    assert edit_ops_counts([], ["x", "y"]) == (0, 0, 0, 2)
    assert edit_ops_counts(["x", "y"], []) == (0, 0, 2, 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wer_cer_match_jiwer_on_random_corpora(seed):
    rng = random.Random(seed)
    checked = 0
    for _ in range(80):
        refs = [_random_text(rng) for _ in range(rng.randint(1, 5))]
        hyps = ["" if rng.random() < 0.2 else _random_text(rng) for _ in refs]
        words = jiwer.process_words(refs, hyps)
        if sum(map(len, words.references)):
            assert wer(refs, hyps) == pytest.approx(words.wer), (refs, hyps)
            # not just the rate: the same hits/S/D/I split as jiwer (same tie-breaking)
            counts = [edit_ops_counts(r, h) for r, h in zip(words.references, words.hypotheses)]
            assert tuple(map(sum, zip(*counts))) == (words.hits, words.substitutions, words.deletions, words.insertions)
            checked += 1
        chars = jiwer.process_characters(refs, hyps)
        if sum(map(len, chars.references)):
            assert cer(refs, hyps) == pytest.approx(chars.cer), (refs, hyps)
    assert checked > 40


def test_wer_cer_known_values():
    assert cer("a b", "ab") == pytest.approx(1 / 3)
    assert wer("a  b ", " a b") == 0.0  # multiple spaces collapse, ends stripped
    assert wer("a\tb", "a b") == jiwer.wer("a\tb", "a b") == 2.0  # a lone tab is not a word break in jiwer
    assert wer(["the cat sat", "on"], ["the cat", "on the"]) == pytest.approx(2 / 4)  # pooled, not mean


def test_empty_reference_behaviour_matches_jiwer():
    # One empty reference in a corpus: its insertions count, it adds nothing to N.
    assert wer(["", "a b"], ["x", "a b"]) == jiwer.wer(["", "a b"], ["x", "a b"]) == 0.5
    # The whole corpus empty: jiwer returns the raw insertion count.
    assert wer([""], ["x y"]) == jiwer.wer([""], ["x y"]) == 2
    assert cer([""], ["xy"]) == jiwer.cer([""], ["xy"]) == 2
    assert wer([""], [""]) == 0.0
    with pytest.raises(ValueError, match="2 references and 1 hypotheses"):
        wer(["a", "b"], ["a"])


def test_cer_no_spaces():
    assert cer_no_spaces(["今天 天气，很好。"], ["今天天气很好"]) == 0.0
    assert cer_no_spaces(["今天天气"], ["今 天 天 汽"]) == pytest.approx(1 / 4)
    assert cer_no_spaces(["a,b"], ["ab"], remove_punctuation=False) == pytest.approx(1 / 3)
    assert cer(["今天 天气"], ["今天天气"]) == pytest.approx(1 / 5)  # the plain CER counts the space


def test_hike_published_example():
    assert round(mixed_error_rate(HIKE_REF, HIKE_HYP), 2) == 41.18
    # jiwer.mer is the match error rate, a different quantity on the same tokens.
    spaced_ref, spaced_hyp = " ".join(hike_tokens(HIKE_REF)), " ".join(hike_tokens(HIKE_HYP))
    assert len(hike_tokens(HIKE_REF)) == 34
    assert round(100 * jiwer.mer(spaced_ref, spaced_hyp), 2) == 32.56


def test_hike_tokens():
    assert hike_tokens("bug는 ㅋㅋ 2024년  GPU") == ["bug", "는", "ㅋㅋ", "2024", "년", "GPU"]


def test_hike_normalize_matches_hikes_jiwer_pipeline():
    pipeline = jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.ExpandCommonEnglishContractions(),
            jiwer.RemoveKaldiNonWords(),
            jiwer.SubstituteWords({"—": " "}),
            jiwer.RemovePunctuation(),
            jiwer.RemoveWhiteSpace(replace_by_space=True),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
            jiwer.ReduceToSingleSentence(),
            jiwer.ReduceToListOfListOfWords(),
        ]
    )
    samples = [
        "I can't fix the Bug-fix, it's <unk> [noise] broken!",
        "word—word  and — dash,  'Quoted' 한국어 문장입니다.",
        "We're  DONE\tnow; let's go. won't you?",
        "Hello, world! I'm a student.",
        "",
    ]
    for text in samples:
        assert hike_normalize(text) == " ".join(pipeline(text)[0]), text
    assert hike_normalize("The Bug-fix can't WAIT!") == "the bugfix can not wait"
    assert hike_normalize("a—b") == "a b"


def test_loanwords_replace_in_both_texts():
    loans = [{"Korean": "알고리즘", "English": "algorithm"}]
    assert apply_loanwords("새 알고리즘은", loans) == "새 algorithm은"
    assert apply_loanwords("새 알고리즘은", [("알고리즘", "algorithm")]) == "새 algorithm은"
    assert apply_loanwords("새 알고리즘은", '[{"Korean": "알고리즘", "English": "algorithm"}]') == "새 algorithm은"
    assert mixed_error_rate("새 algorithm 은", "새 알고리즘 은", loanwords=loans) == 0.0
    assert mixed_error_rate("새 algorithm 은", "새 알고리즘 은") == pytest.approx(100 * 4 / 3)  # 1 S + 3 I over 3
    with pytest.raises(ValueError, match="'Korean' and 'English'"):
        apply_loanwords("x", [{"ko": "a"}])


def test_mer_normalises_only_the_hypothesis_and_empty_reference():
    assert mixed_error_rate("gpu 를 샀다", "GPU를 샀다.") == 0.0
    assert mixed_error_rate("GPU 를 샀다", "GPU를 샀다") == pytest.approx(100 / 4)  # reference not lowercased
    assert mixed_error_rate("", "네 네") == 200.0  # HiKE: 100 x insertions


def test_corpus_mer_is_mean_per_level():
    items = [
        {"ref": "가 나", "hyp": "가 다", "level": "word"},  # 50
        {"ref": "가 나 다 라", "hyp": "가 나 다 라", "level": "word"},  # 0
        {"ref": "a b", "hyp": "a", "level": "sentence"},  # 50
        {"ref": "가", "hyp": "나 다", "level": "phrase"},  # 200
    ]
    result = corpus_mer(items)
    assert result == pytest.approx({"all": 75.0, "word": 25.0, "sentence": 50.0, "phrase": 200.0})
    with pytest.raises(ValueError, match=r"items\[0\]\['level'\]"):
        corpus_mer([{"ref": "a", "hyp": "a", "level": "para"}])
    with pytest.raises(ValueError, match=r"items\[0\] has no 'hyp'"):
        corpus_mer([{"ref": "a"}])


def test_pier_hand_computed():
    ref = ["나는", "deep", "learning", "을", "좋아해"]
    mask = [False, True, True, False, False]
    # substitution at a POI: 1 / 2
    assert pier(ref, ["나는", "deep", "running", "을", "좋아해"], mask) == 50.0
    # error outside the POIs does not count
    assert pier(ref, ["너는", "deep", "learning", "를", "좋아해"], mask) == 0.0
    # an insertion counts for the reference word it precedes; a deleted POI counts
    short, short_mask = ["나는", "deep", "을"], [False, True, False]
    assert edit_ops(short, ["나는", "uh", "deep", "을"]) == [("insert", 1, 1)]
    assert pier(short, ["나는", "uh", "deep", "을"], short_mask) == 100.0
    assert pier(short, ["나는", "uh", "deep", "을"], [False, False, True]) == 0.0
    assert pier(short, ["나는", "을"], short_mask) == 100.0
    # two POIs, one substituted and one insertion before the other: (1 + 1) / 2
    assert pier(ref, ["나는", "beep", "uh", "learning", "을", "좋아해"], mask) == 100.0
    assert pier(ref, ["나는", "deep", "learning", "을", "좋아해", "요"], mask) == 0.0


def test_pier_insertion_at_end():
    ref, hyp = ["나는", "gpu"], ["나는", "gpu", "um"]
    assert pier(ref, hyp, [False, True]) == 100.0  # last word is a POI: the trailing insertion counts
    assert pier(["gpu", "샀다"], ["gpu", "샀다", "um"], [True, False]) == 0.0
    assert pier(["가"], ["나"], [False]) == 0.0  # no POI


def test_english_poi_and_tags_and_split():
    tokens, mask = english_poi("나는 GPU 2개 iPhone12 를 샀다")
    assert tokens == ["나는", "GPU", "2개", "iPhone12", "를", "샀다"]
    assert mask == [False, True, False, True, False, False]
    assert tagged_poi("나는 <tag machine learning> 을 <tag gpu> 로") == (
        ["나는", "machine", "learning", "을", "gpu", "로"],
        [False, True, True, False, True, False],
    )
    assert split_latin_from_hangul("bug는 fix 2024년 ㅋㅋ abc") == "bug 는 fix 2024 년 ㅋㅋ abc"


def test_split_latin_hangul_class_matches_unicode_script():
    regex = pytest.importorskip("regex")
    from babeltower.eval import asr_metrics

    import re

    ours = re.compile(f"[{asr_metrics._HANGUL_SCRIPT}]")
    theirs = regex.compile(r"\p{Script=Hangul}")
    for cp in range(0x10000):
        ch = chr(cp)
        assert bool(ours.match(ch)) == bool(theirs.match(ch)), hex(cp)


def test_hike_pier_pipeline():
    # "bug는" is split before scoring, so the English word counts as a hit.
    assert hike_pier("이 bug 는 심각하다", "이 Bug는 심각하다.") == 0.0
    assert hike_pier("이 <tag bug> 는 심각하다", "이 버그는 심각하다") == 100.0
    assert hike_pier("이 bug 는 심각하다", "이 버그는 심각하다", loanwords=[("버그", "bug")]) == 0.0
    # HiKE's sentinel: an insertion after a final English word does not count.
    assert hike_pier("나는 gpu", "나는 gpu 음") == 0.0
    result = corpus_pier([
        {"ref": "이 bug 는", "hyp": "이 bug는", "level": "word"},
        {"ref": "the bug 는", "hyp": "a bug 는", "level": "sentence"},
    ])
    assert result == pytest.approx({"all": 25.0, "word": 0.0, "sentence": 50.0})
