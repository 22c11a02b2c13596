"""babeltower.models.text_encoder: tiny XLM-R / BERT encoders on CPU."""

import json

import pytest
import torch

from babeltower.modalities.text import default_tokenizer_path, load_tokenizer, tokenize
from babeltower.models.text_encoder import (
    CONFIG_FILE,
    PROJECTION_WEIGHTS_FILE,
    TextEncoder,
    TextEncoderConfig,
    TextEncoderOutput,
)

TEXTS = ["a red circle above a blue square", "Ein roter Kreis", "красный круг", "赤い丸"]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(default_tokenizer_path())


@pytest.fixture(scope="module")
def batch(tokenizer):
    return tokenize(tokenizer, TEXTS, max_length=32)


def _encoder(seed: int = 0, **fields) -> TextEncoder:
    torch.manual_seed(seed)
    return TextEncoder(TextEncoderConfig(**fields)).eval()


@pytest.mark.parametrize("projection_dim", [None, 16])
def test_output_shapes(batch, projection_dim):
    encoder = _encoder(projection_dim=projection_dim)
    out = encoder(batch["input_ids"], batch["attention_mask"])
    b, t = batch["input_ids"].shape
    assert isinstance(out, TextEncoderOutput)
    assert out.last_hidden_state.shape == (b, t, 32)
    assert out.pooled.shape == (b, 32)
    assert out.embeds.shape == (b, projection_dim or 32)
    assert encoder.embed_dim == (projection_dim or 32)
    assert encoder.backbone.config.vocab_size == 8000
    assert encoder.backbone.config._attn_implementation == "babeltower_sdpa"


@pytest.mark.parametrize("gradient_checkpointing", [False, True])
def test_backward_reaches_every_parameter(batch, gradient_checkpointing):
    encoder = _encoder(projection_dim=8, gradient_checkpointing=gradient_checkpointing, dropout=0.1).train()
    out = encoder(batch["input_ids"], batch["attention_mask"])
    (out.embeds.square().sum() + out.last_hidden_state.mean()).backward()
    no_grad = [n for n, p in encoder.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    # Only embedding rows of unused tokens stay zero; every parameter tensor gets a gradient.
    assert no_grad == []
    assert encoder.text_projection.weight.grad.abs().sum() > 0
    if gradient_checkpointing:
        assert encoder.backbone.is_activation_checkpointing


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_pooling_ignores_padding(tokenizer, pooling):
    encoder = _encoder(pooling=pooling)
    alone = tokenize(tokenizer, ["short text"], max_length=32)
    padded = tokenize(tokenizer, ["short text", "a much longer text that forces lots of padding on the first row"], 32)
    assert padded["input_ids"].shape[1] > alone["input_ids"].shape[1]
    with torch.no_grad():
        expected = encoder(**alone).embeds[0]
        got = encoder(**padded).embeds[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_attention_mask_reaches_the_custom_attention(tokenizer):
    # If transformers dropped the mask for our custom attention, pad tokens would change the
    # real tokens' hidden states; compare against the stock eager implementation.
    encoder = _encoder()
    batch = tokenize(tokenizer, ["hi", "a longer sentence here"], 32)
    with torch.no_grad():
        ours = encoder(**batch).last_hidden_state
        encoder.backbone.set_attn_implementation("eager")
        reference = encoder(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(ours[real], reference[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert"])
def test_sdpa_equals_math_backend(batch, model_type):
    sdpa = _encoder(model_type=model_type, attn_backend="sdpa")
    math = _encoder(seed=1, model_type=model_type, attn_backend="math")
    math.load_state_dict(sdpa.state_dict(), strict=True)
    assert math.backbone.config._attn_implementation == "babeltower_math"
    with torch.no_grad():
        a, b = sdpa(**batch), math(**batch)
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.embeds, b.embeds, atol=1e-5, rtol=1e-5)


def test_bert_model_type_builds(batch):
    encoder = _encoder(model_type="bert", projection_dim=4)
    assert encoder.backbone.config.model_type == "bert"
    assert encoder(**batch).embeds.shape == (len(TEXTS), 4)


def test_xformers_backend_raises_clearly_on_cpu(batch):
    encoder = _encoder(attn_backend="xformers")
    with pytest.raises(RuntimeError, match="xformers.*sdpa"):
        encoder(**batch)


def test_strict_save_load_round_trip(tmp_path, batch, tokenizer):
    encoder = _encoder(projection_dim=16, pooling="cls")
    encoder.save_pretrained(tmp_path, tokenizer=tokenizer)
    assert {p.name for p in tmp_path.iterdir()} >= {
        "config.json", "model.safetensors", CONFIG_FILE, PROJECTION_WEIGHTS_FILE, "tokenizer.json",
        "tokenizer_config.json",
    }
    saved = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert saved["pretrained"] is None and saved["projection_dim"] == 16 and saved["pooling"] == "cls"

    loaded = TextEncoder.from_pretrained(tmp_path)
    assert loaded.config.pooling == "cls" and not loaded.training
    with torch.no_grad():
        expected, got = encoder(**batch), loaded(**batch)
    assert torch.equal(got.last_hidden_state, expected.last_hidden_state)
    assert torch.equal(got.embeds, expected.embeds)
    # The tokenizer travels with the weights.
    assert load_tokenizer(tmp_path)(TEXTS[3])["input_ids"] == tokenizer(TEXTS[3])["input_ids"]
    # Overriding the backend on load keeps the weights.
    math = TextEncoder.from_pretrained(tmp_path, attn_backend="math")
    with torch.no_grad():
        torch.testing.assert_close(math(**batch).embeds, expected.embeds, atol=1e-5, rtol=1e-5)


def test_saved_folder_loads_with_plain_automodel(tmp_path, batch):
    from transformers import AutoModel

    encoder = _encoder()
    encoder.save_pretrained(tmp_path)
    plain = AutoModel.from_pretrained(tmp_path).eval()
    assert plain.config._attn_implementation != "babeltower_sdpa"  # no babeltower needed to load
    with torch.no_grad():
        expected = encoder(**batch).last_hidden_state
        got = plain(**batch).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_load_backbone_builds_no_pooler_the_folder_never_had(tmp_path, batch):
    from transformers import AutoModel

    from babeltower.models.text_encoder import load_backbone

    encoder = _encoder()
    encoder.save_pretrained(tmp_path)
    assert AutoModel.from_pretrained(tmp_path).pooler is not None  # what plain transformers adds, untrained
    backbone = load_backbone(tmp_path).eval()
    assert backbone.pooler is None
    assert set(backbone.state_dict()) == set(encoder.backbone.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(backbone(**batch).last_hidden_state, encoder(**batch).last_hidden_state)
    # a folder that did save a pooler (a stock transformers model) keeps it, trained weights and all
    stock = AutoModel.from_pretrained(tmp_path)
    torch.nn.init.normal_(stock.pooler.dense.weight)
    stock.save_pretrained(tmp_path / "stock")
    again = load_backbone(tmp_path / "stock")
    torch.testing.assert_close(again.pooler.dense.weight, stock.pooler.dense.weight)


def test_from_pretrained_is_strict(tmp_path):
    from safetensors.torch import load_file, save_file

    encoder = _encoder(projection_dim=8)
    encoder.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    name = "encoder.layer.0.attention.self.query.weight"
    removed = weights.pop(name)
    weights["encoder.layer.0.extra.weight"] = removed
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(RuntimeError, match="missing.*query.weight.*unexpected.*extra.weight"):
        TextEncoder.from_pretrained(tmp_path)

    (tmp_path / PROJECTION_WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=PROJECTION_WEIGHTS_FILE):
        TextEncoder.from_pretrained(tmp_path)
    (tmp_path / CONFIG_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=CONFIG_FILE):
        TextEncoder.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"pooling": "max"}, "pooling"),
        ({"hidden_size": 30, "num_attention_heads": 4}, "num_attention_heads"),
        ({"attn_backend": "flash"}, "attn_backend"),
        ({"projection_dim": 0}, "projection_dim"),
        ({"num_hidden_layers": 0}, "num_hidden_layers"),
    ],
)
def test_config_validation_names_the_field(fields, field_name):
    with pytest.raises(ValueError, match=f"TextEncoderConfig.{field_name}"):
        TextEncoderConfig(**fields)


def test_missing_tokenizer_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        TextEncoder(TextEncoderConfig(tokenizer=str(tmp_path)))


def test_encode_convenience(tokenizer):
    encoder = _encoder(projection_dim=8)
    embeds = encoder.encode(TEXTS, tokenizer, max_length=16)
    assert embeds.shape == (len(TEXTS), 8)
    assert not embeds.requires_grad


def test_pretrained_folder_builds_the_same_encoder(tmp_path, batch):
    # `pretrained` takes architecture, weights and (tokenizer=None) tokenizer from the folder.
    source = _encoder(hidden_size=48, num_attention_heads=4)
    source.save_pretrained(tmp_path)
    encoder = TextEncoder(TextEncoderConfig(pretrained=str(tmp_path), attn_backend="math", projection_dim=8)).eval()
    assert encoder.backbone.config.hidden_size == 48 and encoder.embed_dim == 8
    assert encoder.backbone.config._attn_implementation == "babeltower_math"
    with torch.no_grad():
        torch.testing.assert_close(
            encoder(**batch).last_hidden_state, source(**batch).last_hidden_state, atol=1e-5, rtol=1e-5
        )


# --- trainable_layers and the frozen-backbone cache ------------------------------------------


def test_trainable_layers_freeze_all_or_the_lower_layers():
    frozen = _encoder(trainable_layers=0, projection_dim=8)
    assert frozen.backbone_frozen and all(p.requires_grad for p in frozen.text_projection.parameters())
    frozen.train()
    assert frozen.training and not frozen.backbone.training  # no dropout in a frozen backbone
    top = _encoder(trainable_layers=1)
    trainable = {n for n, p in top.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("encoder.layer.1.") for n in trainable)
    assert all(p.requires_grad for p in _encoder().backbone.parameters())  # default: everything trains
    with pytest.raises(ValueError, match="trainable_layers=3 exceeds the backbone's 2 layers"):
        _encoder(trainable_layers=3)
    with pytest.raises(ValueError, match="trainable_layers"):
        TextEncoderConfig(trainable_layers=-2)


def test_frozen_cache_matches_and_stays_bounded(tokenizer):
    encoder = _encoder(trainable_layers=0, projection_dim=8, cache_size=3).train()
    texts = TEXTS + TEXTS[:2]  # 4 distinct, 2 repeated
    batch = tokenize(tokenizer, texts, max_length=32)
    out = encoder(batch["input_ids"], batch["attention_mask"])
    assert len(encoder._cache) == 3 and encoder.cache_misses == 4 and encoder.cache_hits == 2
    encoder.config.cache_size = 0
    direct = encoder(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(out.embeds, direct.embeds, atol=1e-6)
    real = batch["attention_mask"].bool()
    assert torch.allclose(out.last_hidden_state[real], direct.last_hidden_state[real], atol=1e-6)
    out.embeds.sum().backward()  # the projection still learns through cached states
    assert encoder.text_projection.weight.grad is not None
    encoder.config.cache_size = 3
    encoder.apply_trainable_layers(-1)  # unfrozen: the cache is dropped and bypassed
    encoder(batch["input_ids"], batch["attention_mask"])
    assert len(encoder._cache) == 0


def test_prefix_fields_round_trip_and_byte_bpe_prefix_is_refused(tmp_path):
    encoder = _encoder(trainable_layers=1)
    encoder.save_pretrained(tmp_path / "enc")
    saved = json.loads((tmp_path / "enc" / CONFIG_FILE).read_text())
    assert (saved["trainable_layers"], saved["query_prefix"], saved["passage_prefix"]) == (1, "", "")
    assert TextEncoder.from_pretrained(tmp_path / "enc").config.trainable_layers == 1
    # The byte-level BPE glues the space to the next word, so a prefix cannot be spliced in as tokens.
    with pytest.raises(ValueError, match="query_prefix='query: '"):
        _encoder(query_prefix="query: ")


def test_loading_weights_clears_the_cache(tokenizer):
    encoder = _encoder(trainable_layers=0)
    batch = tokenize(tokenizer, TEXTS, max_length=32)
    before = encoder(batch["input_ids"], batch["attention_mask"]).pooled
    other = _encoder(seed=1, trainable_layers=0)
    parent = torch.nn.ModuleDict({"text": encoder})
    parent.load_state_dict({f"text.{k}": v for k, v in other.state_dict().items()})  # as a Lightning checkpoint would
    assert len(encoder._cache) == 0
    after = encoder(batch["input_ids"], batch["attention_mask"]).pooled
    assert torch.allclose(after, other(batch["input_ids"], batch["attention_mask"]).pooled, atol=1e-6)
    assert not torch.allclose(after, before)
    encoder(batch["input_ids"], batch["attention_mask"])
    encoder.backbone.load_state_dict(other.backbone.state_dict())  # the backbone alone (hub.strict_load)
    assert len(encoder._cache) == 0


def test_frozen_autocast_runs_a_frozen_backbone_in_bf16_and_returns_float32(tokenizer):
    batch = tokenize(tokenizer, TEXTS, max_length=32)
    exact = _encoder(trainable_layers=0, cache_size=0)
    fast = _encoder(trainable_layers=0, cache_size=0, frozen_autocast="bfloat16")
    a = exact(batch["input_ids"], batch["attention_mask"]).pooled
    b = fast(batch["input_ids"], batch["attention_mask"]).pooled
    assert b.dtype == torch.float32 and not torch.equal(a, b)  # bf16 arithmetic really ran
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99
    # a backbone that trains is never autocast by this field: exact float32
    trained = _encoder(trainable_layers=-1, frozen_autocast="bfloat16")
    reference = _encoder(trainable_layers=-1)
    assert torch.equal(trained(batch["input_ids"], batch["attention_mask"]).pooled,
                       reference(batch["input_ids"], batch["attention_mask"]).pooled)
    with pytest.raises(ValueError, match="frozen_autocast"):
        TextEncoderConfig(frozen_autocast="int8")


def test_encode_returns_the_pooled_vector_before_a_heads_projection(tokenizer, batch):
    encoder = _encoder(projection_dim=8)
    pooled = encoder.encode(TEXTS, tokenizer, max_length=32, output="pooled")
    embeds = encoder.encode(TEXTS, tokenizer, max_length=32)
    assert pooled.shape == (4, 32) and embeds.shape == (4, 8)
    assert torch.allclose(pooled, encoder(batch["input_ids"], batch["attention_mask"]).pooled, atol=1e-6)
    assert encoder.encode([], tokenizer, output="pooled").shape == (0, 32)
    with pytest.raises(ValueError, match="'embeds' or 'pooled'"):
        encoder.encode(TEXTS, tokenizer, output="hidden")
