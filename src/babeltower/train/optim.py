"""Optimisation shared by every babeltower system: AdamW with linear warm-up and cosine decay.

Every system's ``configure_optimizers`` is one call to :func:`adamw_with_cosine`, which
reads the same hyper-parameter names from the system (``learning_rate``,
``weight_decay``, ``warmup_steps``, ``min_lr_ratio``, optionally ``betas``), so a
schedule fix lands in every head at once.

The length of the cosine schedule is the run's length: ``trainer.max_steps`` when set,
else Lightning's estimate from epochs and batches per epoch. A stream without a known
length (no ``samples_per_epoch``) and no ``max_steps`` has no estimate (Lightning
reports ``-1``); a schedule built on that would drop the learning rate to its floor
right after warm-up and train on silently. That is an error here, naming the fields
that would fix it.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

import torch


def cosine_with_warmup(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no decay for biases, norms, embeddings-scale scalars (CLIP practice)."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "logit_scale" in name or "norm" in name.lower() or ".ln" in name or "position" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def schedule_length(trainer) -> int:
    """Optimizer steps the run will take: ``max_steps``, else Lightning's estimate.

    A run shorter than its warm-up (a smoke test) stays in warm-up throughout.

    Raises:
        ValueError: when neither is known.
    """
    if trainer.max_steps is not None and trainer.max_steps > 0:
        total = trainer.max_steps
    else:
        estimate = trainer.estimated_stepping_batches
        if estimate is None or not math.isfinite(float(estimate)) or estimate <= 0:
            raise ValueError(
                "the learning-rate schedule needs the run's length, and this run has none: set "
                "trainer.max_steps, or data.init_args.samples_per_epoch together with trainer.max_epochs "
                "(a shard stream without samples_per_epoch has no length)"
            )
        total = int(estimate)
    return total


def adamw_with_cosine(
    system,
    params: Iterable,
    *,
    betas: Optional[tuple[float, float]] = None,
    eps: float = 1e-6,
    min_lr_ratio: Optional[float] = None,
) -> dict:
    """AdamW over ``params`` with warm-up + cosine decay, in Lightning's return format.

    Args:
        system: the LightningModule; its hparams give ``learning_rate``, ``weight_decay``,
            ``warmup_steps``, ``min_lr_ratio`` and (when present) ``betas``.
        params: parameters or parameter groups (see :func:`param_groups`).
        betas: AdamW betas when the system has no ``betas`` hyper-parameter.
        eps: AdamW epsilon.
        min_lr_ratio: final learning rate as a fraction of the peak when the system has no
            ``min_lr_ratio`` hyper-parameter.
    """
    hp = system.hparams
    betas = tuple(hp.get("betas") or betas or (0.9, 0.999))
    floor = hp.get("min_lr_ratio", min_lr_ratio if min_lr_ratio is not None else 0.0)
    optimizer = torch.optim.AdamW(
        params, lr=hp.learning_rate, weight_decay=hp.get("weight_decay", 0.0), betas=betas, eps=eps
    )
    total = schedule_length(system.trainer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_with_warmup(step, hp.warmup_steps, total, floor)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
