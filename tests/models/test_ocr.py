"""Text-line recogniser: shapes, backward, padding invariance, attention kernels, strict save/load."""

import json

import pytest
import torch

from babeltower.models.ocr import OCRConfig, OCRModel, ocr_tiny

CHARSET = "abcdefghijklmnopqrstuvwxyz 0123456789مرحبالعد"


def _model(**overrides):
    torch.manual_seed(0)
    return OCRModel(ocr_tiny(charset=CHARSET, **overrides)).eval()


def test_shapes_and_backward():
    model = _model().train()
    images, widths = torch.rand(3, 1, 32, 64), torch.tensor([64, 40, 17])
    log_probs, lengths = model(images, widths)
    assert log_probs.shape == (3, 16, len(CHARSET) + 1)  # 64 px / 4 per frame, blank last
    assert lengths.tolist() == [16, 10, 5]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 16), atol=1e-5)
    log_probs.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_padding_does_not_change_a_line():
    model = _model()
    line = torch.rand(1, 1, 32, 40)
    alone, _ = model(line, torch.tensor([40]))
    padded = torch.zeros(2, 1, 32, 72)
    padded[0, :, :, :40] = line[0]
    padded[1] = torch.rand(1, 32, 72)
    batched, lengths = model(padded, torch.tensor([40, 72]))
    assert lengths[0] == alone.shape[1]
    assert torch.allclose(alone[0], batched[0, : alone.shape[1]], atol=1e-5)


def test_sdpa_equals_math_attention():
    images, widths = torch.rand(2, 1, 32, 48), torch.tensor([48, 30])
    sdpa, _ = _model(attn_backend="sdpa")(images, widths)
    math, _ = _model(attn_backend="math")(images, widths)
    assert torch.allclose(sdpa, math, atol=1e-5)


def test_labels_train_in_visual_order_and_decode_to_logical():
    model = _model()
    text = "عدد 123 لعب abc"  # Arabic, digits and Latin: reading order
    ids, unknown = model.encode_text(text)
    assert unknown == 0
    visual = "".join(CHARSET[i] for i in ids)
    assert visual == "abc بعل 123 ددع"  # as drawn left to right
    assert model.decode_ids(ids) == text
    assert model.encode_text("abc!")[1] == 1  # "!" is not in the charset: counted, dropped


def test_save_load_round_trip_is_strict(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path / "ocr")
    loaded = OCRModel.from_pretrained(tmp_path / "ocr")
    images, widths = torch.rand(2, 1, 32, 48), torch.tensor([48, 30])
    assert torch.equal(model(images, widths)[0], loaded(images, widths)[0])
    assert loaded.config.charset == CHARSET
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tmp_path / "ocr" / "model.safetensors"))
    weights["extra.weight"] = torch.zeros(1)
    save_file(weights, str(tmp_path / "ocr" / "model.safetensors"))
    with pytest.raises(RuntimeError, match="unexpected keys"):
        OCRModel.from_pretrained(tmp_path / "ocr")
    config = json.loads((tmp_path / "ocr" / "config.json").read_text())
    config["colour"] = 1
    (tmp_path / "ocr" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unknown OCRConfig fields"):
        OCRModel.from_pretrained(tmp_path / "ocr")


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="image_height"):
        OCRConfig(charset="ab", image_height=30)
    with pytest.raises(ValueError, match="charset repeats"):
        OCRConfig(charset="aba")
    with pytest.raises(ValueError, match="needs OCRConfig.charset"):
        OCRModel(ocr_tiny())


def test_read_pil_lines():
    from PIL import Image

    model = _model()
    lines = [Image.new("RGB", (120, 30), "white"), Image.new("L", (10, 50), 0), Image.new("RGB", (300, 20), (20, 20, 90))]
    texts = model.read(lines)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)


def test_script_consistent_decode_rewrites_minority_lookalikes_from_the_posteriors():
    """'nраво' (Latin n inside a Cyrillic word) becomes 'право' when п is the frame's best Cyrillic
    letter; an all-Latin word next to it, digits and a tie are left alone."""
    import math

    from babeltower.models.ocr import script_consistent_decode

    charset = "nрaвоп mx1"
    blank = len(charset)
    # frames: n р а в о ␣ m a x ␣ 1 ; 'n' frame prefers Latin n, with п second
    path = ["n", "р", "a", "в", "о", " ", "m", "a", "x", " ", "1"]
    log_probs = torch.full((1, len(path), len(charset) + 1), -20.0)
    for t, ch in enumerate(path):
        log_probs[0, t, charset.index(ch)] = math.log(0.7)
    log_probs[0, 0, charset.index("п")] = math.log(0.2)
    log_probs[0, 2, charset.index("о")] = math.log(0.1)  # Latin 'a' in a Cyrillic word: best Cyrillic is о here
    ids = script_consistent_decode(log_probs, None, blank, charset)[0]
    text = "".join(charset[i] for i in ids)
    assert text == "прово max 1"
    # a tie (one Latin, one Cyrillic letter) is left as read
    tie = torch.full((1, 2, len(charset) + 1), -20.0)
    tie[0, 0, charset.index("n")] = 0.0
    tie[0, 1, charset.index("р")] = 0.0
    assert "".join(charset[i] for i in script_consistent_decode(tie, None, blank, charset)[0]) == "nр"
