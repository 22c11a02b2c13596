"""Chooses the speech head's LM fusion weights (alpha, beta) on one half of a test set.

The utterances are split in two by the SHA-1 of their sample key: the *dev* half (even
first byte) picks the setting, the *other* half only reports it, so the chosen weights are
not fitted to the numbers they are judged by. The acoustic model runs once per clip; every
setting then only re-decodes its log-probabilities (CTC prefix beam search + the folder's
character LM, ``models/charlm.py``).

    python scripts/tune_asr_lm.py runs/asr_whisper/hub --data runs/data/speech_open/val \\
        --alphas 0,0.2,0.3,0.5 --betas 0.5,1,1.5 [--write]

Objective on the dev half: the mean of each number over its bar in issue 18 (held-out mean
CER / 0.35, held-out worst language / 0.6, scene mean CER / 0.15, Korean-English MER / 40),
so the setting with the most room under all four bars wins. ``--write`` saves the best setting into
the folder's ``charlm.json.gz``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools

import torch


#: Issue 18's bars: held-out mean CER, held-out worst language, scene mean CER, ko-en MER.
BARS = (0.35, 0.6, 0.15, 40.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="ASR hub folder with a charlm.json.gz (babeltower asr-lm)")
    parser.add_argument("--data", required=True, help="speech shards with group/lang metadata")
    parser.add_argument("--alphas", default="0,0.2,0.3,0.5")
    parser.add_argument("--betas", default="0.5,1,1.5")
    parser.add_argument("--beam-size", type=int, default=8)
    parser.add_argument("--write", action="store_true", help="save the best setting into the folder's LM file")
    args = parser.parse_args()

    from babeltower.datasets.speech import speech_eval_batches
    from babeltower.eval.asr import _group_reports
    from babeltower.models.asr import ASRFeatures, ASRModel
    from babeltower.models.charlm import LM_FILE, ctc_beam_search_lm

    model = ASRModel.from_pretrained(args.model)
    if model.lm is None:
        raise SystemExit(f"{args.model} has no {LM_FILE}; run babeltower asr-lm first")
    front = ASRFeatures.for_config(model.config)
    clips = []
    with torch.no_grad():
        for batch in speech_eval_batches(args.data, batch_size=16):
            features, lengths = front(batch["waveforms"], batch["audio_lengths"])
            log_probs, out_lengths, _ = model(features, lengths)
            for i in range(len(batch["text"])):
                half = "dev" if hashlib.sha1(batch["key"][i].encode()).digest()[0] % 2 == 0 else "other"
                clips.append({"lp": log_probs[i : i + 1, : int(out_lengths[i])], "ref": batch["text"][i],
                              "lang": batch["lang"][i], "meta": batch["meta"][i], "half": half})
    units = model.lm_units()

    def score(items):
        groups = _group_reports(items, {"zh", "ja"})
        heldout, scene = groups.get("heldout", {}), groups.get("scene", {})
        cs = next((g["code_switching"]["mer"]["all"] for g in groups.values() if "code_switching" in g), float("nan"))
        return heldout.get("mean_cer", float("nan")), heldout.get("max_cer", float("nan")), scene.get("mean_cer", float("nan")), cs

    rows = []
    for alpha, beta in itertools.product(map(float, args.alphas.split(",")), map(float, args.betas.split(","))):
        items = {"dev": [], "other": []}
        for clip in clips:
            ids = ctc_beam_search_lm(clip["lp"], None, units, model.blank_id, model.lm if alpha > 0 else None,
                                     alpha=alpha, beta=beta, beam_size=args.beam_size)[0]
            items[clip["half"]].append({**clip, "hyp": model.decode_tokens([ids])[0]})
        dev, other = score(items["dev"]), score(items["other"])
        objective = sum(value / bar for value, bar in zip(dev, BARS)) / len(BARS)
        rows.append((objective, alpha, beta, dev, other))
        print(f"alpha {alpha:.2f} beta {beta:.2f} | dev: heldout {dev[0]:.3f} (max {dev[1]:.3f}) scene {dev[2]:.3f} "
              f"MER {dev[3]:.1f} -> {objective:.3f} | other: heldout {other[0]:.3f} (max {other[1]:.3f}) "
              f"scene {other[2]:.3f} MER {other[3]:.1f}", flush=True)
    best = min(rows)
    print(f"best on the dev half: alpha {best[1]}, beta {best[2]}")
    if args.write:
        model.attach_lm(model.lm, alpha=best[1], beta=best[2], beam_size=args.beam_size)
        from pathlib import Path

        folder = Path(args.model) / "asr" if (Path(args.model) / "asr").is_dir() else Path(args.model)
        model.save_lm(folder)
        print(f"wrote alpha {best[1]}, beta {best[2]} into {folder / LM_FILE}")


if __name__ == "__main__":
    main()
