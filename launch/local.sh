#!/usr/bin/env bash
# Train on this machine's devices (all GPUs, or the CPU).
#   launch/local.sh configs/vae.py runs/vae [--config.a.b=value ...]
#   launch/local.sh --dry-run configs/vae.py runs/vae   (or DRY_RUN=1): print the command instead of running it
set -euo pipefail
dry_run=${DRY_RUN:-0}
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi
config=${1:?usage: launch/local.sh [--dry-run] CONFIG WORKDIR [overrides...]}
workdir=${2:?usage: launch/local.sh [--dry-run] CONFIG WORKDIR [overrides...]}
shift 2
command=(python -m animejax.main --config="$config" --workdir="$workdir" "$@")
if [ "$dry_run" = 1 ]; then
  echo "${command[*]}"
  exit 0
fi
exec "${command[@]}"
