"""Text-line images -> recogniser input tensors, the same for training, evaluation and inference.

A line image of any size and colours becomes a (1, height, W) float tensor: grey, scaled
to ``height`` pixels keeping the aspect ratio, polarity normalised (ink bright,
background near 0, whatever the colours were), contrast stretched. Zero padding to the
right of a shorter line in a batch then looks like background.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image

#: Lines narrower than this after scaling are padded to it (the conv stem needs a few columns).
MIN_WIDTH = 8


def resize_to_height(image: Image.Image, height: int, max_width: int | None = None, stretch: float = 1.0) -> Image.Image:
    """Scales a line image to ``height`` px, keeping its aspect ratio times ``stretch``.

    A line wider than ``max_width`` after scaling is squeezed to it horizontally.
    """
    if image.width < 1 or image.height < 1:
        raise ValueError(f"a line image needs at least 1x1 pixels, got {image.width}x{image.height}")
    width = max(1, round(image.width * height / image.height * stretch))
    if max_width is not None:
        width = min(width, max_width)
    gap = 2.0 if image.height > 2 * height else None  # fast, still anti-aliased, large downscales
    return image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=gap)


def line_tensor(
    image: Image.Image,
    height: int = 32,
    max_width: int = 1024,
    rng: random.Random | None = None,
) -> torch.Tensor:
    """A line image (any mode) -> (1, height, W) float32 in [0, 1], ink bright.

    Args:
        image: The line; colour images are converted to grey.
        height: Output height in pixels (``OCRConfig.image_height``).
        max_width: Widest output; longer lines are squeezed.
        rng: Training only: a random horizontal stretch of 0.85-1.15 (font width variety).
    """
    grey = image if image.mode == "L" else image.convert("L")
    stretch = rng.uniform(0.85, 1.15) if rng is not None else 1.0
    grey = resize_to_height(grey, height, max_width, stretch)
    array = np.asarray(grey, dtype=np.float32) / 255.0  # (H, W)
    # Background is the majority of a line's pixels: make it dark, ink bright.
    if np.median(array) > 0.5:
        array = 1.0 - array
    low, high = np.percentile(array, 5), array.max()
    array = np.clip((array - low) / max(high - low, 1e-3), 0.0, 1.0)
    if array.shape[1] < MIN_WIDTH:
        array = np.pad(array, ((0, 0), (0, MIN_WIDTH - array.shape[1])))
    return torch.from_numpy(np.ascontiguousarray(array))[None]  # (1, H, W)


def batch_lines(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pads (1, H, W_i) line tensors on the right with zeros (background).

    Returns:
        images (B, 1, H, W_max) and widths (B,) long.
    """
    if not tensors:
        raise ValueError("batch_lines: no line tensors")
    widths = torch.tensor([t.shape[-1] for t in tensors], dtype=torch.long)
    images = torch.zeros(len(tensors), 1, tensors[0].shape[-2], int(widths.max()))
    for row, tensor in enumerate(tensors):
        images[row, :, :, : tensor.shape[-1]] = tensor
    return images, widths
