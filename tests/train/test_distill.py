import pytest
import torch

from babeltower.modalities.text import default_tokenizer_path, load_tokenizer, tokenize
from babeltower.train.distill import DistillationSystem, span_alignment

SRC = ["two red circles on the left", "one blue square at the top", "Germany", "January"]
TGT = ["zwei rote Kreise links", "一个蓝色的正方形在上面", "Deutschland", "1月"]


def _batch():
    tok = load_tokenizer(default_tokenizer_path())
    return {"src_text": SRC, "tgt_text": TGT, "student_src": tokenize(tok, SRC, 64), "student_tgt": tokenize(tok, TGT, 64)}


def test_span_alignment():
    teacher = torch.tensor([[[0, 0], [0, 5], [6, 9], [0, 0]]])  # <cls> "hello" "you" <pad>
    student = torch.tensor([[[0, 0], [0, 3], [3, 5], [6, 9]]])  # <s> "hel" "lo" "you"
    a = span_alignment(teacher, student)
    assert torch.allclose(a[0, 1], torch.tensor([0.0, 0.6, 0.4, 0.0]))
    assert torch.allclose(a[0, 2], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert a[0, 0].sum() == 0 and a[0, 3].sum() == 0


def test_losses_fall_and_teacher_not_in_checkpoint():
    torch.manual_seed(0)
    system = DistillationSystem(
        student={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
        token_loss_weight=0.5,
    )
    assert system.student.embed_dim == 384  # projected to the teacher's width
    assert not any(k.startswith("teacher") for k in system.state_dict())
    opt = torch.optim.AdamW([p for p in system.parameters() if p.requires_grad], lr=3e-3)
    batch = _batch()
    first = None
    for _ in range(30):
        out = system._losses(batch)
        first = first if first is not None else {k: float(v) for k, v in out.items()}
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert float(out["loss"]) < 0.5 * first["loss"]
    assert float(out["cos_tgt_teacher"]) > first["cos_tgt_teacher"] + 0.3
    assert float(out["loss_tokens"]) < first["loss_tokens"]


def test_projection_mismatch_names_the_field():
    with pytest.raises(ValueError, match="projection_dim"):
        DistillationSystem(student={"hidden_size": 32, "num_hidden_layers": 1, "projection_dim": 100})
    with pytest.raises(ValueError, match="loss"):
        DistillationSystem(student={"hidden_size": 32, "num_hidden_layers": 1}, loss="l1")


def test_contrastive_distillation_loss_rewards_telling_texts_apart():
    import torch

    from babeltower.train.distill import embedding_distance

    torch.manual_seed(0)
    shared = torch.randn(1, 32) * 4  # one dominant direction, as in e5's embeddings
    teacher = shared + torch.randn(8, 32)
    collapsed = shared.expand(8, 32).clone()  # the common direction only
    faithful = teacher.clone()
    # plain cosine barely separates the two students; the contrastive term does
    cos_gap = embedding_distance(collapsed, teacher, "cosine") - embedding_distance(faithful, teacher, "cosine")
    con_gap = embedding_distance(collapsed, teacher, "contrastive") - embedding_distance(faithful, teacher, "contrastive")
    assert con_gap > 10 * cos_gap > 0
    # a repeated text is not its own negative: its copy is masked out of the softmax, so a
    # faithful student's loss is the same whichever copy each row is matched against
    repeated = torch.cat([teacher[:4], teacher[:4]])
    loss = embedding_distance(repeated.clone(), repeated, "contrastive")
    swapped = embedding_distance(torch.cat([teacher[4:8] * 0 + teacher[:4], teacher[:4]]), repeated, "contrastive")
    unmasked = torch.nn.functional.cross_entropy(
        torch.nn.functional.normalize(repeated, dim=-1) @ torch.nn.functional.normalize(repeated, dim=-1).T / 0.05,
        torch.arange(8))
    assert torch.isfinite(loss) and torch.isclose(loss, swapped) and loss < unmasked
