"""VQAv2 soft accuracy against hand-worked values, normalisation, MC extraction, consistency.

The CVQA and shard test-set readers are tested in tests/datasets/test_vqa_testsets.py.
"""

import pytest

from babeltower.eval.vqa import (
    cross_lingual_consistency,
    extract_choice,
    multiple_choice_accuracy,
    normalize_answer,
    process_digit_article,
    process_punctuation,
    summarise,
    vqa_soft_accuracy,
)


# ----------------------------------------------------------------- official VQAv2 procedure
def test_all_ten_agree_with_number_word_prediction():
    # prediction "two" -> processDigitArticle -> "2"; 9 matches in every leave-one-out subset -> 1.
    assert vqa_soft_accuracy("two", ["2"] * 10) == 1.0


def test_two_of_ten_matching_is_point_six():
    # The 2 annotators who said "2": 1 match among the other 9 -> 1/3 each;
    # the 8 others: 2 matches -> 2/3 each; mean = (2/3 + 16/3) / 10 = 0.6.
    assert vqa_soft_accuracy("2", ["2", "2"] + ["3"] * 8) == pytest.approx(0.6)


def test_three_of_ten_matching_is_point_nine_not_one():
    # 3 "yes": each sees 2 others -> 2/3; 7 "no": each sees 3 -> 1; (3*2/3 + 7) / 10 = 0.9.
    assert vqa_soft_accuracy("yes", ["yes"] * 3 + ["no"] * 7) == pytest.approx(0.9)


def test_one_of_ten_matching():
    # The matching annotator sees 0 others -> 0; the 9 others see 1 -> 1/3; 9 * (1/3) / 10 = 0.3.
    assert vqa_soft_accuracy("cat", ["cat"] + ["dog"] * 9) == pytest.approx(0.3)


def test_disagreeing_answers_get_punctuation_processing():
    # Answers differ ("red." vs "red"), so each gets processPunctuation: "red." -> "red".
    assert vqa_soft_accuracy("Red", ["red."] * 5 + ["red"] * 5) == 1.0


def test_identical_answers_are_not_processed_official_quirk():
    # vqaEval only processes human answers when they disagree; identical "Red" stays "Red"
    # while the prediction is lowercased to "red": no match. (VQAv2's released answers are
    # already lowercase, which is why this never bites there.)
    assert vqa_soft_accuracy("red", ["Red"] * 10) == 0.0


def test_article_and_contraction_in_prediction():
    # "The dog" -> "dog". 4 "dog": each sees 3 others -> 1; 6 "cat": each sees 4 -> 1; mean 1.0.
    assert vqa_soft_accuracy("The dog", ["dog"] * 4 + ["cat"] * 6) == 1.0
    assert process_digit_article("The two dogs dont") == "2 dogs don't"


def test_process_punctuation_cases():
    assert process_punctuation("hello, world") == "hello world"  # touches a space: deleted
    assert process_punctuation("a-b") == "a b"  # inside a word: replaced by a space
    assert process_punctuation("1,000") == "1000"  # digit-comma-digit: every listed mark deleted
    assert process_punctuation("3.5") == "3.5"  # a period before a digit stays
    assert process_punctuation("dr. who") == "dr who"


def test_unparseable_prediction_scores_zero_and_empty_answers_fail():
    assert vqa_soft_accuracy(None, ["2"] * 10) == 0.0
    with pytest.raises(ValueError, match="no human answers"):
        vqa_soft_accuracy("2", [])


# ----------------------------------------------------------------- other languages
@pytest.mark.parametrize(
    "text, lang, expected",
    [
        ("Zwei", "de", "2"),
        ("der Kreis", "de", "kreis"),
        ("L'étoile", "fr", "étoile"),
        ("une", "fr", "1"),
        ("¿Sí?", "es", "sí"),
        ("Зелёный", "ru", "зеленый"),
        ("٢", "ar", "2"),
        ("२", "hi", "2"),
        ("두 개", "ko", "2"),
        ("네", "ko", "네"),  # "yes", not the determiner "four"
        ("네 개", "ko", "4"),
        ("两个", "zh", "2"),
        ("红色。", "zh", "红色"),
        ("２つ", "ja", "2"),
        ("二つ", "ja", "2"),
    ],
)
def test_normalize_answer_other_languages(text, lang, expected):
    assert normalize_answer(text, lang) == expected


def test_soft_accuracy_other_language_uses_normalisation():
    # 9 "grün" + 1 "blau": every leave-one-out subset holds >= 8 "grün" -> 1.0.
    assert vqa_soft_accuracy("Grün.", ["grün"] * 9 + ["blau"], "de") == 1.0
    # 2 of 10 match after normalisation ("zwei" == "2"): 0.6 as in English.
    assert vqa_soft_accuracy("2", ["zwei", "2"] + ["drei"] * 8, "de") == pytest.approx(0.6)


# ----------------------------------------------------------------- multiple choice
def test_extract_choice_rules():
    options = ["red", "blue", "green", "yellow"]
    assert extract_choice("B", options) == 1
    assert extract_choice("(c)", options) == 2
    assert extract_choice("Answer: D", options) == 3
    assert extract_choice("The answer is red", options) == 0
    assert extract_choice("Blue.", options) == 1
    assert extract_choice("red or blue", options) is None  # two options named: wrong, no pick
    assert extract_choice("purple", options) is None
    assert extract_choice("", options) is None
    assert extract_choice(None, options) is None
    assert extract_choice("3", options) == 2  # bare option number
    assert extract_choice("2", ["3", "1", "4", "2"]) == 3  # an option that *is* the number wins
    assert extract_choice("図形は赤です", ["青", "赤", "緑", "紫"], "ja") == 1


def test_multiple_choice_accuracy_counts_none_as_wrong():
    assert multiple_choice_accuracy([0, None, 2], [0, 1, 1]) == pytest.approx(1 / 3)


def test_cross_lingual_consistency_hand_worked():
    groups = {"a": {"en": "red", "de": "red", "fr": "blue"}, "b": {"en": "2", "de": "2", "fr": "2"},
              "c": {"en": None, "de": None}}
    out = cross_lingual_consistency(groups)
    # a: 1 of 3 pairs agree; b: all 3; c: None never agrees -> 0. Mean (1/3 + 1 + 0) / 3.
    assert out["pairwise"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert out["all_agree"] == pytest.approx(1 / 3)
    assert out["groups"] == 3


def test_summarise_per_language_and_type():
    records = [
        {"lang": "en", "type": "count", "form": "open", "group": "s1|count-open", "soft_acc": 1.0, "mc_correct": True, "key": "2"},
        {"lang": "de", "type": "count", "form": "open", "group": "s1|count-open", "soft_acc": 0.0, "mc_correct": False, "key": "3"},
        {"lang": "en", "type": "colour", "form": "open", "group": "s1|colour-open", "soft_acc": 0.6, "mc_correct": True, "key": "red"},
        {"lang": "de", "type": "colour", "form": "open", "group": "s1|colour-open", "soft_acc": 1.0, "mc_correct": True, "key": "red"},
    ]
    summary = summarise(records)
    assert summary["per_language"]["en"]["vqa_acc"] == pytest.approx(0.8)
    assert summary["groups"]["question_type"]["count"]["mc_acc"] == 0.5
    assert summary["groups"]["question_type"]["count"]["consistency"] == 0.0
    assert summary["groups"]["question_type"]["colour"]["consistency"] == 1.0
    assert summary["metrics"]["consistency"] == 0.5
