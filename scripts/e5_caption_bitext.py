"""How well does a frozen text encoder align scene captions across languages, attribute for attribute?

For every scene of a caption shard set, each language's caption is matched against the
English captions of all scenes (cosine of mean-pooled token states, with the encoder's
query prefix); a match counts when the nearest English caption is the scene's own (or an
identical description). This is the ceiling a contrastive head trained on English captions
alone can inherit from a frozen encoder: its text side only projects what the encoder gives.

    python scripts/e5_caption_bitext.py runs/e5/multilingual-e5-small runs/e5/data/scenes_eval/val
"""

from __future__ import annotations

import argparse
import glob
import json
import tarfile

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("encoder", help="text encoder folder (e.g. `babeltower hub import-e5` output)")
    parser.add_argument("data", help="scene shard folder whose json holds captions in several languages")
    parser.add_argument("--prefix", default="query: ", help="text put before every caption (e5: 'query: ')")
    args = parser.parse_args()
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.encoder)
    model = AutoModel.from_pretrained(args.encoder).eval()
    items = []
    for path in sorted(glob.glob(f"{args.data}/*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    items.append(json.loads(tar.extractfile(member).read())["captions"])
    if not items:
        raise SystemExit(f"{args.data}: no shards with caption json")

    def embed(texts: list[str]) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), 64):
            batch = tokenizer([args.prefix + t for t in texts[i : i + 64]], padding=True, return_tensors="pt")
            with torch.no_grad():
                states = model(**batch).last_hidden_state
            mask = batch["attention_mask"][..., None].float()
            out.append(torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1))
        return torch.cat(out)

    english = [item["en"] for item in items]
    distinct = sorted(set(english))
    index = {text: i for i, text in enumerate(distinct)}
    english_emb = embed(distinct)
    print(f"{len(items)} scenes, {len(distinct)} distinct English captions")
    print("| lang | nearest English caption is the scene's |\n|---|---|")
    for lang in items[0]:
        if lang == "en":
            continue
        best = (embed([item[lang] for item in items]) @ english_emb.T).argmax(1)
        accuracy = sum(int(best[i]) == index[english[i]] for i in range(len(items))) / len(items)
        print(f"| {lang} | {accuracy:.3f} |")


if __name__ == "__main__":
    main()
