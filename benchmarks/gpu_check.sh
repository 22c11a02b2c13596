#!/usr/bin/env bash
# One GPU check of babeltower on a lent CUDA machine, in under 7 minutes, every part on its own.
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine; results in $OUT
#   GPU_CHECK_DRY=1 bash benchmarks/gpu_check.sh # the same parts on CPU, tiny: catches typos and bad flags
#
# Parts (each with its own timeout, rc recorded, the next one runs whatever happened):
#   install   the carried wheels (.whl/*.whl) into /tmp/site (the device lacks the pinned stack)
#             .whl is git-ignored; fill it here first (python 3.12 manylinux wheels, no deps):
#               for p in diffusers==0.42.1 open_clip_torch==3.3.0 jsonargparse==4.53.0 webdataset==1.0.2 \
#                 braceexpand jiwer==4.0.0 soundfile==0.14.0 babel==2.19.0 ftfy wcwidth docstring-parser \
#                 typeshed-client transformers==5.24.0 tokenizers==0.23.3 huggingface_hub==2.4.0 \
#                 lightning==2.6.6 torchmetrics==1.9.0 lightning-utilities safetensors==0.8.0 \
#                 xformers==0.0.35 rapidfuzz httpx2 httpcore2 truststore cffi anyio h11 typing_extensions regex; do
#                 python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#                   --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl "$p"; done
#   env       torch / xformers / GPU versions, check_backend("xformers", "cuda"), python -m xformers.info
#   pytest    pytest -m gpu tests/models/test_attention.py (xformers == math on CUDA)
#   bench     benchmarks/bench_attention.py: sdpa vs xformers vs math, bf16/fp16, fwd and fwd+bwd
#   data      babeltower data synth scenes / vqa (no fonts or espeak-ng needed; OCR and ASR are left out)
#   fit_*     babeltower fit of the tiny demo configs on the GPU (bf16-mixed): contrastive with sdpa and
#             with xformers in both towers, VQA and text-to-image from the exported contrastive hub, and
#             text-to-image with the UNet on xformers; a step timer callback records steps/s and losses
#   export    babeltower export of the contrastive checkpoint (the hub VQA and t2i start from)
#
# $OUT gets at most 7 files: gpu_check.json (every number and rc, rewritten after each part),
# gpu_check.log, env_pytest.log, bench_attention.log, bench_attention.json, fits.log, runs.tar.gz.
#
# Knobs (environment): GPU_CHECK_DRY=1, GPU_CHECK_PYTHON (default python3), GPU_CHECK_SKIP_INSTALL=1,
# GPU_CHECK_SITE (default /tmp/site), GPU_CHECK_BUDGET (seconds for the whole script, default 400),
# GPU_CHECK_WORK (scratch folder), GPU_CHECK_STEPS (steps per fit), GPU_CHECK_WORKERS (loader workers).

set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
START=$SECONDS
DRY=${GPU_CHECK_DRY:-0}
read -r -a PY <<<"${GPU_CHECK_PYTHON:-python3}"
SITE=${GPU_CHECK_SITE:-/tmp/site}
BUDGET=${GPU_CHECK_BUDGET:-400}
if [ "$DRY" = 1 ]; then
    WORK=${GPU_CHECK_WORK:-$(mktemp -d /tmp/gpucheck_dry.XXXXXX)}
    OUT=${OUT:-$WORK/out}
else
    WORK=${GPU_CHECK_WORK:-/tmp/gpucheck}
    OUT=${OUT:-$WORK/out}
fi
rm -rf "$WORK/errors" "$WORK/timers" "$WORK/hub" "$WORK/runs"  # nothing stale from an earlier run counts
mkdir -p "$OUT" "$WORK/errors" "$WORK/timers" "$WORK/py" "$WORK/runs" || exit 1
rm -f "$OUT/bench_attention.json" "$OUT/gpu_check.json" "$OUT/runs.tar.gz"
for f in gpu_check.log env_pytest.log bench_attention.log fits.log; do : >"$OUT/$f"; done
PARTS=$WORK/parts.tsv
: >"$PARTS"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GPU_CHECK_WORK=$WORK GPU_CHECK_DRY=$DRY
log() { echo "[gpu_check $((SECONDS - START))s] $*" | tee -a "$OUT/gpu_check.log"; }

if [ "$DRY" = 1 ]; then
    ACC=cpu PREC=32-true STEPS=${GPU_CHECK_STEPS:-4} WARM=1
    NUM_SCENES=400 NUM_VQA=200 PER_SHARD=100
    BENCH_ARGS=(--device cpu --dtypes fp32,bf16 --shapes 2x2x17x8,2x4x33x16 --warmup 1 --iters 2)
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
    ACC=gpu PREC=bf16-mixed STEPS=${GPU_CHECK_STEPS:-300} WARM=20
    NUM_SCENES=8000 NUM_VQA=2000 PER_SHARD=500
    BENCH_ARGS=(--device cuda --dtypes bf16,fp16 --shapes 64x4x65x16,32x8x256x64,8x16x1024x64 --warmup 10 --iters 50)
fi
export GPU_CHECK_WARM=$WARM

# ---------------------------------------------------------------------------------- helpers
# part NAME LIMIT_S LOGFILE CMD...: runs CMD with min(LIMIT_S, time left) and records its rc.
part() {
    local name=$1 limit=$2 logfile=$3
    shift 3
    local left=$((BUDGET - (SECONDS - START) - 15))
    if [ "$left" -lt 20 ]; then
        log "$name: skipped, ${left}s left of the ${BUDGET}s budget"
        printf '%s\t%s\t%s\t%s\n' "$name" skipped 0 "out of time" >>"$PARTS"
        summarize
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    log "$name: start (timeout ${limit}s)"  # the full command heads its section of $logfile
    {
        echo "===== $name: $* (timeout ${limit}s)"
    } >>"$logfile"
    local t0=$SECONDS
    timeout -k 10 "$limit" "$@" >>"$logfile" 2>&1
    local rc=$?
    local took=$((SECONDS - t0))
    [ "$rc" != 0 ] && tail -n 6 "$logfile" >"$WORK/errors/$name.txt"
    echo "===== $name: rc=$rc in ${took}s" >>"$logfile"
    log "$name: rc=$rc in ${took}s"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$took" "$(basename "$logfile")" >>"$PARTS"
    summarize
    return 0
}

skip() {  # skip NAME REASON
    log "$1: skipped ($2)"
    printf '%s\t%s\t%s\t%s\n' "$1" skipped 0 "$2" >>"$PARTS"
    summarize
}

rc_of() { awk -F'\t' -v n="$1" '$1 == n {r = $2} END {print r}' "$PARTS"; }

# Lightning callback that times each training step (CUDA-synchronised) and keeps the losses.
cat >"$WORK/py/gpu_check_timer.py" <<'PYEOF'
"""StepTimer: per-step wall times (CUDA-synchronised), the gap between steps (data loading + loop), losses, peak memory -> JSON."""
import json
import os
import statistics
import time

import lightning.pytorch as pl
import torch


def _loss(outputs):
    value = outputs.get("loss") if isinstance(outputs, dict) else outputs
    return float(value.detach().float()) if torch.is_tensor(value) else None


class StepTimer(pl.Callback):
    def __init__(self):
        self.out = os.environ.get("GPU_CHECK_TIMER_OUT")
        self.warm = int(os.environ.get("GPU_CHECK_WARM", "20"))
        self.ends, self.waits, self.losses, self.last_end = [], [], [], None

    def _sync(self, trainer):
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)

    def on_train_start(self, trainer, pl_module):
        self.t_start = time.perf_counter()
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.strategy.root_device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.last_end is not None:
            self.waits.append(time.perf_counter() - self.last_end)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._sync(trainer)
        self.last_end = time.perf_counter()
        self.ends.append(self.last_end)
        self.losses.append(_loss(outputs))
        if len(self.ends) % 50 == 0:  # a fit killed by its timeout still leaves its numbers so far
            self._write(trainer, pl_module, finished=False)

    def on_fit_end(self, trainer, pl_module):
        self._write(trainer, pl_module, finished=True)

    def _write(self, trainer, pl_module, finished):
        device = trainer.strategy.root_device
        steps = [b - a for a, b in zip(self.ends, self.ends[1:])][self.warm:]
        waits = self.waits[self.warm:]
        losses = [x for x in self.losses if x is not None]
        k = max(1, min(10, len(losses) // 4))
        metrics = {}
        for name, value in trainer.callback_metrics.items():
            try:
                metrics[name] = float(value)
            except (TypeError, ValueError):
                pass
        result = {
            "finished": finished,
            "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "precision": str(trainer.precision),
            "global_step": int(trainer.global_step),
            "steps_timed": len(steps),
            "warmup_steps_excluded": self.warm,
            "step_ms_median": 1000 * statistics.median(steps) if steps else None,
            "step_ms_mean": 1000 * statistics.fmean(steps) if steps else None,
            "steps_per_s": len(steps) / sum(steps) if steps and sum(steps) > 0 else None,
            "between_steps_ms_median": 1000 * statistics.median(waits) if waits else None,
            "train_seconds": time.perf_counter() - self.t_start,
            "loss_first": statistics.fmean(losses[:k]) if losses else None,
            "loss_last": statistics.fmean(losses[-k:]) if losses else None,
            "callback_metrics": metrics,
            "peak_gpu_mem_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            "params": sum(p.numel() for p in pl_module.parameters()),
            "trainable_params": sum(p.numel() for p in pl_module.parameters() if p.requires_grad),
        }
        if finished:
            print("gpu_check StepTimer:", json.dumps(result))
        if self.out:
            with open(self.out, "w", encoding="utf-8") as f:
                json.dump(result, f, indent=1)
PYEOF

# Summary: every part's rc and time, the env probe, the benchmark rows, each fit's timer JSON.
cat >"$WORK/py/gpu_check_summary.py" <<'PYEOF'
import json, os, re, sys
work, out = sys.argv[1], sys.argv[2]
summary = {"dry": os.environ.get("GPU_CHECK_DRY") == "1", "parts": {}, "fits": {}}
for line in open(os.path.join(work, "parts.tsv"), encoding="utf-8"):
    name, rc, seconds, note = (line.rstrip("\n").split("\t") + ["", "", ""])[:4]
    summary["parts"][name] = {"rc": int(rc) if rc.lstrip("-").isdigit() else rc, "seconds": int(seconds or 0), "note": note}
def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
summary["env"] = load(os.path.join(work, "env.json"))
bench = load(os.path.join(out, "bench_attention.json"))
if bench:
    summary["bench_attention"] = {"env": bench.get("env"), "rows": [
        {k: r[k] for k in ("shape", "dtype", "mask", "ms", "ratio_vs_sdpa", "max_abs_diff", "errors") if k in r}
        for r in bench.get("rows", [])]}
timers = os.path.join(work, "timers")
for name in sorted(os.listdir(timers)) if os.path.isdir(timers) else []:
    if name.endswith(".json"):
        summary["fits"][name[:-5]] = load(os.path.join(timers, name))
for name, entry in summary["parts"].items():
    tail = os.path.join(work, "errors", name + ".txt")
    if entry["rc"] not in (0, "skipped") and os.path.exists(tail):
        entry["log_tail"] = open(tail, encoding="utf-8", errors="replace").read()[-1500:]
pytest_log = os.path.join(out, "env_pytest.log")
if os.path.exists(pytest_log):
    text = open(pytest_log, encoding="utf-8", errors="replace").read()
    found = re.findall(r"^=*\s*(\d+ (?:passed|failed|skipped|error).* in [\d.]+s.*?)\s*=*$", text, re.M)
    summary["pytest_result"] = found[-1] if found else None
base = {k: v for k, v in summary["fits"].items() if v}
ref = (base.get("contrastive_sdpa") or {}).get("steps_per_s")
xf = (base.get("contrastive_xformers") or {}).get("steps_per_s")
if ref and xf:
    summary["contrastive_xformers_speed_vs_sdpa"] = xf / ref
ref = (base.get("t2i_sdpa") or {}).get("steps_per_s")
xf = (base.get("t2i_xformers") or {}).get("steps_per_s")
if ref and xf:
    summary["t2i_xformers_speed_vs_sdpa"] = xf / ref
with open(os.path.join(out, "gpu_check.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
PYEOF
summarize() { "${PY[@]}" "$WORK/py/gpu_check_summary.py" "$WORK" "$OUT" 2>>"$OUT/gpu_check.log" || true; }

log "repo $REPO, work $WORK, out $OUT, dry=$DRY, python ${PY[*]}, budget ${BUDGET}s, steps $STEPS"

# ---------------------------------------------------------------------------------- 1. install + env + pytest
ENVLOG=$OUT/env_pytest.log
if [ "${GPU_CHECK_SKIP_INSTALL:-$DRY}" = 1 ]; then
    skip install "GPU_CHECK_SKIP_INSTALL / dry run: packages from ${PY[*]}'s environment and $SITE"
else
    part install 150 "$ENVLOG" "${PY[@]}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$REPO"/.whl/*.whl
fi
export PYTHONPATH=$REPO/src:$SITE:$WORK/py

cat >"$WORK/py/gpu_check_env.py" <<'PYEOF'
import json, os, platform, shutil, sys
env = {"python": platform.python_version(), "executable": sys.executable, "cpus": os.cpu_count()}
try:
    usage = shutil.disk_usage("/dev/shm")
    env["dev_shm_gib"] = round(usage.total / 2**30, 2)
except OSError as error:
    env["dev_shm_gib"] = None
import torch
env.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
if torch.cuda.is_available():
    env.update(gpu=torch.cuda.get_device_name(0), capability=".".join(map(str, torch.cuda.get_device_capability(0))),
               gpu_mem_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
def save():
    with open(os.path.join(os.environ["GPU_CHECK_WORK"], "env.json"), "w") as f:
        json.dump(env, f, indent=1)
save()  # xformers last: a broken build that kills the process leaves the rest recorded
for name in ("transformers", "diffusers", "lightning", "open_clip", "huggingface_hub", "tokenizers",
             "jsonargparse", "webdataset", "torchmetrics", "timm", "numpy", "PIL", "xformers"):
    try:
        module = __import__(name)
        env[f"{name}_version"] = getattr(module, "__version__", "?")
        env[f"{name}_file"] = os.path.dirname(module.__file__)
    except Exception as error:
        env[f"{name}_version"] = f"import failed: {type(error).__name__}: {error}"
from babeltower.models.attention import check_backend
device = "cuda" if torch.cuda.is_available() else "cpu"
try:
    check_backend("xformers", device)
    env["xformers_check_backend"] = f"ok on {device}"
except Exception as error:
    env["xformers_check_backend"] = f"{type(error).__name__}: {error}"
print(json.dumps(env, indent=1))
save()
PYEOF
part env 90 "$ENVLOG" "${PY[@]}" "$WORK/py/gpu_check_env.py"
[ "$DRY" = 1 ] || part xformers_info 40 "$ENVLOG" "${PY[@]}" -m xformers.info
part pytest 150 "$ENVLOG" "${PY[@]}" -m pytest -q -rs -m gpu tests/models/test_attention.py

# ---------------------------------------------------------------------------------- 2. attention benchmark
part bench 150 "$OUT/bench_attention.log" "${PY[@]}" benchmarks/bench_attention.py "${BENCH_ARGS[@]}" \
    --backends sdpa,xformers,math --json "$OUT/bench_attention.json"
if [ ! -s "$OUT/bench_attention.json" ]; then  # xformers took the process down: keep sdpa vs math at least
    part bench_without_xformers 90 "$OUT/bench_attention.log" "${PY[@]}" benchmarks/bench_attention.py \
        "${BENCH_ARGS[@]}" --backends sdpa,math --json "$OUT/bench_attention.json"
fi

# ---------------------------------------------------------------------------------- 3. data + fits
FITLOG=$OUT/fits.log
DATA=$WORK/data
SHM_GIB=$("${PY[@]}" -c 'import shutil; print(int(shutil.disk_usage("/dev/shm").total / 2**30))' 2>/dev/null || echo 0)
if [ -n "${GPU_CHECK_WORKERS:-}" ]; then WORKERS=$GPU_CHECK_WORKERS
elif [ "$DRY" = 1 ]; then WORKERS=0
elif [ "${SHM_GIB:-0}" -ge 1 ]; then WORKERS=4
else WORKERS=0; fi
log "loader workers: $WORKERS (/dev/shm ${SHM_GIB} GiB)"

part data_scenes 90 "$FITLOG" "${PY[@]}" -m babeltower.cli data synth scenes "$DATA/scenes" --overwrite \
    --num-train "$NUM_SCENES" --num-val 200 --image-size 32 --samples-per-shard "$PER_SHARD"
part data_vqa 90 "$FITLOG" "${PY[@]}" -m babeltower.cli data synth vqa "$DATA/vqa" --overwrite \
    --num-train "$NUM_VQA" --num-val 100 --image-size 32 --samples-per-shard "$((PER_SHARD / 2))"

# fit NAME CONFIG DATA_DIR LIMIT_S [extra overrides...]
fit() {
    local name=$1 config=$2 data=$3 limit=$4
    shift 4
    local run=$WORK/runs/$name
    rm -rf "$run"
    GPU_CHECK_TIMER_OUT=$WORK/timers/$name.json part "fit_$name" "$limit" "$FITLOG" \
        "${PY[@]}" -m babeltower.cli fit --config "$config" \
        --trainer.accelerator "$ACC" --trainer.devices 1 --trainer.precision "$PREC" \
        --trainer.max_steps "$STEPS" --trainer.max_epochs -1 \
        --trainer.default_root_dir "$run" --trainer.logger.init_args.save_dir "$run" \
        --trainer.log_every_n_steps 10 --trainer.enable_progress_bar false \
        --trainer.val_check_interval "$STEPS" --trainer.check_val_every_n_epoch null --trainer.limit_val_batches 4 \
        --trainer.callbacks+=gpu_check_timer.StepTimer \
        --data.init_args.train_shards "$data/train" --data.init_args.val_shards "$data/val" \
        --data.init_args.num_workers "$WORKERS" --data.init_args.samples_per_epoch 64000 \
        "$@"
}

if [ "$(rc_of data_scenes)" = 0 ]; then
    fit contrastive_sdpa configs/tiny/contrastive_demo.yaml "$DATA/scenes" 100
    fit contrastive_xformers configs/tiny/contrastive_demo.yaml "$DATA/scenes" 100 \
        --model.init_args.vision.attn_backend xformers --model.init_args.text.attn_backend xformers
else
    skip fit_contrastive_sdpa "no scenes"; skip fit_contrastive_xformers "no scenes"
fi

HUB=$WORK/hub/contrastive
CKPT=$(find "$WORK/runs/contrastive_sdpa" -name last.ckpt 2>/dev/null | head -n 1)
if [ -n "$CKPT" ]; then
    part export 90 "$FITLOG" "${PY[@]}" -m babeltower.cli export "$CKPT" "$HUB" --overwrite
else
    skip export "no contrastive checkpoint"
fi

if [ "$(rc_of data_vqa)" = 0 ]; then
    if [ -d "$HUB/vision_model" ]; then
        fit vqa configs/tiny/vqa_demo.yaml "$DATA/vqa" 100 \
            --model.init_args.init_from "$HUB"
    else
        fit vqa configs/tiny/vqa_demo.yaml "$DATA/vqa" 100
    fi
else
    skip fit_vqa "no vqa data"
fi

if [ -d "$HUB/text_encoder" ] && [ "$(rc_of data_scenes)" = 0 ]; then
    # t2i links the data's tokenizer to init_from's text_encoder/ (the config names one; it must agree)
    fit t2i_sdpa configs/t2i/tiny.yaml "$DATA/scenes" 100 \
        --model.init_args.init_from "$HUB"
    fit t2i_xformers configs/t2i/tiny.yaml "$DATA/scenes" 100 \
        --model.init_args.init_from "$HUB" \
        --model.init_args.unet.attn_backend xformers
else
    skip fit_t2i_sdpa "no contrastive hub (export) or no scenes"; skip fit_t2i_xformers "no contrastive hub"
fi

# ---------------------------------------------------------------------------------- wrap up
(cd "$WORK" && find runs timers -name '*.csv' -o -name '*.json' -o -name 'config.yaml' -o -name 'hparams.yaml' \
    | tar -czf "$OUT/runs.tar.gz" -T - parts.tsv env.json 2>/dev/null) || true
summarize
log "done in $((SECONDS - START))s; summary $OUT/gpu_check.json"
cat >"$WORK/py/gpu_check_print.py" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
print("\n## parts (rc, seconds)")
for name, p in d["parts"].items():
    print(f"{name:26s} {str(p['rc']):8s} {p['seconds']:4d}s  {p.get('log_tail', '').strip().splitlines()[-1][:200] if p.get('log_tail') else ''}")
env = d.get("env") or {}
print("\n## env:", {k: env.get(k) for k in ("python", "torch", "gpu", "xformers_version", "xformers_check_backend",
                                          "transformers_version", "lightning_version", "dev_shm_gib")})
print("pytest:", d.get("pytest_result"))
print("\n## fits: steps/s (median step ms, median gap between steps ms), loss first -> last, peak GPU MiB")
for name, f in d["fits"].items():
    if f:
        fmt = lambda v, spec: format(v, spec) if isinstance(v, (int, float)) else str(v)
        print(f"{name:22s} {fmt(f['steps_per_s'], '.1f')} steps/s ({fmt(f['step_ms_median'], '.1f')} ms, "
              f"wait {fmt(f['between_steps_ms_median'], '.1f')} ms)  loss {fmt(f['loss_first'], '.3f')} -> "
              f"{fmt(f['loss_last'], '.3f')}  peak {fmt(f['peak_gpu_mem_mib'], '.0f')} MiB  steps {f['global_step']}")
for key in ("contrastive_xformers_speed_vs_sdpa", "t2i_xformers_speed_vs_sdpa"):
    if key in d:
        print(f"{key}: {d[key]:.3f}")
try:
    print("\n## attention benchmark\n" + json.load(open(sys.argv[2], encoding="utf-8"))["markdown"])
except (OSError, ValueError, KeyError) as error:
    print("no attention benchmark:", error)
PYEOF
"${PY[@]}" "$WORK/py/gpu_check_print.py" "$OUT/gpu_check.json" "$OUT/bench_attention.json" || cat "$PARTS"
exit 0
