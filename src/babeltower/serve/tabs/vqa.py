"""VQA tab: upload an image, ask a question in any of the model's languages, read the answer.

The answer comes from :func:`babeltower.tasks.vqa.answer_question` (what ``babeltower vqa``
prints): the question's language is guessed from its script and words unless chosen,
and optional multiple-choice options replace the model's answer vocabulary.
"""

from __future__ import annotations

from pathlib import Path

from babeltower.serve.common import Form, Limits, Progress, UserError, esc, parameter_count, png_data_url, user_message

NAME = "vqa"
TITLE = "Visual questions"
DEMO_DIRS = ("vqa",)
HELP = "hub folder of a VQA model (babeltower export); default: the main job's runs/demo/vqa/hub"
MAKE_TARGET = "make demo"
IMAGE_ACCEPT = "image/png,image/jpeg,image/webp,image/bmp,image/gif"
TOP = 5


def load(path: str | Path, device: str = "cpu"):
    """(VQAModel, tokenizer) from a hub folder or a VQA ``.ckpt`` (``babeltower.tasks.vqa.load``)."""
    from babeltower.serve.tabs import task_loader

    model, tokenizer = task_loader(NAME, path)()
    return model.to(device).eval(), tokenizer


def describe(loaded) -> str:
    model, _ = loaded
    return (f"{parameter_count(model)}, {model.config.vision.image_size} px images, answers in "
            f"{', '.join(model.answer_languages) or 'any language (options only)'}")


def panel(loaded, limits: Limits) -> str:
    model, _ = loaded
    options = "".join(f'<option value="{esc(lang)}">{esc(lang)}</option>' for lang in model.answer_languages)
    return f"""
<label for="vqa-image">Image (PNG, JPEG, WebP, BMP, GIF)</label>
<input id="vqa-image" type="file" name="image" accept="{IMAGE_ACCEPT}">
<label for="vqa-question">Question, in any of the model's languages</label>
<input id="vqa-question" type="text" name="question" dir="auto" autocomplete="off"
       placeholder="What colour are the shapes? · ما لون الأشكال؟ · 图形是什么颜色的？">
<div class="row">
  <label>Language <select name="lang"><option value="" selected>guess</option>{options}</select></label>
</div>
<label for="vqa-options">Multiple-choice options (optional, one per line)</label>
<textarea id="vqa-options" name="options" rows="3" dir="auto"></textarea>
"""


def run(loaded, form: Form, progress: Progress, limits: Limits) -> dict:
    """Answers the question about the uploaded image, with the runners-up."""
    from babeltower.tasks.vqa import answer_question

    model, tokenizer = loaded
    uploads = form.uploads("image")
    question = form.text("question").strip()
    lang = form.text("lang").strip() or None
    options = [line.strip() for line in form.text("options").splitlines() if line.strip()] or None
    if not uploads:
        raise UserError("Image: upload the image to ask about (PNG, JPEG, WebP, BMP or GIF)")
    if len(uploads) > 1:
        raise UserError(f"Image: {len(uploads)} files uploaded; ask about one image at a time")
    if not question:
        raise UserError("Question: type a question about the image, e.g. \u201cWhat colour are the shapes?\u201d")
    if options is not None and len(options) < 2:
        raise UserError("Multiple-choice options: give at least two, one per line (or none)")
    if lang is not None and lang not in model.answer_languages:
        raise UserError(f"Language: {lang!r} is not one of the model's {model.answer_languages}")
    upload = uploads[0]
    if not upload.data:
        raise UserError(f"{upload.name}: the file is empty (0 bytes); upload a PNG, JPEG, WebP, BMP or GIF image")
    progress(0, 1, "answering")
    try:
        out = answer_question(model, tokenizer, upload.data, question, lang=lang, options=options, where=upload.name)
    except ValueError as error:
        raise UserError(f"{user_message(error)}; upload a PNG, JPEG, WebP, BMP or GIF image"
                        if "decode image" in str(error) else user_message(error)) from None
    progress(1, 1, "done")
    from babeltower.modalities.image import decode_image

    thumb = png_data_url(decode_image(upload.data, where=upload.name), 256)
    answer = out["answer"] if out["answer"] is not None else "(none of the options is in the model's vocabulary)"
    runners = "".join(f'<li><bdi dir="auto">{esc(a)}</bdi> <span class="prob">{s:.2f}</span></li>'
                      for a, s in out["ranked"][1:TOP])
    html = (
        f'<div class="vqa"><img class="pixelated" src="{thumb}" width="192" alt="{esc(upload.name)}">'
        f'<div><h3>&ldquo;<bdi>{esc(question)}</bdi>&rdquo;</h3>'
        f'<p class="answer" dir="auto">{esc(answer)}</p>'
        f'<p class="meta">language {esc(out["lang"])}; runners-up (score):</p><ol class="runners">{runners}</ol></div></div>'
    )
    ranked = [{"answer": a, "score": round(float(s), 4)} for a, s in out["ranked"][:TOP]]
    return {"html": html, "data": {"question": question, "lang": out["lang"], "answer": out["answer"], "ranked": ranked}}
