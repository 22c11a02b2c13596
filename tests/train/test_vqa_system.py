"""VQA system: real training steps on shards in tmp_path (loss falls), init_from a contrastive hub, export."""

import lightning as L
import pytest
import torch

from babeltower.models.text_encoder import TextEncoderConfig
from babeltower.models.vision import VisionConfig

TINY_VISION = VisionConfig(image_size=32, patch_size=8, width=32, layers=2, heads=2, output_dim=32)
TINY_TEXT = TextEncoderConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def vqa_shards(tmp_path_factory):
    from babeltower.datasets.synthetic.vqa import write_vqa_shards

    root = tmp_path_factory.mktemp("vqa")
    write_vqa_shards(root, num_train=64, num_val=16, image_size=32, seed=0, samples_per_shard=32, progress=False)
    return root


def _system(**overrides):
    from babeltower.train.vqa import VQASystem

    args = dict(vision=TINY_VISION, text=TINY_TEXT, hidden_size=32, fusion_layers=1, fusion_heads=2,
                learning_rate=3e-3, warmup_steps=2)
    return VQASystem(**{**args, **overrides})


def test_training_steps_reduce_the_loss(vqa_shards, tmp_path):
    from babeltower.datasets.vqa import VQADataModule

    torch.manual_seed(0)
    system = _system()
    dm = VQADataModule(train_shards=str(vqa_shards / "train"), val_shards=str(vqa_shards / "val"), image_size=32,
                       batch_size=16, samples_per_epoch=64, languages=["en", "ko"], question_types=["colour"])
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(max_steps=40, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()],
                        default_root_dir=tmp_path, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(system, datamodule=dm)
    assert len(losses) == 40
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.8 * first, (first, last)
    assert "val/score_vqa_acc" in trainer.callback_metrics and "val/classify_vqa_acc" in trainer.callback_metrics


def test_init_from_contrastive_hub_copies_both_towers(tmp_path):
    from babeltower.train.contrastive import ContrastiveSystem

    torch.manual_seed(0)
    clip = ContrastiveSystem(vision=TINY_VISION, text=TINY_TEXT, embed_dim=32)
    hub = clip.export_hub(tmp_path / "hub")
    system = _system(init_from=str(hub), vision=VisionConfig(), text=TextEncoderConfig())
    assert system.model.config.vision.width == 32  # the hub's architecture, not the argument's
    for key, value in clip.model.vision.vit.state_dict().items():
        torch.testing.assert_close(system.model.vision.vit.state_dict()[key], value)
    for key, value in clip.model.text.backbone.state_dict().items():
        torch.testing.assert_close(system.model.text.backbone.state_dict()[key], value)
    with pytest.raises(FileNotFoundError, match="is not a contrastive hub folder"):
        _system(init_from=str(tmp_path / "nothing"))


def test_export_hub_loads_strictly(tmp_path):
    from babeltower.models.vqa import VQAModel

    system = _system()
    folder = system.export_hub(tmp_path / "hub", eval_report={"markdown": "| lang | acc |", "per_language": {"en": {}}})
    loaded = VQAModel.from_pretrained(folder / "vqa")
    for key, value in system.model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert "| lang | acc |" in (folder / "README.md").read_text()
    from transformers import AutoModel

    AutoModel.from_pretrained(folder / "vqa" / "text_encoder")  # the shared encoder stays a stock transformers model


def test_init_from_keeps_an_explicit_pretrained_text_encoder(tmp_path):
    """init_from + text.pretrained: the hub gives the vision tower, the named encoder stays (as e5 does)."""
    from babeltower.models.text_encoder import TextEncoder
    from babeltower.modalities.text import load_tokenizer_or_default
    from babeltower.train.contrastive import ContrastiveSystem
    from babeltower.train.vqa import VQASystem

    torch.manual_seed(0)
    clip = ContrastiveSystem(vision=TINY_VISION, text=TINY_TEXT, embed_dim=32)
    hub = clip.export_hub(tmp_path / "hub")
    other = TextEncoder(TextEncoderConfig(hidden_size=48, num_hidden_layers=1, num_attention_heads=2,
                                          intermediate_size=64))
    other.save_pretrained(tmp_path / "other", tokenizer=load_tokenizer_or_default(None))
    text = TextEncoderConfig(pretrained=str(tmp_path / "other"), trainable_layers=0)
    system = _system(init_from=str(hub), text=text)
    assert system.model.text.backbone.config.hidden_size == 48
    for key, value in other.backbone.state_dict().items():
        torch.testing.assert_close(system.model.text.backbone.state_dict()[key], value)
    for key, value in clip.model.vision.vit.state_dict().items():
        torch.testing.assert_close(system.model.vision.vit.state_dict()[key], value)
    assert system.model.text.backbone_frozen and not system.model.text.backbone.training
    links = VQASystem.linked_data_args({"init_from": str(hub), "text": {"pretrained": str(tmp_path / "other")}})
    assert links["tokenizer"] == ("text.pretrained", str(tmp_path / "other"))
