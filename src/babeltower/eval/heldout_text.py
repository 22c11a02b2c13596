"""Held-out generalisation of a distilled text encoder: text it never saw, beyond the scene grammar.

Three probes, each comparing the student with its teacher (and with chance):

- ``cldr``: CLDR names held out from training (:func:`~babeltower.datasets.synthetic.parallel.cldr_split`
  holds an entry out in every language at once), scored by
  :func:`babeltower.eval.bitext.evaluate_bitext`: translation retrieval x->en R@1 per
  locale, student and teacher;
- ``udhr`` / ``wordfreq``: held-out UDHR lines (another article than the training
  lines, every language) and held-out frequent words: mean cosine student(x) ~ teacher(x)
  per language, and R@1 of finding teacher(x) from student(x) among all held-out items
  of the source (chance 1/N);
- ``everyday``: :data:`EVERYDAY_SENTENCES`, 8 everyday sentences (weather, a bus stop, a
  hospital, ...) in English and 9 other languages, written for this probe: x->en R@1
  among the 8 (chance 0.125), for student and teacher.

    python -m babeltower.eval.heldout_text STUDENT_FOLDER --teacher TEACHER_FOLDER --out DIR

``STUDENT_FOLDER`` is a text-encoder folder, a hub folder with ``text_encoder/`` or a
DistillationSystem ``.ckpt`` (a distilled student projects into the teacher's space); ``TEACHER_FOLDER`` a text-encoder
folder such as the imported multilingual-e5-small.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

Encode = Callable[[list[str]], torch.Tensor]

#: Eight everyday sentences, index-aligned translations (none uses the scene grammar's words).
EVERYDAY_SENTENCES: dict[str, list[str]] = {
    "en": ["It is raining and the wind is cold.", "The bus stop is next to the pharmacy.",
           "Where is the nearest hospital?", "My daughter starts school tomorrow.",
           "Could you please close the window?", "The train to the airport is late again.",
           "We bought bread, cheese and apples at the market.", "I have had a headache since this morning."],
    "de": ["Es regnet und der Wind ist kalt.", "Die Bushaltestelle ist neben der Apotheke.",
           "Wo ist das nächste Krankenhaus?", "Meine Tochter kommt morgen in die Schule.",
           "Könnten Sie bitte das Fenster schließen?", "Der Zug zum Flughafen hat schon wieder Verspätung.",
           "Wir haben auf dem Markt Brot, Käse und Äpfel gekauft.", "Ich habe seit heute Morgen Kopfschmerzen."],
    "fr": ["Il pleut et le vent est froid.", "L'arrêt de bus est à côté de la pharmacie.",
           "Où est l'hôpital le plus proche ?", "Ma fille commence l'école demain.",
           "Pourriez-vous fermer la fenêtre, s'il vous plaît ?", "Le train pour l'aéroport est encore en retard.",
           "Nous avons acheté du pain, du fromage et des pommes au marché.", "J'ai mal à la tête depuis ce matin."],
    "es": ["Está lloviendo y el viento es frío.", "La parada de autobús está al lado de la farmacia.",
           "¿Dónde está el hospital más cercano?", "Mi hija empieza la escuela mañana.",
           "¿Podría cerrar la ventana, por favor?", "El tren al aeropuerto vuelve a llegar tarde.",
           "Compramos pan, queso y manzanas en el mercado.", "Me duele la cabeza desde esta mañana."],
    "ru": ["Идёт дождь, и ветер холодный.", "Автобусная остановка находится рядом с аптекой.",
           "Где ближайшая больница?", "Моя дочь завтра идёт в школу.",
           "Не могли бы вы закрыть окно, пожалуйста?", "Поезд в аэропорт снова опаздывает.",
           "Мы купили на рынке хлеб, сыр и яблоки.", "У меня с утра болит голова."],
    "ar": ["إنها تمطر والرياح باردة.", "موقف الحافلات بجوار الصيدلية.", "أين أقرب مستشفى؟",
           "ابنتي تبدأ المدرسة غدًا.", "هل يمكنك إغلاق النافذة من فضلك؟", "القطار المتجه إلى المطار متأخر مرة أخرى.",
           "اشترينا الخبز والجبن والتفاح من السوق.", "أعاني من صداع منذ هذا الصباح."],
    "hi": ["बारिश हो रही है और हवा ठंडी है।", "बस स्टॉप दवाई की दुकान के बगल में है।", "सबसे नज़दीकी अस्पताल कहाँ है?",
           "मेरी बेटी कल से स्कूल जाना शुरू करेगी।", "क्या आप कृपया खिड़की बंद कर देंगे?",
           "हवाई अड्डे जाने वाली ट्रेन फिर से देर से चल रही है।", "हमने बाज़ार से रोटी, पनीर और सेब खरीदे।",
           "आज सुबह से मेरे सिर में दर्द है।"],
    "ja": ["雨が降っていて、風が冷たいです。", "バス停は薬局の隣にあります。", "一番近い病院はどこですか？",
           "娘は明日から学校に通い始めます。", "窓を閉めていただけますか？", "空港行きの電車がまた遅れています。",
           "私たちは市場でパンとチーズとりんごを買いました。", "今朝から頭が痛いです。"],
    "ko": ["비가 오고 바람이 차갑습니다.", "버스 정류장은 약국 옆에 있습니다.", "가장 가까운 병원이 어디예요?",
           "제 딸은 내일부터 학교에 다닙니다.", "창문 좀 닫아 주시겠어요?", "공항으로 가는 기차가 또 늦어요.",
           "우리는 시장에서 빵, 치즈, 사과를 샀어요.", "오늘 아침부터 머리가 아파요."],
    "zh": ["正在下雨，风很冷。", "公交车站在药店旁边。", "最近的医院在哪里？", "我女儿明天开始上学。",
           "请你把窗户关上好吗？", "去机场的火车又晚点了。", "我们在市场买了面包、奶酪和苹果。", "我从今天早上开始头疼。"],
}


def _normed(encode: Encode, texts: list[str]) -> torch.Tensor:
    return F.normalize(encode(texts).float(), dim=-1)


@torch.no_grad()
def everyday_retrieval(encode: Encode) -> dict[str, float]:
    """x->en R@1 among the 8 :data:`EVERYDAY_SENTENCES` per language (chance 0.125)."""
    english = _normed(encode, EVERYDAY_SENTENCES["en"])
    target = torch.arange(len(EVERYDAY_SENTENCES["en"]))
    out = {}
    for lang, texts in EVERYDAY_SENTENCES.items():
        if lang == "en":
            continue
        sim = _normed(encode, texts) @ english.T  # (8, 8)
        out[lang] = float((sim.argmax(1) == target).float().mean())
    return out


@torch.no_grad()
def monolingual_fit(student: Encode, teacher: Encode, items: list[dict]) -> dict:
    """Student-teacher agreement on held-out monolingual items (``{"src", "lang"}``).

    Returns:
        ``{"per_language": {lang: {"cos", "n"}}, "cos": mean, "r1": R@1 of teacher(x) from
        student(x) among all N items, "chance": 1/N, "n": N}``.
    """
    texts = list(dict.fromkeys(item["src"] for item in items))
    lang_of = {item["src"]: item["lang"] for item in items}
    s, t = _normed(student, texts), _normed(teacher, texts)
    cos = (s * t).sum(-1)  # (N,)
    r1 = float(((s @ t.T).argmax(1) == torch.arange(len(texts))).float().mean())
    per_language: dict[str, dict] = {}
    for i, text in enumerate(texts):
        entry = per_language.setdefault(lang_of[text], {"cos": 0.0, "n": 0})
        entry["cos"] += float(cos[i])
        entry["n"] += 1
    for entry in per_language.values():
        entry["cos"] = round(entry["cos"] / entry["n"], 4)
    return {"per_language": dict(sorted(per_language.items())), "cos": round(float(cos.mean()), 4),
            "r1": round(r1, 4), "chance": round(1 / len(texts), 5), "n": len(texts)}


def generalisation_report(student: Encode, teacher: Encode, *, cldr_locales: Optional[list[str]] = None,
                          words_per_language: int = 2000) -> dict:
    """Runs every probe (module docstring); returns a JSON-able dict with ``markdown``."""
    from babeltower.datasets.synthetic.parallel import cldr_pairs, udhr_texts, wordfreq_texts
    from babeltower.eval.bitext import evaluate_bitext

    report: dict = {}
    cldr = evaluate_bitext(student, teacher, list(cldr_pairs(cldr_locales, split="val")))
    report["cldr"] = {"mean": cldr["mean"], "per_language": cldr["per_language"]}
    report["udhr"] = monolingual_fit(student, teacher, list(udhr_texts(split="val")))
    report["wordfreq"] = monolingual_fit(student, teacher, list(wordfreq_texts(None, words_per_language, split="val")))
    report["everyday"] = {"student": everyday_retrieval(student), "teacher": everyday_retrieval(teacher)}
    for who in ("student", "teacher"):
        values = report["everyday"][who].values()
        report["everyday"][f"{who}_mean"] = round(sum(values) / len(values), 4)
    report["markdown"] = _markdown(report)
    return report


def _markdown(report: dict) -> str:
    c, u, w, e = report["cldr"]["mean"], report["udhr"], report["wordfreq"], report["everyday"]
    lines = [
        "| held-out probe | student | teacher | chance |", "|---|---|---|---|",
        f"| CLDR names, x->en R@1 (mean over {len(report['cldr']['per_language'])} locales) | "
        f"{c.get('x2en_acc', float('nan')):.3f} | {c.get('teacher_x2en_acc', float('nan')):.3f} | per locale 1/N |",
        f"| UDHR held-out article, cos(student, teacher) ({u['n']} lines, {len(u['per_language'])} languages) | "
        f"{u['cos']:.3f} | 1 | |",
        f"| UDHR held-out article, R@1 student->teacher among {u['n']} | {u['r1']:.3f} | 1 | {u['chance']:.4f} |",
        f"| wordfreq held-out words, cos(student, teacher) ({w['n']} words) | {w['cos']:.3f} | 1 | |",
        f"| wordfreq held-out words, R@1 student->teacher among {w['n']} | {w['r1']:.3f} | 1 | {w['chance']:.5f} |",
        f"| everyday sentences x->en R@1 (mean of {len(e['student'])} languages) | {e['student_mean']:.3f} | "
        f"{e['teacher_mean']:.3f} | 0.125 |",
        "", "| everyday x->en R@1 | " + " | ".join(e["student"]) + " |",
        "|---|" + "---|" * len(e["student"]),
        "| student | " + " | ".join(f"{v:.2f}" for v in e["student"].values()) + " |",
        "| teacher | " + " | ".join(f"{v:.2f}" for v in e["teacher"].values()) + " |",
    ]
    return "\n".join(lines) + "\n"


def _student_from_checkpoint(path: Path):
    """The student TextEncoder of a DistillationSystem ``.ckpt`` (without building its teacher)."""
    from babeltower.models.text_encoder import TextEncoder, TextEncoderConfig

    checkpoint = torch.load(str(path), map_location="cpu", weights_only=False)
    fields = dict(checkpoint.get("hyper_parameters", {}).get("student") or {})
    if not fields:
        raise ValueError(f"{path}: no hyper_parameters.student; expected a DistillationSystem checkpoint")
    state = {k[len("student."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("student.")}
    fields["projection_dim"] = state["text_projection.weight"].shape[0] if "text_projection.weight" in state else None
    encoder = TextEncoder(TextEncoderConfig(**fields))
    encoder.load_state_dict(state, strict=True)
    return encoder.eval()


def _encoder_fn(folder: str) -> Encode:
    """texts -> embeddings of a text-encoder folder, a hub folder with text_encoder/, or a distillation .ckpt."""
    from babeltower.models.text_encoder import TextEncoder

    path = Path(folder)
    if path.suffix == ".ckpt":
        encoder = _student_from_checkpoint(path)
    else:
        if (path / "text_encoder").is_dir():
            path = path / "text_encoder"
        encoder = TextEncoder.from_pretrained(path)
    return lambda texts: encoder.encode(texts, max_length=128)


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description="Held-out generalisation of a distilled text encoder")
    parser.add_argument("student", help="student text-encoder folder, hub folder with text_encoder/, or distillation .ckpt")
    parser.add_argument("--teacher", required=True, help="teacher text-encoder folder (e.g. the imported e5)")
    parser.add_argument("--out", help="write heldout_text.json and heldout_text.md here")
    parser.add_argument("--words-per-language", type=int, default=2000)
    args = parser.parse_args(argv)
    report = generalisation_report(_encoder_fn(args.student), _encoder_fn(args.teacher),
                                   words_per_language=args.words_per_language)
    print(report["markdown"])
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "heldout_text.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
        (out / "heldout_text.md").write_text(report["markdown"])
    return report


if __name__ == "__main__":
    main()
