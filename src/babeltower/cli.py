"""The ``babeltower`` command.

Training verbs come from LightningCLI (``fit``, ``validate``, ``test``, ``predict``,
with ``--config`` YAML of ``class_path``/``init_args``); the other verbs are tools:

    babeltower fit --config configs/tiny/contrastive.yaml   # also validate/test/predict
    babeltower data write SOURCE OUT             # JSONL manifest or folder -> tar shards
    babeltower data synth scenes|parallel|speech OUT
    babeltower data bitext FILE OUT              # user bitext (TSV/JSONL) -> shards
    babeltower data tokenizer OUT --from-scenes  # train a multilingual tokenizer
    babeltower eval retrieval|bitext|asr MODEL --shards SPEC --out DIR
    babeltower export CKPT OUT                   # Lightning checkpoint -> hub folder
    babeltower transcribe MODEL AUDIO...         # speech to text, with the real-time factor
    babeltower generate MODEL --prompt TEXT --out DIR   # text to image, any language
    babeltower demo all|contrastive|distill|asr|t2i  # the main job: data, fit, eval, export
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

TOOL_VERBS = ("data", "eval", "export", "demo", "transcribe", "generate")


# --------------------------------------------------------------------------- LightningCLI
def lightning_cli(args: Optional[list[str]] = None, run: bool = True):
    """Builds and (optionally) runs the LightningCLI; returns it (to reach ``.trainer``)."""
    from lightning.pytorch.cli import LightningCLI

    import lightning as L
    from babeltower.train.callbacks import BadSampleReport, CheckpointOnStop

    class BabelTowerCLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_lightning_class_args(BadSampleReport, "bad_samples")
            parser.add_lightning_class_args(CheckpointOnStop, "checkpoint_on_stop")

    return BabelTowerCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )


# --------------------------------------------------------------------------- model loading
def load_system_from_checkpoint(ckpt_path: str | Path):
    """Loads a babeltower LightningModule from a ``.ckpt``, whatever its task."""
    import torch

    from babeltower.train.asr import ASRSystem
    from babeltower.train.contrastive import ContrastiveSystem
    from babeltower.train.distill import DistillationSystem
    from babeltower.train.t2i import Text2ImageSystem

    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt_path} does not exist")
    hparams = torch.load(ckpt_path, map_location="cpu", weights_only=True).get("hyper_parameters", {})
    class_path = hparams.get("_class_path", "babeltower.train.contrastive.ContrastiveSystem")
    systems = {
        "babeltower.train.contrastive.ContrastiveSystem": ContrastiveSystem,
        "babeltower.train.distill.DistillationSystem": DistillationSystem,
        "babeltower.train.asr.ASRSystem": ASRSystem,
        "babeltower.train.t2i.Text2ImageSystem": Text2ImageSystem,
    }
    if class_path not in systems:
        raise ValueError(f"{ckpt_path}: unknown system {class_path!r}; babeltower knows {sorted(systems)}")
    return systems[class_path].load_from_checkpoint(ckpt_path, map_location="cpu")


def load_clip_any(path: str | Path):
    """A CLIPModel and its tokenizer from a hub folder or a Lightning checkpoint."""
    from babeltower.modalities.text import load_tokenizer
    from babeltower.models.hub import load_clip

    path = Path(path)
    if path.is_dir():
        return load_clip(path)
    system = load_system_from_checkpoint(path)
    from babeltower.models.text_encoder import resolve_tokenizer

    return system.model.eval(), resolve_tokenizer(system.model.text.config)


# --------------------------------------------------------------------------- verbs
def _print_splits(splits: dict, out) -> int:
    for split, paths in splits.items():
        print(f"{split}: {len(paths)} shard(s) in {Path(out) / split}")
    return 0


def cmd_data(args) -> int:
    if args.data_verb == "write":
        from babeltower.datasets.writer import write_dataset

        paths = write_dataset(
            args.source,
            args.out,
            prefix=args.prefix,
            max_count=args.max_count,
            max_size_mb=args.max_size_mb,
            overwrite=args.overwrite,
        )
        print(f"wrote {len(paths)} shard(s) to {args.out}")
        return 0
    if args.data_verb == "synth":
        if args.kind == "scenes":
            from babeltower.datasets.synthetic.scenes import write_scene_shards

            splits = write_scene_shards(
                args.out,
                num_train=args.num_train,
                num_val=args.num_val,
                image_size=args.image_size,
                languages=args.languages.split(",") if args.languages else None,
                seed=args.seed,
                samples_per_shard=args.samples_per_shard,
                overwrite=args.overwrite,
            )
            return _print_splits(splits, args.out)
    if args.data_verb == "synth" and args.kind == "parallel":
        from babeltower.datasets.synthetic.parallel import write_parallel_shards

        splits = write_parallel_shards(
            args.out,
            num_scene_train=args.num_train,
            num_scene_val=args.num_val,
            cldr=not args.no_cldr,
            seed=args.seed,
            overwrite=args.overwrite,
        )
        return _print_splits(splits, args.out)
    if args.data_verb == "synth" and args.kind == "speech":
        from babeltower.datasets.synthetic.speech import write_speech_shards

        splits = write_speech_shards(
            args.out,
            num_train=args.num_train,
            num_val=args.num_val,
            languages=args.languages.split(",") if args.languages else None,
            seed=args.seed,
            samples_per_shard=args.samples_per_shard,
            overwrite=args.overwrite,
        )
        return _print_splits(splits, args.out)
    if args.data_verb == "bitext":
        from babeltower.datasets.bitext import write_bitext_shards

        paths, report = write_bitext_shards(args.source, args.out, max_count=args.max_count, overwrite=args.overwrite)
        print(f"wrote {len(paths)} shard(s) to {args.out}")
        print(report)
        return 0
    if args.data_verb == "tokenizer":
        from babeltower.modalities.text import train_tokenizer

        texts: list[str] = []
        for file in args.text or []:
            texts.extend(line.rstrip("\n") for line in open(file, encoding="utf-8") if line.strip())
        if args.from_scenes:
            from babeltower.datasets.synthetic.scenes import caption_corpus

            texts.extend(caption_corpus())
        if not texts:
            raise SystemExit("babeltower data tokenizer: give --text FILE (one sentence a line) and/or --from-scenes")
        out = Path(args.out)
        if out.exists() and any(out.iterdir()) and not args.overwrite:
            raise SystemExit(f"{out} exists and is not empty; pass --overwrite to replace it")
        tokenizer = train_tokenizer(texts, vocab_size=args.vocab_size)
        tokenizer.save_pretrained(out)
        print(f"tokenizer with {len(tokenizer)} tokens trained on {len(texts)} texts -> {out}")
        return 0
    raise SystemExit(f"unknown data verb {args.data_verb}")


def build_eval_batches(shards, image_size: int, tokenizer, batch_size: int, num_workers: int = 0):
    """A single ordered pass over evaluation shards as batches for the evaluators."""
    from babeltower.datasets.datamodule import ImageTextDataModule

    dm = ImageTextDataModule(
        train_shards=shards,
        val_shards=shards,
        tokenizer=tokenizer,
        image_size=image_size,
        batch_size=batch_size,
        num_workers=num_workers,
    )
    dm.setup("validate")
    return dm.val_dataloader()


def scene_label_prompts(languages):
    """Zero-shot label prompts for scene attributes: a prompt ensemble per value and language."""
    from babeltower.datasets.synthetic.scenes import ATTRIBUTES, attribute_prompt_ensemble
    from babeltower.eval.retrieval import prompts_from_function

    return prompts_from_function(ATTRIBUTES, languages, attribute_prompt_ensemble)


def run_retrieval_eval(model_path, shards, out_dir, *, languages=None, pool_size=20, batch_size=128, num_workers=0):
    """Evaluates a hub folder or checkpoint on shards; writes the report; returns (report, paths)."""
    import torch

    from babeltower.eval.retrieval import evaluate_retrieval, write_retrieval_report

    import tempfile

    from babeltower.datasets.synthetic.scenes import LANGUAGES

    model, tokenizer = load_clip_any(model_path)
    # A context, not torch.set_grad_enabled(False): that would switch autograd off for
    # the rest of the process (e.g. training after evaluation in the same Python session).
    with torch.no_grad(), tempfile.TemporaryDirectory() as tokenizer_dir:
        tokenizer.save_pretrained(tokenizer_dir)  # the DataModule takes a tokenizer folder
        batches = build_eval_batches(shards, model.config.vision.image_size, tokenizer_dir, batch_size, num_workers)
        report = evaluate_retrieval(
            model,
            tokenizer,
            batches,
            languages=languages,
            label_prompts=scene_label_prompts(languages or LANGUAGES),
            pool_size=pool_size,
        )
    report["model"] = str(model_path)
    report["shards"] = shards
    return report, write_retrieval_report(report, out_dir)


def read_pairs(shards) -> list[dict]:
    """All (src, tgt, lang) pairs of parallel-text shards, in order."""
    from babeltower.datasets.pipeline import expand_shards, read_tar

    pairs = []
    for url in expand_shards(shards):
        for sample in read_tar(url):
            if "json" in sample:
                meta = json.loads(sample["json"])
                if all(meta.get(k) for k in ("src", "tgt", "lang")):
                    pairs.append(meta)
    if not pairs:
        raise ValueError(f"no parallel pairs (json with src, tgt, lang) in {shards}")
    return pairs


def load_student_and_teacher(model_path):
    """(student TextEncoder, its tokenizer, frozen Teacher) from a distill hub folder or checkpoint."""
    from babeltower.models.hub import load_text_encoder
    from babeltower.models.teacher import TeacherConfig, build_teacher
    from babeltower.models.text_encoder import resolve_tokenizer

    path = Path(model_path)
    if path.is_dir():
        student, tokenizer, index = load_text_encoder(path)
        if "teacher" not in index:
            raise ValueError(f"{path / 'model_index.json'} records no teacher; export it from a distillation run")
        return student, tokenizer, build_teacher(TeacherConfig(**index["teacher"]))
    system = load_system_from_checkpoint(path)
    if not hasattr(system, "student"):
        raise ValueError(f"{path} is not a distillation checkpoint (no student)")
    return system.student.eval(), resolve_tokenizer(system.student.config), system.__dict__["teacher"]


def run_bitext_eval(model_path, shards, out_dir, *, languages=None, batch_size=256):
    """Bitext retrieval + student/teacher agreement; writes the report; returns (report, paths)."""
    import torch

    from babeltower.eval.bitext import evaluate_bitext, write_bitext_report

    student, tokenizer, teacher = load_student_and_teacher(model_path)

    def encode_student(texts):
        return torch.cat([student.encode(texts[i : i + batch_size], tokenizer) for i in range(0, len(texts), batch_size)])

    pairs = read_pairs(shards)
    scenes = [p for p in pairs if p.get("source") == "scenes"]
    others = [p for p in pairs if p.get("source") != "scenes"]
    with torch.no_grad():
        # The bar is measured on held-out scene pairs (words seen in training, combinations
        # not); held-out CLDR entries (names never seen) and user bitext are reported apart.
        report = evaluate_bitext(encode_student, teacher.encode, scenes or pairs, languages=languages)
        if scenes and others:
            extra = evaluate_bitext(encode_student, teacher.encode, others)
            report["other_sources"] = extra
            report["markdown"] += (
                "\n\n### Held-out CLDR entries (names never seen in training)\n\n" + extra["markdown"]
            )
    report["model"], report["shards"] = str(model_path), shards
    return report, write_bitext_report(report, out_dir)


def load_asr_any(path):
    """An ASRModel from an exported hub folder or an ASR checkpoint."""
    from babeltower.models.asr import ASRModel

    path = Path(path)
    if path.is_dir():
        return ASRModel.from_pretrained(path).eval()
    system = load_system_from_checkpoint(path)
    if not hasattr(system, "features"):
        raise ValueError(f"{path} is not an ASR checkpoint")
    return system.model.eval()


def run_asr_eval(model_path, shards, out_dir, *, beam_size=1, batch_size=16):
    """Transcribes evaluation shards, scores them (WER/CER, HiKE MER/PIER); returns (report, paths)."""
    import torch

    from babeltower.datasets.speech import SpeechDataModule
    from babeltower.eval.asr import evaluate_asr, write_asr_report
    from tqdm.auto import tqdm

    model = load_asr_any(model_path)
    dm = SpeechDataModule(train_shards=shards, val_shards=shards, batch_size=batch_size,
                          max_seconds=model.config.max_seconds)
    dm.setup("validate")
    utterances, bad = [], []
    with torch.no_grad():
        for batch in tqdm(dm.val_dataloader(), desc="transcribing", unit="batch"):
            hyps = model.transcribe(batch["waveforms"], batch["audio_lengths"], beam_size=beam_size)
            for ref, hyp, lang, meta in zip(batch["text"], hyps, batch["lang"], batch["meta"]):
                utterances.append({"ref": ref, "hyp": hyp, "lang": lang, "meta": meta})
            bad.extend(batch.get("bad_samples", []))
    report = evaluate_asr(utterances)
    report.update(model=str(model_path), shards=shards, beam_size=beam_size, bad_samples=len(bad),
                  examples=utterances[:: max(1, len(utterances) // 20)][:20])
    return report, write_asr_report(report, out_dir)


def load_or_train_judge(path: Optional[str | Path], image_size: int, steps: int = 1000):
    """An attribute judge: loaded from ``path`` if it holds one, else trained (and saved there)."""
    from babeltower.eval.judge import AttributeJudge, train_judge

    if path is not None and (Path(path) / "config.json").is_file():
        judge = AttributeJudge.from_pretrained(path)
        if judge.config.image_size != image_size:
            raise ValueError(
                f"the judge in {path} works at {judge.config.image_size} px but the model generates "
                f"{image_size} px images; pass another --judge folder (a new one is trained there)"
            )
        return judge
    print(f"[t2i] training the attribute judge on real scenes at {image_size} px")
    judge = train_judge(image_size=image_size, steps=steps)
    if path is not None:
        judge.save_pretrained(path, overwrite=False)
    return judge


def run_t2i_eval(model_path, out_dir, *, clip, judge=None, languages=None, num_scenes=100, split="val",
                 steps=25, guidance_scale=3.0, scheduler=None, batch_size=50, seed=0, code_mixed=True, fid=True):
    """Generates held-out scene prompts in every language and scores them; returns (report, paths)."""
    from babeltower.datasets.synthetic.scenes import LANGUAGES
    from babeltower.eval.t2i import evaluate_t2i, pipeline_generator, write_t2i_report

    pipe = load_t2i_any(model_path, scheduler)
    judge_model = load_or_train_judge(judge, pipe.image_size)
    generate = pipeline_generator(pipe, num_inference_steps=steps, guidance_scale=guidance_scale, batch_size=batch_size)
    report = evaluate_t2i(
        generate, judge=judge_model, clip_folder=clip, languages=languages or LANGUAGES, num_scenes=num_scenes,
        split=split, seed=seed, code_mixed=code_mixed, fid=fid,
    )
    report["model"] = str(model_path)
    report["sampling"] = {"scheduler": type(pipe.scheduler).__name__, "steps": steps, "guidance_scale": guidance_scale}
    return report, write_t2i_report(report, out_dir)


def cmd_transcribe(args) -> int:
    """One transcript per file and the real-time factor; a bad file gets its error, the rest go on."""
    import torch

    from babeltower.modalities.audio import load_audio

    model = load_asr_any(args.model)
    failures = 0
    total_audio = total_time = 0.0
    for path in args.audio:
        try:
            wave = load_audio(path, target_rate=model.config.sample_rate, where=str(path),
                              max_seconds=model.config.max_seconds)
        except (ValueError, FileNotFoundError, RuntimeError) as error:
            print(f"{path}\tERROR: {error}")
            failures += 1
            continue
        started = time.perf_counter()
        with torch.no_grad():
            text = model.transcribe(wave, beam_size=args.beam_size)[0]
        elapsed = time.perf_counter() - started
        seconds = wave.numel() / model.config.sample_rate
        total_audio, total_time = total_audio + seconds, total_time + elapsed
        print(f"{path}\t{text}\t(RTF {elapsed / seconds:.3f})")
    if total_audio:
        print(f"real-time factor: {total_time / total_audio:.3f} ({total_audio:.1f} s of audio in {total_time:.2f} s)")
    return 1 if failures == len(args.audio) else 0


def load_t2i_any(path: str | Path, scheduler: Optional[str] = None):
    """A text-to-image pipeline from an exported folder or a Lightning checkpoint (EMA weights)."""
    from babeltower.models.hub import load_t2i_pipeline

    path = Path(path)
    if path.is_dir():
        pipe = load_t2i_pipeline(path)
        if scheduler:
            pipe.scheduler = _scheduler_class(scheduler).from_config(pipe.scheduler.config)
        return pipe
    return load_system_from_checkpoint(path).pipeline(scheduler=scheduler or "dpm++")


def _scheduler_class(name: str):
    from babeltower.models.t2i import scheduler_class

    try:
        return scheduler_class(name)
    except ValueError as error:
        raise SystemExit(f"--scheduler: {error}") from None


def cmd_generate(args) -> int:
    """Images for one or more prompts, written as PNG files; never overwrites without --overwrite."""
    import torch

    prompts = list(args.prompt)
    for i, prompt in enumerate(prompts):
        if not prompt.strip():
            print(f"error: --prompt #{i + 1} is empty; describe the image, e.g. --prompt \"un cercle rouge à gauche\"",
                  file=sys.stderr)
            return 2
    out = Path(args.out)
    names = [out / f"{p:02d}_{k:02d}.png" for p in range(len(prompts)) for k in range(args.num_images)]
    existing = [n for n in names if n.exists()]
    if existing and not args.overwrite:
        print(f"error: {len(existing)} file(s) in {out} would be overwritten (e.g. {existing[0].name}); "
              "pass --overwrite or choose another --out", file=sys.stderr)
        return 2
    pipe = load_t2i_any(args.model, args.scheduler)
    if args.attn_backend:
        pipe.set_attention_backend(args.attn_backend)
    try:
        pipe.check_prompts(prompts)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    generators = [torch.Generator().manual_seed(args.seed + i) for i in range(len(prompts) * args.num_images)]
    started = time.perf_counter()
    images = pipe(
        prompts,
        negative_prompt=args.negative_prompt,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        num_images_per_prompt=args.num_images,
        generator=generators,
    ).images
    elapsed = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    size = args.save_size
    for name, image in zip(names, images):
        if size and size != image.width:
            from PIL import Image

            image = image.resize((size, size), Image.Resampling.NEAREST)
        image.save(name)
    meta = {"model": str(args.model), "prompts": prompts, "seed": args.seed, "steps": args.steps,
            "guidance_scale": args.guidance_scale, "scheduler": type(pipe.scheduler).__name__,
            "files": [n.name for n in names]}
    (out / "generate.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(images)} image(s) to {out} in {elapsed:.1f} s ({len(images) / elapsed:.2f} images/s)")
    return 0


def _print_report(report: dict, paths: dict) -> int:
    print(report["markdown"])
    print("\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    return 0


def cmd_eval(args) -> int:
    if args.task == "retrieval":
        report, paths = run_retrieval_eval(
            args.model,
            args.shards,
            args.out,
            languages=args.languages.split(",") if args.languages else None,
            pool_size=args.pool_size,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
        )
        return _print_report(report, paths)
    if args.task == "asr":
        report, paths = run_asr_eval(args.model, args.shards, args.out, beam_size=args.beam_size)
        return _print_report(report, paths)
    if args.task == "t2i":
        report, paths = run_t2i_eval(
            args.model, args.out, clip=args.clip, judge=args.judge,
            languages=args.languages.split(",") if args.languages else None, num_scenes=args.num_scenes,
            split=args.split, steps=args.steps, guidance_scale=args.guidance_scale, scheduler=args.scheduler,
            seed=args.seed, code_mixed=not args.no_code_mixed, fid=args.clip is not None,
        )
        return _print_report(report, paths)
    if args.task == "bitext":
        report, paths = run_bitext_eval(
            args.model, args.shards, args.out, languages=args.languages.split(",") if args.languages else None
        )
        return _print_report(report, paths)
    raise SystemExit(f"unknown eval task {args.task}")


def cmd_export(args) -> int:
    system = load_system_from_checkpoint(args.ckpt)
    report = json.loads(Path(args.eval_report).read_text()) if args.eval_report else None
    folder = system.export_hub(args.out, eval_report=report, overwrite=args.overwrite)
    print(f"exported {args.ckpt} -> {folder}")
    return 0


def _last_checkpoint(root: Path) -> Path:
    ckpts = sorted(root.rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise FileNotFoundError(f"no checkpoint was written under {root}")
    return ckpts[-1]


def _fit(config: str, run_dir: Path, train: str, val: str, extra: Optional[list[str]] = None):
    """`babeltower fit` with the run's folders and shards filled in; returns the last checkpoint."""
    lightning_cli(
        [
            "fit",
            "--config",
            config,
            "--trainer.default_root_dir",
            str(run_dir),
            "--trainer.logger.init_args.save_dir",  # the demo configs log with CSVLogger
            str(run_dir),
            "--data.init_args.train_shards",
            train,
            "--data.init_args.val_shards",
            val,
            *(extra or []),
        ]
    )
    return _last_checkpoint(run_dir)


def _fit_eval_export(tag: str, config: str, run_dir: Path, data: Path, evaluate, extra=None) -> dict:
    """The tail every demo shares: fit on data/{train,val}, evaluate the last checkpoint, export it."""
    ckpt = _fit(config, run_dir, str(data / "train"), str(data / "val"), extra)
    print(f"[{tag}] evaluating {ckpt}")
    report, paths = evaluate(ckpt, str(data / "val"), run_dir / "eval")
    print(report["markdown"])
    hub = load_system_from_checkpoint(ckpt).export_hub(run_dir / "hub", eval_report=report, overwrite=True)
    return {"report": report, "paths": paths, "ckpt": ckpt, "hub": hub}


def _fresh_run_dir(run_dir: Path, overwrite: bool) -> Path:
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise SystemExit(f"{run_dir} already holds a run; pass --overwrite to replace it, or choose --workdir")
        import shutil

        shutil.rmtree(run_dir)
    return run_dir


def demo_contrastive(
    args, work: Path, *, init_from: Optional[str] = None, name: str = "contrastive", write_scenes: bool = True
) -> dict:
    """Scenes -> fit -> retrieval eval -> export, for the contrastive head.

    ``write_scenes=False`` reuses the scenes an earlier run of the same job wrote.
    """
    from babeltower.datasets.synthetic.scenes import write_scene_shards

    data = work / "data" / "scenes"
    run_dir = _fresh_run_dir(work / name, args.overwrite)
    if not (data / "train").exists() or (args.overwrite and write_scenes):
        print(f"[contrastive] writing synthetic multilingual scenes to {data}")
        write_scene_shards(
            data, num_train=args.num_train, num_val=args.num_val, image_size=args.image_size, seed=0,
            samples_per_shard=2000, overwrite=True,
        )
    else:
        print(f"[contrastive] reusing scenes in {data}")
    extra = ["--trainer.max_steps", str(args.max_steps)] if args.max_steps else []
    if init_from:
        extra += ["--model.init_args.init_from", str(init_from), "--data.init_args.tokenizer", str(Path(init_from) / "tokenizer")]
    print(f"[contrastive] training {name} ({args.config}{', text encoder from ' + str(init_from) if init_from else ''})")
    return _fit_eval_export("contrastive", args.config, run_dir, data, run_retrieval_eval, extra)


def demo_distill(args, work: Path) -> dict:
    """Parallel text -> distillation fit -> bitext eval -> export, for the text encoder."""
    from babeltower.datasets.synthetic.parallel import write_parallel_shards

    data = work / "data" / "parallel"
    run_dir = _fresh_run_dir(work / "distill", args.overwrite)
    if not (data / "train").exists() or args.overwrite:
        print(f"[distill] writing parallel text (scene grammar + Unicode CLDR) to {data}")
        # 5,000 scene specs -> 45,000 scene pairs (870 distinct captions a language, repeated so
        # scenes weigh about as much as the 45,000 CLDR pairs)
        write_parallel_shards(data, num_scene_train=5000, num_scene_val=500, overwrite=True)
    else:
        print(f"[distill] reusing parallel text in {data}")
    print(f"[distill] training ({args.distill_config})")
    return _fit_eval_export("distill", args.distill_config, run_dir, data, run_bitext_eval)


def demo_asr(args, work: Path) -> dict:
    """espeak-ng speech -> ASR fit -> WER/CER/MER eval -> export."""
    from babeltower.datasets.synthetic.speech import write_speech_shards

    data = work / "data" / "speech"
    run_dir = _fresh_run_dir(work / "asr", args.overwrite)
    if not (data / "train").exists() or args.overwrite:
        print(f"[asr] synthesising speech with espeak-ng to {data}")
        write_speech_shards(data, num_train=args.num_speech_train, num_val=args.num_speech_val, overwrite=True)
    else:
        print(f"[asr] reusing speech in {data}")
    extra = ["--trainer.max_steps", str(args.asr_max_steps)] if args.asr_max_steps else []
    distilled = work / "distill" / "hub"
    aligned = (distilled / "text_encoder").is_dir()
    if aligned:
        # Pair the speech head with the shared text encoder: align utterance embeddings to the
        # distilled multilingual encoder (SAMU-XLSR style) instead of a random frozen one.
        extra += ["--model.init_args.init_text_from", str(distilled)]
    print(f"[asr] training ({args.asr_config}" + (f", aligned to {distilled})" if aligned else ")"))
    return _fit_eval_export("asr", args.asr_config, run_dir, data, run_asr_eval, extra)


def demo_t2i(args, work: Path, text_from: Optional[Path] = None) -> dict:
    """Scenes -> text-to-image fit (frozen multilingual text encoder) -> eval -> export -> grid."""
    data = work / "data" / "scenes"
    text_from = Path(text_from or args.t2i_text_from or work / "contrastive_distilled" / "hub")
    if not (text_from / "text_encoder").is_dir() or not (data / "train").is_dir():
        raise SystemExit(
            f"[t2i] needs the scenes in {data} and a multilingual contrastive model in {text_from} "
            "(run `babeltower demo all`, or `demo contrastive` and pass --t2i-text-from RUN/hub)"
        )
    run_dir = _fresh_run_dir(work / "t2i", args.overwrite)
    extra = ["--model.init_args.init_from", str(text_from), "--data.init_args.tokenizer", str(text_from / "tokenizer")]
    if args.t2i_max_steps:
        extra += ["--trainer.max_steps", str(args.t2i_max_steps)]
    print(f"[t2i] training the text-to-image UNet ({args.t2i_config}, text encoder from {text_from})")

    def evaluate(ckpt, _val, out_dir):
        return run_t2i_eval(ckpt, out_dir, clip=str(text_from), judge=str(work / "t2i_judge"),
                            num_scenes=args.t2i_eval_scenes, steps=20)

    result = _fit_eval_export("t2i", args.t2i_config, run_dir, data, evaluate, extra)
    result["paths"]["one_prompt_grid"] = one_prompt_grid(result["hub"], run_dir / "eval" / "one_prompt.png")
    return result


def one_prompt_grid(model, out: Path, seed: int = 0) -> Path:
    """The main job's picture: one held-out scene prompted in every language, same seed, 4 samples."""
    import torch

    from babeltower.datasets.synthetic.scenes import LANGUAGES, caption, sample_scenes
    from babeltower.eval.t2i import grid_image

    pipe = load_t2i_any(model)
    pipe.set_progress_bar_config(disable=True)
    spec = next(iter(sample_scenes(1, "val", seed)))
    prompts = [caption(spec, lang) for lang in LANGUAGES]
    rows = []
    for k in range(4):
        gens = [torch.Generator().manual_seed(seed + k) for _ in prompts]
        rows.append(pipe(prompts, num_inference_steps=25, generator=gens).images)
    grid = grid_image(rows, [f"{prompts[0]} (seed {seed + k})" for k in range(4)], LANGUAGES)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    print(f"[t2i] '{prompts[0]}' in {len(LANGUAGES)} languages: {out}")
    return out


def compare_starts(scratch: dict, distilled: dict, out_dir: Path) -> dict[str, Path]:
    """The AltCLIP-style table: per-language retrieval from scratch vs from the distilled encoder."""
    from babeltower.eval.report import bar_chart, markdown_table, write_json

    columns = ["t2i_r1_pool", "i2t_r1_pool", "t2i_r1", "zs_mean"]
    rows = {}
    for lang in scratch["report"]["per_language"]:
        a, b = scratch["report"]["per_language"][lang], distilled["report"]["per_language"].get(lang, {})
        rows[lang] = {**{f"{c} scratch": a.get(c, float("nan")) for c in columns},
                      **{f"{c} distilled": b.get(c, float("nan")) for c in columns}}
    rows["**mean**"] = {**{f"{c} scratch": scratch["report"]["mean"].get(c) for c in columns},
                        **{f"{c} distilled": distilled["report"]["mean"].get(c) for c in columns}}
    ordered = [f"{c} {k}" for c in columns for k in ("scratch", "distilled")]
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, ordered)
    (out_dir / "comparison.md").write_text(
        "# Contrastive retrieval: text encoder from scratch vs distilled start\n\n" + table + "\n"
    )
    write_json(rows, out_dir / "comparison.json")
    chart = bar_chart(
        {k: v for k, v in rows.items() if not k.startswith("**")},
        ["t2i_r1_pool scratch", "t2i_r1_pool distilled", "zs_mean scratch", "zs_mean distilled"],
        out_dir / "comparison.png",
        title="Per-language retrieval: from scratch vs distilled text encoder",
    )
    print(table)
    return {"markdown": out_dir / "comparison.md", "json": out_dir / "comparison.json", "chart": chart}


def cmd_demo(args) -> int:
    """The main job, per head or all: synthetic data -> fit -> eval -> export, printing where everything is."""
    work = Path(args.workdir)
    started = time.time()
    results: dict[str, dict] = {}
    if args.task == "contrastive":
        results["contrastive"] = demo_contrastive(args, work)
    elif args.task == "distill":
        results["distill"] = demo_distill(args, work)
    elif args.task == "asr":
        results["asr"] = demo_asr(args, work)
    elif args.task == "t2i":
        results["t2i"] = demo_t2i(args, work)
    else:  # all: stage 1 (distillation), then the contrastive head without and with it
        results["distill"] = demo_distill(args, work)
        results["contrastive"] = demo_contrastive(args, work)
        results["contrastive_distilled"] = demo_contrastive(
            args, work, init_from=str(results["distill"]["hub"]), name="contrastive_distilled", write_scenes=False
        )
        results["comparison"] = {"paths": compare_starts(results["contrastive"], results["contrastive_distilled"], work)}
        if not args.skip_t2i:
            results["t2i"] = demo_t2i(args, work, text_from=results["contrastive_distilled"]["hub"])
        if not args.skip_asr:
            results["asr"] = demo_asr(args, work)
    minutes = (time.time() - started) / 60
    print(f"\nmain job done in {minutes:.1f} min")
    for name, result in results.items():
        if "ckpt" in result:
            print(f"  {name} checkpoint : {result['ckpt']}")
            print(f"  {name} hub folder : {result['hub']}")
        for kind, path in result["paths"].items():
            print(f"  {name} report {kind:<8}: {path}")
    return 0


def build_tool_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="babeltower", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)

    data = sub.add_parser("data", help="write, synthesise and tokenise data").add_subparsers(dest="data_verb", required=True)
    write = data.add_parser("write", help="JSONL manifest or folder -> webdataset tar shards")
    write.add_argument("source", help="a .jsonl manifest ({image|audio, text, lang, ...} per line) or a folder")
    write.add_argument("out", help="output folder for the shards")
    write.add_argument("--prefix", default="shard")
    write.add_argument("--max-count", type=int, default=1000, help="samples per shard")
    write.add_argument("--max-size-mb", type=float, default=256.0, help="maximum shard size")
    write.add_argument("--overwrite", action="store_true", help="replace existing shards")

    synth = data.add_parser("synth", help="generate synthetic multilingual data")
    synth.add_argument(
        "kind", choices=["scenes", "parallel", "speech"],
        help="scenes (images), parallel (English<->other text) or speech (espeak-ng audio, incl. ko-en code-switching)",
    )
    synth.add_argument("out")
    synth.add_argument("--num-train", type=int, default=20000, help="scenes (parallel: scene specs)")
    synth.add_argument("--num-val", type=int, default=1000)
    synth.add_argument("--no-cldr", action="store_true", help="parallel: leave out the Unicode CLDR pairs")
    synth.add_argument("--image-size", type=int, default=64)
    synth.add_argument("--languages", default=None, help="comma-separated codes (default: all)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--samples-per-shard", type=int, default=1000)
    synth.add_argument("--overwrite", action="store_true")

    bitext = data.add_parser("bitext", help="user bitext (TSV or JSONL: src, tgt, lang) -> shards")
    bitext.add_argument("source")
    bitext.add_argument("out")
    bitext.add_argument("--max-count", type=int, default=5000)
    bitext.add_argument("--overwrite", action="store_true")

    tok = data.add_parser("tokenizer", help="train a multilingual byte-fallback tokenizer")
    tok.add_argument("out")
    tok.add_argument("--text", nargs="*", help="text files, one sentence a line")
    tok.add_argument("--from-scenes", action="store_true", help="add the synthetic scene caption corpus")
    tok.add_argument("--vocab-size", type=int, default=8000)
    tok.add_argument("--overwrite", action="store_true")

    ev = sub.add_parser("eval", help="evaluate a model").add_subparsers(dest="task", required=True)
    ret = ev.add_parser("retrieval", help="image<->text R@k and zero-shot accuracy per language")
    ret.add_argument("model", help="hub folder (babeltower export) or Lightning .ckpt")
    ret.add_argument("--shards", required=True, help="evaluation shards (folder, brace pattern, pipe:)")
    ret.add_argument("--out", required=True, help="report folder")
    ret.add_argument("--languages", default=None)
    ret.add_argument("--pool-size", type=int, default=20)
    ret.add_argument("--batch-size", type=int, default=128)
    ret.add_argument("--num-workers", type=int, default=0)

    bt = ev.add_parser("bitext", help="translation retrieval and student-teacher agreement per language")
    bt.add_argument("model", help="hub folder of a distilled text encoder, or a distillation .ckpt")
    bt.add_argument("--shards", required=True, help="held-out parallel-text shards")
    bt.add_argument("--out", required=True)
    bt.add_argument("--languages", default=None)

    asr = ev.add_parser("asr", help="WER/CER per language, HiKE MER/PIER per code-switching level")
    asr.add_argument("model", help="hub folder of an ASR model, or an ASR .ckpt")
    asr.add_argument("--shards", required=True)
    asr.add_argument("--out", required=True)
    asr.add_argument("--beam-size", type=int, default=1, help="1: greedy CTC decoding; >1: prefix beam search")

    t2i = ev.add_parser("t2i", help="attribute accuracy, CLIP score, CLIP-FID, cross-lingual agreement per language")
    t2i.add_argument("model", help="exported text-to-image pipeline folder, or a text-to-image .ckpt")
    t2i.add_argument("--out", required=True)
    t2i.add_argument("--clip", default=None, help="babeltower contrastive hub folder (CLIP score and CLIP-FID)")
    t2i.add_argument("--judge", default=None, help="attribute judge folder; trained and saved there if empty")
    t2i.add_argument("--languages", default=None)
    t2i.add_argument("--num-scenes", type=int, default=100)
    t2i.add_argument("--split", default="val", choices=["val", "train"],
                     help="val: held-out colour-shape combinations; train: new scenes of seen combinations")
    t2i.add_argument("--steps", type=int, default=25)
    t2i.add_argument("--guidance-scale", type=float, default=3.0)
    t2i.add_argument("--scheduler", default=None, help="dpm++, ddim or ddpm")
    t2i.add_argument("--seed", type=int, default=0)
    t2i.add_argument("--no-code-mixed", action="store_true")

    tr = sub.add_parser("transcribe", help="transcribe audio files (any rate, any channel count, wav/flac)")
    tr.add_argument("model", help="hub folder of an ASR model, or an ASR .ckpt")
    tr.add_argument("audio", nargs="+")
    tr.add_argument("--beam-size", type=int, default=1)

    gen = sub.add_parser("generate", help="text to image with a text-to-image pipeline (any language)")
    gen.add_argument("model", help="exported pipeline folder, or a text-to-image .ckpt")
    gen.add_argument("--prompt", action="append", required=True, help="a prompt; repeat for several")
    gen.add_argument("--negative-prompt", default=None)
    gen.add_argument("--num-images", type=int, default=1, help="images per prompt")
    gen.add_argument("--steps", type=int, default=25, help="denoising steps")
    gen.add_argument("--guidance-scale", type=float, default=3.0)
    gen.add_argument("--scheduler", default=None, help="dpm++, ddim or ddpm (default: the pipeline's)")
    gen.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    gen.add_argument("--save-size", type=int, default=None, help="upscale the saved PNGs to this side (nearest)")
    gen.add_argument("--attn-backend", default=None, help="sdpa, math or xformers")
    gen.add_argument("--out", required=True)
    gen.add_argument("--overwrite", action="store_true")

    exp = sub.add_parser("export", help="Lightning checkpoint -> hub folder")
    exp.add_argument("ckpt")
    exp.add_argument("out")
    exp.add_argument("--eval-report", default=None, help="JSON report to put in the model card")
    exp.add_argument("--overwrite", action="store_true")

    demo = sub.add_parser("demo", help="the main job: synthetic data, training, evaluation, export")
    demo.add_argument(
        "task", choices=["all", "contrastive", "distill", "asr", "t2i"],
        help="which head (all: distill, contrastive without and with it, text-to-image, speech)",
    )
    demo.add_argument("--skip-asr", action="store_true", help="all: leave out the speech head")
    demo.add_argument("--skip-t2i", action="store_true", help="all: leave out the text-to-image head")
    demo.add_argument("--t2i-config", default="configs/t2i/tiny.yaml")
    demo.add_argument("--t2i-text-from", default=None, help="t2i: contrastive hub folder of the text encoder")
    demo.add_argument("--t2i-max-steps", type=int, default=None)
    demo.add_argument("--t2i-eval-scenes", type=int, default=20)
    demo.add_argument("--asr-config", default="configs/tiny/asr_demo.yaml")
    demo.add_argument("--asr-max-steps", type=int, default=None)
    demo.add_argument("--num-speech-train", type=int, default=3000)
    demo.add_argument("--num-speech-val", type=int, default=400)
    demo.add_argument("--workdir", default="runs/demo")
    demo.add_argument("--config", default="configs/tiny/contrastive_demo.yaml")
    demo.add_argument("--distill-config", default="configs/tiny/distill_demo.yaml")
    demo.add_argument("--num-train", type=int, default=30000)
    demo.add_argument("--num-val", type=int, default=1000)
    demo.add_argument("--image-size", type=int, default=32, help="scene size in pixels (match the config)")
    demo.add_argument("--max-steps", type=int, default=None)
    demo.add_argument("--overwrite", action="store_true")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        build_tool_parser().print_help()
        print("\ntraining verbs (LightningCLI): babeltower {fit,validate,test,predict} --config FILE; "
              "babeltower fit --help lists every option")
        return 0
    if argv and argv[0] in TOOL_VERBS:
        args = build_tool_parser().parse_args(argv)
        handler = {
            "data": cmd_data, "eval": cmd_eval, "export": cmd_export, "demo": cmd_demo, "transcribe": cmd_transcribe,
            "generate": cmd_generate,
        }[args.verb]
        return handler(args)
    lightning_cli(None if from_command_line else argv)  # None: LightningCLI reads sys.argv itself
    return 0


if __name__ == "__main__":
    sys.exit(main())
