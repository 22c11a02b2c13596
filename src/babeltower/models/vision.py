"""Vision tower: open_clip's VisionTransformer, with attention through babeltower's dispatch.

The tower is open_clip's own ``VisionTransformer`` class built from a
:class:`VisionConfig`; every block's ``nn.MultiheadAttention`` is swapped for
:class:`~babeltower.models.attention.MultiheadSelfAttention`, which keeps the same
parameter names. So the state dict keys are exactly open_clip's (``conv1.weight``,
``transformer.resblocks.0.attn.in_proj_weight``, ...) and open_clip / OpenAI ViT
checkpoints load with a plain ``load_state_dict``, while ``attn_backend`` picks
sdpa / math / xformers like everywhere else in the project.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from babeltower.models.attention import ATTENTION_BACKENDS, MultiheadSelfAttention


@dataclass
class VisionConfig:
    """Architecture of the ViT vision tower (open_clip naming)."""

    image_size: int = 32
    """Input resolution in pixels (square)."""
    patch_size: int = 8
    """Patch size in pixels; image_size must be a multiple of it."""
    width: int = 32
    """Transformer width (hidden size)."""
    layers: int = 2
    """Number of transformer blocks."""
    heads: int = 2
    """Attention heads; must divide width."""
    mlp_ratio: float = 4.0
    """MLP hidden size as a multiple of width."""
    output_dim: int = 32
    """Width of the projected image embedding (the joint embedding space)."""
    pool_type: str = "tok"
    """'tok' (class token, as OpenAI CLIP) or 'avg' (mean of patch tokens)."""
    attn_backend: str = "sdpa"
    """Attention backend: 'sdpa', 'math' or 'xformers'."""
    gradient_checkpointing: bool = False
    """Recompute block activations in backward to save memory."""

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(
                f"VisionConfig.image_size={self.image_size} must be a multiple of patch_size={self.patch_size}"
            )
        if self.width % self.heads:
            raise ValueError(f"VisionConfig.heads={self.heads} must divide width={self.width}")
        if self.pool_type not in ("tok", "avg"):
            raise ValueError(f"VisionConfig.pool_type must be 'tok' or 'avg', got {self.pool_type!r}")
        if self.attn_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"VisionConfig.attn_backend must be one of {ATTENTION_BACKENDS}, got {self.attn_backend!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def vit_tiny(**overrides) -> VisionConfig:
    """The CPU test/demo size: 32 px, 8 px patches, width 32, 2 layers."""
    return VisionConfig(**{**dict(image_size=32, patch_size=8, width=32, layers=2, heads=2, output_dim=32), **overrides})


def vit_b32(**overrides) -> VisionConfig:
    """ViT-B/32 at 224 px, the size of OpenAI CLIP ViT-B/32 (88M parameters)."""
    return VisionConfig(
        **{**dict(image_size=224, patch_size=32, width=768, layers=12, heads=12, output_dim=512), **overrides}
    )


class VisionTower(nn.Module):
    """Images (B, 3, H, W) -> embeddings (B, output_dim)."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        from open_clip.transformer import VisionTransformer  # open_clip's tower, our attention

        self.config = config
        self.vit = VisionTransformer(
            image_size=config.image_size,
            patch_size=config.patch_size,
            width=config.width,
            layers=config.layers,
            heads=config.heads,
            mlp_ratio=config.mlp_ratio,
            output_dim=config.output_dim,
            pool_type=config.pool_type,
        )
        for block in self.vit.transformer.resblocks:
            old = block.attn
            new = MultiheadSelfAttention(config.width, config.heads, backend=config.attn_backend)
            new.load_state_dict(old.state_dict())
            block.attn = new
        self.vit.set_grad_checkpointing(config.gradient_checkpointing)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vit(pixel_values)  # (B, output_dim)
