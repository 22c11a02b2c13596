"""Stage 1: the shared text encoder distilled from a teacher on parallel text.

Evaluation name ``bitext``: translation retrieval (Tatoeba-style) and student-teacher
agreement per language.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

NAME = "distill"
EVAL_NAME = "bitext"
SYSTEMS = ("babeltower.train.distill.DistillationSystem",)
DEMO_CONFIG = "configs/tiny/distill_demo.yaml"
SYNTH_NAMES = ("parallel",)


def load(path: str | Path):
    """(student TextEncoder, its tokenizer, frozen Teacher) from a distill hub folder or checkpoint."""
    from babeltower.models.hub import load_text_encoder
    from babeltower.models.teacher import TeacherConfig, build_teacher
    from babeltower.models.text_encoder import resolve_tokenizer
    from babeltower.tasks.common import load_system

    path = Path(path)
    if path.is_dir():
        student, tokenizer, index = load_text_encoder(path)
        if "teacher" not in index:
            raise ValueError(f"{path / 'model_index.json'} records no teacher; export it from a distillation run")
        return student, tokenizer, build_teacher(TeacherConfig(**index["teacher"]))
    system = load_system(path, SYSTEMS)
    return system.student.eval(), resolve_tokenizer(system.student.config), system.teacher_model()


# --------------------------------------------------------------------------- data
def add_synth_arguments(parser, kind: str) -> None:
    parser.add_argument("--num-train", type=int, default=5000, help="scene specs for the scene-grammar pairs")
    parser.add_argument("--num-val", type=int, default=500)
    parser.add_argument("--no-cldr", action="store_true", help="leave out the Unicode CLDR pairs")


def synth(args) -> dict:
    """Parallel text: the scene grammar in every language plus Unicode CLDR names."""
    from babeltower.datasets.synthetic.parallel import write_parallel_shards
    from babeltower.tasks.common import check_at_least

    check_at_least(1, num_train=args.num_train, num_val=args.num_val)
    return write_parallel_shards(args.out, num_scene_train=args.num_train, num_scene_val=args.num_val,
                                 cldr=not args.no_cldr, seed=args.seed, overwrite=args.overwrite)


def read_pairs(shards) -> list[dict]:
    """All (src, tgt, lang, source) pairs of parallel-text shards, in order.

    Read and checked by the datasets layer as training pairs are (a sample without a
    non-empty src, tgt and lang is skipped and logged, naming its shard and key).
    """
    from babeltower.datasets.bitext import ParallelTextDecoder
    from babeltower.datasets.pipeline import eval_samples

    pairs = list(eval_samples(shards, ParallelTextDecoder()))
    if not pairs:
        raise ValueError(f"no parallel pairs (json with src, tgt, lang) in {shards}")
    return pairs


# --------------------------------------------------------------------------- evaluation
def add_eval_arguments(parser) -> None:
    parser.add_argument("--batch-size", type=int, default=256)


def evaluate(model: str, *, data: Optional[str], out: Optional[str], seed: int = 0,
             languages: Optional[list[str]] = None, batch_size: int = 256) -> dict:
    """Bitext retrieval + student/teacher agreement on held-out parallel shards."""
    import torch

    from babeltower.eval.bitext import evaluate_bitext, write_bitext_report
    from babeltower.eval.harness import data_fingerprint, task_result

    if not data:
        raise ValueError("bitext evaluation needs --data SHARDS (held-out parallel-text shards)")
    student, tokenizer, teacher = load(model)

    def encode_student(texts):
        return torch.cat([student.encode(texts[i: i + batch_size], tokenizer) for i in range(0, len(texts), batch_size)])

    pairs = read_pairs(data)
    scenes = [p for p in pairs if p.get("source") == "scenes"]
    others = [p for p in pairs if p.get("source") != "scenes"]
    with torch.no_grad():
        # The bar is measured on held-out scene pairs (words seen in training, combinations
        # not); held-out CLDR entries (names never seen) and user bitext are reported apart.
        report = evaluate_bitext(encode_student, teacher.encode, scenes or pairs, languages=languages)
        groups = {}
        if scenes and others:
            extra = evaluate_bitext(encode_student, teacher.encode, others)
            report["other_sources"] = extra
            report["markdown"] += "\n\n### Held-out CLDR entries (names never seen in training)\n\n" + extra["markdown"]
            groups["other_sources"] = {lang: {**row, "n": row["num_pairs"]} for lang, row in extra["per_language"].items()}
    paths = write_bitext_report(report, out) if out else {}
    per_language = {lang: {**{k: v for k, v in row.items() if k != "num_pairs"}, "n": row["num_pairs"]}
                    for lang, row in report["per_language"].items()}
    result = task_result(
        EVAL_NAME, metrics=report["mean"], per_language=per_language, groups=groups, primary="x2en_acc",
        higher_is_better=True, samples=report["samples"], data=data_fingerprint(data), markdown=report["markdown"],
    )
    result["paths"] = paths
    return result


# --------------------------------------------------------------------------- main job
def export(ckpt: Path, folder: Path, result: dict) -> Path:
    from babeltower.tasks.common import load_system

    return load_system(ckpt, SYSTEMS).export_hub(folder, eval_report=result, overwrite=True)


def demo(ctx) -> dict:
    """Parallel text -> distillation fit -> bitext evaluation -> export, for the text encoder."""
    from babeltower.datasets.synthetic.parallel import write_parallel_shards

    data = ctx.data_dir("parallel")
    run_dir = ctx.run_dir("distill")
    if not (data / "train").exists() or ctx.overwrite:
        print(f"[distill] writing parallel text (scene grammar + Unicode CLDR) to {data}")
        # 5,000 scene specs -> 45,000 scene pairs (870 distinct captions a language, repeated so
        # scenes weigh about as much as the 45,000 CLDR pairs)
        write_parallel_shards(data, num_scene_train=5000, num_scene_val=500, overwrite=True)
    else:
        print(f"[distill] reusing parallel text in {data}")
    config = ctx.option(NAME, "config", DEMO_CONFIG)
    print(f"[distill] training ({config})")
    return ctx.fit_evaluate_export("distill", config, run_dir, data, evaluate, export)
