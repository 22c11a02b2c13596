import io

import numpy as np
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


# ------------------------------------------------------------------ issue 16.6: decoding beyond 8-bit RGB


def _encode(image, fmt="PNG", **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_16_bit_greyscale_png_is_scaled_not_white():
    values = np.full((4, 6), 1000, dtype=np.uint16)
    values[:, :3] = 60000
    data = _encode(Image.fromarray(values))
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    pixels = np.asarray(decode_image(data))
    assert pixels.shape == (4, 6, 3)
    assert (pixels[:, :3] == round(60000 / 65535 * 255)).all()
    assert (pixels[:, 3:] == round(1000 / 65535 * 255)).all()  # dark stays dark


def test_exif_orientation_is_applied():
    """A photo stored mirrored with EXIF orientation 2 must come out as it is viewed (left stays left)."""
    stored = Image.new("RGB", (8, 4), (0, 0, 255))
    stored.paste((255, 0, 0), (4, 0, 8, 4))  # red on the right of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 2  # mirrored horizontally: viewed, red is on the left
    pixels = np.asarray(decode_image(_encode(stored, "PNG", exif=exif)))
    assert tuple(pixels[0, 0]) == (255, 0, 0) and tuple(pixels[0, -1]) == (0, 0, 255)
    exif[0x0112] = 6  # rotated: the viewed image is 4 wide, 8 tall
    assert decode_image(_encode(stored, "JPEG", exif=exif)).size == (4, 8)


def test_cmyk_palette_alpha_animated_and_one_pixel_images():
    cmyk = decode_image(_encode(Image.new("CMYK", (3, 3), (0, 255, 255, 0)), "JPEG"))
    assert cmyk.mode == "RGB" and cmyk.getpixel((1, 1))[0] > 200 and cmyk.getpixel((1, 1))[1] < 60
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 0
    assert decode_image(_encode(palette)).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    frames = [Image.new("RGB", (5, 5), colour) for colour in ((0, 255, 0), (255, 0, 0))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=10)
    first = decode_image(gif.getvalue())
    assert first.getpixel((2, 2))[1] > 200 and first.getpixel((2, 2))[0] < 60
    one = decode_image(_encode(Image.new("L", (1, 1), 128)))
    assert one.size == (1, 1) and one.getpixel((0, 0)) == (128, 128, 128)
    assert ImageTransform(8)(one).shape == (3, 8, 8)


def test_unreadable_images_name_the_file(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.png: cannot decode image from an empty file"):
        decode_image(empty)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.jpg: cannot decode image \(12 bytes\)"):
        decode_image(text)
    with pytest.raises(ValueError, match=r"is a folder"):
        decode_image(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        decode_image(tmp_path / "missing.png")
    assert decode_image(_encode(Image.new("RGB", (2, 2))), where="x").size == (2, 2)


def test_image_size_mismatch_is_an_error_naming_both_sizes():
    from babeltower.modalities.image import check_image_size

    check_image_size(torch.zeros(2, 3, 32, 32), 32)
    with pytest.raises(ValueError, match=r"images are 64x64 but the model expects 32x32; set the data's image_size"):
        check_image_size(torch.zeros(2, 3, 64, 64), 32, where="data.image_size")
