import json
import shutil

import pytest
import torch

from babeltower.models.teacher import Teacher, TeacherConfig, default_teacher_path


@pytest.fixture(scope="module")
def teacher():
    return Teacher(TeacherConfig())


def test_default_teacher_matches_sentence_transformers(teacher):
    """Our AutoModel + pooling + normalisation reproduces sentence-transformers' vectors."""
    from sentence_transformers import SentenceTransformer

    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The sky is blue today."]
    reference = SentenceTransformer(str(default_teacher_path()), device="cpu").encode(texts, convert_to_tensor=True)
    ours = teacher.encode(texts)
    torch.testing.assert_close(ours, reference.cpu(), atol=1e-5, rtol=1e-4)
    assert ours.shape == (3, 384)
    paraphrase = float(ours[0] @ ours[1])
    unrelated = float(ours[0] @ ours[2])
    assert paraphrase > 0.5 > unrelated


def test_teacher_is_frozen(teacher):
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training


def test_missing_files_are_named(tmp_path):
    folder = tmp_path / "teacher"
    shutil.copytree(default_teacher_path(), folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        Teacher(TeacherConfig(path=str(folder)))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        Teacher(TeacherConfig(path=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="TeacherConfig.kind"):
        TeacherConfig(kind="word2vec")


def test_clip_text_tower_as_teacher(tmp_path):
    """A babeltower CLIP hub folder's text tower serves as teacher (AltCLIP's set-up)."""
    from babeltower.models.clip import CLIPConfig, CLIPModel
    from babeltower.models.hub import save_clip
    from babeltower.models.text_encoder import TextEncoderConfig

    clip = CLIPModel(CLIPConfig(text=TextEncoderConfig(hidden_size=32, num_hidden_layers=1), embed_dim=24)).eval()
    save_clip(clip, tmp_path / "clip")
    teacher = Teacher(TeacherConfig(kind="babeltower-clip", path=str(tmp_path / "clip")))
    assert teacher.dim == 24
    emb = teacher.encode(["un cercle rouge", "a red circle"])
    from babeltower.modalities.text import tokenize

    enc = tokenize(teacher.tokenizer, ["un cercle rouge", "a red circle"], 64)
    torch.testing.assert_close(emb, clip.encode_text(enc["input_ids"], enc["attention_mask"]).detach(), atol=1e-5, rtol=1e-5)


def test_text_encoder_folder_as_teacher(tmp_path):
    from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig

    torch.manual_seed(0)
    student = TextEncoder(TextEncoderConfig(projection_dim=16))
    student.save_pretrained(tmp_path / "enc")
    teacher = Teacher(TeacherConfig(kind="text-encoder", path=str(tmp_path / "enc")))
    emb, states, tokens = teacher(["ein roter Kreis", "a red circle"])
    assert emb.shape == (2, 16) and torch.allclose(emb.norm(dim=-1), torch.ones(2))
    assert states.shape[:2] == tokens["input_ids"].shape and teacher.token_dim == 32
    assert not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(FileNotFoundError, match="babeltower_text_encoder.json"):
        Teacher(TeacherConfig(kind="text-encoder", path=str(tmp_path)))
    with pytest.raises(ValueError, match="TeacherConfig.role"):
        TeacherConfig(kind="text-encoder", role="document")
