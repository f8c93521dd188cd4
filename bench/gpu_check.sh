#!/usr/bin/env bash
# The GPU checks of the degrade issue in one run, for a machine with a CUDA GPU (~6 min on an H100):
# the GPU-marked tests (DALI-GPU parity with the reference, byte determinism across batch sizes and
# graph processes; parity numbers printed), then the GPU rows of bench/degrade.py.
#
#   bash bench/gpu_check.sh [OUT_DIR]          # logs to OUT_DIR, else $OUT, else ./gpu-check
#
# Needs, importable by $PYTHON (default python3): the project's dependencies (pyproject.toml),
# nvidia-dali-cuda120 included, and the test fixtures at ../shared/fixtures or $REALSYNTH_FIXTURES.
# Each step has its own time limit, so one that hangs leaves the others' logs.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-check}}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" DVC_NO_ANALYTICS=1

nvidia-smi > "$out/nvidia-smi.txt" 2>&1
missing=$("$py" - <<'PY'
import importlib.util
def missing(module):
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # its parent package is missing
        return True
mods = ["torch", "nvidia.dali", "cv2", "albumentations", "scipy", "pandas", "pyarrow", "skimage", "dvclive",
        "torchmetrics", "yaml", "tqdm", "matplotlib", "pytest", "webdataset"]
print(" ".join(m for m in mods if missing(m)))
PY
)
if [ -n "$missing" ]; then
  echo "gpu_check: missing Python modules: $missing (install the project's dependencies first)" | tee "$out/summary.txt"
  exit 2
fi
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { echo "gpu_check: torch sees no CUDA GPU" | tee "$out/summary.txt"; exit 2; }

timeout 300 "$py" -m pytest -m gpu -s -q -p no:cacheprovider \
  tests/test_degrade_backends.py tests/test_degrade_stage.py tests/test_loader.py tests/test_upscale.py \
  2>&1 | tee "$out/gpu-tests.log"
tests=$?
timeout 300 "$py" bench/degrade.py --gpu --tiles 4096 --workers "$(nproc)" 2>&1 | tee "$out/bench-degrade-gpu.log"
bench=$?
echo "gpu_check: tests exit $tests, bench exit $bench; logs in $out" | tee "$out/summary.txt"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
