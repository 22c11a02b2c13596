"""Synthetic multilingual VQA: questions, answers, annotators, options, splits, shards and the DataModule."""

import pytest

from babeltower.datasets.synthetic.scenes import LANGUAGES, SceneSpec, heldout_combinations
from babeltower.datasets.synthetic.vqa import (
    ANSWERS,
    NUM_ANNOTATORS,
    NUM_OPTIONS,
    QUESTION_TYPES,
    answer_keys,
    answer_text,
    answer_vocabulary,
    guess_language,
    question_phrasings,
    scene_questions,
    write_vqa_shards,
)
from babeltower.eval.vqa import normalize_answer


SPEC = SceneSpec(shape="star", colour="green", count=2, position="left", size="small", seed=3)


def test_ten_questions_in_every_language_with_answers_in_that_language():
    questions = scene_questions(SPEC, seed=0)
    assert sorted(q["qid"] for q in questions) == sorted(f"{t}-{f}" for t in QUESTION_TYPES for f in ("open", "yesno"))
    for q in questions:
        assert set(q["texts"]) == set(LANGUAGES)
        for lang in LANGUAGES:
            assert q["texts"][lang] in q["paraphrases"][lang]
            assert q["answer"][lang] == answer_text(q["answer_key"], lang)
            assert len(q["answers"][lang]) == NUM_ANNOTATORS == len(q["raw_answers"][lang])
            assert len(q["options"][lang]) == NUM_OPTIONS == len(set(q["options"][lang]))
            assert q["options"][lang][q["label"][lang]] == q["answer"][lang]
    by_id = {q["qid"]: q for q in questions}
    assert by_id["colour-open"]["answer"]["de"] == "grün" and by_id["colour-open"]["answer"]["ja"] == "緑"
    assert by_id["count-open"]["answer"]["ar"] == "2"
    assert by_id["shape-open"]["answer"]["ru"] == "звезда"


def test_grammar_agreement_examples():
    # number agreement with the object count, gender of predicate adjectives, Arabic dual
    assert "Les formes sont-elles vertes ?" in question_phrasings("colour", "yesno", "fr", 2, "green")
    assert "La forme est-elle verte ?" in question_phrasings("colour", "yesno", "fr", 1, "green")
    assert "Фигуры зелёные?" in question_phrasings("colour", "yesno", "ru", 3, "green")
    assert "هل الشكلان صغيران؟" in question_phrasings("size", "yesno", "ar", 2, "small")
    assert "أين الأشكال؟" in question_phrasings("position", "open", "ar", 3)
    # Korean subject particle from the noun's final consonant
    assert "그림에 별이 있나요?" in question_phrasings("shape", "yesno", "ko", 1, "star")
    assert "그림에 하트가 있나요?" in question_phrasings("shape", "yesno", "ko", 1, "heart")
    # German accusative after "gibt es", and a counting question agrees with the asked number
    assert "Gibt es im Bild einen Stern?" in question_phrasings("shape", "yesno", "de", 2, "star")
    assert "क्या चित्र में ठीक दो आकृतियाँ हैं?" in question_phrasings("count", "yesno", "hi", 1, "2")
    assert "क्या चित्र में ठीक एक आकृति है?" in question_phrasings("count", "yesno", "hi", 3, "1")


def test_count_questions_do_not_reveal_the_count():
    for lang in LANGUAGES:
        assert question_phrasings("count", "open", lang, 1) == question_phrasings("count", "open", lang, 3)


def test_annotators_disagree_realistically_and_answers_are_normalised():
    total = agree = 0
    for seed in range(30):
        for q in scene_questions(SPEC, seed=seed, languages=["en", "zh"]):
            for lang in ("en", "zh"):
                assert q["answers"][lang] == [normalize_answer(a, lang) for a in q["raw_answers"][lang]]
                canonical = normalize_answer(q["answer"][lang], lang)
                agree += sum(a == canonical for a in q["answers"][lang])
                total += NUM_ANNOTATORS
    share = agree / total
    assert 0.65 < share < 0.95  # most agree with the canonical answer, not all


def test_yes_no_balanced_and_answer_keys_cover_variants():
    yes = no = 0
    for seed in range(200):
        for q in scene_questions(SPEC, seed=seed, languages=["en"]):
            if q["form"] == "yesno":
                yes += q["answer_key"] == "yes"
                no += q["answer_key"] == "no"
    assert 0.4 < yes / (yes + no) < 0.6
    assert answer_keys("en")["two"] == "2" and answer_keys("de")["violett"] == "purple"


def test_vocabulary_covers_every_language_and_options():
    vocab = answer_vocabulary()
    assert {lang for lang, _ in vocab} == set(LANGUAGES)
    assert ["ko", "네"] in vocab and ["fr", "cœur"] in vocab and ["en", "4"] in vocab
    assert len(vocab) == len({tuple(p) for p in vocab})
    assert set(ANSWERS) == set(LANGUAGES)


@pytest.mark.parametrize(
    "question, lang",
    [("What colour are the shapes?", "en"), ("Welche Farbe haben die Objekte?", "de"),
     ("De quelle couleur sont les formes ?", "fr"), ("¿De qué color es la figura?", "es"),
     ("Какого цвета фигура?", "ru"), ("ما لون الشكل؟", "ar"), ("आकृति किस रंग की है?", "hi"),
     ("도형은 무슨 색인가요?", "ko"), ("图形是什么颜色的？", "zh"), ("図形は何色ですか？", "ja"),
     ("How many triangles do you see in this photo?", "en"), ("¿Cuántos gatos hay?", "es")],
)
def test_guess_language(question, lang):
    assert guess_language(question) == lang


def test_unknown_language_and_type_errors():
    with pytest.raises(ValueError, match="no VQA questions for language 'xx'"):
        question_phrasings("colour", "open", "xx", 1)
    with pytest.raises(ValueError, match="unknown question type"):
        question_phrasings("texture", "open", "en", 1)
    with pytest.raises(ValueError, match="needs a value"):
        question_phrasings("colour", "yesno", "en", 1, "pink")


def test_shards_hold_out_colour_shape_pairs_and_datamodule_batches(tmp_path):
    from babeltower.datasets.pipeline import read_samples, _SkipReport
    from babeltower.datasets.vqa import VQADataModule

    import json

    written = write_vqa_shards(tmp_path, num_train=24, num_val=8, image_size=32, seed=0, samples_per_shard=12,
                               progress=False)
    heldout = heldout_combinations(0)
    for split, expect_heldout in (("train", False), ("val", True)):
        for sample in read_samples([str(p) for p in written[split]], _SkipReport()):
            scene = json.loads(sample["json"])["scene"]
            assert ((scene["colour"], scene["shape"]) in heldout) == expect_heldout
            assert "raw_answers" not in json.loads(sample["json"])["questions"][0]
    dm = VQADataModule(train_shards=str(tmp_path / "train"), val_shards=str(tmp_path / "val"), image_size=32,
                       batch_size=8, samples_per_epoch=16, languages=["de", "ja"], question_types=["count", "shape"])
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["pixel_values"].shape == (8, 3, 32, 32)
    assert batch["input_ids"].shape[0] == 8 and batch["attention_mask"].shape == batch["input_ids"].shape
    assert set(batch["lang"]) <= {"de", "ja"} and set(batch["qtype"]) <= {"count", "shape"}
    assert all(len(a) == NUM_ANNOTATORS for a in batch["answers"]) and all(len(o) == 4 for o in batch["options"])
    multi = VQADataModule(train_shards=str(tmp_path / "train"), image_size=32, batch_size=4, samples_per_epoch=8,
                          questions_per_image=3)
    multi.setup("fit")
    batch = next(iter(multi.train_dataloader()))
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and batch["input_ids"].shape[0] == 12
    assert batch["image_index"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert len(set(zip(batch["key"][:3], batch["qid"][:3]))) == 3  # three different questions of one scene
    val = list(dm.val_dataloader())
    assert sum(len(b["key"]) for b in val) == 8  # one deterministic (question, language) per val scene
    assert [b["question"] for b in val] == [b["question"] for b in dm.val_dataloader()]


def test_corrupt_sample_is_skipped_and_reported(tmp_path, corrupt_tar_member):
    from babeltower.datasets.vqa import VQADataModule

    write_vqa_shards(tmp_path, num_train=6, num_val=0, image_size=32, seed=0, samples_per_shard=10, progress=False)
    shard = next((tmp_path / "train").glob("*.tar"))
    shard.write_bytes(corrupt_tar_member(shard, "00000001.json", b"{not json"))
    dm = VQADataModule(train_shards=str(tmp_path / "train"), image_size=32, batch_size=5, shuffle_buffer=0)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    skipped = [bad for b in batches for bad in b["bad_samples"]]
    assert sum(len(b["key"]) for b in batches) == 5
    assert len(skipped) == 1 and "invalid JSON" in skipped[0]["reason"]
