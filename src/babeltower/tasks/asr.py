"""The speech head: espeak-ng speech, CTC on Whisper tiny.en's encoder or a Conformer, WER/CER, HiKE MER/PIER.

Evaluation name ``asr``; inference verb ``babeltower transcribe MODEL AUDIO...``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

NAME = "asr"
EVAL_NAME = "asr"
SYSTEMS = ("babeltower.train.asr.ASRSystem",)
DEMO_CONFIG = "configs/tiny/asr_demo.yaml"
SYNTH_NAMES = ("speech",)


def load(path: str | Path, lm: Optional[str] = None):
    """An ``ASRModel`` from an exported hub folder or an ASR checkpoint.

    Args:
        lm: None: the folder's own character LM if it has one (a checkpoint has none);
            "none": no LM; a path: that ``charlm.json.gz``.
    """
    from babeltower.models.asr import ASRModel
    from babeltower.tasks.common import apply_lm_option, load_system

    path = Path(path)
    if path.is_dir():
        model = ASRModel.from_pretrained(path, lm=lm is None).eval()
    else:
        model = load_system(path, SYSTEMS).model.eval()
    return apply_lm_option(model, lm)


# --------------------------------------------------------------------------- data
def add_synth_arguments(parser, kind: str) -> None:
    parser.add_argument("--num-train", type=int, default=6000, help="training utterances")
    parser.add_argument("--num-val", type=int, default=400, help="evaluation utterances (held-out voices and rates)")
    parser.add_argument("--languages", default=None, help="comma-separated codes (default: all)")
    parser.add_argument("--samples-per-shard", type=int, default=1000)


def synth(args) -> dict:
    """espeak-ng speech in every language, incl. Korean-English code-switching."""
    from babeltower.datasets.synthetic.speech import write_speech_shards
    from babeltower.tasks.common import check_at_least, split_languages

    check_at_least(1, num_train=args.num_train, num_val=args.num_val, samples_per_shard=args.samples_per_shard)
    return write_speech_shards(args.out, num_train=args.num_train, num_val=args.num_val,
                               languages=split_languages(args.languages), seed=args.seed,
                               samples_per_shard=args.samples_per_shard, overwrite=args.overwrite)


# --------------------------------------------------------------------------- evaluation
def add_eval_arguments(parser) -> None:
    parser.add_argument("--beam-size", type=int, default=1, help="1: greedy CTC decoding; >1: prefix beam search")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lm", default=None,
                        help="character LM: default the model folder's own (charlm.json.gz) if any; 'none' for plain "
                             "decoding; or a path to a charlm.json.gz")


def _groups(report: dict) -> dict:
    """The harness's groups: evaluation group (scene / heldout / code_switched) and HiKE level."""
    groups: dict[str, dict] = {}
    for name, entry in (report.get("groups") or {}).items():
        row = {k: v for k, v in entry.items() if isinstance(v, (int, float))}
        cs = entry.get("code_switching")
        if cs:
            row["mer"] = cs["mer"]["all"]
        row["n"] = entry["num_utterances"]
        groups.setdefault("data_group", {})[name] = row
    cs = report.get("code_switching")
    if cs:
        levels = {}
        for level, value in cs["mer"].items():
            levels[level] = {"mer": value, "pier": cs["pier"].get(level)}
        groups["cs_level"] = levels
    return groups


def evaluate(model: str, *, data: Optional[str], out: Optional[str], seed: int = 0,
             languages: Optional[list[str]] = None, beam_size: int = 1, batch_size: int = 16,
             lm: Optional[str] = None) -> dict:
    """Transcribes speech shards and scores them per language, group and code-switching level."""
    import torch

    from babeltower.eval.asr import evaluate_asr_shards
    from babeltower.eval.harness import data_fingerprint, prompt_hash, task_result

    if not data:
        raise ValueError("asr evaluation needs --data SHARDS (speech shards, e.g. runs/demo/data/speech/val)")
    with torch.no_grad():
        recognizer = load(model, lm=lm)
        report = evaluate_asr_shards(model, data, out, beam_size=beam_size, batch_size=batch_size, model=recognizer)
    keep = set(languages) if languages else None
    per_language = {lang: {**{k: v for k, v in row.items() if k != "num_utterances"}, "n": row["num_utterances"]}
                    for lang, row in report["per_language"].items() if keep is None or lang in keep}
    if "mean_cer" not in report:
        raise ValueError(f"{data}: no monolingual utterances to score (only code-switched ones)")
    # "cer" overall is the mean over monolingual languages of their pooled CER, so the
    # languages x tasks table reads the same quantity in its rows and its summary line.
    metrics = {"cer": report["mean_cer"], "wer": report["mean_wer"], **report.get("summary", {})}
    if report.get("code_switching"):
        metrics["ko_en_mer"] = report["code_switching"]["mer"]["all"]
        metrics["ko_en_pier"] = report["code_switching"]["pier"]["all"]
    metrics["invalid_outputs"] = report.get("invalid_outputs", 0)
    metrics["bad_samples"] = float(report["bad_samples"]["count"])  # clips the datasets layer skipped
    samples = [{**s, "prompt_hash": prompt_hash(f"{s['id']}|{s['reference']}")} for s in report["samples"]
               if keep is None or s["lang"] in keep]
    result = task_result(
        EVAL_NAME, metrics=metrics, per_language=per_language, groups=_groups(report), primary="cer",
        higher_is_better=False, samples=samples, data=data_fingerprint(data),
        options={"beam_size": beam_size, "decoding": recognizer.decoding if recognizer.lm is not None or beam_size == 1
                 else f"CTC prefix beam search (beam {beam_size})"}, markdown=report["markdown"],
    )
    result["paths"] = {k: Path(out) / f for k, f in (("json", "asr.json"), ("markdown", "asr.md"))} if out else {}
    return result


# --------------------------------------------------------------------------- inference
def add_verbs(subparsers) -> dict:
    tr = subparsers.add_parser("transcribe", help="transcribe audio files (any rate, any channel count, wav/flac)")
    tr.add_argument("model", help="hub folder of an ASR model, or an ASR .ckpt")
    tr.add_argument("audio", nargs="+")
    tr.add_argument("--beam-size", type=int, default=1)
    tr.add_argument("--lm", default=None, help="character LM: default the model folder's own; 'none'; or a charlm.json.gz")
    from babeltower.models.asr import ASRModel
    from babeltower.tasks.common import add_lm_verb

    q = add_lm_verb(subparsers, "asr-lm", "transcripts", ASRModel.LM_DEFAULTS, order=5)
    q.add_argument("--synth-text", type=int, default=0, metavar="N",
                   help="also N texts per language drawn from the speech synthesiser's training text pools (held-out "
                        "sentences and sources never included), plus its Korean-English training sentences")
    return {"transcribe": transcribe, "asr-lm": build_lm}


def build_lm(args) -> int:
    """``babeltower asr-lm SHARDS --into MODEL``: a character LM over the transcripts, spelt as the CTC output spells them."""
    from babeltower.models.asr import CONFIG_FILE, ASRModel
    from babeltower.tasks.common import lm_target, lm_verb

    target = lm_target(args.into, "asr", CONFIG_FILE, "ASRModel", args.overwrite)
    model = ASRModel.from_pretrained(target.parent, lm=False)
    return lm_verb(args, target, "transcript", model.lm_text, extra_texts=synth_training_texts(args.synth_text))


def synth_training_texts(per_language: int) -> list[str]:
    """``per_language`` draws per speech language from the synthesiser's training pools and
    the Korean-English training sentences (no held-out sentence can be drawn: tested in
    tests/tasks/test_asr_task.py)."""
    if per_language <= 0:
        return []
    import random

    from babeltower.datasets.synthetic.speech_text import SPEECH_LANGUAGES, code_switched_corpus, draw_text

    texts = []
    for lang in SPEECH_LANGUAGES:
        rng = random.Random(f"lm:{lang}")
        texts += [draw_text(lang, rng)[0] for _ in range(per_language)]
    texts += [text for text, _, _ in code_switched_corpus(min(per_language, 2000), "train", seed=0)]
    return texts


def transcribe(args) -> int:
    """One transcript per file and the real-time factor; a bad file gets its error, the rest go on.

    Exit status: 0 when every file was transcribed, 1 when any failed (the count is printed).
    """
    import torch

    from babeltower.modalities.audio import load_audio

    model = load(args.model, lm=getattr(args, "lm", None))
    failures = 0
    total_audio = total_time = 0.0
    for path in args.audio:
        try:
            wave = load_audio(path, target_rate=model.config.sample_rate, where=str(path),
                              max_seconds=model.config.max_seconds)
        except (ValueError, OSError, RuntimeError) as error:
            print(f"{path}\tERROR: {error}")
            failures += 1
            continue
        started = time.perf_counter()
        with torch.no_grad():
            text = model.transcribe(wave, beam_size=args.beam_size)[0]
        elapsed = time.perf_counter() - started
        seconds = wave.numel() / model.config.sample_rate
        total_audio, total_time = total_audio + seconds, total_time + elapsed
        print(f"{path}\t{text}\t(RTF {elapsed / max(seconds, 1e-9):.3f})")
    if total_audio:
        print(f"real-time factor: {total_time / total_audio:.3f} ({total_audio:.1f} s of audio in {total_time:.2f} s)")
    if failures:
        print(f"{failures} of {len(args.audio)} file(s) failed")
        return 1
    return 0


# --------------------------------------------------------------------------- main job
def export(ckpt: Path, folder: Path, result: dict) -> Path:
    from babeltower.tasks.common import load_system

    return load_system(ckpt, SYSTEMS).export_hub(folder, eval_report=result, overwrite=True)


def demo(ctx) -> dict:
    """espeak-ng speech -> ASR fit -> WER/CER/MER evaluation -> export."""
    from babeltower.datasets.synthetic.speech import write_speech_shards

    data = ctx.data_dir("speech")
    run_dir = ctx.run_dir("asr")
    if not (data / "train").exists() or ctx.overwrite:
        print(f"[asr] synthesising speech with espeak-ng to {data}")
        # A short evaluation: 100 scene captions, 8 held-out real sentences per language,
        # 30 held-out code-switched sentences (the quality run evaluates all of them).
        write_speech_shards(data, num_train=ctx.option(NAME, "num_train", 1500),
                            num_val=ctx.option(NAME, "num_val", 100), overwrite=True,
                            heldout_per_language=ctx.option(NAME, "heldout_per_language", 8),
                            num_val_code_switched=ctx.option(NAME, "num_val_code_switched", 30))
    else:
        print(f"[asr] reusing speech in {data}")
    # The character CTC units are written next to the shards (OUT/units).
    extra = ["--model.init_args.asr.tokenizer", str(data / "units")]  # the data's follows (linked)
    distilled = ctx.hub_of("distill")
    aligned = (distilled / "text_encoder").is_dir()
    if aligned:
        # Pair the speech head with the shared text encoder: align utterance embeddings to the
        # distilled multilingual encoder (SAMU-XLSR style) instead of a random frozen one.
        extra += ["--model.init_args.init_text_from", str(distilled)]
    config = ctx.option(NAME, "config", DEMO_CONFIG)
    print(f"[asr] training ({config}" + (f", aligned to {distilled})" if aligned else ")"))
    return ctx.fit_evaluate_export("asr", config, run_dir, data, evaluate, export, extra)
