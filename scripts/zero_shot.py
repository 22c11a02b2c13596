"""Zero-shot classify an image with labels written in any language, with an exported babeltower model.

    python scripts/zero_shot.py MODEL_DIR image.png "un cercle rouge" "un carré bleu" "一个绿色的三角形"

Prints a probability per label (softmax over the model's scaled cosine similarities,
as CLIP zero-shot classification does).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from babeltower.modalities.image import ImageTransform, decode_image
from babeltower.modalities.text import tokenize
from babeltower.models.hub import load_clip


@torch.no_grad()
def zero_shot(model_dir: str | Path, image_path: str | Path, labels: list[str]) -> list[tuple[str, float]]:
    """Returns (label, probability) for each label, in the given order."""
    if len(labels) < 2:
        raise ValueError("give at least two labels to choose between")
    model, tokenizer = load_clip(model_dir)
    image_path = Path(image_path)
    pixels = ImageTransform(model.config.vision.image_size)(decode_image(image_path.read_bytes(), where=str(image_path)))
    image_emb = model.encode_image(pixels[None])  # (1, D)
    enc = tokenize(tokenizer, labels, max_length=64)
    label_emb = model.encode_text(enc["input_ids"], enc["attention_mask"])  # (L, D)
    probs = (model.scale() * image_emb @ label_emb.T).softmax(dim=-1).squeeze(0)
    return [(label, float(p)) for label, p in zip(labels, probs)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("image")
    parser.add_argument("labels", nargs="+")
    args = parser.parse_args()
    for label, p in sorted(zero_shot(args.model_dir, args.image, args.labels), key=lambda x: -x[1]):
        print(f"{p:6.1%}  {label}")


if __name__ == "__main__":
    main()
