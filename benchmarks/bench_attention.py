"""Attention backends side by side: ``sdpa`` vs ``xformers`` vs ``math``, forward + backward.

Every call goes through :func:`babeltower.models.attention.attention`, the function all
heads use, so the times include what the heads pay around the kernel (the empty-row
guard of a padding mask, xformers' materialised bias). Shapes are ``BxHxSxD`` (batch,
heads, sequence, head size; self-attention, T = S); the defaults are the heads' own:

- ``64x4x65x16``: the tiny ViT of the demo configs (32 px, patch 4 -> 64 patches + CLS,
  width 64, 4 heads) at batch 64;
- ``32x8x256x64``: a text encoder / fusion block of width 512 on 256 tokens;
- ``8x16x1024x64``: a long sequence (32x32 latent of a UNet, long speech) at width 1024.

Each is timed without a mask and with a boolean key padding mask (``(B, 1, 1, S)``,
lengths drawn between S/2 and S), in each dtype, forward only and forward + backward.
CUDA times are ``torch.cuda.Event`` pairs around ``--iters`` calls after ``--warmup``
calls; CPU times are ``time.perf_counter``. A backend that cannot run (xformers on CPU,
or a build whose kernels do not run here) is reported with its reason, not skipped
silently. ``max_abs_diff`` is each backend's largest difference to the ``math`` output
on the same inputs (the parity the tests assert, at benchmark sizes).

    python benchmarks/bench_attention.py                                   # CUDA defaults
    python benchmarks/bench_attention.py --device cpu --dtypes fp32 --shapes 2x2x17x8 --iters 3 --warmup 1

It prints one markdown table (ms per call, ratio to sdpa) and, with ``--json FILE``, writes
every number.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Optional

import torch

from babeltower.models.attention import ATTENTION_BACKENDS, attention, padding_mask_to_attention_mask

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_SHAPES = "64x4x65x16,32x8x256x64,8x16x1024x64"


def parse_shapes(text: str) -> list[tuple[int, int, int, int]]:
    """``"64x4x65x16,8x16x1024x64"`` -> ``[(64, 4, 65, 16), (8, 16, 1024, 64)]`` (B, H, S, D)."""
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f"--shapes: {item!r} is not BxHxSxD with four positive integers (e.g. 64x4x65x16)")
        shapes.append(tuple(int(p) for p in parts))
    return shapes


def parse_list(text: str, allowed, flag: str) -> list[str]:
    """A comma-separated option whose every item must be one of ``allowed``."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise ValueError(f"{flag}: {bad or text!r} not in {sorted(allowed)}")
    return items


def backend_unavailable(backend: str, device: torch.device) -> Optional[str]:
    """Why ``backend`` cannot run on ``device`` (the project's own check), or None."""
    from babeltower.models.attention import check_backend

    try:
        check_backend(backend, device.type)
    except (ValueError, RuntimeError) as error:
        return str(error)
    return None


def make_inputs(shape, dtype, device, masked: bool, seed: int = 0):
    """q, k, v (B, H, S, D) needing grad, an output gradient, and the mask (or None)."""
    b, h, s, d = shape
    generator = torch.Generator().manual_seed(seed)
    q, k, v, grad = (torch.randn(b, h, s, d, generator=generator).to(device, dtype) for _ in range(4))
    for x in (q, k, v):
        x.requires_grad_(True)
    mask = None
    if masked:
        lengths = torch.randint(max(1, s // 2), s + 1, (b,), generator=generator)
        lengths[0] = s  # one full row, as in a real batch padded to its longest member
        mask = padding_mask_to_attention_mask(torch.arange(s)[None, :] < lengths[:, None]).to(device)  # (B, 1, 1, S)
    return q, k, v, grad, mask


def time_call(fn, device: torch.device, warmup: int, iters: int) -> float:
    """Milliseconds per call of ``fn`` after ``warmup`` calls (CUDA events on GPU)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) * 1000.0 / iters


def bench_case(shape, dtype_name, masked, backends, device, warmup, iters, modes) -> dict:
    """One (shape, dtype, mask) row: ms per call per backend and mode, parity to math."""
    dtype = DTYPES[dtype_name]
    q, k, v, grad, mask = make_inputs(shape, dtype, device, masked)
    row = {"shape": "x".join(map(str, shape)), "dtype": dtype_name, "mask": "padding" if masked else "none",
           "ms": {}, "max_abs_diff": {}, "errors": {}}
    with torch.no_grad():
        reference = attention(q, k, v, mask, backend="math").float()
    for backend in backends:
        reason = backend_unavailable(backend, device)
        if reason:
            row["errors"][backend] = reason
            continue
        try:
            with torch.no_grad():
                out = attention(q, k, v, mask, backend=backend)
            row["max_abs_diff"][backend] = float((out.float() - reference).abs().max())

            def forward():
                with torch.no_grad():
                    attention(q, k, v, mask, backend=backend)

            def forward_backward():
                q.grad = k.grad = v.grad = None
                attention(q, k, v, mask, backend=backend).backward(grad)

            fns = {"fwd": forward, "fwd+bwd": forward_backward}
            for mode in modes:
                row["ms"][f"{backend} {mode}"] = time_call(fns[mode], device, warmup, iters)
        except Exception as error:  # an OOM or a kernel that rejects the shape: report, go on
            row["errors"][backend] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
            if device.type == "cuda":
                torch.cuda.empty_cache()
    for key, ms in list(row["ms"].items()):
        backend, mode = key.split(" ", 1)
        base = row["ms"].get(f"sdpa {mode}")
        if base and backend != "sdpa":
            row.setdefault("ratio_vs_sdpa", {})[key] = ms / base
    return row


def markdown(rows: list[dict], backends: list[str], modes: list[str]) -> str:
    """One table: a row per (shape, dtype, mask), ms per backend and mode, ratio to sdpa in brackets."""
    columns = [f"{b} {m}" for m in modes for b in backends]
    lines = ["| shape BxHxSxD | dtype | mask | " + " | ".join(f"{c} ms" for c in columns) + " | max abs diff to math |",
             "|---|---|---|" + "---|" * len(columns) + "---|"]
    for row in rows:
        cells = []
        for column in columns:
            backend = column.split(" ", 1)[0]
            if column in row["ms"]:
                ratio = row.get("ratio_vs_sdpa", {}).get(column)
                cells.append(f"{row['ms'][column]:.3f}" + (f" ({ratio:.2f}x)" if ratio else ""))
            else:
                cells.append("n/a" if backend in row["errors"] else "-")
        diffs = ", ".join(f"{b} {d:.1e}" for b, d in row["max_abs_diff"].items() if b != "math")
        lines.append(f"| {row['shape']} | {row['dtype']} | {row['mask']} | " + " | ".join(cells) + f" | {diffs} |")
    errors = sorted({f"{b}: {e}" for row in rows for b, e in row["errors"].items()})
    if errors:
        lines += ["", "Not run:"] + [f"- {e}" for e in errors]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backends", default="sdpa,xformers,math", help=f"comma-separated, of {ATTENTION_BACKENDS}")
    parser.add_argument("--dtypes", default="bf16,fp16", help=f"comma-separated, of {sorted(DTYPES)}")
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma-separated BxHxSxD")
    parser.add_argument("--masks", default="none,padding", help="none and/or padding")
    parser.add_argument("--modes", default="fwd,fwd+bwd", help="fwd and/or fwd+bwd")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--json", default=None, help="write every number to this file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    backends = parse_list(args.backends, ATTENTION_BACKENDS, "--backends")
    dtypes = parse_list(args.dtypes, DTYPES, "--dtypes")
    masks = parse_list(args.masks, ("none", "padding"), "--masks")
    modes = parse_list(args.modes, ("fwd", "fwd+bwd"), "--modes")
    shapes = parse_shapes(args.shapes)
    if args.warmup < 0 or args.iters < 1:
        raise ValueError(f"--warmup must be >= 0 and --iters >= 1, got {args.warmup} and {args.iters}")

    rows = []
    t0 = time.perf_counter()
    for shape in shapes:
        for dtype_name in dtypes:
            for mask in masks:
                row = bench_case(shape, dtype_name, mask == "padding", backends, device, args.warmup, args.iters, modes)
                rows.append(row)
                print(json.dumps(row), flush=True)
    table = markdown(rows, backends, modes)
    print(table)
    if args.json:
        env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
        if device.type == "cuda":
            env["gpu"] = torch.cuda.get_device_name(device)
        try:
            import xformers

            env["xformers"] = xformers.__version__
        except Exception as error:
            env["xformers"] = f"not importable: {type(error).__name__}"
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"env": env, "args": vars(args), "seconds": time.perf_counter() - t0, "rows": rows,
                       "markdown": table}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
