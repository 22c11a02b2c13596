"""What the web demo's tabs share: uploads, form fields, user errors, progress, HTML helpers.

A tab never sees HTTP: the app hands it a :class:`Form` (text fields and uploaded files)
and a :class:`Progress`, and the tab returns ``{"html": fragment, "data": json}`` or
raises :class:`UserError` with a message for the page. Anything else it raises is a bug:
the app logs the traceback and shows a short "internal error" line, and keeps serving.
"""

from __future__ import annotations

import base64
import html
import io
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Optional


class UserError(ValueError):
    """Bad input from the page (wrong format, too long, empty, out of range).

    The message is shown on the page as is, so it names the file or field and says what
    would be right.
    """


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name the browser gave it, its bytes and its declared type."""

    name: str
    data: bytes
    content_type: str = ""


@dataclass
class Limits:
    """Per-request bounds that keep one request from taking the server down.

    Attributes:
        max_upload_mb: Total size of the files of one request, in MiB.
        max_images: Images one retrieval request may rank.
        max_steps: Denoising steps one text-to-image request may ask for.
        max_batch: Images one text-to-image request may ask for.
        max_audio_seconds: Longest audio accepted; None: the ASR model's own
            ``max_seconds``.
    """

    max_upload_mb: float = 32.0
    max_images: int = 64
    max_steps: int = 200
    max_batch: int = 8
    max_audio_seconds: Optional[float] = None


@dataclass
class Form:
    """The fields of one submitted tab form."""

    texts: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[Upload]] = field(default_factory=dict)

    def text(self, name: str, default: str = "") -> str:
        return self.texts.get(name, default)

    def uploads(self, name: str) -> list[Upload]:
        """The files of input ``name``; browsers send an empty, nameless part for an empty input."""
        return [u for u in self.files.get(name, []) if u.name or u.data]

    def integer(self, name: str, label: str, default: int, low: int, high: int) -> int:
        raw = self.texts.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise UserError(f"{label}: {raw!r} is not a whole number; give one between {low} and {high}") from None
        if not low <= value <= high:
            raise UserError(f"{label}: {value} is out of range; give a whole number between {low} and {high}")
        return value

    def number(self, name: str, label: str, default: float, low: float, high: float) -> float:
        raw = self.texts.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise UserError(f"{label}: {raw!r} is not a number; give one between {low:g} and {high:g}") from None
        if not low <= value <= high:  # also rejects NaN
            raise UserError(f"{label}: {value:g} is out of range; give a number between {low:g} and {high:g}")
        return value


class Progress:
    """Progress of one job, read by the page while the job runs.

    Call it as ``progress(done, total, message)``; ``done``/``total`` drive the progress
    bar and ``message`` says which step is running.
    """

    def __init__(self, on_update: Optional[Callable[[int, int, str], None]] = None) -> None:
        self.done, self.total, self.message = 0, 0, ""
        self.started = time.monotonic()
        self._on_update = on_update

    def __call__(self, done: int, total: int, message: str = "") -> None:
        self.done, self.total = int(done), int(total)
        if message:
            self.message = message
        if self._on_update is not None:
            self._on_update(self.done, self.total, self.message)


_BUFFER_REPR = re.compile(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def user_message(error: Exception) -> str:
    """An exception's message without the in-memory buffer reprs that decoders put in it."""
    return _BUFFER_REPR.sub("", str(error))


def esc(text) -> str:
    """HTML-escapes any value (file names, prompts and transcripts come from users)."""
    return html.escape(str(text), quote=True)


def png_data_url(image, max_side: Optional[int] = None) -> str:
    """A PIL image as a ``data:image/png;base64,...`` URL (the page loads nothing from elsewhere).

    Args:
        image: The PIL image.
        max_side: Shrink (keeping the aspect ratio) so the longer side is at most this.
    """
    if max_side is not None and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def parameter_count(module) -> str:
    """'1.23 M parameters' for a torch module (a line on each tab about the loaded model)."""
    n = sum(p.numel() for p in module.parameters())
    return f"{n / 1e6:.2f} M parameters"


def max_text_tokens(config) -> int:
    """Longest token sequence (special tokens included) a transformers text encoder reads."""
    limit = int(getattr(config, "max_position_embeddings", 512))
    if "roberta" in getattr(config, "model_type", ""):
        limit -= config.pad_token_id + 1  # RoBERTa-family positions start after the padding index
    return limit
