"""babeltower's line recogniser side by side with Tesseract 5 on the same held-out lines.

Both read the same PNG bytes of every line of the test shards (held-out fonts and
held-out texts, written by ``babeltower data synth ocr``). Tesseract 5 runs through its
command line (Debian ``tesseract-ocr`` + language packs) with page segmentation mode 7
("a single text line"), the LSTM engine, and the line's language plus English
(``ara+eng``: mixed lines give it the English model too); babeltower decodes as its model
folder says (greedy CTC, or beam search with the folder's character LM).

Reported per script and per language for both: CER (jiwer 4.0; spaces count, runs of
whitespace collapsed in both outputs) and "CER, no spaces" (all whitespace removed from
reference and output first: Tesseract puts spaces between CJK characters), NED, exact
lines and time per line. Tesseract's time per line includes starting the process and
loading its models for each line (that is what a CLI call costs); babeltower's is the
model's time at batch size 1 after loading once, on the same CPU.

Usage::

    python benchmarks/bench_ocr.py --model runs/ocr_quality/hub --data runs/data/ocr_heldout/test \\
        --out runs/bench_ocr [--limit 0] [--tesseract-cache runs/bench_ocr/tesseract.json] [--bench-md BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

#: babeltower language -> Tesseract traineddata.
TESSERACT_LANGS = {
    "en": "eng", "de": "deu", "fr": "fra", "es": "spa", "vi": "vie", "ru": "rus",
    "ar": "ara", "hi": "hin", "ko": "kor", "zh": "chi_sim", "ja": "jpn",
}


def read_lines(data: str, limit: int = 0) -> list[dict]:
    """Every line of the shards in order: ``{"id", "png", "ref", "lang", "script", "meta"}``."""
    from babeltower.datasets.pipeline import expand_shards, read_tar

    lines = []
    for url in expand_shards(data):
        for sample in read_tar(url):
            image_key = next((k for k in ("png", "jpg", "webp") if k in sample), None)
            if image_key is None or "txt" not in sample:
                continue
            meta = json.loads(sample["json"]) if "json" in sample else {}
            lines.append({"id": sample["__key__"], "png": sample[image_key], "ref": sample["txt"].decode("utf-8").strip(),
                          "lang": meta.get("lang", "?"), "script": meta.get("script", "?"), "meta": meta})
            if limit and len(lines) >= limit:
                return lines
    return lines


def tesseract_version() -> str:
    out = subprocess.run(["tesseract", "--version"], capture_output=True, text=True, check=True)
    return (out.stdout or out.stderr).splitlines()[0].strip()


def run_tesseract(lines: list[dict], cache: Path | None) -> dict[str, dict]:
    """``{id: {"hyp", "seconds"}}``; reuses and extends ``cache`` (keyed by line id and reference)."""
    from tqdm.auto import tqdm

    if shutil.which("tesseract") is None:
        raise SystemExit("tesseract is not installed (Debian: apt-get install tesseract-ocr tesseract-ocr-ara ...)")
    have = set(subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True).stdout.split())
    results: dict[str, dict] = {}
    if cache is not None and cache.is_file():
        results = json.loads(cache.read_text(encoding="utf-8"))
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    todo = [l for l in lines if results.get(l["id"], {}).get("ref") != l["ref"]]
    for n, line in enumerate(tqdm(todo, desc="tesseract", unit="line")):
        lang = TESSERACT_LANGS.get(line["lang"])
        if lang is None or lang not in have:
            raise SystemExit(f"no Tesseract language pack for {line['lang']!r} (have {sorted(have)})")
        langs = lang if lang == "eng" else f"{lang}+eng"
        started = time.perf_counter()
        out = subprocess.run(["tesseract", "stdin", "stdout", "-l", langs, "--psm", "7", "--oem", "1"],
                             input=line["png"], capture_output=True, env=env)
        seconds = time.perf_counter() - started
        hyp = " ".join(out.stdout.decode("utf-8", "replace").split())
        results[line["id"]] = {"hyp": hyp, "seconds": seconds, "ref": line["ref"], "returncode": out.returncode}
        if cache is not None and (n % 50 == 49 or n == len(todo) - 1):
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(results, ensure_ascii=False, indent=0), encoding="utf-8")
    return results


def run_babeltower(model_path: str, lines: list[dict]) -> dict[str, dict]:
    """``{id: {"hyp", "seconds"}}``: each line alone (batch size 1), after one model load."""
    import io

    import torch
    from PIL import Image
    from tqdm.auto import tqdm

    from babeltower.tasks.ocr import load

    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = load(model_path)
    results = {}
    with torch.no_grad():
        model.read([Image.open(io.BytesIO(lines[0]["png"]))])  # warm-up
        for line in tqdm(lines, desc="babeltower", unit="line"):
            started = time.perf_counter()
            from babeltower.modalities.image import decode_image

            hyp = model.read([decode_image(line["png"], where=line["id"])])[0]
            results[line["id"]] = {"hyp": hyp, "seconds": time.perf_counter() - started}
    return results, model.decoding


def _no_spaces(text: str) -> str:
    return "".join(text.split())


def score(lines: list[dict], outputs: dict[str, dict]) -> dict:
    """Per script / language / line kind for one system, plus CER without spaces and time per line."""
    from babeltower.eval.ocr import evaluate_lines, score_lines

    scored = [{**{k: l[k] for k in ("id", "ref", "lang", "script", "meta")}, "hyp": outputs[l["id"]]["hyp"]} for l in lines]
    result = evaluate_lines(scored)
    by_script = defaultdict(list)
    for line in scored:
        by_script[line["script"]].append(line)
    for script, group in by_script.items():
        squeezed = [{"ref": _no_spaces(l["ref"]), "hyp": _no_spaces(l["hyp"])} for l in group]
        result["groups"]["script"][script]["cer_no_spaces"] = score_lines(squeezed)["cer"]
        result["groups"]["script"][script]["seconds_per_line"] = sum(outputs[l["id"]]["seconds"] for l in group) / len(group)
    result["metrics"]["seconds_per_line"] = sum(outputs[l["id"]]["seconds"] for l in lines) / len(lines)
    result["metrics"]["mean_cer_no_spaces_over_scripts"] = (
        sum(r["cer_no_spaces"] for r in result["groups"]["script"].values()) / len(result["groups"]["script"]))
    return result


def side_by_side(ours: dict, tess: dict) -> str:
    """The markdown table: CER per script for both, ratios, time per line."""
    rows = ["| script | lines | babeltower CER | Tesseract CER | babeltower CER (no spaces) | Tesseract CER (no spaces) "
            "| babeltower s/line | Tesseract s/line |", "|---|---|---|---|---|---|---|---|"]
    for script, row in sorted(ours["groups"]["script"].items()):
        t = tess["groups"]["script"][script]
        rows.append(f"| {script} | {row['n']} | {row['cer']:.4f} | {t['cer']:.4f} | {row['cer_no_spaces']:.4f} | "
                    f"{t['cer_no_spaces']:.4f} | {row['seconds_per_line']:.4f} | {t['seconds_per_line']:.3f} |")
    for kind, row in sorted(ours["groups"].get("kind", {}).items()):
        t = tess["groups"]["kind"].get(kind, {})
        rows.append(f"| _{kind} lines_ | {row['n']} | {row['cer']:.4f} | {t.get('cer', float('nan')):.4f} | | | | |")
    m, tm = ours["metrics"], tess["metrics"]
    rows.append(f"| **mean over scripts** | {sum(r['n'] for r in ours['groups']['script'].values())} | "
                f"**{m['mean_cer_over_scripts']:.4f}** | **{tm['mean_cer_over_scripts']:.4f}** | "
                f"{m['mean_cer_no_spaces_over_scripts']:.4f} | {tm['mean_cer_no_spaces_over_scripts']:.4f} | "
                f"{m['seconds_per_line']:.4f} | {tm['seconds_per_line']:.3f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="babeltower OCR hub folder or .ckpt")
    parser.add_argument("--data", required=True, help="line shards (held-out fonts and texts), e.g. runs/data/ocr_heldout/test")
    parser.add_argument("--out", default="runs/bench_ocr")
    parser.add_argument("--limit", type=int, default=0, help="first N lines only (0: all)")
    parser.add_argument("--tesseract-cache", default=None, help="JSON of earlier Tesseract outputs to reuse and extend")
    parser.add_argument("--bench-md", default=None, help="append the section to this markdown file (e.g. BENCHMARKS.md)")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = read_lines(args.data, args.limit)
    if not lines:
        raise SystemExit(f"{args.data}: no lines")
    cache = Path(args.tesseract_cache) if args.tesseract_cache else out / "tesseract.json"
    tess_out = run_tesseract(lines, cache)
    ours_out, decoding = run_babeltower(args.model, lines)
    ours, tess = score(lines, ours_out), score(lines, tess_out)
    table = side_by_side(ours, tess)
    worse = [s for s, r in ours["groups"]["script"].items() if r["cer"] >= tess["groups"]["script"][s]["cer"]]
    summary = (f"babeltower beats Tesseract's CER in {len(ours['groups']['script']) - len(worse)} of "
               f"{len(ours['groups']['script'])} scripts" + (f"; not in: {', '.join(sorted(worse))}" if worse else ""))
    section = "\n".join([
        "## OCR: babeltower line recogniser vs Tesseract 5 (held-out fonts and texts)", "",
        f"{len(lines)} synthetic lines of 11 languages in 7 scripts, rendered in fonts and with texts never used "
        f"in training (`{args.data}`); {tesseract_version()} (LSTM, `--psm 7`, language + eng); babeltower `{args.model}`, "
        f"{decoding}. CER: jiwer 4.0 (spaces count); \"no spaces\": whitespace removed from both first.", "",
        table, "", summary + ".", "",
        f"Command: `python benchmarks/bench_ocr.py --model {args.model} --data {args.data}`", "",
    ])
    print(section)
    (out / "bench_ocr.md").write_text(section, encoding="utf-8")
    (out / "bench_ocr.json").write_text(json.dumps({"babeltower": {k: ours[k] for k in ("metrics", "groups", "per_language")},
                                                    "tesseract": {k: tess[k] for k in ("metrics", "groups", "per_language")}},
                                                   indent=2, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    samples = [{"id": l["id"], "lang": l["lang"], "ref": l["ref"], "babeltower": ours_out[l["id"]]["hyp"],
                "tesseract": tess_out[l["id"]]["hyp"]} for l in lines]
    (out / "samples.jsonl").write_text("\n".join(json.dumps(s, ensure_ascii=False) for s in samples) + "\n", encoding="utf-8")
    if args.bench_md:
        with open(args.bench_md, "a", encoding="utf-8") as handle:
            handle.write("\n" + section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
