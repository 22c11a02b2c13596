"""Bitext evaluator: translation retrieval (Tatoeba-style) and student–teacher agreement per language.

For each language L, on held-out pairs (English s_i, translation t_i), de-duplicated so
that every English sentence and every translation occurs once:

- ``x2en_acc``: R@1 of retrieving s_i among all English sentences of L's set from t_i
  (other→English), ``en2x_acc`` the reverse; both with the student's embeddings
  (Artetxe & Schwenk 2019's Tatoeba protocol; chance 1/N);
- ``cos_tgt`` / ``mse_tgt``: mean cosine and MSE between student(t_i) and teacher(s_i);
  ``cos_src``: mean cosine between student(s_i) and teacher(s_i) (the English fit);
- ``teacher_x2en_acc`` / ``teacher_en2x_acc`` / ``teacher_cos``: the same retrieval and
  cosine with the English teacher applied directly to the translations: the baseline
  that distillation must beat.

Embedding functions are passed in, so the evaluator runs without Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F

from babeltower.eval.harness import prompt_hash
from babeltower.eval.metrics import recall_at_k
from babeltower.eval.report import bar_chart, markdown_table, write_json

Encode = Callable[[list[str]], torch.Tensor]  # texts -> (N, D) embeddings


def dedupe_pairs(pairs: Iterable[dict]) -> dict[str, list[tuple[str, str]]]:
    """Per language, (src, tgt) pairs with every src and every tgt occurring once."""
    by_lang: dict[str, list[tuple[str, str]]] = {}
    seen: dict[str, tuple[set, set]] = {}
    for pair in pairs:
        lang, src, tgt = pair["lang"], pair["src"], pair["tgt"]
        srcs, tgts = seen.setdefault(lang, (set(), set()))
        if src in srcs or tgt in tgts:
            continue
        srcs.add(src)
        tgts.add(tgt)
        by_lang.setdefault(lang, []).append((src, tgt))
    return by_lang


@torch.no_grad()
def evaluate_bitext(
    student: Encode,
    teacher: Encode,
    pairs: Iterable[dict],
    *,
    languages: Optional[list[str]] = None,
    min_pairs: int = 10,
) -> dict:
    """Scores a distilled student against its teacher on parallel pairs, per language.

    Args:
        student: texts -> (N, D) student embeddings (projected to the teacher's width).
        teacher: texts -> (N, D) teacher embeddings.
        pairs: dicts with ``src`` (English), ``tgt`` and ``lang``.
        languages: restrict to these (default: all found with at least ``min_pairs`` pairs).
        min_pairs: languages with fewer distinct pairs are left out (retrieval among a
            handful of candidates says little).

    Returns:
        Report dict: ``per_language``, ``mean``, ``languages``, ``settings``, ``markdown``.
    """
    by_lang = dedupe_pairs(pairs)
    langs = [lang for lang in (languages or sorted(by_lang)) if len(by_lang.get(lang, ())) >= min_pairs]
    if languages and len(langs) < len(languages):
        missing = sorted(set(languages) - set(langs))
        raise ValueError(f"fewer than {min_pairs} distinct evaluation pairs for languages {missing}")
    if not langs:
        raise ValueError(f"no language has {min_pairs} or more distinct evaluation pairs")
    per_language: dict[str, dict[str, float]] = {}
    samples: list[dict] = []
    for lang in langs:
        src, tgt = zip(*by_lang[lang])
        s_src = F.normalize(student(list(src)).float(), dim=-1)
        s_tgt_raw = student(list(tgt)).float()
        s_tgt = F.normalize(s_tgt_raw, dim=-1)
        t_src_raw = teacher(list(src)).float()
        t_src = F.normalize(t_src_raw, dim=-1)
        t_tgt = F.normalize(teacher(list(tgt)).float(), dim=-1)
        targets = torch.arange(len(src))
        retrieved = (s_tgt @ s_src.T).argmax(dim=1)  # the English sentence each translation finds
        samples.extend(
            {"id": f"{lang}/{i}", "lang": lang, "reference": src[i], "prediction": src[int(j)],
             "prompt_hash": prompt_hash(tgt[i])}
            for i, j in enumerate(retrieved)
        )
        per_language[lang] = {
            "x2en_acc": recall_at_k(s_tgt @ s_src.T, targets, (1,))[1],
            "en2x_acc": recall_at_k(s_src @ s_tgt.T, targets, (1,))[1],
            "teacher_x2en_acc": recall_at_k(t_tgt @ t_src.T, targets, (1,))[1],
            "teacher_en2x_acc": recall_at_k(t_src @ t_tgt.T, targets, (1,))[1],
            "cos_tgt": float((s_tgt * t_src).sum(-1).mean()),
            "teacher_cos": float((t_tgt * t_src).sum(-1).mean()),
            "cos_src": float((s_src * t_src).sum(-1).mean()),
            "mse_tgt": float(F.mse_loss(s_tgt_raw, t_src_raw)),
            "num_pairs": len(src),
        }
    metrics = [k for k in next(iter(per_language.values())) if k != "num_pairs"]
    mean = {k: sum(r[k] for r in per_language.values()) / len(per_language) for k in metrics}
    non_english = [lang for lang in langs if lang != "en"]
    worst = min(non_english or langs, key=lambda lang: per_language[lang]["x2en_acc"])
    report = {
        "task": "bitext",
        "languages": langs,
        "per_language": per_language,
        "mean": mean,
        "worst_x2en": {"lang": worst, "x2en_acc": per_language[worst]["x2en_acc"]},
        "samples": samples,
        "settings": {
            "protocol": "Tatoeba-style R@1 among all distinct sentences of the language's held-out set",
            "dedupe": "each English sentence and each translation kept once per language",
            "tie_rule": "pessimistic (equal scores rank above the target)",
            "min_pairs": min_pairs,
        },
    }
    report["markdown"] = bitext_markdown(report)
    return report


def bitext_markdown(report: dict) -> str:
    rows = dict(report["per_language"])
    rows["**mean**"] = report["mean"]
    columns = ["x2en_acc", "en2x_acc", "teacher_x2en_acc", "teacher_en2x_acc", "cos_tgt", "teacher_cos", "cos_src", "mse_tgt"]
    return markdown_table(rows, columns) + (
        "\n\n`x2en_acc`/`en2x_acc`: translation retrieval R@1 with the student; `teacher_*`: the English teacher "
        "applied directly to the translations (baseline); `cos_tgt`: cos(student(translation), teacher(English)); "
        "`cos_src`: cos(student(English), teacher(English))."
    )


def write_bitext_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """Writes bitext.json, bitext.md and bitext.png (student vs teacher per language)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json(report, out_dir / "bitext.json")}
    (out_dir / "bitext.md").write_text("# Bitext retrieval (distilled student vs English teacher)\n\n" + report["markdown"] + "\n")
    paths["markdown"] = out_dir / "bitext.md"
    paths["chart"] = bar_chart(
        report["per_language"],
        ["x2en_acc", "teacher_x2en_acc", "cos_tgt", "teacher_cos"],
        out_dir / "bitext.png",
        title="Other→English retrieval and cosine to the teacher: distilled student vs English teacher",
        ylim=(min(0.0, min(r["teacher_cos"] for r in report["per_language"].values())), 1.0),
    )
    return paths
