"""Rank a folder of images for a query written in any language, with an exported babeltower model.

    python scripts/rank_images.py MODEL_DIR IMAGE_DIR "zwei rote Kreise links" [--top 5]

MODEL_DIR is a hub folder written by `babeltower export` (or the main job's
runs/demo/contrastive/hub). Prints the images best matching the query, with cosine scores.
An unreadable image (truncated, empty, not an image) is skipped and listed on stderr;
the exit status is then 1 (2 when nothing could be ranked).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from babeltower.modalities.image import ImageTransform, decode_image
from babeltower.modalities.text import tokenize
from babeltower.models.hub import load_clip

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def load_images(paths: list[Path], image_size: int, skipped: list[tuple[Path, str]]) -> tuple[list[Path], torch.Tensor]:
    """Decodes and transforms ``paths``; an unreadable image is skipped and added to ``skipped``.

    Returns:
        The paths that decoded and their pixels (N, 3, image_size, image_size).

    Raises:
        ValueError: If no image decodes.
    """
    transform = ImageTransform(image_size)
    kept, pixels = [], []
    for path in paths:
        try:
            pixels.append(transform(decode_image(path)))
        except (ValueError, OSError) as exc:  # truncated, empty, not an image, unreadable
            skipped.append((path, str(exc)))
            continue
        kept.append(path)
    if not kept:
        raise ValueError(f"none of the {len(paths)} images could be read (first: {skipped[0][1]})")
    return kept, torch.stack(pixels)


@torch.no_grad()
def rank_images(
    model_dir: str | Path, image_dir: str | Path, query: str, top: int = 5, skipped: list | None = None
) -> list[tuple[Path, float]]:
    """Returns the ``top`` (path, cosine) pairs of ``image_dir`` for ``query``, best first.

    Images that cannot be decoded are skipped (and appended to ``skipped`` as
    ``(path, reason)`` when a list is given), not fatal.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    if not Path(image_dir).is_dir():
        raise NotADirectoryError(f"{image_dir} is not a folder of images")
    model, tokenizer = load_clip(model_dir)
    paths = sorted(p for p in Path(image_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {image_dir}")
    skipped = skipped if skipped is not None else []
    paths, pixels = load_images(paths, model.config.vision.image_size, skipped)  # (N, 3, H, W)
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
    skipped: list[tuple[Path, str]] = []
    try:
        ranked = rank_images(args.model_dir, args.image_dir, args.query, args.top, skipped)
    except (ValueError, OSError) as exc:
        print(f"rank_images: error: {exc}", file=sys.stderr)
        return 2
    for path, score in ranked:
        print(f"{score:+.3f}  {path}")
    if skipped:
        print(f"rank_images: skipped {len(skipped)} unreadable image(s):", file=sys.stderr)
        for path, reason in skipped:
            print(f"  {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
