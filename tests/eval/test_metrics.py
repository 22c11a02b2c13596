import torch

from babeltower.eval.metrics import make_pools, pooled_recall_at_1, rank_of_target, recall_at_k, zero_shot_accuracy


def test_recall_known_values():
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.4, 0.3], [0.1, 0.2, 0.3]])
    targets = torch.tensor([0, 1, 0])
    # ranks: query0 -> 0, query1 -> 1, query2 -> 2
    assert rank_of_target(sim, targets).tolist() == [0, 1, 2]
    r = recall_at_k(sim, targets, (1, 2, 3))
    assert r == {1: 1 / 3, 2: 2 / 3, 3: 1.0}


def test_ties_are_pessimistic():
    sim = torch.zeros(4, 4)
    assert recall_at_k(sim, torch.arange(4), (1,))[1] == 0.0


def test_pools_have_distinct_groups_and_full_size():
    groups = [i % 7 for i in range(100)]
    pools = make_pools(groups, pool_size=5, seed=1)
    assert pools and all(len(p) == 5 for p in pools)
    for pool in pools:
        assert len({groups[i] for i in pool}) == 5
    flat = [i for p in pools for i in p]
    assert len(flat) == len(set(flat))
    # only 7 distinct groups: at most 100 // 7 * ... each pool needs 5 distinct of 7
    assert len(pools) <= 100 // 5


def test_pooled_recall_perfect_and_shuffled():
    emb = torch.nn.functional.normalize(torch.randn(40, 16), dim=-1)
    pools = make_pools(list(range(40)), 20)
    assert pooled_recall_at_1(emb, emb, pools) == {"t2i_r1": 1.0, "i2t_r1": 1.0}
    shuffled = emb[torch.roll(torch.arange(40), 1)]
    assert pooled_recall_at_1(emb, shuffled, pools)["t2i_r1"] < 0.2


def test_zero_shot_accuracy():
    labels = torch.eye(3)
    images = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    assert zero_shot_accuracy(images, labels, torch.tensor([0, 1, 2, 2])) == 0.75


def test_recall_multi_counts_any_duplicate_as_correct():
    from babeltower.eval.metrics import recall_at_k_multi

    sim = torch.tensor([[0.2, 0.9, 0.1], [0.3, 0.1, 0.8]])
    matches = torch.tensor([[True, True, False], [False, True, False]])
    # query 0: its duplicate (col 1) ranks first -> hit; query 1: two wrong above -> rank 2
    assert recall_at_k_multi(sim, matches, (1, 2, 3)) == {1: 0.5, 2: 0.5, 3: 1.0}
    import pytest

    with pytest.raises(ValueError, match="at least one"):
        recall_at_k_multi(sim, torch.zeros(2, 3, dtype=torch.bool))
