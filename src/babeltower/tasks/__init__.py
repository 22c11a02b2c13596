"""The heads babeltower knows, one module per head, registered in a plain dict.

A task module defines module-level names only (no base class, no decorators):

- ``NAME``: the registry key; ``EVAL_NAME``: its name in ``babeltower eval`` (default NAME);
- ``SYSTEMS``: the LightningModule class paths it owns (checkpoints load only as those);
- ``load(path)``: the inference model from a hub folder or a ``.ckpt``;
- ``add_synth_arguments(parser, kind)`` + ``synth(args) -> {split: paths}`` (optional), answering
  ``babeltower data synth KIND OUT`` for each KIND of ``SYNTH_NAMES`` (default ``(NAME,)``;
  ``args.kind`` says which);
- ``add_eval_arguments(parser)`` + ``evaluate(model, *, data, out, seed, languages, **options)``
  returning a task result (:func:`babeltower.eval.harness.task_result`);
- ``add_verbs(subparsers) -> {verb: handler(args) -> exit code}`` (optional): inference verbs;
- ``demo(ctx) -> {"hub", "result", "paths", "ckpt"}``: the head's part of the main job
  (:class:`babeltower.tasks.common.DemoContext`).

Adding a head is its own files plus one line in :data:`TASKS`. The order of :data:`TASKS`
is the main job's order: the distilled text encoder first, since later heads start from it.
"""

from __future__ import annotations

from types import ModuleType

from babeltower.tasks import asr, contrastive, distill, ocr, t2i, vqa

TASKS: dict[str, ModuleType] = {
    "distill": distill,
    "contrastive": contrastive,
    "t2i": t2i,
    "asr": asr,
    "vqa": vqa,
    "ocr": ocr,
}


def eval_name(task: ModuleType) -> str:
    """The name a task's evaluation has in ``babeltower eval`` and in the results JSON."""
    return getattr(task, "EVAL_NAME", task.NAME)


def evaluators() -> dict[str, ModuleType]:
    """Evaluation name -> task module, for every task that evaluates."""
    return {eval_name(task): task for task in TASKS.values() if hasattr(task, "evaluate")}


def synthesisers() -> dict[str, ModuleType]:
    """``data synth`` kind -> task module."""
    out = {}
    for task in TASKS.values():
        if hasattr(task, "synth"):
            for kind in getattr(task, "SYNTH_NAMES", (task.NAME,)):
                out[kind] = task
    return out


def system_classes() -> tuple[str, ...]:
    """Every LightningModule class path a registered task owns (what `export` may load)."""
    return tuple(path for task in TASKS.values() for path in getattr(task, "SYSTEMS", ()))
