"""ASR evaluator: WER/CER per language and HiKE code-switching MER/PIER per level.

Input is a list of scored utterances ``{"ref", "hyp", "lang", "meta"}`` (produced by
any model: the evaluator does no decoding), so numbers compare across systems. Metric
conventions (see ../shared/notes/metrics.md and :mod:`babeltower.eval.asr_metrics`):

- ``wer`` / ``cer``: jiwer 4.0 definitions, pooled over the language's corpus (CER
  counts spaces);
- ``cer_no_spaces``: for zh and ja (and any language listed in ``no_space_languages``),
  CER after removing whitespace and punctuation (lmms-eval's variant);
- code-switched utterances (``lang`` "ko-en"): HiKE's mixed error rate (each Hangul
  syllable one token, each English word one token, hypothesis normalisation, loanword
  substitution, per-utterance score averaged) overall and per level (word, phrase,
  sentence), and PIER on the English words. Not jiwer's ``mer`` (match error rate).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable

from babeltower.eval.asr_metrics import cer, cer_no_spaces, corpus_mer, corpus_pier, wer
from babeltower.eval.report import bar_chart, markdown_table, write_json
from babeltower.modalities.speech_units import is_valid_text

CODE_SWITCHED = "ko-en"
NO_SPACE_LANGUAGES = ("zh", "ja", "yue", "cmn")
#: Evaluation groups a shard's json may name (``group``), in report order: the seen
#: domain (scene captions), real sentences never in training, code-switched sentences
#: never in training.
GROUPS: tuple[str, ...] = ("scene", "heldout", "code_switched")


def _language_rows(items: list[dict], no_space_languages) -> dict[str, dict]:
    by_lang: dict[str, list[dict]] = defaultdict(list)
    for u in items:
        by_lang[u["lang"]].append(u)
    rows = {}
    for lang in sorted(by_lang):
        refs, hyps = [u["ref"] for u in by_lang[lang]], [u["hyp"] for u in by_lang[lang]]
        row = {"wer": wer(refs, hyps), "cer": cer(refs, hyps), "num_utterances": len(refs)}
        if lang in no_space_languages:
            row["cer_no_spaces"] = cer_no_spaces(refs, hyps)
        rows[lang] = row
    return rows


def _code_switching(items: list[dict]) -> dict:
    scored = [
        {"ref": u["ref"], "hyp": u["hyp"], "level": (u.get("meta") or {}).get("cs_level"),
         "loanwords": (u.get("meta") or {}).get("loanwords")}
        for u in items
    ]  # fmt: skip
    return {"mer": corpus_mer(scored), "pier": corpus_pier(scored), "num_utterances": len(scored)}


def _group_reports(utterances: list[dict], no_space_languages) -> dict:
    """Per evaluation group (the shard json's ``group``): per-language rows, mean CER, MER."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for u in utterances:
        group = (u.get("meta") or {}).get("group")
        if group:
            grouped[group].append(u)
    out = {}
    for group in sorted(grouped, key=lambda g: (GROUPS.index(g) if g in GROUPS else len(GROUPS), g)):
        items = grouped[group]
        mono = [u for u in items if u["lang"] != CODE_SWITCHED]
        entry: dict = {"num_utterances": len(items)}
        if mono:
            rows = _language_rows(mono, no_space_languages)
            entry["per_language"] = rows
            entry["mean_cer"] = sum(r["cer"] for r in rows.values()) / len(rows)
            entry["max_cer"] = max(r["cer"] for r in rows.values())
            entry["pooled_cer"] = cer([u["ref"] for u in mono], [u["hyp"] for u in mono])
        cs = [u for u in items if u["lang"] == CODE_SWITCHED]
        if cs:
            entry["code_switching"] = _code_switching(cs)
        out[group] = entry
    return out


def _summary(groups: dict) -> dict:
    """The issue's bar quantities, where the groups exist."""
    summary = {}
    if "heldout" in groups and "mean_cer" in groups["heldout"]:
        summary["heldout_mean_cer"] = groups["heldout"]["mean_cer"]
        summary["heldout_max_cer"] = groups["heldout"]["max_cer"]
    if "scene" in groups and "mean_cer" in groups["scene"]:
        summary["scene_mean_cer"] = groups["scene"]["mean_cer"]
    if "code_switched" in groups and "code_switching" in groups["code_switched"]:
        summary["code_switched_mer"] = groups["code_switched"]["code_switching"]["mer"]["all"]
    return summary


def evaluate_asr(utterances: Iterable[dict], *, no_space_languages=NO_SPACE_LANGUAGES) -> dict:
    """Scores transcripts per language and per code-switching level.

    Args:
        utterances: dicts with ``ref``, ``hyp``, ``lang`` and optional ``meta`` (the shard
            json: ``cs_level`` and ``loanwords`` for code-switched utterances).
        no_space_languages: languages that also get ``cer_no_spaces``.

    Returns:
        Report: ``per_language`` (lang -> wer, cer, [cer_no_spaces], num_utterances),
        ``code_switching`` (MER and PIER per level), ``mean_cer`` over monolingual
        languages, ``invalid_outputs`` (hypotheses with U+FFFD or partial characters),
        ``markdown``; when the metas name a ``group`` (scene / heldout / code_switched,
        as ``data synth speech`` writes), also ``groups`` (per group: per-language rows,
        mean/max CER, MER per level) and ``summary`` (held-out mean and max CER, scene
        mean CER, code-switched MER).
    """
    by_lang: dict[str, list[dict]] = defaultdict(list)
    for u in utterances:
        by_lang[u["lang"]].append(u)
    if not by_lang:
        raise ValueError("evaluate_asr got no utterances")
    per_language: dict[str, dict[str, float]] = {}
    for lang in sorted(by_lang):
        items = by_lang[lang]
        refs, hyps = [u["ref"] for u in items], [u["hyp"] for u in items]
        row = {"wer": wer(refs, hyps), "cer": cer(refs, hyps), "num_utterances": len(items)}
        if lang in no_space_languages:
            row["cer_no_spaces"] = cer_no_spaces(refs, hyps)
        per_language[lang] = row
    report: dict = {"task": "asr", "languages": sorted(by_lang), "per_language": per_language}
    mono = [lang for lang in per_language if lang != CODE_SWITCHED]
    if mono:
        report["mean_cer"] = sum(per_language[lang]["cer"] for lang in mono) / len(mono)
        report["mean_wer"] = sum(per_language[lang]["wer"] for lang in mono) / len(mono)
    if CODE_SWITCHED in by_lang:
        items = [
            {
                "ref": u["ref"],
                "hyp": u["hyp"],
                "level": (u.get("meta") or {}).get("cs_level"),
                "loanwords": (u.get("meta") or {}).get("loanwords"),
            }
            for u in by_lang[CODE_SWITCHED]
        ]
        report["code_switching"] = {"mer": corpus_mer(items), "pier": corpus_pier(items)}
    everything = [u for items in by_lang.values() for u in items]
    report["invalid_outputs"] = sum(1 for u in everything if not is_valid_text(u["hyp"]))
    groups = _group_reports(everything, no_space_languages)
    if groups:
        report["groups"] = groups
        report["summary"] = _summary(groups)
    report["settings"] = {
        "wer_cer": "jiwer 4.0 definitions, corpus-pooled; CER counts spaces",
        "cer_no_spaces": f"whitespace and punctuation removed first, for {list(no_space_languages)}",
        "mer": "HiKE mixed error rate (percent), per-utterance mean; PIER on English words (percent)",
    }
    report["markdown"] = asr_markdown(report)
    return report


_GROUP_TITLES = {
    "scene": "Seen domain: scene captions (held-out voices and rates)",
    "heldout": "Held-out real sentences (UDHR clauses and everyday sentences never in training)",
    "code_switched": "Korean–English sentences never in training",
}


def _groups_markdown(report: dict) -> list[str]:
    groups = report.get("groups") or {}
    parts = []
    languages = sorted({lang for g in groups.values() for lang in g.get("per_language", {})})
    rows = {}
    for name, group in groups.items():
        if "per_language" in group:
            row = {lang: group["per_language"].get(lang, {}).get("cer", float("nan")) for lang in languages}
            row["mean"] = group["mean_cer"]
            rows[name] = row
    if rows:
        parts.append("\n### CER per evaluation group and language\n\n" + markdown_table(rows, languages + ["mean"], first="group"))
    for name, group in groups.items():
        cs = group.get("code_switching")
        if cs:
            levels = {level: {"MER": cs["mer"].get(level, float("nan")), "PIER": cs["pier"].get(level, float("nan"))}
                      for level in ("word", "phrase", "sentence", "all") if level in cs["mer"]}
            title = _GROUP_TITLES.get(name, name)
            parts.append(f"\n### {title}: HiKE MER / PIER (percent)\n\n" + markdown_table(levels, ["MER", "PIER"], first="level", precision=2))
    if groups:
        parts.append("\nGroups: " + "; ".join(f"**{n}**: {_GROUP_TITLES.get(n, n)}, {g['num_utterances']} utterances"
                                               for n, g in groups.items()) + ".")
    return parts


def asr_markdown(report: dict) -> str:
    table = markdown_table(report["per_language"], ["wer", "cer", "cer_no_spaces", "num_utterances"])
    parts = [table]
    if "mean_cer" in report:
        parts.append(f"\nMean over monolingual languages: CER {report['mean_cer']:.3f}, WER {report['mean_wer']:.3f}.")
    cs = report.get("code_switching")
    if cs:
        levels = {level: {"MER": cs["mer"].get(level, float("nan")), "PIER": cs["pier"].get(level, float("nan"))}
                  for level in ("word", "phrase", "sentence", "all") if level in cs["mer"]}
        parts.append("\n### Korean–English code-switching (HiKE MER / PIER, percent)\n\n" + markdown_table(levels, ["MER", "PIER"], first="level", precision=2))
    parts.extend(_groups_markdown(report))
    if "invalid_outputs" in report:
        parts.append(f"\nOutputs with U+FFFD or partial characters: {report['invalid_outputs']}.")
    return "\n".join(parts)


def write_asr_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """Writes asr.json, asr.md, asr.png (per-language CER/WER) and asr_cs.png (per level)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json(report, out_dir / "asr.json")}
    (out_dir / "asr.md").write_text("# Speech recognition\n\n" + report["markdown"] + "\n")
    paths["markdown"] = out_dir / "asr.md"
    paths["chart"] = bar_chart(
        report["per_language"], ["cer", "wer"], out_dir / "asr.png",
        title="Per-language error rates (lower is better)", ylabel="error rate", ylim=None,
    )
    cs = report.get("code_switching")
    if cs:
        rows = {level: {"MER": cs["mer"][level] / 100, "PIER": cs["pier"].get(level, float("nan")) / 100}
                for level in cs["mer"]}
        paths["chart_code_switching"] = bar_chart(
            rows, ["MER", "PIER"], out_dir / "asr_cs.png",
            title="Korean–English code-switching per level (HiKE MER, PIER; /100)", ylabel="error rate", ylim=None,
        )
    return paths


# --------------------------------------------------------------------- model + shards
# Test sets are read by the datasets layer (babeltower.datasets.speech.speech_eval_batches):
# the same reading and checks as training, bad clips skipped and counted.


def read_speech_shards(shards, *, sample_rate: int = 16000, max_seconds: float | None = 30.0):
    """Yields ``(key, waveform, text, lang, meta)`` per clip of a speech test set, in order.

    For scripts that feed another recognizer clip by clip (``benchmarks/bench_whisper.py``):
    the clips of :func:`babeltower.datasets.speech.speech_eval_batches`, bad ones skipped
    and logged.

    Args:
        shards: A folder of ``.tar`` shards, one shard, a glob, or a list of those.
        sample_rate: Rate to resample to.
        max_seconds: Longer clips are skipped (None: no limit).
    """
    from babeltower.datasets.speech import speech_eval_batches

    for batch in speech_eval_batches(shards, sample_rate=sample_rate, max_seconds=max_seconds, batch_size=1):
        wave = batch["waveforms"][0, : int(batch["audio_lengths"][0])]
        yield batch["key"][0], wave, batch["text"][0], batch["lang"][0], batch["meta"][0]


def transcribe_batches(model, batches: Iterable[dict], *, beam_size: int = 1, progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Transcribes clip batches with an ``ASRModel``.

    Args:
        model: The recognizer (``transcribe(waveforms, lengths, beam_size=...)``).
        batches: Dicts with ``waveforms`` (B, N), ``audio_lengths`` (B,), ``text``, ``lang``,
            ``key``, ``meta`` and optionally ``bad_samples`` (as
            :func:`babeltower.datasets.speech.speech_eval_batches` yields them).
        beam_size: 1 greedy, > 1 CTC prefix beam search.
        progress: Show a progress bar.

    Returns:
        ``([{"id", "ref", "hyp", "lang", "meta"}], bad_samples)``.
    """
    from tqdm.auto import tqdm

    utterances: list[dict] = []
    bad: list[dict] = []
    for batch in tqdm(batches, desc="transcribe", unit="batch", disable=not progress):
        bad.extend(batch.get("bad_samples") or [])
        hyps = model.transcribe(batch["waveforms"], batch["audio_lengths"], beam_size=beam_size)
        for key, text, lang, meta, hyp in zip(batch["key"], batch["text"], batch["lang"], batch["meta"], hyps):
            utterances.append({"id": key, "ref": text, "hyp": hyp, "lang": lang, "meta": meta})
    return utterances, bad


def load_asr_model(path: str | Path):
    """An ``ASRModel`` from a hub/model folder or an ``ASRSystem`` Lightning checkpoint."""
    import torch

    from babeltower.models.asr import ASRConfig, ASRModel

    path = Path(path)
    if path.is_dir():
        return ASRModel.from_pretrained(path).eval()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ASR model folder or checkpoint")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    hparams = checkpoint.get("hyper_parameters", {})
    if "asr" not in hparams or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not an ASRSystem checkpoint (no 'asr' hyper-parameters or state_dict)")
    model = ASRModel(ASRConfig(**hparams["asr"]))
    prefix = "model."
    weights = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    model.load_state_dict(weights, strict=True)
    return model.eval()


def evaluate_asr_shards(model_path, shards, out_dir=None, *, beam_size: int = 1, batch_size: int = 16, model=None) -> dict:
    """Model + speech shards -> the grouped ASR report (and its files under ``out_dir``).

    Args:
        model_path: Hub folder, model folder or ASRSystem ``.ckpt`` (ignored when
            ``model`` is given).
        shards: Validation shards (``data synth speech`` writes ``OUT/val``).
        out_dir: Where asr.json / asr.md / charts and ``samples.jsonl`` go; None: nowhere.
        beam_size: 1 greedy, > 1 CTC prefix beam search.
        batch_size: Clips per forward pass.
        model: An ``ASRModel`` already loaded.

    Returns:
        The :func:`evaluate_asr` report plus ``samples`` (id, lang, reference,
        prediction, group) and ``bad_samples`` (``count``, and each skipped clip's shard,
        key and reason).
    """
    import json

    from babeltower.datasets.speech import speech_eval_batches

    model = model if model is not None else load_asr_model(model_path)
    batches = speech_eval_batches(shards, sample_rate=model.config.sample_rate, max_seconds=model.config.max_seconds,
                                  batch_size=batch_size)
    utterances, bad = transcribe_batches(model, batches, beam_size=beam_size)
    report = evaluate_asr(utterances)
    report["bad_samples"] = {"count": len(bad), "samples": bad}
    report["samples"] = [
        {"id": u["id"], "lang": u["lang"], "reference": u["ref"], "prediction": u["hyp"],
         "group": u["meta"].get("group"), "source": u["meta"].get("source")}
        for u in utterances
    ]  # fmt: skip
    report["model"] = str(model_path)
    report["decoding"] = {"beam_size": beam_size}
    if out_dir is not None:
        write_asr_report(report, out_dir)
        with open(Path(out_dir) / "samples.jsonl", "w", encoding="utf-8") as handle:
            for sample in report["samples"]:
                handle.write(json.dumps(sample, ensure_ascii=False) + "\n")
    return report
