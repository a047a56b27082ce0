#!/usr/bin/env bash
# Train on this machine's devices (all GPUs, or the CPU).
#   launch/local.sh configs/vae.py runs/vae [--config.a.b=value ...]
set -euo pipefail
config=${1:?usage: launch/local.sh CONFIG WORKDIR [overrides...]}
workdir=${2:?usage: launch/local.sh CONFIG WORKDIR [overrides...]}
shift 2
exec python -m animejax.main --config="$config" --workdir="$workdir" "$@"
