"""Sentence-similarity tab for the distilled text encoder: sentences in any languages -> cosine matrix.

A multilingual encoder distilled from an English teacher (Reimers & Gurevych 2020)
should put a sentence and its translations next to each other; the tab shows the
cosine similarity of every pair and each sentence's nearest neighbour, so a user sees
at a glance whether "a red circle", "un cercle rouge" and "دائرة حمراء" land together.
"""

from __future__ import annotations

from pathlib import Path

from babeltower.serve.common import Form, Limits, Progress, UserError, esc, max_text_tokens, parameter_count

NAME = "distill"
TITLE = "Sentence similarity"
DEMO_DIRS = ("distill",)
HELP = ("hub folder of a distilled text encoder (babeltower export of a distillation run); "
        "default: the main job's runs/demo/distill/hub")
MAKE_TARGET = "make demo-distill"
MAX_SENTENCES = 32


def load(path: str | Path, device: str = "cpu"):
    """(TextEncoder, tokenizer) from a text-encoder hub folder, or a distillation ``.ckpt``."""
    path = Path(path)
    if path.is_dir():
        # The student alone: the task's loader also builds the teacher, which this tab does not use.
        from babeltower.models.hub import load_text_encoder

        encoder, tokenizer, _ = load_text_encoder(path)
    else:
        from babeltower.serve.tabs import task_loader

        encoder, tokenizer, _ = task_loader(NAME, path)()
    return encoder.to(device).eval(), tokenizer


def describe(loaded) -> str:
    encoder, _ = loaded
    return f"{parameter_count(encoder)}, {encoder.config.hidden_size}-d hidden states"


def panel(loaded, limits: Limits) -> str:
    return f"""
<label for="distill-sentences">Sentences, one per line, in any languages (2 to {MAX_SENTENCES})</label>
<textarea id="distill-sentences" name="sentences" rows="5" dir="auto"
          placeholder="a red circle on the left&#10;un cercle rouge à gauche&#10;دائرة حمراء على اليسار&#10;两个蓝色的正方形"></textarea>
"""


def run(loaded, form: Form, progress: Progress, limits: Limits) -> dict:
    """Cosine similarity of every pair of sentences and each one's nearest neighbour."""
    import torch

    from babeltower.modalities.text import tokenize

    encoder, tokenizer = loaded
    sentences = [line.strip() for line in form.text("sentences").splitlines() if line.strip()]
    if len(sentences) < 2:
        raise UserError("Sentences: give at least two, one per line (e.g. a sentence and its translation)")
    if len(sentences) > MAX_SENTENCES:
        raise UserError(f"Sentences: {len(sentences)} given; this tab compares at most {MAX_SENTENCES} at a time")
    limit = max_text_tokens(encoder.backbone.config)
    for i, sentence in enumerate(sentences, 1):
        n = len(tokenizer(sentence)["input_ids"])
        if n > limit:
            raise UserError(f"Sentence {i} is {n} tokens long; the encoder reads at most {limit}: shorten it")
    progress(0, 1, f"encoding {len(sentences)} sentences")
    batch = tokenize(tokenizer, sentences, max_length=limit)
    device = next(encoder.parameters()).device
    embeds = encoder(batch["input_ids"].to(device), batch["attention_mask"].to(device)).embeds  # (N, D)
    embeds = torch.nn.functional.normalize(embeds.float(), dim=-1)
    sims = (embeds @ embeds.T).cpu()  # (N, N)
    progress(1, 1, "done")
    others = sims.clone().fill_diagonal_(-2.0)
    nearest = others.argmax(dim=1).tolist()
    matrix = [[round(float(v), 4) for v in row] for row in sims]
    return {"html": _render(sentences, matrix, nearest),
            "data": {"sentences": sentences, "cosine": matrix, "nearest": nearest}}


def _render(sentences: list[str], matrix: list[list[float]], nearest: list[int]) -> str:
    head = "".join(f'<th scope="col" title="{esc(s)}">{i + 1}</th>' for i, s in enumerate(sentences))
    rows = []
    for i, (sentence, row) in enumerate(zip(sentences, matrix)):
        cells = "".join(
            f'<td class="{"self" if j == i else ("nearest" if j == nearest[i] else "")}">{v:+.2f}</td>'
            for j, v in enumerate(row)
        )
        rows.append(f'<tr><th scope="row">{i + 1}. <bdi dir="auto">{esc(sentence)}</bdi></th>{cells}'
                    f'<td class="nn">&rarr; {nearest[i] + 1}</td></tr>')
    return (f'<h3>Cosine similarity</h3><table class="similarity"><thead><tr><th></th>{head}'
            f'<th>nearest</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
