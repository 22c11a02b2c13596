"""The web demo in a real browser: Playwright drives Debian's headless Chromium.

The server runs in its own process on a free port, loading tiny random-init models
exported into a temporary folder (or the main job's models: BABELTOWER_SERVE_WORKDIR=runs/demo).
Every tab is used as a user would (upload, type, record, click, read), with right-to-left
prompts and bad uploads, and every request the page makes must stay on this machine.
BABELTOWER_SCREENSHOT=docs/web_demo.png also saves a screenshot for the README.

Needs ``chromium`` (``apt-get install chromium``) and ``playwright`` (requirements/test.txt);
skipped with that message where either is missing.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

CHROMIUM = os.environ.get("BABELTOWER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("the web demo tests need Chromium: install it with `apt-get install chromium` "
                "(or point BABELTOWER_CHROMIUM at a Chromium binary)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the web demo tests need playwright: "
                               "pip install -r requirements/test.txt (playwright==1.65.2)")
pytest.importorskip("fastapi", reason="babeltower serve needs fastapi: pip install -r requirements/lock.txt")

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run",
    # A fake microphone (a beep) that needs no permission prompt, for the Record button.
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
ARABIC_QUERY = "دائرة حمراء على اليسار"
ARABIC_PROMPT = "مربع أزرق كبير في الوسط"
TIMEOUT_MS = 60_000
#: The main job's work folder (runs/demo) to test with its trained models instead of tiny random ones.
MAIN_JOB = os.environ.get("BABELTOWER_SERVE_WORKDIR")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The main job's work folder when BABELTOWER_SERVE_WORKDIR names one, else tiny exported models."""
    if MAIN_JOB:
        return Path(MAIN_JOB).resolve()
    from tiny_models import export_tiny_models

    root = tmp_path_factory.mktemp("hubs")
    export_tiny_models(root)
    return root


@pytest.fixture(scope="module")
def server(workdir, tmp_path_factory):
    """``python -m babeltower.serve.app`` on a free port; yields (base URL, process)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "babeltower.serve.app", "--workdir", str(workdir), "--port", str(port),
             "--max-upload-mb", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            health = _get_json(f"{base}/api/health")
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the server did not answer within 180 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
    missing = [name for name, tab in health["tabs"].items() if not tab["loaded"]]
    assert not missing, f"tabs without a model under {workdir}: {missing}: {health}"
    yield base, process
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, server):
    """A fresh page on the demo that records every URL it requests."""
    base, _ = server
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.requests = []
    page.on("request", lambda request: page.requests.append(request.url))
    page.goto(base + "/")
    page.wait_for_selector("body[data-ready='true']")
    yield page
    context.close()


def assert_only_local(page) -> None:
    """Every request the page made went to this machine (data:/blob: URLs never leave it)."""
    assert page.requests, "the page made no requests at all"
    remote = [url for url in page.requests
              if urlparse(url).scheme not in ("data", "blob") and urlparse(url).hostname not in LOCAL_HOSTS]
    assert not remote, f"requests left the machine: {remote}"


def assert_server_up(server) -> None:
    base, process = server
    assert process.poll() is None, "the server process died"
    assert _get_json(f"{base}/api/health")["status"] == "ok"


def open_tab(page, name: str):
    page.click(f"#tabbtn-{name}")
    panel = page.locator(f"#tab-{name}")
    assert panel.is_visible()
    return panel


def run_and_wait(panel) -> str:
    """Clicks Run and waits until the form reports done or error; returns the final state."""
    panel.locator("button.run").click()
    form = panel.locator("form")
    form.page.wait_for_function(
        "f => f.dataset.state === 'done' || f.dataset.state === 'error'", arg=form.element_handle()
    )
    return form.get_attribute("data-state")


def error_text(panel) -> str:
    alert = panel.locator("[role=alert]")
    assert alert.is_visible(), "no error message is shown"
    return alert.inner_text()


def _scene(path: Path, colour, shape: str, size: int = 64) -> Path:
    from PIL import ImageDraw

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    box = (8, 16, 36, 44)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=colour)
    image.save(path)
    return path


def _pixels(data_url: str) -> np.ndarray:
    import base64
    import io

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"), np.int16)


def _tone(path: Path, seconds: float, rate: int = 22050) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32), rate)
    return path


# --------------------------------------------------------------------------- tabs


def test_page_lists_a_tab_per_head_and_loads_nothing_from_elsewhere(page, server):
    names = page.locator('[role="tab"]').evaluate_all("bs => bs.map(b => b.dataset.tab)")
    assert names[:3] == ["contrastive", "t2i", "asr"] and "distill" in names
    assert page.locator("#tab-contrastive").is_visible() and page.locator("#tab-t2i").is_hidden()
    font = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert "system-ui" in font
    csp = urllib.request.urlopen(server[0] + "/").headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "http" not in csp
    assert_only_local(page)


def test_retrieval_ranks_uploaded_images_for_an_arabic_query_with_zero_shot_labels(page, tmp_path):
    from babeltower.datasets.synthetic.scenes import SceneSpec, caption, render_scene

    specs = [SceneSpec("circle", "red", 1, "left", "large"), SceneSpec("square", "blue", 2, "right", "small"),
             SceneSpec("triangle", "green", 3, "bottom", "large")]
    files = []
    for spec, suffix in zip(specs, (".png", ".jpg", ".webp")):
        files.append(tmp_path / f"{spec.colour}_{spec.shape}{suffix}")
        render_scene(spec, 64).save(files[-1])
    query_text = caption(specs[0], "ar")  # "دائرة حمراء كبيرة على اليسار"
    panel = open_tab(page, "contrastive")
    panel.locator("input[name=images]").set_input_files([str(f) for f in files])
    query = panel.locator("input[name=query]")
    query.fill(query_text)
    assert query.evaluate("e => e.matches(':dir(rtl)')"), "an Arabic query is not laid out right to left"
    labels = [caption(specs[0], "fr"), caption(specs[1], "zh"), caption(specs[2], "ru")]
    panel.locator("textarea[name=labels]").fill("\n".join(labels))
    assert run_and_wait(panel) == "done"

    cards = panel.locator(".result .card")
    assert cards.count() == 3
    assert sorted(cards.evaluate_all("cs => cs.map(c => c.dataset.file)")) == sorted(f.name for f in files)
    ranks = cards.locator(".rank").all_inner_texts()
    assert ranks == ["#1", "#2", "#3"]
    scores = [float(s.split()[-1]) for s in cards.locator(".score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in scores)
    for card in cards.all():  # every image is shown, decoded by the browser
        assert card.locator("img").evaluate("i => i.complete && i.naturalWidth > 0")
        probs = [float(p.rstrip("%")) for p in card.locator(".prob").all_inner_texts()]
        assert len(probs) == 3 and 99.0 <= sum(probs) <= 101.0
    if MAIN_JOB:  # a trained model puts the described scene first and names it in French
        assert cards.first.get_attribute("data-file") == files[0].name
        assert cards.first.locator(".labels li bdi").first.inner_text() == labels[0]
    heading = panel.locator(".result h3 bdi")
    assert heading.inner_text() == query_text and heading.evaluate("e => e.matches(':dir(rtl)')")
    assert_only_local(page)


def test_text_to_image_grid_for_a_right_to_left_prompt_with_progress_and_fixed_seeds(page):
    panel = open_tab(page, "t2i")
    prompt = panel.locator("textarea[name=prompt]")
    prompt.fill(ARABIC_PROMPT)
    assert prompt.evaluate("e => e.matches(':dir(rtl)')")
    panel.locator("input[name=seed]").fill("7")
    panel.locator("input[name=num_images]").fill("3")
    max_steps = int(panel.locator("input[name=steps]").get_attribute("max"))
    panel.locator("input[name=steps]").fill(str(min(60, max_steps)))
    panel.locator("input[name=guidance]").fill("2.5")
    panel.locator("button.run").click()
    # Long work shows progress: the bar moves while the denoising steps run.
    page.wait_for_function(
        "() => { const p = document.querySelector('#tab-t2i progress');"
        " return !p.hidden && p.value > 0 && p.value < p.max; }"
    )
    assert "denoising step" in panel.locator(".status").inner_text()
    page.wait_for_function("() => document.querySelector('#tab-t2i form').dataset.state === 'done'")

    figures = panel.locator(".result figure")
    assert figures.count() == 3
    assert figures.locator("figcaption").all_inner_texts() == ["seed 7", "seed 8", "seed 9"]
    sources = figures.locator("img").evaluate_all("is => is.map(i => i.src)")
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert figures.locator("img").evaluate_all("is => is.every(i => i.complete && i.naturalWidth > 0)")
    assert panel.locator(".result h3 bdi").evaluate("e => e.matches(':dir(rtl)')")

    # The same seed draws the same first image when fewer images are asked for (up to
    # float rounding: batch size changes the kernels' summation order).
    panel.locator("input[name=num_images]").fill("1")
    assert run_and_wait(panel) == "done"
    alone = _pixels(panel.locator(".result figure img").get_attribute("src"))
    assert alone.shape == _pixels(sources[0]).shape
    assert np.abs(alone - _pixels(sources[0])).max() <= 2
    assert np.abs(alone - _pixels(sources[1])).max() > 2
    assert_only_local(page)


def test_speech_upload_and_recording_give_transcripts_with_marked_code_switching(page, tmp_path):
    panel = open_tab(page, "asr")
    panel.locator("input[name=audio]").set_input_files(str(_tone(tmp_path / "clip.wav", 1.5)))
    assert run_and_wait(panel) == "done"
    meta = panel.locator(".result .meta").inner_text()
    assert "clip.wav: 1.50 s" in meta and "real-time factor" in meta
    marked = panel.locator(".result .transcript mark.cs").count()
    assert panel.locator(".result .cs-count").inner_text() == f"{marked} code-switched word(s)"

    # Korean speech with English insertions (espeak-ng voices), as the ASR head is trained on.
    from babeltower.datasets.synthetic.speech import code_switched_sentence, espeak_available, synthesize_code_switched

    if espeak_available():
        import random

        text, _ = code_switched_sentence("phrase", random.Random(3))
        sf.write(tmp_path / "ko_en.wav", synthesize_code_switched(text).numpy(), 16000)
        panel.locator("input[name=audio]").set_input_files(str(tmp_path / "ko_en.wav"))
        assert run_and_wait(panel) == "done"
        transcript = panel.locator(".result .transcript")
        marked = transcript.locator("mark.cs").all_inner_texts()
        assert all(re.search("[A-Za-z]", word) for word in marked)
        if MAIN_JOB:  # a trained model hears both languages: Hangul plus marked English words
            assert re.search("[\uac00-\ud7a3]", transcript.inner_text()) and marked, transcript.inner_text()

    # Record with the (fake) microphone: the page encodes a WAV and puts it in the file input.
    panel.locator("[data-action=record]").click()
    page.wait_for_function("() => document.querySelector('#tab-asr .recorder').dataset.state === 'recording'")
    page.wait_for_timeout(1200)
    panel.locator("[data-action=stop]").click()
    page.wait_for_function("() => document.querySelector('#tab-asr .recorder').dataset.state === 'recorded'")
    assert panel.locator("input[name=audio]").evaluate("i => i.files.length === 1 && i.files[0].name")  == "recording.wav"
    assert run_and_wait(panel) == "done"
    seconds = float(re.search(r"recording\.wav: ([\d.]+) s", panel.locator(".result .meta").inner_text()).group(1))
    assert 0.8 <= seconds <= 4.0
    assert_only_local(page)


def test_sentence_similarity_of_translations_in_four_scripts(page):
    sentences = ["a red circle on the left", "un cercle rouge à gauche", ARABIC_QUERY, "左边有一个红色的圆"]
    panel = open_tab(page, "distill")
    panel.locator("textarea[name=sentences]").fill("\n".join(sentences) + "\n\n")
    assert run_and_wait(panel) == "done"
    rows = panel.locator(".result table.similarity tbody tr")
    assert rows.count() == 4
    labels = rows.locator("th bdi").all_inner_texts()
    assert labels == sentences
    assert rows.nth(2).locator("th bdi").evaluate("e => e.matches(':dir(rtl)')")
    for i in range(4):
        cells = rows.nth(i).locator("td")
        assert cells.nth(i).inner_text() == "+1.00"  # a sentence is its own best match
        values = [float(v) for v in cells.all_inner_texts()[:4]]
        nearest = int(cells.nth(4).inner_text().split()[-1]) - 1
        others = [v for j, v in enumerate(values) if j != i]
        assert nearest != i and values[nearest] == max(others)
        assert rows.nth(i).locator("td.nearest").count() == 1
    panel.locator("textarea[name=sentences]").fill("only one line")
    assert run_and_wait(panel) == "error"
    assert "at least two" in error_text(panel)
    assert panel.locator(".result table").count() == 0  # the old result is gone with the new input
    assert_only_local(page)


def _require_tab(server, name: str) -> None:
    if name not in _get_json(server[0] + "/api/health")["tabs"]:
        pytest.skip(f"no {name} tab: babeltower.tasks.TASKS does not register the {name} head yet")


def test_ocr_reads_uploaded_line_images_and_names_the_unreadable_one(page, server, tmp_path):
    from PIL import ImageDraw, ImageFont

    _require_tab(server, "ocr")
    panel = open_tab(page, "ocr")
    lines = []
    for name, text in (("latin.png", "hello world"), ("arabic.png", "مرحبا بكم")):
        image = Image.new("RGB", (200, 40), "white")
        ImageDraw.Draw(image).text((6, 10), text, fill="black", font=ImageFont.load_default(18))
        image.save(tmp_path / name)
        lines.append(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    panel.locator("input[name=images]").set_input_files([str(p) for p in lines] + [str(tmp_path / "broken.png")])
    assert run_and_wait(panel) == "done"
    rows = panel.locator(".result table.ocr tbody tr")
    assert rows.count() == 2
    assert rows.locator("td bdi").all_inner_texts() == ["latin.png", "arabic.png"]
    assert rows.locator("img").evaluate_all("is => is.every(i => i.complete && i.naturalWidth > 0)")
    assert rows.locator("td.ocr-text").evaluate_all("ts => ts.every(t => t.getAttribute('dir') === 'auto')")
    warning = panel.locator(".result .warning").inner_text()
    assert "broken.png" in warning and "PNG, JPEG" in warning
    assert_only_local(page)


def test_vqa_answers_questions_in_two_scripts_and_multiple_choice(page, server, tmp_path):
    from babeltower.datasets.synthetic.scenes import SceneSpec, render_scene

    _require_tab(server, "vqa")
    render_scene(SceneSpec("circle", "red", 2, "left", "large"), 64).save(tmp_path / "scene.png")
    panel = open_tab(page, "vqa")
    panel.locator("input[name=image]").set_input_files(str(tmp_path / "scene.png"))
    languages = panel.locator("select[name=lang] option").evaluate_all("os => os.map(o => o.value)")
    question = panel.locator("input[name=question]")
    question.fill("ما لون الأشكال؟")
    assert question.evaluate("e => e.matches(':dir(rtl)')")
    assert run_and_wait(panel) == "done"
    assert "language ar" in panel.locator(".result .meta").inner_text()
    assert panel.locator(".result .answer").inner_text().strip()
    assert panel.locator(".result h3 bdi").evaluate("e => e.matches(':dir(rtl)')")
    assert "de" in languages
    question.fill("Welche Farbe haben die Formen?")
    panel.locator("select[name=lang]").select_option("de")
    panel.locator("textarea[name=options]").fill("rot\nblau\ngrün")
    assert run_and_wait(panel) == "done"
    assert panel.locator(".result .answer").inner_text() in {"rot", "blau", "grün"}
    assert panel.locator(".result .runners li").count() == 2
    if MAIN_JOB:
        assert panel.locator(".result .answer").inner_text() == "rot"
    panel.locator("textarea[name=options]").fill("")
    question.fill("")
    assert run_and_wait(panel) == "error"
    assert "Question" in error_text(panel)
    assert_only_local(page)


def test_bad_uploads_show_a_message_and_the_server_keeps_running(page, server, tmp_path):
    contrastive = open_tab(page, "contrastive")
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is text, not a picture")
    contrastive.locator("input[name=images]").set_input_files(str(not_image))
    contrastive.locator("input[name=query]").fill("un cercle rouge")
    assert run_and_wait(contrastive) == "error"
    message = error_text(contrastive)
    assert "notes.png" in message and "PNG, JPEG" in message
    assert contrastive.locator(".result .card").count() == 0
    assert_server_up(server)

    # Over the upload limit (the test server allows 1 MiB per request).
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8))
    noise.save(tmp_path / "big.png")
    assert (tmp_path / "big.png").stat().st_size > 2**20
    contrastive.locator("input[name=images]").set_input_files(str(tmp_path / "big.png"))
    assert run_and_wait(contrastive) == "error"
    assert "limit of 1 MiB" in error_text(contrastive)
    assert_server_up(server)

    speech = open_tab(page, "asr")
    limit = float(re.search(r"up to ([\d.]+) s", speech.locator("label[for=asr-audio]").inner_text()).group(1))
    cases = {
        "empty.wav": (b"", "empty"),
        "photo.wav": ((tmp_path / "big.png").read_bytes()[:4096], "cannot decode audio"),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        speech.locator("input[name=audio]").set_input_files(str(tmp_path / name))
        assert run_and_wait(speech) == "error"
        message = error_text(speech)
        assert name in message and expected in message, message
        assert_server_up(server)
    long_clip = _tone(tmp_path / "long.wav", limit + 1.0, rate=8000)
    speech.locator("input[name=audio]").set_input_files(str(long_clip))
    assert run_and_wait(speech) == "error"
    assert f"{limit + 1:.2f} s long" in error_text(speech)

    t2i = open_tab(page, "t2i")
    t2i.locator("textarea[name=prompt]").fill("   ")
    assert run_and_wait(t2i) == "error"
    assert "Prompt" in error_text(t2i)
    t2i.locator("textarea[name=prompt]").fill(ARABIC_PROMPT)
    t2i.locator("input[name=steps]").fill("0")
    assert run_and_wait(t2i) == "error"
    assert "Steps: 0 is out of range" in error_text(t2i)
    assert_server_up(server)

    # Requests no page would send: a malformed multipart body and an unknown tab.
    base = server[0]
    broken = urllib.request.Request(base + "/api/run/asr", data=b"--x\r\nnot multipart", method="POST",
                                    headers={"Content-Type": "multipart/form-data; boundary=zz"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(broken, timeout=10)
    assert answer.value.code == 400 and "could not be read" in json.loads(answer.value.read())["error"]
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(urllib.request.Request(base + "/api/run/nope", data=b"", method="POST"), timeout=10)
    assert answer.value.code == 404
    assert_server_up(server)

    # After all that, a good request still works and clears the old message.
    speech = open_tab(page, "asr")
    speech.locator("input[name=audio]").set_input_files(str(_tone(tmp_path / "ok.wav", 1.0)))
    assert run_and_wait(speech) == "done"
    assert speech.locator("[role=alert]").is_hidden()
    assert "ok.wav: 1.00 s" in speech.locator(".result .meta").inner_text()
    assert_only_local(page)


def test_screenshot_for_the_readme(page, tmp_path):
    """Saves the retrieval tab with a finished Arabic query to $BABELTOWER_SCREENSHOT (README figure)."""
    from babeltower.datasets.synthetic.scenes import SceneSpec, caption, render_scene

    target = os.environ.get("BABELTOWER_SCREENSHOT")
    if not target:
        pytest.skip("set BABELTOWER_SCREENSHOT=docs/web_demo.png to save a screenshot")
    specs = [SceneSpec("circle", "red", 1, "left", "large"), SceneSpec("square", "blue", 2, "right", "small"),
             SceneSpec("triangle", "green", 3, "bottom", "large"), SceneSpec("star", "yellow", 1, "center", "large"),
             SceneSpec("heart", "purple", 2, "top", "small"), SceneSpec("circle", "blue", 3, "right", "large")]
    files = []
    for spec in specs:
        files.append(tmp_path / f"{spec.count}_{spec.colour}_{spec.shape}.png")
        render_scene(spec, 128).save(files[-1])
    panel = open_tab(page, "contrastive")
    panel.locator("input[name=images]").set_input_files([str(f) for f in files])
    panel.locator("input[name=query]").fill(caption(specs[0], "ar"))
    panel.locator("textarea[name=labels]").fill("\n".join(caption(spec, "fr") for spec in specs[:3]))
    assert run_and_wait(panel) == "done"
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=target, full_page=True)
    assert Path(target).stat().st_size > 10_000
    assert_only_local(page)
