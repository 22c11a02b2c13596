import io
import json
import warnings

import pytest
import torch
from PIL import Image

from babeltower.datasets.pipeline import (
    MixedStream,
    ShardReadError,
    ShardStream,
    eval_samples,
    eval_stream,
    expand_shards,
)
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


def test_evaluators_read_the_whole_test_set_in_order_whatever_the_rank(tmp_path, monkeypatch):
    """eval_stream / eval_samples: every sample once, in order, bad ones skipped and listed,
    also inside a DDP job's environment (single_pass_stream would read this rank's share)."""
    spec = _corrupt_shard(tmp_path / "bad")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    batches = list(eval_stream(spec, decode=decode, collate=collate, batch_size=4))
    assert keys_of(batches) == ["k0", "k2", "k3", "k5"]
    assert [r["key"] for b in batches for r in b["bad_samples"]] == ["k1", "k4"]
    skipped = []
    assert [s["key"] for s in eval_samples(spec, decode, skipped)] == ["k0", "k2", "k3", "k5"]
    assert [r["key"] for r in skipped] == ["k1", "k4"] and "JSONDecodeError" in skipped[1]["reason"]


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
    stream = ShardStream([bad, good], decode=decode, batch_size=2, collate=collate, shuffle_buffer=0, drop_last=False)
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


def test_fewer_shards_than_ranks_still_split_every_sample(tmp_path):
    """Shards are split by sample, so 2 shards serve 3 ranks; fewer samples than readers is an error."""
    spec = make_shards(tmp_path / "d", [5, 5])
    seen = [keys_of(ShardStream(spec, decode=decode, batch_size=1, collate=collate, rank=r, world_size=3))
            for r in range(3)]
    assert sorted(k for keys in seen for k in keys) == [f"a{i:05d}" for i in range(10)]
    assert [len(keys) for keys in seen] == [4, 3, 3]
    resampled = ShardStream(
        spec, decode=decode, batch_size=1, collate=collate, rank=0, world_size=3, resampled=True, samples_per_epoch=30
    )
    assert len(list(resampled)) == 10
    tiny = make_shards(tmp_path / "tiny", [2])
    stream = ShardStream(tiny, decode=decode, batch_size=1, collate=collate, rank=2, world_size=3, samples_per_epoch=3)
    with pytest.raises(ValueError, match=r"hold 2 samples, fewer than the 3 readers \(3 ranks x 1"):
        list(stream)


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


# ----------------------------------------------------------------- issue 16: sharding, accounting, resume


def _loader_keys(loader):
    return [k for batch in loader for k in batch["key"]]


@pytest.mark.parametrize("workers", [0, 2])
def test_uneven_shards_shared_across_ranks_without_duplicates_or_starvation(tmp_path, workers):
    """Shards of 300/100/20 on 2 ranks: each rank gets half of every epoch, no sample twice (issue 16.9)."""
    from babeltower.datasets.pipeline import EpochLoader

    spec = make_shards(tmp_path / "d", [300, 100, 20])
    for epoch in range(3):
        per_rank = []
        for rank in range(2):
            stream = ShardStream(spec, decode=decode, batch_size=10, collate=collate, samples_per_epoch=420,
                                 rank=rank, world_size=2, shuffle_buffer=50, seed=1)
            stream.set_epoch(epoch)
            keys = _loader_keys(EpochLoader(stream, num_workers=workers))
            assert len(keys) == 210 == len(set(keys))  # 21 batches of 10, no duplicate within the rank
            per_rank.append(set(keys))
        assert per_rank[0].isdisjoint(per_rank[1])
        assert len(per_rank[0] | per_rank[1]) == 420
        # neither rank is stuck with the small shard: both draw from the big one
        assert all(sum(k < "a00300" for k in keys) > 100 for keys in per_rank)


def test_seed_everything_drives_the_data_order(tmp_path, monkeypatch):
    """With seed=None the stream follows PL_GLOBAL_SEED (what seed_everything sets) (issue 16.9)."""
    import lightning as L

    spec = make_shards(tmp_path / "d", [30, 30])

    def order():
        return keys_of(ShardStream(spec, decode=decode, batch_size=4, collate=collate, shuffle_buffer=20,
                                   drop_last=False))

    L.seed_everything(1)
    first = order()
    assert order() == first
    L.seed_everything(2)
    assert order() != first
    monkeypatch.setenv("PL_GLOBAL_SEED", "1")
    assert order() == first


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("world_size", [1, 3])
def test_every_skipped_sample_is_reported_once_whatever_the_workers(tmp_path, workers, drop_last, world_size):
    """Corrupt samples after a worker's last full batch are reported too (issue 16.8: was one short per worker)."""
    from babeltower.datasets.pipeline import EpochLoader

    folder = tmp_path / "d"
    folder.mkdir()
    samples = [{"__key__": f"k{i:03d}", "png": PNG, "json": {"n": i, "source": "a"}} for i in range(47)]
    bad = {5, 17, 30, 44, 45, 46}  # the last three come after every worker's last full batch
    for i in bad:
        samples[i]["png"] = b"not a png"
    write_shards(samples, folder, max_count=16)
    reported = []
    for rank in range(world_size):
        stream = ShardStream(str(folder), decode=decode, batch_size=4, collate=collate, shuffle_buffer=0,
                             drop_last=drop_last, rank=rank, world_size=world_size)
        loader = EpochLoader(stream, num_workers=workers)
        batches = list(loader)
        reported += [r["key"] for b in batches for r in b["bad_samples"]] + [r["key"] for r in loader.unreported]
        assert all("__position__" not in b for b in batches)
    assert sorted(reported) == sorted(f"k{i:03d}" for i in bad)


def test_balanced_validation_gives_every_rank_the_same_batch_count(tmp_path):
    """Validation shards of 70 and 30 samples on 2 and 3 ranks: equal batch counts, every sample once (issue 16.2)."""
    from babeltower.datasets.pipeline import EpochLoader, single_pass_stream

    spec = make_shards(tmp_path / "d", [70, 30])
    for world_size, workers, batch_size in [(2, 0, 8), (3, 0, 8), (2, 2, 16), (4, 1, 64), (1, 2, 16)]:
        counts, real = [], []
        for rank in range(world_size):
            stream = single_pass_stream(spec, decode=decode, collate=collate, batch_size=batch_size)
            stream.set_distributed(rank, world_size)
            batches = list(EpochLoader(stream, num_workers=workers))
            counts.append(len(batches))
            real.extend(k for b in batches if not b.get("padding") for k in b["key"])
            assert all(len(b["key"]) == 1 for b in batches if b.get("padding"))
        assert len(set(counts)) == 1, (world_size, workers, counts)
        assert sorted(real) == [f"a{i:05d}" for i in range(100)]
        if world_size == 1:  # one process: nothing to balance, so never a repeated sample
            assert not any(b.get("padding") for b in batches)


def _consume(loader, stop_after):
    """Trains on ``stop_after`` batches (the loader is read one batch ahead, like Lightning) and saves."""
    keys, iterator = [], iter(loader)
    batch = next(iterator)
    for _ in range(stop_after):
        keys.extend(batch["key"])
        batch = next(iterator)  # prefetched, never trained
    object.__setattr__(loader, "_trainer", _FakeTrainer(stop_after))
    return keys, loader.state_dict()


class _FakeTrainer:
    """The attribute path EpochLoader reads: batches trained so far in the epoch."""

    def __init__(self, processed):
        progress = type("P", (), {"current": type("C", (), {"processed": processed})()})()
        self.fit_loop = type("F", (), {"epoch_loop": type("E", (), {"batch_progress": progress})()})()


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("mixed", [False, True])
def test_exact_mid_epoch_resume(tmp_path, workers, mixed):
    """Stop mid-epoch, restore the loader state in a fresh loader: each sample of the epoch exactly once (16.10)."""
    from babeltower.datasets.pipeline import EpochLoader

    folder = tmp_path / "d"
    folder.mkdir()
    samples = [{"__key__": f"k{i:03d}", "png": PNG, "json": {"n": i, "source": "a"}} for i in range(120)]
    for i in (3, 50, 51, 90):
        samples[i]["png"] = b"broken"
    write_shards(samples, folder, max_count=25)
    spec = make_shards(tmp_path / "b", [40, 40], source="b")

    def make():
        stream = ShardStream(str(folder), decode=decode, batch_size=5, collate=collate, shuffle_buffer=30,
                             samples_per_epoch=110, seed=3)
        if mixed:
            other = ShardStream(spec, decode=decode, batch_size=5, collate=collate, shuffle_buffer=30,
                                samples_per_epoch=60, seed=3)
            stream = MixedStream([stream, other], [2.0, 1.0], seed=3)
        stream.set_epoch(2)
        return EpochLoader(stream, num_workers=workers)

    full = _loader_keys(make())
    first, state = _consume(make(), stop_after=9)
    resumed = make()
    resumed.load_state_dict(state)
    rest = _loader_keys(resumed)
    assert sorted(first + rest) == sorted(full)  # the same multiset: nothing lost, nothing repeated
    assert len(first + rest) == (34 if mixed else 22) * 5
    if not mixed:  # a mixture's sources cycle past their own epoch; a plain stream never repeats
        assert len(set(first + rest)) == len(first + rest)
    again = _loader_keys(resumed)  # the next iteration is a whole epoch again
    assert sorted(again) == sorted(full)


def test_fast_tar_reader_matches_tarfile_on_long_names_gzip_and_members(tmp_path):
    """The plain-tar reader and the tarfile path (gzip) give the same samples, pax long names included."""
    import gzip
    import tarfile

    from babeltower.datasets.pipeline import read_tar

    long_key = "sub/" + "x" * 150 + "-0001"  # > 100 bytes: a pax header carries the name
    path = tmp_path / "s.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for key, fields in [("a", {"txt": b"1", "json": b"{}"}), (long_key, {"txt": b"2"}), ("ü-k", {"txt": b"3"})]:
            for ext, data in fields.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        directory = tarfile.TarInfo("folder")
        directory.type = tarfile.DIRTYPE
        archive.addfile(directory)
    plain = [{k: v for k, v in s.items() if k != "__url__"} for s in read_tar(str(path))]
    assert plain == [{"__key__": "a", "txt": b"1", "json": b"{}"}, {"__key__": long_key, "txt": b"2"},
                     {"__key__": "ü-k", "txt": b"3"}]
    gz = tmp_path / "s.tar.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert [{k: v for k, v in s.items() if k != "__url__"} for s in read_tar(str(gz))] == plain
    assert [s["__key__"] for s in read_tar(f"pipe:cat {path}")] == ["a", long_key, "ü-k"]
