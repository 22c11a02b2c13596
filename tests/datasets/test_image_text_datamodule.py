import lightning as L
import pytest
import torch

from babeltower.datasets.datamodule import ImageTextDataModule, collate_image_text
from babeltower.datasets.synthetic.scenes import LANGUAGES, caption_corpus


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A tiny byte-level BPE tokenizer folder with a <pad> token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(caption_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    folder = tmp_path_factory.mktemp("tokenizer")
    fast.save_pretrained(folder)
    return str(folder)


def _check_batch(batch, batch_size, image_size):
    assert set(batch) == {"pixel_values", "input_ids", "attention_mask", "lang", "key", "meta", "bad_samples"}
    assert batch["pixel_values"].shape == (batch_size, 3, image_size, image_size)
    assert batch["pixel_values"].dtype == torch.float32
    assert batch["input_ids"].dtype == torch.long and batch["attention_mask"].dtype == torch.long
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["input_ids"].shape[0] == batch_size
    assert batch["attention_mask"].sum(1).max() == batch["input_ids"].shape[1]  # padded to the longest
    assert len(batch["lang"]) == len(batch["key"]) == len(batch["meta"]) == batch_size
    assert all(lang in LANGUAGES for lang in batch["lang"])
    assert all("attributes" in meta for meta in batch["meta"])
    assert batch["bad_samples"] == []


def test_datamodule_batches(scene_shards, tokenizer_dir):
    dm = ImageTextDataModule(
        train_shards=scene_shards["train"], val_shards=scene_shards["val"], tokenizer=tokenizer_dir,
        image_size=32, batch_size=16, val_batch_size=32, samples_per_epoch=128, max_text_length=12,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == 128 // 16
    train = list(loader)
    assert len(train) == 8
    _check_batch(train[0], 16, 32)
    assert train[0]["input_ids"].shape[1] <= 12
    # without caption_languages the txt caption (and its language) is used
    assert all(m["lang"] == lang for b in train for m, lang in zip(b["meta"], b["lang"]))

    val = list(dm.val_dataloader())
    assert [len(b["key"]) for b in val] == [32, 32, 16]  # one pass over 80 scenes, last batch kept
    assert len({k for b in val for k in b["key"]}) == 80
    _check_batch(val[0], 32, 32)
    assert [b["key"] for b in dm.val_dataloader()] == [b["key"] for b in val]  # no shuffling


def test_caption_languages_augmentation_and_mixing(scene_shards, tokenizer_dir):
    dm = ImageTextDataModule(
        train_shards=[scene_shards["train"], scene_shards["val"]], train_weights=[1.0, 1.0],
        tokenizer=tokenizer_dir, batch_size=8, samples_per_epoch=160, caption_languages=["de", "ko"],
    )
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 20
    langs = [lang for b in batches for lang in b["lang"]]
    assert set(langs) == {"de", "ko"}
    for batch in batches:
        for meta, lang, key in zip(batch["meta"], batch["lang"], batch["key"]):
            assert meta["captions"][lang]  # the chosen caption exists in that language
    splits = {b["meta"][0]["split"] for b in batches}
    assert splits == {"train", "val"}
    with pytest.raises(ValueError, match="train_weights has 1 entries but train_shards has 2 sources"):
        ImageTextDataModule(train_shards=["a", "b"], train_weights=[1.0], samples_per_epoch=10)
    with pytest.raises(ValueError, match="needs samples_per_epoch"):
        ImageTextDataModule(train_shards=["a", "b"])


def test_collate_reusable_by_evaluator(tokenizer_dir):
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    samples = [
        {"pixel_values": torch.zeros(3, 8, 8), "text": t, "lang": "en", "key": str(i), "meta": {}}
        for i, t in enumerate(["one small red circle on the left", "a"])
    ]
    batch = collate_image_text(samples, tokenizer, max_text_length=64)
    assert batch["pixel_values"].shape == (2, 3, 8, 8)
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match="has no pad_token"):
        collate_image_text(samples, tokenizer, max_text_length=64)


class _RecordingModule(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.keys: dict[int, list[str]] = {}

    def training_step(self, batch, batch_idx):
        self.keys.setdefault(self.current_epoch, []).extend(batch["key"])
        return self.layer(batch["pixel_values"].mean().view(1, 1)).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_lightning_sets_the_epoch_each_epoch(scene_shards, tokenizer_dir, num_workers):
    dm = ImageTextDataModule(
        train_shards=scene_shards["train"], tokenizer=tokenizer_dir, batch_size=16, samples_per_epoch=64,
        shuffle_buffer=50, num_workers=num_workers,
    )
    module = _RecordingModule()
    trainer = L.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module, datamodule=dm)
    assert trainer.num_training_batches == 4
    assert [len(module.keys[e]) for e in range(3)] == [64, 64, 64]
    assert module.keys[0] != module.keys[1] != module.keys[2]
    # the same epoch replays the same order (e.g. after resuming at an epoch boundary)
    dm.train_stream.set_epoch(1)
    stream_epoch1 = [k for b in torch.utils.data.DataLoader(dm.train_stream, batch_size=None, num_workers=num_workers) for k in b["key"]]
    assert stream_epoch1 == module.keys[1]
