#!/usr/bin/env bash
# The whole GPU check in one command, within 8 minutes on an H100 (each part has a limit, 560 s in all): the GPU tests, the engine
# benchmark, the warm worker's benchmark and the quality trade-off study, then one summary table.
# It runs on a lent GPU machine, where the project is not installed and nothing can be downloaded.
#
#     bash benchmarks/gpu_check.sh [all | PART...]      (PART: tests, bench, worker, tradeoffs; default all)
#
# - installs the wheels in .whl/ (`make gpu-wheels`, carried to the machine) into /tmp/site, and
#   puts agent/, local/, layers/common/ and /tmp/site on PYTHONPATH;
# - prints the GPU (nvidia-smi -L), torch's version and its CUDA's;
# - tests (at most 150 s): pytest tests/agent/test_gpu.py (the CPU tests run in CI);
#   bench (at most 220 s): agent/benchmarks/bench_engine.py (512 px, every variant: the engine's
#   standard preset against the plain reference, time to quality, 2048 px);
#   worker (at most 130 s): benchmarks/bench_worker.py (--preset standard --sizes 512 1024 2048
#   --repeat 3 --mixed 30: one warm `python -m stylize_worker` against moto, its start, then three
#   standard jobs at each size, the first cold at its size and two warm, received to answered
#   against the targets of 2.0 s at 512 px and 6 s at 1024 px, then 30 mixed jobs for its memory;
#   30 rather than 50, so that the part keeps within its limit, 2048 px jobs included);
#   tradeoffs (at most 60 s): agent/benchmarks/tradeoffs.py on the GPU (the L-BFGS history and the
#   bf16 style gradient, 3 pairs at 512 px)
#   and, with `all`, on the machine's spare CPU cores at the same time as the other parts
#   (fp32, 128 px, 3 pairs, with emulated TF32 Grams too), pinned away from the GPU parts' cores;
# - with $OUT set, writes each part's output to $OUT/<part>.txt (8 files in all), the benchmarks'
#   figures to $OUT/engine.json and $OUT/worker.json (written after every job: a part stopped by
#   its limit keeps what it measured), and the machine and the summary table to $OUT/summary.md;
#   a failing part does not stop the next; the exit status is 1 if any failed. Each part has a
#   time limit.
#
# Environment: PYTHON (default python3), GPU_WHEELS_DIR (default .whl; empty: no wheels),
# GPU_SITE (default /tmp/site), and to change the runs: PYTEST_ARGS, BENCH_ENGINE_ARGS,
# BENCH_WORKER_ARGS, TRADEOFFS_ARGS, CPU_TRADEOFFS_ARGS (e.g. BENCH_WORKER_ARGS="--preset preview
# --sizes 64 --repeat 2 --mixed 3 --mixed-sizes 64" for a quick try on a CPU: `make gpu-session`).

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

parts=("${@:-all}")
for part in "${parts[@]}"; do
    case $part in
        all | tests | bench | worker | tradeoffs) ;;
        *)
            echo "usage: bash benchmarks/gpu_check.sh [all | PART...]  (PART: tests, bench, worker, tradeoffs)" >&2
            exit 2
            ;;
    esac
done
wanted() { [[ " ${parts[*]} " == *" all "* || " ${parts[*]} " == *" $1 "* ]]; }

PYTHON=${PYTHON:-python3}
WHEELS=${GPU_WHEELS_DIR-.whl}
SITE=${GPU_SITE:-/tmp/site}
RESULTS=${OUT:-$(mktemp -d)}
mkdir -p "$RESULTS"
read -ra pytest_args <<<"${PYTEST_ARGS:-}"
read -ra engine_args <<<"${BENCH_ENGINE_ARGS:-}"
read -ra worker_args <<<"${BENCH_WORKER_ARGS:---preset standard --sizes 512 1024 2048 --repeat 3 --mixed 30}"
read -ra tradeoffs_args <<<"${TRADEOFFS_ARGS:---device cuda --size 512 --iterations 200 --pairs 3 --variants history50 history20 history10 bf16_style_gradient}"
read -ra cpu_tradeoffs_args <<<"${CPU_TRADEOFFS_ARGS:---device cpu --size 128 --iterations 120 --pairs 3 --variants history50 history20 history10 tf32_grams history20_tf32_grams}"

pythonpath="$ROOT/agent:$ROOT/local:$ROOT/layers/common"
if [[ -n $WHEELS ]]; then # GPU_WHEELS_DIR empty (make gpu-session): $SITE is left alone, not used
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
        echo "installing $(compgen -G "$WHEELS/*.whl" | wc -l) wheels from $WHEELS into $SITE"
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            "$WHEELS"/*.whl
    fi
    if [[ -d $SITE ]]; then
        pythonpath+=":$SITE"
    fi
fi
export PYTHONPATH="$pythonpath${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

# The GPU parts on the first cores, the CPU study on the rest (where there are enough of them).
cores=$(nproc)  # before OMP_NUM_THREADS is set: nproc honours it
gpu_cores=() cpu_cores=()
if command -v taskset >/dev/null && ((cores >= 8)); then
    gpu_cores=(taskset -c "0-3")
    cpu_cores=(taskset -c "4-$((cores - 1))")
    export OMP_NUM_THREADS=4
fi

# cmd... | tee $RESULTS/<name>.txt; the status is the command's (pipefail)
record() {
    local name=$1
    shift
    "$@" 2>&1 | tee "$RESULTS/$name.txt"
}

# a part's command, stopped after $LIMIT seconds, on the GPU parts' cores
limited() {
    timeout --kill-after=10 "$LIMIT" "${gpu_cores[@]}" "$@"
}

header() {
    echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC') $(uname -n), $cores CPU cores"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi -L || true
    else
        echo "nvidia-smi: not found"
    fi
    "$PYTHON" - <<'EOF'
import platform

import torch

cuda = torch.cuda.is_available()
print(f"python {platform.python_version()} ({platform.python_implementation()}), torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, CUDA available: {cuda}")
if cuda:
    print(f"device 0: {torch.cuda.get_device_name(0)}, capability {torch.cuda.get_device_capability(0)}")
EOF
    echo "PYTHONPATH=$PYTHONPATH"
}

run_tests() {
    limited "$PYTHON" -m pytest -q -rs -p no:cacheprovider -s tests/agent/test_gpu.py "${pytest_args[@]}"
}

run_bench() {
    limited "$PYTHON" agent/benchmarks/bench_engine.py --json "$RESULTS/engine.json" "${engine_args[@]}"
}

run_worker() {
    limited "$PYTHON" benchmarks/bench_worker.py --json "$RESULTS/worker.json" "${worker_args[@]}"
}

run_tradeoffs() {
    limited "$PYTHON" agent/benchmarks/tradeoffs.py "${tradeoffs_args[@]}"
}

header | tee /tmp/gpu_check_env.txt

cpu_study=
if [[ " ${parts[*]} " == *" all "* && ${#cpu_cores[@]} -gt 0 ]]; then
    echo "== tradeoffs on the CPU (cores ${cpu_cores[2]}), beside the other parts"
    OMP_NUM_THREADS=$((cores - 4)) timeout --kill-after=10 420 "${cpu_cores[@]}" "$PYTHON" agent/benchmarks/tradeoffs.py \
        "${cpu_tradeoffs_args[@]}" >"$RESULTS/tradeoffs-cpu.txt" 2>&1 &
    cpu_study=$!
fi

status=0
for entry in tests:150 bench:220 worker:130 tradeoffs:60; do
    name=${entry%%:*} LIMIT=${entry##*:}
    if wanted "$name"; then
        echo "== $name (at most $LIMIT s)"
        record "$name" "run_$name" || {
            echo "== $name: FAILED (status $?)"
            status=1
        }
    fi
done

if [[ -n $cpu_study ]]; then
    wait "$cpu_study" || echo "== tradeoffs on the CPU: stopped or failed (status $?); its rows so far:"
    cat "$RESULTS/tradeoffs-cpu.txt"
fi

echo "== summary"
{
    sed 's/^/    /' /tmp/gpu_check_env.txt
    echo
    "$PYTHON" benchmarks/gpu_summary.py "$RESULTS"
} | tee "$RESULTS/summary.md"
exit $status
