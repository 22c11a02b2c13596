"""Multilingual retrieval evaluator: image<->text R@k and zero-shot attribute classification per language.

The evaluator takes a model and batches (no Lightning, no shard reading here), so the
same code scores a freshly trained system, an exported hub folder, or a user's model.

Per language it reports:
- ``t2i_r1_pool`` / ``i2t_r1_pool``: R@1 in pools of ``pool_size`` candidates (default
  20, chance 1/20) whose items have pairwise distinct descriptions (for scenes: distinct
  attribute tuples; otherwise distinct caption text), averaged over pools;
- ``t2i_r1`` / ``t2i_r5`` / ``i2t_r1`` / ``i2t_r5``: R@k against every item of the split,
  where any item with the same description (attribute tuple, or caption text) counts as
  a correct answer, since such duplicates are indistinguishable by their text;
- ``zs_<attribute>``: zero-shot classification accuracy with label prompts written in
  that language (e.g. colour, shape, count, position), and ``zs_mean``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional

import torch
from tqdm.auto import tqdm

from babeltower.eval.harness import prompt_hash
from babeltower.eval.metrics import make_pools, pooled_recall_at_1, recall_at_k_multi, zero_shot_accuracy
from babeltower.eval.report import bar_chart, markdown_table, write_json
from babeltower.modalities.text import tokenize

# attribute -> lang -> value -> prompt, or a list of prompts (averaged: CLIP's prompt ensembling)
LabelPrompts = Mapping[str, Mapping[str, Mapping[str, "str | list[str]"]]]


@torch.no_grad()
def embed_texts(model, tokenizer, texts: list[str], max_length: int, batch_size: int, device) -> torch.Tensor:
    """Normalised text embeddings (N, D), in batches."""
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenize(tokenizer, texts[start : start + batch_size], max_length)
        out.append(model.encode_text(enc["input_ids"].to(device), enc["attention_mask"].to(device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.embed_dim)


def embed_label_prompts(model, tokenizer, prompts, max_length: int, batch_size: int, device) -> torch.Tensor:
    """(V, D) class embeddings; a class given as a list of prompts gets their normalised mean."""
    groups = [[p] if isinstance(p, str) else list(p) for p in prompts]
    flat = embed_texts(model, tokenizer, [t for g in groups for t in g], max_length, batch_size, device)
    out, start = [], 0
    for g in groups:
        out.append(torch.nn.functional.normalize(flat[start : start + len(g)].mean(0), dim=-1))
        start += len(g)
    return torch.stack(out)


def _sample_texts(meta: dict, text: Optional[str]) -> dict[str, str]:
    """All (lang -> caption) of one sample: json ``captions`` if present, else txt with json ``lang``."""
    captions = meta.get("captions")
    if isinstance(captions, dict) and captions:
        return {str(k): str(v) for k, v in captions.items()}
    if text is not None and "lang" in meta:
        return {str(meta["lang"]): text}
    return {}


def _item_name(meta: dict, index: int) -> str:
    """A readable name of an evaluation item: its attributes (scenes), id, or position."""
    attrs = meta.get("attributes")
    if isinstance(attrs, dict):
        return f"#{index} " + ",".join(f"{k}={attrs[k]}" for k in sorted(attrs))
    return f"#{index} {meta.get('id') or meta.get('key') or ''}".strip()


@torch.no_grad()
def evaluate_retrieval(
    model,
    tokenizer,
    batches: Iterable[dict],
    *,
    languages: Optional[list[str]] = None,
    label_prompts: Optional[LabelPrompts] = None,
    pool_size: int = 20,
    seed: int = 0,
    max_text_length: int = 64,
    text_batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict:
    """Scores a CLIP-style model on image-text batches, per language.

    Args:
        model: has ``encode_image(pixel_values)`` and ``encode_text(input_ids, attention_mask)``
            returning normalised (B, D) features, and ``config.embed_dim``.
        tokenizer: the model's tokenizer.
        batches: dicts with ``pixel_values`` (B, 3, H, W), ``meta`` (list of sample json),
            optionally ``text`` (list of txt) and ``bad_samples``.
        languages: restrict to these languages (default: every language found).
        label_prompts: attribute -> lang -> value -> prompt, for zero-shot classification
            of samples whose json has ``attributes``; None skips zero-shot.
        pool_size: candidates per retrieval pool.
        seed: pool assignment seed.

    Returns:
        A report dict: ``per_language`` (lang -> metric -> value), ``mean`` over
        languages, ``languages``, ``num_images``, ``bad_samples``, ``settings`` and ``markdown``.
    """
    model.eval()
    image_chunks, metas, texts = [], [], []
    bad_samples: list[dict] = []
    for batch in tqdm(batches, desc="embedding images", disable=not progress, unit="batch"):
        pixels = batch["pixel_values"].to(device)
        image_chunks.append(model.encode_image(pixels).float().cpu())
        metas.extend(batch["meta"])
        texts.extend(batch.get("text") or [None] * len(batch["meta"]))
        bad_samples.extend(batch.get("bad_samples", []))
    if not image_chunks:
        raise ValueError("evaluate_retrieval got no batches: the evaluation shards are empty or all samples were bad")
    image_emb = torch.cat(image_chunks)  # (N, D)
    per_sample = [_sample_texts(m, t) for m, t in zip(metas, texts)]
    found = sorted({lang for s in per_sample for lang in s})
    langs = [lang for lang in (languages or found) if lang in found]
    if languages and len(langs) < len(languages):
        missing = sorted(set(languages) - set(found))
        raise ValueError(f"no evaluation captions in languages {missing}; the shards have {found}")

    def group_of(i: int):
        attrs = metas[i].get("attributes")
        return tuple(sorted(attrs.items())) if isinstance(attrs, dict) else None

    per_language: dict[str, dict[str, float]] = {}
    samples: list[dict] = []  # per caption: the image it retrieves first (the harness's sample log)
    for lang in tqdm(langs, desc="scoring languages", disable=not progress):
        idx = [i for i, s in enumerate(per_sample) if lang in s]
        text_emb = embed_texts(
            model, tokenizer, [per_sample[i][lang] for i in idx], max_text_length, text_batch_size, device
        )
        imgs = image_emb[idx]
        sim = text_emb @ imgs.T  # (N, N): text rows, image columns
        groups = [group_of(i) or per_sample[i][lang] for i in idx]
        group_index: dict = {}
        group_ids = torch.tensor([group_index.setdefault(g, len(group_index)) for g in groups])
        matches = group_ids[:, None] == group_ids[None, :]  # same description = correct answer
        t2i, i2t = recall_at_k_multi(sim, matches, (1, 5)), recall_at_k_multi(sim.T, matches.T, (1, 5))
        pools = make_pools(groups, pool_size, seed)
        pooled = pooled_recall_at_1(imgs, text_emb, pools)
        top = sim.argmax(dim=1)  # the image each caption retrieves first, among all
        for row_i, i in enumerate(idx):
            j = int(top[row_i])
            samples.append({
                "id": f"{lang}/{i}", "lang": lang, "reference": _item_name(metas[i], i),
                "prediction": _item_name(metas[idx[j]], idx[j]), "correct": bool(matches[row_i, j]),
                "prompt_hash": prompt_hash(per_sample[i][lang]),
            })
        row = {
            "t2i_r1_pool": pooled["t2i_r1"],
            "i2t_r1_pool": pooled["i2t_r1"],
            "t2i_r1": t2i[1],
            "t2i_r5": t2i[5],
            "i2t_r1": i2t[1],
            "i2t_r5": i2t[5],
            "num_texts": len(idx),
            "num_pools": len(pools),
        }
        if label_prompts:
            zs = []
            for attribute, by_lang in label_prompts.items():
                if lang not in by_lang:
                    continue
                values = list(by_lang[lang])
                labelled = [
                    (j, values.index(str(metas[i]["attributes"][attribute])))
                    for j, i in enumerate(idx)
                    if isinstance(metas[i].get("attributes"), dict)
                    and str(metas[i]["attributes"].get(attribute)) in values
                ]
                if not labelled:
                    continue
                label_emb = embed_label_prompts(
                    model, tokenizer, [by_lang[lang][v] for v in values], max_text_length, text_batch_size, device
                )
                rows = torch.tensor([j for j, _ in labelled])
                acc = zero_shot_accuracy(imgs[rows], label_emb, torch.tensor([c for _, c in labelled]))
                row[f"zs_{attribute}"] = acc
                zs.append(acc)
            if zs:
                row["zs_mean"] = sum(zs) / len(zs)
        per_language[lang] = row

    metric_names = [k for k in next(iter(per_language.values())) if not k.startswith("num_")] if per_language else []
    mean = {
        k: sum(r[k] for r in per_language.values() if k in r and not math.isnan(r[k]))
        / max(1, sum(1 for r in per_language.values() if k in r and not math.isnan(r[k])))
        for k in metric_names
    }
    report = {
        "task": "retrieval",
        "languages": langs,
        "per_language": per_language,
        "mean": mean,
        "num_images": int(image_emb.shape[0]),
        "bad_samples": len(bad_samples),
        "bad_sample_examples": bad_samples[:20],
        "samples": samples,
        "settings": {
            "pool_size": pool_size,
            "pool_rule": "pools of distinct attribute tuples (scenes) or distinct captions; incomplete pools dropped",
            "seed": seed,
            "tie_rule": "pessimistic (equal scores rank above the target)",
            "chance_r1_pool": 1.0 / pool_size,
        },
    }
    report["markdown"] = retrieval_markdown(report)
    return report


def retrieval_markdown(report: dict) -> str:
    """The per-language table (plus the mean row) as Markdown."""
    rows = dict(report["per_language"])
    rows["**mean**"] = report["mean"]
    columns = [c for c in report["mean"]]
    pool = report["settings"]["pool_size"]
    note = (
        f"\n\nR@1 `_pool`: text→image / image→text in pools of {pool} distinct scenes (chance {1 / pool:.2f}); "
        f"R@k without suffix: against all {report['num_images']} items (an item with an identical description counts as correct); `zs_*`: zero-shot attribute accuracy "
        "with labels in the row's language (prompt ensembles where given)."
    )
    return markdown_table(rows, columns) + note


def write_retrieval_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """Writes retrieval.json, retrieval.md and retrieval.png into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json(report, out_dir / "retrieval.json")}
    (out_dir / "retrieval.md").write_text("# Retrieval\n\n" + report["markdown"] + "\n")
    paths["markdown"] = out_dir / "retrieval.md"
    columns = [c for c in ("t2i_r1_pool", "i2t_r1_pool", "zs_mean") if c in report["mean"]]
    paths["chart"] = bar_chart(
        report["per_language"],
        columns,
        out_dir / "retrieval.png",
        title=f"Per-language retrieval (pools of {report['settings']['pool_size']}) and zero-shot accuracy",
        reference_lines={"chance R@1": report["settings"]["chance_r1_pool"]},
    )
    return paths


def prompts_from_function(
    attributes: Mapping[str, list[str]], languages: list[str], prompt: Callable[[str, str, str], str]
) -> LabelPrompts:
    """Builds attribute -> lang -> value -> prompt from a prompt function (attribute, value, lang)."""
    return {
        attribute: {lang: {value: prompt(attribute, value, lang) for value in values} for lang in languages}
        for attribute, values in attributes.items()
    }
