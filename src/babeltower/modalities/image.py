"""Images: bytes -> PIL -> normalised tensors and back.

Shared by training (the shard pipeline), evaluation and inference so that every
path sees exactly the same resize, crop and normalisation.

Example:
    >>> transform = ImageTransform(224)
    >>> pixel_values = transform(decode_image(png_bytes, where="shard-000000.tar/0001"))
    >>> pixel_values.shape
    torch.Size([3, 224, 224])
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

# OpenAI CLIP's normalisation constants (open_clip's OPENAI_DATASET_MEAN/STD); using them
# keeps our vision towers compatible with CLIP checkpoints and their preprocessing.
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def decode_image(data: bytes | bytearray | memoryview | str | os.PathLike, *, where: str = "") -> Image.Image:
    """Decodes an encoded image (JPEG, PNG, WebP, TIFF, GIF, ...) into an RGB PIL image.

    The one decoder of the suite (training shards, evaluation, inference scripts, OCR
    line images), so every path sees the same pixels:

    * the image is fully loaded, so truncated files fail here rather than later;
    * EXIF orientation is applied (``ImageOps.exif_transpose``): a phone photo stored
      sideways or mirrored comes out as it is viewed, so left/right in a caption stays true;
    * 16- and 32-bit greyscale (``I;16``, ``I``) and float (``F``) images are scaled from
      their value range to 8 bits instead of being clipped to white;
    * alpha (RGBA, LA, palette with transparency) is composited onto white, CMYK and
      palette images are converted, an animated image gives its first frame.

    Args:
        data: The encoded file contents, or a path to the file.
        where: Where the bytes came from (e.g. ``"shard-000003.tar/00001234.png"``),
            used in the error message; defaults to the path when ``data`` is one.

    Returns:
        The decoded image in RGB mode.

    Raises:
        ValueError: If the file is empty, truncated, not an image format PIL reads, or
            has no pixels; the message names ``where``.
        FileNotFoundError: If ``data`` is a path that does not exist.
    """
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        where = where or str(path)
        if path.is_dir():
            raise ValueError(f"{where}: is a folder, not an image file")
        data = path.read_bytes()  # FileNotFoundError names the path
    where = where or "<image bytes>"
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"{where}: cannot decode image from {type(data).__name__}; expected encoded bytes or a path")
    if len(data) == 0:
        raise ValueError(f"{where}: cannot decode image from an empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        # Image.open only reads the header; load() decodes every pixel so that a
        # truncated file raises here (PIL's "image file is truncated"). For an animated
        # image this is the first frame.
        image.load()
        if image.width < 1 or image.height < 1:
            raise ValueError(f"image has no pixels ({image.width}x{image.height})")
        ImageOps.exif_transpose(image, in_place=True)  # no copy when there is nothing to turn
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{where}: cannot decode image ({len(data)} bytes): {exc}") from exc
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # PIL's convert("L") clips these to 0..255, so a 16-bit scan turns white.
        array = np.asarray(image, dtype=np.float64)
        low, high = _value_range(image.mode, array)
        scaled = np.clip((array - low) * (255.0 / max(high - low, 1e-12)), 0, 255)
        return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        # Alpha is composited onto white rather than dropped, so transparent PNGs do not
        # turn into black backgrounds.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # CMYK, palette, greyscale, YCbCr, ...


def _value_range(mode: str, array: np.ndarray) -> tuple[float, float]:
    """The range a wide greyscale image's values are scaled from.

    16-bit images use the full 0..65535 range (a dark scan stays dark); other integer and
    float images, whose nominal range is unknown, use their own minimum and maximum.
    """
    if mode.startswith("I;16"):
        return 0.0, 65535.0
    if mode == "I" and array.size and array.min() >= 0 and array.max() > 255 and array.max() <= 65535:
        return 0.0, 65535.0  # PNG 16-bit greyscale opens as "I" in recent Pillow
    if mode == "F" and array.size and array.min() >= 0.0 and array.max() <= 1.0:
        return 0.0, 1.0
    return (float(array.min()), float(array.max())) if array.size else (0.0, 1.0)


def check_image_size(pixel_values: torch.Tensor, expected: int, *, where: str = "batch") -> None:
    """Raises if images are not the size a model was built for.

    ``babeltower fit`` links a data module's ``image_size`` to the model's; a data module
    built by hand can still differ, and a mismatch otherwise shows up as a shape error deep
    in the patch embedding, or not at all for a convolutional tower.

    Args:
        pixel_values: (B, 3, H, W) or (3, H, W) tensor.
        expected: The side length the model expects.
        where: What is being checked (e.g. ``"data.image_size"``), for the message.

    Raises:
        ValueError: Naming both sizes and the setting to change.
    """
    height, width = pixel_values.shape[-2:]
    if (height, width) != (expected, expected):
        raise ValueError(
            f"{where}: images are {height}x{width} but the model expects {expected}x{expected}; "
            f"set the data's image_size to {expected} (or use a model built for {height}x{width})"
        )


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """Converts a PIL image to a float tensor in [0, 1].

    Args:
        image: Any PIL image; converted to RGB first.

    Returns:
        Tensor of shape (3, H, W), dtype float32, values in [0, 1].
    """
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)  # (3, H, W)


def tensor_to_image(
    tensor: torch.Tensor,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Image.Image:
    """Converts a (3, H, W) tensor back to an RGB PIL image.

    Args:
        tensor: Tensor of shape (3, H, W) (a leading batch dimension of 1 is accepted).
        mean: If given with ``std``, the normalisation to undo (e.g. ``CLIP_MEAN``);
            otherwise ``tensor`` is taken to be in [0, 1].
        std: See ``mean``.

    Returns:
        The image, values clamped to [0, 255].

    Raises:
        ValueError: If the tensor does not have 3 channels.
    """
    if tensor.dim() == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[0] != 3:
        raise ValueError(f"tensor_to_image expects shape (3, H, W); got {tuple(tensor.shape)}")
    tensor = tensor.detach().float().cpu()
    if mean is not None and std is not None:
        tensor = tensor * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    array = (tensor.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()  # (H, W, 3)
    return Image.fromarray(array, mode="RGB")


class ImageTransform:
    """Resize the shorter side, centre-crop a square and normalise.

    Evaluation mode is deterministic. Training mode adds only a small scale and
    translation jitter (resize to up to ``1 + max_jitter`` times the size, then a random
    crop). There is deliberately no horizontal flip and no colour jitter: captions
    name left/right positions and colours, and both augmentations would make them false.

    Args:
        image_size: Output height and width in pixels.
        train: Whether to apply the training jitter.
        mean: Per-channel mean subtracted after scaling to [0, 1].
        std: Per-channel standard deviation divided by.
        max_jitter: Largest extra scale used in training mode (0.08 = up to 8% larger
            before the random crop, i.e. a shift of at most 4% of the image per side).
    """

    def __init__(
        self,
        image_size: int,
        train: bool = False,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        max_jitter: float = 0.08,
    ) -> None:
        if image_size <= 0:
            raise ValueError(f"ImageTransform: image_size must be positive, got {image_size}")
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"ImageTransform: mean and std need 3 values (RGB); got {mean} and {std}")
        self.image_size = image_size
        self.train = train
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.max_jitter = max_jitter
        self._mean = torch.tensor(self.mean).view(3, 1, 1)
        self._std = torch.tensor(self.std).view(3, 1, 1)
        self._rng = random.Random(0)

    def __repr__(self) -> str:
        return f"ImageTransform(image_size={self.image_size}, train={self.train}, mean={self.mean}, std={self.std})"

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> torch.Tensor:
        """Transforms one image.

        Args:
            image: The input image (any mode; converted to RGB).
            rng: Random source for the training jitter. Pass a per-sample generator to
                make augmentation reproducible; defaults to the transform's own.

        Returns:
            Normalised tensor of shape (3, image_size, image_size), float32.
        """
        image = image.convert("RGB")
        rng = rng or self._rng
        target = self.image_size
        if self.train and self.max_jitter > 0:
            target = int(round(self.image_size * (1.0 + rng.uniform(0.0, self.max_jitter))))
        image = _resize_shorter_side(image, target)
        width, height = image.size
        if self.train:
            left = rng.randint(0, width - self.image_size)
            top = rng.randint(0, height - self.image_size)
        else:
            left = (width - self.image_size) // 2
            top = (height - self.image_size) // 2
        image = image.crop((left, top, left + self.image_size, top + self.image_size))
        return (image_to_tensor(image) - self._mean) / self._std  # (3, S, S)


def _resize_shorter_side(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    if min(width, height) == size:
        return image
    scale = size / min(width, height)
    # max(size, ...) guards against rounding the shorter side below the crop size.
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    return image.resize(new_size, Image.Resampling.BICUBIC, reducing_gap=None)
