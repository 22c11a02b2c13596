"""LightningCLI for every babeltower system (``babeltower fit|validate|test|predict``).

Systems and DataModules are chosen in the YAML by ``class_path`` (subclass mode), so a new
head needs no change here. The run also gets babeltower's callbacks: the bad-sample
report and the checkpoint written when training stops between periodic checkpoints.
Each system's field docstrings become ``babeltower fit --help`` text (jsonargparse reads
the Google-style ``Args:`` of the class docstring and the ``\"\"\"docstrings\"\"\"`` under
config dataclass fields).

Facts the model and the data share (the tokenizer, the image size, ...) are set once, under
``model:``. A system names the DataModule init args its own arguments fix in a static
``linked_data_args(init_args) -> {data field: (model field, value)}``; every field listed in
:data:`LINKED_DATA_FIELDS` is a jsonargparse link (``apply_on="parse"``) from the model
section to ``data.init_args.<field>``, which applies the system's value. A config that
sets one of these data fields to another value than the model's is an error naming both
fields (jsonargparse alone would overwrite it silently); an equal value (for a tokenizer:
a folder with the same ``tokenizer.json``) is accepted.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable, Optional

#: DataModule init args a system may fix through ``linked_data_args`` (each is linked from
#: the model section). A system that fixes a new one adds its name here.
LINKED_DATA_FIELDS: tuple[str, ...] = (
    "tokenizer",  # image-text, VQA, speech: the text encoder's / recognizer's tokenizer
    "image_size",  # image-text, VQA: the vision tower's input side (the UNet's in pixel space)
    "vocab_size",  # speech: the recognizer's CTC vocabulary
    "image_height",  # OCR: the line recognizer's input height
    "max_width",  # OCR: its widest line
    "student_tokenizer",  # parallel text: the distilled student's tokenizer
)


def _plain(value: Any) -> Any:
    """A jsonargparse Namespace as nested dicts (other values unchanged)."""
    return value.as_dict() if hasattr(value, "as_dict") else value


def model_data_links(model: Any) -> dict[str, tuple[str, Any]]:
    """The DataModule fields the model section fixes: ``{field: (model field, value)}``.

    Args:
        model: the parsed ``model`` section (``class_path`` + ``init_args``), a Namespace or dict.

    Returns:
        The system's ``linked_data_args(init_args)``; empty for a system without one.

    Raises:
        ValueError: the system fixes a field that :data:`LINKED_DATA_FIELDS` does not link.
    """
    spec = _plain(model) or {}
    class_path = spec.get("class_path") if isinstance(spec, dict) else None
    if not class_path:
        return {}
    module, _, name = class_path.rpartition(".")
    system = getattr(importlib.import_module(module), name)
    linked = getattr(system, "linked_data_args", None)
    if linked is None:
        return {}
    links = linked(spec.get("init_args") or {})
    unlinked = sorted(set(links) - set(LINKED_DATA_FIELDS))
    if unlinked:
        raise ValueError(
            f"{class_path}.linked_data_args fixes {unlinked}, which babeltower.train.launch.LINKED_DATA_FIELDS "
            "does not link; add them there"
        )
    return links


def _link(field: str) -> Callable[[Any, Any], Any]:
    """compute_fn of the link ``(model, data) -> data.init_args.<field>``."""

    def compute(model, data):
        links = model_data_links(model)
        if field in links:
            return links[field][1]
        # Not fixed by this system: the data's own value stays (a data class without the
        # field ignores the link: jsonargparse skips a target the namespace lacks).
        init_args = (_plain(data) or {}).get("init_args") or {}
        return init_args.get(field)

    compute.__name__ = f"model_{field}"  # `babeltower fit --help` lists "model_tokenizer(model, data) --> ..."
    return compute


def _same(a: Any, b: Any) -> bool:
    """Equal values; paths compare normalised, and two tokenizer folders with the same
    ``tokenizer.json`` agree (a hub's ``tokenizer/`` and ``text_encoder/`` hold one tokenizer)."""
    if isinstance(a, str) and isinstance(b, str):
        if os.path.normpath(a) == os.path.normpath(b):
            return True
        files = [os.path.join(folder, "tokenizer.json") for folder in (a, b)]
        if all(os.path.isfile(f) for f in files):
            with open(files[0], "rb") as first, open(files[1], "rb") as second:
                return first.read() == second.read()
        return False
    return a == b


def _get(tree: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def check_given_data_fields(model: Any, given_data: Any) -> None:
    """Fails when the config gives a linked data field another value than the model's.

    Args:
        model: the parsed ``model`` section.
        given_data: the ``data`` section as the user gave it (no defaults filled in).

    Raises:
        ValueError: naming ``data.init_args.<field>``, the model field that fixes it, and both values.
    """
    given = (_plain(given_data) or {}).get("init_args") or {}
    if not given:
        return
    links = model_data_links(model)
    init_args = (_plain(model) or {}).get("init_args") or {}
    for field, (source, value) in links.items():
        if field in given and not _same(given[field], value):
            source_value = _get(init_args, source)
            where = f"model.init_args.{source}={source_value!r}"
            if not _same(source_value, value):
                where += f" sets it to {value!r}"
            raise ValueError(
                f"data.init_args.{field}={given[field]!r} disagrees with the model: {where}. The data's {field} "
                f"follows the model's (babeltower fit links them); drop data.init_args.{field} from the config, "
                f"or change model.init_args.{source}"
            )


def lightning_cli(args: Optional[list[str]] = None, run: bool = True):
    """Builds and (optionally) runs the LightningCLI; returns it (to reach ``.trainer``)."""
    import lightning as L
    from jsonargparse import Namespace, set_parsing_settings
    from jsonargparse._link_arguments import skip_apply_links
    from lightning.pytorch.cli import LightningCLI

    # The """docstring""" under each config dataclass field becomes its --help text.
    set_parsing_settings(docstring_parse_attribute_docstrings=True)

    from babeltower.train.callbacks import BadSampleReport, CheckpointOnStop

    class BabelTowerCLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_lightning_class_args(BadSampleReport, "bad_samples")
            parser.add_lightning_class_args(CheckpointOnStop, "checkpoint_on_stop")
            for field in LINKED_DATA_FIELDS:
                parser.link_arguments(("model", "data"), f"data.init_args.{field}", compute_fn=_link(field),
                                      apply_on="parse")

        def parse_arguments(self, parser, args):
            super().parse_arguments(parser, args)
            # jsonargparse overwrites a link target inside subclass init_args without a word;
            # what the user gave (a parse without defaults or links) must agree with the model.
            # (skip_apply_links is jsonargparse's own switch, private; the version is pinned.)
            with skip_apply_links():
                if isinstance(args, (dict, Namespace)):
                    given = parser.parse_object(args, defaults=False)
                else:
                    given = parser.parse_args(args, defaults=False)
            subcommand = self.config.get("subcommand")
            if subcommand:
                config, given = self.config[subcommand], given.get(subcommand)
            else:
                config = self.config
            check_given_data_fields(config.get("model"), None if given is None else given.get("data"))

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
