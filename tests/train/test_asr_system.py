"""SpeechDataModule and ASRSystem on tiny speech shards written into tmp_path.

Two tone "words": a 440 Hz tone says "one", a 1500 Hz tone with noise says "two"
(both single tokens in the default tokenizer), 0.5 s each.
"""

import io
import json

import numpy as np
import pytest
import torch

RATE = 16000
WORDS = {"one": 440.0, "two": 1500.0}


def _flac_bytes(word: str, seconds: float, rng: np.random.Generator) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.5 * np.sin(2 * np.pi * WORDS[word] * t + rng.uniform(0, np.pi))
    if word == "two":
        wave = wave + 0.05 * rng.standard_normal(t.shape)
    buffer = io.BytesIO()
    sf.write(buffer, wave.astype(np.float32), RATE, format="FLAC")
    return buffer.getvalue()


def _write_shards(folder, count: int, seed: int, per_shard: int, corrupt_key: str | None = None):
    import webdataset as wds

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    words = list(WORDS)
    for shard in range(0, count, per_shard):
        with wds.TarWriter(str(folder / f"speech-{shard // per_shard:06d}.tar")) as sink:
            for index in range(shard, min(count, shard + per_shard)):
                word = words[index % 2]
                seconds = float(rng.uniform(0.4, 0.6))
                key = f"{seed}-{index:05d}"
                flac = b"not a flac file at all" if key == corrupt_key else _flac_bytes(word, seconds, rng)
                meta = {"text": word, "lang": "en", "voice": "en", "rate": 175, "pitch": 50,
                        "duration": seconds, "split": folder.name}
                sink.write({"__key__": key, "flac": flac, "txt": word.encode(), "json": json.dumps(meta).encode()})
    return str(folder)


@pytest.fixture(scope="module")
def speech_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech")
    return {
        "train": _write_shards(root / "train", 64, seed=0, per_shard=32),
        "val": _write_shards(root / "val", 8, seed=1, per_shard=8),
        "bad": _write_shards(root / "bad", 6, seed=2, per_shard=6, corrupt_key="2-00003"),
    }


def test_datamodule_batches_and_skips_corrupt_audio(speech_shards):
    from babeltower.datasets.speech import LABEL_PAD, SpeechDataModule

    data = SpeechDataModule(train_shards=speech_shards["bad"], val_shards=speech_shards["bad"], batch_size=5)
    data.setup("fit")
    batches = list(data.val_dataloader())
    assert [len(b["key"]) for b in batches] == [5]
    batch = batches[0]
    assert set(batch) == {"waveforms", "audio_lengths", "labels", "label_lengths", "text", "lang", "key", "meta",
                          "bad_samples"}
    assert "2-00003" not in batch["key"]
    assert [(s["key"], "audio" in s["reason"] or "decode" in s["reason"]) for s in batch["bad_samples"]] == [
        ("2-00003", True)
    ]
    assert batch["waveforms"].shape == (5, int(batch["audio_lengths"].max()))
    longest = int(batch["audio_lengths"].argmax())
    shortest = int(batch["audio_lengths"].argmin())
    assert batch["waveforms"][shortest, int(batch["audio_lengths"][shortest]):].abs().sum() == 0
    assert batch["waveforms"][longest].abs().max() > 0.3
    # CTC targets: the word's token, no <s> (0) / </s> (2), padded with -100.
    tokenizer = data.tokenizer
    for row, text in enumerate(batch["text"]):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert batch["labels"][row, : len(ids)].tolist() == ids
        assert int(batch["label_lengths"][row]) == len(ids)
    assert not set(batch["labels"].flatten().tolist()) & {tokenizer.bos_token_id, tokenizer.eos_token_id}
    assert batch["labels"].shape == (5, 1) or (batch["labels"] == LABEL_PAD).any()
    assert batch["lang"] == ["en"] * 5 and batch["meta"][0]["text"] == batch["text"][0]


class _Losses:
    """Records every training step's loss parts."""

    def __init__(self):
        import lightning as L

        outer = self
        self.rows = []
        self.text_modes = []

        class Recorder(L.Callback):
            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                outer.rows.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")})
                if module.text_encoder is not None:
                    outer.text_modes.append(module.text_encoder.training)

        self.callback = Recorder()


def _trainer(root, steps, callbacks=()):
    import lightning as L

    return L.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        log_every_n_steps=1, default_root_dir=str(root), callbacks=list(callbacks),
        limit_val_batches=1, val_check_interval=steps, check_val_every_n_epoch=None,
    )


def test_system_trains_loss_falls_validates_and_exports(speech_shards, tmp_path):
    from babeltower.datasets.speech import SpeechDataModule
    from babeltower.models.asr import ASRModel, asr_tiny
    from babeltower.train.asr import ASRSystem

    torch.manual_seed(0)
    system = ASRSystem(
        asr=asr_tiny(dropout=0.0),
        text={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
              "projection_dim": 16},
        align_weight=0.1,
        learning_rate=3e-3,
        warmup_steps=5,
        spec_augment=True,
    )
    assert isinstance(system.hparams["asr"], dict) and system.hparams["asr"]["text_dim"] == 16
    assert isinstance(system.hparams["text"], dict)
    assert not any(p.requires_grad for p in system.text_encoder.parameters())
    data = SpeechDataModule(train_shards=speech_shards["train"], val_shards=speech_shards["val"], batch_size=8,
                            samples_per_epoch=64, shuffle_buffer=64)
    losses = _Losses()
    trainer = _trainer(tmp_path, 40, [losses.callback])
    trainer.fit(system, datamodule=data)
    assert trainer.global_step == 40
    assert losses.text_modes == [False] * 40  # the frozen encoder runs in eval mode (no dropout)
    ctc = [row["train/ctc"] for row in losses.rows]
    assert set(losses.rows[0]) == {"train/ctc", "train/align", "train/loss"}
    first, last = sum(ctc[:3]) / 3, sum(ctc[-3:]) / 3
    assert last < 0.5 * first, ctc
    metrics = trainer.callback_metrics
    assert {"val/ctc", "val/cer", "val/wer"} <= set(metrics)
    assert 0.0 <= float(metrics["val/cer"]) and torch.isfinite(metrics["val/ctc"])

    # The checkpoint's hparams are plain data: it loads with weights_only=True and rebuilds the system.
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["asr"]["vocab_size"] == 8000
    restored = ASRSystem.load_from_checkpoint(tmp_path / "last.ckpt").eval()

    out = system.export_hub(tmp_path / "hub")
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "ASRModel" and index["task"] == "asr"
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    card = (out / "README.md").read_text()
    assert "ASRModel.from_pretrained" in card and "text_encoder/" not in card
    loaded = ASRModel.from_pretrained(out)
    system.eval()
    features = torch.randn(2, 80, 60)
    lengths = torch.tensor([60, 41])
    torch.testing.assert_close(loaded(features, lengths)[0], system.model(features, lengths)[0])
    torch.testing.assert_close(restored.model(features, lengths)[0], system.model(features, lengths)[0])
    with pytest.raises(FileExistsError, match="overwrite"):
        system.export_hub(tmp_path / "hub")


def test_ctc_only_learns_the_two_words(speech_shards, tmp_path):
    """Without alignment no text encoder is built; a short CTC run transcribes the tones."""
    from babeltower.datasets.speech import SpeechDataModule
    from babeltower.eval.asr_metrics import cer
    from babeltower.models.asr import asr_tiny
    from babeltower.train.asr import ASRSystem

    torch.manual_seed(0)
    system = ASRSystem(asr=asr_tiny(dropout=0.0, num_layers=1), align_weight=0.0, learning_rate=5e-3,
                       warmup_steps=5, spec_augment=False)
    assert system.text_encoder is None and system.model.utterance_projection is None
    data = SpeechDataModule(train_shards=speech_shards["train"], batch_size=8, samples_per_epoch=64,
                            shuffle_buffer=64)
    _trainer(tmp_path, 80).fit(system, datamodule=data)
    val = SpeechDataModule(train_shards=speech_shards["val"], val_shards=speech_shards["val"], batch_size=8)
    batch = next(iter(val.val_dataloader()))
    system.eval()
    with torch.no_grad():
        hyps = system.model.transcribe(batch["waveforms"], batch["audio_lengths"], beam_size=4)
    assert cer(batch["text"], hyps) < 0.2, list(zip(batch["text"], hyps))


def test_text_encoder_from_distilled_folder(tmp_path):
    """init_text_from takes the text encoder's architecture and weights from a hub folder."""
    from babeltower.models.hub import save_text_encoder
    from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig
    from babeltower.train.asr import ASRSystem
    from babeltower.models.asr import asr_tiny

    torch.manual_seed(1)
    source = TextEncoder(TextEncoderConfig(hidden_size=32, num_hidden_layers=1, projection_dim=24))
    save_text_encoder(source, tmp_path / "student")
    system = ASRSystem(asr=asr_tiny(), init_text_from=str(tmp_path / "student"))
    assert system.model.config.text_dim == 24
    for name, value in source.state_dict().items():
        torch.testing.assert_close(system.text_encoder.state_dict()[name], value, msg=name)
    with pytest.raises(ValueError, match="align_weight"):
        ASRSystem(asr=asr_tiny(), init_text_from=str(tmp_path / "student"), align_weight=0.0)
