"""``babeltower serve``: one local web page with a tab per head, fully offline.

    python -m babeltower.serve.app                       # the main job's models (runs/demo/<head>/hub)
    python -m babeltower.serve.app --retrieval my_clip/ --t2i runs/demo/t2i/hub --port 8000

Why FastAPI and a plain page rather than gradio: gradio 6.31 (the current release)
requires pillow < 13 and would downgrade the project's pinned Pillow 13 (whose raqm
layout the OCR renderer relies on), and it adds ~20 packages (pandas, pydub, orjson,
...). Its frontend also fetches web fonts and a version check unless each is turned off.
This page is three files served from the package (HTML, one script, one stylesheet)
under a Content-Security-Policy that only allows this server, so the browser cannot
fetch anything from elsewhere, whatever a later change adds; fonts are the system's.

The page is a thin client of a JSON API that scripts can use too:

- ``GET /api/health``: the tabs and the model each one serves;
- ``POST /api/run/<tab>`` (multipart form, the tab's fields): ``{"job": id}``; with
  ``?wait=1`` it answers with the finished job instead;
- ``GET /api/jobs/<id>``: ``{"state": queued|running|done|error, "done", "total",
  "message", "result": {"html", "data"}, "error"}``.

Jobs run one at a time on a worker thread (the models are not shared between
threads, and on CPU two jobs would only slow each other down); the page polls the job
and draws a progress bar. A bad upload ends its job with a message; an unexpected
exception is logged with its traceback and shown as an internal error; either way the
server keeps serving.
"""

import argparse
import asyncio
import contextlib
import itertools
import logging
import sys
import threading
import time
import traceback
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence

from babeltower.serve.common import Form, Limits, Progress, Upload, UserError, esc

log = logging.getLogger("babeltower.serve")

DEFAULT_WORKDIR = "runs/demo"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
STATIC_DIR = Path(__file__).resolve().parent.parent / "assets" / "serve"
#: Only this server may be contacted by the page: no CDN, web font, analytics or other host.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_KEEP_JOBS = 64  # finished jobs kept for polling


@dataclass
class Head:
    """One tab: its module, the model it serves (None when there is none) and where it came from."""

    tab: ModuleType
    model: object = None
    path: Optional[Path] = None
    description: str = ""
    missing: str = ""  # why there is no model, and how to get one

    @property
    def name(self) -> str:
        return self.tab.NAME


def default_model_path(tab: ModuleType, workdir: str | Path) -> Optional[Path]:
    """The first ``<workdir>/<dir>/hub`` of ``tab.DEMO_DIRS`` that exists (the main job's output)."""
    for run_dir in tab.DEMO_DIRS:
        hub = Path(workdir) / run_dir / "hub"
        if hub.is_dir() and any(hub.iterdir()):
            return hub
    return None


def load_heads(
    tabs: dict[str, ModuleType],
    paths: dict[str, Optional[str]],
    workdir: str | Path = DEFAULT_WORKDIR,
    device: str = "cpu",
) -> dict[str, Head]:
    """Loads the model of every tab: the path given for it, else the main job's output.

    Args:
        tabs: tab modules by name (:func:`babeltower.serve.tabs.discover_tabs`).
        paths: explicit model paths by tab name (``--<name> PATH``); None: the default.
        workdir: the main job's work folder holding ``<run>/hub`` folders.
        device: where the models run (``cpu``, ``cuda``, ``cuda:1``).

    Raises:
        FileNotFoundError: an explicit path does not exist (the option is named).
        ValueError, RuntimeError: a model folder does not load (the loader names the file).
    """
    unknown = sorted(set(k for k, v in paths.items() if v) - set(tabs))
    if unknown:
        raise ValueError(f"no tab for {unknown}; the tabs are {sorted(tabs)}")
    heads = {}
    for name, tab in tabs.items():
        explicit = paths.get(name)
        if explicit:
            path = Path(explicit)
            if not path.exists():
                raise FileNotFoundError(f"--{name} {path}: no such file or folder; {tab.HELP}")
        else:
            path = default_model_path(tab, workdir)
        if path is None:
            where = " or ".join(str(Path(workdir) / d / "hub") for d in tab.DEMO_DIRS)
            how = getattr(tab, "MAKE_TARGET", "make demo")
            heads[name] = Head(tab, missing=f"No model loaded: start the server with --{name} PATH, or run "
                                            f"`{how}` to train one into {where}.")
            continue
        started = time.perf_counter()
        log.info("loading %s model from %s", name, path)
        try:
            model = tab.load(path, device=device)
        except (OSError, ValueError, RuntimeError, LookupError) as error:
            raise RuntimeError(f"--{name} {path}: {error}") from error
        heads[name] = Head(tab, model=model, path=path, description=tab.describe(model))
        log.info("loaded %s in %.1f s: %s", name, time.perf_counter() - started, heads[name].description)
    return heads


class Job:
    """State of one request, updated by the worker and read by the page."""

    def __init__(self, job_id: str, tab: str) -> None:
        self.id, self.tab = job_id, tab
        self.state = "queued"
        self.done = self.total = 0
        self.message = "waiting for the previous request to finish"
        self.result: Optional[dict] = None
        self.error: Optional[str] = None
        self.started = time.monotonic()
        self.future: Optional[Future] = None

    def to_json(self) -> dict:
        return {"job": self.id, "tab": self.tab, "state": self.state, "done": self.done, "total": self.total,
                "message": self.message, "seconds": round(time.monotonic() - self.started, 2),
                "result": self.result, "error": self.error}


class JobRunner:
    """Runs tab jobs one at a time on a worker thread and keeps their state for polling."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="babeltower-serve")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def submit(self, head: Head, form: Form) -> Job:
        job = Job(f"{next(self._ids):06d}", head.name)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > _KEEP_JOBS:
                oldest = next(iter(self._jobs.values()))
                if oldest.state in ("queued", "running"):
                    break
                self._jobs.popitem(last=False)
        job.future = self._executor.submit(self._run, job, head, form)
        return job

    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self, job: Job, head: Head, form: Form) -> None:
        def update(done: int, total: int, message: str) -> None:
            job.done, job.total, job.message = done, total, message

        import torch

        job.state, job.message, job.started = "running", "starting", time.monotonic()
        try:
            with torch.no_grad():  # inference only; grad mode is per thread, so set it on the worker
                result = head.tab.run(head.model, form, Progress(update), self.limits)
            if not (isinstance(result, dict) and isinstance(result.get("html"), str)):
                raise TypeError(f"{head.tab.__name__}.run returned {type(result).__name__}, not {{'html': str, ...}}")
            job.result, job.state, job.message = result, "done", f"done in {time.monotonic() - job.started:.1f} s"
        except UserError as error:
            job.error, job.state, job.message = str(error), "error", "bad input"
        except Exception as error:  # a bug or an unreadable model: log it, tell the page, keep serving
            log.error("job %s (%s) failed:\n%s", job.id, head.name, traceback.format_exc())
            job.error = f"internal error ({type(error).__name__}: {error}); the server log has the traceback"
            job.state, job.message = "error", "failed"

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


async def _read_form(request, limits: Limits) -> Form:
    """The multipart form of a request, bounded by ``limits.max_upload_mb``."""
    max_bytes = int(limits.max_upload_mb * 2**20)
    declared = request.headers.get("content-length")
    too_big = (f"the upload is over this server's limit of {limits.max_upload_mb:g} MiB per request; "
               "send fewer or smaller files (or start the server with --max-upload-mb)")
    if declared and declared.isdigit() and int(declared) > max_bytes + 2**16:
        raise UserError(too_big)
    form = Form()
    total = 0
    try:
        async with request.form(max_files=limits.max_images + 8, max_fields=64, max_part_size=2**20) as data:
            for key, value in data.multi_items():
                if isinstance(value, str):
                    form.texts[key] = value
                    continue
                content = await value.read()
                total += len(content)
                if total > max_bytes:
                    raise UserError(too_big)
                form.files.setdefault(key, []).append(
                    Upload(name=value.filename or "", data=content, content_type=value.content_type or "")
                )
    except UserError:
        raise
    except Exception as error:  # starlette's MultiPartException, malformed bodies
        raise UserError(f"the form could not be read ({error}); submit it from the page, or send multipart/form-data") from None
    return form


def build_app(heads: dict[str, Head], limits: Optional[Limits] = None):
    """The FastAPI application serving ``heads`` (see the module docstring for the routes).

    Args:
        heads: the tabs and their models, from :func:`load_heads`.
        limits: per-request bounds; default :class:`Limits()`.
    """
    # No ``from __future__ import annotations`` in this module: FastAPI reads the route
    # signatures' annotations at runtime, and ``Request`` is imported here.
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import HTMLResponse, JSONResponse
        from fastapi.staticfiles import StaticFiles
    except ImportError as error:
        raise ImportError(
            f"babeltower serve needs fastapi, uvicorn and python-multipart ({error}); "
            "install them with `pip install 'babeltower[serve]'` (pinned in requirements/lock.txt)"
        ) from error

    limits = limits or Limits()
    runner = JobRunner(limits)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        runner.shutdown()

    # No /docs or /redoc: FastAPI's interactive docs load their scripts from a CDN.
    app = FastAPI(title="babeltower", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.runner = runner
    app.state.heads = heads

    @app.middleware("http")
    async def security_headers(request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", response_class=HTMLResponse)
    def page():
        return HTMLResponse(render_page(heads, limits))

    @app.get("/api/health")
    def health():
        return {"status": "ok", "tabs": {
            name: {"title": head.tab.TITLE, "loaded": head.model is not None,
                   "path": str(head.path) if head.path else None, "model": head.description or head.missing}
            for name, head in heads.items()}}

    @app.post("/api/run/{tab}")
    async def run(tab: str, request: Request, wait: bool = False):
        head = heads.get(tab)
        if head is None:
            return JSONResponse({"error": f"no tab {tab!r}; the tabs are {sorted(heads)}"}, status_code=404)
        if head.model is None:
            return JSONResponse({"error": head.missing}, status_code=409)
        try:
            form = await _read_form(request, limits)
        except UserError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        job = runner.submit(head, form)
        if wait:
            await asyncio.wrap_future(job.future)
            return JSONResponse(job.to_json(), status_code=200 if job.state == "done" else 400)
        return JSONResponse(job.to_json(), status_code=202)

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str):
        job = runner.get(job_id)
        if job is None:
            return JSONResponse({"error": f"no job {job_id!r} (finished jobs are kept for the last {_KEEP_JOBS})"},
                                status_code=404)
        return job.to_json()

    return app


def render_page(heads: dict[str, Head], limits: Limits) -> str:
    """The whole page: a tab bar and one form per tab (no external resource of any kind)."""
    buttons, panels = [], []
    for i, (name, head) in enumerate(heads.items()):
        selected = "true" if i == 0 else "false"
        buttons.append(
            f'<button type="button" role="tab" id="tabbtn-{esc(name)}" aria-controls="tab-{esc(name)}" '
            f'aria-selected="{selected}" data-tab="{esc(name)}">{esc(head.tab.TITLE)}</button>'
        )
        hidden = "" if i == 0 else " hidden"
        if head.model is None:
            body = f'<p class="notice">{esc(head.missing)}</p>'
        else:
            body = (
                f'<p class="model">Model: <code>{esc(head.path)}</code> &middot; {esc(head.description)}</p>'
                f'<form data-tab="{esc(name)}" novalidate>{head.tab.panel(head.model, limits)}'
                f'<div class="actions"><button type="submit" class="run">Run</button>'
                f'<progress max="1" value="0" hidden></progress><span class="status" role="status"></span></div>'
                f'<div class="error" role="alert" hidden></div><div class="result" aria-live="polite"></div></form>'
            )
        panels.append(
            f'<section role="tabpanel" id="tab-{esc(name)}" aria-labelledby="tabbtn-{esc(name)}"{hidden}>{body}</section>'
        )
    from babeltower import __version__

    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>babeltower demo</title>
<link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js" defer></script>
</head>
<body>
<header><h1>babeltower</h1><p>One multilingual text encoder, every head. Everything runs on this machine.</p></header>
<nav role="tablist" aria-label="heads">{''.join(buttons)}</nav>
<main>{''.join(panels)}</main>
<footer>babeltower {esc(__version__)} &middot; API: <code>POST /api/run/&lt;tab&gt;</code>, <code>GET /api/jobs/&lt;id&gt;</code></footer>
</body>
</html>
"""


def add_arguments(parser: argparse.ArgumentParser, tabs: Optional[dict[str, ModuleType]] = None) -> None:
    """Adds the options of ``babeltower serve`` (one ``--<tab> PATH`` per tab) to ``parser``."""
    from babeltower.serve.tabs import discover_tabs

    for name, tab in (tabs if tabs is not None else discover_tabs()).items():
        flags = [f"--{name}"] + [f"--{alias}" for alias in getattr(tab, "ALIASES", ())]
        parser.add_argument(*flags, dest=name, metavar="PATH", default=None, help=tab.HELP)
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR,
                        help="the main job's work folder; tabs without --<tab> load <workdir>/<run>/hub")
    parser.add_argument("--host", default=DEFAULT_HOST, help="interface to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--device", default="cpu", help="where the models run: cpu, cuda, cuda:1, ...")
    parser.add_argument("--max-upload-mb", type=float, default=Limits.max_upload_mb, help="upload limit per request")
    parser.add_argument("--max-images", type=int, default=Limits.max_images, help="images per retrieval request")
    parser.add_argument("--max-steps", type=int, default=Limits.max_steps, help="denoising steps per request")
    parser.add_argument("--max-audio-seconds", type=float, default=None,
                        help="longest audio clip (default: the ASR model's own max_seconds)")


def serve(args: argparse.Namespace) -> int:
    """Loads the models named by ``args`` and serves the page until interrupted. Returns an exit code."""
    try:
        import uvicorn
    except ImportError:
        print("error: babeltower serve needs uvicorn; install it with `pip install 'babeltower[serve]'`",
              file=sys.stderr)
        return 2
    from babeltower.serve.tabs import discover_tabs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    tabs = discover_tabs()
    limits = Limits(max_upload_mb=args.max_upload_mb, max_images=args.max_images, max_steps=args.max_steps,
                    max_audio_seconds=args.max_audio_seconds)
    try:
        heads = load_heads(tabs, {name: getattr(args, name, None) for name in tabs}, args.workdir, args.device)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not any(head.model is not None for head in heads.values()):
        print(f"warning: no model found under {args.workdir}; every tab says how to get one "
              "(pass --<tab> PATH or run `make demo`)", file=sys.stderr)
    app = build_app(heads, limits)
    print(f"babeltower serve: http://{args.host}:{args.port}/ (tabs: {', '.join(heads)}; Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m babeltower.serve.app [--contrastive/--retrieval PATH] [--t2i PATH] [--asr PATH] ... [--port N]``."""
    parser = argparse.ArgumentParser(
        prog="babeltower serve", description="A local web page with a tab per head (offline).",
    )
    add_arguments(parser)
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
