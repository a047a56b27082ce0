#!/usr/bin/env bash
# Downloads the wheels the GPU machine lacks (Python 3.12, x86-64; it has jax with CUDA, flax, optax, orbax,
# chex, torch, torchvision, scipy, opencv, tensorboard, etils, but no network) into .whl/ at the repository
# root, which benchmarks/gpu_suite.sh installs from. Run it where pip reaches PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# clu and ml_collections (configs, metric writers), grain with its needs (input pipeline), pytorch-fid (the
# FID reference). --no-deps: every missing dependency is named here, one version each.
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
  -d .whl clu==0.0.12 ml_collections==1.1.0 grain==0.2.18 array_record==0.8.6 dm-tree==0.1.10 portpicker==1.6.0 \
  importlib_resources==6.5.2 pytorch-fid==0.3.0
