#!/usr/bin/env bash
# GPU device check: one script, JSON lines on stdout, under 8 minutes on one GPU (each part has its own timeout,
# and all of them one shared deadline: 450 s after the start, kills included; the environment probe has 60 s).
#
#   tests/gpu/device_check.sh [--dry-run]      # --dry-run: every part on CPU at tiny sizes (the code paths only)
#
# Parts: (0) environment: versions, GPU, what is missing; (1) capture job vs bare forward + top-k on a random-init
# Qwen2-1.5B shape in bf16, 2K-token samples: tokens/s, ratio, MFU (tests/gpu/capture_check.py); (2) GLD and the
# shared top-k vs full-vocab CE in bf16 at T=4096, V=151,936 (tests/gpu/loss_check.py); (3) the training memory
# plan's check, tests/gpu/train_check.py, when present. Last line: the verdict (tests/gpu/goals.py): each goal met
# or missed, each owed figure absent, each part's error; on a GPU the script exits 1 unless every goal is met.
#
# Installing: nothing is pip-installed from a registry. The repo root goes on PYTHONPATH (Ray's local workers inherit
# it), so the machine's own CUDA torch, transformers and accelerate are used: `pip install -e .` would let pip
# resolve `torch` again, and with constraints.txt it would pull the CPU wheel. Packages the machine lacks (ray,
# zstandard, jsonschema…) travel as wheels in .whl/, made on a machine with PyPI by tests/gpu/fetch_wheels.sh, and
# are unpacked into /tmp/site with --no-deps --no-index.
set -u
cd "$(dirname "$0")/../.."
BUDGET=${CHECK_DEADLINE_S:-450}  # seconds for every part together (a test shortens it to reach the deadline)
DEADLINE=$((SECONDS + BUDGET))
LOG=$(mktemp /tmp/device_check.XXXXXX)
trap 'rm -f "$LOG"' EXIT
PY=${PYTHON:-python3}
DRY=""
[ "${1:-}" = "--dry-run" ] && DRY="--dry-run"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 RAY_ENABLE_UV_RUN_RUNTIME_ENV=0
export LOGITFUSE_CACHE=${LOGITFUSE_CACHE:-/tmp/logitfuse-cache}
if [ -z "$DRY" ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || echo '{"check": "env", "error": "pip could not install the carried wheels in .whl/"}'
  export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

{
timeout --kill-after=5 60 $PY - <<'PYEOF' || echo '{"check": "env", "error": "the environment probe failed or took over 60 s"}'
import importlib, json
out = {"check": "env"}
for name in ("torch", "transformers", "accelerate", "ray", "pyarrow", "zstandard", "tokenizers", "flash_attn"):
    try:
        out[name] = getattr(importlib.import_module(name), "__version__", "?")
    except Exception as e:
        out[name] = f"missing ({type(e).__name__})"
try:
    import torch
    out["cuda"] = torch.cuda.is_available()
    if out["cuda"]:
        out["gpu"] = torch.cuda.get_device_name()
        out["gpu_mem_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
except Exception as e:
    out["cuda"] = f"error {e}"
print(json.dumps(out), flush=True)
PYEOF

part() {  # part NAME SECONDS COMMAND...: run with a timeout; a failure is one JSON line, not the end of the check
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS left=$((DEADLINE - SECONDS - 5))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 0 ]; then
    echo "{\"check\": \"$name\", \"error\": \"not run: the check's ${BUDGET} s deadline has passed\"}"
    return
  fi
  timeout --kill-after=5 "$limit" "$@"
  local rc=$?
  if { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && [ $((SECONDS - t0)) -ge "$limit" ]; then
    echo "{\"check\": \"$name\", \"error\": \"killed after $((SECONDS - t0)) s: over its ${limit} s limit (exit $rc)\"}"
  elif [ $rc -ne 0 ]; then
    echo "{\"check\": \"$name\", \"error\": \"exit $rc after $((SECONDS - t0)) s (its stderr says why)\"}"
  fi
  echo "{\"check\": \"$name\", \"part_seconds\": $((SECONDS - t0))}"
}

part capture 270 $PY tests/gpu/capture_check.py $DRY
part losses 60 $PY tests/gpu/loss_check.py $DRY
if [ -f tests/gpu/train_check.py ]; then
  part train 120 $PY tests/gpu/train_check.py $DRY
else
  echo '{"check": "train", "skipped": "tests/gpu/train_check.py is not there yet"}'
fi
} | tee "$LOG"

$PY tests/gpu/goals.py "$LOG"
rc=$?
[ -n "$DRY" ] && exit 0  # a dry run checks the code paths; its CPU figures are not held to the GPU goals
exit $rc
