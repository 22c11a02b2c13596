"""Read text lines from images with a babeltower OCR model.

Pass any line images (PNG, JPEG, WebP, TIFF, GIF...; colour, grey, 16-bit, CMYK): each is
read as one line of text and its transcript printed in reading order (Arabic lines with
digits and Latin words come out as they are read, right to left). ``--render`` draws a
line first with the synthesiser's fonts, to try the model without an image at hand.

Usage::

    python scripts/ocr_demo.py runs/ocr_quality/hub photo_of_a_sign.png scan_line.jpg
    python scripts/ocr_demo.py runs/ocr_quality/hub --render "ذهبت إلى New York في 2024" --lang ar
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path


def render(text: str, lang: str, out: Path) -> Path:
    """Draws ``text`` in a held-out font of ``lang``'s script (no augmentation) into ``out``."""
    from babeltower.datasets.synthetic import ocr

    script = ocr.LANGUAGES[lang][0]
    font = ocr.check_fonts((script,))[script]["eval"][0]
    sample = ocr.render_sample(text, lang, font, random.Random(0), held_out_fonts=True, augment_strength=0.0)
    sample.image.save(out)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="hub folder written by `babeltower export`/the main job, or an OCR .ckpt")
    parser.add_argument("images", nargs="*", help="line images")
    parser.add_argument("--render", metavar="TEXT", help="draw this line first and read it")
    parser.add_argument("--lang", default="en", help="language of --render (en de fr es vi ru ar hi ko zh ja)")
    args = parser.parse_intermixed_args(argv)  # images may come after --render

    from babeltower.tasks.ocr import load, open_line_image

    images = list(args.images)
    if args.render:
        import tempfile

        images.append(str(render(args.render, args.lang, Path(tempfile.gettempdir()) / f"ocr_demo_{args.lang}.png")))
        print(f"drew {args.render!r} into {images[-1]}")
    if not images:
        parser.error("pass line images, or --render TEXT")
    model = load(args.model)
    failed = 0
    for path in images:
        try:
            image = open_line_image(path)
        except (ValueError, OSError) as error:
            print(f"{path}\tERROR: {error}")
            failed += 1
            continue
        started = time.perf_counter()
        text = model.read([image])[0]
        print(f"{path}\t{text}\t({image.width}x{image.height} px, {time.perf_counter() - started:.3f} s)")
    if failed:
        print(f"{failed} of {len(images)} image(s) could not be read", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
