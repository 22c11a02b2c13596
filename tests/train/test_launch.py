"""`babeltower fit`'s links: a fact the model and the data share is set once, under model:."""

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from babeltower.cli import main
from babeltower.train.launch import LINKED_DATA_FIELDS, check_given_data_fields, lightning_cli, model_data_links

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRASTIVE = "babeltower.train.contrastive.ContrastiveSystem"
ASR = "babeltower.train.asr.ASRSystem"


@pytest.fixture
def at_repo_root(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)


def _cli(*extra):
    return lightning_cli(["--config", "configs/tiny/contrastive.yaml", "--trainer.logger", "false", *extra], run=False)


def test_data_takes_the_models_value(at_repo_root):
    cli = _cli("--model.init_args.vision.image_size", "48")
    assert cli.config.data.init_args.image_size == 48
    assert cli.datamodule.image_size == 48 and cli.model.model.config.vision.image_size == 48


def test_a_disagreeing_data_value_is_an_error_naming_both_fields(at_repo_root):
    with pytest.raises(ValueError, match=r"data.init_args.image_size=48 disagrees with the model: "
                                         r"model.init_args.vision.image_size=32\. .*drop data.init_args.image_size"):
        _cli("--data.init_args.image_size", "48")
    assert _cli("--data.init_args.image_size", "32").datamodule.image_size == 32  # the same value is no conflict


def test_a_disagreeing_value_in_a_yaml_fails_before_training(tmp_path, capsys, at_repo_root):
    """Through the `babeltower fit` verb: one line naming both fields, exit status 2, nothing trained."""
    raw = yaml.safe_load((REPO_ROOT / "configs/tiny/asr.yaml").read_text())
    raw["model"]["init_args"]["asr"]["vocab_size"] = 500
    raw["data"]["init_args"]["vocab_size"] = 400
    raw["trainer"]["default_root_dir"] = str(tmp_path / "run")
    config = tmp_path / "asr.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["fit", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "data.init_args.vocab_size=400 disagrees with the model: model.init_args.asr.vocab_size=500" in err
    assert not (tmp_path / "run").exists()


def test_print_config_and_help_show_the_link(capsys, at_repo_root):
    with pytest.raises(SystemExit):
        lightning_cli(["fit", "--config", "configs/tiny/contrastive.yaml", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["vision"]["image_size"] == 32
    # a link target is not part of the config: it is derived, so a saved config.yaml re-parses
    assert "image_size" not in printed["data"]["init_args"] and "tokenizer" not in printed["data"]["init_args"]
    with pytest.raises(SystemExit):
        lightning_cli(["fit", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "model_image_size(model, data) --> data.init_args.image_size" in help_text


def test_init_from_sets_the_tokenizer(tmp_path):
    hub = tmp_path / "hub"
    for folder in ("text_encoder", "tokenizer"):
        (hub / folder).mkdir(parents=True)
        (hub / folder / "tokenizer.json").write_text('{"vocab": 1}')
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "tokenizer.json").write_text('{"vocab": 2}')
    model = {"class_path": CONTRASTIVE, "init_args": {"init_from": str(hub), "text": {"tokenizer": None}}}
    assert model_data_links(model)["tokenizer"] == ("init_from", str(hub / "text_encoder"))
    # the hub's tokenizer/ holds the same tokenizer.json as its text_encoder/: no conflict
    check_given_data_fields(model, {"init_args": {"tokenizer": str(hub / "tokenizer")}})
    with pytest.raises(ValueError, match=r"model.init_args.init_from='.*hub' sets it to '.*text_encoder'"):
        check_given_data_fields(model, {"init_args": {"tokenizer": str(tmp_path / "other")}})


def test_speech_fields_follow_the_recognizer():
    model = {"class_path": ASR, "init_args": {"asr": {"tokenizer": "units", "vocab_size": 0}}}
    assert model_data_links(model) == {"tokenizer": ("asr.tokenizer", "units"), "vocab_size": ("asr.vocab_size", 0)}
    with pytest.raises(ValueError, match=r"data.init_args.tokenizer=None disagrees .* model.init_args.asr.tokenizer='units'"):
        check_given_data_fields(model, {"init_args": {"tokenizer": None}})
    check_given_data_fields(model, {"init_args": {"batch_size": 4}})  # fields the model does not fix are free


SYSTEMS = {
    "babeltower.train.contrastive": "ContrastiveSystem", "babeltower.train.t2i": "Text2ImageSystem",
    "babeltower.train.vqa": "VQASystem", "babeltower.train.asr": "ASRSystem", "babeltower.train.ocr": "OCRSystem",
    "babeltower.train.distill": "DistillationSystem",
}
DATAMODULES = {
    "babeltower.datasets.datamodule": "ImageTextDataModule", "babeltower.datasets.vqa": "VQADataModule",
    "babeltower.datasets.speech": "SpeechDataModule", "babeltower.datasets.ocr": "OCRDataModule",
    "babeltower.datasets.bitext": "ParallelTextDataModule",
}


@pytest.mark.parametrize("module,name", SYSTEMS.items())
def test_every_system_links_fields_a_datamodule_has(module, name):
    system = getattr(importlib.import_module(module), name)
    links = system.linked_data_args({})  # the defaults of every argument
    assert links and set(links) <= set(LINKED_DATA_FIELDS)
    params = set()
    for mod, cls in DATAMODULES.items():
        params |= set(inspect.signature(getattr(importlib.import_module(mod), cls)).parameters)
    assert set(links) <= params, set(links) - params
    for source, _ in links.values():
        top = source.split(".")[0]
        assert top in inspect.signature(system).parameters, f"{name}: {source} is not an argument"


def test_speech_fit_takes_the_recognizers_unit_tokenizer(tmp_path, monkeypatch):
    """A real `fit` (2 steps) with the unit tokenizer named only under model.init_args.asr:
    the data cuts transcripts into the same units (the system's own check at fit start passes)."""
    import io
    import json

    import numpy as np
    import soundfile as sf
    import webdataset as wds

    from babeltower.modalities.speech_units import build_char_tokenizer

    build_char_tokenizer("onetw ").save_pretrained(str(tmp_path / "units"))
    (tmp_path / "train").mkdir()
    with wds.TarWriter(str(tmp_path / "train" / "speech-000000.tar")) as sink:
        for index in range(8):
            buffer = io.BytesIO()
            sf.write(buffer, 0.5 * np.sin(np.arange(8000) * (0.05 + 0.01 * index)).astype(np.float32), 16000, format="FLAC")
            text = ("one", "two")[index % 2]
            sink.write({"__key__": f"k{index}", "flac": buffer.getvalue(), "txt": text.encode(),
                        "json": json.dumps({"lang": "en"}).encode()})
    monkeypatch.chdir(REPO_ROOT)
    cli = lightning_cli([
        "fit", "--config", "configs/tiny/asr.yaml", "--model.init_args.asr.tokenizer", str(tmp_path / "units"),
        "--model.init_args.align_weight", "0", "--data.init_args.train_shards", str(tmp_path / "train"),
        "--data.init_args.val_shards", "null", "--data.init_args.batch_size", "4", "--data.init_args.samples_per_epoch", "8",
        "--trainer.max_steps", "2", "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "run"),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ])
    assert cli.trainer.global_step == 2
    assert cli.datamodule.tokenizer_path == str(tmp_path / "units")
    assert cli.datamodule.tokenizer.get_vocab() == cli.model.model.tokenizer.get_vocab()
