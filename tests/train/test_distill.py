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
