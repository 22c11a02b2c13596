"""Tiny random-init models exported as hub folders, for the web demo tests."""

from __future__ import annotations

from pathlib import Path

import torch

TINY_TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
TINY_UNET = dict(
    sample_size=16, block_out_channels=[16, 32], layers_per_block=1, cross_attention_levels=[False, True],
    cross_attention_dim=16, attention_head_dim=8, norm_num_groups=8,
)


def export_tiny_models(root: Path) -> dict[str, Path]:
    """Writes a contrastive model, a text encoder, a text-to-image pipeline and an ASR model under ``root``."""
    from diffusers import DDIMScheduler

    from babeltower.models.asr import ASRModel, asr_tiny
    from babeltower.models.clip import CLIPConfig, CLIPModel
    from babeltower.models.hub import save_clip, save_text_encoder
    from babeltower.models.t2i import BabelTowerText2ImagePipeline, UNetConfig, build_unet
    from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig, resolve_tokenizer
    from babeltower.models.vision import vit_tiny

    torch.manual_seed(0)
    root = Path(root)
    clip = CLIPModel(CLIPConfig(vision=vit_tiny(), text=TextEncoderConfig(**TINY_TEXT), embed_dim=16)).eval()
    paths = {"contrastive": save_clip(clip, root / "contrastive" / "hub")}
    paths["distill"] = save_text_encoder(TextEncoder(TextEncoderConfig(**TINY_TEXT)).eval(), root / "distill" / "hub")

    text = TextEncoder(TextEncoderConfig(**TINY_TEXT))
    unet = build_unet(UNetConfig(**TINY_UNET), text.backbone.config.hidden_size)
    scheduler = DDIMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    pipe = BabelTowerText2ImagePipeline(
        unet=unet.eval(), scheduler=scheduler, text_encoder=text.backbone.eval(), tokenizer=resolve_tokenizer(text.config)
    )
    pipe.save_pretrained(root / "t2i" / "hub")
    paths["t2i"] = root / "t2i" / "hub"

    asr = ASRModel(asr_tiny(vocab_size=512, max_seconds=8.0)).eval()
    paths["asr"] = asr.save_pretrained(root / "asr" / "hub")

    from babeltower.models.ocr import OCRModel, ocr_tiny
    from babeltower.models.vqa import VQAModel, vqa_tiny

    charset = "".join(dict.fromkeys("abcdefghijklmnopqrstuvwxyz0123456789 مرحبا بكم कखगनमस"))
    paths["ocr"] = OCRModel(ocr_tiny(charset=charset)).eval().save_pretrained(root / "ocr" / "hub")
    from babeltower.datasets.synthetic.vqa import answer_vocabulary

    paths["vqa"] = VQAModel(vqa_tiny(answers=answer_vocabulary())).eval().save_pretrained(root / "vqa" / "hub")
    return paths
