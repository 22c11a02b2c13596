"""Speech tab: upload or record audio, read the transcript with its code-switched words marked.

Code-switched words are marked as HiKE's PIER metric counts them
(:func:`babeltower.eval.asr_metrics.english_poi`): in a transcript whose matrix language
is written in another script (Korean, Hindi, Arabic, ...), every word with a Latin
letter is an embedded-language word. A transcript with no other script has nothing to
mark.
"""

from __future__ import annotations

import time
import unicodedata
from pathlib import Path

from babeltower.serve.common import Form, Limits, Progress, UserError, esc, parameter_count, user_message

NAME = "asr"
TITLE = "Speech"
DEMO_DIRS = ("asr",)
HELP = "hub folder of an ASR model (babeltower export); default: the main job's runs/demo/asr/hub"
MAKE_TARGET = "make demo-asr"
AUDIO_ACCEPT = "audio/wav,audio/x-wav,audio/flac,audio/ogg,audio/mpeg,.wav,.flac,.ogg,.mp3"


def load(path: str | Path, device: str = "cpu"):
    """An ``ASRModel`` from a hub folder or an ASR ``.ckpt`` (``babeltower.tasks.asr.load``)."""
    from babeltower.serve.tabs import task_loader

    return task_loader(NAME, path)().to(device).eval()


def describe(model) -> str:
    return f"{parameter_count(model)}, {model.config.sample_rate} Hz, up to {model.config.max_seconds:g} s per clip"


def panel(model, limits: Limits) -> str:
    return f"""
<label for="asr-audio">Audio file (WAV, FLAC, OGG or MP3, up to {_max_seconds(model, limits):g} s)</label>
<input id="asr-audio" type="file" name="audio" accept="{AUDIO_ACCEPT}">
<div class="recorder" data-target="asr-audio">
  <button type="button" data-action="record">&#9679; Record</button>
  <button type="button" data-action="stop" disabled>&#9632; Stop</button>
  <span class="recorder-status" role="status"></span>
  <audio controls hidden></audio>
</div>
<label>Beam width <select name="beam_size">
  <option value="1" selected>1 (greedy)</option><option value="4">4</option><option value="8">8</option>
</select></label>
"""


def _max_seconds(model, limits: Limits) -> float:
    own = float(model.config.max_seconds)
    return min(own, limits.max_audio_seconds) if limits.max_audio_seconds else own


def _is_latin_letter(ch: str) -> bool:
    return ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN")


def mark_code_switching(text: str) -> list[dict]:
    """Splits a transcript into words, flagging the Latin-script ones inside another script.

    Returns:
        ``[{"word": str, "latin": bool}, ...]``; ``latin`` is False everywhere when the
        transcript has no letters of another script (nothing is switched into).
    """
    from babeltower.eval.asr_metrics import english_poi

    words, latin = english_poi(text)
    other_script = any(ch.isalpha() and not _is_latin_letter(ch) for ch in text)
    return [{"word": w, "latin": bool(m and other_script)} for w, m in zip(words, latin)]


def run(model, form: Form, progress: Progress, limits: Limits) -> dict:
    """Decodes the uploaded (or recorded) clip and transcribes it."""
    import torch

    from babeltower.modalities.audio import load_audio

    uploads = form.uploads("audio")
    if not uploads:
        raise UserError("Audio: upload a WAV, FLAC, OGG or MP3 file, or record one with the Record button")
    if len(uploads) > 1:
        raise UserError(f"Audio: {len(uploads)} files uploaded; give one clip at a time")
    upload = uploads[0]
    if not upload.data:
        raise UserError(f"{upload.name}: the file is empty (0 bytes); upload a WAV, FLAC, OGG or MP3 recording")
    beam = form.integer("beam_size", "Beam width", 1, 1, 16)
    limit = _max_seconds(model, limits)
    progress(0, 2, "decoding the audio")
    try:
        wave = load_audio(upload.data, target_rate=model.config.sample_rate, where=upload.name, max_seconds=limit)
    except ValueError as error:
        raise UserError(f"{user_message(error)} (this tab reads WAV, FLAC, OGG or MP3 clips of up to {limit:g} s)") from None
    seconds = wave.numel() / model.config.sample_rate
    progress(1, 2, f"recognising {seconds:.1f} s of speech")
    started = time.perf_counter()
    with torch.no_grad():
        text = model.transcribe(wave, beam_size=beam)[0]
    elapsed = time.perf_counter() - started
    words = mark_code_switching(text)
    switched = sum(w["latin"] for w in words)
    body = " ".join(
        f'<mark class="cs" lang="en" title="code-switched (Latin script)">{esc(w["word"])}</mark>' if w["latin"]
        else esc(w["word"])
        for w in words
    ) or '<span class="empty">(no speech recognised)</span>'
    html = (
        f'<h3>Transcript</h3><p class="transcript" dir="auto">{body}</p>'
        f'<p class="meta"><bdi>{esc(upload.name)}</bdi>: {seconds:.2f} s, recognised in {elapsed:.2f} s '
        f"(real-time factor {elapsed / seconds:.3f}), beam {beam}; "
        f'<span class="cs-count">{switched} code-switched word(s)</span> '
        f'<mark class="cs">marked</mark></p>'
    )
    return {"html": html, "data": {"file": upload.name, "seconds": round(seconds, 3), "text": text,
                                   "words": words, "code_switched": switched}}
