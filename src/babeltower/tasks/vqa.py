"""The VQA head: multilingual questions on synthetic scenes, VQAv2 / CVQA-style scoring.

Data ``babeltower data synth vqa OUT``; evaluation ``babeltower eval vqa MODEL --data
SHARDS`` (or ``--cvqa FILE`` for CVQA's published format); inference
``babeltower vqa MODEL IMAGE "question"`` in any of the ten languages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

NAME = "vqa"
EVAL_NAME = "vqa"
SYSTEMS = ("babeltower.train.vqa.VQASystem",)
DEMO_CONFIG = "configs/tiny/vqa_demo.yaml"
MODES = ("score", "classify")


def load(path: str | Path):
    """``(VQAModel, tokenizer)`` from an exported hub folder (or its ``vqa/`` subfolder) or a VQA ``.ckpt``."""
    from babeltower.modalities.text import load_tokenizer
    from babeltower.models.text_encoder import resolve_tokenizer
    from babeltower.models.vqa import VQAModel
    from babeltower.tasks.common import load_system

    path = Path(path)
    if path.is_dir():
        folder = path / "vqa" if (path / "vqa").is_dir() else path
        return VQAModel.from_pretrained(folder).eval(), load_tokenizer(folder / "text_encoder")
    model = load_system(path, SYSTEMS).model.eval()
    return model, resolve_tokenizer(model.text.config)


# --------------------------------------------------------------------------- data
def add_synth_arguments(parser, kind: str) -> None:
    parser.add_argument("--num-train", type=int, default=8000, help="training scenes (10 questions x 10 languages each)")
    parser.add_argument("--num-val", type=int, default=300, help="validation scenes (held-out colour-shape pairs)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--languages", default=None, help="comma-separated codes (default: all ten)")
    parser.add_argument("--samples-per-shard", type=int, default=1000)


def synth(args) -> dict:
    """``babeltower data synth vqa OUT``: scenes with questions, 10 annotators and 4 options each."""
    from babeltower.datasets.synthetic.vqa import write_vqa_shards
    from babeltower.tasks.common import split_languages

    return write_vqa_shards(args.out, num_train=args.num_train, num_val=args.num_val, image_size=args.image_size,
                            languages=split_languages(args.languages), seed=args.seed,
                            samples_per_shard=args.samples_per_shard, overwrite=args.overwrite)


# --------------------------------------------------------------------------- evaluation
def add_eval_arguments(parser) -> None:
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="answer head to report as primary (default: the model's answer_mode); both are measured")
    parser.add_argument("--cvqa", default=None,
                        help="a CVQA-format file (.jsonl/.json/.parquet) to score instead of --data shards")
    parser.add_argument("--question-types", default=None, help="comma-separated subset of colour,shape,count,position,size")
    parser.add_argument("--batch-size", type=int, default=256)


def evaluate(model: str, *, data: Optional[str], out: Optional[str], seed: int = 0,
             languages: Optional[list[str]] = None, mode: Optional[str] = None, cvqa: Optional[str] = None,
             question_types: Optional[str | list[str]] = None, batch_size: int = 256) -> dict:
    """Scores a VQA model on VQA shards (both answer heads) or on a CVQA-format file.

    Shards: VQAv2 soft accuracy, 4-option multiple-choice accuracy and cross-lingual
    consistency, overall, per language and per question type, for the ``score`` and
    ``classify`` heads; the primary head's numbers are the task result, the other's go
    under ``groups["other_mode"]``. Writes ``vqa.json``, ``vqa.md`` and ``vqa.png``
    under ``out``.
    """
    import torch

    vqa_model, tokenizer = load(model)
    mode = mode or vqa_model.config.answer_mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    torch.manual_seed(seed)
    if cvqa:
        return _evaluate_cvqa(vqa_model, tokenizer, cvqa, out, languages, batch_size)
    if not data:
        raise ValueError("vqa evaluation needs --data SHARDS (e.g. runs/demo/data/vqa/val) or --cvqa FILE")
    if isinstance(question_types, str):
        question_types = [t.strip() for t in question_types.split(",") if t.strip()]
    from babeltower.datasets.vqa_testsets import iter_vqa_items
    from babeltower.eval.harness import data_fingerprint, prompt_hash, task_result
    from babeltower.eval.vqa import markdown_report, predict_vqa, score_vqa

    items, bad = iter_vqa_items(data, vqa_model.config.vision.image_size, languages, question_types)
    if not items:
        raise ValueError(f"{data}: no VQA items to score (languages={languages}, question_types={question_types})")
    modes = [mode] + [m for m in MODES if m != mode and (m != "classify" or vqa_model.classifier is not None)]
    predictions = predict_vqa(vqa_model, tokenizer, items, modes=modes, batch_size=batch_size)
    summaries, records = {}, {}
    for m in modes:
        summaries[m], records[m] = score_vqa(items, predictions[m])
    summary = summaries[mode]
    markdown = "\n\n".join(markdown_report(summaries[m], title=f"VQA, answer head: {m}") for m in modes)
    groups = dict(summary["groups"])
    for m in modes[1:]:
        groups["other_mode"] = {m: {**summaries[m]["metrics"], "n": summaries[m]["n"]}}
        groups[f"question_type_{m}"] = summaries[m]["groups"]["question_type"]
        groups[f"language_{m}"] = summaries[m]["per_language"]
    samples = [{"id": r["id"], "lang": r["lang"], "reference": r["reference"], "prediction": r["prediction"],
                "prompt_hash": prompt_hash(r["question"])} for r in records[mode]]
    metrics = {**summary["metrics"], "bad_samples": float(len(bad))}
    result = task_result(
        EVAL_NAME, metrics=metrics, per_language=summary["per_language"], groups=groups, primary="vqa_acc",
        higher_is_better=True, samples=samples, data=data_fingerprint(data),
        options={"mode": mode, "modes": modes, "question_types": question_types},
        markdown=markdown,
    )
    result["paths"] = _write(result, summary, out) if out else {}
    return result


def _write(result: dict, summary: dict, out: str) -> dict:
    from babeltower.eval.vqa import plot_per_language

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "vqa.json", "markdown": folder / "vqa.md", "chart": folder / "vqa.png"}
    paths["json"].write_text(json.dumps({k: v for k, v in result.items() if k != "paths"}, indent=1, sort_keys=True,
                                        ensure_ascii=False))
    paths["markdown"].write_text(result["markdown"] + "\n")
    plot_per_language(summary, paths["chart"])
    return paths


def _evaluate_cvqa(model, tokenizer, path: str, out: Optional[str], languages: Optional[list[str]],
                   batch_size: int) -> dict:
    """CVQA protocol: local-language and English prompts, option scoring, per subset and category."""
    import torch

    from babeltower.datasets.vqa_testsets import load_cvqa
    from babeltower.eval.harness import data_fingerprint, prompt_hash, task_result
    from babeltower.modalities.image import ImageTransform, decode_image
    from babeltower.modalities.text import tokenize

    items = [it for it in load_cvqa(path) if not languages or it["lang"] in languages]
    if not items:
        raise ValueError(f"{path}: no CVQA records (languages={languages})")
    transform = ImageTransform(model.config.vision.image_size, train=False)
    rows = []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            pixels = torch.stack([transform(decode_image(it["image"], where=f"{path}:{it['id']}")) for it in chunk])
            for prompt, q_key, o_key in (("local", "question", "options"), ("en", "question_en", "options_en")):
                tokens = tokenize(tokenizer, [it[q_key] for it in chunk], 64)
                fused = model.fuse(pixels, tokens["input_ids"], tokens["attention_mask"])
                # CVQA's options are free text: only candidate scoring can rank them.
                answers = model.answer_from_fused(fused, tokenizer, langs=[None] * len(chunk), mode="score",
                                                  candidates=[it[o_key] for it in chunk])
                for it, answer in zip(chunk, answers):
                    rows.append({"item": it, "prompt": prompt, "choice": answer["index"],
                                 "correct": answer["index"] == it["label"]})
    def acc(rs):
        return sum(r["correct"] for r in rs) / len(rs) if rs else float("nan")

    per_language, by_subset, by_category = {}, {}, {}
    for r in rows:
        it = r["item"]
        per_language.setdefault(it["lang"], []).append(r)
        by_subset.setdefault(f"{it['subset']}/{r['prompt']}", []).append(r)
        by_category.setdefault(f"{it['category']}/{r['prompt']}", []).append(r)
    local = [r for r in rows if r["prompt"] == "local"]
    english = [r for r in rows if r["prompt"] == "en"]
    metrics = {"mc_acc": acc(local), "mc_acc_en_prompt": acc(english)}
    per_lang = {lang: {"mc_acc": acc([r for r in rs if r["prompt"] == "local"]),
                       "mc_acc_en_prompt": acc([r for r in rs if r["prompt"] == "en"]),
                       "n": sum(1 for r in rs if r["prompt"] == "local")} for lang, rs in sorted(per_language.items())}
    groups = {"subset": {k: {"mc_acc": acc(v), "n": len(v)} for k, v in sorted(by_subset.items())},
              "category": {k: {"mc_acc": acc(v), "n": len(v)} for k, v in sorted(by_category.items())}}
    lines = ["### CVQA-format multiple choice", "", f"local-language prompts {metrics['mc_acc']:.3f} · "
             f"English prompts {metrics['mc_acc_en_prompt']:.3f} (options ranked by candidate scoring; no random pick)",
             "", "| subset / prompt | MC acc | n |", "|---|---|---|"]
    lines += [f"| {k} | {v['mc_acc']:.3f} | {v['n']} |" for k, v in groups["subset"].items()]
    samples = [{"id": f"{r['item']['id']}/{r['prompt']}", "lang": r["item"]["lang"],
                "reference": r["item"]["options" if r["prompt"] == "local" else "options_en"][r["item"]["label"]],
                "prediction": None if r["choice"] is None else
                r["item"]["options" if r["prompt"] == "local" else "options_en"][r["choice"]],
                "prompt_hash": prompt_hash(r["item"]["question" if r["prompt"] == "local" else "question_en"])}
               for r in rows]
    result = task_result(EVAL_NAME, metrics=metrics, per_language=per_lang, groups=groups, primary="mc_acc",
                         higher_is_better=True, samples=samples, data=data_fingerprint(path, [path]),
                         options={"cvqa": str(path)}, markdown="\n".join(lines))
    paths = {}
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"json": folder / "cvqa.json", "markdown": folder / "cvqa.md"}
        paths["json"].write_text(json.dumps(result, indent=1, sort_keys=True, ensure_ascii=False))
        paths["markdown"].write_text(result["markdown"] + "\n")
    result["paths"] = paths
    return result


# --------------------------------------------------------------------------- inference
def add_verbs(subparsers) -> dict:
    p = subparsers.add_parser("vqa", help="answer a question about an image, in any of the ten languages")
    p.add_argument("model", help="hub folder of a VQA model, or a VQA .ckpt")
    p.add_argument("image", help="image file (png/jpg/webp)")
    p.add_argument("question", help="the question, e.g. \"Welche Farbe haben die Formen?\"")
    p.add_argument("--lang", default=None, help="question language (default: guessed from script and words)")
    p.add_argument("--options", nargs="+", default=None, help="multiple choice: the options to choose from")
    p.add_argument("--mode", choices=MODES, default=None, help="answer head (default: the model's answer_mode)")
    p.add_argument("--top", type=int, default=3, help="also print this many runner-up answers")
    return {"vqa": answer}


def answer_question(model, tokenizer, image_bytes: bytes, question: str, *, lang: Optional[str] = None,
                    options: Optional[list[str]] = None, mode: Optional[str] = None, where: str = "image") -> dict:
    """One answer: ``{"answer", "lang", "ranked": [(answer, score), ...]}`` (library form of ``babeltower vqa``)."""
    import torch

    from babeltower.datasets.synthetic.vqa import guess_language
    from babeltower.modalities.image import ImageTransform, decode_image

    if not question.strip():
        raise ValueError("the question is empty")
    lang = lang or guess_language(question, model.answer_languages or None)
    if options is None and lang not in model.answer_languages:
        raise ValueError(f"the model has no answers in language {lang!r}; it knows {model.answer_languages} "
                         "(pass --options to choose among your own answers)")
    pixels = ImageTransform(model.config.vision.image_size, train=False)(decode_image(image_bytes, where=where))
    with torch.no_grad():
        result = model.answer(pixels[None], [question], tokenizer, langs=[lang],
                              candidates=[options] if options else None, mode=mode)[0]
    candidates = options or [t for l, t in model.config.answers if l == lang]
    ranked = sorted(zip(candidates, result["scores"]), key=lambda pair: -pair[1])
    return {"answer": result["answer"], "lang": lang, "ranked": ranked}


def answer(args) -> int:
    """``babeltower vqa MODEL IMAGE "question"``: prints the answer (and runners-up)."""
    path = Path(args.image)
    if not path.is_file():
        print(f"error: image {path} does not exist")
        return 2
    model, tokenizer = load(args.model)
    try:
        out = answer_question(model, tokenizer, path.read_bytes(), args.question, lang=args.lang,
                              options=args.options, mode=args.mode, where=str(path))
    except ValueError as error:
        print(f"error: {error}")
        return 2
    print(out["answer"] if out["answer"] is not None else "(no answer: none of the options is in the model's vocabulary)")
    runners = ", ".join(f"{a} ({s:.2f})" for a, s in out["ranked"][1 : 1 + max(0, args.top)])
    print(f"[{out['lang']}] runners-up: {runners}" if runners else f"[{out['lang']}]")
    return 0


# --------------------------------------------------------------------------- main job
def export(ckpt: Path, folder: Path, result: dict) -> Path:
    from babeltower.tasks.common import load_system

    return load_system(ckpt, SYSTEMS).export_hub(folder, eval_report=result, overwrite=True)


def demo(ctx) -> dict:
    """Scenes with questions -> VQA fit (from the contrastive hub when there is one) -> evaluation -> export."""
    from babeltower.datasets.synthetic.vqa import write_vqa_shards

    data = ctx.data_dir("vqa")
    run_dir = ctx.run_dir("vqa")
    if not (data / "train").exists() or ctx.overwrite:
        print(f"[vqa] writing multilingual VQA scenes to {data}")
        write_vqa_shards(data, num_train=ctx.option(NAME, "num_train", 3000), num_val=ctx.option(NAME, "num_val", 100),
                         overwrite=True)
    else:
        print(f"[vqa] reusing VQA scenes in {data}")
    extra = []
    from babeltower.tasks.contrastive import shared_hub

    hub = shared_hub(ctx) or (ctx.outputs.get("contrastive") or {}).get("hub")
    if hub and (Path(hub) / "vision_model").is_dir():
        extra += ["--model.init_args.init_from", str(hub)]  # the data's tokenizer and image size follow (linked)
    e5 = None
    if ctx.option(NAME, "e5", True):
        with ctx.stage(NAME, "e5 import"):
            e5 = ctx.e5_folder()
    if e5 is not None:  # questions and answers through the real multilingual encoder, frozen and cached
        from babeltower.tasks.common import frozen_text_args

        extra += ["--model.init_args.text.pretrained", str(e5), *frozen_text_args(50000)]
    config = ctx.option(NAME, "config", DEMO_CONFIG)
    towers = (f"vision from {hub}" if hub else "vision from scratch") + (f", text: {e5} (frozen)" if e5 else "")
    print(f"[vqa] training ({config}, {towers})")
    return ctx.fit_evaluate_export("vqa", config, run_dir, data, evaluate, export, extra)
