#!/usr/bin/env bash
# A GPU session: the engine's tests, the engine benchmark and the whole-job benchmark on a lent GPU
# machine, where the project is not installed and nothing can be downloaded.
#
#     bash benchmarks/gpu_check.sh [tests|bench|job|all]      (default: all)
#
# - installs the wheels in .whl/ (`make gpu-wheels`, carried to the machine) into /tmp/site, and
#   puts agent/, local/, layers/common/ and /tmp/site on PYTHONPATH;
# - prints the GPUs (nvidia-smi -L), torch's version and its CUDA's;
# - runs the part(s): tests = pytest tests/agent (test_gpu.py runs only where CUDA is), bench =
#   bench_engine.py (GPU defaults: 512 px, every variant, a 2048 px large run), job = bench_job.py
#   (--preset standard --size 512 --repeat 3);
# - with $OUT set, also writes each part's output to $OUT/<part>.txt (and the header to
#   $OUT/env.txt). With `all`, a failing part does not stop the next; the exit status is 1 if any
#   failed.
#
# The project is not pip-installed there, so the `stylize` console script does not exist next to
# the interpreter: tests/agent/test_cli.py's console-script tests are deselected when it is missing
# (the rest of test_cli.py calls the same main() in-process).
#
# Environment: PYTHON (default python3), GPU_WHEELS_DIR (default .whl; empty: no wheels, no $GPU_SITE),
# GPU_SITE (default /tmp/site), PYTEST_ARGS (added to pytest's), BENCH_ENGINE_ARGS and
# BENCH_JOB_ARGS (replace the benchmarks' arguments; e.g. BENCH_JOB_ARGS="--preset preview
# --size 64" for a quick try on a CPU).

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

part=${1:-all}
case $part in
    tests | bench | job | all) ;;
    *)
        echo "usage: bash benchmarks/gpu_check.sh [tests|bench|job|all]" >&2
        exit 2
        ;;
esac

PYTHON=${PYTHON:-python3}
WHEELS=${GPU_WHEELS_DIR-.whl}
SITE=${GPU_SITE:-/tmp/site}
read -ra pytest_args <<<"${PYTEST_ARGS:-}"
read -ra engine_args <<<"${BENCH_ENGINE_ARGS:-}"
read -ra job_args <<<"${BENCH_JOB_ARGS:---preset standard --size 512 --repeat 3}"

pythonpath="$ROOT/agent:$ROOT/local:$ROOT/layers/common"
if [[ -n $WHEELS ]]; then  # GPU_WHEELS_DIR empty (make gpu-session): $SITE is left alone, not used
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

if [[ -n ${OUT:-} ]]; then
    mkdir -p "$OUT"
fi

# cmd... | tee $OUT/<name>.txt when $OUT is set; the status is the command's (pipefail)
record() {
    local name=$1
    shift
    if [[ -n ${OUT:-} ]]; then
        "$@" 2>&1 | tee "$OUT/$name.txt"
    else
        "$@" 2>&1
    fi
}

header() {
    echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC') $(uname -n)"
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
    local deselect=()
    local stylize
    stylize=$("$PYTHON" -c 'import pathlib, sys; print(pathlib.Path(sys.executable).parent / "stylize")')
    if [[ ! -x $stylize ]]; then
        echo "no $stylize (the project is not installed here): deselecting the console-script tests"
        local test
        for test in is_installed error argument_error end_to_end quiet; do
            deselect+=(--deselect "tests/agent/test_cli.py::test_console_script_$test")
        done
    fi
    "$PYTHON" -m pytest -q -p no:cacheprovider tests/agent "${deselect[@]}" "${pytest_args[@]}"
}

run_bench() {
    "$PYTHON" agent/benchmarks/bench_engine.py "${engine_args[@]}"
}

run_job() {
    "$PYTHON" benchmarks/bench_job.py "${job_args[@]}"
}

record env header

status=0
for name in tests bench job; do
    if [[ $part == all || $part == "$name" ]]; then
        echo "== $name"
        record "$name" "run_$name" || {
            echo "== $name: FAILED (status $?)"
            status=1
        }
    fi
done
exit $status
