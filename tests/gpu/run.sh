#!/usr/bin/env bash
# The GPU checks of issue 16 in one run, on a bare CUDA machine (Python 3.12 + PyTorch with CUDA, no network):
#   1. the `cuda` tests (tests/gpu/test_cuda.py),
#   2. python -m bottomup.bench on CUDA (forward latency per precision, W32-512 batch-12 training images/s,
#      end to end with grouping on a checkpoint that finds people, peak GPU memory),
#   3. the official HigherHRNet-W32-512 timed beside ours (only if .official/HigherHRNet is there).
# Logs and figures go to $OUT (at most 8 files): run.log, pytest_cuda.log, pytest_cuda.xml, bench_cuda.log,
# bench_cuda.json, official.json, official.png. A failed step does not stop the run; the exit status is 1 if any
# step failed (or was cut for time), and a summary is printed last. Designed for ~5-6 minutes; every step has a
# timeout and the whole run stays inside GPU_RUN_BUDGET_S (default 540 s), so one device call (600 s) holds it.
#
# Before the call, in the repository root of the checkout (all three folders are ignored by git, never commit them):
#   mkdir -p .gpu_data && cp -r ../shared/data/coco-mini .gpu_data/          # the test data (26 MB)
#   .whl/: wheels of what the GPU machine lacks (hydra-core, omegaconf, antlr4-python3-runtime, pycocotools,
#     faster-coco-eval, yacs), for CPython 3.12 x86-64:
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#       hydra-core==1.3.8 omegaconf==2.3.1 pycocotools==2.0.11 faster-coco-eval==1.8.0 yacs==0.1.8
#     antlr4-python3-runtime 4.9.3 has no wheel on PyPI; build its pure-Python one here:
#     python3 -m pip download --no-deps --no-binary=:all: antlr4-python3-runtime==4.9.3 -d /tmp/antlr
#     python3 -m pip wheel --no-deps --no-build-isolation -w .whl /tmp/antlr/antlr4-python3-runtime-4.9.3.tar.gz
#   optional, the official code (read only; the search tool's fetch gives a mirror of the repository):
#     fetch github:HRNet/HigherHRNet-Human-Pose-Estimation, then
#     mkdir -p .official/HigherHRNet && git -C <mirror>/repo archive HEAD LICENSE lib experiments \
#       | tar -x -C .official/HigherHRNet
# Then, with the device tool:
#   run(command="bash tests/gpu/run.sh", timeout_s=600, carry=[".whl", ".gpu_data", ".official"])
# Environment knobs: GPU_RUN_STEPS (default "pytest e2e bench official"; e.g. "pytest" for a rerun of the tests),
# PYTEST_ARGS (extra pytest arguments, e.g. "-k resume"), GPU_RUN_BUDGET_S, PYTHON (default python3).
# Without $OUT (a local dry run) the files go to .gpu_out/ (ignored by git).
set -u
cd "$(dirname "$0")/../.." || exit 2
REPO=$PWD
OUT=${OUT:-$REPO/.gpu_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
BUDGET=${GPU_RUN_BUDGET_S:-540}
STEPS=${GPU_RUN_STEPS:-pytest e2e bench official}
LOG=$OUT/run.log
: >"$LOG"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
START=$SECONDS
SUMMARY=()
FAILED=0

say() { printf '%s\n' "$*" | tee -a "$LOG"; }
record() {  # record NAME STATUS SECONDS NOTE
    SUMMARY+=("$(printf '%-10s %-8s %5ss  %s' "$1" "$2" "$3" "$4")")
    [ "$2" = ok ] || [ "$2" = skipped ] || FAILED=1
}
wanted() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# step NAME TIMEOUT LOGFILE CMD...: run CMD under `timeout` (cut to what the budget has left), output to the
# terminal and appended to LOGFILE; records ok / FAILED(rc) / TIMEOUT. Returns CMD's status.
step() {
    local name=$1 limit=$2 logf=$3
    shift 3
    local left=$((BUDGET - (SECONDS - START) - 15))
    if [ "$left" -lt 20 ]; then
        say "== $name: not started, only ${left}s of the ${BUDGET}s budget left"
        record "$name" NOTIME 0 "not started: budget spent"
        return 124
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "== $name (timeout ${limit}s): $*"
    local t0=$SECONDS rc
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$logf"
    rc=${PIPESTATUS[0]}
    local dt=$((SECONDS - t0))
    if [ "$rc" -eq 0 ]; then
        record "$name" ok "$dt" ""
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        record "$name" TIMEOUT "$dt" "killed after ${limit}s"
    else
        record "$name" FAILED "$dt" "exit status $rc (see $(basename "$logf"))"
    fi
    say "== $name: exit status $rc after ${dt}s"
    return "$rc"
}

# ---------------------------------------------------------------------------------------------- environment
{
    echo "== machine"
    date -u
    uname -a
    nproc
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || echo "nvidia-smi failed"
    git -C "$REPO" log -1 --format='commit %H %s' 2>/dev/null || echo "commit: no git metadata here"
} >>"$LOG" 2>&1

# ------------------------------------------------------------------------- dependencies and bottomup itself
t0=$SECONDS
shopt -s nullglob
wheels=("$REPO"/.whl/*.whl)
shopt -u nullglob
if [ "${#wheels[@]}" -gt 0 ]; then
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "${wheels[@]}" >>"$LOG" 2>&1; then
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
        record wheels ok $((SECONDS - t0)) "${#wheels[@]} wheels from .whl into /tmp/site"
    else
        record wheels FAILED $((SECONDS - t0)) "pip install of .whl failed (see run.log)"
    fi
else
    record wheels skipped 0 "no .whl folder: using what is installed"
fi
# bottomup from the working tree (hatchling, the build backend, is not on the machine; nothing to build):
# the package and its conf/ are found from the repository root.
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
if [ -z "${BOTTOMUP_TEST_DATA:-}" ]; then
    if [ -d "$REPO/.gpu_data/coco-mini" ]; then
        export BOTTOMUP_TEST_DATA=$REPO/.gpu_data
    elif [ -d "$REPO/../shared/data/coco-mini" ]; then
        export BOTTOMUP_TEST_DATA=$REPO/../shared/data
    fi
fi
DATA=${BOTTOMUP_TEST_DATA:-}/coco-mini
if [ ! -f "$DATA/annotations/person_keypoints_train2017.json" ]; then
    record data FAILED 0 "coco-mini not found at $DATA: copy it to .gpu_data/coco-mini and carry .gpu_data"
    DATA=""
fi
{
    echo "== python: PYTHONPATH=$PYTHONPATH BOTTOMUP_TEST_DATA=${BOTTOMUP_TEST_DATA:-}"
    "$PY" - <<'EOF'
import importlib, sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version(), "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0),
          "nccl", torch.cuda.nccl.version())
for name in ("bottomup", "hydra", "omegaconf", "pycocotools", "faster_coco_eval", "cv2", "numpy", "scipy",
             "tensorboard", "matplotlib", "pytest", "yacs"):
    try:
        mod = importlib.import_module(name)
        print(f"  {name} {getattr(mod, '__version__', '?')} {getattr(mod, '__file__', '')}")
    except Exception as e:  # report every missing one, not only the first
        print(f"  {name} MISSING: {e!r}")
EOF
} 2>&1 | tee -a "$LOG"
if "$PY" -c "import torch, bottomup.api, pycocotools, hydra; assert torch.cuda.is_available(), 'no CUDA'" >>"$LOG" 2>&1
then
    record imports ok 0 "bottomup, hydra, pycocotools import; CUDA available"
else
    record imports FAILED 0 "bottomup or a dependency does not import, or no CUDA (see run.log)"
fi

# ---------------------------------------------------------------------------------------------- the tests
if wanted pytest; then
    extra=()
    "$PY" -c "import pytest_timeout" 2>/dev/null && extra+=(--timeout=240)
    # shellcheck disable=SC2206  # PYTEST_ARGS is split into words on purpose
    extra+=(${PYTEST_ARGS:-})
    if step pytest 330 "$OUT/pytest_cuda.log" "$PY" -m pytest tests/gpu/test_cuda.py -m cuda -rs -q -p no:cacheprovider \
        --durations=0 --junitxml="$OUT/pytest_cuda.xml" "${extra[@]}"; then
        # a test skipped here (no data, no CUDA) proves nothing: count it as a failure
        if grep -Eq '[0-9]+ skipped' "$OUT/pytest_cuda.log"; then
            unset 'SUMMARY[-1]'
            record pytest FAILED "?" "tests were skipped (see the SKIPPED lines in pytest_cuda.log)"
        fi
    fi
fi

# ---------------------------------------------------- a checkpoint that finds people, for the e2e benchmark
CKPT=/tmp/gpu_run/e2e_w32_512.pt
rm -f "$CKPT"
if wanted e2e && [ -n "$DATA" ]; then
    step e2e-ckpt 90 "$LOG" "$PY" tests/gpu/e2e_checkpoint.py --data-root "$DATA" --out "$CKPT" --images 16 \
        --steps 150 --size 512 --width 32
fi

# ---------------------------------------------------------------------------------------------- benchmark
if wanted bench && [ -n "$DATA" ]; then
    ckpt_args=()
    if [ -f "$CKPT" ]; then
        ckpt_args=(--checkpoint "$CKPT")
    else
        say "note: no e2e checkpoint; the e2e section runs random weights (grouping finds nothing to group)"
    fi
    step bench 200 "$OUT/bench_cuda.log" "$PY" -m bottomup.bench --device cuda \
        --only forward,train,e2e,flops,memory --size 512 --width 32 --train-batch 12 \
        --precisions fp32,bf16,fp16 --channels-last both --warmup 3 --repeats 10 --e2e-images 16 \
        --data-root "$DATA" "${ckpt_args[@]}" --json "$OUT/bench_cuda.json"
fi

# --------------------------------------------------------------------------------- the official HigherHRNet
if wanted official; then
    if [ -d "$REPO/.official/HigherHRNet/lib" ] && [ -n "$DATA" ]; then
        step official 120 "$LOG" "$PY" tests/gpu/official_timing.py --official "$REPO/.official/HigherHRNet" \
            --data-root "$DATA" --size 512 --batch 12 --warmup 3 --repeats 10 \
            --json "$OUT/official.json" --plot "$OUT/official.png"
    else
        say "== official: .official/HigherHRNet not found (or no data): not timed"
        record official skipped 0 ".official/HigherHRNet absent"
    fi
fi

# ---------------------------------------------------------------------------------------------- summary
{
    echo
    echo "== summary ($((SECONDS - START)) s of the ${BUDGET} s budget; files in \$OUT: $(find "$OUT" -maxdepth 1 -type f -printf '%f\n' | sort | tr '\n' ' '))"
    printf '%s\n' "${SUMMARY[@]}"
    if [ -f "$OUT/pytest_cuda.log" ]; then
        echo "-- pytest:"
        grep -E '^(FAILED|ERROR|SKIPPED)|[0-9]+ (passed|failed|error)' "$OUT/pytest_cuda.log" | tail -25
    fi
    if [ -f "$OUT/bench_cuda.log" ]; then
        echo "-- bench (median):"
        grep -E '^(forward|train|e2e|memory|flops) ' "$OUT/bench_cuda.log" | head -60
    fi
    [ "$FAILED" -eq 0 ] && echo "ALL STEPS OK" || echo "SOME STEPS FAILED"
} 2>&1 | tee -a "$LOG"
exit "$FAILED"
