"""OCR tab: upload images of text lines (any of the recogniser's scripts) and read them.

One image is one line, as ``babeltower ocr`` reads it; right-to-left results (Arabic)
come back in logical order from the model and are shown with ``dir="auto"``.
"""

from __future__ import annotations

from pathlib import Path

from babeltower.serve.common import Form, Limits, Progress, UserError, esc, parameter_count, png_data_url, user_message

NAME = "ocr"
TITLE = "OCR"
DEMO_DIRS = ("ocr",)
HELP = "hub folder of an OCR line recogniser (babeltower export); default: the main job's runs/demo/ocr/hub"
MAKE_TARGET = "make demo"
IMAGE_ACCEPT = "image/png,image/jpeg,image/webp,image/bmp,image/gif,image/tiff"


def load(path: str | Path, device: str = "cpu"):
    """An ``OCRModel`` from a hub folder or an OCR ``.ckpt`` (``babeltower.tasks.ocr.load``)."""
    from babeltower.serve.tabs import task_loader

    return task_loader(NAME, path)().to(device).eval()


def describe(model) -> str:
    languages = ", ".join(model.config.languages)
    return f"{parameter_count(model)}, {len(model.config.charset)} characters ({languages})"


def panel(model, limits: Limits) -> str:
    return f"""
<label for="ocr-images">Line images, one line of text each (up to {limits.max_images}; PNG, JPEG, WebP, BMP, GIF, TIFF)</label>
<input id="ocr-images" type="file" name="images" multiple accept="{IMAGE_ACCEPT}">
"""


def run(model, form: Form, progress: Progress, limits: Limits) -> dict:
    """Reads every uploaded line image; an unreadable file is skipped and named."""
    from babeltower.modalities.image import decode_image
    from babeltower.tasks.ocr import MIN_SIDE

    uploads = form.uploads("images")
    if not uploads:
        raise UserError("Line images: upload at least one image of a line of text")
    if len(uploads) > limits.max_images:
        raise UserError(f"Line images: {len(uploads)} files uploaded; this server reads at most {limits.max_images} "
                        "per request (start it with --max-images N for more)")
    images, names, skipped = [], [], []
    for i, upload in enumerate(uploads):
        progress(i, len(uploads) + 1, f"reading image {i + 1} of {len(uploads)}")
        try:
            if not upload.data:
                raise ValueError("the file is empty (0 bytes)")
            image = decode_image(upload.data, where=upload.name)
            if min(image.size) < MIN_SIDE:
                raise ValueError(f"{image.width}x{image.height} px is too small to hold a line of text "
                                 f"(need at least {MIN_SIDE} px each way)")
        except ValueError as error:
            reason = user_message(error).removeprefix(f"{upload.name}: ")
            skipped.append((upload.name, f"{reason}; upload a PNG, JPEG, WebP, BMP, GIF or TIFF line image"))
            continue
        images.append(image)
        names.append(upload.name)
    if not images:
        raise UserError(f"{skipped[0][0]}: {skipped[0][1]}")
    progress(len(uploads), len(uploads) + 1, f"recognising {len(images)} line(s)")
    texts = model.read(images)
    rows = "".join(
        f'<tr><td><img class="line" src="{png_data_url(image, 512)}" alt="{esc(name)}"></td>'
        f'<td><bdi>{esc(name)}</bdi></td><td class="ocr-text" dir="auto">{esc(text)}</td></tr>'
        for image, name, text in zip(images, names, texts)
    )
    warning = ""
    if skipped:
        items = "".join(f"<li><bdi>{esc(n)}</bdi>: {esc(why)}</li>" for n, why in skipped)
        warning = f'<div class="warning" role="status">Skipped {len(skipped)} file(s):<ul>{items}</ul></div>'
    html = (f'{warning}<h3>Recognised text</h3><table class="ocr"><thead><tr><th>image</th><th>file</th>'
            f'<th>text</th></tr></thead><tbody>{rows}</tbody></table>')
    return {"html": html, "data": {"lines": [{"file": n, "text": t} for n, t in zip(names, texts)],
                                   "skipped": [{"file": n, "reason": why} for n, why in skipped]}}
