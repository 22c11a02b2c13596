"""scripts/rank_images.py skips unreadable images instead of aborting (issue 16.11)."""

import importlib.util
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

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rank_images.py"


def _setup(tmp_path):
    torch.manual_seed(0)
    config = CLIPConfig(
        vision=VisionConfig(image_size=32, patch_size=8, width=32, layers=1, heads=2),
        text=TextEncoderConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        embed_dim=16,
    )
    hub = save_clip(CLIPModel(config).eval(), tmp_path / "hub")
    images = tmp_path / "images"
    images.mkdir()
    for colour in ("red", "blue", "green"):
        Image.new("RGB", (40, 30), colour).save(images / f"{colour}.png")
    data = (images / "red.png").read_bytes()
    (images / "truncated.png").write_bytes(data[: len(data) // 2])
    (images / "empty.jpg").write_bytes(b"")

    return hub, images


def test_truncated_and_empty_images_are_skipped_counted_and_reported(tmp_path):
    hub, images = _setup(tmp_path)
    spec = importlib.util.spec_from_file_location("rank_images_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    skipped = []
    ranked = module.rank_images(hub, images, "ein roter Kreis", top=10, skipped=skipped)
    assert sorted(path.name for path, _ in ranked) == ["blue.png", "green.png", "red.png"]
    assert sorted(path.name for path, _ in skipped) == ["empty.jpg", "truncated.png"]
    assert all(str(path) in reason for path, reason in skipped)  # each reason names its file


@pytest.mark.reliability
def test_rank_images_script_reports_skips_and_exits_1(tmp_path):
    hub, images = _setup(tmp_path)
    result = subprocess.run([sys.executable, str(SCRIPT), str(hub), str(images), "a red circle"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1  # ranked, but some images were skipped
    assert result.stdout.count(".png") == 3
    assert "skipped 2 unreadable image(s)" in result.stderr and "truncated.png" in result.stderr
    assert "Traceback" not in result.stderr
