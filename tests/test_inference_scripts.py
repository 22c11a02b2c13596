"""scripts/rank_images.py and scripts/zero_shot.py on a hub folder written by save_clip."""

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from babeltower.models.clip import CLIPConfig, CLIPModel
from babeltower.models.hub import save_clip
from babeltower.models.text_encoder import TextEncoderConfig
from babeltower.models.vision import VisionConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = REPO_ROOT / "scripts"
# French, Chinese, Arabic: three scripts through the same tokenizer and text tower
LABELS = ["un cercle rouge", "一个蓝色的正方形", "مثلث أخضر"]


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"babeltower_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rank_images():
    return _load_script("rank_images").rank_images


@pytest.fixture(scope="module")
def zero_shot():
    return _load_script("zero_shot").zero_shot


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """An (untrained, seeded) tiny CLIPModel exported as a hub folder."""
    torch.manual_seed(0)
    config = CLIPConfig(
        vision=VisionConfig(image_size=32, patch_size=8, width=32, layers=1, heads=2),
        text=TextEncoderConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        embed_dim=16,
    )
    model = CLIPModel(config).eval()
    folder = save_clip(model, tmp_path_factory.mktemp("hub") / "hub")
    return {"folder": folder, "model": model}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for index, colour in enumerate(["red", "blue", "green", "yellow", "white"]):
        image = Image.new("RGB", (40, 48), colour)
        image.paste((0, 0, 0), (index * 6, 4, index * 6 + 10, 20))  # make them differ in layout too
        image.save(folder / f"{colour}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _expected_scores(model, paths, query):
    """Cosine scores computed here, independently of the script's batching."""
    from babeltower.modalities.image import ImageTransform, decode_image
    from babeltower.modalities.text import default_tokenizer_path, load_tokenizer, tokenize

    tokenizer = load_tokenizer(default_tokenizer_path())
    transform = ImageTransform(32)
    with torch.no_grad():
        scores = {}
        enc = tokenize(tokenizer, [query], max_length=64)
        text = model.encode_text(enc["input_ids"], enc["attention_mask"])[0]
        for path in paths:
            pixels = transform(decode_image(path.read_bytes()))[None]
            scores[path.name] = float(model.encode_image(pixels)[0] @ text)
    return scores


@pytest.mark.parametrize("query", LABELS)
def test_rank_images_returns_top_images_sorted_by_cosine(rank_images, hub, images, query):
    ranked = rank_images(hub["folder"], images, query, top=3)
    assert len(ranked) == 3
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 - 1e-5 <= s <= 1.0 + 1e-5 for s in scores)
    assert all(path.suffix == ".png" and path.parent == images for path, _ in ranked)

    expected = _expected_scores(hub["model"], sorted(images.glob("*.png")), query)
    best = sorted(expected, key=expected.get, reverse=True)[:3]
    assert [path.name for path, _ in ranked] == best
    for path, score in ranked:
        assert score == pytest.approx(expected[path.name], abs=1e-5)

    everything = rank_images(hub["folder"], images, query, top=100)
    assert sorted(path.name for path, _ in everything) == sorted(expected)


def test_rank_images_empty_folder_names_it(rank_images, hub, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match=str(empty)):
        rank_images(hub["folder"], empty, "un cercle rouge")


def test_zero_shot_probabilities_over_three_scripts(zero_shot, hub, images):
    image = images / "red.png"
    result = zero_shot(hub["folder"], image, LABELS)
    assert [label for label, _ in result] == LABELS
    probs = [p for _, p in result]
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 < p < 1.0 for p in probs)
    # the label order does not change any label's probability
    reordered = dict(zero_shot(hub["folder"], image, LABELS[::-1]))
    for label, p in result:
        assert reordered[label] == pytest.approx(p, abs=1e-6)
    # a different image gets different probabilities: the image is actually used
    other = dict(zero_shot(hub["folder"], images / "blue.png", LABELS))
    assert any(abs(other[label] - p) > 1e-6 for label, p in result)
    with pytest.raises(ValueError, match="two labels"):
        zero_shot(hub["folder"], image, LABELS[:1])


def test_zero_shot_script_prints_one_sorted_line_per_label(zero_shot, hub, images):
    image = images / "green.png"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / "zero_shot.py"), str(hub["folder"]), str(image), *LABELS],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=REPO_ROOT,
        env=env,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == len(LABELS), completed.stdout
    printed = {}
    for line in lines:
        percent, label = line.split("%", 1)
        printed[label.strip()] = float(percent) / 100
    assert sorted(printed) == sorted(LABELS)
    values = [float(line.split("%")[0]) for line in lines]
    assert values == sorted(values, reverse=True)
    assert sum(printed.values()) == pytest.approx(1.0, abs=0.002 * len(LABELS))
    expected = dict(zero_shot(hub["folder"], image, LABELS))
    for label, p in printed.items():
        assert p == pytest.approx(expected[label], abs=0.0006)
    assert not math.isnan(sum(values))
