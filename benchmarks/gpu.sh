#!/usr/bin/env bash
# The prepared GPU run: the GPU tests, then `localdepth bench --device cuda`, in under 8 minutes on one
# NVIDIA GPU. Installs nothing and needs no network: it runs from this checkout (PYTHONPATH=src) with
# the Python that has PyTorch and Transformers (PYTHON=..., default python3).
#
#   bash benchmarks/gpu.sh              # on the GPU machine: writes docs/bench/gpu-<card>-<model>.json and .md,
#                                       # refreshes the README's GPU table, prints both
#   bash benchmarks/gpu.sh --dry-run    # on any CPU: the same steps at tiny sizes, into a temporary folder
#   bash benchmarks/gpu.sh --dry-run --out DIR
#
# Time: the GPU tests get at most TESTS_S seconds, the benchmark what is left of TOTAL_S (its own time
# guard skips the parts that would not fit, and the report lists them).
set -u
cd "$(dirname "$0")/.."

DRY=0
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --out) OUT="$2"; shift ;;
        *) echo "usage: bash benchmarks/gpu.sh [--dry-run] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done

PYTHON="${PYTHON:-python3}"
TOTAL_S="${TOTAL_S:-450}"   # under the 8 minutes, with room for start-up and the hard limit below
TESTS_S="${TESTS_S:-170}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 LOCALDEPTH_OFFLINE=1
export LOCALDEPTH_HOME="${LOCALDEPTH_HOME:-$(mktemp -d)}"   # random weights and caches: nothing of the user's
SHARED="${LOCALDEPTH_SHARED:-$PWD/../shared}"
START=$SECONDS
say() { echo "gpu.sh: $*" >&2; }

if ! "$PYTHON" -c "import torch, transformers" 2>/dev/null; then
    say "error: $PYTHON cannot import torch and transformers; set PYTHON to the interpreter that has them"
    exit 2
fi
# what is there, and what a missing piece costs (one line each; nothing is installed)
"$PYTHON" - <<'EOF' >&2
import importlib.util
import torch
costs = {"numpy": "everything (Transformers needs it too)", "PIL": "the folder, pipeline and official rows",
         "cv2": "the folder, pipeline and official rows", "matplotlib": "the folder rows (colour maps)",
         "safetensors": "the random weights", "pytest": "the GPU tests", "triton": "torch.compile on the GPU (compiled rows)"}
missing = [m for m in costs if importlib.util.find_spec(m) is None]
cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU"
print(f"gpu.sh: torch {torch.__version__}, {cuda}")
for m in missing:
    print(f"gpu.sh: {m} is missing: skipping {costs[m]}")
EOF

if [ "$DRY" = 1 ]; then
    DEVICE=cpu
    OUT="${OUT:-$(mktemp -d)}"
    EXTRA=(--quick --compile-backend aot_eager)   # inductor's C++ compile is minutes on a small CPU
else
    DEVICE=cuda
    OUT="${OUT:-docs/bench}"
    EXTRA=()
    if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        say "error: PyTorch sees no CUDA GPU here; run with --dry-run for a CPU check"
        exit 2
    fi
fi
mkdir -p "$OUT"

# 1. the GPU tests (they skip without CUDA, so a dry run only checks that they import and collect)
TEST_FILES=$(grep -l "pytest.mark.gpu" tests/test_*.py | tr '\n' ' ')
TESTS="not run"
if "$PYTHON" -c "import pytest" 2>/dev/null; then
    say "GPU tests: $TEST_FILES(at most ${TESTS_S} s)"
    timeout "$TESTS_S" "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider -o addopts="" $TEST_FILES \
        >"$OUT/gpu-tests.log" 2>&1
    TEST_STATUS=$?
    TESTS=$(grep -E "passed|failed|skipped|error|no tests ran" "$OUT/gpu-tests.log" | tail -1)
    [ "$TEST_STATUS" = 124 ] && TESTS="stopped after ${TESTS_S} s (time guard): ${TESTS:-no summary}"
    say "GPU tests: $TESTS (log: $OUT/gpu-tests.log)"
else
    TEST_STATUS=0
    say "pytest is missing: the GPU tests were not run"
fi

# 2. the benchmark, in what is left of the time
LEFT=$(( TOTAL_S - (SECONDS - START) ))
[ "$LEFT" -lt 60 ] && LEFT=60
ARGS=(--device "$DEVICE" --out-dir "$OUT" --time-budget "$LEFT" --note "GPU tests: $TESTS" ${EXTRA[@]+"${EXTRA[@]}"})
for photo in "$SHARED"/data/images/*.jpg; do [ -f "$photo" ] && ARGS+=(--image "$photo"); done
[ -f "$SHARED/reference/depth-anything-v2/depth_anything_v2/dpt.py" ] && \
    ARGS+=(--reference-code "$SHARED/reference/depth-anything-v2")
say "bench (at most ${LEFT} s): localdepth bench ${ARGS[*]}"
# its own time guard skips parts that would not fit; this hard limit catches a part that overruns its
# estimate (the report is rewritten after every part, so what was measured stays)
timeout $(( LEFT + 15 )) "$PYTHON" -m localdepth.bench.gpu "${ARGS[@]}"
BENCH_STATUS=$?
[ "$BENCH_STATUS" = 124 ] && say "the bench ran past its time and was stopped; the report holds the parts it finished"

# 3. the README's GPU table from the report (real runs only)
if [ "$DRY" = 0 ] && [ "$BENCH_STATUS" = 0 ]; then
    REPORT=$(ls -t "$OUT"/gpu-*.json 2>/dev/null | head -1)
    [ -n "$REPORT" ] && "$PYTHON" benchmarks/readme_table.py "$REPORT" && say "README's GPU table updated from $REPORT"
fi
say "done in $(( SECONDS - START )) s; report in $OUT"
exit $(( BENCH_STATUS != 0 || (TEST_STATUS != 0 && TEST_STATUS != 5) ))
