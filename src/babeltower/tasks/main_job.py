"""The main job: every registered head's demo, then one unified evaluation report.

Each head's ``demo`` trains a short run, evaluates it with the head's own ``evaluate``
(the harness's evaluator, so no evaluation runs twice) and exports a hub folder. The
results are gathered into one suite (``runs/demo/eval/results.json``, ``report.md``,
``report.html``) together with ``suite.yaml``, which re-runs the same evaluation with
``babeltower eval --suite runs/demo/eval/suite.yaml``.
"""

from __future__ import annotations

import inspect
import json
import time

import yaml

from babeltower.eval.harness import provenance, write_suite
from babeltower.tasks import TASKS, eval_name
from babeltower.tasks.common import DemoContext


def _order(name: str) -> tuple[int, str]:
    """Registry order, a head's extra runs (``contrastive_e5``) right after it."""
    heads = list(TASKS)
    first = next((i for i, head in enumerate(heads) if name.startswith(head)), len(heads))
    return first, name


def stage_profile(minutes_per_head: dict[str, float], stages: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Seconds per head: total, the timed stages (train, evaluate, export), and ``other``
    (data synthesis, imports, pictures: the rest of the head's time)."""
    profile = {}
    for head, minutes in minutes_per_head.items():
        total = minutes * 60
        timed = {name: round(sec, 1) for name, sec in stages.get(head, {}).items()}
        profile[head] = {"total": round(total, 1), **timed, "other": round(max(0.0, total - sum(timed.values())), 1)}
    return profile


def run_main_job(ctx: DemoContext, heads: list[str]) -> dict:
    """Runs the demos of ``heads`` (registry order), writes the unified report; returns the outputs."""
    unknown = [h for h in heads if h not in TASKS]
    if unknown:
        raise ValueError(f"unknown head(s) {unknown}; babeltower has {list(TASKS)}")
    started = time.time()
    timings = {}
    for name in [h for h in TASKS if h in heads]:
        head_started = time.time()
        ctx.outputs[name] = TASKS[name].demo(ctx)
        timings[name] = (time.time() - head_started) / 60
        print(f"[{name}] done in {timings[name]:.1f} min")
    suite = {"provenance": provenance(seed=0), "tasks": {}}
    entries = {}
    for name, output in sorted(ctx.outputs.items(), key=lambda item: _order(item[0])):
        if not isinstance(output, dict) or not output.get("result") or output.get("task") not in TASKS:
            continue
        task = TASKS[output["task"]]
        # a second run of a head (contrastive_e5) is named after its evaluation too: retrieval_e5
        key = eval_name(task) + name[len(task.NAME):] if name.startswith(task.NAME) else name
        result = output["result"]
        suite["tasks"][key] = {**result, "model": str(output["hub"])}
        params = inspect.signature(task.evaluate).parameters
        entries[key] = {
            "task": eval_name(task), "model": str(output["hub"]), "data": result["data"].get("source"),
            "options": {k: v for k, v in result.get("options", {}).items() if k in params},
        }
    paths = write_suite(suite, ctx.workdir / "eval") if suite["tasks"] else {}
    if entries:
        (ctx.workdir / "eval" / "suite.yaml").write_text(yaml.safe_dump({"seed": 0, "tasks": entries}, sort_keys=False))
    minutes = (time.time() - started) / 60
    profile = stage_profile(timings, ctx.timings)
    if suite["tasks"]:
        (ctx.workdir / "eval" / "timings.json").write_text(json.dumps(profile, indent=2) + "\n")
    print(f"\nmain job done in {minutes:.1f} min (" + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + ")")
    print("seconds per head: " + "; ".join(
        f"{head} " + ", ".join(f"{stage} {sec:.0f}" for stage, sec in stages.items()) for head, stages in profile.items()))
    for name, output in ctx.outputs.items():
        if not isinstance(output, dict):
            continue
        if "ckpt" in output:
            print(f"  {name} checkpoint : {output['ckpt']}")
            print(f"  {name} hub folder : {output['hub']}")
        for kind, path in output.get("paths", {}).items():
            print(f"  {name} {kind:<12}: {path}")
    for kind, path in paths.items():
        print(f"  unified report {kind:<5}: {path}")
    return {"outputs": ctx.outputs, "report": paths, "minutes": minutes}
