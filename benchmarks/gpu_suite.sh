#!/usr/bin/env bash
# Runs benchmarks/gpu_suite.py on the GPU machine: installs the carried wheels (benchmarks/gpu_wheels.sh) into
# /tmp/site, then the suite, writing gpu_suite.json and gpu_suite.md to $OUT (default /tmp/animejax_gpu_suite).
# Arguments are passed to the suite, e.g. `benchmarks/gpu_suite.sh --budget_s=200`.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
python3 benchmarks/gpu_suite.py --out="${OUT:-/tmp/animejax_gpu_suite}" "$@"
