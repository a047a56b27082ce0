#!/usr/bin/env bash
# Train on a Cloud TPU VM slice from your workstation: create the slice, put this code on every worker, install
# it, and run the same command on all workers (one process per host; jax.distributed.initialize() discovers the
# slice). Images and the workdir live on a GCS bucket, which every worker reads and writes.
#   TPU_NAME=faces ZONE=us-central2-b ACCELERATOR=v4-32 DATA_PATH=gs://BUCKET/faces \
#     launch/tpu/train.sh ddpm gs://BUCKET/runs/ddpm [--config.a.b=value ...]
#   launch/tpu/train.sh --dry-run ...   (or DRY_RUN=1): print the commands instead of running them
#
# Edit or set: TPU_NAME, ZONE, ACCELERATOR (e.g. v5litepod-16, v4-32), RUNTIME_VERSION (the TPU VM image for
# that accelerator), PROJECT (empty: gcloud's default), SPOT=1 for a spot slice, DATA_PATH (a gs:// folder of
# images; empty keeps the config's data source), GIT_URL (clone that repository on the workers instead of copying
# this checkout; GIT_REF picks the branch or tag), SKIP_CREATE=1 / SKIP_INSTALL=1 to reuse a prepared slice.
# A stopped or preempted run resumes from its last checkpoint when the same command is run again.
set -euo pipefail

dry_run=${DRY_RUN:-0}
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi
usage="usage: launch/tpu/train.sh [--dry-run] CONFIG gs://BUCKET/WORKDIR [overrides...]"
config=${1:?$usage}
workdir=${2:?$usage}
shift 2
case "$workdir" in
  gs://*) ;;
  *)
    echo "WORKDIR must be a gs:// URL that every TPU worker can write, not '$workdir'" >&2
    exit 2
    ;;
esac

TPU_NAME=${TPU_NAME:-animejax}
ZONE=${ZONE:-us-central2-b}
ACCELERATOR=${ACCELERATOR:-v4-32}
RUNTIME_VERSION=${RUNTIME_VERSION:-tpu-ubuntu2204-base}
PROJECT=${PROJECT:-}
SPOT=${SPOT:-0}
DATA_PATH=${DATA_PATH:-}
GIT_URL=${GIT_URL:-}
GIT_REF=${GIT_REF:-main}
SKIP_CREATE=${SKIP_CREATE:-0}
SKIP_INSTALL=${SKIP_INSTALL:-0}
remote_dir=animejax  # On each worker, under the login user's home.

run() {  # Runs a command, or with --dry-run prints it (arguments with spaces or specials quoted).
  if [ "$dry_run" != 1 ]; then
    "$@"
    return
  fi
  local words=() arg
  for arg in "$@"; do
    if [[ $arg =~ ^[][A-Za-z0-9_./:=,@%+-]+$ ]]; then words+=("$arg"); else words+=("${arg@Q}"); fi
  done
  echo "${words[*]}"
}

where=(--zone="$ZONE")
if [ -n "$PROJECT" ]; then
  where+=(--project="$PROJECT")
fi
tpu_vm() {  # gcloud compute tpus tpu-vm SUBCOMMAND ..., in this zone and project.
  local subcommand=$1
  shift
  run gcloud compute tpus tpu-vm "$subcommand" "$@" "${where[@]}"
}
on_all_workers() {  # Runs one shell command line on every worker of the slice, in parallel.
  tpu_vm ssh "$TPU_NAME" --worker=all --command="$1"
}

# 1. The slice.
if [ "$SKIP_CREATE" != 1 ]; then
  create=(create "$TPU_NAME" --accelerator-type="$ACCELERATOR" --version="$RUNTIME_VERSION")
  if [ "$SPOT" = 1 ]; then
    create+=(--spot)
  fi
  tpu_vm "${create[@]}"
fi

# 2. The code, on every worker, and 3. its installation (JAX for TPUs and the GCS filesystem packages).
if [ "$SKIP_INSTALL" != 1 ]; then
  if [ -n "$GIT_URL" ]; then
    on_all_workers "rm -rf $remote_dir && git clone --depth 1 --branch $(printf '%q' "$GIT_REF") $(printf '%q' "$GIT_URL") $remote_dir"
  else
    repo=$(cd "$(dirname "$0")/../.." && pwd)
    bundle=${TMPDIR:-/tmp}/animejax-code.tar.gz
    run tar -czf "$bundle" -C "$repo" --exclude=.git --exclude=.venv --exclude=build --exclude='*.egg-info' .
    tpu_vm scp "$bundle" "$TPU_NAME":animejax-code.tar.gz --worker=all
    on_all_workers "rm -rf $remote_dir && mkdir $remote_dir && tar -xzf animejax-code.tar.gz -C $remote_dir"
  fi
  on_all_workers "cd $remote_dir && python3 -m venv .venv && .venv/bin/pip install -q -U pip && .venv/bin/pip install -q -e '.[tpu,gcs]'"
fi

# 4. Training: the same command on every worker.
args=(--distributed --config="$config" --workdir="$workdir")
if [ -n "$DATA_PATH" ]; then
  args+=(--config.data.source=folder --config.data.path="$DATA_PATH")
fi
args+=("$@")
command_line="cd $remote_dir && .venv/bin/python -m animejax.main"
for arg in "${args[@]}"; do
  command_line+=" $(printf '%q' "$arg")"
done
on_all_workers "$command_line"
echo "animejax: delete the slice when done: gcloud compute tpus tpu-vm delete $TPU_NAME ${where[*]}"
