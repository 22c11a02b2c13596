"""AltCLIP's claim on one machine: contrastive heads on the frozen imported e5, English-only vs all languages.

Evaluates the two checkpoints of configs/contrastive/e5_english_only.yaml and
e5_all_languages.yaml on the same scene shards in every caption language (text->image R@1
in pools of 20, zero-shot attributes) and writes the per-language fraction of English
(babeltower.eval.transfer) with a chart.

Both models freeze the same e5 backbone, so its outputs for a caption are the same in
both: the second model reuses the first one's token-state cache (only the projections
differ), which halves the evaluation's cost on CPU.

    python scripts/e5_transfer.py --english-only runs/e5/contrastive_english_only/logs/version_0/checkpoints/last.ckpt \
        --all-languages runs/e5/contrastive_all_languages/logs/version_0/checkpoints/last.ckpt \
        --data runs/e5/data/scenes_eval/val --out runs/e5/transfer
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def evaluate(ckpt: str, data: str, languages: list[str], shared_cache=None, zero_shot: bool = False):
    from babeltower.datasets.synthetic.scenes import ALL_LANGUAGES  # noqa: F401  (languages below)
    from babeltower.eval.retrieval import evaluate_retrieval
    from babeltower.tasks import contrastive

    clip, tokenizer = contrastive.load(ckpt)
    if shared_cache is not None and clip.text.backbone_frozen:
        clip.text._cache = shared_cache
    with torch.no_grad():
        batches = contrastive.eval_batches(data, clip.config.vision.image_size, tokenizer, 128)
        report = evaluate_retrieval(clip, tokenizer, batches, languages=languages,
                                    label_prompts=contrastive.scene_label_prompts(languages) if zero_shot else None,
                                    pool_size=20, seed=0)
    return report, clip.text._cache


def main() -> None:
    from babeltower.datasets.synthetic.scenes import ALL_LANGUAGES
    from babeltower.eval.transfer import main as transfer_main

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--english-only", required=True)
    parser.add_argument("--all-languages")
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--languages", default=",".join(ALL_LANGUAGES))
    parser.add_argument("--zero-shot", action="store_true",
                        help="also score zero-shot attribute prompts (25 prompts per value and language: slow on CPU)")
    args = parser.parse_args()
    languages = args.languages.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = None
    files = []
    for name, ckpt in (("english_only", args.english_only), ("all_languages", args.all_languages)):
        if not ckpt:
            continue
        report, cache = evaluate(ckpt, args.data, languages, cache, args.zero_shot)
        path = out / f"{name}.json"
        path.write_text(json.dumps({"per_language": report["per_language"], "mean": report["mean"]}, indent=2,
                                   sort_keys=True) + "\n")
        (out / f"{name}.md").write_text(report["markdown"])
        files.append(str(path))
        print(f"{name}:\n{report['markdown']}")
    for metric in ("t2i_r1_pool", "i2t_r1_pool") + (("zs_mean",) if args.zero_shot else ()):
        transfer_main(files + ["--metric", metric, "--out", str(out / metric)])


if __name__ == "__main__":
    main()
