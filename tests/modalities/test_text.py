"""babeltower.modalities.text: the byte-level multilingual tokenizer."""

import json
import unicodedata

import pytest
import torch

from babeltower.modalities.text import (
    SPECIAL_TOKENS,
    default_tokenizer_path,
    load_tokenizer,
    tokenize,
    train_tokenizer,
)

# One sentence per script, plus text from scripts the default corpus does not contain
# (Cherokee, Tifinagh, Runic, Linear B), emoji sequences and awkward whitespace.
SCRIPTS = {
    "latin": "Ünïcödé café, señor — naïve Œuvre; ß ø å",
    "cyrillic": "Съешь же ещё этих мягких французских булок",
    "greek": "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία",
    "arabic": "صِف خَلقَ خَودِ كَمِثلِ الشَمسِ إِذ بَزَغَت",
    "hebrew": "דג סקרן שט בים מאוכזב ולפתע מצא חברה",
    "devanagari": "ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले",
    "thai": "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า",
    "hangul": "키스의 고유조건은 입술끼리 만나야 하고",
    "han": "天地玄黄，宇宙洪荒。日月盈昃，辰宿列张。",
    "kana": "いろはにほへと ちりぬるを カタカナ ｶﾀｶﾅ",
    "unseen_scripts": "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ ⵜⴰⵎⴰⵣⵉⵖⵜ ᚠᚢᚦᚨᚱᚲ 𐀀𐀁𐀂",
    "emoji": "ok 👍🏽 family 👩‍👩‍👧‍👦 flag 🇯🇵 ❤️",
    "whitespace": "   leading,  double  spaces,\ttab\nnewline and trailing  ",
    "punctuation": "a . b , c ! ( d ) 'e' \"f\" 3.14 1,000 x+y=z",
}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(default_tokenizer_path())


@pytest.fixture(scope="module")
def small_tokenizer():
    corpus = ["the red circle", "the blue square", "a green triangle", "der rote Kreis", "красный круг"] * 5
    return train_tokenizer(corpus, vocab_size=300, min_frequency=2, model_max_length=16)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_default_tokenizer_round_trips_every_script_without_unk(tokenizer, name):
    text = SCRIPTS[name]
    assert unicodedata.is_normalized("NFC", text)
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("name", ["unseen_scripts", "emoji", "cyrillic"])
def test_tiny_corpus_tokenizer_still_round_trips(small_tokenizer, name):
    # Byte fallback: even a 300-token vocabulary trained on five phrases covers every script.
    ids = small_tokenizer(SCRIPTS[name])["input_ids"]
    assert small_tokenizer.unk_token_id not in ids
    assert small_tokenizer.decode(ids, skip_special_tokens=True) == SCRIPTS[name]


def test_nfd_input_comes_back_nfc(tokenizer):
    nfd = unicodedata.normalize("NFD", "café Ünïcödé 한국어")
    ids = tokenizer(nfd)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == unicodedata.normalize("NFC", nfd)


def test_special_tokens_follow_xlm_r(tokenizer):
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tokenizer.bos_token, tokenizer.cls_token, tokenizer.eos_token, tokenizer.sep_token) == (
        "<s>", "<s>", "</s>", "</s>"
    )
    assert (tokenizer.pad_token_id, tokenizer.unk_token, tokenizer.mask_token) == (1, "<unk>", "<mask>")
    pair = tokenizer("a", "b")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(pair) == ["<s>", "a", "</s>", "</s>", "b", "</s>"]


def test_default_tokenizer_asset(tokenizer):
    folder = default_tokenizer_path()
    assert folder.is_dir() and (folder / "tokenizer.json").is_file()
    assert 4000 <= len(tokenizer) <= 8000
    assert tokenizer.model_max_length == 128
    assert sum(p.stat().st_size for p in folder.iterdir()) < 2_000_000
    # Byte-level: all 256 byte symbols are in the vocabulary, so nothing can be unknown.
    vocab = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    from tokenizers.pre_tokenizers import ByteLevel

    assert set(ByteLevel.alphabet()) <= set(vocab)


def test_save_and_load_with_auto_tokenizer(tmp_path, small_tokenizer):
    from transformers import AutoTokenizer

    small_tokenizer.save_pretrained(str(tmp_path))
    for loaded in (AutoTokenizer.from_pretrained(str(tmp_path)), load_tokenizer(tmp_path)):
        text = "  the red 円 circle ✓"
        assert loaded(text)["input_ids"] == small_tokenizer(text)["input_ids"]
        assert loaded.decode(loaded(text)["input_ids"], skip_special_tokens=True) == text
        assert loaded.model_max_length == 16 and loaded.pad_token == "<pad>"


def test_load_tokenizer_names_folder_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        load_tokenizer(tmp_path / "does-not-exist")
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path.name}.*tokenizer\.json is missing"):
        load_tokenizer(tmp_path)


def test_tokenize_pads_to_longest_and_truncates(tokenizer):
    texts = ["a red circle", "a", "a very long caption " * 20]
    batch = tokenize(tokenizer, texts[:2], max_length=64)
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"].dtype == torch.long and batch["input_ids"].shape == batch["attention_mask"].shape
    longest = len(tokenizer(texts[0])["input_ids"])
    assert batch["input_ids"].shape == (2, longest)
    short_len = len(tokenizer(texts[1])["input_ids"])
    assert batch["attention_mask"][1].tolist() == [1] * short_len + [0] * (longest - short_len)
    assert (batch["input_ids"][1, short_len:] == tokenizer.pad_token_id).all()

    truncated = tokenize(tokenizer, texts, max_length=10)
    assert truncated["input_ids"].shape == (3, 10)
    assert truncated["input_ids"][2, -1].item() == tokenizer.eos_token_id  # </s> survives truncation
    with pytest.raises(TypeError, match="list of strings"):
        tokenize(tokenizer, "not a list", max_length=10)


def test_train_tokenizer_rejects_tiny_vocab():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["abc"], vocab_size=100)


@pytest.mark.parametrize("size", [261, 1000, 4096])
def test_truncated_bpe_keeps_shared_ids_and_round_trips(tokenizer, size, tmp_path):
    from babeltower.modalities.text import truncate_bpe_tokenizer

    cut = truncate_bpe_tokenizer(tokenizer, size, "default")
    assert len(cut) == size
    assert [cut.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [
        tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS
    ]
    for text in SCRIPTS.values():
        ids = cut(text, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert max(ids) < size and cut.unk_token_id not in ids
        assert len(ids) >= len(full_ids)
        # Same ids, same strings: the full tokenizer decodes the cut one's pieces.
        assert cut.decode(ids) == tokenizer.decode(ids) == text
    cut.save_pretrained(tmp_path / "cut")
    again = load_tokenizer(tmp_path / "cut")
    assert len(again) == size and again(SCRIPTS["han"])["input_ids"] == cut(SCRIPTS["han"])["input_ids"]


def test_truncated_bpe_frequent_words_stay_whole(tokenizer):
    from babeltower.modalities.text import truncate_bpe_tokenizer

    # Merges are kept in order, so a cut tokenizer splits rare words, not frequent ones.
    cut = truncate_bpe_tokenizer(tokenizer, 2048)
    assert cut("on the left")["input_ids"] == tokenizer("on the left")["input_ids"]
    assert len(cut("a red circle")["input_ids"]) > len(tokenizer("a red circle")["input_ids"])
    assert truncate_bpe_tokenizer(tokenizer, len(tokenizer)) is tokenizer


def test_truncated_bpe_errors_name_the_tokenizer(tokenizer):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from babeltower.modalities.text import truncate_bpe_tokenizer

    with pytest.raises(ValueError, match=r"my-tok: cannot keep only the first 100 .*byte tokens"):
        truncate_bpe_tokenizer(tokenizer, 100, "my-tok")
    word = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1, "b": 2, "c": 3}, unk_token="<unk>"))
    word.pre_tokenizer = pre_tokenizers.Whitespace()
    words = PreTrainedTokenizerFast(tokenizer_object=word, unk_token="<unk>")
    with pytest.raises(ValueError, match="words: .*WordLevel, not a byte-level BPE"):
        truncate_bpe_tokenizer(words, 2, "words")
