"""VQA model: shapes, backward, fusion attention backends, deterministic answers, strict save/load."""

import json

import pytest
import torch

from babeltower.modalities.text import load_tokenizer_or_default
from babeltower.models.vqa import VQAConfig, VQAModel, vqa_tiny


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer_or_default(None)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    from babeltower.datasets.synthetic.vqa import answer_vocabulary

    return VQAModel(vqa_tiny(answers=answer_vocabulary())).eval()


def _tokens(tokenizer, texts):
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    return batch["input_ids"], batch["attention_mask"]


def test_shapes_and_backward(model, tokenizer):
    model.train()
    ids, mask = _tokens(tokenizer, ["What colour is the shape?", "Сколько фигур на картинке?"])
    pixels = torch.randn(2, 3, 32, 32)
    fused = model(pixels, ids, mask)
    assert fused.shape == (2, model.config.hidden_size)
    logits = model.classify(fused)
    assert logits.shape == (2, len(model.config.answers))
    a_ids, a_mask = _tokens(tokenizer, ["red", "rot", "赤"])
    scores = model.score(fused, model.encode_answers(a_ids, a_mask))
    assert scores.shape == (2, 3)
    (logits.sum() + scores.sum()).backward()
    assert model.vision.vit.conv1.weight.grad is not None and model.text.backbone.embeddings.word_embeddings.weight.grad is not None
    assert model.blocks[0].qkv.weight.grad.abs().sum() > 0
    model.zero_grad()
    model.eval()


def test_shared_image_encoding_matches_repeated_images(model, tokenizer):
    ids, mask = _tokens(tokenizer, ["Where is it?", "Wie viele?", "何色?"])
    pixels = torch.randn(2, 3, 32, 32)
    index = torch.tensor([0, 1, 1])
    with torch.no_grad():
        torch.testing.assert_close(model(pixels, ids, mask, index), model(pixels[index], ids, mask), atol=1e-5, rtol=1e-5)


def test_question_padding_does_not_change_the_answer_vector(model, tokenizer):
    ids, mask = _tokens(tokenizer, ["Where is it?"])
    pixels = torch.randn(1, 3, 32, 32)
    padded_ids = torch.cat([ids, torch.full((1, 5), tokenizer.pad_token_id)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 5, dtype=mask.dtype)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(pixels, ids, mask), model(pixels, padded_ids, padded_mask), atol=1e-5, rtol=1e-5)


def test_sdpa_equals_math_fusion(tokenizer):
    torch.manual_seed(1)
    sdpa = VQAModel(vqa_tiny(attn_backend="sdpa")).eval()
    math_model = VQAModel(vqa_tiny(attn_backend="math")).eval()
    math_model.load_state_dict(sdpa.state_dict())
    ids, mask = _tokens(tokenizer, ["Is the shape red?", "图形在哪里？"])
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(pixels, ids, mask), math_model(pixels, ids, mask), atol=1e-5, rtol=1e-5)


def test_answer_is_deterministic_and_in_the_question_language(model, tokenizer):
    pixels = torch.randn(3, 3, 32, 32)
    questions = ["What colour is it?", "Welche Farbe hat das Objekt?", "図形は何色ですか？"]
    first = model.answer(pixels, questions, tokenizer, langs=["en", "de", "ja"])
    second = model.answer(pixels, questions, tokenizer, langs=["en", "de", "ja"])
    assert [a["answer"] for a in first] == [a["answer"] for a in second]
    for result, lang in zip(first, ["en", "de", "ja"]):
        assert [lang, result["answer"]] in model.config.answers
    for mode in ("score", "classify"):
        mc = model.answer(pixels[:1], questions[:1], tokenizer, langs=["en"], mode=mode,
                          candidates=[["red", "blue", "green", "yellow"]])[0]
        assert mc["index"] in range(4) and mc["answer"] == ["red", "blue", "green", "yellow"][mc["index"]]


def test_classify_cannot_pick_unknown_options(model, tokenizer):
    pixels = torch.randn(1, 3, 32, 32)
    none = model.answer(pixels, ["What is it?"], tokenizer, langs=["en"], mode="classify",
                        candidates=[["sushi", "ramen", "tempura", "udon"]])[0]
    assert none["answer"] is None and none["index"] is None  # counted wrong, never a random pick
    scored = model.answer(pixels, ["What is it?"], tokenizer, langs=["en"], mode="score",
                          candidates=[["sushi", "ramen", "tempura", "udon"]])[0]
    assert scored["answer"] in ("sushi", "ramen", "tempura", "udon")


def test_strict_save_load_round_trip(model, tokenizer, tmp_path):
    model.save_pretrained(tmp_path / "vqa", tokenizer=tokenizer)
    loaded = VQAModel.from_pretrained(tmp_path / "vqa")
    ids, mask = _tokens(tokenizer, ["¿Cuántas figuras hay?"])
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(pixels, ids, mask), loaded(pixels, ids, mask))
    assert loaded.config.answers == model.config.answers
    # an unexpected weight is an error, not a warning
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "vqa" / "model.safetensors"))
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "vqa" / "model.safetensors"))
    with pytest.raises(RuntimeError, match="unexpected keys \\['extra.weight'\\]"):
        VQAModel.from_pretrained(tmp_path / "vqa")
    raw = json.loads((tmp_path / "vqa" / "config.json").read_text())
    raw["colour_head"] = 3
    (tmp_path / "vqa" / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="unknown VQAConfig fields \\['colour_head'\\]"):
        VQAModel.from_pretrained(tmp_path / "vqa")


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="fusion_heads=3 must divide hidden_size=32"):
        vqa_tiny(fusion_heads=3)
    with pytest.raises(ValueError, match="answer_mode must be one of"):
        vqa_tiny(answer_mode="generate")
    with pytest.raises(ValueError, match=r"answers\[0\] must be a \[lang, answer\] pair"):
        vqa_tiny(answers=[["en"]])
    with pytest.raises(ValueError, match="needs a non-empty answers"):
        VQAConfig(answers=[], answer_mode="classify")


def test_answer_groups_share_one_classifier_row_across_languages(tokenizer):
    """[en, red], [fr, rouge] and [ja, 赤] in one group get the same logit: one class, every language."""
    from babeltower.datasets.synthetic.vqa import answer_vocabulary, answer_vocabulary_groups

    vocab = answer_vocabulary()
    groups = answer_vocabulary_groups(vocab)
    assert groups[vocab.index(["fr", "rouge"])] == groups[vocab.index(["en", "red"])] == "red"
    torch.manual_seed(0)
    model = VQAModel(vqa_tiny(answers=vocab, answer_groups=groups)).eval()
    assert model.classifier.out_features == len(set(groups)) < len(vocab)
    ids, mask = _tokens(tokenizer, ["What colour is it?"])
    with torch.no_grad():
        logits = model.classify(model(torch.randn(1, 3, 32, 32), ids, mask))[0]  # (A,)
    red = [i for i, g in enumerate(groups) if g == "red"]
    assert len(red) == 10 and torch.all(logits[red] == logits[red[0]])
    assert not torch.all(logits == logits[0])
    with pytest.raises(ValueError, match="one group per answer"):
        vqa_tiny(answers=vocab, answer_groups=groups[:-1])


def test_global_and_match_tokens_join_the_fusion_and_survive_save_load(tokenizer, tmp_path):
    """The pooled-image and image x question tokens are extra fusion tokens: padding still does not
    change the answer vector, and the weights load back strictly."""
    from babeltower.datasets.synthetic.vqa import answer_vocabulary

    torch.manual_seed(0)
    model = VQAModel(vqa_tiny(answers=answer_vocabulary(), global_image_token=True, match_token=True)).eval()
    plain = VQAModel(vqa_tiny(answers=answer_vocabulary())).eval()
    assert {"global_proj.weight", "match_out.weight"} <= set(model.state_dict())
    assert not {"global_proj.weight", "match_out.weight"} & set(plain.state_dict())
    pixels = torch.randn(1, 3, 32, 32)
    short = _tokens(tokenizer, ["Is it red?"])
    padded = tokenizer(["Is it red?", "What colour are the three large shapes at the top?"], return_tensors="pt",
                       padding=True)
    with torch.no_grad():
        a = model(pixels, *short)
        b = model(pixels.expand(2, -1, -1, -1), padded["input_ids"], padded["attention_mask"])[:1]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path / "vqa", tokenizer=tokenizer)
    loaded = VQAModel.from_pretrained(tmp_path / "vqa")
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels, *short), a)
