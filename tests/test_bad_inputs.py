"""A sweep of bad inputs across every verb: each gets one clear line naming the item, exit 2.

A per-item batch verb (transcribe) reports each bad file on its own line and exits 1
when any failed, saying how many. No case may print a traceback.
"""

import json

import numpy as np
import pytest
import torch

from babeltower.cli import main


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny random-init hub folders of three heads and a contrastive checkpoint-like file."""
    from diffusers import DDIMScheduler

    from babeltower.models.asr import ASRModel, asr_tiny
    from babeltower.models.clip import CLIPConfig, CLIPModel
    from babeltower.models.hub import save_clip
    from babeltower.models.t2i import BabelTowerText2ImagePipeline, UNetConfig, build_unet
    from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig, resolve_tokenizer
    from babeltower.models.vision import vit_tiny

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    text = TextEncoderConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    clip = save_clip(CLIPModel(CLIPConfig(vision=vit_tiny(), text=text, embed_dim=16)).eval(), root / "clip")
    ASRModel(asr_tiny()).save_pretrained(root / "asr")
    encoder = TextEncoder(TextEncoderConfig())
    unet = build_unet(UNetConfig(sample_size=16, block_out_channels=[16, 32], layers_per_block=1,
                                 cross_attention_levels=[False, True], cross_attention_dim=16, attention_head_dim=8,
                                 norm_num_groups=8), encoder.backbone.config.hidden_size)
    BabelTowerText2ImagePipeline(unet=unet.eval(), scheduler=DDIMScheduler(num_train_timesteps=100),
                                 text_encoder=encoder.backbone.eval(),
                                 tokenizer=resolve_tokenizer(encoder.config)).save_pretrained(root / "t2i")
    foreign = root / "foreign.ckpt"
    torch.save({"hyper_parameters": {"_class_path": "os.system"}, "state_dict": {}}, foreign)
    garbage = root / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    return {"clip": clip, "asr": root / "asr", "t2i": root / "t2i", "foreign": foreign, "garbage": garbage,
            "root": root}


def _files(tmp_path):
    """Bad and good inputs written on disk for the cases below."""
    import soundfile as sf

    files = {}
    (tmp_path / "empty_dir").mkdir()
    files["empty_dir"] = tmp_path / "empty_dir"
    files["text"] = tmp_path / "notes.txt"
    files["text"].write_text("hello\n")
    files["empty"] = tmp_path / "empty.wav"
    files["empty"].write_bytes(b"")
    wav = tmp_path / "good.wav"
    sf.write(wav, 0.3 * np.sin(np.arange(16000) / 10.0), 16000)
    files["truncated_wav"] = tmp_path / "truncated.wav"
    files["truncated_wav"].write_bytes(wav.read_bytes()[:2000])
    files["bad_json_manifest"] = tmp_path / "bad.jsonl"
    files["bad_json_manifest"].write_text('{"image": "a.png", "text": "x", "lang": "en"\n')
    files["missing_image_manifest"] = tmp_path / "missing.jsonl"
    files["missing_image_manifest"].write_text(json.dumps({"image": "nowhere.png", "text": "x", "lang": "en"}) + "\n")
    files["two_column_tsv"] = tmp_path / "pairs.tsv"
    files["two_column_tsv"].write_text("hello\tbonjour\n")
    files["empty_tsv"] = tmp_path / "empty.tsv"
    files["empty_tsv"].write_text("")
    files["suite_no_tasks"] = tmp_path / "suite_empty.yaml"
    files["suite_no_tasks"].write_text("seed: 0\n")
    foreign_out = tmp_path / "my_folder"
    foreign_out.mkdir()
    (foreign_out / "thesis.tex").write_text("mine")
    files["foreign_out"] = foreign_out
    files["not_json"] = tmp_path / "report.json"
    files["not_json"].write_text("{oops")
    return files


def _suite(tmp_path, tasks) -> str:
    path = tmp_path / f"suite_{abs(hash(json.dumps(tasks, default=str)))}.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"tasks": tasks}))
    return str(path)


CASES = [
    # data write
    ("data write: missing source", lambda m, f, t: ["data", "write", str(t / "nowhere.jsonl"), str(t / "o1")], "nowhere.jsonl"),
    ("data write: invalid JSON line", lambda m, f, t: ["data", "write", str(f["bad_json_manifest"]), str(t / "o2")], "bad.jsonl:1"),
    ("data write: missing image", lambda m, f, t: ["data", "write", str(f["missing_image_manifest"]), str(t / "o3")], "nowhere.png"),
    ("data write: zero samples per shard", lambda m, f, t: ["data", "write", str(f["missing_image_manifest"]), str(t / "o4"), "--max-count", "0"], "max-count"),
    # data synth
    ("data synth scenes: zero training scenes", lambda m, f, t: ["data", "synth", "scenes", str(t / "s1"), "--num-train", "0"], "num_train"),
    ("data synth scenes: image size 0", lambda m, f, t: ["data", "synth", "scenes", str(t / "s2"), "--image-size", "0"], "image_size"),
    ("data synth scenes: unknown language", lambda m, f, t: ["data", "synth", "scenes", str(t / "s3"), "--languages", "en,xx"], "xx"),
    ("data synth scenes: negative held-out count", lambda m, f, t: ["data", "synth", "scenes", str(t / "s6"), "--num-val", "-1"], "num_val"),
    ("data synth speech: unknown language", lambda m, f, t: ["data", "synth", "speech", str(t / "s4"), "--languages", "qq", "--num-train", "4", "--num-val", "4"], "qq"),
    ("data synth parallel: negative count", lambda m, f, t: ["data", "synth", "parallel", str(t / "s5"), "--num-train", "-3"], "num"),
    # data bitext
    ("data bitext: missing file", lambda m, f, t: ["data", "bitext", str(t / "none.tsv"), str(t / "b1")], "none.tsv"),
    ("data bitext: line with two columns", lambda m, f, t: ["data", "bitext", str(f["two_column_tsv"]), str(t / "b2")], "pairs.tsv"),
    ("data bitext: empty file", lambda m, f, t: ["data", "bitext", str(f["empty_tsv"]), str(t / "b3")], "empty.tsv"),
    # data tokenizer
    ("data tokenizer: no text", lambda m, f, t: ["data", "tokenizer", str(t / "tok1")], "--text"),
    ("data tokenizer: missing text file", lambda m, f, t: ["data", "tokenizer", str(t / "tok2"), "--text", str(t / "none.txt")], "none.txt"),
    ("data tokenizer: vocabulary too small", lambda m, f, t: ["data", "tokenizer", str(t / "tok3"), "--from-scenes", "--vocab-size", "10"], "--vocab-size"),
    # eval
    ("eval retrieval: missing model", lambda m, f, t: ["eval", "retrieval", str(t / "nomodel"), "--data", str(t), "--out", str(t / "e1")], "nomodel"),
    ("eval retrieval: empty folder as model", lambda m, f, t: ["eval", "retrieval", str(f["empty_dir"]), "--data", str(t), "--out", str(t / "e2")], "empty_dir"),
    ("eval retrieval: missing shards", lambda m, f, t: ["eval", "retrieval", str(m["clip"]), "--data", str(t / "noshards"), "--out", str(t / "e3")], "noshards"),
    ("eval retrieval: folder without shards", lambda m, f, t: ["eval", "retrieval", str(m["clip"]), "--data", str(f["empty_dir"]), "--out", str(t / "e4")], "empty_dir"),
    ("eval retrieval: no data", lambda m, f, t: ["eval", "retrieval", str(m["clip"]), "--out", str(t / "e5")], "--data"),
    ("eval bitext: a CLIP folder as a distilled encoder", lambda m, f, t: ["eval", "bitext", str(m["clip"]), "--data", str(t), "--out", str(t / "e6")], "model_index.json"),
    ("eval asr: a text file as model", lambda m, f, t: ["eval", "asr", str(f["text"]), "--data", str(t), "--out", str(t / "e7")], "notes.txt"),
    ("eval t2i: NaN guidance", lambda m, f, t: ["eval", "t2i", str(m["t2i"]), "--guidance-scale", "nan", "--out", str(t / "e8")], "guidance"),
    ("eval: neither head nor suite", lambda m, f, t: ["eval", "--out", str(t / "e9")], "--suite"),
    ("eval: missing suite file", lambda m, f, t: ["eval", "--suite", str(t / "none.yaml")], "none.yaml"),
    ("eval: suite without tasks", lambda m, f, t: ["eval", "--suite", str(f["suite_no_tasks"])], "suite_empty.yaml"),
    ("eval: suite with an unknown task", lambda m, f, t: ["eval", "--suite", _suite(t, {"speech": {"model": "x"}})], "speech"),
    ("eval: suite entry without model", lambda m, f, t: ["eval", "--suite", _suite(t, {"retrieval": {"data": "x"}}), "--out", str(t / "e10")], "names no model"),
    ("eval: suite option typo", lambda m, f, t: ["eval", "--suite", _suite(t, {"retrieval": {"model": "x", "options": {"poolsize": 3}}})], "poolsize"),
    ("eval: suite entry not a mapping", lambda m, f, t: ["eval", "--suite", _suite(t, {"retrieval": "runs/x"})], "expected a mapping"),
    ("eval: --tasks not in suite", lambda m, f, t: ["eval", "--suite", _suite(t, {"retrieval": {"model": "x"}}), "--tasks", "asr"], "asr"),
    # export
    ("export: missing checkpoint", lambda m, f, t: ["export", str(t / "none.ckpt"), str(t / "x1")], "none.ckpt"),
    ("export: a folder as checkpoint", lambda m, f, t: ["export", str(f["empty_dir"]), str(t / "x2")], "is a folder"),
    ("export: garbage checkpoint", lambda m, f, t: ["export", str(m["garbage"]), str(t / "x3")], "garbage.ckpt"),
    ("export: checkpoint of a foreign class", lambda m, f, t: ["export", str(m["foreign"]), str(t / "x4")], "os.system"),
    ("export: unreadable eval report", lambda m, f, t: ["export", str(m["foreign"]), str(t / "x5"), "--eval-report", str(f["not_json"])], "foreign.ckpt"),
    # generate
    ("generate: empty prompt", lambda m, f, t: ["generate", str(m["t2i"]), "--prompt", " ", "--out", str(t / "g1")], "--prompt #1"),
    ("generate: zero steps", lambda m, f, t: ["generate", str(m["t2i"]), "--prompt", "a red circle", "--steps", "0", "--out", str(t / "g2")], "--steps"),
    ("generate: NaN guidance", lambda m, f, t: ["generate", str(m["t2i"]), "--prompt", "a red circle", "--guidance-scale", "nan", "--out", str(t / "g3")], "--guidance-scale"),
    ("generate: an ASR folder as pipeline", lambda m, f, t: ["generate", str(m["asr"]), "--prompt", "a red circle", "--out", str(t / "g4")], "model_index.json"),
    ("generate: missing model", lambda m, f, t: ["generate", str(t / "nothing"), "--prompt", "x", "--out", str(t / "g5")], "nothing"),
    ("generate: negative save size", lambda m, f, t: ["generate", str(m["t2i"]), "--prompt", "x", "--save-size", "-4", "--out", str(t / "g6")], "--save-size"),
    ("generate: unknown scheduler", lambda m, f, t: ["generate", str(m["t2i"]), "--prompt", "x", "--scheduler", "euler9", "--out", str(t / "g7")], "euler9"),
    # transcribe (model errors; per-file errors are the next test)
    ("transcribe: missing model", lambda m, f, t: ["transcribe", str(t / "noasr"), str(f["text"])], "noasr"),
    ("transcribe: a CLIP folder as ASR model", lambda m, f, t: ["transcribe", str(m["clip"]), str(f["text"])], "clip"),
    # demo
    ("demo: malformed --set", lambda m, f, t: ["demo", "all", "--set", "t2i_max_steps=3", "--workdir", str(t / "d1")], "HEAD.OPTION=VALUE"),
    ("demo: unknown head in --skip", lambda m, f, t: ["demo", "all", "--skip", "vision", "--workdir", str(t / "d2")], "vision"),
    # hub
    ("hub import-e5: into a foreign folder", lambda m, f, t: ["hub", "import-e5", str(f["foreign_out"])], "my_folder"),
]


@pytest.mark.parametrize("name,argv,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_naming_it(name, argv, needle, models, tmp_path, capsys):
    files = _files(tmp_path)
    args = argv(models, files, tmp_path)
    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2, (name, code, captured.out[-500:], captured.err[-500:])
    # progress bars may precede it on stderr; the error itself is the last line, and one line
    err = captured.err.strip().splitlines()[-1] if captured.err.strip() else ""
    assert err.startswith("babeltower: error: ") and captured.err.count("babeltower: error:") == 1, (name, err)
    assert "Traceback" not in captured.out + captured.err
    assert needle.lower().replace("-", "_") in err.lower().replace("-", "_"), (name, needle, err)
    if "foreign" in name:
        assert (files["foreign_out"] / "thesis.tex").read_text() == "mine"


def test_transcribe_bad_files_each_get_a_line_and_the_run_exits_non_zero(models, tmp_path, capsys):
    files = _files(tmp_path)
    bad = [files["empty"], files["truncated_wav"], files["text"], files["empty_dir"], tmp_path / "absent.wav"]
    code = main(["transcribe", str(models["asr"]), *map(str, bad)])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert out[-1] == f"{len(bad)} of {len(bad)} file(s) failed"
    for path, line in zip(bad, out):
        assert line.startswith(str(path)) and "ERROR" in line, line


def test_debug_flag_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "export", str(tmp_path / "none.ckpt"), str(tmp_path / "x")])


def test_the_sweep_covers_at_least_forty_kinds():
    assert len({name for name, _, _ in CASES}) >= 40
