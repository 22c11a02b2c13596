"""How well does a frozen text encoder align scene captions across languages, attribute for attribute?

For every scene of a caption shard set, each language's caption is matched against the
English captions of all scenes (cosine of mean-pooled token states, with the encoder's
query prefix); a match counts when the nearest English caption is the scene's own (or an
identical description). This is the ceiling a contrastive head trained on English captions
alone can inherit from a frozen encoder: its text side only projects what the encoder gives.

``--match bertscore`` matches token by token instead (BERTScore F1 of Zhang et al. 2020:
each token's best cosine in the other caption, averaged both ways, no idf weighting),
asking whether the attribute words align even where the sentence means do not;
``--layer`` picks the hidden layer (0 = embeddings, default the last).

    python scripts/e5_caption_bitext.py runs/e5/multilingual-e5-small runs/e5/data/scenes_eval/val
    python scripts/e5_caption_bitext.py runs/e5/multilingual-e5-small runs/e5/data/scenes_eval/val --match bertscore --layer 8
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
    parser.add_argument("--match", choices=("mean", "bertscore"), default="mean",
                        help="compare mean-pooled captions (default) or token by token (BERTScore F1)")
    parser.add_argument("--layer", type=int, default=-1, help="hidden layer to read (0 = embeddings; default the last)")
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

    prefix_tokens = len(tokenizer(args.prefix)["input_ids"]) - 1 if args.prefix else 1  # <s> + prefix pieces

    def token_states(texts: list[str]) -> list[torch.Tensor]:
        """Per caption: all its token states (mean), or its unit-length word-piece states
        without <s>, the prefix and </s> (bertscore)."""
        out = []
        for i in range(0, len(texts), 64):
            batch = tokenizer([args.prefix + t for t in texts[i : i + 64]], padding=True, return_tensors="pt")
            with torch.no_grad():
                states = model(**batch, output_hidden_states=True).hidden_states[args.layer]
            for row, mask in zip(states, batch["attention_mask"]):
                length = int(mask.sum())
                if args.match == "mean":
                    out.append(row[:length])
                else:
                    out.append(torch.nn.functional.normalize(row[prefix_tokens : length - 1], dim=-1))
        return out

    def nearest(queries: list[torch.Tensor], keys: list[torch.Tensor]) -> list[int]:
        if args.match == "mean":
            pool = lambda states: torch.nn.functional.normalize(states.mean(0), dim=-1)  # noqa: E731
            return (torch.stack([pool(q) for q in queries]) @ torch.stack([pool(k) for k in keys]).T).argmax(1).tolist()
        best = []
        for q in queries:
            scores = []
            for k in keys:
                sim = q @ k.T
                precision, recall = sim.max(1).values.mean(), sim.max(0).values.mean()
                scores.append(2 * precision * recall / (precision + recall))
            best.append(int(torch.stack(scores).argmax()))
        return best

    english = [item["en"] for item in items]
    distinct = sorted(set(english))
    index = {text: i for i, text in enumerate(distinct)}
    english_states = token_states(distinct)
    print(f"{len(items)} scenes, {len(distinct)} distinct English captions; match {args.match}, layer {args.layer}")
    print("| lang | nearest English caption is the scene's |\n|---|---|")
    for lang in items[0]:
        if lang == "en":
            continue
        best = nearest(token_states([item[lang] for item in items]), english_states)
        accuracy = sum(best[i] == index[english[i]] for i in range(len(items))) / len(items)
        print(f"| {lang} | {accuracy:.3f} |")


if __name__ == "__main__":
    main()
