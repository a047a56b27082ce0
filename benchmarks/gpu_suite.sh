#!/usr/bin/env bash
# Runs benchmarks/gpu_suite.py on the GPU machine: installs the carried wheels (benchmarks/gpu_wheels.sh) into
# /tmp/site, then the suite, writing gpu_suite.json and gpu_suite.md to $OUT (default /tmp/animejax_gpu_suite).
# Arguments are passed to the suite, e.g. `benchmarks/gpu_suite.sh --budget_s=200`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benchmarks/gpu_machine.sh
source benchmarks/gpu_machine.sh
gpu_line
"$python" benchmarks/gpu_suite.py --out="${OUT:-/tmp/animejax_gpu_suite}" "$@"
