"""ASR evaluator: WER/CER per language and HiKE code-switching MER/PIER per level.

Input is a list of scored utterances ``{"ref", "hyp", "lang", "meta"}`` (produced by
any model: the evaluator does no decoding), so numbers compare across systems. Metric
conventions (see ../shared/notes/metrics.md and :mod:`babeltower.eval.asr_metrics`):

- ``wer`` / ``cer``: jiwer 4.0 definitions, pooled over the language's corpus (CER
  counts spaces);
- ``cer_no_spaces``: for zh and ja (and any language listed in ``no_space_languages``),
  CER after removing whitespace and punctuation (lmms-eval's variant);
- code-switched utterances (``lang`` "ko-en"): HiKE's mixed error rate (each Hangul
  syllable one token, each English word one token, hypothesis normalisation, loanword
  substitution, per-utterance score averaged) overall and per level (word, phrase,
  sentence), and PIER on the English words. Not jiwer's ``mer`` (match error rate).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable

from babeltower.eval.asr_metrics import cer, cer_no_spaces, corpus_mer, corpus_pier, wer
from babeltower.eval.report import bar_chart, markdown_table, write_json

CODE_SWITCHED = "ko-en"
NO_SPACE_LANGUAGES = ("zh", "ja", "yue", "cmn")


def evaluate_asr(utterances: Iterable[dict], *, no_space_languages=NO_SPACE_LANGUAGES) -> dict:
    """Scores transcripts per language and per code-switching level.

    Args:
        utterances: dicts with ``ref``, ``hyp``, ``lang`` and optional ``meta`` (the shard
            json: ``cs_level`` and ``loanwords`` for code-switched utterances).
        no_space_languages: languages that also get ``cer_no_spaces``.

    Returns:
        Report: ``per_language`` (lang -> wer, cer, [cer_no_spaces], num_utterances),
        ``code_switching`` (MER and PIER per level), ``mean_cer`` over monolingual
        languages, ``markdown``.
    """
    by_lang: dict[str, list[dict]] = defaultdict(list)
    for u in utterances:
        by_lang[u["lang"]].append(u)
    if not by_lang:
        raise ValueError("evaluate_asr got no utterances")
    per_language: dict[str, dict[str, float]] = {}
    for lang in sorted(by_lang):
        items = by_lang[lang]
        refs, hyps = [u["ref"] for u in items], [u["hyp"] for u in items]
        row = {"wer": wer(refs, hyps), "cer": cer(refs, hyps), "num_utterances": len(items)}
        if lang in no_space_languages:
            row["cer_no_spaces"] = cer_no_spaces(refs, hyps)
        per_language[lang] = row
    report: dict = {"task": "asr", "languages": sorted(by_lang), "per_language": per_language}
    mono = [lang for lang in per_language if lang != CODE_SWITCHED]
    if mono:
        report["mean_cer"] = sum(per_language[lang]["cer"] for lang in mono) / len(mono)
        report["mean_wer"] = sum(per_language[lang]["wer"] for lang in mono) / len(mono)
    if CODE_SWITCHED in by_lang:
        items = [
            {
                "ref": u["ref"],
                "hyp": u["hyp"],
                "level": (u.get("meta") or {}).get("cs_level"),
                "loanwords": (u.get("meta") or {}).get("loanwords"),
            }
            for u in by_lang[CODE_SWITCHED]
        ]
        report["code_switching"] = {"mer": corpus_mer(items), "pier": corpus_pier(items)}
    report["settings"] = {
        "wer_cer": "jiwer 4.0 definitions, corpus-pooled; CER counts spaces",
        "cer_no_spaces": f"whitespace and punctuation removed first, for {list(no_space_languages)}",
        "mer": "HiKE mixed error rate (percent), per-utterance mean; PIER on English words (percent)",
    }
    report["markdown"] = asr_markdown(report)
    return report


def asr_markdown(report: dict) -> str:
    table = markdown_table(report["per_language"], ["wer", "cer", "cer_no_spaces", "num_utterances"])
    parts = [table]
    if "mean_cer" in report:
        parts.append(f"\nMean over monolingual languages: CER {report['mean_cer']:.3f}, WER {report['mean_wer']:.3f}.")
    cs = report.get("code_switching")
    if cs:
        levels = {level: {"MER": cs["mer"].get(level, float("nan")), "PIER": cs["pier"].get(level, float("nan"))}
                  for level in ("word", "phrase", "sentence", "all") if level in cs["mer"]}
        parts.append("\n### Korean–English code-switching (HiKE MER / PIER, percent)\n\n" + markdown_table(levels, ["MER", "PIER"], first="level", precision=2))
    return "\n".join(parts)


def write_asr_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """Writes asr.json, asr.md, asr.png (per-language CER/WER) and asr_cs.png (per level)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json(report, out_dir / "asr.json")}
    (out_dir / "asr.md").write_text("# Speech recognition\n\n" + report["markdown"] + "\n")
    paths["markdown"] = out_dir / "asr.md"
    paths["chart"] = bar_chart(
        report["per_language"], ["cer", "wer"], out_dir / "asr.png",
        title="Per-language error rates (lower is better)", ylabel="error rate", ylim=None,
    )
    cs = report.get("code_switching")
    if cs:
        rows = {level: {"MER": cs["mer"][level] / 100, "PIER": cs["pier"].get(level, float("nan")) / 100}
                for level in cs["mer"]}
        paths["chart_code_switching"] = bar_chart(
            rows, ["MER", "PIER"], out_dir / "asr_cs.png",
            title="Korean–English code-switching per level (HiKE MER, PIER; /100)", ylabel="error rate", ylim=None,
        )
    return paths
