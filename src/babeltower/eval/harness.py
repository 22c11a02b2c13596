"""The unified evaluation harness: any set of tasks, one results JSON, one report.

Each task module (:mod:`babeltower.tasks`) evaluates its head and returns a *task
result* built with :func:`task_result`: the same schema for every head,

.. code-block:: text

    {"task": "asr",                       # the evaluation's name (retrieval, bitext, asr, t2i, ocr, vqa)
     "metrics": {"cer": 0.03, ...},       # overall
     "per_language": {"ko": {"cer": 0.01, ..., "n": 40}, ...},
     "groups": {"cs_level": {"word": {"mer": 15.2, "n": 29}, ...}},   # script, level, question type ...
     "primary": "cer", "higher_is_better": false,   # the figure of the languages x tasks table
     "n": 400,                            # samples scored
     "samples": [{"id", "lang", "reference", "prediction", "prompt_hash"}, ...],
     "data": {"source": "...", "sha256": "..."},    # what was evaluated, by content
     "options": {...}, "markdown": "the task's own table"}

:func:`run_suite` runs several tasks and :func:`write_suite` writes ``results.json``
(sorted keys, floats rounded to 6 digits, no timings or dates: the same seed gives the
same bytes), ``report.md`` and a static ``report.html`` (charts embedded as data URIs,
no network). Both reports open with a languages x tasks table of each task's primary
metric. The run's provenance (package versions, git commit, seed) is recorded beside
the results.

Answer extraction and normalisation belong to each task's evaluator and are documented
there; the harness never guesses: a prediction a task cannot parse is scored wrong by
that task.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

SCHEMA_VERSION = 1
SAMPLE_KEYS = ("id", "lang", "reference", "prediction", "prompt_hash")
#: Packages whose versions go into the results (they change numbers when they change).
VERSIONED_PACKAGES = (
    "babeltower", "torch", "transformers", "diffusers", "tokenizers", "lightning", "webdataset", "jiwer",
    "open_clip_torch", "numpy", "pillow",
)


def prompt_hash(value: str | bytes) -> str:
    """A short, stable hash of a sample's input (a prompt's text or an input's bytes)."""
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return hashlib.sha1(data).hexdigest()[:16]


def data_fingerprint(source: str | Path | list | None, files: Optional[Iterable[str | Path]] = None) -> dict:
    """``{"source", "sha256"}`` of the evaluation data: a hash of the files' names and bytes.

    Args:
        source: what the user named (a shard folder, brace pattern, file); for display.
        files: the files read; default: the shards ``source`` expands to. Generated data
            (``source`` None) hashes to the empty string; the task records its seed instead.
    """
    if source is None and files is None:
        return {"source": None, "sha256": ""}
    if files is None:
        from babeltower.datasets.pipeline import expand_shards

        files = expand_shards(source)
    digest = hashlib.sha256()
    for path in sorted(str(f) for f in files):
        if path.startswith("pipe:") or "://" in path:
            digest.update(path.encode())  # a stream we cannot re-read cheaply: its address stands for it
            continue
        digest.update(Path(path).name.encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return {"source": source if isinstance(source, (str, type(None))) else [str(s) for s in source],
            "sha256": digest.hexdigest()}


def task_result(
    task: str,
    *,
    metrics: Mapping[str, float],
    per_language: Mapping[str, Mapping[str, float]],
    primary: str,
    higher_is_better: bool,
    samples: list[dict],
    data: dict,
    groups: Optional[Mapping[str, Mapping[str, Mapping[str, float]]]] = None,
    options: Optional[dict] = None,
    markdown: str = "",
) -> dict:
    """A task's results in the harness schema (see the module docstring); validates it.

    Raises:
        ValueError: naming the task and the field that breaks the schema.
    """
    if primary not in metrics:
        raise ValueError(f"task {task!r}: primary metric {primary!r} is not among its metrics {sorted(metrics)}")
    for lang, row in per_language.items():
        if "n" not in row:
            raise ValueError(f"task {task!r}: per_language[{lang!r}] has no sample count 'n'")
    for i, sample in enumerate(samples):
        missing = [k for k in SAMPLE_KEYS if k not in sample]
        if missing:
            raise ValueError(f"task {task!r}: samples[{i}] lacks {missing}; every sample needs {list(SAMPLE_KEYS)}")
    return {
        "task": task,
        "metrics": dict(metrics),
        "per_language": {lang: dict(row) for lang, row in per_language.items()},
        "groups": {name: {k: dict(v) for k, v in group.items()} for name, group in (groups or {}).items()},
        "primary": primary,
        "higher_is_better": bool(higher_is_better),
        "n": len(samples),
        "samples": samples,
        "data": data,
        "options": dict(options or {}),
        "markdown": markdown,
    }


def _clean(value: Any) -> Any:
    """JSON-ready: floats rounded to 6 digits (NaN/inf as null), paths and tuples as plain types."""
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _clean(value.item())
    return value


def provenance(seed: int) -> dict:
    """Seed, package versions and the git commit of the code that produced the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
            timeout=10,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"seed": seed, "versions": versions, "git_commit": commit, "schema_version": SCHEMA_VERSION}


def run_suite(
    entries: Mapping[str, Mapping[str, Any]],
    evaluators: Mapping[str, Callable[..., dict]],
    *,
    out_dir: str | Path,
    seed: int = 0,
    languages: Optional[list[str]] = None,
    subfolders: bool = True,
) -> dict:
    """Evaluates every entry ``{eval_name: {"model", "data", "options"}}`` and gathers the results.

    Args:
        entries: per entry name, the model path, the data (None: the task generates its
            own held-out set from ``seed``), task options and optionally ``task`` (the
            evaluation to run; default the entry's name).
        evaluators: evaluation name -> the task's ``evaluate`` function.
        out_dir: each task writes its own report into ``out_dir/<name>/`` (into
            ``out_dir`` itself with ``subfolders=False``, for a single task).
        seed: passed to every task.
        languages: restrict every task to these languages (None: all each task has).
    """
    out_dir = Path(out_dir)
    results = {}
    for name, entry in entries.items():
        kind = entry.get("task", name)  # an entry may name its evaluation: two retrieval models side by side
        if kind not in evaluators:
            raise ValueError(f"unknown evaluation {kind!r} (entry {name!r}); babeltower evaluates {sorted(evaluators)}")
        if not entry.get("model"):
            raise ValueError(f"evaluation {name!r} names no model: give `model: PATH` (a hub folder or .ckpt)")
        print(f"[eval] {name}: {entry['model']}")
        result = evaluators[kind](
            str(entry["model"]), data=entry.get("data"), out=str(out_dir / name if subfolders else out_dir), seed=seed,
            languages=entry.get("languages", languages), **dict(entry.get("options") or {}),
        )
        result["model"] = str(entry["model"])
        results[name] = result
    return {"provenance": provenance(seed), "tasks": results}


def languages_by_tasks(results: Mapping[str, dict]) -> tuple[list[str], dict[str, dict[str, Optional[float]]]]:
    """(task columns, rows lang -> {task: primary metric}) for the report's top table."""
    columns = [f"{name} ({r['primary']}{'↑' if r['higher_is_better'] else '↓'})" for name, r in results.items()]
    languages = sorted({lang for r in results.values() for lang in r["per_language"]})
    rows: dict[str, dict[str, Optional[float]]] = {}
    for lang in languages:
        rows[lang] = {col: results[name]["per_language"].get(lang, {}).get(results[name]["primary"])
                      for col, name in zip(columns, results)}
    rows["**all**"] = {col: results[name]["metrics"][results[name]["primary"]] for col, name in zip(columns, results)}
    return columns, rows


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def suite_markdown(suite: dict) -> str:
    """The report: the languages x tasks table, then each task's own table and groups."""
    results = suite["tasks"]
    columns, rows = languages_by_tasks(results)
    lines = ["# babeltower evaluation", "", "## Languages x tasks (each task's primary metric)", "",
             "| lang | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {lang} | " + " | ".join(_fmt(row[c]) for c in columns) + " |" for lang, row in rows.items()]
    prov = suite["provenance"]
    lines += ["", f"Seed {prov['seed']}, git commit `{prov['git_commit']}`, "
              + ", ".join(f"{k} {v}" for k, v in prov["versions"].items() if v), ""]
    for name, result in results.items():
        lines += [f"## {name}", "", f"Model `{result.get('model')}`; {result['n']} samples; data "
                  f"`{result['data'].get('source')}` (sha256 {str(result['data'].get('sha256'))[:12] or '–'}).", ""]
        metrics = result["metrics"]
        lines += ["| metric | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|",
                  "| overall | " + " | ".join(_fmt(v) for v in metrics.values()) + " |", ""]
        for group, values in result["groups"].items():
            keys = sorted({k for row in values.values() for k in row})
            lines += [f"**by {group}**", "", f"| {group} | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
            lines += [f"| {g} | " + " | ".join(_fmt(row.get(k)) for k in keys) + " |" for g, row in values.items()]
            lines.append("")
        if result.get("markdown"):
            lines += [result["markdown"], ""]
    return "\n".join(lines)


def _chart(suite: dict, path: Path) -> Optional[Path]:
    """One bar group per language, one bar per task (primary metric, on its own 0..max scale)."""
    from babeltower.eval.report import bar_chart

    results = suite["tasks"]
    columns, rows = languages_by_tasks(results)
    rows = {k: v for k, v in rows.items() if not k.startswith("**")}
    if not rows:
        return None
    normalised = {}
    for lang, row in rows.items():
        normalised[lang] = {}
        for col, name in zip(columns, results):
            value = row[col]
            if value is None:
                value = float("nan")
            elif not results[name]["higher_is_better"]:
                value = max(0.0, 1.0 - value / (100.0 if value > 1.5 else 1.0))  # error rates -> 1 - rate
            normalised[lang][col] = value
    return bar_chart(normalised, columns, path, title="Per-language scores (error rates shown as 1 - rate)")


def suite_html(suite: dict, markdown: str, images: list[Path]) -> str:
    """A static page: the Markdown as preformatted sections plus the charts inline (no network)."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>babeltower evaluation</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "pre{white-space:pre-wrap}</style></head><body>"]
    table_rows: list[str] = []
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            tag = "th" if not table_rows else "td"
            table_rows.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        if table_rows:
            parts.append("<table>" + "".join(table_rows) + "</table>")
            table_rows = []
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 4)
            parts.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            parts.append(f"<p>{html.escape(line)}</p>")
    if table_rows:
        parts.append("<table>" + "".join(table_rows) + "</table>")
    for image in images:
        data = base64.b64encode(Path(image).read_bytes()).decode()
        parts.append(f"<h3>{html.escape(Path(image).name)}</h3><img alt='{html.escape(Path(image).name)}' "
                     f"src='data:image/png;base64,{data}' style='max-width:100%'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_suite(suite: dict, out_dir: str | Path) -> dict[str, Path]:
    """Writes ``results.json``, ``report.md``, ``report.html`` (+ ``languages.png``); returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = _clean({**suite, "tasks": {name: {k: v for k, v in result.items() if k != "paths"}
                                       for name, result in suite["tasks"].items()}})
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    paths["json"].write_text(json.dumps(clean, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    markdown = suite_markdown(clean)
    paths["markdown"].write_text(markdown + "\n", encoding="utf-8")
    images = []
    chart = _chart(clean, out_dir / "languages.png")
    if chart is not None:
        paths["chart"] = chart
        images.append(chart)
    images += sorted(p for p in out_dir.glob("*/*.png"))  # each task's own charts
    paths["html"].write_text(suite_html(clean, markdown, images), encoding="utf-8")
    return paths
