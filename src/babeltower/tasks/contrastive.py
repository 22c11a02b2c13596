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
def add_synth_arguments(parser) -> None:
    parser.add_argument("--num-train", type=int, default=20000, help="training scenes")
    parser.add_argument("--num-val", type=int, default=1000, help="held-out scenes (unseen colour-shape pairs)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--languages", default=None, help="comma-separated codes (default: all)")
    parser.add_argument("--samples-per-shard", type=int, default=1000)


def synth(args) -> dict:
    """Multilingual scene images with captions (held-out colour-shape pairs in val)."""
    from babeltower.datasets.synthetic.scenes import write_scene_shards
    from babeltower.tasks.common import check_at_least, split_languages

    check_at_least(1, num_train=args.num_train, num_val=args.num_val, samples_per_shard=args.samples_per_shard)
    check_at_least(8, image_size=args.image_size)
    return write_scene_shards(
        args.out, num_train=args.num_train, num_val=args.num_val, image_size=args.image_size,
        languages=split_languages(args.languages), seed=args.seed, samples_per_shard=args.samples_per_shard,
        overwrite=args.overwrite,
    )


#: `babeltower data synth NAME` names this task's synthesiser answers to.
SYNTH_NAMES = ("scenes",)


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


def _run(ctx, init_from: Optional[str], name: str) -> dict:
    """Scenes -> fit -> retrieval evaluation -> export (``init_from``: start from a distilled encoder)."""
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
    extra = []
    if init_from:
        extra += ["--model.init_args.init_from", str(init_from)]  # the data's tokenizer follows (linked)
    config = ctx.option(NAME, "config", DEMO_CONFIG)
    print(f"[contrastive] training {name} ({config}{', text encoder from ' + str(init_from) if init_from else ''})")
    return ctx.fit_evaluate_export("contrastive", config, run_dir, data, evaluate, export, extra)


def demo(ctx) -> dict:
    """The contrastive head from scratch and, when stage 1 ran, from the distilled encoder.

    The second run is ``ctx.outputs["contrastive_distilled"]`` (the text-to-image head
    starts from it); the comparison of the two is AltCLIP's table.
    """
    scratch = _run(ctx, None, "contrastive")
    distilled_hub = ctx.outputs.get("distill", {}).get("hub")
    if distilled_hub:
        distilled = _run(ctx, str(distilled_hub), "contrastive_distilled")
        ctx.outputs["contrastive_distilled"] = distilled
        comparison = compare_starts(scratch, distilled, ctx.workdir)
        scratch["paths"].update({f"comparison_{kind}": path for kind, path in comparison.items()})
    return scratch


def compare_starts(scratch: dict, distilled: dict, out_dir: Path) -> dict[str, Path]:
    """The AltCLIP-style table: per-language retrieval from scratch vs from the distilled encoder."""
    from babeltower.eval.report import bar_chart, markdown_table, write_json

    columns = ["t2i_r1_pool", "i2t_r1_pool", "t2i_r1", "zs_mean"]
    a_rows, b_rows = scratch["result"]["per_language"], distilled["result"]["per_language"]
    rows = {}
    for lang in a_rows:
        a, b = a_rows[lang], b_rows.get(lang, {})
        rows[lang] = {**{f"{c} scratch": a.get(c, float("nan")) for c in columns},
                      **{f"{c} distilled": b.get(c, float("nan")) for c in columns}}
    rows["**mean**"] = {**{f"{c} scratch": scratch["result"]["metrics"].get(c) for c in columns},
                        **{f"{c} distilled": distilled["result"]["metrics"].get(c) for c in columns}}
    ordered = [f"{c} {k}" for c in columns for k in ("scratch", "distilled")]
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, ordered)
    (out_dir / "comparison.md").write_text(
        "# Contrastive retrieval: text encoder from scratch vs distilled start\n\n" + table + "\n"
    )
    write_json(rows, out_dir / "comparison.json")
    chart = bar_chart(
        {k: v for k, v in rows.items() if not k.startswith("**")},
        ["t2i_r1_pool scratch", "t2i_r1_pool distilled", "zs_mean scratch", "zs_mean distilled"],
        out_dir / "comparison.png",
        title="Per-language retrieval: from scratch vs distilled text encoder",
    )
    print(table)
    return {"markdown": out_dir / "comparison.md", "json": out_dir / "comparison.json", "chart": chart}
