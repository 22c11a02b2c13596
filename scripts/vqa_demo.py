"""Ask a babeltower VQA model questions about an image, in several languages.

Usage::

    python scripts/vqa_demo.py runs/demo/vqa/hub                       # a rendered scene, 10 languages
    python scripts/vqa_demo.py runs/demo/vqa/hub --image photo.png --question "Wie viele Formen siehst du?"
    python scripts/vqa_demo.py runs/demo/vqa/hub --question "What colour is it?" --options red green blue yellow

Without ``--image`` a synthetic scene with a held-out colour-shape pair is rendered, and
the same question is asked in all ten languages, so you can see whether the answers
agree across languages (what the evaluator calls cross-lingual consistency).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="VQA hub folder (babeltower export) or a VQA .ckpt")
    parser.add_argument("--image", default=None, help="image file; default: a rendered held-out scene")
    parser.add_argument("--question", default=None, help="your question (any of the ten languages)")
    parser.add_argument("--lang", default=None, help="the question's language (default: guessed)")
    parser.add_argument("--options", nargs="+", default=None, help="multiple choice: options to choose from")
    parser.add_argument("--mode", choices=["score", "classify"], default=None, help="answer head")
    parser.add_argument("--seed", type=int, default=1, help="which rendered scene")
    args = parser.parse_args(argv)

    from babeltower.datasets.synthetic.scenes import LANGUAGES, render_scene, sample_scenes
    from babeltower.datasets.synthetic.vqa import scene_questions
    from babeltower.tasks.vqa import answer_question, load

    model, tokenizer = load(args.model)
    if args.image:
        image_bytes = Path(args.image).read_bytes()
        spec = None
    else:
        spec = list(sample_scenes(args.seed + 1, "val", seed=0))[-1]
        buffer = io.BytesIO()
        render_scene(spec, 64).save(buffer, format="PNG")
        image_bytes = buffer.getvalue()
        Path("vqa_demo_scene.png").write_bytes(image_bytes)
        print(f"scene: {spec.attributes()} (held-out colour-shape pair) -> vqa_demo_scene.png")

    if args.question:
        out = answer_question(model, tokenizer, image_bytes, args.question, lang=args.lang, options=args.options,
                              mode=args.mode)
        print(f"[{out['lang']}] {args.question} -> {out['answer']}")
        print("   ranked: " + ", ".join(f"{a} ({s:.2f})" for a, s in out["ranked"][:4]))
        return 0
    if spec is None:
        parser.error("with --image, give --question")
    for question in scene_questions(spec, seed=args.seed):
        if question["form"] != "open":
            continue
        print(f"\n{question['type']} (truth: {question['answer_key']})")
        for lang in LANGUAGES:
            text = question["texts"][lang]
            out = answer_question(model, tokenizer, image_bytes, text, lang=lang, mode=args.mode)
            mark = "✓" if out["answer"] == question["answer"][lang] else "✗"
            print(f"  {mark} [{lang}] {text} -> {out['answer']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
