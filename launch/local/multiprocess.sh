#!/usr/bin/env bash
# Train with N processes on this machine, each with its own simulated CPU devices: a rehearsal of a multi-host
# run (SLURM, Cloud TPU) that needs one computer.
#   launch/local/multiprocess.sh [--dry-run] N CONFIG WORKDIR [--config.a.b=value ...]
#   launch/local/multiprocess.sh 2 configs/vae.py:cpu runs/vae_2proc --config.train.num_steps=100
# Environment: DEVICES_PER_PROCESS (default 4) simulated devices per process; PORT of the coordinator on
# 127.0.0.1 (default: a free one); PYTHON (default python); DRY_RUN=1 (or --dry-run) prints the commands only.
# Waits for every process. When one fails, the others are stopped (they also stop themselves when a process
# dies, with status 69) and the first failure's exit status is returned (a 69 yields to the failure it
# reported); 0 when all succeed. SIGTERM or Ctrl-C stops every process after the same step with a checkpoint
# (exit 75); rerun the same command to resume.
set -euo pipefail

usage="usage: launch/local/multiprocess.sh [--dry-run] N CONFIG WORKDIR [overrides...]"
dry_run=${DRY_RUN:-0}
if [[ ${1:-} == --dry-run ]]; then
  dry_run=1
  shift
fi
num=${1:?$usage}
config=${2:?$usage}
workdir=${3:?$usage}
shift 3
if ! [[ $num =~ ^[1-9][0-9]*$ ]]; then
  echo "multiprocess.sh: N must be a positive number of processes, got '$num'" >&2
  exit 2
fi
devices_flag=--xla_force_host_platform_device_count=${DEVICES_PER_PROCESS:-4}
python=${PYTHON:-python}
grace_s=10 # After stopping the others, how long they get before SIGKILL.
# animejax's statuses when another process of the run is gone (multihost.LOST_PROCESS_EXIT_CODE), and when it
# stopped on a signal after a checkpoint (train.INTERRUPTED_EXIT_CODE).
lost=69
interrupted=75
if [[ -n ${PORT:-} ]]; then
  port=$PORT
elif [[ $dry_run == 1 ]]; then
  port=PORT
else
  port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi

overrides=("$@")
xla_flags=$devices_flag
for flag in ${XLA_FLAGS:-}; do # Other XLA flags are kept; the device count is this script's.
  if [[ $flag != --xla_force_host_platform_device_count=* ]]; then xla_flags+=" $flag"; fi
done
command_of() { # I: sets `cmd` to the command line of process I.
  cmd=(env "XLA_FLAGS=$xla_flags" JAX_PLATFORMS=cpu
    "$python" -m animejax.main "--config=$config" "--workdir=$workdir" "--coordinator_address=127.0.0.1:$port"
    "--num_processes=$num" "--process_id=$1" "${overrides[@]}")
}
if [[ $dry_run == 1 ]]; then
  for ((i = 0; i < num; i++)); do
    command_of "$i"
    line=$(printf '%q ' "${cmd[@]}")
    echo "${line% }"
  done
  exit 0
fi

# Each line of process i's output starts with [i].
prefix() {
  local line
  while IFS= read -r line || [[ -n $line ]]; do printf '[%s] %s\n' "$1" "$line"; done
}

if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 501)); then
  echo "multiprocess.sh: needs bash 5.1 or newer (wait -p), this is $BASH_VERSION" >&2
  exit 2
fi
trap '' INT # Ctrl-C reaches every process from the terminal; this script waits for them to save and stop.
declare -A running # pid -> process index, while it runs.
for ((i = 0; i < num; i++)); do
  command_of "$i"
  "${cmd[@]}" > >(prefix "$i") 2> >(prefix "$i" >&2) &
  running[$!]=$i
done

stop_others() { # SIGNAL: sends it to every process still running.
  local pid
  for pid in "${!running[@]}"; do kill "-$1" "$pid" 2>/dev/null || true; done
}
trap 'stop_others TERM' TERM

status=0
killer=
while ((${#running[@]} > 0)); do
  code=0
  wait -n -p pid "${!running[@]}" || code=$?
  if [[ -z ${pid:-} ]]; then continue; fi # A trapped signal interrupted the wait.
  i=${running[$pid]}
  unset "running[$pid]"
  if ((code == interrupted)); then # Stopped by a signal after the checkpoint of the same step as the others.
    if ((status == 0)); then status=$code; fi
  elif ((code != 0 && (status == 0 || status == interrupted))); then
    status=$code
    echo "multiprocess.sh: process $i exited with status $code; stopping the others" >&2
    stop_others TERM
    (sleep "$grace_s" && stop_others KILL) &
    killer=$!
  elif ((status == lost && code != 0 && code != lost && code < 128)); then
    status=$code # Its own failure, noticed after another process's report of losing it.
  fi
done
if [[ -n $killer ]]; then kill "$killer" 2>/dev/null || true; fi
exit "$status"
