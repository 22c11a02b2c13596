"""The OCR head: synthetic multilingual text lines, a CTC line recogniser, CER/NED per script.

Evaluation name ``ocr``; data ``babeltower data synth ocr OUT``; inference verb
``babeltower ocr MODEL IMAGE... [--json]``; ``babeltower ocr-lm SHARDS --into MODEL`` adds
a character n-gram LM (trained on the line labels) that decoding then fuses in.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

NAME = "ocr"
EVAL_NAME = "ocr"
SYSTEMS = ("babeltower.train.ocr.OCRSystem",)
DEMO_CONFIG = "configs/tiny/ocr_demo.yaml"


def load(path: str | Path, lm: Optional[str] = None):
    """An ``OCRModel`` (eval mode) from an exported hub folder, a model folder or an OCR checkpoint.

    Args:
        lm: None: the folder's own character LM if it has one (a checkpoint has none);
            "none": greedy decoding without LM; a path: that ``charlm.json.gz``.
    """
    from babeltower.models.charlm import CharNgramLM
    from babeltower.models.ocr import OCRModel
    from babeltower.tasks.common import load_system

    path = Path(path)
    if path.is_dir():
        model = OCRModel.from_pretrained(path, lm=lm is None).eval()
    else:
        model = load_system(path, SYSTEMS).model.eval()
    if lm is not None and lm != "none":
        char_lm, fusion = CharNgramLM.load_with_fusion(lm)
        model.attach_lm(char_lm, **fusion)
    elif lm == "none":
        model.attach_lm(None)
    return model


# --------------------------------------------------------------------------- data
def add_synth_arguments(parser) -> None:
    parser.add_argument("--num-train", type=int, default=20000, help="training lines (training fonts and texts)")
    parser.add_argument("--num-val", type=int, default=550, help="validation lines (training fonts, held-out texts)")
    parser.add_argument("--num-test", type=int, default=1100, help="test lines (held-out fonts and texts)")
    parser.add_argument("--languages", default=None, help="comma-separated codes (default: all 11)")
    parser.add_argument("--samples-per-shard", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1, help="processes rendering the training split")


def synth(args) -> dict:
    """``babeltower data synth ocr OUT``: train/val/test line shards and ``stats.json`` (tofu skips)."""
    from babeltower.datasets.synthetic.ocr import LANGUAGES, write_ocr_dataset
    from babeltower.tasks.common import split_languages

    languages = tuple(split_languages(args.languages) or LANGUAGES)
    return write_ocr_dataset(args.out, num_train=args.num_train, num_val=args.num_val, num_test=args.num_test,
                             languages=languages, seed=args.seed, overwrite=args.overwrite,
                             shard_size=args.samples_per_shard, workers=args.workers)


# --------------------------------------------------------------------------- evaluation
def add_eval_arguments(parser) -> None:
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lm", default=None,
                        help="character LM: default the model folder's own (charlm.json.gz) if any; 'none' for greedy "
                             "decoding; or a path to a charlm.json.gz")


def recognise_shards(model, data: str, *, batch_size: int = 32, languages: Optional[list[str]] = None) -> tuple[list[dict], int]:
    """Reads every line of ``data`` (one ordered pass); returns scored lines and the bad-sample count."""
    import torch
    from tqdm.auto import tqdm

    from babeltower.datasets.ocr import LineDecoder, collate_lines
    from babeltower.datasets.pipeline import eval_stream

    stream = eval_stream(data, decode=LineDecoder(model.config.image_height, model.config.max_width),
                         collate=collate_lines, batch_size=batch_size)
    keep = set(languages) if languages else None
    lines, bad = [], 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for batch in tqdm(stream, desc="ocr eval", unit="batch", leave=False):
            bad += len(batch["bad_samples"])
            hyps = model.recognize(batch["images"].to(device), batch["widths"].to(device))
            for i, hyp in enumerate(hyps):
                if keep is not None and batch["lang"][i] not in keep:
                    continue
                lines.append({"id": batch["key"][i], "ref": batch["text"][i], "hyp": hyp, "lang": batch["lang"][i],
                              "script": batch["script"][i], "meta": batch["meta"][i]})
    return lines, bad


def evaluate(model: str, *, data: Optional[str], out: Optional[str], seed: int = 0,
             languages: Optional[list[str]] = None, batch_size: int = 32, lm: Optional[str] = None) -> dict:
    """Reads line shards and scores CER / NED / exact lines per script, language and line kind."""
    from babeltower.eval.harness import data_fingerprint, prompt_hash, task_result
    from babeltower.eval.ocr import evaluate_lines, write_ocr_report

    if not data:
        raise ValueError("ocr evaluation needs --data SHARDS (line shards, e.g. runs/data/ocr/test: held-out fonts and texts)")
    recogniser = load(model, lm=lm)
    lines, bad = recognise_shards(recogniser, data, batch_size=batch_size, languages=languages)
    if not lines:
        raise ValueError(f"{data}: no lines to score" + (f" in languages {languages}" if languages else ""))
    report = evaluate_lines(lines)
    report["metrics"]["skipped_samples"] = bad
    paths = write_ocr_report(report, out) if out else {}
    samples = [{"id": l["id"], "lang": l["lang"], "reference": l["ref"], "prediction": l["hyp"],
                "prompt_hash": prompt_hash(f"{l['id']}|{l['ref']}")} for l in sorted(lines, key=lambda l: l["id"])]
    result = task_result(
        EVAL_NAME, metrics=report["metrics"], per_language=report["per_language"], groups=report["groups"],
        primary="cer", higher_is_better=False, samples=samples, data=data_fingerprint(data),
        options={"batch_size": batch_size, "decoding": recogniser.decoding}, markdown=report["markdown"],
    )
    result["paths"] = paths
    return result


# --------------------------------------------------------------------------- inference
def add_verbs(subparsers) -> dict:
    p = subparsers.add_parser("ocr", help="read text lines from images (one line per image; any format Pillow reads)")
    p.add_argument("model", help="hub folder of an OCR model, or an OCR .ckpt")
    p.add_argument("images", nargs="+", help="line images")
    p.add_argument("--json", action="store_true", help="one JSON object per image instead of tab-separated text")
    p.add_argument("--lm", default=None, help="character LM: default the model folder's own; 'none'; or a charlm.json.gz")
    q = subparsers.add_parser(
        "ocr-lm", help="train a character n-gram LM on line labels and add it to an OCR model folder (beam search uses it)")
    q.add_argument("shards", help="line shards whose labels train the LM (a folder, glob or brace pattern; e.g. the training split)")
    q.add_argument("--into", required=True, help="OCR model folder or exported hub folder (the LM goes next to the weights)")
    q.add_argument("--order", type=int, default=5, help="n of the character n-gram (default 5)")
    q.add_argument("--alpha", type=float, default=0.3, help="LM weight in beam search (default 0.3)")
    q.add_argument("--beta", type=float, default=1.2, help="bonus per emitted character (default 1.2)")
    q.add_argument("--beam-size", type=int, default=8)
    q.add_argument("--exclude-kinds", default="",
                   help="comma-separated json 'kind' values whose lines stay out of the LM (the synthesiser's "
                        "'sample,mixed' hold UDHR sentence chunks: leave them out so held-out lines are not memorised)")
    q.add_argument("--overwrite", action="store_true", help="replace an LM the folder already has")
    return {"ocr": read_images, "ocr-lm": build_lm}


def build_lm(args) -> int:
    """``babeltower ocr-lm SHARDS --into MODEL``: a character LM over the labels, in visual order."""
    from babeltower.datasets.ocr import line_texts
    from babeltower.modalities.bidi import to_visual
    from babeltower.models.charlm import LM_FILE, CharNgramLM
    from babeltower.models.ocr import CONFIG_FILE

    folder = Path(args.into)
    if (folder / "ocr").is_dir():
        folder = folder / "ocr"
    if not (folder / CONFIG_FILE).is_file():
        raise SystemExit(f"{args.into}: not an OCR model folder (no {CONFIG_FILE}); pass an exported hub folder or "
                         f"the folder OCRModel.save_pretrained wrote")
    target = folder / LM_FILE
    if target.exists() and not args.overwrite:
        raise SystemExit(f"{target} exists; pass --overwrite to replace it")
    if args.beam_size < 1 or args.order < 1:
        raise SystemExit("--order and --beam-size must be >= 1")
    excluded = tuple(k.strip() for k in args.exclude_kinds.split(",") if k.strip())
    try:
        write_lm(args.shards, target, order=args.order, exclude_kinds=excluded,
                 fusion={"alpha": args.alpha, "beta": args.beta, "beam_size": args.beam_size})
    except ValueError as error:
        raise SystemExit(str(error)) from error
    return 0


#: Line kinds of the synthesiser kept out of the LM: UDHR sentence chunks ("sample", and
#: the "mixed" lines built on them) would let the LM memorise the sentences that held-out
#: lines are cut from.
SYNTH_LM_EXCLUDE = ("sample", "mixed")


def write_lm(shards: str, target: Path, *, order: int = 5, exclude_kinds: tuple[str, ...] = (),
             fusion: Optional[dict] = None):
    """Trains a character LM on the labels of ``shards`` (visual order) and saves it to ``target``."""
    from babeltower.datasets.ocr import line_texts
    from babeltower.modalities.bidi import to_visual
    from babeltower.models.charlm import CharNgramLM

    skipped: list[dict] = []
    texts = [to_visual(text) for text in line_texts(shards, exclude_kinds, skipped)]
    if not texts:
        raise ValueError(f"{shards}: no line labels to train on" + (f" (kinds {list(exclude_kinds)} excluded)" if exclude_kinds else ""))
    lm = CharNgramLM.fit(texts, order=order)
    lm.save(target, fusion=fusion)
    print(f"{target}: {order}-gram character LM from {len(texts)} lines ({len(lm.counts)} contexts"
          + (f", {len(skipped)} unreadable sample(s) skipped" if skipped else "") + ")")
    return lm


#: Narrowest / lowest image that can hold a line of text.
MIN_SIDE = 4


def open_line_image(path: str | Path):
    """Decodes a line image, or raises ValueError naming the file and what is wrong with it.

    Colour modes, 16-bit, CMYK, EXIF rotation and alpha are handled by
    :func:`babeltower.modalities.image.decode_image`; an animated image is read at its
    first frame (noted on stderr).
    """
    from PIL import Image

    from babeltower.modalities.image import decode_image

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file (a folder or a device); pass an image file")
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path}: the file is empty (0 bytes)")
    image = decode_image(data, where=str(path))
    if min(image.size) < MIN_SIDE:
        raise ValueError(f"{path}: {image.width}x{image.height} px is too small to hold a line of text "
                         f"(need at least {MIN_SIDE} px each way)")
    try:
        frames = getattr(Image.open(path), "n_frames", 1)
    except Exception:  # decode_image succeeded; the frame count is only for the note
        frames = 1
    if frames > 1:
        print(f"{path}: animated ({frames} frames); reading the first frame", file=sys.stderr)
    return image


def read_images(args) -> int:
    """``babeltower ocr MODEL IMAGE...``: one transcript per image; a bad image gets its error, the rest go on.

    Exit status: 0 when every image was read, 1 when any failed (the count is printed).
    """
    model = load(args.model, lm=args.lm)
    failures = 0
    for path in args.images:
        try:
            image = open_line_image(path)
        except (ValueError, OSError) as error:
            failures += 1
            message = str(error) if str(path) in str(error) else f"{path}: {error}"
            if args.json:
                print(json.dumps({"image": str(path), "error": message}, ensure_ascii=False))
            else:
                print(f"{path}\tERROR: {message}")
            continue
        started = time.perf_counter()
        text = model.read([image])[0]
        elapsed = time.perf_counter() - started
        if args.json:
            print(json.dumps({"image": str(path), "text": text, "seconds": round(elapsed, 4)}, ensure_ascii=False))
        else:
            print(f"{path}\t{text}")
    if failures:
        print(f"{failures} of {len(args.images)} image(s) failed", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- main job
def export(ckpt: Path, folder: Path, result: dict) -> Path:
    from babeltower.tasks.common import load_system

    return load_system(ckpt, SYSTEMS).export_hub(folder, eval_report=result, overwrite=True)


def demo(ctx) -> dict:
    """Synthetic lines -> recogniser fit -> CER/NED on held-out fonts and texts -> export."""
    from babeltower.datasets.synthetic.ocr import write_ocr_dataset

    data = ctx.data_dir("ocr")
    run_dir = ctx.run_dir("ocr")
    if not (data / "train").exists() or ctx.overwrite:
        print(f"[ocr] rendering text lines to {data}")
        write_ocr_dataset(data, num_train=ctx.option(NAME, "num_train", 8000), num_val=ctx.option(NAME, "num_val", 220),
                          num_test=ctx.option(NAME, "num_test", 330), overwrite=True)
    else:
        print(f"[ocr] reusing text lines in {data}")
    config = ctx.option(NAME, "config", DEMO_CONFIG)
    ckpt = ctx.fit(config, run_dir, str(data / "train"), str(data / "val"), head=NAME)
    from babeltower.models.charlm import LM_FILE

    lm_file = run_dir / LM_FILE
    write_lm(str(data / "train"), lm_file, exclude_kinds=SYNTH_LM_EXCLUDE, fusion={"alpha": 0.3, "beta": 1.2, "beam_size": 8})
    print(f"[ocr] evaluating {ckpt} + {lm_file} on held-out fonts and texts ({data / 'test'})")
    result = evaluate(str(ckpt), data=str(data / "test"), out=str(run_dir / "eval"), lm=str(lm_file))
    print(result["markdown"])
    hub = export(ckpt, run_dir / "hub", result)
    shutil.copyfile(lm_file, Path(hub) / "ocr" / LM_FILE)
    return {"task": NAME, "result": result, "paths": dict(result.get("paths", {})), "ckpt": ckpt, "hub": hub}
