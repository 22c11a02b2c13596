import io
import json
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from babeltower.datasets.writer import samples_from_folder, samples_from_manifest, write_dataset, write_shards


def _image_bytes(colour=(255, 0, 0), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(buffer, format=fmt)
    return buffer.getvalue()


def _samples(n: int):
    for i in range(n):
        yield {
            "__key__": f"s{i:04d}",
            "png": _image_bytes((i * 20 % 256, 0, 0)),
            "txt": f"caption {i} – ünïcode",
            "json": {"lang": "de", "index": i},
        }


def test_round_trip_readable_by_plain_webdataset(tmp_path):
    paths = write_shards(_samples(7), tmp_path, max_count=3)
    assert [p.name for p in paths] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert not list(tmp_path.glob("*.partial"))
    url = str(tmp_path / "shard-{000000..000002}.tar")
    samples = list(wds.WebDataset(url, shardshuffle=False).decode("pil"))
    assert [s["__key__"] for s in samples] == [f"s{i:04d}" for i in range(7)]
    assert isinstance(samples[2]["png"], Image.Image) and samples[2]["png"].size == (8, 6)
    assert samples[2]["png"].getpixel((0, 0)) == (40, 0, 0)
    assert samples[5]["txt"] == "caption 5 – ünïcode"
    assert samples[5]["json"] == {"lang": "de", "index": 5}


def test_shards_are_reproducible(tmp_path):
    first = write_shards(_samples(3), tmp_path / "a")
    second = write_shards(_samples(3), tmp_path / "b")
    assert first[0].read_bytes() == second[0].read_bytes()


def test_refuses_to_overwrite_and_overwrite_removes_stale_shards(tmp_path):
    write_shards(_samples(6), tmp_path, max_count=2)  # 3 shards
    with pytest.raises(FileExistsError, match=r"shard-000000\.tar already exists.*overwrite=True.*--overwrite"):
        write_shards(_samples(2), tmp_path)
    paths = write_shards(_samples(2), tmp_path, max_count=2, overwrite=True)
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["shard-000000.tar"] == [p.name for p in paths]
    # another prefix in the same folder is not a conflict
    assert write_shards(_samples(1), tmp_path, prefix="extra")[0].name == "extra-000000.tar"


def test_bad_samples_fail_and_leave_no_shards(tmp_path):
    def bad_after_three():
        yield from _samples(3)
        yield {"__key__": "s0001", "png": b"x"}  # duplicate key

    with pytest.raises(ValueError, match="duplicate __key__ 's0001'"):
        write_shards(bad_after_three(), tmp_path, max_count=2)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"'__key__'.*got 'a\.b'"):
        write_shards([{"__key__": "a.b", "txt": "x"}], tmp_path)
    with pytest.raises(TypeError, match=r"sample 'k': field 'npy' has type int"):
        write_shards([{"__key__": "k", "npy": 3}], tmp_path)
    with pytest.raises(ValueError, match="no samples"):
        write_shards([], tmp_path)


def _write_manifest(path: Path, records: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    return path


def test_manifest_source(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(_image_bytes(fmt="JPEG"))
    absolute = tmp_path / "b.png"
    absolute.write_bytes(_image_bytes())
    manifest = _write_manifest(
        tmp_path / "data.jsonl",
        [
            {"image": "img/a.jpg", "text": "eine Katze", "lang": "de", "source": "web"},
            "",
            {"image": str(absolute), "text": "猫", "lang": "ja", "key": "custom-key"},
        ],
    )
    samples = list(samples_from_manifest(manifest))
    assert [s["__key__"] for s in samples] == ["00000000", "custom-key"]
    assert set(samples[0]) == {"__key__", "jpg", "txt", "json"}
    assert samples[0]["json"] == {"lang": "de", "source": "web"}
    assert samples[1]["png"] == absolute.read_bytes()

    paths = write_dataset(manifest, tmp_path / "out")
    read = list(wds.WebDataset(str(paths[0]), shardshuffle=False).decode("pil"))
    assert [r["txt"] for r in read] == ["eine Katze", "猫"]
    assert read[0]["json"]["lang"] == "de"


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"image": "a.png", "text": "x"', r"data\.jsonl:2: invalid JSON"),
        ({"image": "a.png", "text": "x"}, r"data\.jsonl:2: missing field 'lang'"),
        ({"image": "nope.png", "text": "x", "lang": "en"}, r"data\.jsonl:2: field 'image'.*nope\.png does not exist"),
        ({"text": "x", "lang": "en"}, r"data\.jsonl:2: needs exactly one of the fields 'image' or 'audio'"),
        ({"image": "a.png", "text": 5, "lang": "en"}, r"data\.jsonl:2: field 'text' must be a string"),
        ({"image": "a.txt", "lang": "en"}, r"data\.jsonl:2: field 'image' names 'a\.txt'"),
    ],
)
def test_manifest_errors_name_file_line_and_field(tmp_path, line, message):
    (tmp_path / "a.png").write_bytes(_image_bytes())
    manifest = _write_manifest(tmp_path / "data.jsonl", [{"image": "a.png", "text": "ok", "lang": "en"}, line])
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        list(samples_from_manifest(manifest))


def test_folder_source(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (tmp_path / "cat.01.jpg").write_bytes(_image_bytes(fmt="JPEG"))
    (tmp_path / "cat.01.txt").write_text("une chatte\n")
    (tmp_path / "cat.01.json").write_text('{"lang": "fr", "license": "cc-by"}')
    (sub / "dog.png").write_bytes(_image_bytes())
    (sub / "dog.json").write_text('{"lang": "en"}')
    (tmp_path / "README.md").write_text("ignored")
    samples = list(samples_from_folder(tmp_path))
    assert [s["__key__"] for s in samples] == ["cat_01", "sub__dog"]
    assert samples[0]["txt"] == "une chatte"
    assert samples[0]["json"] == {"lang": "fr", "license": "cc-by"}
    assert "txt" not in samples[1] and "png" in samples[1]
    paths = write_dataset(tmp_path, tmp_path / "out")
    assert len(list(wds.WebDataset(str(paths[0]), shardshuffle=False))) == 2


def test_folder_errors_name_the_file(tmp_path):
    (tmp_path / "a.png").write_bytes(_image_bytes())
    (tmp_path / "a.json").write_text('{"text": "no lang"}')
    with pytest.raises(ValueError, match=r"a\.json: missing field 'lang'"):
        list(samples_from_folder(tmp_path))
    (tmp_path / "a.json").unlink()
    with pytest.raises(ValueError, match=r"a\.png: missing a\.json"):
        list(samples_from_folder(tmp_path))
    (tmp_path / "a.png").unlink()
    (tmp_path / "b.txt").write_text("orphan")
    with pytest.raises(ValueError, match=r"b\.txt: no media file"):
        list(samples_from_folder(tmp_path))


def test_write_dataset_rejects_unknown_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_dataset(tmp_path / "missing.jsonl", tmp_path / "out")
    (tmp_path / "data.csv").write_text("a,b")
    with pytest.raises(ValueError, match=r"data\.csv: expected a \.jsonl manifest or a folder"):
        write_dataset(tmp_path / "data.csv", tmp_path / "out")
