"""ASR: training throughput (audio seconds per wall second) and CPU transcription real-time factor.

babeltower side by side with a peer built from torchaudio, same sizes, same data:

- babeltower: ``ASRSystem`` with the model, text encoder and alignment weight of
  ``configs/tiny/asr_demo.yaml`` (Conformer-CTC, d_model 96, 4 layers, 4 heads, FFN 384,
  depthwise kernel 15, conv1d subsampling; CTC over the shared tokenizer + 0.1 x the
  SAMU-XLSR alignment loss to a frozen 3-layer text encoder), trained by
  ``lightning.Trainer.fit`` (AdamW + warm-up/cosine schedule, gradient clipping 5.0 as
  in the config; logging, checkpointing and progress bar off). Transcription is
  ``ASRModel.transcribe`` (what ``babeltower transcribe`` calls): log-mel +
  normalisation, the model, greedy CTC decoding, detokenisation.
- peer: the same log-mel front end (``torchaudio.transforms.MelSpectrogram`` with the
  same settings, log, per-utterance normalisation) and SpecAugment
  (``torchaudio.transforms.FrequencyMasking``/``TimeMasking``, 2 + 2 masks), the same
  two stride-2 Conv1d subsampling layers and sinusoidal positions, then
  ``torchaudio.models.Conformer`` (same width, heads, FFN, layers, kernel, dropout) and a
  linear CTC head over the same vocabulary + blank; a plain PyTorch loop with
  ``F.ctc_loss``, AdamW with the same hyper-parameters and gradient clipping.
  Transcription: features, forward, argmax, collapse repeats and blanks, detokenise.

The peer has no alignment loss (torchaudio has none); ``--ctc-only`` adds a babeltower
row with ``align_weight: 0`` for a like-for-like comparison of the CTC path.

Data: the first ``--batches`` training batches of ``--shards`` (default: the demo's
espeak-ng shards) as ``SpeechDataModule`` builds them, decoded once before timing and
cycled; the same batches for both sides. ``--bucket-buffer`` builds them with duration
bucketing. Transcription uses the clips of those batches, one by one (batch 1) and in
groups of 8 (padded), with untrained weights on both sides (compute does not depend on
the weights; output lengths barely do).

Each side runs ``--repeats`` times, alternating which goes first; medians are reported.
Ratios > 1 mean babeltower is faster (training: babeltower / peer audio-s/s;
transcription: peer RTF / babeltower RTF, since a lower real-time factor is better).

    python benchmarks/bench_asr.py --shards /tmp/speech/train [--steps 20] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "configs" / "tiny" / "asr_demo.yaml"
WARMUP_STEPS = 5  # untimed: first-iteration allocations, autograd graph set-up


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


# --- data --------------------------------------------------------------------------------


def load_batches(shards: str, batches: int, batch_size: int, bucket_buffer: int, tokenizer) -> list[dict]:
    """The first ``batches`` training batches of the shards, as SpeechDataModule yields them."""
    from babeltower.datasets.speech import SpeechDataModule

    data = SpeechDataModule(
        train_shards=shards, batch_size=batch_size, samples_per_epoch=batches * batch_size,
        bucket_buffer=bucket_buffer, seed=0,
    )
    data.tokenizer = tokenizer
    data.setup("fit")
    return list(data.train_dataloader())


def audio_seconds(batch: dict, rate: int = 16000) -> float:
    return float(batch["audio_lengths"].sum()) / rate


def padding_fraction(batches: list[dict]) -> float:
    valid = sum(int(b["audio_lengths"].sum()) for b in batches)
    return 1.0 - valid / sum(b["waveforms"].numel() for b in batches)


# --- babeltower --------------------------------------------------------------------------


def demo_system_args(align_weight: float | None = None) -> tuple[dict, float]:
    """ASRSystem arguments from configs/tiny/asr_demo.yaml (model + optimisation), and its clip value."""
    import yaml

    from babeltower.models.asr import ASRConfig
    from babeltower.models.text_encoder import TextEncoderConfig

    config = yaml.safe_load(DEMO_CONFIG.read_text())
    args = dict(config["model"]["init_args"])
    # Like for like with the peer: its subsampling is two stride-2 convolutions (4x) and it
    # reads the shared tokenizer, so the demo's character units (a tokenizer folder the
    # demo writes next to its data) and 3x reduction are replaced by those here.
    args["asr"] = ASRConfig(**{**args["asr"], "tokenizer": None, "vocab_size": 0, "time_reduction": 4})
    args["text"] = TextEncoderConfig(**args["text"])
    if align_weight is not None:
        args["align_weight"] = align_weight
        if align_weight == 0:
            args["text"] = None
    return args, float(config["trainer"].get("gradient_clip_val") or 0.0)


def bench_babeltower_train(batches: list[dict], steps: int, align_weight: float | None = None) -> dict:
    import lightning as L

    from babeltower.train.asr import ASRSystem

    torch.manual_seed(0)
    args, clip = demo_system_args(align_weight)
    system = ASRSystem(**args)

    class Cycle(torch.utils.data.IterableDataset):
        def __iter__(self):
            for i in range(steps):
                yield batches[i % len(batches)]

    timed = {"audio": 0.0, "samples": 0}

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, idx):
            if idx == WARMUP_STEPS:
                timed["start"] = time.perf_counter()
            if idx >= WARMUP_STEPS:
                timed["audio"] += audio_seconds(batch)
                timed["samples"] += batch["waveforms"].shape[0]

        def on_train_end(self, trainer, module):
            timed["end"] = time.perf_counter()

    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision="32-true", max_steps=steps, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        gradient_clip_val=clip or None, callbacks=[Timer()],
    )
    trainer.fit(system, train_dataloaders=torch.utils.data.DataLoader(Cycle(), batch_size=None))
    elapsed = timed["end"] - timed["start"]
    return {"samples_per_s": timed["samples"] / elapsed, "audio_s_per_s": timed["audio"] / elapsed,
            "model": system.model.eval()}


# --- peer (torchaudio) -------------------------------------------------------------------


def sinusoids(length: int, dim: int) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32)[:, None]  # (T, 1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)
    return table  # (T, dim)


class PeerFrontEnd(nn.Module):
    """Log-mel (torchaudio) + per-utterance normalisation over valid frames, + SpecAugment in training."""

    def __init__(self, n_mels: int = 80, rate: int = 16000):
        super().__init__()
        import torchaudio

        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=rate, n_fft=400, win_length=400, hop_length=160, n_mels=n_mels, power=2.0,
            center=True, pad_mode="reflect", norm="slaney", mel_scale="slaney",
        )
        self.freq_masks = nn.ModuleList(torchaudio.transforms.FrequencyMasking(27, iid_masks=True) for _ in range(2))
        # TimeMasking caps a mask at p x the padded length (babeltower: 5 % of each clip's own length).
        self.time_masks = nn.ModuleList(torchaudio.transforms.TimeMasking(1000, iid_masks=True, p=0.05) for _ in range(2))

    def forward(self, waveforms: torch.Tensor, audio_lengths: torch.Tensor):
        features = torch.log(self.mel(waveforms).clamp(min=1e-10))  # (B, F, T)
        lengths = audio_lengths // 160 + 1  # (B,)
        valid = (torch.arange(features.shape[-1])[None, :] < lengths[:, None])[:, None, :]  # (B, 1, T)
        count = (lengths * features.shape[1]).clamp(min=1)[:, None, None]
        mean = (features * valid).sum(dim=(1, 2), keepdim=True) / count
        std = (((features - mean).square() * valid).sum(dim=(1, 2), keepdim=True) / count).sqrt()
        features = ((features - mean) / (std + 1e-5)).masked_fill(~valid, 0.0)
        if self.training:
            spec = features[:, None]  # (B, 1, F, T): iid_masks needs 4-D input
            for mask in (*self.freq_masks, *self.time_masks):
                spec = mask(spec)
            features = spec[:, 0]
        return features, lengths


class PeerASR(nn.Module):
    """Conv1d subsampling (4x) + torchaudio Conformer + linear CTC head (blank last)."""

    def __init__(self, vocab: int, d_model: int, heads: int, ffn: int, layers: int, kernel: int, dropout: float):
        super().__init__()
        from torchaudio.models import Conformer

        self.conv1 = nn.Conv1d(80, d_model, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.conformer = Conformer(
            input_dim=d_model, num_heads=heads, ffn_dim=ffn, num_layers=layers,
            depthwise_conv_kernel_size=kernel, dropout=dropout,
        )
        self.ctc_head = nn.Linear(d_model, vocab + 1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor):
        x = self.conv2(F.gelu(self.conv1(features)))  # (B, d, T/4)
        x = F.gelu(x).transpose(1, 2)  # (B, T', d)
        lengths = ((lengths - 1) // 2 + 1 - 1) // 2 + 1
        x = self.dropout(x + sinusoids(x.shape[1], x.shape[2]))
        x, lengths = self.conformer(x, lengths)
        return F.log_softmax(self.ctc_head(x), dim=-1), lengths  # (B, T', V+1)


def build_peer(vocab: int) -> PeerASR:
    args, _ = demo_system_args()
    asr = args["asr"]
    return PeerASR(vocab, asr.d_model, asr.num_heads, asr.ff_mult * asr.d_model, asr.num_layers, asr.conv_kernel,
                   asr.dropout)


def bench_peer_train(batches: list[dict], steps: int, vocab: int) -> dict:
    torch.manual_seed(0)
    args, clip = demo_system_args()
    front, model = PeerFrontEnd().train(), build_peer(vocab).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args["learning_rate"], weight_decay=1e-2, betas=(0.9, 0.98),
                                  eps=1e-6)
    audio = samples = 0.0
    for step in range(steps):
        if step == WARMUP_STEPS:
            start = time.perf_counter()
        batch = batches[step % len(batches)]
        if step >= WARMUP_STEPS:
            audio += audio_seconds(batch)
            samples += batch["waveforms"].shape[0]
        features, lengths = front(batch["waveforms"], batch["audio_lengths"])
        log_probs, out_lengths = model(features, lengths)
        loss = F.ctc_loss(log_probs.transpose(0, 1), batch["labels"].clamp(min=0), out_lengths, batch["label_lengths"],
                          blank=vocab, reduction="mean", zero_infinity=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
    elapsed = time.perf_counter() - start
    return {"samples_per_s": samples / elapsed, "audio_s_per_s": audio / elapsed, "model": model.eval(),
            "front": front.eval()}


@torch.no_grad()
def peer_transcribe(front, model, tokenizer, waveforms, audio_lengths, blank: int) -> list[str]:
    features, lengths = front(waveforms, audio_lengths)
    log_probs, out_lengths = model(features, lengths)
    texts = []
    for row, length in zip(log_probs.argmax(dim=-1).tolist(), out_lengths.tolist()):
        tokens, previous = [], None
        for token in row[:length]:
            if token != previous and token != blank:
                tokens.append(token)
            previous = token
        texts.append(tokenizer.decode(tokens, skip_special_tokens=True))
    return texts


# --- transcription real-time factor --------------------------------------------------------


def clip_groups(batches: list[dict], group: int, max_clips: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Clips of the batches (trimmed to their length) regrouped into padded batches of ``group``."""
    clips = [b["waveforms"][i, : int(b["audio_lengths"][i])] for b in batches for i in range(len(b["audio_lengths"]))]
    clips = clips[:max_clips]
    groups = []
    for start in range(0, len(clips), group):
        part = clips[start : start + group]
        lengths = torch.tensor([c.numel() for c in part])
        waves = torch.zeros(len(part), int(lengths.max()))
        for row, clip in enumerate(part):
            waves[row, : clip.numel()] = clip
        groups.append((waves, lengths))
    return groups


def real_time_factor(transcribe, groups) -> float:
    """Compute seconds / audio seconds over all groups, after one untimed call."""
    transcribe(*groups[0])
    start = time.perf_counter()
    for waves, lengths in groups:
        transcribe(waves, lengths)
    return (time.perf_counter() - start) / (sum(float(lengths.sum()) for _, lengths in groups) / 16000)


# --- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default=str(REPO / "runs" / "demo" / "data" / "speech" / "train"),
                        help="speech training shards (babeltower data synth speech OUT writes them)")
    parser.add_argument("--steps", type=int, default=20, help=f"training steps per run, the first {WARMUP_STEPS} untimed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8, help="distinct pre-built batches, cycled")
    parser.add_argument("--bucket-buffer", type=int, default=0, help="SpeechDataModule.bucket_buffer for the batches")
    parser.add_argument("--rtf-clips", type=int, default=48, help="clips transcribed per RTF measurement")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side (median reported), order alternating")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--ctc-only", action="store_true", help="also train babeltower with align_weight 0")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()
    if args.steps <= WARMUP_STEPS:
        parser.error(f"--steps must exceed the {WARMUP_STEPS} warm-up steps")
    if not Path(args.shards).exists():
        parser.error(f"--shards {args.shards} does not exist; write shards with "
                     "`babeltower data synth speech /tmp/speech --num-train 6000 --num-val 400`")
    torch.set_num_threads(args.threads)

    from babeltower.modalities.text import load_tokenizer_or_default

    tokenizer = load_tokenizer_or_default(None)
    vocab = len(tokenizer)
    batches = load_batches(args.shards, args.batches, args.batch_size, args.bucket_buffer, tokenizer)
    seconds = [float(b["audio_lengths"][i]) / 16000 for b in batches for i in range(len(b["audio_lengths"]))]

    sides = {"babeltower": lambda: bench_babeltower_train(batches, args.steps),
             "peer": lambda: bench_peer_train(batches, args.steps, vocab)}
    if args.ctc_only:
        sides["babeltower_ctc_only"] = lambda: bench_babeltower_train(batches, args.steps, align_weight=0.0)
    train: dict[str, list[dict]] = {name: [] for name in sides}
    rtf: dict[tuple[str, int], list[float]] = {}
    for repeat in range(args.repeats):
        order = list(sides) if repeat % 2 == 0 else list(reversed(sides))  # warm caches favour neither
        for name in order:
            train[name].append(sides[name]())
        ours, peer = train["babeltower"][-1]["model"], train["peer"][-1]
        for group in (1, 8):
            groups = clip_groups(batches, group, args.rtf_clips)
            runs = {
                "babeltower": lambda w, n: ours.transcribe(w, n),
                "peer": lambda w, n: peer_transcribe(peer["front"], peer["model"], tokenizer, w, n, vocab),
            }
            for name in [side for side in order if side in runs]:
                rtf.setdefault((name, group), []).append(real_time_factor(runs[name], groups))

    def med(name, key):
        return median([r[key] for r in train[name]])

    def runs(name, key):
        return ", ".join(f"{r[key]:.1f}" for r in train[name])

    n_ours = sum(p.numel() for p in train["babeltower"][0]["model"].parameters())
    n_peer = sum(p.numel() for p in train["peer"][0]["model"].parameters())
    lines = [
        f"batches: {len(batches)} x {args.batch_size} clips, {min(seconds):.2f}-{max(seconds):.2f} s "
        f"(mean {sum(seconds) / len(seconds):.2f} s), padding {100 * padding_fraction(batches):.1f} %, "
        f"bucket_buffer {args.bucket_buffer}; {args.steps} steps ({args.steps - WARMUP_STEPS} timed); "
        f"{torch.get_num_threads()} threads; parameters: babeltower ASR {n_ours / 1e6:.2f} M, peer {n_peer / 1e6:.2f} M",
        "",
        "| measurement | babeltower | torchaudio peer | ratio |",
        "|---|---|---|---|",
    ]
    for key, label in (("samples_per_s", "samples/s"), ("audio_s_per_s", "audio-s/s")):
        lines.append(f"| training {label} | {med('babeltower', key):.1f} ({runs('babeltower', key)}) | "
                     f"{med('peer', key):.1f} ({runs('peer', key)}) | **{med('babeltower', key) / med('peer', key):.2f}** |")
    if args.ctc_only:
        key = "audio_s_per_s"
        lines.append(f"| training audio-s/s, babeltower CTC only (align_weight 0) | {med('babeltower_ctc_only', key):.1f} "
                     f"({runs('babeltower_ctc_only', key)}) | {med('peer', key):.1f} | "
                     f"**{med('babeltower_ctc_only', key) / med('peer', key):.2f}** |")
    for group in (1, 8):
        ours_rtf, peer_rtf = median(rtf[("babeltower", group)]), median(rtf[("peer", group)])
        lines.append(f"| transcription RTF, batch {group} | {ours_rtf:.4f} "
                     f"({', '.join(f'{x:.4f}' for x in rtf[('babeltower', group)])}) | {peer_rtf:.4f} "
                     f"({', '.join(f'{x:.4f}' for x in rtf[('peer', group)])}) | **{peer_rtf / ours_rtf:.2f}** |")
    print("\n".join(lines))
    if args.json:
        result = {
            "train": {name: [{k: v for k, v in r.items() if k not in ("model", "front")} for r in runs_]
                      for name, runs_ in train.items()},
            "rtf": {f"{name}_batch{group}": values for (name, group), values in rtf.items()},
            "padding_fraction": padding_fraction(batches), "threads": torch.get_num_threads(), "args": vars(args),
        }
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
