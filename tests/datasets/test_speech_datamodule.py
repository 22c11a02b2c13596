"""SpeechDataModule's duration bucketing on tiny shards of tones of 0.1-1.0 s written into tmp_path."""

import io
import json

import numpy as np
import pytest

from babeltower.datasets.speech import DurationBucketedStream, SpeechDataModule, bucket_samples

RATE = 16000
NUM_CLIPS = 48
CORRUPT_KEY = "clip-00013"


def _flac_bytes(seconds: float, rng: np.random.Generator) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.5 * np.sin(2 * np.pi * 440.0 * t + rng.uniform(0, np.pi))
    buffer = io.BytesIO()
    sf.write(buffer, wave.astype(np.float32), RATE, format="FLAC")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """4 shards of 12 clips, uniformly 0.1-1.0 s long, the clip CORRUPT_KEY unreadable."""
    import webdataset as wds

    folder = tmp_path_factory.mktemp("speech_buckets")
    rng = np.random.default_rng(0)
    for shard in range(4):
        with wds.TarWriter(str(folder / f"speech-{shard:06d}.tar")) as sink:
            for index in range(shard * 12, shard * 12 + 12):
                key = f"clip-{index:05d}"
                seconds = float(rng.uniform(0.1, 1.0))
                flac = b"not a flac file" if key == CORRUPT_KEY else _flac_bytes(seconds, rng)
                meta = {"text": "one", "lang": "en", "duration": seconds}
                sink.write({"__key__": key, "flac": flac, "txt": b"one", "json": json.dumps(meta).encode()})
    return str(folder)


def _module(shards, **kwargs) -> SpeechDataModule:
    kwargs.setdefault("batch_size", 4)
    data = SpeechDataModule(train_shards=shards, shuffle_buffer=16, seed=3, **kwargs)
    data.setup("fit")
    return data


def _padding_fraction(batches) -> float:
    """Padded samples / all samples of the padded waveforms."""
    valid = sum(int(b["audio_lengths"].sum()) for b in batches)
    total = sum(b["waveforms"].numel() for b in batches)
    return 1.0 - valid / total


def _spread(batches) -> float:
    """Mean over batches of (longest - shortest clip) in seconds."""
    return float(np.mean([int(b["audio_lengths"].max() - b["audio_lengths"].min()) / RATE for b in batches]))


def test_bucketed_batches_have_a_smaller_duration_spread(shards):
    plain = list(_module(shards, samples_per_epoch=44).train_dataloader())
    bucketed = list(_module(shards, samples_per_epoch=44, bucket_buffer=16).train_dataloader())
    assert isinstance(_module(shards, bucket_buffer=16).train_stream, DurationBucketedStream)
    # Clips are uniform over 0.9 s: a random batch of 4 spreads ~0.5 s, a sorted 16-clip buffer cut in 4 ~0.15 s.
    assert _spread(bucketed) < 0.5 * _spread(plain)
    assert _padding_fraction(bucketed) < 0.5 * _padding_fraction(plain)


def test_epoch_reads_the_same_clips_with_and_without_bucketing(shards):
    # 44 = the 47 good clips rounded down to batches of 4; 44 is not a multiple of the
    # 16-clip buffer, so the epoch's last buffer must stop at the quota.
    plain = list(_module(shards, samples_per_epoch=44).train_stream)
    bucketed = list(_module(shards, samples_per_epoch=44, bucket_buffer=16).train_stream)
    assert len(plain) == len(bucketed) == 11
    plain_keys = [k for b in plain for k in b["key"]]
    bucketed_keys = [k for b in bucketed for k in b["key"]]
    assert len(set(bucketed_keys)) == len(bucketed_keys) == 44  # nothing duplicated
    assert sorted(bucketed_keys) == sorted(plain_keys)  # nothing lost or swapped
    assert CORRUPT_KEY not in bucketed_keys
    reported = [s["key"] for b in bucketed for s in b["bad_samples"]]
    assert reported == [CORRUPT_KEY] == [s["key"] for b in plain for s in b["bad_samples"]]


def test_one_pass_without_samples_per_epoch_drops_only_the_remainder(shards):
    data = _module(shards, bucket_buffer=8, batch_size=4)
    batches = list(data.train_stream)
    keys = [k for b in batches for k in b["key"]]
    assert all(len(b["key"]) == 4 for b in batches)
    assert len(keys) == len(set(keys)) == 44  # 47 good clips, the last 3 to arrive dropped (drop_last)
    plain_keys = [k for b in _module(shards, batch_size=4).train_stream for k in b["key"]]
    assert sorted(keys) == sorted(plain_keys)


def test_batch_counts_per_rank_unchanged_and_order_deterministic(shards):
    for rank in (0, 1):
        counts = []
        for bucket_buffer in (0, 8):
            data = _module(shards, samples_per_epoch=40, bucket_buffer=bucket_buffer)
            data.train_stream.set_distributed(rank, 2)
            counts.append((len(data.train_stream), len(list(data.train_stream))))
        assert counts == [(5, 5), (5, 5)]
    data = _module(shards, samples_per_epoch=40, bucket_buffer=16)
    first = [b["key"] for b in data.train_stream]
    again = [b["key"] for b in data.train_stream]
    data.train_stream.set_epoch(1)
    next_epoch = [b["key"] for b in data.train_stream]
    assert first == again
    assert first != next_epoch


def test_bucket_samples_sorts_within_buffers_and_validates():
    import random

    from babeltower.datasets.pipeline import _SkipReport

    samples = [{"waveform": np.zeros(n), "n": n} for n in [5, 1, 9, 3, 7, 2, 8, 4, 6, 0]]
    batches = list(
        bucket_samples(samples, batch_size=2, buffer_batches=2, collate=lambda s: {"n": [x["n"] for x in s]},
                       report=_SkipReport(), rng=random.Random(0), drop_last=True)
    )
    # Buffers [5 1 9 3], [7 2 8 4], then [6 0] alone; each cut into sorted pairs.
    assert sorted(tuple(b["n"]) for b in batches) == [(0, 6), (1, 3), (2, 4), (5, 9), (7, 8)]
    with pytest.raises(ValueError, match="bucket_buffer=6 holds fewer than two batches"):
        SpeechDataModule(train_shards="unused", batch_size=4, bucket_buffer=6)


def test_vocab_size_tokenizes_targets_with_the_first_tokens(shards):
    from babeltower.modalities.text import load_tokenizer_or_default

    full = load_tokenizer_or_default(None)
    text = "vierhundertsiebenundzwanzig"  # rare: split further by the cut tokenizer
    cut = _module(shards, vocab_size=600).tokenizer
    assert len(cut) == 600
    ids = cut(text, add_special_tokens=False)["input_ids"]
    assert max(ids) < 600 and len(ids) > len(full(text, add_special_tokens=False)["input_ids"])
    batch = next(iter(_module(shards, vocab_size=600).train_dataloader()))
    assert int(batch["labels"].max()) < 600
    with pytest.raises(ValueError, match="vocab_size must be >= 0"):
        SpeechDataModule(train_shards=shards, vocab_size=-1)


def test_bucketed_batches_resume_exactly_from_a_saved_position():
    """A saved position inside a bucket buffer rebuilds that buffer and skips only its trained batches."""
    import itertools
    import random

    from babeltower.datasets.pipeline import POSITION_KEY, _SkipReport

    def clips():
        return [{"waveform": np.zeros(1 + (i * 7919) % 50), "n": i} for i in range(60)]

    def run(resume=None, stop=None):
        report = _SkipReport()
        samples = iter(clips())
        if resume:
            samples = itertools.islice(samples, resume["samples"], None)
            report.consumed, report.batches = resume["samples"], resume["batches"]
        counted = ({**s} for s in samples)

        def consume(source):
            for sample in source:
                report.consumed += 1
                yield sample

        batches = bucket_samples(consume(counted), batch_size=4, buffer_batches=4,
                                 collate=lambda s: {"n": [x["n"] for x in s]}, report=report,
                                 rng=lambda index: random.Random(f"b{index}"), drop_last=True,
                                 max_batches=14 - report.batches,
                                 resume=resume)
        return list(itertools.islice(batches, stop)) if stop else list(batches)

    full = [n for b in run() for n in b["n"]]
    assert len(full) == 56
    for stop in (1, 5, 6, 9, 13, 14):
        first = run(stop=stop)
        position = first[-1][POSITION_KEY]
        rest = run(resume=position)
        seen = [n for b in first + rest for n in b["n"]]
        assert sorted(seen) == sorted(full) and len(seen) == len(set(seen)), stop


def test_speech_eval_batches_read_every_clip_in_order(shards):
    """An evaluator's view of a speech test set: every clip once, in shard order, padded, not tokenized."""
    from babeltower.datasets.pipeline import expand_shards, read_tar
    from babeltower.datasets.speech import speech_eval_batches

    batches = list(speech_eval_batches(shards, batch_size=5))
    keys = [k for b in batches for k in b["key"]]
    assert keys == [s["__key__"] for url in expand_shards(shards) for s in read_tar(url) if s["__key__"] != CORRUPT_KEY]
    assert [r["key"] for b in batches for r in b["bad_samples"]] == [CORRUPT_KEY]
    for batch in batches:
        assert batch["waveforms"].shape == (len(batch["key"]), int(batch["audio_lengths"].max()))
        assert "labels" not in batch and batch["text"] == ["one"] * len(batch["key"])
