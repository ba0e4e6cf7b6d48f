#!/usr/bin/env bash
# The GPU, measured, in one go: the CuPy backend tests, then the solver benchmark (scripts/bench_gpu.py)
# on BA (ladybug-49, recorded odometry windows) and PGO (sphere2500, parking-garage, generated loop
# graphs) in fp64/fp32/mixed. Meant for a machine with an NVIDIA GPU and CuPy; elsewhere the tests
# skip with their reason and `BACKEND=numpy` runs the same benchmark on the CPU (a dry run of the script).
#
#   bash scripts/gpu_check.sh [OUT_DIR] [extra bench_gpu.py arguments...]
#
# Environment: PYTHON (default python3), BACKEND (cupy), WINDOWS (recorded windows .npz; the
# 'windows' case is reported as failed without it), TEST_TIMEOUT / BENCH_TIMEOUT (seconds; each
# part is stopped there and what it wrote so far stays in OUT_DIR). Writes to OUT_DIR (default
# $OUT, else gpu_check_out): nvidia_smi.csv, gpu_tests.log, gpu_tests.xml, bench_gpu.log,
# bench_gpu.json (appended case by case), bench_gpu.md (the table).
set -u
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-gpu_check_out}}
[ $# -gt 0 ] && shift
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT_DIR"

echo "== device"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu,utilization.gpu \
        --format=csv | tee "$OUT_DIR/nvidia_smi.csv"
else
    echo "nvidia-smi not found" | tee "$OUT_DIR/nvidia_smi.csv"
fi
$PY - <<'EOF'
try:
    import cupy
    print("cupy", cupy.__version__, "devices", cupy.cuda.runtime.getDeviceCount(),
          "runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
except Exception as exc:  # report and go on: the tests skip, the benchmark says why
    print("cupy unavailable:", exc)
EOF

echo "== GPU backend tests"
timeout "${TEST_TIMEOUT:-240}" $PY -m pytest tests/unit/test_gpu_backend.py -q -rs -p no:cacheprovider \
    --junitxml "$OUT_DIR/gpu_tests.xml" 2>&1 | tee "$OUT_DIR/gpu_tests.log"
test_rc=${PIPESTATUS[0]}

echo "== solver benchmark"
win_args=()
[ -n "${WINDOWS:-}" ] && win_args=(--windows "$WINDOWS")
timeout "${BENCH_TIMEOUT:-900}" $PY scripts/bench_gpu.py --backend "${BACKEND:-cupy}" --out "$OUT_DIR" \
    "${win_args[@]}" "$@" 2>&1 | tee "$OUT_DIR/bench_gpu.log"
bench_rc=${PIPESTATUS[0]}

echo "== gpu_check: tests rc=$test_rc, benchmark rc=$bench_rc (rc 124: that part hit its timeout)"
[ "$test_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
