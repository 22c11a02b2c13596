"""Rank a folder of images for a query written in any language, with an exported babeltower model.

    python scripts/rank_images.py MODEL_DIR IMAGE_DIR "zwei rote Kreise links" [--top 5]

MODEL_DIR is a hub folder written by `babeltower export` (or the main job's
runs/demo/contrastive/hub). Prints the images best matching the query, with cosine scores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from babeltower.modalities.image import ImageTransform, decode_image
from babeltower.modalities.text import tokenize
from babeltower.models.hub import load_clip

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@torch.no_grad()
def rank_images(model_dir: str | Path, image_dir: str | Path, query: str, top: int = 5) -> list[tuple[Path, float]]:
    """Returns the ``top`` (path, cosine) pairs of ``image_dir`` for ``query``, best first."""
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    model, tokenizer = load_clip(model_dir)
    paths = sorted(p for p in Path(image_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {image_dir}")
    transform = ImageTransform(model.config.vision.image_size)
    pixels = torch.stack([transform(decode_image(p.read_bytes(), where=str(p))) for p in paths])  # (N, 3, H, W)
    image_emb = torch.cat([model.encode_image(chunk) for chunk in pixels.split(256)])  # (N, D)
    enc = tokenize(tokenizer, [query], max_length=64)
    text_emb = model.encode_text(enc["input_ids"], enc["attention_mask"])  # (1, D)
    scores = (image_emb @ text_emb.T).squeeze(1)
    order = scores.argsort(descending=True)[:top]
    return [(paths[i], float(scores[i])) for i in order]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("image_dir")
    parser.add_argument("query")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()
    for path, score in rank_images(args.model_dir, args.image_dir, args.query, args.top):
        print(f"{score:+.3f}  {path}")


if __name__ == "__main__":
    main()
