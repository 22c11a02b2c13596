"""Cross-lingual transfer (AltCLIP / AltDiffusion's claim): a head trained on English only, scored per language.

Given two evaluation results of the same task on the same data (TaskResult dicts, or the
``per_language`` part of them), one trained on English captions only and one trained on
every language (the reference), reports per language

- the English-only model's score and that score as a fraction of its English score
  (the issue's bar: >= 0.8 in every language),
- the reference model's score and its fraction of English.

    python -m babeltower.eval.transfer ENGLISH_ONLY.json REFERENCE.json --metric t2i_r1_pool --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Mapping, Optional


def _per_language(result: Mapping) -> Mapping[str, Mapping[str, float]]:
    return result.get("per_language", result)


def transfer_table(english_only: Mapping, reference: Optional[Mapping], metric: str, bar: float = 0.8) -> dict:
    """Per-language scores and fractions of English (see the module docstring).

    Raises:
        ValueError: English or ``metric`` is missing from a result (named).
    """
    rows: dict[str, dict[str, float]] = {}
    sources = {"english_only": _per_language(english_only)}
    if reference is not None:
        sources["all_languages"] = _per_language(reference)
    for name, per_language in sources.items():
        if "en" not in per_language or metric not in per_language["en"]:
            raise ValueError(f"{name} result has no English {metric!r} score; languages: {sorted(per_language)}")
        english = per_language["en"][metric]
        for lang, scores in per_language.items():
            if metric not in scores:
                raise ValueError(f"{name} result: language {lang!r} has no {metric!r} score")
            row = rows.setdefault(lang, {})
            row[name] = round(scores[metric], 4)
            row[f"{name}_of_en"] = round(scores[metric] / english, 4) if english else float("nan")
    fractions = {lang: row["english_only_of_en"] for lang, row in rows.items() if lang != "en"}
    failing = sorted(lang for lang, value in fractions.items() if not value >= bar)
    columns = [c for c in ("english_only", "english_only_of_en", "all_languages", "all_languages_of_en")
               if any(c in row for row in rows.values())]
    lines = ["| lang | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for lang in sorted(rows, key=lambda k: (k != "en", k)):
        lines.append(f"| {lang} | " + " | ".join(f"{rows[lang].get(c, float('nan')):.3f}" for c in columns) + " |")
    return {"metric": metric, "bar": bar, "per_language": rows, "min_fraction": min(fractions.values(), default=None),
            "languages_below_bar": failing, "markdown": "\n".join(lines) + "\n"}


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description="Per-language score of an English-only model as a fraction of English")
    parser.add_argument("english_only", help="TaskResult JSON of the English-only model")
    parser.add_argument("reference", nargs="?", help="TaskResult JSON of the all-languages model")
    parser.add_argument("--metric", default="t2i_r1_pool")
    parser.add_argument("--out", help="write transfer.json, transfer.md and transfer.png here")
    args = parser.parse_args(argv)
    load = lambda p: json.loads(Path(p).read_text(encoding="utf-8"))  # noqa: E731
    table = transfer_table(load(args.english_only), load(args.reference) if args.reference else None, args.metric)
    print(table["markdown"])
    if args.out:
        from babeltower.eval.report import bar_chart

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "transfer.json").write_text(json.dumps(table, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (out / "transfer.md").write_text(table["markdown"], encoding="utf-8")
        columns = [c for c in ("english_only_of_en", "all_languages_of_en") if c in next(iter(table["per_language"].values()))]
        bar_chart(table["per_language"], columns, out / "transfer.png",
                  title=f"{args.metric} as a fraction of English", ylabel="fraction of English",
                  reference_lines={"bar 0.8": table["bar"]}, ylim=(0.0, 1.2))
    return table


if __name__ == "__main__":
    main()
