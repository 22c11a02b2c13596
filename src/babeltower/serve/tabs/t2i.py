"""Text-to-image tab: a prompt in any language, seed, steps and guidance -> a grid of images.

Image ``i`` of a request uses its own generator seeded ``seed + i`` (as ``babeltower
generate`` does), so an image depends only on its prompt and its seed, not on how many
images were asked for.
"""

from __future__ import annotations

from pathlib import Path

from babeltower.serve.common import Form, Limits, Progress, UserError, esc, parameter_count, png_data_url

NAME = "t2i"
TITLE = "Text to image"
DEMO_DIRS = ("t2i",)
HELP = "text-to-image pipeline folder (babeltower export); default: the main job's runs/demo/t2i/hub"
MAKE_TARGET = "make demo-t2i"
DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 3.0
DEFAULT_IMAGES = 4
_DISPLAY_SIDE = 192  # small models draw 32 px images: the page scales them up, pixelated


def load(path: str | Path, device: str = "cpu"):
    """A ``BabelTowerText2ImagePipeline`` from a pipeline folder or a ``.ckpt`` (``babeltower.tasks.t2i.load``)."""
    from babeltower.serve.tabs import task_loader

    pipe = task_loader(NAME, path)()
    pipe.set_progress_bar_config(disable=True)  # the page shows progress; keep the server log quiet
    return pipe.to(device)


def describe(pipe) -> str:
    return (f"{parameter_count(pipe.unet)} (UNet), {pipe.image_size} px images, "
            f"scheduler {type(pipe.scheduler).__name__}")


def _max_steps(pipe, limits: Limits) -> int:
    """A scheduler cannot take more steps than the timesteps it was trained with."""
    return min(limits.max_steps, int(getattr(pipe.scheduler.config, "num_train_timesteps", limits.max_steps)))


def panel(pipe, limits: Limits) -> str:
    return f"""
<label for="t2i-prompt">Prompt, in any language</label>
<textarea id="t2i-prompt" name="prompt" rows="2" dir="auto"
          placeholder="un cercle rouge à gauche · دائرة حمراء على اليسار · 两个蓝色的正方形"></textarea>
<label for="t2i-negative">Negative prompt (optional)</label>
<input id="t2i-negative" type="text" name="negative_prompt" dir="auto" autocomplete="off">
<div class="row">
  <label>Seed <input type="number" name="seed" value="0" min="0" max="2147483647" step="1"></label>
  <label>Steps <input type="number" name="steps" value="{min(DEFAULT_STEPS, _max_steps(pipe, limits))}" min="1" max="{_max_steps(pipe, limits)}" step="1"></label>
  <label>Guidance <input type="number" name="guidance" value="{DEFAULT_GUIDANCE}" min="0" max="20" step="0.5"></label>
  <label>Images <input type="number" name="num_images" value="{DEFAULT_IMAGES}" min="1" max="{limits.max_batch}" step="1"></label>
</div>
"""


def run(pipe, form: Form, progress: Progress, limits: Limits) -> dict:
    """Generates ``num_images`` images for the prompt, reporting every denoising step."""
    import torch

    prompt = form.text("prompt").strip()
    negative = form.text("negative_prompt").strip() or None
    if not prompt:
        raise UserError("Prompt: describe the image, in any language, e.g. \u201cun cercle rouge à gauche\u201d")
    seed = form.integer("seed", "Seed", 0, 0, 2**31 - 1)
    max_steps = _max_steps(pipe, limits)
    steps = form.integer("steps", "Steps", min(DEFAULT_STEPS, max_steps), 1, max_steps)
    guidance = form.number("guidance", "Guidance", DEFAULT_GUIDANCE, 0.0, 20.0)
    count = form.integer("num_images", "Images", DEFAULT_IMAGES, 1, limits.max_batch)
    try:
        pipe.check_prompts([prompt] + ([negative] if negative else []))
    except ValueError as error:
        raise UserError(f"Prompt: {error}") from None

    progress(0, steps, f"denoising step 0 of {steps}")
    generators = [torch.Generator().manual_seed(seed + i) for i in range(count)]
    images = pipe(
        [prompt],
        negative_prompt=negative,
        num_inference_steps=steps,
        guidance_scale=guidance,
        num_images_per_prompt=count,
        generator=generators,
        callback=lambda i, t, latents: progress(i + 1, steps, f"denoising step {i + 1} of {steps}"),
    ).images
    urls = [png_data_url(image) for image in images]
    seeds = [seed + i for i in range(count)]
    figures = "".join(
        f'<figure><a href="{url}" download="babeltower_seed{s}.png">'
        f'<img class="pixelated" src="{url}" width="{_DISPLAY_SIDE}" height="{_DISPLAY_SIDE}" alt="seed {s}"></a>'
        f"<figcaption>seed {s}</figcaption></figure>"
        for url, s in zip(urls, seeds)
    )
    html = (
        f'<h3>&ldquo;<bdi>{esc(prompt)}</bdi>&rdquo;</h3>'
        f'<p class="meta">{count} image(s), {steps} steps, guidance {guidance:g}, '
        f'{images[0].width}&times;{images[0].height} px, {esc(type(pipe.scheduler).__name__)}</p>'
        f'<div class="grid">{figures}</div>'
    )
    return {"html": html, "data": {"prompt": prompt, "seeds": seeds, "steps": steps, "guidance": guidance,
                                   "images": urls}}
