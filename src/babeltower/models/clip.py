"""CLIP-style contrastive model: open_clip ViT vision tower + the shared multilingual text encoder.

Both towers project into one ``embed_dim`` space; similarities are scaled by a
learnable temperature ``logit_scale`` (stored as log(1/T), clamped at log(100) as in
Radford et al. 2021 and open_clip).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig
from babeltower.models.vision import VisionConfig, VisionTower


@dataclass
class CLIPConfig:
    """A vision tower and a text encoder sharing one embedding space."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    """The ViT vision tower."""
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    """The shared multilingual text encoder (its projection_dim is set to embed_dim)."""
    embed_dim: int = 32
    """Width of the joint embedding space; overrides vision.output_dim and text.projection_dim."""
    init_logit_scale: float = math.log(1 / 0.07)
    """Initial log inverse temperature (CLIP: log(1/0.07))."""
    max_logit_scale: float = math.log(100)
    """Upper clamp of the log inverse temperature (CLIP: log(100))."""

    def __post_init__(self):
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**self.vision)
        if isinstance(self.text, dict):
            self.text = TextEncoderConfig(**self.text)
        self.vision = replace(self.vision, output_dim=self.embed_dim)
        self.text = replace(self.text, projection_dim=self.embed_dim)


class CLIPModel(nn.Module):
    """Images and texts -> L2-normalised embeddings in one space."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.vision = VisionTower(config.vision)
        self.text = TextEncoder(config.text)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))

    def encode_image(self, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.vision(pixel_values)  # (B, D)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.text(input_ids, attention_mask).embeds  # (B, D)
        return F.normalize(features, dim=-1) if normalize else features

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped; multiply cosine similarities by it to get logits."""
        return self.logit_scale.clamp(max=self.config.max_logit_scale).exp()

    def forward(self, pixel_values, input_ids, attention_mask):
        """Returns (image_features (B, D), text_features (B, D), scale ())."""
        return (
            self.encode_image(pixel_values),
            self.encode_text(input_ids, attention_mask),
            self.scale(),
        )
