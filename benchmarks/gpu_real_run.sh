#!/usr/bin/env bash
# A real training run on the GPU machine, for what a lease leaves after benchmarks/gpu_suite.sh: trains CONFIG on
# the faces benchmarks/gpu_faces.sh put in .faces/ for SECONDS of training (train.time_budget_s), then scores the
# run (SWD and the anime-face detection rate; FID and KID need the Inception weights, which that machine cannot
# download) and samples it. Metrics, logs, TensorBoard events and sample grids go to $OUT, not the checkpoints.
#   benchmarks/gpu_real_run.sh [CONFIG=ddpm] [SECONDS=240] [--config.a.b=value ...]
# With the device tool: run(command="benchmarks/gpu_real_run.sh ddpm 240", carry=[".whl", ".faces"]).
# EVAL_IMAGES (default 10000) sets the generated images SWD scores; FACES another faces folder than .faces;
# WORKDIR the run's folder (default /tmp/animejax_real_run); PYTHON the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-ddpm}
seconds=${2:-240}
shift $(($# < 2 ? $# : 2))
out=${OUT:-/tmp/animejax_gpu_real_run}
faces=${FACES:-.faces}
if [[ ! -f $faces/lbpcascade_animeface.xml ]]; then
  echo "$0: no $faces/lbpcascade_animeface.xml: run benchmarks/gpu_faces.sh here first and carry .faces" >&2
  exit 1
fi
# shellcheck source=benchmarks/gpu_machine.sh
source benchmarks/gpu_machine.sh
workdir=${WORKDIR:-/tmp/animejax_real_run}
mkdir -p "$out"
gpu_line | tee "$out/machine.txt"
data=(--config.data.source=folder --config.data.path="$faces/images")
started=$(date +%s)
"$python" -m animejax.main --config="$config" --workdir="$workdir" "${data[@]}" \
  --config.train.time_budget_s="$seconds" "$@" 2>&1 | tee "$out/train.log"
"$python" -m animejax.main --workdir="$workdir" --mode=eval --config.eval.metrics=swd,detection \
  --config.eval.num_images="${EVAL_IMAGES:-10000}" --config.eval.swd_num_images="${EVAL_IMAGES:-10000}" \
  --config.eval.detector_path="$faces/lbpcascade_animeface.xml" 2>&1 | tee "$out/eval.log"
"$python" -m animejax.main --workdir="$workdir" --mode=sample --config.sample.num_individual=0 2>&1 \
  | tee "$out/sample.log"
echo "wall: $(($(date +%s) - started)) s" | tee -a "$out/eval.log"
cp "$workdir"/config.json "$workdir"/eval_*.json "$out"/
cp "$workdir"/training_time.json "$out"/ 2>/dev/null || true
(cd "$workdir" && find . -name 'events.out.tfevents*' -o -path './samples/*.png' -o -path './samples/*.gif' \
  | grep -v sample_individual | tar -cf - -T -) | tar -xf - -C "$out"
