"""The web demo's parts without a browser: tab discovery, options, model defaults, input checks."""

import argparse
import re

import pytest

from babeltower.serve.common import Form, Limits, Progress, Upload, UserError, user_message


def test_code_switched_words_are_the_latin_ones_inside_another_script():
    from babeltower.serve.tabs.asr import mark_code_switching

    words = mark_code_switching("나는 machine learning 을 공부해요 GPU2개")
    assert [w["word"] for w in words if w["latin"]] == ["machine", "learning", "GPU2개"]
    hindi = mark_code_switching("मुझे यह movie बहुत पसंद है")
    assert [w["word"] for w in hindi if w["latin"]] == ["movie"]
    # A transcript in one script switches into nothing: no marks.
    assert not any(w["latin"] for w in mark_code_switching("un cercle rouge à gauche"))
    assert not any(w["latin"] for w in mark_code_switching("안녕하세요 123"))
    assert mark_code_switching("") == []


def test_tabs_follow_the_registry_in_display_order():
    from babeltower.serve.tabs import discover_tabs
    from babeltower.tasks import TASKS

    tabs = discover_tabs()
    assert set(tabs) <= set(TASKS)
    assert list(tabs)[:3] == ["contrastive", "t2i", "asr"]
    assert list(discover_tabs(["asr", "no_such_head", "contrastive"])) == ["contrastive", "asr"]


def test_options_one_per_tab_with_the_retrieval_alias():
    from babeltower.serve.app import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--retrieval", "a", "--t2i", "b", "--port", "8000"])
    assert (args.contrastive, args.t2i, args.asr, args.port, args.host) == ("a", "b", None, 8000, "127.0.0.1")


def test_missing_models_are_explained_on_the_page_and_bad_paths_refused(tmp_path):
    from babeltower.serve.app import load_heads, render_page
    from babeltower.serve.tabs import discover_tabs

    tabs = discover_tabs()
    heads = load_heads(tabs, {}, workdir=tmp_path)
    assert all(head.model is None for head in heads.values())
    html = render_page(heads, Limits())
    assert "start the server with --t2i PATH, or run `make demo-t2i`" in html
    assert str(tmp_path / "t2i" / "hub") in html
    # The page links only to this server: no scheme or protocol-relative URL anywhere.
    assert not re.search(r"(https?:)?//[a-z0-9]", html.replace("<!doctype html>", ""), re.I)
    with pytest.raises(FileNotFoundError, match=r"--asr .*nope: no such file or folder"):
        load_heads(tabs, {"asr": str(tmp_path / "nope")}, workdir=tmp_path)
    with pytest.raises(ValueError, match=r"no tab for \['ocrx'\]"):
        load_heads(tabs, {"ocrx": "x"}, workdir=tmp_path)


def test_form_fields_are_checked_with_the_field_named():
    form = Form(texts={"steps": "500", "seed": "x", "guidance": "nan", "ok": " 12 "},
                files={"audio": [Upload("", b"")], "images": [Upload("a.png", b"1")]})
    with pytest.raises(UserError, match="Steps: 500 is out of range; give a whole number between 1 and 200"):
        form.integer("steps", "Steps", 25, 1, 200)
    with pytest.raises(UserError, match="Seed: 'x' is not a whole number"):
        form.integer("seed", "Seed", 0, 0, 10)
    with pytest.raises(UserError, match="Guidance: nan is out of range"):
        form.number("guidance", "Guidance", 3.0, 0.0, 20.0)
    assert form.integer("ok", "OK", 0, 0, 20) == 12 and form.integer("absent", "A", 7, 0, 9) == 7
    assert form.uploads("audio") == [] and len(form.uploads("images")) == 1


def test_decoder_messages_lose_buffer_reprs():
    class Fake(Exception):
        pass

    assert user_message(Fake("Error opening <_io.BytesIO object at 0x7fa8>: bad")) == "Error opening: bad"


def test_progress_reports_to_its_listener():
    seen = []
    progress = Progress(lambda done, total, message: seen.append((done, total, message)))
    progress(1, 4, "step 1")
    progress(2, 4)
    assert seen == [(1, 4, "step 1"), (2, 4, "step 1")]
