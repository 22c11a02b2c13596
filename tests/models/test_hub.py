import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from babeltower.models.clip import CLIPConfig, CLIPModel
from babeltower.models.hub import load_clip, save_clip
from babeltower.models.text_encoder import TextEncoderConfig
from babeltower.models.vision import vit_tiny


@pytest.fixture()
def clip():
    torch.manual_seed(0)
    config = CLIPConfig(
        vision=vit_tiny(),
        text=TextEncoderConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
        embed_dim=16,
    )
    return CLIPModel(config).eval()


def _inputs():
    torch.manual_seed(1)
    ids = torch.randint(5, 100, (3, 7))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    return torch.randn(3, 3, 32, 32), ids, mask


def test_round_trip_identical_and_transformers_loadable(clip, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    folder = save_clip(clip, tmp_path / "hub", eval_report={"markdown": "| lang | x |", "languages": ["en", "ko"]})
    for name in ["model_index.json", "config.json", "model.safetensors", "README.md",
                 "vision_model/config.json", "vision_model/model.safetensors", "text_encoder/config.json",
                 "tokenizer/tokenizer.json"]:
        assert (folder / name).exists(), name
    loaded, tokenizer = load_clip(folder)
    pixels, ids, mask = _inputs()
    with torch.no_grad():
        for a, b in zip(clip(pixels, ids, mask), loaded(pixels, ids, mask)):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
        hf = AutoModel.from_pretrained(folder / "text_encoder").eval()
        torch.testing.assert_close(
            hf(input_ids=ids, attention_mask=mask).last_hidden_state,
            clip.text(ids, mask).last_hidden_state,
            atol=1e-5,
            rtol=1e-5,
        )
    assert AutoTokenizer.from_pretrained(folder / "tokenizer")("안녕 world")["input_ids"]
    assert "language:\n- en\n- ko" in (folder / "README.md").read_text()


def test_strict_loading_errors(clip, tmp_path):
    folder = save_clip(clip, tmp_path / "hub")
    weights = load_file(folder / "vision_model" / "model.safetensors")
    weights["extra.weight"] = torch.zeros(1)
    save_file(weights, folder / "vision_model" / "model.safetensors")
    with pytest.raises(RuntimeError, match="unexpected keys \\['extra.weight'\\]"):
        load_clip(folder)
    weights.pop("extra.weight")
    weights.pop("proj")
    save_file(weights, folder / "vision_model" / "model.safetensors")
    with pytest.raises(RuntimeError, match="missing keys \\['proj'\\]"):
        load_clip(folder)
    (folder / "model_index.json").unlink()
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_clip(folder)


def test_refuses_to_overwrite(clip, tmp_path):
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="overwrite"):
        save_clip(clip, tmp_path / "hub")
    assert (tmp_path / "hub" / "mine.txt").read_text() == "user data"


def test_export_overwrite_never_deletes_files_it_did_not_write(tmp_path):
    from babeltower.models.hub import prepare_output_folder

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds files an export does not write .*checkpoints, notes.txt"):
        prepare_output_folder(run, overwrite=True)
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == b"x" and (run / "notes.txt").is_file()


def test_export_overwrite_replaces_an_earlier_export_only(tmp_path):
    import json

    from babeltower.models.hub import prepare_output_folder

    hub = tmp_path / "hub"
    (hub / "asr").mkdir(parents=True)
    (hub / "asr" / "config.json").write_text("{}")
    (hub / "model_index.json").write_text(json.dumps({"_class_name": "ASRModel", "asr": ["babeltower", "ASRModel"]}))
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        prepare_output_folder(hub, overwrite=False)
    assert prepare_output_folder(hub, overwrite=True) == hub
    assert list(hub.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError, match="is a file"):
        prepare_output_folder(tmp_path / "file", overwrite=True)
