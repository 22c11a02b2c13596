"""Emoji art named in 14 languages: names, splits, rendering and shards."""

import io
import json
import tarfile

import pytest

pytest.importorskip("emoji", reason="pip install emoji (the emoji extra)")

from babeltower.datasets.synthetic import emoji as emoji_data  # noqa: E402
from babeltower.datasets.synthetic.emoji import (  # noqa: E402
    GEOMETRIC_EMOJI,
    EmojiRenderer,
    emoji_inventory,
    emoji_names,
    font_path,
    split_of,
    write_emoji_shards,
)


def _font_or_skip(artist):
    try:
        return font_path(artist)
    except FileNotFoundError as error:
        pytest.skip(str(error))


def test_names_are_the_cldr_names_in_14_languages():
    names = emoji_names("🟤")
    assert len(names) == 14
    assert names["en"] == "brown circle" and names["de"] == "brauner punkt" and names["ja"] == "茶色の丸"
    assert emoji_names("🔸", ["fr", "ko"]) == {"fr": "petit losange orange", "ko": "작은 주황색 마름모"}
    with pytest.raises(KeyError, match="U\\+0041"):
        emoji_names("A")


def test_geometric_set_is_25_distinct_emoji_of_the_inventory():
    inventory = set(emoji_inventory())
    assert len(GEOMETRIC_EMOJI) == len(set(GEOMETRIC_EMOJI)) == 25
    assert set(GEOMETRIC_EMOJI) <= inventory
    english = {emoji_names(c, ["en"])["en"] for c in GEOMETRIC_EMOJI}
    assert len(english) == 25 and "large orange diamond" in english and "brown heart" in english


def test_splits_are_decided_by_the_emoji_and_hold_out_about_a_tenth():
    inventory = emoji_inventory()
    splits = [split_of(c) for c in inventory]
    assert all(split_of(c) == "test" for c in GEOMETRIC_EMOJI)
    share = splits.count("val") / len(splits)
    assert 0.05 < share < 0.15
    assert splits == [split_of(c) for c in inventory]  # deterministic
    assert all(split_of(c, val_percent=0) != "val" for c in inventory)


def test_missing_font_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(emoji_data, "_SYSTEM_FONT_DIRS", ())
    with pytest.raises(FileNotFoundError, match="apt-get install fonts-noto-color-emoji"):
        font_path("noto")
    with pytest.raises(ValueError, match="unknown emoji artist"):
        font_path("picasso")


def test_rendering_keeps_the_fonts_relative_sizes():
    _font_or_skip("openmoji")
    renderer = EmojiRenderer("openmoji")

    def ink(char):
        image = renderer.render(char, 64)
        return sum(1 for p in image.getdata() if min(p) < 200)

    assert renderer.has("🔶") and not renderer.has("A")
    assert ink("🔸") < 0.75 * ink("🔶")  # a small diamond stays smaller (OpenMoji: 81 vs 103 px wide)
    image = renderer.render("🔴", 32, fill=0.8, offset=(0.1, 0.0), background=(230, 230, 230))
    assert image.size == (32, 32) and image.getpixel((0, 0)) == (230, 230, 230)
    red = image.getpixel((19, 16))
    assert red[0] > 150 and red[1] < 120  # the circle is red where its (shifted) centre is


def _read(split_dir):
    rows = []
    for path in sorted(split_dir.glob("*.tar")):
        with tarfile.open(path) as tar:
            members = {m.name: m for m in tar}
            for name, member in members.items():
                if name.endswith(".json"):
                    meta = json.loads(tar.extractfile(member).read())
                    png = tar.extractfile(members[name[:-5] + ".png"]).read()
                    txt = tar.extractfile(members[name[:-5] + ".txt"]).read().decode()
                    rows.append((name[:-5], meta, png, txt))
    return rows


def test_shards_hold_pictures_with_all_names_and_the_geometric_test_split(tmp_path):
    _font_or_skip("openmoji")
    _font_or_skip("noto")
    from PIL import Image

    written = write_emoji_shards(tmp_path, image_size=32, renders_per_emoji=2, max_emoji=4, progress=False)
    assert set(written) == {"train", "val", "test"}
    train, val, test = (_read(tmp_path / s) for s in ("train", "val", "test"))
    assert len(train) == 8 and len(val) == 4 and len(test) == 25
    assert {m["emoji"] for _, m, _, _ in test} == set(GEOMETRIC_EMOJI)
    assert all(m["artist"] == "noto" for _, m, _, _ in test) and all(m["artist"] == "openmoji" for _, m, _, _ in train)
    seen = {m["emoji"] for _, m, _, _ in train + val}
    assert not seen & set(GEOMETRIC_EMOJI)
    assert not {m["emoji"] for _, m, _, _ in train} & {m["emoji"] for _, m, _, _ in val}
    for key, meta, png, txt in train + test:
        assert len(meta["captions"]) == 14 and txt == meta["captions"][meta["lang"]]
        assert Image.open(io.BytesIO(png)).size == (32, 32)
    # two renders of one training emoji differ (size, offset, background); the key names the code points
    first = [png for key, _, png, _ in train if key.endswith("-00")][0]
    second = [png for key, _, png, _ in train if key.endswith("-01")][0]
    assert first != second and train[0][0].startswith("train-")
    with pytest.raises(FileExistsError):
        write_emoji_shards(tmp_path, image_size=32, max_emoji=1, test_artist=None, progress=False)


def test_cli_synth_emoji(tmp_path):
    _font_or_skip("openmoji")
    from babeltower.cli import main

    assert main(["data", "synth", "emoji", str(tmp_path), "--max-emoji", "2", "--renders-per-emoji", "1",
                 "--image-size", "16", "--test-artist", "none", "--languages", "en,fa"]) == 0
    rows = _read(tmp_path / "train")
    assert len(rows) == 2 and all(set(m["captions"]) == {"en", "fa"} for _, m, _, _ in rows)
    assert not (tmp_path / "test").exists()
    with pytest.raises(ValueError, match="no emoji names in"):
        write_emoji_shards(tmp_path / "x", languages=["xx"], progress=False)
