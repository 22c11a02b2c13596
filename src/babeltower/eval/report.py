"""Report writers shared by every evaluator: JSON, Markdown table, per-language bar chart."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Optional, Sequence


def _fmt(value, precision: int = 3) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{precision}f}"
    return str(value)


def markdown_table(
    rows: Mapping[str, Mapping[str, float]], columns: Sequence[str], first: str = "lang", precision: int = 3
) -> str:
    """Rows keyed by language (or any name), one column per metric, floats to ``precision`` digits."""
    header = f"| {first} | " + " | ".join(columns) + " |"
    rule = "|" + "---|" * (len(columns) + 1)
    lines = [header, rule]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row.get(c, float("nan")), precision) for c in columns) + " |")
    return "\n".join(lines)


def bar_chart(
    rows: Mapping[str, Mapping[str, float]],
    columns: Sequence[str],
    path: str | Path,
    title: str,
    ylabel: str = "score",
    reference_lines: Optional[Mapping[str, float]] = None,
    ylim: Optional[tuple[float, float]] = (0.0, 1.0),
) -> Path:
    """Grouped bar chart: one group per row (language), one bar per column (metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    width = 0.8 / max(1, len(columns))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2), 3.8), dpi=110)
    for j, column in enumerate(columns):
        values = [rows[n].get(column, float("nan")) for n in names]
        xs = [i + (j - (len(columns) - 1) / 2) * width for i in range(len(names))]
        ax.bar(xs, [0 if math.isnan(v) else v for v in values], width=width, label=column)
    for label, y in (reference_lines or {}).items():
        ax.axhline(y, linestyle="--", linewidth=1, color="grey")
        ax.text(len(names) - 0.5, y, f" {label}", va="bottom", ha="right", fontsize=8, color="grey")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=min(4, len(columns)), loc="upper left", bbox_to_anchor=(0, -0.12))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_json(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=float))
    return path
