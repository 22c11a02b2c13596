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
    from babeltower.models.ocr import OCRModel
    from babeltower.tasks.common import apply_lm_option, load_system

    path = Path(path)
    if path.is_dir():
        model = OCRModel.from_pretrained(path, lm=lm is None).eval()
    else:
        model = load_system(path, SYSTEMS).model.eval()
    return apply_lm_option(model, lm)


# --------------------------------------------------------------------------- data
def add_synth_arguments(parser, kind: str) -> None:
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
    from babeltower.models.ocr import OCRModel
    from babeltower.tasks.common import add_lm_verb

    add_lm_verb(subparsers, "ocr-lm", "line labels", OCRModel.LM_DEFAULTS, order=5,
                exclude_help=" (the synthesiser's 'sample,mixed' hold UDHR sentence chunks: leave them out so held-out "
                             "lines are not memorised)")
    return {"ocr": read_images, "ocr-lm": build_lm}


def build_lm(args) -> int:
    """``babeltower ocr-lm SHARDS --into MODEL``: a character LM over the labels, in visual order."""
    from babeltower.models.ocr import CONFIG_FILE
    from babeltower.tasks.common import lm_target, lm_verb

    return lm_verb(args, lm_target(args.into, "ocr", CONFIG_FILE, "OCRModel", args.overwrite), "label", _visual)


def _visual(text: str) -> str:
    from babeltower.modalities.bidi import to_visual

    return to_visual(text)


#: Line kinds of the synthesiser kept out of the LM: UDHR sentence chunks ("sample", and
#: the "mixed" lines built on them) would let the LM memorise the sentences that held-out
#: lines are cut from.
SYNTH_LM_EXCLUDE = ("sample", "mixed")


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

    from babeltower.models.ocr import OCRModel
    from babeltower.tasks.common import write_char_lm

    lm_file = run_dir / LM_FILE
    write_char_lm(str(data / "train"), lm_file, noun="label", to_text=_visual, order=5,
                  exclude_kinds=SYNTH_LM_EXCLUDE, fusion=OCRModel.LM_DEFAULTS)
    print(f"[ocr] evaluating {ckpt} + {lm_file} on held-out fonts and texts ({data / 'test'})")
    result = evaluate(str(ckpt), data=str(data / "test"), out=str(run_dir / "eval"), lm=str(lm_file))
    print(result["markdown"])
    hub = export(ckpt, run_dir / "hub", result)
    shutil.copyfile(lm_file, Path(hub) / "ocr" / LM_FILE)
    return {"task": NAME, "result": result, "paths": dict(result.get("paths", {})), "ckpt": ckpt, "hub": hub}
