"""Retrieval and classification metrics as pure tensor functions.

Conventions (see ../shared/notes/metrics.md): R@k is the fraction of queries whose
true match is among the top k candidates; ties are broken against the query (a
candidate with the same score as the true match and a lower index ranks first),
so a constant model cannot score above chance.
"""

from __future__ import annotations

import random
from typing import Hashable, Sequence

import torch


def rank_of_target(similarity: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each query's target among its candidates.

    Args:
        similarity: (Q, C) scores, higher is better.
        targets: (Q,) index of the true candidate of each query.

    Returns:
        (Q,) long ranks; 0 means the target scored highest. Candidates scoring equal to
        the target count as ranked above it (pessimistic ties).
    """
    target_scores = similarity.gather(1, targets[:, None])  # (Q, 1)
    return (similarity >= target_scores).sum(dim=1) - 1


def recall_at_k(similarity: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """R@k for each k: fraction of queries whose target ranks within the top k."""
    ranks = rank_of_target(similarity, targets)
    return {k: float((ranks < k).double().mean()) for k in ks}


def recall_at_k_multi(similarity: torch.Tensor, matches: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """R@k when a query may have several correct candidates.

    A query counts as retrieved at k when its best-scoring correct candidate ranks
    within the top k; wrong candidates scoring equal to it rank above it (pessimistic
    ties). Used where a split holds items with identical descriptions (two scenes with
    the same attributes), where exact-index R@k would be ill-posed.

    Args:
        similarity: (Q, C) scores.
        matches: (Q, C) bool, True where the candidate is a correct answer; every row
            needs at least one True.
    """
    if not bool(matches.any(dim=1).all()):
        raise ValueError("recall_at_k_multi: every query needs at least one matching candidate")
    best_match = similarity.masked_fill(~matches, float("-inf")).max(dim=1, keepdim=True).values  # (Q, 1)
    ranks = ((similarity >= best_match) & ~matches).sum(dim=1)
    return {k: float((ranks < k).double().mean()) for k in ks}


def make_pools(groups: Sequence[Hashable], pool_size: int, seed: int = 0) -> list[list[int]]:
    """Splits item indices into pools of ``pool_size`` whose items have pairwise distinct groups.

    Retrieval in a pool is only well posed when no two candidates are described by the
    same text; ``groups`` gives, per item, what its description determines (for scenes:
    the attribute tuple). Items are shuffled with ``seed``; an item that would repeat a
    group in every open pool starts a new pool; pools smaller than ``pool_size`` at the
    end are dropped (reported as the number of items used).
    """
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    pools: list[list[int]] = []
    pool_groups: list[set] = []
    for index in order:
        group = groups[index]
        for pool, seen in zip(pools, pool_groups):
            if len(pool) < pool_size and group not in seen:
                pool.append(index)
                seen.add(group)
                break
        else:
            pools.append([index])
            pool_groups.append({group})
    return [pool for pool in pools if len(pool) == pool_size]


def pooled_recall_at_1(image_emb: torch.Tensor, text_emb: torch.Tensor, pools: list[list[int]]) -> dict[str, float]:
    """Mean R@1 over pools, text->image and image->text.

    Args:
        image_emb: (N, D) normalised image embeddings.
        text_emb: (N, D) normalised text embeddings, row i describing image i.
        pools: index lists; within a pool, each text is matched against the pool's images.
    """
    if not pools:
        return {"t2i_r1": float("nan"), "i2t_r1": float("nan")}
    t2i, i2t = [], []
    for pool in pools:
        idx = torch.tensor(pool)
        sim = text_emb[idx] @ image_emb[idx].T  # (P, P): text rows, image columns
        targets = torch.arange(len(pool))
        t2i.append(recall_at_k(sim, targets, (1,))[1])
        i2t.append(recall_at_k(sim.T, targets, (1,))[1])
    return {"t2i_r1": sum(t2i) / len(t2i), "i2t_r1": sum(i2t) / len(i2t)}


def zero_shot_accuracy(image_emb: torch.Tensor, label_emb: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy of classifying images by their most similar label text.

    Args:
        image_emb: (N, D) normalised image embeddings.
        label_emb: (V, D) normalised embeddings of one prompt per class.
        targets: (N,) true class index.
    """
    ranks = rank_of_target(image_emb @ label_emb.T, targets)
    return float((ranks == 0).double().mean())
