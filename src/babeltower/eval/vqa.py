"""VQA metrics, scored as the references score them, and the evaluator's prediction and scoring.

Test sets are read by the datasets layer (:mod:`babeltower.datasets.vqa_testsets`:
VQA shards and CVQA files); this module scores the items it returns.

VQAv2 soft accuracy (:func:`vqa_soft_accuracy`) follows the official ``vqaEval.py``
(GT-Vision-Lab/VQA, PythonEvaluationTools) step by step:

1. The prediction: newlines and tabs become spaces, it is stripped, then
   ``processPunctuation`` and ``processDigitArticle`` run on it.
2. Only when the ten human answers are not all identical, each of them gets
   ``processPunctuation`` (the released answers were already normalised otherwise).
3. For each of the ten answers, the other nine are compared with the prediction:
   ``min(1, matches / 3)``; the question scores the mean of these ten numbers.

``processPunctuation``: each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted
when it touches a space or the text has a digit-comma-digit, otherwise replaced by a
space; then a period not followed by a digit is removed (the official regex
``(?!<=\\d)(\\.)(?!\\d)``, whose look-behind typo we keep, and its ``re.UNICODE`` passed
as ``count``, i.e. at most 32 periods). ``processDigitArticle``: lowercase, split on
whitespace, number words ``none``/``zero``...``ten`` -> digits, drop ``a``/``an``/``the``,
then the official contraction map (``dont`` -> ``don't``).

Other languages (:func:`normalize_answer`), the same steps with each language's
equivalents, applied to prediction and human answers alike:

- Unicode NFKC (full-width forms, compatibility characters) and ``casefold``;
- punctuation: the official list plus every Unicode punctuation character (``¿ ¡ « »
  、 。 ， ？ ！ ، ؟ ।``), deleted; a period not followed by a digit removed;
- native decimal digits (``٢``, ``२``) -> ASCII; number words zero-ten -> digits, also
  with a counter (zh ``两个``, ja ``二つ``/``2個``, ko ``두 개``/``2개``); in de/fr/es a word
  that is both article and numeral (``un``, ``una``, ``ein``) is the number only when it
  is the whole answer, otherwise it is dropped as an article;
- articles dropped: de ``der die das den dem des ein eine einen einem einer``, fr ``le la
  les l' un une des du de``, es ``el la los las un una unos unas lo``;
- Russian ``ё`` -> ``е`` (both spellings are standard); contractions only in English.

Multiple choice (CVQA's protocol): the model scores the four options; for generated
text, :func:`extract_choice` parses a letter, an option number or the option text
deterministically, and an unparseable answer is wrong, never a random pick.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

from babeltower.modalities.answers import (  # noqa: F401  (re-exported: the metric's normalisation)
    _clean,
    normalize_answer,
    process_digit_article,
    process_punctuation,
)


def vqa_soft_accuracy(prediction: Optional[str], answers: Sequence[str], lang: str = "en") -> float:
    """VQAv2 accuracy of one prediction against the human answers (normally ten).

    For ``lang == "en"`` this is the official vqaEval procedure (module docstring). For
    other languages both sides go through :func:`normalize_answer` and the same
    leave-one-out average of ``min(1, matches / 3)`` is taken. ``None`` (no parseable
    answer) scores 0.

    Args:
        prediction: The model's answer string, or None.
        answers: The human answers.
        lang: Language of question and answers.

    Returns:
        The accuracy in [0, 1].

    Raises:
        ValueError: If ``answers`` is empty.
    """
    if not answers:
        raise ValueError("vqa_soft_accuracy: no human answers to compare with")
    if prediction is None:
        return 0.0
    gts = [_clean(a) for a in answers]
    if lang == "en":
        pred = process_digit_article(process_punctuation(_clean(prediction)))
        if len(set(gts)) > 1:
            gts = [process_punctuation(a) for a in gts]
    else:
        pred = normalize_answer(prediction, lang)
        gts = [normalize_answer(a, lang) for a in gts]
    scores = []
    for i in range(len(gts)):
        others = gts[:i] + gts[i + 1 :]
        scores.append(min(1.0, sum(1 for a in others if a == pred) / 3))
    return sum(scores) / len(scores)


# ------------------------------------------------------------------ multiple choice
_LETTER = re.compile(r"^\(?([A-Da-d])\)?(?:[.:)\s]|$)")
_ANSWER_PREFIX = re.compile(r"^(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is)?\s*[:：]?\s*", re.IGNORECASE)


def extract_choice(prediction: Optional[str], options: Sequence[str], lang: str = "en") -> Optional[int]:
    """The option a free-text prediction picks, parsed deterministically; None when it picks none.

    Rules, first match wins:

    1. An optional ``Answer:``/``The answer is`` prefix is removed.
    2. A leading option letter ``A``-``D`` (``"B"``, ``"(C)"``, ``"D. Paris"``, ``"a)"``).
    3. A bare option number ``1``-``4`` when no option text is itself that number.
    4. The whole prediction equals one option after :func:`normalize_answer`.
    5. Exactly one option's normalised text occurs in the normalised prediction as a
       whole word (or, for zh/ja, as a substring).

    Anything else (two options mentioned, none, empty) is None, which the accuracy
    counts as wrong. No random fallback.
    """
    if prediction is None:
        return None
    text = _ANSWER_PREFIX.sub("", _clean(prediction))
    if not text:
        return None
    letter = _LETTER.match(text)
    if letter and len(options) <= 26:
        index = ord(letter.group(1).upper()) - ord("A")
        return index if index < len(options) else None
    normal_options = [normalize_answer(o, lang) for o in options]
    if re.fullmatch(r"[1-9]", text.strip()) and text.strip() not in normal_options:
        index = int(text.strip()) - 1
        return index if index < len(options) else None
    normal = normalize_answer(text, lang)
    if normal in normal_options and normal_options.count(normal) == 1:
        return normal_options.index(normal)
    hits = []
    for i, option in enumerate(normal_options):
        if not option:
            continue
        if lang in ("zh", "ja"):
            found = option in normal
        else:
            found = re.search(rf"(?<!\w){re.escape(option)}(?!\w)", normal) is not None
        if found:
            hits.append(i)
    return hits[0] if len(hits) == 1 else None


def multiple_choice_accuracy(choices: Iterable[Optional[int]], labels: Iterable[int]) -> float:
    """Fraction of items whose chosen index equals the label; a None choice is wrong."""
    pairs = list(zip(choices, labels))
    if not pairs:
        raise ValueError("multiple_choice_accuracy: no items")
    return sum(1 for c, y in pairs if c is not None and c == y) / len(pairs)


# ------------------------------------------------------------------ consistency


def cross_lingual_consistency(groups: dict[Any, dict[str, Optional[str]]]) -> dict[str, float]:
    """Agreement of answers to the same image and question across languages.

    Args:
        groups: group id -> {lang: answer key}, where the answer key is language-
            independent (e.g. ``"red"``, ``"2"``, ``"yes"``); None for an answer that maps
            to no key, which agrees with nothing.

    Returns:
        ``pairwise``: mean over groups of the fraction of language pairs that agree;
        ``all_agree``: fraction of groups where every language gives the same key;
        ``groups``: number of groups with at least two languages.
    """
    pair_scores, all_scores = [], []
    for answers in groups.values():
        keys = list(answers.values())
        if len(keys) < 2:
            continue
        pairs = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1 :]]
        pair_scores.append(sum(1 for a, b in pairs if a is not None and a == b) / len(pairs))
        all_scores.append(float(keys[0] is not None and all(k == keys[0] for k in keys)))
    if not pair_scores:
        return {"pairwise": float("nan"), "all_agree": float("nan"), "groups": 0}
    return {"pairwise": sum(pair_scores) / len(pair_scores), "all_agree": sum(all_scores) / len(all_scores),
            "groups": len(pair_scores)}


# ------------------------------------------------------------------ aggregation


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def summarise(records: list[dict]) -> dict:
    """Aggregates per-item records into overall, per-language and per-type numbers.

    Each record: ``lang``, ``type``, ``form``, ``group`` (image+question id shared by
    the languages), ``soft_acc`` (VQAv2), ``mc_correct`` (bool), ``key`` (answer key of
    the prediction, or None).
    """
    if not records:
        raise ValueError("summarise: no evaluation records")
    per_lang: dict[str, list[dict]] = defaultdict(list)
    per_type: dict[str, list[dict]] = defaultdict(list)
    per_lang_type: dict[str, list[dict]] = defaultdict(list)
    groups: dict[Any, dict[str, Optional[str]]] = defaultdict(dict)
    for r in records:
        per_lang[r["lang"]].append(r)
        per_type[r["type"]].append(r)
        per_type[f"{r['type']}/{r['form']}"].append(r)
        per_lang_type[f"{r['lang']}/{r['type']}"].append(r)
        groups[r["group"]][r["lang"]] = r["key"]

    def block(rs: list[dict]) -> dict:
        return {"vqa_acc": _mean([r["soft_acc"] for r in rs]), "mc_acc": _mean([float(r["mc_correct"]) for r in rs]),
                "n": len(rs)}

    consistency = cross_lingual_consistency(groups)
    type_consistency = {}
    for qtype in sorted({r["type"] for r in records}):
        sub: dict[Any, dict[str, Optional[str]]] = defaultdict(dict)
        for r in records:
            if r["type"] == qtype:
                sub[r["group"]][r["lang"]] = r["key"]
        type_consistency[qtype] = cross_lingual_consistency(sub)["pairwise"]
    metrics = block(records)
    metrics.pop("n")
    metrics.update(consistency=consistency["pairwise"], consistency_all=consistency["all_agree"])
    return {
        "metrics": metrics,
        "per_language": {lang: block(rs) for lang, rs in sorted(per_lang.items())},
        "groups": {
            "question_type": {t: {**block(rs), **({"consistency": type_consistency[t]} if t in type_consistency else {})}
                              for t, rs in sorted(per_type.items())},
            "language_type": {k: block(rs) for k, rs in sorted(per_lang_type.items())},
        },
        "n": len(records),
    }


def markdown_report(summary: dict, title: str = "VQA") -> str:
    """Tables: per language (VQAv2 accuracy, multiple choice) and per question type."""
    m = summary["metrics"]
    lines = [f"### {title}", "",
             f"VQAv2 soft accuracy {m['vqa_acc']:.3f} · multiple choice {m['mc_acc']:.3f} · "
             f"cross-lingual consistency {m['consistency']:.3f} (pairwise; all languages agree: {m['consistency_all']:.3f})",
             "", "| language | VQAv2 acc | MC acc | n |", "|---|---|---|---|"]
    for lang, v in summary["per_language"].items():
        lines.append(f"| {lang} | {v['vqa_acc']:.3f} | {v['mc_acc']:.3f} | {v['n']} |")
    lines += ["", "| question type | VQAv2 acc | MC acc | consistency | n |", "|---|---|---|---|---|"]
    for qtype, v in summary["groups"]["question_type"].items():
        cons = v.get("consistency")
        lines.append(f"| {qtype} | {v['vqa_acc']:.3f} | {v['mc_acc']:.3f} | "
                     f"{'' if cons is None or math.isnan(cons) else f'{cons:.3f}'} | {v['n']} |")
    lines += ["", "VQAv2 accuracy: official vqaEval procedure (English) and the documented per-language "
              "normalisation (babeltower.eval.vqa); MC: the highest-scoring of 4 options, no random fallback."]
    return "\n".join(lines)


def plot_per_language(summary: dict, path: str | Path) -> Path:
    """Bar chart of VQAv2 and multiple-choice accuracy per language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = list(summary["per_language"])
    vqa = [summary["per_language"][lang]["vqa_acc"] for lang in langs]
    mc = [summary["per_language"][lang]["mc_acc"] for lang in langs]
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(langs) + 2), 3.2))
    xs = range(len(langs))
    ax.bar([x - 0.2 for x in xs], vqa, width=0.4, label="VQAv2 soft acc")
    ax.bar([x + 0.2 for x in xs], mc, width=0.4, label="multiple choice")
    ax.set_xticks(list(xs), langs)
    ax.set_ylim(0, 1)
    ax.axhline(0.7, color="grey", lw=0.8, ls="--")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("VQA per language (held-out colour-shape pairs)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ evaluator


def _answer_key_tables(languages: Iterable[str]) -> dict[str, dict[str, str]]:
    from babeltower.datasets.synthetic.vqa import ANSWERS, answer_keys

    return {lang: {normalize_answer(text, lang): key for text, key in answer_keys(lang).items()}
            for lang in languages if lang in ANSWERS}


def predict_vqa(model, tokenizer, items: list[dict], *, modes: Sequence[str] = ("score", "classify"),
                batch_size: int = 256, progress: bool = True) -> dict[str, list[dict]]:
    """Open-ended and multiple-choice predictions of ``model`` for every item, per answer mode.

    ``items`` as :func:`babeltower.datasets.vqa_testsets.iter_vqa_items` returns them.

    Returns:
        ``{mode: [{"prediction": str|None, "choice": int|None}, ...]}`` aligned with ``items``.
    """
    import torch
    from tqdm.auto import tqdm

    from babeltower.modalities.text import tokenize

    device = next(model.parameters()).device
    out: dict[str, list[dict]] = {mode: [] for mode in modes}
    caches: dict[str, dict] = {mode: {} for mode in modes}
    model.eval()
    with torch.no_grad():
        for start in tqdm(range(0, len(items), batch_size), desc="vqa eval", unit="batch", disable=not progress):
            chunk = items[start : start + batch_size]
            tokens = tokenize(tokenizer, [it["question"] for it in chunk], 64)
            pixels = torch.stack([it["pixel_values"] for it in chunk]).to(device)
            fused = model.fuse(pixels, tokens["input_ids"].to(device), tokens["attention_mask"].to(device))
            langs = [it["lang"] for it in chunk]
            for mode in modes:
                open_answers = model.answer_from_fused(fused, tokenizer, langs=langs, mode=mode, answer_cache=caches[mode])
                choices = model.answer_from_fused(fused, tokenizer, langs=langs, mode=mode, answer_cache=caches[mode],
                                                  candidates=[it["options"] for it in chunk])
                out[mode].extend({"prediction": o["answer"], "choice": c["index"]} for o, c in zip(open_answers, choices))
    return out


def score_vqa(items: list[dict], predictions: list[dict]) -> tuple[dict, list[dict]]:
    """Scores aligned predictions: (summary from :func:`summarise`, per-item records)."""
    tables = _answer_key_tables({it["lang"] for it in items})
    records = []
    for item, pred in zip(items, predictions):
        prediction = pred["prediction"]
        key = None
        if prediction is not None:
            key = tables.get(item["lang"], {}).get(normalize_answer(prediction, item["lang"]))
        records.append({
            "id": f"{item['key']}/{item['qid']}/{item['lang']}",
            "lang": item["lang"], "type": item["qtype"], "form": item["form"], "group": item["group"],
            "soft_acc": vqa_soft_accuracy(prediction, item["answers"], item["lang"]),
            "mc_correct": pred["choice"] is not None and pred["choice"] == item["label"],
            "key": key, "reference": item["answer"], "prediction": prediction, "question": item["question"],
        })
    return summarise(records), records
