"""Text in and out of babeltower: the multilingual tokenizer and batch tokenization.

The project tokenizer is a byte-level BPE (the GPT-2 / RoBERTa scheme) with XLM-R's
special tokens. Byte level means every string maps to tokens: a script, emoji or
symbol absent from the training corpus falls back to its UTF-8 bytes instead of
``<unk>``, and decoding the bytes gives the text back.

Normalisation: input is NFC-normalised (Unicode canonical composition) before
tokenization, and nothing else is changed. So ``decode(encode(x)) == x`` exactly for
any NFC string, spaces included (leading, trailing, repeated, tabs and newlines);
decomposed (NFD) input comes back in its NFC form. Case, width and accents are kept.

A tokenizer is a plain transformers folder (``tokenizer.json`` and friends), so
``transformers.AutoTokenizer.from_pretrained(folder)`` loads it without babeltower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

# Where the packaged default tokenizer lives (built by scripts/build_default_tokenizer.py).
_DEFAULT_TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "assets" / "tokenizer"

#: XLM-R's special tokens, in XLM-R's id order: <s>=0, <pad>=1, </s>=2, <unk>=3, then <mask>.
BOS_TOKEN, PAD_TOKEN, EOS_TOKEN, UNK_TOKEN, MASK_TOKEN = "<s>", "<pad>", "</s>", "<unk>", "<mask>"
SPECIAL_TOKENS: tuple[str, ...] = (BOS_TOKEN, PAD_TOKEN, EOS_TOKEN, UNK_TOKEN, MASK_TOKEN)

# Files whose presence makes a folder loadable by AutoTokenizer. tokenizer.json carries the
# whole fast tokenizer; tokenizer_config.json carries the special tokens and max length.
_REQUIRED_TOKENIZER_FILES: tuple[str, ...] = ("tokenizer.json", "tokenizer_config.json")


def train_tokenizer(
    texts: Iterable[str],
    *,
    vocab_size: int = 8000,
    min_frequency: int = 2,
    model_max_length: int = 128,
):
    """Trains the babeltower byte-level BPE tokenizer on ``texts``.

    Args:
        texts: training strings, in any scripts. Iterated once.
        vocab_size: target vocabulary size, special tokens and the 256 byte symbols
            included. The result is smaller when the corpus has fewer mergeable pairs.
        min_frequency: a pair is merged only if it occurs at least this often.
        model_max_length: longest sequence (special tokens included) the tokenizer
            truncates to by default; match the text encoder's positions.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` whose post-processor wraps a text as
        ``<s> ... </s>`` (a pair as ``<s> A </s></s> B </s>``, as XLM-R does). Save it
        with ``save_pretrained(folder)``.

    Raises:
        ValueError: ``vocab_size`` cannot hold the special tokens and the 256 bytes.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    byte_alphabet = pre_tokenizers.ByteLevel.alphabet()
    minimum = len(SPECIAL_TOKENS) + len(byte_alphabet)
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: the special tokens and the 256 byte symbols "
            f"alone need {minimum}; use vocab_size >= {minimum}"
        )

    tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.NFC()
    # add_prefix_space=False keeps a leading space as a real token instead of inventing one,
    # which is what makes decode(encode(x)) == x hold for text that starts with a word.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 byte symbols are in the vocabulary even if the corpus never uses them;
        # that is the byte fallback that keeps unseen scripts off <unk>.
        initial_alphabet=byte_alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)

    bos_id, eos_id = tokenizer.token_to_id(BOS_TOKEN), tokenizer.token_to_id(EOS_TOKEN)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}",
        pair=f"{BOS_TOKEN} $A {EOS_TOKEN} {EOS_TOKEN} $B {EOS_TOKEN}",
        special_tokens=[(BOS_TOKEN, bos_id), (EOS_TOKEN, eos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        cls_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        sep_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        mask_token=MASK_TOKEN,
        model_max_length=model_max_length,
        padding_side="right",
        truncation_side="right",
        # transformers' clean-up would delete the space before punctuation ("a ." -> "a."),
        # breaking the exact round trip.
        clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"],
    )


def default_tokenizer_path() -> Path:
    """Returns the folder of the tokenizer packaged with babeltower.

    The folder is package data (``babeltower/assets/tokenizer``), built from CLDR
    strings in 40+ locales and the synthetic scene captions by
    ``scripts/build_default_tokenizer.py``.
    """
    return _DEFAULT_TOKENIZER_DIR


def load_tokenizer_or_default(path: str | Path | None):
    """:func:`load_tokenizer` of ``path``, or of the packaged default tokenizer when it is None."""
    return load_tokenizer(path if path else default_tokenizer_path())


def load_tokenizer(path: str | Path):
    """Loads a tokenizer folder written by ``save_pretrained``.

    Args:
        path: a folder holding ``tokenizer.json`` and ``tokenizer_config.json``
            (any transformers fast tokenizer folder, e.g. a hub snapshot of XLM-R).

    Returns:
        The ``transformers.PreTrainedTokenizerFast`` stored there.

    Raises:
        FileNotFoundError: ``path`` is not a folder, or lacks one of the required files;
            the message names the folder and the missing file.
    """
    from transformers import AutoTokenizer

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"tokenizer folder {str(folder)!r} does not exist or is not a folder; pass a folder written by "
            f"tokenizer.save_pretrained(), e.g. babeltower.modalities.text.default_tokenizer_path()"
        )
    for name in _REQUIRED_TOKENIZER_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{str(folder)!r} is not a tokenizer folder: {name} is missing "
                f"(a tokenizer folder holds {', '.join(_REQUIRED_TOKENIZER_FILES)}, as written by save_pretrained)"
            )
    return AutoTokenizer.from_pretrained(str(folder))


def tokenize(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenizes a batch of strings into padded tensors.

    Args:
        tokenizer: a transformers fast tokenizer, e.g. from :func:`load_tokenizer`.
        texts: the strings, one per batch row.
        max_length: longest sequence kept, special tokens included; longer texts are
            truncated on the right (their final ``</s>`` is kept).

    Returns:
        ``{"input_ids": (B, T) int64, "attention_mask": (B, T) int64}`` with
        ``T = min(max_length, longest text)``; padding is on the right with the
        tokenizer's pad id and attention_mask 0.

    Raises:
        TypeError: ``texts`` is a single string instead of a list.
        ValueError: ``max_length`` is below 2 (no room for ``<s>`` and ``</s>``).
    """
    if isinstance(texts, str):
        raise TypeError("tokenize() takes a list of strings; wrap a single text as [text]")
    if max_length < 2:
        raise ValueError(f"max_length={max_length} leaves no room for <s> and </s>; use max_length >= 2")
    batch = tokenizer(
        list(texts),
        padding="longest",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
        return_attention_mask=True,
        return_token_type_ids=False,
    )
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def truncate_bpe_tokenizer(tokenizer, vocab_size: int, name: str = "tokenizer"):
    """The first ``vocab_size`` tokens of a byte-level BPE tokenizer, as a tokenizer of its own.

    A BPE tokenizer trained by 🤗 tokenizers numbers its tokens special tokens first, then
    the 256 byte symbols, then one token per merge in merge order. Keeping the ids below
    ``vocab_size`` and the merges that produce them is again a complete byte-level BPE:
    every string still encodes (rarer words split into more, shorter pieces) and decodes
    back exactly, and every id it emits means the same string in the full tokenizer. The
    speech head uses it for a CTC output layer over the shared tokenizer's most frequent
    units instead of all of them (NeMo gives ASR models a separate, smaller tokenizer; this
    keeps the shared ids).

    Args:
        tokenizer: a transformers fast tokenizer with a byte-level BPE model.
        vocab_size: tokens to keep; ``>= len(tokenizer)`` returns ``tokenizer`` itself.
        name: how error messages name the tokenizer (e.g. its folder).

    Raises:
        ValueError: the tokenizer is not a BPE whose ids follow its merge order, or
            ``vocab_size`` would drop special or byte tokens; the message names ``name``.
    """
    import json

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    if vocab_size >= len(tokenizer):
        return tokenizer
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec["model"]
    why = None
    if model.get("type") != "BPE":
        why = f"its model is {model.get('type')}, not a byte-level BPE"
    else:
        vocab, merges = model["vocab"], model["merges"]
        produced = [vocab.get("".join(m if isinstance(m, list) else m.split(" "))) for m in merges]
        base = produced[0] if produced else len(vocab)
        added = [t["id"] for t in spec.get("added_tokens") or []]
        if produced != list(range(base, base + len(produced))) or len(vocab) != base + len(produced):
            why = "its token ids do not follow its merge order"
        elif vocab_size < base or any(i >= vocab_size for i in added):
            why = f"the first {base} ids are special and byte tokens, which must all be kept"
    if why is not None:
        raise ValueError(
            f"{name}: cannot keep only the first {vocab_size} of its {len(tokenizer)} tokens: {why}; "
            "use vocab_size 0 (the whole tokenizer)"
        )
    model["vocab"] = {t: i for t, i in vocab.items() if i < vocab_size}
    model["merges"] = merges[: vocab_size - base]
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        model_max_length=tokenizer.model_max_length,
        padding_side=tokenizer.padding_side,
        **tokenizer.special_tokens_map,
    )
