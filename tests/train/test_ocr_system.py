"""OCR training system: a few real CTC steps on line shards written into tmp_path; the loss falls."""

import pytest
import torch

pytest.importorskip("gflanguages")
pytest.importorskip("wordfreq")


@pytest.fixture(scope="module")
def line_shards(tmp_path_factory):
    from babeltower.datasets.synthetic import ocr

    try:
        ocr.check_fonts(("Latn", "Arab"))
    except RuntimeError as error:
        pytest.skip(str(error))
    root = tmp_path_factory.mktemp("ocr")
    ocr.write_ocr_dataset(root, num_train=64, num_val=16, num_test=0, languages=("en", "ar"), shard_size=32)
    return root


def test_datamodule_batches_bucketed_by_width(line_shards):
    from babeltower.datasets.ocr import OCRDataModule

    data = OCRDataModule(str(line_shards / "train"), str(line_shards / "val"), batch_size=8, samples_per_epoch=64,
                         bucket_buffer=32, shuffle_buffer=0)
    data.setup("fit")
    batches = list(data.train_stream)
    assert len(batches) == 8
    for batch in batches:
        assert batch["images"].shape[:3] == (8, 1, 32)
        assert batch["images"].shape[-1] == int(batch["widths"].max())
    # Within a sorted buffer of 4 batches, batches of similar widths: the spread inside a
    # batch is smaller than across the buffer.
    inner = max(int(b["widths"].max() - b["widths"].min()) for b in batches)
    every = torch.cat([b["widths"] for b in batches])
    assert inner < int(every.max() - every.min())
    val = list(data.val_stream)
    assert sum(len(b["text"]) for b in val) == 16


def test_a_few_steps_lower_the_loss(line_shards):
    import lightning as L

    from babeltower.datasets.ocr import OCRDataModule
    from babeltower.datasets.pipeline import expand_shards, read_tar
    from babeltower.datasets.synthetic.ocr import charset_of
    from babeltower.models.ocr import ocr_tiny
    from babeltower.train.ocr import OCRSystem

    texts = [s["txt"].decode() for split in ("train", "val") for url in expand_shards(str(line_shards / split))
             for s in read_tar(url) if "txt" in s]
    L.seed_everything(0)
    system = OCRSystem(ocr_tiny(charset=charset_of(texts)), learning_rate=3e-3, warmup_steps=2)
    data = OCRDataModule(str(line_shards / "train"), str(line_shards / "val"), batch_size=8, samples_per_epoch=64)
    data.setup("fit")
    batch = next(iter(data.train_stream))
    with torch.no_grad():
        before = system._shared_step(batch)[0].item()
    trainer = L.Trainer(max_steps=24, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=1)
    trainer.fit(system, datamodule=data)
    system.eval()
    with torch.no_grad():
        after = system._shared_step(batch)[0].item()
    assert after < before * 0.8, (before, after)
    assert "val/cer" in trainer.callback_metrics


def test_export_and_strict_reload(line_shards, tmp_path):
    from babeltower.models.ocr import OCRModel, ocr_tiny
    from babeltower.train.ocr import OCRSystem

    system = OCRSystem(ocr_tiny(charset="abc مرح123"))
    folder = system.export_hub(tmp_path / "hub")
    assert (folder / "ocr" / "config.json").is_file() and (folder / "README.md").is_file()
    loaded = OCRModel.from_pretrained(folder)
    images, widths = torch.rand(1, 1, 32, 40), torch.tensor([40])
    system.model.eval()
    assert torch.equal(loaded(images, widths)[0], system.model(images, widths)[0])


def test_mismatched_image_height_is_named():
    from types import SimpleNamespace

    from babeltower.models.ocr import ocr_tiny
    from babeltower.train.ocr import OCRSystem

    system = OCRSystem(ocr_tiny(charset="ab"))
    system.trainer = SimpleNamespace(datamodule=SimpleNamespace(image_height=48, max_width=1024))
    with pytest.raises(ValueError, match="image_height=48"):
        OCRSystem.on_fit_start(system)
