"""Retrieval and zero-shot tab: upload images, type a query in any language, see them ranked.

With labels (one per line, any languages mixed), every image also gets CLIP-style
zero-shot probabilities: a softmax over the model's scaled cosine similarities
(Radford et al. 2021), as ``scripts/zero_shot.py`` computes them.
"""

from __future__ import annotations

from pathlib import Path

from babeltower.serve.common import (
    Form, Limits, Progress, UserError, esc, max_text_tokens, parameter_count, png_data_url, user_message,
)

NAME = "contrastive"
#: Extra spellings of the --contrastive option.
ALIASES = ("retrieval",)
TITLE = "Retrieval · zero-shot"
#: Main-job run folders tried in order for the default model (runs/demo/<dir>/hub).
DEMO_DIRS = ("contrastive_e5", "contrastive_distilled", "contrastive")
HELP = ("hub folder of a contrastive model (babeltower export); default: the main job's "
        "runs/demo/contrastive_e5/hub (else contrastive_distilled/hub, else contrastive/hub)")
MAKE_TARGET = "make demo-contrastive"
IMAGE_ACCEPT = "image/png,image/jpeg,image/webp,image/bmp,image/gif"
_CHUNK = 32  # images encoded per forward pass


def load(path: str | Path, device: str = "cpu"):
    """(CLIPModel, tokenizer) from a hub folder or a contrastive ``.ckpt`` (``babeltower.tasks.contrastive.load``)."""
    from babeltower.serve.tabs import task_loader

    model, tokenizer = task_loader(NAME, path)()
    return model.to(device).eval(), tokenizer


def describe(loaded) -> str:
    model, _ = loaded
    return f"{parameter_count(model)}, {model.config.vision.image_size} px images, {model.config.embed_dim}-d embeddings"


def panel(loaded, limits: Limits) -> str:
    return f"""
<label for="contrastive-images">Images (up to {limits.max_images}; PNG, JPEG, WebP, BMP, GIF)</label>
<input id="contrastive-images" type="file" name="images" multiple accept="{IMAGE_ACCEPT}">
<label for="contrastive-query">Query, in any language</label>
<input id="contrastive-query" type="text" name="query" dir="auto" autocomplete="off"
       placeholder="zwei rote Kreise links · دائرتان حمراوان · 两个蓝色的正方形">
<label for="contrastive-labels">Zero-shot labels (optional, one per line, any languages)</label>
<textarea id="contrastive-labels" name="labels" rows="3" dir="auto"
          placeholder="un cercle rouge&#10;मेज़ पर एक नीला वर्ग&#10;緑の三角形"></textarea>
"""


def _encode_texts(model, tokenizer, texts: list[str], what: str):
    from babeltower.modalities.text import tokenize

    limit = max_text_tokens(model.text.backbone.config)
    for text in texts:
        n = len(tokenizer(text)["input_ids"])
        if n > limit:
            raise UserError(f"{what} {text[:40]!r}... is {n} tokens long; the model reads at most {limit}: shorten it")
    batch = tokenize(tokenizer, texts, max_length=limit)
    device = model.logit_scale.device
    return model.encode_text(batch["input_ids"].to(device), batch["attention_mask"].to(device))  # (N, D)


def _decode_all(uploads, progress: Progress):
    from babeltower.modalities.image import decode_image

    images, names, skipped = [], [], []
    for i, upload in enumerate(uploads):
        progress(i, len(uploads), f"reading image {i + 1} of {len(uploads)}")
        if not upload.data:
            skipped.append((upload.name, "the file is empty (0 bytes)"))
            continue
        try:
            images.append(decode_image(upload.data, where=upload.name))
            names.append(upload.name)
        except ValueError as error:
            reason = user_message(error).removeprefix(f"{upload.name}: ")
            skipped.append((upload.name, f"{reason}; upload PNG, JPEG, WebP, BMP or GIF images"))
    return images, names, skipped


def run(loaded, form: Form, progress: Progress, limits: Limits) -> dict:
    """Ranks the uploaded images for the query; zero-shot probabilities when labels are given."""
    import torch

    from babeltower.modalities.image import ImageTransform

    model, tokenizer = loaded
    uploads = form.uploads("images")
    query = form.text("query").strip()
    labels = [line.strip() for line in form.text("labels").splitlines() if line.strip()]
    if not uploads:
        raise UserError("Images: upload at least one image (PNG, JPEG, WebP, BMP or GIF)")
    if not query and not labels:
        raise UserError("Query: type what to look for (any language), or give zero-shot labels, one per line")
    if len(labels) == 1:
        raise UserError("Zero-shot labels: give at least two labels to choose between, one per line")
    if len(uploads) > limits.max_images:
        raise UserError(f"Images: {len(uploads)} files uploaded; this server ranks at most {limits.max_images} "
                        "per request (start it with --max-images N for more)")

    images, names, skipped = _decode_all(uploads, progress)
    if not images:
        first_name, why = skipped[0]
        raise UserError(f"{first_name}: {why}")
    transform = ImageTransform(model.config.vision.image_size)
    features = []
    for start in range(0, len(images), _CHUNK):
        progress(start, len(images), f"encoding images {start + 1}-{min(start + _CHUNK, len(images))} of {len(images)}")
        pixels = torch.stack([transform(image) for image in images[start:start + _CHUNK]])  # (b, 3, H, W)
        features.append(model.encode_image(pixels.to(model.logit_scale.device)))
    image_emb = torch.cat(features)  # (N, D)
    progress(len(images), len(images), "encoding the text")

    scores = (image_emb @ _encode_texts(model, tokenizer, [query], "Query").T).squeeze(1) if query else None  # (N,)
    probs = None
    if labels:
        label_emb = _encode_texts(model, tokenizer, labels, "Label")  # (L, D)
        probs = (model.scale() * image_emb @ label_emb.T).softmax(dim=-1)  # (N, L)
    order = scores.argsort(descending=True).tolist() if scores is not None else list(range(len(images)))

    ranking = []
    for rank, i in enumerate(order, 1):
        entry = {"rank": rank, "file": names[i]}
        if scores is not None:
            entry["score"] = round(float(scores[i]), 4)
        if probs is not None:
            entry["labels"] = {label: round(float(p), 4) for label, p in zip(labels, probs[i])}
        ranking.append(entry)
    return {
        "html": _render(ranking, [images[i] for i in order], query, skipped),
        "data": {"query": query, "labels": labels, "ranking": ranking,
                 "skipped": [{"file": n, "reason": why} for n, why in skipped]},
    }


def _render(ranking, ranked_images, query, skipped) -> str:
    parts = []
    if skipped:
        items = "".join(f"<li><bdi>{esc(n)}</bdi>: {esc(why)}</li>" for n, why in skipped)
        parts.append(f'<div class="warning" role="status">Skipped {len(skipped)} file(s):<ul>{items}</ul></div>')
    heading = f'Ranked for &ldquo;<bdi>{esc(query)}</bdi>&rdquo;' if query else "Zero-shot labels"
    parts.append(f"<h3>{heading}</h3><ol class=\"ranking\">")
    for entry, image in zip(ranking, ranked_images):
        score = f'<span class="score">cosine {entry["score"]:+.3f}</span>' if "score" in entry else ""
        label_rows = ""
        if "labels" in entry:
            best = sorted(entry["labels"].items(), key=lambda kv: -kv[1])[:3]
            label_rows = "<ul class=\"labels\">" + "".join(
                f'<li><bdi dir="auto">{esc(label)}</bdi> <span class="prob">{p:.1%}</span></li>' for label, p in best
            ) + "</ul>"
        parts.append(
            f'<li class="card" data-file="{esc(entry["file"])}"><span class="rank">#{entry["rank"]}</span>'
            f'<img src="{png_data_url(image, 256)}" alt="{esc(entry["file"])}">'
            f'<span class="file"><bdi>{esc(entry["file"])}</bdi></span>{score}{label_rows}</li>'
        )
    parts.append("</ol>")
    return "".join(parts)
