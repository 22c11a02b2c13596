import io

import pytest
import torch
from PIL import Image

from babeltower.modalities.image import (
    CLIP_MEAN,
    CLIP_STD,
    ImageTransform,
    decode_image,
    image_to_tensor,
    tensor_to_image,
)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _left_red_right_blue(width: int = 40, height: int = 30) -> Image.Image:
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, width // 2, height))
    return image


def test_decode_image_round_trip_and_rgb():
    image = Image.new("L", (12, 8), 128)
    decoded = decode_image(_png(image))
    assert decoded.mode == "RGB"
    assert decoded.size == (12, 8)
    assert decoded.getpixel((3, 3)) == (128, 128, 128)


def test_decode_image_composites_alpha_on_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert decode_image(_png(image)).getpixel((0, 0)) == (255, 255, 255)


def test_decode_truncated_image_names_where():
    data = _png(Image.effect_noise((64, 64), 50).convert("RGB"))
    with pytest.raises(ValueError, match=r"shard-000001\.tar/key7\.png: cannot decode image"):
        decode_image(data[: len(data) // 2], where="shard-000001.tar/key7.png")
    with pytest.raises(ValueError, match="cannot decode image"):
        decode_image(b"not an image at all", where="x")
    with pytest.raises(ValueError, match="empty"):
        decode_image(b"", where="x")


def test_transform_shape_and_normalisation():
    transform = ImageTransform(16)
    white = transform(Image.new("RGB", (50, 30), (255, 255, 255)))
    assert white.shape == (3, 16, 16)
    assert white.dtype == torch.float32
    expected = (1.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(white[:, 5, 5], expected)


def test_transform_never_flips_left_right():
    image = _left_red_right_blue()
    for train in (False, True):
        transform = ImageTransform(16, train=train)
        for _ in range(10):
            pixels = tensor_to_image(transform(image), CLIP_MEAN, CLIP_STD)
            red_left = pixels.getpixel((1, 8))
            blue_right = pixels.getpixel((14, 8))
            assert red_left[0] > 200 and red_left[2] < 50
            assert blue_right[2] > 200 and blue_right[0] < 50


def test_train_jitter_is_reproducible_with_rng_and_eval_is_deterministic():
    import random

    image = Image.effect_noise((48, 48), 60).convert("RGB")
    train = ImageTransform(32, train=True)
    a = train(image, rng=random.Random(3))
    b = train(image, rng=random.Random(3))
    torch.testing.assert_close(a, b)
    outputs = {train(image, rng=random.Random(seed)).sum().item() for seed in range(6)}
    assert len(outputs) > 1
    evaluation = ImageTransform(32)
    torch.testing.assert_close(evaluation(image), evaluation(image))


def test_tensor_image_round_trip():
    image = _left_red_right_blue(8, 8)
    tensor = image_to_tensor(image)
    assert tensor.shape == (3, 8, 8) and tensor.max() == 1.0
    assert list(tensor_to_image(tensor).getdata()) == list(image.getdata())
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        tensor_to_image(torch.zeros(4, 8, 8))
