"""OCR metrics and evaluator: CER, NED and exact line accuracy, per script, language and line kind.

Input is a list of scored lines ``{"ref", "hyp", "lang", "meta"}`` from any recogniser
(babeltower's, Tesseract, ...), so numbers compare across systems. Conventions (see
../shared/notes/metrics.md):

- ``cer``: jiwer 4.0's ``cer`` — character edits (S + D + I) summed over the group's
  lines, divided by the summed reference lengths; texts stripped, spaces count.
- ``ned``: normalised edit distance as OmniDocBench and PaddleOCR report it,
  ``1 - mean_i(Lev(hyp_i, ref_i) / max(|hyp_i|, |ref_i|))`` (1 is perfect; a line where
  both are empty scores 1). OmniDocBench's "Edit" is the mean term itself (``1 - ned``).
- ``line_accuracy``: the fraction of lines whose transcript equals the reference exactly.

Groups: per ``script`` and per ``lang``; ``mixed`` (lines with letters of two or more
scripts) and ``rtl_digits`` (right-to-left lines with digits) are reported apart as well
as inside their script. ``mean_cer_over_scripts`` averages the per-script CERs (each
script counts once, however many languages it has).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from babeltower.eval.asr_metrics import cer, edit_ops_counts
from babeltower.eval.report import bar_chart, markdown_table, write_json

METRICS: tuple[str, ...] = ("cer", "ned", "line_accuracy")


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (unit costs) between two sequences."""
    _, s, d, i = edit_ops_counts(list(a), list(b))
    return s + d + i


def ned(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """1 - mean normalised edit distance (OmniDocBench / PaddleOCR ``norm_edit_dis``).

    Each line contributes ``Lev(hyp, ref) / max(len(hyp), len(ref), 1)``.
    """
    refs, hyps = list(references), list(hypotheses)
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references and {len(hyps)} hypotheses; expected one hypothesis per reference")
    if not refs:
        raise ValueError("ned: no lines to score")
    total = sum(edit_distance(r, h) / max(len(r), len(h), 1) for r, h in zip(refs, hyps))
    return 1.0 - total / len(refs)


def line_accuracy(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Fraction of lines transcribed exactly (after stripping surrounding whitespace)."""
    refs, hyps = list(references), list(hypotheses)
    if len(refs) != len(hyps) or not refs:
        raise ValueError(f"line_accuracy: need equal, non-zero numbers of lines, got {len(refs)} and {len(hyps)}")
    return sum(r.strip() == h.strip() for r, h in zip(refs, hyps)) / len(refs)


def score_lines(lines: Sequence[dict]) -> dict[str, float]:
    """``{"cer", "ned", "line_accuracy", "n"}`` of ``lines`` (dicts with ``ref`` and ``hyp``)."""
    refs, hyps = [l["ref"] for l in lines], [l["hyp"] for l in lines]
    return {"cer": cer(refs, hyps), "ned": ned(refs, hyps), "line_accuracy": line_accuracy(refs, hyps), "n": len(lines)}


def _flags(line: dict) -> dict[str, bool]:
    from babeltower.datasets.synthetic.ocr import is_mixed_script, is_rtl_with_digits

    meta = line.get("meta") or {}
    mixed = meta.get("mixed")
    rtl_digits = meta.get("rtl_digits")
    return {
        "mixed": is_mixed_script(line["ref"]) if mixed is None else bool(mixed),
        "rtl_digits": is_rtl_with_digits(line["ref"]) if rtl_digits is None else bool(rtl_digits),
    }


def evaluate_lines(lines: Iterable[dict]) -> dict:
    """Scores transcripts overall, per script, per language and per line kind.

    Args:
        lines: Dicts with ``ref``, ``hyp``, ``lang`` and optional ``script`` and ``meta``
            (the shard json; ``mixed`` / ``rtl_digits`` are recomputed from the
            reference when absent).

    Returns:
        ``{"metrics", "per_language", "groups": {"script", "kind"}, "markdown"}``;
        ``metrics`` has the pooled scores and ``mean_cer_over_scripts``.
    """
    lines = list(lines)
    if not lines:
        raise ValueError("evaluate_lines got no lines")
    by_lang: dict[str, list[dict]] = defaultdict(list)
    by_script: dict[str, list[dict]] = defaultdict(list)
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for line in lines:
        by_lang[line["lang"]].append(line)
        by_script[line.get("script") or (line.get("meta") or {}).get("script") or "?"].append(line)
        for flag, value in _flags(line).items():
            if value:
                by_kind[flag].append(line)
    per_script = {script: score_lines(by_script[script]) for script in sorted(by_script)}
    metrics = {k: v for k, v in score_lines(lines).items() if k != "n"}
    metrics["mean_cer_over_scripts"] = sum(row["cer"] for row in per_script.values()) / len(per_script)
    metrics["max_cer_over_scripts"] = max(row["cer"] for row in per_script.values())
    result = {
        "metrics": metrics,
        "per_language": {lang: score_lines(by_lang[lang]) for lang in sorted(by_lang)},
        "groups": {"script": per_script, "kind": {kind: score_lines(by_kind[kind]) for kind in sorted(by_kind)}},
    }
    result["markdown"] = ocr_markdown(result)
    return result


def ocr_markdown(result: dict, title: str = "") -> str:
    """Tables per script, per line kind and per language."""
    m = result["metrics"]
    parts = [title] if title else []
    parts += [
        f"All lines: CER {m['cer']:.4f}, NED {m['ned']:.4f}, exact lines {m['line_accuracy']:.3f}; "
        f"mean CER over scripts {m['mean_cer_over_scripts']:.4f} (worst script {m['max_cer_over_scripts']:.4f}).",
        "",
        markdown_table(result["groups"]["script"], ["cer", "ned", "line_accuracy", "n"], first="script", precision=4),
    ]
    if result["groups"].get("kind"):
        parts += ["", markdown_table(result["groups"]["kind"], ["cer", "ned", "line_accuracy", "n"], first="lines", precision=4)]
    parts += ["", markdown_table(result["per_language"], ["cer", "ned", "line_accuracy", "n"], precision=4)]
    parts += ["", "CER: jiwer 4.0 (pooled character edits / reference characters, spaces count); NED: 1 - mean(Lev / max length) "
              "(OmniDocBench, PaddleOCR); line accuracy: exact match."]
    return "\n".join(parts)


def write_ocr_report(result: dict, out_dir: str | Path, name: str = "ocr") -> dict[str, Path]:
    """Writes ``{name}.json``, ``{name}.md`` and ``{name}_script.png`` (CER per script)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json(result, out_dir / f"{name}.json")}
    (out_dir / f"{name}.md").write_text("# Text-line OCR\n\n" + result["markdown"] + "\n", encoding="utf-8")
    paths["markdown"] = out_dir / f"{name}.md"
    paths["chart"] = bar_chart(
        result["groups"]["script"], ["cer"], out_dir / f"{name}_script.png",
        title="CER per script (lower is better)", ylabel="CER", ylim=None,
    )
    return paths
