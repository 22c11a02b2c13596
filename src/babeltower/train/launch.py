"""LightningCLI for every babeltower system (``babeltower fit|validate|test|predict``).

Systems and DataModules are chosen in the YAML by ``class_path`` (subclass mode), so a new
head needs no change here. The run also gets babeltower's callbacks: the bad-sample
report and the checkpoint written when training stops between periodic checkpoints.
Each system's field docstrings become ``babeltower fit --help`` text (jsonargparse reads
the Google-style ``Args:`` of the class docstring and the ``\"\"\"docstrings\"\"\"`` under
config dataclass fields).
"""

from __future__ import annotations

from typing import Optional


def lightning_cli(args: Optional[list[str]] = None, run: bool = True):
    """Builds and (optionally) runs the LightningCLI; returns it (to reach ``.trainer``)."""
    import lightning as L
    from jsonargparse import set_parsing_settings
    from lightning.pytorch.cli import LightningCLI

    # The """docstring""" under each config dataclass field becomes its --help text.
    set_parsing_settings(docstring_parse_attribute_docstrings=True)

    from babeltower.train.callbacks import BadSampleReport, CheckpointOnStop

    class BabelTowerCLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_lightning_class_args(BadSampleReport, "bad_samples")
            parser.add_lightning_class_args(CheckpointOnStop, "checkpoint_on_stop")

    return BabelTowerCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
