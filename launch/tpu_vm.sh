#!/usr/bin/env bash
# Train on a Cloud TPU VM slice (one process per host), from your workstation.
#   launch/tpu_vm.sh TPU_NAME ZONE configs/vae.py gs://bucket/runs/vae [--config.a.b=value ...]
# Installs animejax from this checkout on every host, then starts the same command on all of them;
# jax.distributed.initialize() discovers the slice. Use a gs:// workdir so all hosts share checkpoints.
set -euo pipefail
tpu=${1:?usage: launch/tpu_vm.sh TPU_NAME ZONE CONFIG WORKDIR [overrides...]}
zone=${2:?}
config=${3:?}
workdir=${4:?}
shift 4
gcloud compute tpus tpu-vm scp --recurse --zone="$zone" --worker=all "$(dirname "$0")/.." "$tpu":animejax
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command \
  "cd animejax && pip install -q -e '.[tpu]' && python -m animejax.main --distributed --config=$config --workdir=$workdir $*"
