#!/usr/bin/env bash
# The GPU checks of edgetrain in one short script, for a machine with a CUDA GPU and a CUDA build
# of PyTorch (nothing is installed from the network: missing packages come as wheels in .whl/).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR] [CALTECH_PATH] [EPOCHS]
#
# 1. the CUDA tests (tests/train/test_accelerator.py; they skip without a GPU)
# 2. the quick bench on the GPU (four models, synthetic PCB, 64 px)
# 3. xception vs xception_lite on Caltech-101 at the paper's protocol (224 px, batch 16, Adam 1e-3)
#    for EPOCHS epochs each: epoch time, peak allocated / reserved, test accuracy (a table)
set -euo pipefail
out=${1:-${OUT:-/tmp/gpu-check}}
caltech=${2:-../shared/data/caltech-101/101_ObjectCategories}
epochs=${3:-2}
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD/src
else
    export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"

python3 -m pytest -q -p no:cacheprovider tests/train/test_accelerator.py 2>&1 | tee "$out/tests.txt"
python3 -m edgetrain bench --accelerator cuda --out "$out/bench-quick" 2>&1 | tail -20 | tee "$out/bench.txt"
for m in xception xception_lite; do
    python3 -m edgetrain train --model "$m" --data "caltech101:$caltech" --epochs "$epochs" \
        --accelerator cuda --no-progress --out "$out/caltech-$m" 2>&1 | tail -3
done
python3 - "$out" <<'EOF' | tee "$out/caltech.txt"
import json, sys
from pathlib import Path
print(f"{'model':<14} {'epoch s':>8} {'alloc MB':>9} {'reserved MB':>12} {'test acc':>9}")
for m in ("xception", "xception_lite"):
    r = json.loads((Path(sys.argv[1]) / f"caltech-{m}" / "record.json").read_text())
    print(f"{m:<14} {r['epoch_s']:8.1f} {r['gpu_peak_allocated_mb']:9.0f} "
          f"{r['gpu_peak_reserved_mb']:12.0f} {r['test_accuracy']:9.3f}")
EOF
