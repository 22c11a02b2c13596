"""The ``babeltower`` command.

Training verbs come from LightningCLI (``fit``, ``validate``, ``test``, ``predict``,
with ``--config`` YAML of ``class_path``/``init_args``); the other verbs are tools:

    babeltower fit --config configs/tiny/contrastive.yaml
    babeltower data write SOURCE OUT            # JSONL manifest or folder -> tar shards
    babeltower data synth scenes OUT            # synthetic multilingual scenes
    babeltower data tokenizer OUT --from-scenes # train a multilingual tokenizer
    babeltower eval retrieval MODEL --shards SPEC --out DIR
    babeltower export CKPT OUT                  # Lightning checkpoint -> hub folder
    babeltower demo contrastive                 # the main job: data, fit, eval, export
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

TOOL_VERBS = ("data", "eval", "export", "demo")


# --------------------------------------------------------------------------- LightningCLI
def lightning_cli(args: Optional[list[str]] = None, run: bool = True):
    """Builds and (optionally) runs the LightningCLI; returns it (to reach ``.trainer``)."""
    from lightning.pytorch.cli import LightningCLI

    import lightning as L
    from babeltower.train.callbacks import BadSampleReport

    class BabelTowerCLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_lightning_class_args(BadSampleReport, "bad_samples")

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


# --------------------------------------------------------------------------- model loading
def load_system_from_checkpoint(ckpt_path: str | Path):
    """Loads a babeltower LightningModule from a ``.ckpt``, whatever its task."""
    import torch

    from babeltower.train.contrastive import ContrastiveSystem

    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt_path} does not exist")
    hparams = torch.load(ckpt_path, map_location="cpu", weights_only=True).get("hyper_parameters", {})
    class_path = hparams.get("_class_path", "babeltower.train.contrastive.ContrastiveSystem")
    systems = {"babeltower.train.contrastive.ContrastiveSystem": ContrastiveSystem}
    if class_path not in systems:
        raise ValueError(f"{ckpt_path}: unknown system {class_path!r}; babeltower knows {sorted(systems)}")
    return systems[class_path].load_from_checkpoint(ckpt_path, map_location="cpu")


def load_clip_any(path: str | Path):
    """A CLIPModel and its tokenizer from a hub folder or a Lightning checkpoint."""
    from babeltower.modalities.text import load_tokenizer
    from babeltower.models.hub import load_clip

    path = Path(path)
    if path.is_dir():
        return load_clip(path)
    system = load_system_from_checkpoint(path)
    from babeltower.modalities.text import default_tokenizer_path

    tokenizer = system.model.text.config.tokenizer or system.model.text.config.pretrained or default_tokenizer_path()
    return system.model.eval(), load_tokenizer(tokenizer)


# --------------------------------------------------------------------------- verbs
def cmd_data(args) -> int:
    if args.data_verb == "write":
        from babeltower.datasets.writer import write_dataset

        paths = write_dataset(
            args.source,
            args.out,
            prefix=args.prefix,
            max_count=args.max_count,
            max_size_mb=args.max_size_mb,
            overwrite=args.overwrite,
        )
        print(f"wrote {len(paths)} shard(s) to {args.out}")
        return 0
    if args.data_verb == "synth":
        if args.kind == "scenes":
            from babeltower.datasets.synthetic.scenes import write_scene_shards

            splits = write_scene_shards(
                args.out,
                num_train=args.num_train,
                num_val=args.num_val,
                image_size=args.image_size,
                languages=args.languages.split(",") if args.languages else None,
                seed=args.seed,
                samples_per_shard=args.samples_per_shard,
                overwrite=args.overwrite,
            )
            for split, paths in splits.items():
                print(f"{split}: {len(paths)} shard(s) in {Path(args.out) / split}")
            return 0
    if args.data_verb == "tokenizer":
        from babeltower.modalities.text import train_tokenizer

        texts: list[str] = []
        for file in args.text or []:
            texts.extend(line.rstrip("\n") for line in open(file, encoding="utf-8") if line.strip())
        if args.from_scenes:
            from babeltower.datasets.synthetic.scenes import caption_corpus

            texts.extend(caption_corpus())
        if not texts:
            raise SystemExit("babeltower data tokenizer: give --text FILE (one sentence a line) and/or --from-scenes")
        out = Path(args.out)
        if out.exists() and any(out.iterdir()) and not args.overwrite:
            raise SystemExit(f"{out} exists and is not empty; pass --overwrite to replace it")
        tokenizer = train_tokenizer(texts, vocab_size=args.vocab_size)
        tokenizer.save_pretrained(out)
        print(f"tokenizer with {len(tokenizer)} tokens trained on {len(texts)} texts -> {out}")
        return 0
    raise SystemExit(f"unknown data verb {args.data_verb}")


def build_eval_batches(shards, image_size: int, tokenizer, batch_size: int, num_workers: int = 0):
    """A single ordered pass over evaluation shards as batches for the evaluators."""
    from babeltower.datasets.datamodule import ImageTextDataModule

    dm = ImageTextDataModule(
        train_shards=shards,
        val_shards=shards,
        tokenizer=tokenizer,
        image_size=image_size,
        batch_size=batch_size,
        num_workers=num_workers,
    )
    dm.setup("validate")
    return dm.val_dataloader()


def scene_label_prompts(languages):
    """Zero-shot label prompts for scene attributes: a prompt ensemble per value and language."""
    from babeltower.datasets.synthetic.scenes import ATTRIBUTES, attribute_prompt_ensemble
    from babeltower.eval.retrieval import prompts_from_function

    return prompts_from_function(ATTRIBUTES, languages, attribute_prompt_ensemble)


def run_retrieval_eval(model_path, shards, out_dir, *, languages=None, pool_size=20, batch_size=128, num_workers=0):
    """Evaluates a hub folder or checkpoint on shards; writes the report; returns (report, paths)."""
    import torch

    from babeltower.eval.retrieval import evaluate_retrieval, write_retrieval_report

    import tempfile

    from babeltower.datasets.synthetic.scenes import LANGUAGES

    model, tokenizer = load_clip_any(model_path)
    # A context, not torch.set_grad_enabled(False): that would switch autograd off for
    # the rest of the process (e.g. training after evaluation in the same Python session).
    with torch.no_grad(), tempfile.TemporaryDirectory() as tokenizer_dir:
        tokenizer.save_pretrained(tokenizer_dir)  # the DataModule takes a tokenizer folder
        batches = build_eval_batches(shards, model.config.vision.image_size, tokenizer_dir, batch_size, num_workers)
        report = evaluate_retrieval(
            model,
            tokenizer,
            batches,
            languages=languages,
            label_prompts=scene_label_prompts(languages or LANGUAGES),
            pool_size=pool_size,
        )
    report["model"] = str(model_path)
    report["shards"] = shards
    return report, write_retrieval_report(report, out_dir)


def cmd_eval(args) -> int:
    if args.task == "retrieval":
        report, paths = run_retrieval_eval(
            args.model,
            args.shards,
            args.out,
            languages=args.languages.split(",") if args.languages else None,
            pool_size=args.pool_size,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
        )
        print(report["markdown"])
        print("\n".join(f"{kind}: {path}" for kind, path in paths.items()))
        return 0
    raise SystemExit(f"unknown eval task {args.task}")


def cmd_export(args) -> int:
    system = load_system_from_checkpoint(args.ckpt)
    report = json.loads(Path(args.eval_report).read_text()) if args.eval_report else None
    folder = system.export_hub(args.out, eval_report=report, overwrite=args.overwrite)
    print(f"exported {args.ckpt} -> {folder}")
    return 0


def _last_checkpoint(root: Path) -> Path:
    ckpts = sorted(root.rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise FileNotFoundError(f"no checkpoint was written under {root}")
    return ckpts[-1]


def cmd_demo(args) -> int:
    """The main job: synthetic data -> fit -> eval -> export, printing where everything is."""
    if args.task != "contrastive":
        raise SystemExit(f"unknown demo task {args.task}; available: contrastive")
    from babeltower.datasets.synthetic.scenes import write_scene_shards

    work = Path(args.workdir)
    data = work / "data" / "scenes"
    run_dir = work / "contrastive"
    if run_dir.exists() and any(run_dir.iterdir()) and not args.overwrite:
        raise SystemExit(f"{run_dir} already holds a run; pass --overwrite to replace it, or choose --workdir")
    started = time.time()
    if not (data / "train").exists() or args.overwrite:
        print(f"[1/4] writing synthetic multilingual scenes to {data}")
        write_scene_shards(
            data,
            num_train=args.num_train,
            num_val=args.num_val,
            image_size=args.image_size,
            seed=0,
            samples_per_shard=2000,
            overwrite=True,
        )
    else:
        print(f"[1/4] reusing scenes in {data}")
    print(f"[2/4] training ({args.config})")
    overrides = [
        "fit",
        "--config",
        args.config,
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.logger.init_args.save_dir",  # the demo configs log with CSVLogger
        str(run_dir),
        "--data.init_args.train_shards",
        str(data / "train"),
        "--data.init_args.val_shards",
        str(data / "val"),
    ]
    if args.max_steps:
        overrides += ["--trainer.max_steps", str(args.max_steps)]
    lightning_cli(overrides)
    ckpt = _last_checkpoint(run_dir)
    print(f"[3/4] evaluating {ckpt}")
    report, paths = run_retrieval_eval(ckpt, str(data / "val"), run_dir / "eval")
    print(report["markdown"])
    print(f"[4/4] exporting hub folder")
    hub = load_system_from_checkpoint(ckpt).export_hub(run_dir / "hub", eval_report=report, overwrite=True)
    minutes = (time.time() - started) / 60
    print(f"\nmain job done in {minutes:.1f} min")
    print(f"  checkpoint : {ckpt}")
    print(f"  hub folder : {hub}")
    for kind, path in paths.items():
        print(f"  report {kind:<5}: {path}")
    return 0


def build_tool_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="babeltower", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)

    data = sub.add_parser("data", help="write, synthesise and tokenise data").add_subparsers(dest="data_verb", required=True)
    write = data.add_parser("write", help="JSONL manifest or folder -> webdataset tar shards")
    write.add_argument("source", help="a .jsonl manifest ({image|audio, text, lang, ...} per line) or a folder")
    write.add_argument("out", help="output folder for the shards")
    write.add_argument("--prefix", default="shard")
    write.add_argument("--max-count", type=int, default=1000, help="samples per shard")
    write.add_argument("--max-size-mb", type=float, default=256.0, help="maximum shard size")
    write.add_argument("--overwrite", action="store_true", help="replace existing shards")

    synth = data.add_parser("synth", help="generate synthetic multilingual data")
    synth.add_argument("kind", choices=["scenes"])
    synth.add_argument("out")
    synth.add_argument("--num-train", type=int, default=20000)
    synth.add_argument("--num-val", type=int, default=1000)
    synth.add_argument("--image-size", type=int, default=64)
    synth.add_argument("--languages", default=None, help="comma-separated codes (default: all)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--samples-per-shard", type=int, default=1000)
    synth.add_argument("--overwrite", action="store_true")

    tok = data.add_parser("tokenizer", help="train a multilingual byte-fallback tokenizer")
    tok.add_argument("out")
    tok.add_argument("--text", nargs="*", help="text files, one sentence a line")
    tok.add_argument("--from-scenes", action="store_true", help="add the synthetic scene caption corpus")
    tok.add_argument("--vocab-size", type=int, default=8000)
    tok.add_argument("--overwrite", action="store_true")

    ev = sub.add_parser("eval", help="evaluate a model").add_subparsers(dest="task", required=True)
    ret = ev.add_parser("retrieval", help="image<->text R@k and zero-shot accuracy per language")
    ret.add_argument("model", help="hub folder (babeltower export) or Lightning .ckpt")
    ret.add_argument("--shards", required=True, help="evaluation shards (folder, brace pattern, pipe:)")
    ret.add_argument("--out", required=True, help="report folder")
    ret.add_argument("--languages", default=None)
    ret.add_argument("--pool-size", type=int, default=20)
    ret.add_argument("--batch-size", type=int, default=128)
    ret.add_argument("--num-workers", type=int, default=0)

    exp = sub.add_parser("export", help="Lightning checkpoint -> hub folder")
    exp.add_argument("ckpt")
    exp.add_argument("out")
    exp.add_argument("--eval-report", default=None, help="JSON report to put in the model card")
    exp.add_argument("--overwrite", action="store_true")

    demo = sub.add_parser("demo", help="the main job: synthetic data, training, evaluation, export")
    demo.add_argument("task", choices=["contrastive"])
    demo.add_argument("--workdir", default="runs/demo")
    demo.add_argument("--config", default="configs/tiny/contrastive_demo.yaml")
    demo.add_argument("--num-train", type=int, default=30000)
    demo.add_argument("--num-val", type=int, default=1000)
    demo.add_argument("--image-size", type=int, default=32, help="scene size in pixels (match the config)")
    demo.add_argument("--max-steps", type=int, default=None)
    demo.add_argument("--overwrite", action="store_true")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TOOL_VERBS:
        args = build_tool_parser().parse_args(argv)
        handler = {"data": cmd_data, "eval": cmd_eval, "export": cmd_export, "demo": cmd_demo}[args.verb]
        return handler(args)
    lightning_cli(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
