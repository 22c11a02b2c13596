"""A character n-gram language model and CTC prefix beam search with shallow LM fusion.

Used by the line recogniser (OCR) and usable by any CTC head whose output units are
strings: the beam search scores every character a unit adds with the LM.

* The LM is an interpolated Witten–Bell character n-gram (Witten & Bell 1991; Chen &
  Goodman 1998, eq. 16): ``P(c | h) = (C(h c) + N1+(h •) · P(c | h')) / (C(h) + N1+(h •))``
  where ``h'`` drops the oldest character of ``h``, recursing to a uniform distribution
  over the characters seen plus one unknown. It needs no held-out tuning and, unlike
  absolute discounting, stays well-defined for the tiny counts of rare scripts.
* The search is CTC prefix beam search (Hannun et al. 2014, "First-pass large vocabulary
  continuous speech recognition using bi-directional recurrent DNNs"): each prefix keeps
  the probability of its alignments ending in blank and in a token; a prefix is ranked by
  ``log P_ctc + alpha · log P_lm + beta · characters`` — the shallow fusion that
  pyctcdecode and the ESPnet/Wav2Letter decoders use. Frames whose blank probability
  exceeds ``blank_skip`` only extend existing prefixes (as pyctcdecode does), and only
  tokens with ``log p > token_min_logp`` (at most ``token_candidates``) are tried per frame.

Pure Python + torch for the frame scores; no Lightning (models layer).
"""

from __future__ import annotations

import gzip
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch

#: Start-of-line context character (never a real output character).
BOS = "\x02"
#: End-of-line character scored once when a hypothesis is complete.
EOS = "\x03"
LM_FILE = "charlm.json.gz"
FORMAT = "babeltower-char-ngram-witten-bell"


class CharNgramLM:
    """Interpolated Witten–Bell character n-gram model.

    Args:
        order: n (the longest context is n-1 characters).
        counts: ``{context: {char: count}}`` for every context length 0..n-1 (context ""
            holds the unigram counts).
    """

    def __init__(self, order: int, counts: dict[str, dict[str, int]]):
        if order < 1:
            raise ValueError(f"CharNgramLM order must be >= 1, got {order}")
        if "" not in counts or not counts[""]:
            raise ValueError("CharNgramLM counts need the unigram row (context '')")
        self.order = order
        self.counts = counts
        # per context: total count and number of distinct followers
        self._totals = {h: (sum(row.values()), len(row)) for h, row in counts.items()}
        self._uniform = 1.0 / (len(counts[""]) + 1)
        self._cache: dict[tuple[str, str], float] = {}

    # ------------------------------------------------------------------ building
    @classmethod
    def fit(cls, texts: Iterable[str], order: int = 5, min_count: int = 1) -> "CharNgramLM":
        """Counts every n-gram (n <= ``order``) of each text, with BOS padding and an EOS.

        Args:
            texts: Training lines, in the order the CTC model emits characters (for a line
                recogniser: visual order).
            order: n.
            min_count: contexts of length >= 2 seen fewer times are dropped (pruning; the
                model backs off to the shorter context).
        """
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        lines = 0
        for text in texts:
            lines += 1
            padded = BOS * (order - 1) + text + EOS
            for i in range(order - 1, len(padded)):
                ch = padded[i]
                for n in range(order):  # context length n
                    counts[padded[i - n : i]][ch] += 1
        if not lines:
            raise ValueError("CharNgramLM.fit got no texts")
        if min_count > 1:
            for h in [h for h in counts if len(h) >= 2]:
                if sum(counts[h].values()) < min_count:
                    del counts[h]
        return cls(order, {h: dict(row) for h, row in counts.items()})

    # ------------------------------------------------------------------ scoring
    def prob(self, context: str, ch: str) -> float:
        """P(ch | the last order-1 characters of ``context``)."""
        h = context[-(self.order - 1):] if self.order > 1 else ""
        key = (h, ch)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        p = self._uniform
        for n in range(0, len(h) + 1):  # shortest context first, interpolating upwards
            hn = h[len(h) - n:] if n else ""
            stats = self._totals.get(hn)
            if stats is None:
                break  # a longer context cannot have been seen either
            total, distinct = stats
            p = (self.counts[hn].get(ch, 0) + distinct * p) / (total + distinct)
        if len(self._cache) > 2_000_000:
            self._cache.clear()
        self._cache[key] = p
        return p

    def logprob(self, context: str, ch: str) -> float:
        return math.log(self.prob(context, ch))

    def score(self, text: str, eos: bool = True) -> float:
        """log P(text) from the start of a line (with the end-of-line term if ``eos``)."""
        context = BOS * (self.order - 1)
        total = 0.0
        for ch in text + (EOS if eos else ""):
            total += self.logprob(context, ch)
            context = (context + ch)[-(self.order - 1):] if self.order > 1 else ""
        return total

    def perplexity(self, texts: Iterable[str]) -> float:
        """Per-character perplexity (EOS included) over ``texts``."""
        log_total, chars = 0.0, 0
        for text in texts:
            log_total += self.score(text)
            chars += len(text) + 1
        return math.exp(-log_total / max(chars, 1))

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path, fusion: Optional[dict] = None) -> Path:
        """Writes gzip-compressed JSON (``{"format", "order", "fusion", "counts"}``).

        ``fusion``: the decoder settings to use with this LM (``alpha``, ``beta``, ``beam_size``).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": FORMAT, "order": self.order, "fusion": dict(fusion or {}), "counts": self.counts}
        with gzip.open(path, "wt", encoding="utf-8") as f:
            json.dump(payload, f, ensure_ascii=False, separators=(",", ":"))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CharNgramLM":
        return cls.load_with_fusion(path)[0]

    @classmethod
    def load_with_fusion(cls, path: str | Path) -> tuple["CharNgramLM", dict]:
        """The LM and the decoder settings saved with it."""
        path = Path(path)
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                payload = json.load(f)
        except (OSError, json.JSONDecodeError, EOFError) as error:
            raise ValueError(f"{path}: not a babeltower character LM (gzip JSON written by CharNgramLM.save): {error}") from error
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise ValueError(f"{path}: format {found!r}, expected {FORMAT!r}")
        fusion = payload.get("fusion") or {}
        unknown = sorted(set(fusion) - {"alpha", "beta", "beam_size"})
        if unknown:
            raise ValueError(f"{path}: unknown fusion settings {unknown}; known: alpha, beta, beam_size")
        return cls(int(payload["order"]), payload["counts"]), fusion


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def ctc_beam_search_lm(
    log_probs: torch.Tensor,
    lengths: Optional[torch.Tensor],
    units: Sequence[str],
    blank: int,
    lm: Optional[CharNgramLM] = None,
    *,
    alpha: float = 0.5,
    beta: float = 0.0,
    beam_size: int = 8,
    token_candidates: int = 8,
    token_min_logp: float = -8.0,
    blank_skip: float = 0.999,
) -> list[list[int]]:
    """CTC prefix beam search with a character LM fused into the prefix scores.

    Args:
        log_probs: (B, T, C) log-probabilities.
        lengths: (B,) valid frames, or None for all.
        units: the string each class id stands for (the blank's entry is ignored).
        blank: blank class index.
        lm: the character LM; None gives plain prefix beam search.
        alpha: LM weight; beta: bonus per emitted character (counters the LM's bias to
            short outputs).
        beam_size: prefixes kept after each frame.
        token_candidates / token_min_logp: tokens tried per frame (most likely first).
        blank_skip: frames whose blank probability exceeds this only carry prefixes on.

    Returns:
        The best id sequence per line (the end-of-line LM term included in the final ranking).
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    scores = log_probs.detach().float().cpu()
    k = min(scores.shape[-1], token_candidates + 1)
    top_lp, top_ids = scores.topk(k, dim=-1)
    all_lengths = [scores.shape[1]] * scores.shape[0] if lengths is None else lengths.tolist()
    blank_cut = math.log(blank_skip) if blank_skip < 1.0 else math.inf
    context_len = (lm.order - 1) if lm is not None else 0
    neg_inf = -math.inf

    def lm_step(context: str, unit: str) -> tuple[float, str]:
        if lm is None:
            return beta * len(unit), ""
        total = 0.0
        for ch in unit:
            total += alpha * lm.logprob(context, ch) + beta
            context = (context + ch)[-context_len:] if context_len else ""
        return total, context

    results = []
    for b, length in enumerate(all_lengths):
        frame_lp = scores[b, :length]
        blank_lp = frame_lp[:, blank].tolist()
        cand_lp, cand_ids = top_lp[b, :length].tolist(), top_ids[b, :length].tolist()
        start_context = BOS * context_len
        # prefix -> [p_blank, p_token, lm_score, lm_context]
        beams: dict[tuple[int, ...], list] = {(): [0.0, neg_inf, 0.0, start_context]}
        for t in range(length):
            lb = blank_lp[t]
            frame = frame_lp[t]
            skip = lb > blank_cut
            candidates = [] if skip else [(c, p) for c, p in zip(cand_ids[t], cand_lp[t])
                                          if c != blank and p > token_min_logp]
            nxt: dict[tuple[int, ...], list] = {}
            for prefix, (p_b, p_nb, lm_score, context) in beams.items():
                total = _logaddexp(p_b, p_nb)
                e = nxt.get(prefix)
                if e is None:
                    e = nxt[prefix] = [neg_inf, neg_inf, lm_score, context]
                e[0] = _logaddexp(e[0], total + lb)
                last = prefix[-1] if prefix else None
                if last is not None:  # the last token repeated without a blank collapses into the prefix
                    e[1] = _logaddexp(e[1], p_nb + float(frame[last]))
                for c, p in candidates:
                    grown_key = prefix + (c,)
                    grown = nxt.get(grown_key)
                    if grown is None:
                        step, new_context = lm_step(context, units[c])
                        grown = nxt[grown_key] = [neg_inf, neg_inf, lm_score + step, new_context]
                    source = p_b if c == last else total  # a repeat needs a blank in between
                    grown[1] = _logaddexp(grown[1], source + p)
            if len(nxt) > beam_size:
                ranked = sorted(nxt.items(), key=lambda item: _logaddexp(item[1][0], item[1][1]) + item[1][2],
                                reverse=True)[:beam_size]
                beams = dict(ranked)
            else:
                beams = nxt

        def final(item) -> float:
            prefix, (p_b, p_nb, lm_score, context) = item
            end = alpha * lm.logprob(context, EOS) if lm is not None else 0.0
            return _logaddexp(p_b, p_nb) + lm_score + end

        results.append(list(max(beams.items(), key=final)[0]))
    return results


class LMFusion:
    """Mixin for a CTC model: an optional character LM fused into its beam search.

    The LM is not a weight: it is saved next to the weights (``charlm.json.gz``, with the
    fusion settings) and attached when a folder that holds one is loaded.
    """

    #: Fusion settings used when :meth:`attach_lm` is not told otherwise.
    LM_DEFAULTS: dict = {"alpha": 0.3, "beta": 1.2, "beam_size": 8}
    lm: Optional[CharNgramLM] = None
    lm_fusion: dict = {}

    def attach_lm(self, lm: Optional[CharNgramLM], **fusion) -> None:
        """Decodes with CTC prefix beam search + ``lm`` from now on; ``lm=None`` returns to
        the model's plain decoding. ``fusion``: ``alpha`` (LM weight), ``beta`` (bonus per
        character), ``beam_size``; the rest come from ``LM_DEFAULTS``."""
        unknown = sorted(set(fusion) - set(self.LM_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown LM fusion settings {unknown}; known: {sorted(self.LM_DEFAULTS)}")
        settings = {**self.LM_DEFAULTS, **fusion}
        self.lm = lm
        self.lm_fusion = ({"alpha": float(settings["alpha"]), "beta": float(settings["beta"]),
                           "beam_size": int(settings["beam_size"])} if lm is not None else {})

    def lm_description(self) -> str:
        f = self.lm_fusion
        return (f"CTC prefix beam search (beam {f['beam_size']}) + character {self.lm.order}-gram LM "
                f"(alpha {f['alpha']}, beta {f['beta']})")

    def lm_decode(self, log_probs: torch.Tensor, lengths: Optional[torch.Tensor], units: Sequence[str],
                  blank: int, beam_size: Optional[int] = None) -> list[list[int]]:
        """Best id sequences under CTC + the attached LM (``beam_size`` overrides the saved one)."""
        fusion = dict(self.lm_fusion)
        if beam_size is not None and beam_size > 1:
            fusion["beam_size"] = beam_size
        return ctc_beam_search_lm(log_probs, lengths, units, blank, self.lm, **fusion)

    def save_lm(self, folder: str | Path) -> None:
        if self.lm is not None:
            self.lm.save(Path(folder) / LM_FILE, fusion=self.lm_fusion)

    def load_lm(self, folder: str | Path) -> None:
        """Attaches ``folder/charlm.json.gz`` with its saved fusion settings, if the folder has one."""
        path = Path(folder) / LM_FILE
        if path.is_file():
            lm, fusion = CharNgramLM.load_with_fusion(path)
            self.attach_lm(lm, **fusion)
