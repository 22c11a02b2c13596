import io
import json
import warnings

import pytest
import torch
from PIL import Image

from babeltower.datasets.pipeline import MixedStream, ShardReadError, ShardStream, expand_shards
from babeltower.datasets.writer import write_shards
from babeltower.modalities.image import decode_image


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 128, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


def make_shards(folder, sizes, source="a", png=PNG):
    """Writes one shard per entry of ``sizes``; returns the folder as a spec."""
    folder.mkdir(parents=True, exist_ok=True)
    index = 0
    for shard, size in enumerate(sizes):
        samples = []
        for _ in range(size):
            samples.append({"__key__": f"{source}{index:05d}", "png": png, "json": {"n": index, "source": source}})
            index += 1
        write_shards(samples, folder, prefix=f"shard{shard:03d}", max_count=size)
    return str(folder)


def decode(sample):
    meta = json.loads(sample["json"])
    decode_image(sample["png"], where=sample["__key__"])
    return {"key": sample["__key__"], "source": meta["source"]}


def collate(samples):
    return {"key": [s["key"] for s in samples], "source": [s["source"] for s in samples]}


def keys_of(batches):
    return [k for b in batches for k in b["key"]]


def test_expand_shards_forms(tmp_path):
    spec = make_shards(tmp_path / "d", [1, 1, 1])
    names = [f"{spec}/shard{i:03d}-000000.tar" for i in range(3)]
    assert expand_shards(spec) == names
    assert expand_shards(f"{spec}/shard{{000..002}}-000000.tar") == names
    assert expand_shards(f"{spec}/shard*.tar") == names
    assert expand_shards(f"{names[2]}::{names[0]}") == [names[2], names[0]]
    assert expand_shards([names[1], f"{spec}/shard000-000000.tar"]) == [names[1], names[0]]
    remote = ["pipe:aws s3 cp s3://b/x-0.tar -", "pipe:aws s3 cp s3://b/x-1.tar -", "https://host/y.tar"]
    assert expand_shards("pipe:aws s3 cp s3://b/x-{0..1}.tar -::https://host/y.tar") == remote


def test_expand_shards_errors(tmp_path):
    spec = make_shards(tmp_path / "d", [1, 1])
    with pytest.raises(FileNotFoundError, match=r"shard .*shard{000..002}|shard002-000000\.tar does not exist \(from shard spec"):
        expand_shards(f"{spec}/shard{{000..002}}-000000.tar")
    with pytest.raises(FileNotFoundError, match=r"no shard matches .*nothing\*\.tar"):
        expand_shards(f"{spec}/nothing*.tar")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="contains no .tar shards"):
        expand_shards(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="expands to no shards"):
        expand_shards(" :: ")


def test_one_pass_reads_everything_in_order_without_shuffle(tmp_path):
    spec = make_shards(tmp_path / "d", [3, 4])
    stream = ShardStream(spec, decode=decode, batch_size=2, collate=collate, shuffle_buffer=0, drop_last=False)
    batches = list(stream)
    assert keys_of(batches) == [f"a{i:05d}" for i in range(7)]
    assert [len(b["key"]) for b in batches] == [2, 2, 2, 1]
    assert all(b["bad_samples"] == [] for b in batches)
    with pytest.raises(TypeError):
        len(stream)


def _corrupt_shard(folder):
    folder.mkdir()
    samples = [{"__key__": f"k{i}", "png": PNG, "json": {"n": i, "source": "a"}} for i in range(6)]
    samples[1]["png"] = PNG[: len(PNG) // 2]  # truncated image
    samples[4]["json"] = '{"n": 4, "source": '  # bad json (a str is written verbatim)
    write_shards(samples, folder)
    return str(folder)


def test_corrupt_samples_are_skipped_and_reported_in_band(tmp_path, caplog):
    spec = _corrupt_shard(tmp_path / "bad")
    stream = ShardStream(spec, decode=decode, batch_size=2, collate=collate, shuffle_buffer=0, drop_last=False)
    with caplog.at_level("WARNING"):
        batches = list(stream)
    assert keys_of(batches) == ["k0", "k2", "k3", "k5"]
    reported = [r for b in batches for r in b["bad_samples"]]
    assert [r["key"] for r in reported] == ["k1", "k4"]
    assert all(r["shard"].endswith("shard-000000.tar") for r in reported)
    assert "cannot decode image" in reported[0]["reason"]
    assert "JSONDecodeError" in reported[1]["reason"]
    # reported with the first batch after the skip, not repeated later
    assert [r["key"] for r in batches[0]["bad_samples"]] == ["k1"]
    assert "skipping sample 'k4'" in caplog.text and "shard-000000.tar" in caplog.text


def test_all_samples_bad_raises_instead_of_spinning(tmp_path):
    spec = make_shards(tmp_path / "d", [120], png=b"garbage")
    stream = ShardStream(spec, decode=decode, batch_size=4, collate=collate, samples_per_epoch=40)
    with pytest.raises(RuntimeError, match="first 100 samples all failed to decode"):
        list(stream)


def test_broken_shards_fail_fast_naming_the_shard(tmp_path):
    spec = make_shards(tmp_path / "d", [20])
    shard = tmp_path / "d" / "shard000-000000.tar"
    data = shard.read_bytes()

    def read_all():
        return list(ShardStream(str(shard), decode=decode, batch_size=2, collate=collate, shuffle_buffer=0))

    shard.write_bytes(data[: len(data) // 2])  # truncated mid-member
    with pytest.raises(ShardReadError, match=r"shard000-000000\.tar"):
        read_all()
    shard.write_bytes(data[:2560])  # truncated at a block boundary, between members
    with pytest.raises(ShardReadError, match=r"shard000-000000\.tar"):
        read_all()
    corrupt = bytearray(data)
    corrupt[4 * 1024 : 4 * 1024 + 100] = b"\xff" * 100  # garble the 5th member header (members are 1 KiB here)
    shard.write_bytes(bytes(corrupt))
    with pytest.raises(ShardReadError, match=r"shard000-000000\.tar is corrupt: invalid tar header at byte 4096"):
        read_all()
    shard.write_bytes(b"this is not a tar file" * 100)
    with pytest.raises(ShardReadError, match=r"cannot read shard .*shard000-000000\.tar"):
        read_all()
    stream = ShardStream(spec, decode=decode, batch_size=2, collate=collate)
    shard.unlink()
    with pytest.raises(ShardReadError, match=r"cannot open shard .*shard000-000000\.tar"):
        list(stream)


def test_pipe_shards(tmp_path):
    spec = make_shards(tmp_path / "d", [3])
    url = f"pipe:cat {spec}/shard000-000000.tar"
    stream = ShardStream(url, decode=decode, batch_size=3, collate=collate, shuffle_buffer=0)
    assert keys_of(stream) == ["a00000", "a00001", "a00002"]


UNEVEN = [3, 17, 5, 11, 2, 9, 30, 4]  # 81 samples


@pytest.mark.parametrize("resampled", [False, True])
def test_equal_batch_counts_across_ranks_with_uneven_shards(tmp_path, resampled):
    spec = make_shards(tmp_path / "d", UNEVEN)
    expected = 200 // (3 * 4)
    for rank in range(3):
        stream = ShardStream(
            spec, decode=decode, batch_size=4, collate=collate, samples_per_epoch=200,
            resampled=resampled, rank=rank, world_size=3, shuffle_buffer=8,
        )
        batches = list(stream)
        assert len(stream) == expected
        assert len(batches) == expected
        assert all(len(b["key"]) == 4 for b in batches)


def test_rank_and_world_size_from_environment(tmp_path, monkeypatch):
    spec = make_shards(tmp_path / "d", UNEVEN)
    counts = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        stream = ShardStream(spec, decode=decode, batch_size=5, collate=collate, samples_per_epoch=100)
        counts.append((len(stream), len(list(stream))))
    assert counts == [(10, 10), (10, 10)]


def test_equal_batch_counts_with_two_dataloader_workers(tmp_path):
    spec = make_shards(tmp_path / "d", UNEVEN)
    for rank in range(2):
        stream = ShardStream(
            spec, decode=decode, batch_size=3, collate=collate, samples_per_epoch=100, rank=rank, world_size=2
        )
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # DataLoader warns when len() and the yield count disagree
            batches = list(loader)
        assert len(loader) == 16
        assert len(batches) == 16
        assert all(len(b["key"]) == 3 for b in batches)


def test_bad_samples_reported_from_workers(tmp_path):
    bad = _corrupt_shard(tmp_path / "bad")
    good = make_shards(tmp_path / "good", [6])
    stream = ShardStream([bad, good], decode=decode, batch_size=2, collate=collate, shuffle_buffer=0)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    batches = list(loader)
    assert sorted(r["key"] for b in batches for r in b["bad_samples"]) == ["k1", "k4"]
    assert len(keys_of(batches)) == 10


def test_ranks_see_disjoint_shards_in_one_pass(tmp_path):
    spec = make_shards(tmp_path / "d", UNEVEN)
    seen = []
    for rank in range(2):
        stream = ShardStream(spec, decode=decode, batch_size=1, collate=collate, rank=rank, world_size=2, seed=5)
        stream.set_epoch(3)
        seen.append(set(keys_of(stream)))
    assert seen[0].isdisjoint(seen[1])
    assert len(seen[0] | seen[1]) == sum(UNEVEN)


def test_too_few_shards_for_ranks_and_workers(tmp_path):
    spec = make_shards(tmp_path / "d", [5, 5])
    stream = ShardStream(spec, decode=decode, batch_size=1, collate=collate, rank=0, world_size=3)
    with pytest.raises(ValueError, match=r"2 shards cannot be split over 3 ranks x 1 .*resampled=True"):
        list(stream)
    resampled = ShardStream(
        spec, decode=decode, batch_size=1, collate=collate, rank=0, world_size=3, resampled=True, samples_per_epoch=30
    )
    assert len(list(resampled)) == 10


def test_epoch_changes_order_and_same_epoch_reproduces(tmp_path):
    spec = make_shards(tmp_path / "d", UNEVEN)

    def order(epoch, seed=0):
        stream = ShardStream(spec, decode=decode, batch_size=4, collate=collate, shuffle_buffer=20, seed=seed,
                             drop_last=False)
        stream.set_epoch(epoch)
        return keys_of(stream)

    assert order(0) == order(0)
    assert order(1) == order(1)
    assert order(0) != order(1)
    assert order(0) != order(0, seed=1)
    assert sorted(order(0)) == sorted(order(1))  # one pass: same samples, other order


def test_mixed_stream_respects_weights_and_length(tmp_path):
    a = ShardStream(make_shards(tmp_path / "a", [10, 10], "a"), decode=decode, batch_size=2, collate=collate,
                    samples_per_epoch=300)
    b = ShardStream(make_shards(tmp_path / "b", [10, 10], "b"), decode=decode, batch_size=2, collate=collate,
                    samples_per_epoch=100)
    mixed = MixedStream([a, b], [3.0, 1.0], seed=0)
    assert len(mixed) == 200
    batches = list(mixed)
    assert len(batches) == 200
    share_a = sum(b["source"][0] == "a" for b in batches) / len(batches)
    assert 0.65 < share_a < 0.85
    assert all(len(set(b["source"])) == 1 for b in batches)  # batch-level mixing
    mixed.set_epoch(4)
    assert a.epoch == b.epoch == 4
    with pytest.raises(ValueError, match="stream 1 .*has no samples_per_epoch"):
        MixedStream([a, ShardStream(str(tmp_path / "b"), decode=decode, batch_size=2, collate=collate)], [1, 1])
    with pytest.raises(ValueError, match="2 weights for 1 streams"):
        MixedStream([a], [1, 1])


def test_full_epoch_shows_every_sample_exactly_once(tmp_path):
    """samples_per_epoch == dataset size with a shuffle buffer: each sample once, none repeated."""
    import webdataset as wds

    from babeltower.datasets.pipeline import ShardStream

    for s in range(3):
        with wds.TarWriter(str(tmp_path / f"s-{s}.tar")) as sink:
            for i in range(40):
                sink.write({"__key__": f"k{s}_{i:03d}", "txt": f"{s}-{i}"})
    stream = ShardStream(
        str(tmp_path),
        decode=lambda x: {"key": x["__key__"]},
        batch_size=8,
        collate=lambda xs: {"keys": [x["key"] for x in xs]},
        shuffle_buffer=50,
        samples_per_epoch=120,
    )
    keys = [k for batch in stream for k in batch["keys"]]
    assert len(keys) == 120 and len(set(keys)) == 120
