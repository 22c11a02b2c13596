"""Multilingual text-to-image evaluator: attribute accuracy, CLIP score, CLIP-FID, cross-lingual consistency.

The same held-out scenes (``sample_scenes(num_scenes, split, seed)``; ``val`` = colour–
shape combinations never seen in training) are prompted in every language, with the
same generation seed per scene in every language, so languages differ only by the
prompt. Per language the evaluator reports:

- attribute accuracy (GenEval / m-GenEval style): colour, shape, count, position and
  size of each generated image as read by an :class:`~babeltower.eval.judge.AttributeJudge`,
  and ``all`` (every attribute right). The judge's own accuracy on real renders of the
  same scenes is reported beside it: the ceiling a perfect generator would reach;
- CLIP score with babeltower's multilingual contrastive model: ``100 * max(cos(image,
  caption), 0)`` averaged over images, the torchmetrics ``CLIPScore`` definition
  (Hessel et al. 2021's CLIP-S multiplies by w = 2.5 instead; not done here). The same
  score of real renders against the same captions is the reference;
- CLIP-FID: the Fréchet distance between generated and real images of the same scenes
  in the feature space of the project's own vision tower (Inception weights cannot be
  downloaded here, so this is not comparable with Inception FID numbers);
- cross-lingual consistency: per scene, whether the judged attributes of the image
  from each language's prompt agree with those of the English prompt's image, and the
  cosine similarity of their CLIP image embeddings;
- code-mixed prompts (:func:`~babeltower.datasets.synthetic.scenes.code_mixed_caption`:
  an English colour–shape noun phrase inserted into the language's sentence): attribute
  accuracy and the drop from the monolingual prompts.

The generator is any callable ``generate(prompts, seeds) -> list[PIL.Image]``; image i
must depend only on (prompt i, seed i). :func:`pipeline_generator` wraps a
diffusers-style pipeline into one.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from babeltower.datasets.synthetic.scenes import (
    ALL_LANGUAGES,
    LANGUAGES,
    SceneSpec,
    caption,
    code_mixed_caption,
    render_scene,
    sample_scenes,
)
from babeltower.eval.harness import prompt_hash
from babeltower.eval.judge import RESIZE_METHOD, AttributeJudge, attribute_accuracy, judge_accuracy
from babeltower.eval.report import bar_chart, markdown_table, write_json

#: ``generate(prompts, seeds) -> images``: one PIL image per prompt; image i depends
#: only on (prompts[i], seeds[i]).
GenerateFn = Callable[[list[str], list[int]], list[Image.Image]]

REFERENCE_LANGUAGE = "en"
FID_FEATURES = "the CLIP vision tower's projected image embedding (encode_image output before L2 normalisation)"
CLIP_RESIZE = (
    "babeltower ImageTransform at the vision tower's image_size: PIL bicubic resize of the shorter side "
    "(antialiased), centre crop, CLIP mean/std; no resize when the images already have that size"
)


# ----------------------------------------------------------------------- generators


def pipeline_generator(
    pipe,
    *,
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    batch_size: int = 16,
    negative_prompt: Optional[str] = None,
    generator_device: str | torch.device = "cpu",
) -> GenerateFn:
    """Wraps a diffusers-style pipeline into a ``generate(prompts, seeds)`` callable.

    Each prompt gets its own ``torch.Generator`` seeded with its seed, passed to the
    pipeline as a list (diffusers draws each sample's initial noise from its own
    generator), so image i depends on (prompt i, seed i) and not on which other prompts
    share its batch (up to the last bits of batched GPU kernels). The generators live on
    ``generator_device`` (CPU by default, which makes the noise identical on every
    accelerator). The pipeline's own progress bar is turned off
    (``set_progress_bar_config``) since the evaluator shows one.

    Args:
        pipe: Called as ``pipe(prompt=list[str], negative_prompt=..., num_inference_steps=...,
            guidance_scale=..., generator=list[torch.Generator], output_type="pil")`` and
            returning an object with ``.images`` (list of PIL images).
        num_inference_steps: Denoising steps.
        guidance_scale: Classifier-free guidance scale.
        batch_size: Prompts per pipeline call.
        negative_prompt: One negative prompt for every image, or None.
        generator_device: Device of the per-prompt generators.

    Returns:
        The generate callable.
    """
    if batch_size < 1:
        raise ValueError(f"pipeline_generator: batch_size must be >= 1, got {batch_size}")
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)  # the evaluator shows its own bar

    def generate(prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        if len(prompts) != len(seeds):
            raise ValueError(f"generate: {len(prompts)} prompts but {len(seeds)} seeds; pass one seed per prompt")
        images: list[Image.Image] = []
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            chunk_seeds = seeds[start : start + batch_size]
            generators = [torch.Generator(device=generator_device).manual_seed(int(s)) for s in chunk_seeds]
            output = pipe(
                prompt=chunk,
                negative_prompt=None if negative_prompt is None else [negative_prompt] * len(chunk),
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=generators,
                output_type="pil",
            )
            images.extend(output.images)
        return images

    return generate


def _generate_checked(generate: GenerateFn, prompts: list[str], seeds: list[int], batch_size: int, bar) -> list[Image.Image]:
    """Calls ``generate`` in chunks, checks it returns one PIL image per prompt."""
    images: list[Image.Image] = []
    for start in range(0, len(prompts), batch_size):
        chunk, chunk_seeds = prompts[start : start + batch_size], seeds[start : start + batch_size]
        out = list(generate(chunk, chunk_seeds))
        if len(out) != len(chunk):
            raise ValueError(
                f"generate returned {len(out)} images for {len(chunk)} prompts (first prompt {chunk[0]!r}); "
                "it must return exactly one image per prompt"
            )
        for image in out:
            if not isinstance(image, Image.Image):
                raise TypeError(f"generate returned a {type(image).__name__}; it must return PIL images (output_type='pil')")
        images.extend(out)
        bar.update(len(chunk))
    return images


# ---------------------------------------------------------------------------- FID


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64 (pytorch-fid's ``np.cov``)."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"feature_statistics needs features of shape (N >= 2, D), got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between two Gaussians, computed as pytorch-fid does.

    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrtm(sigma1 sigma2))`` in float64 with
    ``scipy.linalg.sqrtm``. If the square root is not finite (a singular product),
    ``eps`` is added to both diagonals and it is recomputed; a complex result whose
    diagonal has imaginary parts within 1e-3 of 0 keeps its real part, larger imaginary
    parts are an error (pytorch-fid's rules).

    Args:
        mu1, mu2: Means (D,).
        sigma1, sigma2: Covariances (D, D).
        eps: Diagonal offset for singular products.

    Returns:
        The distance (float).

    Raises:
        ValueError: On mismatched shapes or a large imaginary component.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"frechet_distance: means have different shapes {mu1.shape} and {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(
            f"frechet_distance: covariances {sigma1.shape} and {sigma2.shape} do not match the mean dimension {mu1.shape[0]}"
        )

    def sqrtm(matrix: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # pytorch-fid passes disp=False: singular input is handled below
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            result = linalg.sqrtm(matrix)
        return result[0] if isinstance(result, tuple) else result  # scipy < 1.16 with disp=False

    diff = mu1 - mu2
    covmean = sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            largest = np.max(np.abs(covmean.imag))
            raise ValueError(
                f"frechet_distance: sqrtm(sigma1 @ sigma2) has an imaginary component of {largest:.3g} "
                "(pytorch-fid tolerates 1e-3 on the diagonal); the covariances are too ill-conditioned, "
                "use more samples than feature dimensions"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(features1, features2) -> float:
    """Fréchet distance between two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


# ------------------------------------------------------------------------------ CLIP


@torch.no_grad()
def _embed_images(model, images: list[Image.Image], batch_size: int, device) -> torch.Tensor:
    """Unnormalised projected image embeddings (N, D) (FID features; normalise for cosines)."""
    from babeltower.modalities.image import ImageTransform

    transform = ImageTransform(model.config.vision.image_size)
    out = []
    for start in range(0, len(images), batch_size):
        pixels = torch.stack([transform(im) for im in images[start : start + batch_size]]).to(device)  # (B, 3, S, S)
        out.append(model.encode_image(pixels, normalize=False).float().cpu())  # (B, D)
    return torch.cat(out)


def _clip_score(image_emb: torch.Tensor, text_emb: torch.Tensor) -> float:
    """torchmetrics CLIPScore: mean over pairs of 100 * max(cos(image_i, text_i), 0)."""
    cos = (F.normalize(image_emb, dim=-1) * F.normalize(text_emb, dim=-1)).sum(-1)  # (N,)
    return float((100 * cos.clamp(min=0)).mean())


# ------------------------------------------------------------------------------- grid


def _font(size: int):
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def grid_image(
    images: Sequence[Sequence[Image.Image]],
    row_labels: Optional[Sequence[str]] = None,
    col_labels: Optional[Sequence[str]] = None,
    cell_size: int = 96,
    label_width: int = 200,
    font_size: int = 13,
) -> Image.Image:
    """Lays images out in a labelled grid (e.g. rows = prompts, columns = languages).

    Images are scaled to ``cell_size`` pixels: NEAREST when enlarging (tiny 32 px images
    stay crisp), bilinear when shrinking.

    Args:
        images: Rows of images; every row the same length.
        row_labels: One label per row, written left of it (wrapped to ``label_width``).
        col_labels: One label per column, written above it.
        cell_size: Side of each cell in pixels.
        label_width: Width of the row-label column in pixels (when row labels are given).
        font_size: Label font size (DejaVu Sans if PIL finds it, else PIL's default font).

    Returns:
        An RGB image.

    Raises:
        ValueError: If rows differ in length or the label counts do not match.
    """
    rows = [list(r) for r in images]
    if not rows or not rows[0]:
        raise ValueError("grid_image needs at least one row with at least one image")
    num_cols = len(rows[0])
    if any(len(r) != num_cols for r in rows):
        raise ValueError(f"grid_image: rows have different lengths {[len(r) for r in rows]}")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"grid_image: {len(row_labels)} row labels for {len(rows)} rows")
    if col_labels is not None and len(col_labels) != num_cols:
        raise ValueError(f"grid_image: {len(col_labels)} column labels for {num_cols} columns")
    font, pad = _font(font_size), 4
    line_height = font_size + 3
    left = label_width + pad if row_labels is not None else 0
    top = line_height + 2 * pad if col_labels is not None else 0
    width = left + num_cols * (cell_size + pad) + pad
    canvas = Image.new("RGB", (width, top + len(rows) * (cell_size + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(col_labels or []):
        x = left + pad + j * (cell_size + pad) + cell_size / 2
        draw.text((x - font.getlength(str(label)) / 2, pad), str(label), fill="black", font=font)
    for i, row in enumerate(rows):
        y = top + pad + i * (cell_size + pad)
        if row_labels is not None:
            lines = _wrap(str(row_labels[i]), font, label_width - pad)
            max_lines = max(1, cell_size // line_height)
            lines = lines[:max_lines]
            y_text = y + (cell_size - len(lines) * line_height) / 2
            for k, line in enumerate(lines):
                draw.text((pad, y_text + k * line_height), line, fill="black", font=font)
        for j, image in enumerate(row):
            image = image.convert("RGB")
            if image.size != (cell_size, cell_size):
                enlarge = max(image.size) < cell_size
                resample = Image.Resampling.NEAREST if enlarge else Image.Resampling.BILINEAR
                image = image.resize((cell_size, cell_size), resample)
            canvas.paste(image, (left + pad + j * (cell_size + pad), y))
    return canvas


# -------------------------------------------------------------------------- evaluator


def _mean(values) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else float("nan")


def _agreement(predictions: list[dict], reference: list[dict]) -> dict[str, float]:
    """Per attribute and ``all``: fraction of scenes whose judged attributes equal the reference's."""
    names = list(reference[0])
    same = {name: [p[name] == r[name] for p, r in zip(predictions, reference)] for name in names}
    out = {name: sum(v) / len(v) for name, v in same.items()}
    out["all"] = sum(all(v) for v in zip(*same.values())) / len(reference)
    return out


@torch.no_grad()
def evaluate_t2i(
    generate: GenerateFn,
    *,
    judge: AttributeJudge,
    clip_folder: Optional[str | Path] = None,
    clip: Optional[tuple] = None,
    languages: Sequence[str] = LANGUAGES,
    num_scenes: int = 100,
    split: str = "val",
    seed: int = 0,
    code_mixed: bool = True,
    fid: bool = True,
    batch_size: int = 64,
    grid_scenes: int = 8,
    max_text_length: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict:
    """Scores a text-to-image generator on held-out scenes in every language.

    Args:
        generate: ``generate(prompts, seeds) -> list[PIL.Image]`` (see :func:`pipeline_generator`).
            Scene i is generated with seed ``spec.seed`` in every language.
        judge: The attribute judge (:func:`~babeltower.eval.judge.train_judge` or
            ``AttributeJudge.from_pretrained``); it should be trained at the size of the
            generated images.
        clip_folder: A babeltower contrastive hub folder (``load_clip``) for the CLIP score,
            the CLIP image cosines and the FID features. None (and no ``clip``) skips them.
        clip: Alternatively an already loaded ``(model, tokenizer)`` pair.
        languages: Prompt languages; ``"en"`` among them enables the cross-lingual
            agreement (English is the reference).
        num_scenes: Scenes from ``sample_scenes(num_scenes, split, seed)``.
        split: ``"val"`` (held-out colour–shape combinations) or ``"train"``.
        seed: Scene seed (the scene's render seed is also its generation seed).
        code_mixed: Also generate from code-mixed prompts (every language but English).
        fid: Compute CLIP-FID (needs ``clip_folder`` or ``clip``).
        batch_size: Prompts per ``generate`` call and images per CLIP batch.
        grid_scenes: Rows of the image grid (the first scenes).
        max_text_length: Token limit for captions in the CLIP text encoder.
        device: Device for the CLIP model.
        progress: Show tqdm progress bars.

    Returns:
        The report (see :func:`write_t2i_report`); ``report["_grid"]`` is the image grid
        (a PIL image, not written to JSON).

    Raises:
        ValueError: On an unknown language, ``fid`` without a CLIP model, both
            ``clip_folder`` and ``clip``, or a generator that returns the wrong number or
            sizes of images.
    """
    from tqdm.auto import tqdm

    languages = list(languages)
    unknown = [lang for lang in languages if lang not in ALL_LANGUAGES]
    if unknown or not languages:
        raise ValueError(f"evaluate_t2i: unknown languages {unknown or languages}; choose from {ALL_LANGUAGES}")
    if num_scenes < 2:
        raise ValueError(f"evaluate_t2i: num_scenes must be >= 2, got {num_scenes}")
    if clip_folder is not None and clip is not None:
        raise ValueError("evaluate_t2i: pass either clip_folder or clip=(model, tokenizer), not both")
    if clip_folder is not None:
        from babeltower.models.hub import load_clip

        clip = load_clip(clip_folder)
    if fid and clip is None:
        raise ValueError(
            "evaluate_t2i: fid=True needs the CLIP vision tower as feature extractor; "
            "pass clip_folder=<hub folder> or fid=False"
        )
    clip_model, tokenizer = clip if clip is not None else (None, None)
    if clip_model is not None:
        clip_model = clip_model.to(device).eval()

    specs: list[SceneSpec] = list(sample_scenes(num_scenes, split, seed))
    seeds = [s.seed for s in specs]
    # code-mixed captions exist for the ten scene languages; the six extra ones (pt it tr id vi el) have none
    mixed_languages = [lang for lang in languages if lang != REFERENCE_LANGUAGE and lang in LANGUAGES] if code_mixed else []
    prompts = {lang: [caption(s, lang) for s in specs] for lang in languages}
    mixed_prompts = {lang: [code_mixed_caption(s, lang) for s in specs] for lang in mixed_languages}

    # ---- generation: one bar over every image
    start_time = time.perf_counter()
    generated: dict[str, list[Image.Image]] = {}
    generated_mixed: dict[str, list[Image.Image]] = {}
    total = num_scenes * (len(languages) + len(mixed_languages))
    with tqdm(total=total, desc="generating", unit="image", disable=not progress) as bar:
        for lang in languages:
            bar.set_postfix(prompts=lang)
            generated[lang] = _generate_checked(generate, prompts[lang], seeds, batch_size, bar)
        for lang in mixed_languages:
            bar.set_postfix(prompts=f"{lang}+en")
            generated_mixed[lang] = _generate_checked(generate, mixed_prompts[lang], seeds, batch_size, bar)
    generation_seconds = time.perf_counter() - start_time
    sizes = {im.size for images in (*generated.values(), *generated_mixed.values()) for im in images}
    if len(sizes) != 1:
        raise ValueError(f"generate returned images of different sizes {sorted(sizes)}; all must have one size")
    width, height = sizes.pop()
    if width != height:
        raise ValueError(f"generate returned {width}x{height} images; the scenes are square, generate square images")
    image_size = width
    real = [render_scene(s, image_size) for s in specs]

    # ---- (a) attribute accuracy
    predictions = {lang: judge.predict(generated[lang]) for lang in languages}
    accuracy = {lang: attribute_accuracy(predictions[lang], specs) for lang in languages}
    judge_real = judge_accuracy(judge, specs, image_size=image_size)
    samples = []  # the harness's per-sample log: what each image should show and what the judge saw
    for lang in languages:
        for i, (spec, judged) in enumerate(zip(specs, predictions[lang])):
            samples.append({
                "id": f"{lang}/{i}", "lang": lang, "seed": spec.seed,
                "reference": ",".join(f"{k}={v}" for k, v in sorted(spec.attributes().items()) if k in judged),
                "prediction": ",".join(f"{k}={judged[k]}" for k in sorted(judged)),
                "prompt_hash": prompt_hash(prompts[lang][i]),
            })

    # ---- (b) CLIP score, image embeddings
    clip_score: dict[str, float] = {}
    clip_score_real: dict[str, float] = {}
    image_emb: dict[str, torch.Tensor] = {}
    real_emb = None
    if clip_model is not None:
        from babeltower.eval.retrieval import embed_texts

        real_emb = _embed_images(clip_model, real, batch_size, device)
        for lang in tqdm(languages, desc="CLIP score", disable=not progress):
            image_emb[lang] = _embed_images(clip_model, generated[lang], batch_size, device)
            text_emb = embed_texts(clip_model, tokenizer, prompts[lang], max_text_length, batch_size, device)
            clip_score[lang] = _clip_score(image_emb[lang], text_emb)
            clip_score_real[lang] = _clip_score(real_emb, text_emb)

    # ---- (c) CLIP-FID
    fid_section = None
    if fid:
        reference_specs = list(sample_scenes(2 * num_scenes, split, seed))[num_scenes:]  # same split, other scenes
        reference_emb = _embed_images(clip_model, [render_scene(s, image_size) for s in reference_specs], batch_size, device)
        pooled = torch.cat([image_emb[lang] for lang in languages])
        feature_dim = int(real_emb.shape[1])
        fid_section = {
            "all_languages": fid_from_features(pooled, real_emb),
            "per_language": {lang: fid_from_features(image_emb[lang], real_emb) for lang in languages},
            "real_vs_real": fid_from_features(reference_emb, real_emb),
            "num_generated_all_languages": int(pooled.shape[0]),
            "num_generated_per_language": num_scenes,
            "num_real": num_scenes,
            "num_real_reference": num_scenes,
            "feature_dim": feature_dim,
            "features": FID_FEATURES,
            "resize": CLIP_RESIZE,
            "rank_deficient": num_scenes <= feature_dim,
        }

    # ---- (d) cross-lingual consistency against English
    cross_lingual: dict[str, dict[str, float]] = {}
    if REFERENCE_LANGUAGE in languages:
        reference = predictions[REFERENCE_LANGUAGE]
        for lang in languages:
            if lang == REFERENCE_LANGUAGE:
                continue
            row = _agreement(predictions[lang], reference)
            if image_emb:
                cos = (F.normalize(image_emb[lang], dim=-1) * F.normalize(image_emb[REFERENCE_LANGUAGE], dim=-1)).sum(-1)
                row["image_cosine"] = float(cos.mean())
            cross_lingual[lang] = row
    cross_mean = {k: _mean(r[k] for r in cross_lingual.values()) for k in next(iter(cross_lingual.values()), {})}

    # ---- (e) code-mixed prompts
    code_mixed_section = None
    if mixed_languages:
        mixed_accuracy = {lang: attribute_accuracy(judge.predict(generated_mixed[lang]), specs) for lang in mixed_languages}
        drop = {lang: {k: accuracy[lang][k] - v for k, v in mixed_accuracy[lang].items()} for lang in mixed_languages}
        code_mixed_section = {
            "rule": "insertional: an English '<colour> <shape noun>' phrase replaces the language's colour and shape "
            "words; numeral, size, position and word order stay in the language (scenes.code_mixed_caption)",
            "accuracy": mixed_accuracy,
            "drop": drop,
            "mean_drop": {k: _mean(d[k] for d in drop.values()) for k in next(iter(drop.values()))},
            "examples": {lang: mixed_prompts[lang][0] for lang in mixed_languages},
        }

    # ---- flat per-language rows for tables
    per_language: dict[str, dict[str, float]] = {}
    for lang in languages:
        row = dict(accuracy[lang])
        if clip_score:
            row["clip_score"] = clip_score[lang]
            row["clip_score_real"] = clip_score_real[lang]
        if cross_lingual:
            row["agreement_en"] = cross_lingual.get(lang, {}).get("all", float("nan"))
            if image_emb:
                row["image_cosine_en"] = cross_lingual.get(lang, {}).get("image_cosine", float("nan"))
        if fid_section:
            row["fid"] = fid_section["per_language"][lang]
        if code_mixed_section:
            row["code_mixed_all"] = code_mixed_section["accuracy"].get(lang, {}).get("all", float("nan"))
            row["code_mixed_drop_all"] = code_mixed_section["drop"].get(lang, {}).get("all", float("nan"))
        per_language[lang] = row
    mean = {k: _mean(r.get(k) for r in per_language.values()) for k in per_language[languages[0]]}

    notes = [
        f"Attribute accuracy: judged by a CNN attribute judge ({judge.config.image_size} px input; other sizes resized with "
        f"{RESIZE_METHOD}); 'all' = every attribute right. The judge's own accuracy on real renders of the same scenes is the "
        "ceiling a perfect generator would reach.",
        "CLIP score: 100 * max(cos(image, caption), 0) averaged over images (torchmetrics CLIPScore; no 2.5 weight as in "
        "Hessel et al.'s CLIP-S), with babeltower's multilingual CLIP and the caption in the row's language; "
        "'clip_score_real' scores real renders against the same captions.",
    ]
    if fid_section:
        notes.append(
            f"FID: CLIP-FID, not Inception FID (Inception weights cannot be downloaded here): features = {FID_FEATURES} "
            f"({fid_section['feature_dim']} dims); resize: {CLIP_RESIZE}; Fréchet distance as pytorch-fid (scipy sqrtm in "
            f"float64, 1e-6 diagonal offset when singular, imaginary parts < 1e-3 dropped). Per language: "
            f"{num_scenes} generated vs {num_scenes} real images of the same scenes; all languages pooled: "
            f"{fid_section['num_generated_all_languages']} vs {num_scenes}; 'real_vs_real' = {num_scenes} real images of "
            f"other scenes of the split vs the same {num_scenes}: the FID of the right distribution without the right scenes "
            "(generated images of the same scenes can score below it). FID is biased upwards at small N; compare only at "
            "equal N."
        )
        if fid_section["rank_deficient"]:
            notes.append(
                f"FID caveat: {num_scenes} samples <= {fid_section['feature_dim']} feature dims, so the covariances are "
                "rank-deficient and the per-language FID is unstable; raise num_scenes."
            )
    if REFERENCE_LANGUAGE not in languages:
        notes.append("Cross-lingual agreement skipped: English (the reference) is not among the languages.")
    if judge.config.image_size != image_size:
        notes.append(
            f"The judge was trained at {judge.config.image_size} px but the images are {image_size} px; they were resized "
            f"({RESIZE_METHOD}), so the judge's accuracy is lower than at its own size."
        )

    report: dict = {
        "task": "t2i",
        "languages": languages,
        "reference_language": REFERENCE_LANGUAGE,
        "num_scenes": num_scenes,
        "split": split,
        "seed": seed,
        "image_size": image_size,
        "per_language": per_language,
        "mean": mean,
        "attribute_accuracy": accuracy,
        "judge_real_accuracy": judge_real,
        "clip_score": clip_score or None,
        "clip_score_real": clip_score_real or None,
        "fid": fid_section,
        "cross_lingual": {"per_language": cross_lingual, "mean": cross_mean} if cross_lingual else None,
        "cross_lingual_attribute_agreement": cross_mean.get("all") if cross_lingual else None,
        "code_mixed": code_mixed_section,
        "examples": {lang: prompts[lang][0] for lang in languages},
        "samples": samples,
        "settings": {
            "generation_seed": "scene i uses spec.seed in every language",
            "num_generated_images": total,
            "generation_seconds": generation_seconds,
            "batch_size": batch_size,
            "judge_config": {
                "image_size": judge.config.image_size,
                "channels": judge.config.channels,
                "grid_size": judge.config.grid_size,
                "hidden_size": judge.config.hidden_size,
            },
            "judge_resize": RESIZE_METHOD,
            "clip_folder": str(clip_folder) if clip_folder is not None else None,
            "clip_score": "100 * max(cos, 0), mean over images (torchmetrics CLIPScore, no 2.5 weight)",
            "clip_resize": CLIP_RESIZE,
            "max_text_length": max_text_length,
        },
        "notes": notes,
    }
    report["markdown"] = t2i_markdown(report)
    rows = specs[: max(0, grid_scenes)]
    if rows:
        report["_grid"] = grid_image(
            [[real[i]] + [generated[lang][i] for lang in languages] for i in range(len(rows))],
            row_labels=[caption(s, "en") for s in rows],
            col_labels=["real"] + languages,
        )
    return report


# --------------------------------------------------------------------------- reports

_ATTRIBUTE_COLUMNS = ["colour", "shape", "count", "position", "size", "all"]


def t2i_markdown(report: dict) -> str:
    """The report's tables and notes as Markdown."""
    first = report["per_language"][report["languages"][0]]
    extra = [c for c in ("clip_score", "clip_score_real", "agreement_en", "image_cosine_en", "fid") if c in first]
    rows = dict(report["per_language"])
    rows["**mean**"] = report["mean"]
    rows["*real images (judge ceiling)*"] = report["judge_real_accuracy"]
    parts = [
        f"{report['num_scenes']} scenes of split `{report['split']}` (seed {report['seed']}), prompted in "
        f"{len(report['languages'])} languages with the same generation seed per scene; images {report['image_size']} px.",
        "",
        "## Per language",
        "",
        markdown_table(rows, _ATTRIBUTE_COLUMNS + extra),
    ]
    if report.get("fid"):
        f = report["fid"]
        parts += [
            "",
            f"CLIP-FID, all languages pooled ({f['num_generated_all_languages']} generated vs {f['num_real']} real): "
            f"**{f['all_languages']:.3f}**; real images of other scenes vs these ({f['num_real_reference']} vs {f['num_real']}): "
            f"{f['real_vs_real']:.3f}.",
        ]
    if report.get("cross_lingual"):
        cross = dict(report["cross_lingual"]["per_language"])
        cross["**mean (non-English)**"] = report["cross_lingual"]["mean"]
        columns = _ATTRIBUTE_COLUMNS + (["image_cosine"] if "image_cosine" in report["cross_lingual"]["mean"] else [])
        title = "## Agreement with the English prompt's image (judged attributes; CLIP image cosine)"
        parts += ["", title, "", markdown_table(cross, columns)]
    if report.get("code_mixed"):
        cm = report["code_mixed"]
        rows = {lang: {**acc, "drop_all": cm["drop"][lang]["all"]} for lang, acc in cm["accuracy"].items()}
        rows["**mean**"] = {k: _mean(r[k] for r in rows.values()) for k in _ATTRIBUTE_COLUMNS + ["drop_all"]}
        example_lang = next(iter(cm["examples"]))
        parts += [
            "",
            "## Code-mixed prompts",
            "",
            f"Rule: {cm['rule']}. Example ({example_lang}): *{cm['examples'][example_lang]}*. "
            "`drop` = monolingual − code-mixed accuracy.",
            "",
            markdown_table(rows, _ATTRIBUTE_COLUMNS + ["drop_all"]),
        ]
    parts += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(parts)


def write_t2i_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """Writes t2i.json, t2i.md, t2i.png (colour and shape accuracy per language) and grid.png.

    ``t2i.json`` holds every key of the report except those starting with ``_`` (the
    grid image).

    Returns:
        ``{"json", "markdown", "chart"[, "grid"]}`` -> written paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json({k: v for k, v in report.items() if not k.startswith("_")}, out_dir / "t2i.json")}
    (out_dir / "t2i.md").write_text("# Text-to-image evaluation\n\n" + report["markdown"] + "\n")
    paths["markdown"] = out_dir / "t2i.md"
    rows = {**report["per_language"], "real": report["judge_real_accuracy"]}  # the judge's ceiling, last
    paths["chart"] = bar_chart(
        rows,
        ["colour", "shape"],
        out_dir / "t2i.png",
        title="Judged colour and shape accuracy per prompt language ('real': the judge on real renders)",
        ylabel="accuracy",
    )
    if report.get("_grid") is not None:
        report["_grid"].save(out_dir / "grid.png")
        paths["grid"] = out_dir / "grid.png"
    return paths
