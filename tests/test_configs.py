"""Every YAML config shipped in configs/ parses and instantiates with LightningCLI."""

from pathlib import Path

import pytest

CONFIGS = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(c.parents[1])) for c in CONFIGS])
def test_config_parses_and_instantiates(config, tmp_path, monkeypatch):
    from babeltower.cli import lightning_cli

    monkeypatch.chdir(tmp_path)
    cli = lightning_cli(["--config", str(config), "--trainer.logger", "false"], run=False)
    assert cli.model is not None and cli.datamodule is not None
    assert sum(p.numel() for p in cli.model.parameters()) > 0


def test_configs_exist():
    assert any("tiny" in str(c) for c in CONFIGS)
