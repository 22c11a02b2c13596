"""One attention function for every model babeltower defines.

The backend is chosen per call from a config field (``attn_backend``), never from
global state:

- ``"sdpa"`` (default): :func:`torch.nn.functional.scaled_dot_product_attention`,
  which picks flash / memory-efficient / math kernels itself.
- ``"math"``: the textbook softmax(QK^T / sqrt(d) + mask) V, written out here. It is
  the reference the other backends are tested against.
- ``"xformers"``: ``xformers.ops.memory_efficient_attention``. Only accepted where
  its compiled kernels really run (probed once with a tiny CUDA call); otherwise a
  clear error says why. ``import xformers.ops`` succeeding is not enough: wheels built
  for another CUDA/torch import fine and fail on the first call.

Masks follow torch SDPA's convention: a boolean mask is True where attention is
*allowed*; a float mask is added to the scores. Both broadcast to (B, nh, T, S).
"""

from __future__ import annotations

import functools
import math
from typing import Literal, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

AttentionBackend = Literal["sdpa", "math", "xformers"]
ATTENTION_BACKENDS: tuple[str, ...] = ("sdpa", "math", "xformers")


def padding_mask_to_attention_mask(padding_mask: torch.Tensor) -> torch.Tensor:
    """Turns a (B, S) key padding mask (1/True = real token) into a (B, 1, 1, S) bool mask."""
    return padding_mask.bool()[:, None, None, :]


@functools.lru_cache(maxsize=None)
def xformers_unavailable_reason(device_type: str) -> Optional[str]:
    """Returns why xformers kernels cannot run on ``device_type``, or None if they can.

    The probe is a real 1x1x1x8 attention call, cached per device type.
    """
    # Device first: on CPU xformers cannot help whether or not it is installed.
    if device_type != "cuda":
        return f"xformers kernels need CUDA tensors; these are on '{device_type}'. Use attn_backend: sdpa"
    try:
        import xformers.ops as xops  # noqa: F401
    except Exception as error:  # ImportError, or a broken build raising anything
        return (
            f"`import xformers.ops` failed ({error!r}); install the extra: pip install 'babeltower[xformers]', "
            "or use attn_backend: sdpa"
        )
    if not torch.cuda.is_available():
        return "xformers needs a CUDA device and none is available. Use attn_backend: sdpa"
    try:
        q = torch.zeros(1, 8, 1, 8, device="cuda", dtype=torch.float16)
        xops.memory_efficient_attention(q, q, q)
    except Exception as error:
        return (
            f"xformers is installed but its kernels do not run here ({type(error).__name__}: {error}); "
            "its wheel was probably built for another CUDA/torch. Use attn_backend: sdpa"
        )
    return None


def check_backend(backend: str, device_type: str = "cpu") -> None:
    """Raises a ValueError/RuntimeError naming the field if ``backend`` cannot run on ``device_type``."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attn_backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
    if backend == "xformers":
        reason = xformers_unavailable_reason(device_type)
        if reason is not None:
            raise RuntimeError(f"attn_backend='xformers' cannot be used: {reason}")


def _math_attention(q, k, v, mask, is_causal, dropout_p, scale):
    # q: (B, nh, T, hs), k/v: (B, nh, S, hs)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)).float() * scale  # (B, nh, T, S)
    if is_causal:
        t, s = q.shape[-2], k.shape[-2]
        causal = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(diagonal=s - t)
        scores = scores.masked_fill(~causal, float("-inf"))
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.float()
    probs = torch.softmax(scores, dim=-1)
    # A query row with every key masked gives NaN in softmax; SDPA returns zeros there too
    # only on some kernels, so make it explicit: such rows attend to nothing.
    probs = torch.nan_to_num(probs, nan=0.0)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    return torch.matmul(probs.to(v.dtype), v)  # (B, nh, T, hs)


def _sdpa_attention(q, k, v, mask, is_causal, dropout_p, scale):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale)


def _xformers_attention(q, k, v, mask, is_causal, dropout_p, scale):
    import xformers.ops as xops

    # xformers wants (B, T, nh, hs)
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    bias = None
    if is_causal:
        # attention() folds causality into `mask` when there is one or when T != S, so here
        # T == S and top-left and bottom-right alignment agree.
        bias = xops.LowerTriangularMask()
    elif mask is not None:
        b, nh, t, s = q.shape[0], q.shape[2], q.shape[1], k.shape[1]
        if mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, float("-inf"))
        # xformers needs a materialised bias whose last dim is 8-aligned in memory.
        padded_s = (s + 7) // 8 * 8
        full = torch.zeros(b, nh, t, padded_s, dtype=q.dtype, device=q.device)
        full[..., :s] = mask.to(q.dtype).expand(b, nh, t, s)
        bias = full[..., :s]
    out = xops.memory_efficient_attention(q, k, v, attn_bias=bias, p=dropout_p, scale=scale)
    return out.transpose(1, 2)


def _fold_causal(mask: Optional[torch.Tensor], t: int, s: int, device: torch.device) -> torch.Tensor:
    """Combines a bottom-right-aligned (T, S) causal mask with ``mask`` (bool or additive)."""
    causal = torch.ones(t, s, dtype=torch.bool, device=device).tril(diagonal=s - t)
    if mask is None:
        return causal
    return (mask & causal) if mask.dtype == torch.bool else mask.masked_fill(~causal, float("-inf"))


def _allow_empty_rows(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (mask with fully-masked query rows opened up, those rows as a (..., T, 1) bool).

    A query row with no allowed key gives NaN in SDPA's kernels; the math backend defines
    its output as zeros. Opening the row and zeroing its output afterwards matches that
    without a data-dependent branch (no host-device sync, no torch.compile graph break).
    """
    if mask.dtype == torch.bool:
        empty_rows = ~mask.any(dim=-1, keepdim=True)
        return mask | empty_rows, empty_rows
    empty_rows = torch.isneginf(mask).all(dim=-1, keepdim=True)
    return mask.masked_fill(empty_rows, 0.0), empty_rows


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
    backend: str = "sdpa",
) -> torch.Tensor:
    """Multi-head attention over (B, nh, T, hs) queries and (B, nh, S, hs) keys/values.

    Args:
        q: queries, (B, nh, T, hs).
        k: keys, (B, nh, S, hs).
        v: values, (B, nh, S, hs).
        mask: bool (True = attend) or additive float mask broadcastable to (B, nh, T, S).
        is_causal: apply a causal mask (aligned to the bottom-right when T != S).
        dropout_p: attention dropout probability (pass 0.0 in eval mode).
        scale: score scale; defaults to 1/sqrt(hs).
        backend: "sdpa", "math" or "xformers".

    Returns:
        (B, nh, T, hs) attention output.
    """
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attn_backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
    if backend == "xformers":
        check_backend("xformers", q.device.type)
    t, s = q.shape[-2], k.shape[-2]
    if is_causal and (mask is not None or t != s) and backend != "math":
        # SDPA rejects a mask together with is_causal, and SDPA / xformers align a T != S
        # causal mask top-left; fold the bottom-right causal mask into an explicit mask.
        mask, is_causal = _fold_causal(mask, t, s, q.device), False
    if backend in ("sdpa", "xformers") and mask is not None:
        mask, empty_rows = _allow_empty_rows(mask)
        fn = _sdpa_attention if backend == "sdpa" else _xformers_attention
        return fn(q, k, v, mask, is_causal, dropout_p, scale).masked_fill(empty_rows, 0.0)
    if backend == "sdpa":
        return _sdpa_attention(q, k, v, mask, is_causal, dropout_p, scale)
    if backend == "xformers":
        return _xformers_attention(q, k, v, mask, is_causal, dropout_p, scale)
    return _math_attention(q, k, v, mask, is_causal, dropout_p, scale)


class MultiheadSelfAttention(nn.Module):
    """Drop-in for ``nn.MultiheadAttention(batch_first=True)`` that runs :func:`attention`.

    Parameter names (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) match
    ``nn.MultiheadAttention`` so open_clip / OpenAI CLIP state dicts load unchanged.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, backend: str = "sdpa"):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"width {embed_dim} is not divisible by heads {num_heads}")
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attn_backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
        self.embed_dim, self.num_heads, self.dropout, self.backend = embed_dim, num_heads, dropout, backend
        self.batch_first = True
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query, key=None, value=None, need_weights=False, attn_mask=None, key_padding_mask=None):
        """Self-attention over ``query`` (B, T, C); returns ``(output, None)`` like nn.MultiheadAttention."""
        if need_weights:
            raise ValueError("MultiheadSelfAttention does not return attention weights")
        x = query
        b, t, c = x.shape
        nh = self.num_heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).split(c, dim=-1)
        q, k, v = (z.view(b, t, nh, c // nh).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
        mask = None
        if attn_mask is not None:
            # nn.MultiheadAttention: bool True = *disallowed*; float = additive.
            mask = ~attn_mask if attn_mask.dtype == torch.bool else attn_mask
        if key_padding_mask is not None:
            allowed = ~key_padding_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
            if mask is None:
                mask = allowed
            elif mask.dtype == torch.bool:
                mask = mask & allowed
            else:
                mask = mask.masked_fill(~allowed, float("-inf"))
        y = attention(q, k, v, mask, dropout_p=self.dropout if self.training else 0.0, backend=self.backend)
        y = y.transpose(1, 2).reshape(b, t, c)  # (B, T, C)
        return self.out_proj(y), None
