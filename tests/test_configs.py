"""Every YAML config shipped in configs/ parses and instantiates with LightningCLI."""

from pathlib import Path

import pytest
import yaml

CONFIGS = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))


def _needs_pretrained(config: Path) -> bool:
    init_args = yaml.safe_load(config.read_text())["model"]["init_args"]
    folders = ("init_from", "init_unet", "init_text_from")  # runs of the main job
    return bool((init_args.get("text") or {}).get("pretrained") or any(init_args.get(k) for k in folders))


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(c.parents[1])) for c in CONFIGS])
def test_config_parses_and_instantiates(config, tmp_path, monkeypatch, request):
    from babeltower.train.launch import lightning_cli

    monkeypatch.chdir(tmp_path)
    teacher = yaml.safe_load(config.read_text())["model"]["init_args"].get("teacher") or {}
    if teacher.get("kind") == "text-encoder":  # the imported e5 teacher: import it (once per session)
        raw = yaml.safe_load(config.read_text())
        raw["model"]["init_args"]["teacher"]["path"] = str(request.getfixturevalue("e5_folder"))
        config = tmp_path / config.name
        config.write_text(yaml.safe_dump(raw))
    asr = yaml.safe_load(config.read_text())["model"]["init_args"].get("asr") or {}
    if asr.get("tokenizer") and not Path(asr["tokenizer"]).is_absolute():
        # The character unit tokenizer that `data synth speech` writes next to the shards
        # (OUT/units): a small one stands in, relative to this test's working folder.
        from babeltower.modalities.speech_units import build_char_tokenizer

        build_char_tokenizer("abc ").save_pretrained(asr["tokenizer"])
    if _needs_pretrained(config):
        # No hub here: keep every other field of the config, build the text encoder from scratch
        # with the default tokenizer (a copy of the config without the pretrained names).
        raw = yaml.safe_load(config.read_text())
        (raw["model"]["init_args"].get("text") or {}).pop("pretrained", None)
        # Runs of the main job (init_from / init_unet folders) do not exist here either.
        for key in ("init_from", "init_unet", "init_text_from"):
            if raw["model"]["init_args"].get(key):
                raw["model"]["init_args"][key] = None
        config = tmp_path / config.name
        config.write_text(yaml.safe_dump(raw))
    args = ["--config", str(config), "--trainer.logger", "false", "--trainer.strategy", "auto"]
    cli = lightning_cli(args, run=False)
    assert cli.model is not None and cli.datamodule is not None
    init_args = yaml.safe_load(config.read_text())["model"]["init_args"]
    # babeltower fit links the data's shared facts to the model's (train/launch.py): no config repeats them
    data_args = yaml.safe_load(config.read_text())["data"]["init_args"]
    assert not set(data_args) & set(cli.model.linked_data_args(init_args)), "set these under model: only"
    if "asr" in init_args:  # speech: transcripts are cut into the recognizer's units
        assert cli.datamodule.tokenizer_path == init_args["asr"].get("tokenizer")
    if "vision" in init_args:  # contrastive: the data's image size follows the tower's
        assert cli.model.model.config.vision.image_size == init_args["vision"]["image_size"]
        assert cli.datamodule.hparams.get("image_size") == init_args["vision"]["image_size"]
    if "unet" in init_args:  # text-to-image: the data's image size is the UNet's sample size
        assert cli.datamodule.hparams.get("image_size") == init_args["unet"]["sample_size"]
    if "student" in init_args:  # distillation: the student projects to the teacher's width
        assert cli.model.student.embed_dim == cli.model.__dict__["teacher"].dim


def test_tiny_configs_exist():
    assert any("tiny" in str(c) for c in CONFIGS)


def test_fit_help_shows_config_field_docstrings(capsys):
    """The docstring under each config dataclass field is its `babeltower fit --help` text."""
    from babeltower.train.launch import lightning_cli

    with pytest.raises(SystemExit) as exit_info:
        lightning_cli(["fit", "--model.help", "babeltower.train.contrastive.ContrastiveSystem"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--model.text.pretrained PRETRAINED HF model name or local folder" in out
    assert "--model.vision.image_size IMAGE_SIZE Input resolution in pixels" in out
