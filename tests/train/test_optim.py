"""One optimiser/schedule helper for every system, and the schedule-length bug it fixes."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from babeltower.train.optim import adamw_with_cosine, cosine_with_warmup, param_groups


class _Stream(IterableDataset):
    """An iterable without a length, like a shard stream without samples_per_epoch."""

    def __iter__(self):
        for _ in range(40):
            yield torch.randn(4, 2)


class _Tiny(L.LightningModule):
    def __init__(self, learning_rate=0.1, weight_decay=0.0, warmup_steps=2, min_lr_ratio=0.0):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(2, 1)
        self.lrs = []

    def training_step(self, batch, batch_idx):
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self):
        return adamw_with_cosine(self, param_groups(self, self.hparams.weight_decay))


def _trainer(**kwargs):
    return L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu", **kwargs)


def test_unknown_run_length_is_an_error_not_a_zero_learning_rate():
    # Before: the schedule took Lightning's -1 estimate as its length, so after warm-up the
    # learning rate sat at 0 for the rest of the run.
    with pytest.raises(ValueError, match="max_steps"):
        _trainer(max_epochs=2).fit(_Tiny(), DataLoader(_Stream(), batch_size=None))


def test_max_steps_gives_the_schedule_its_length():
    model = _Tiny()
    _trainer(max_steps=10).fit(model, DataLoader(_Stream(), batch_size=None))
    assert len(model.lrs) == 10
    assert model.lrs[1] == pytest.approx(0.1)  # warm-up done
    assert all(lr > 0 for lr in model.lrs)  # still learning after warm-up
    assert model.lrs[5] == pytest.approx(0.1 * cosine_with_warmup(5, 2, 10))


def test_a_run_shorter_than_its_warmup_stays_in_warmup():
    model = _Tiny(warmup_steps=5)
    _trainer(max_steps=3).fit(model, DataLoader(_Stream(), batch_size=None))
    assert model.lrs == pytest.approx([0.02, 0.04, 0.06])
