#!/usr/bin/env bash
# Train every model config on one dataset with one budget, then compare them in one report (ROOT/report).
#   launch/compare_all.sh ROOT [options]            e.g. launch/compare_all.sh runs/compare
#   launch/compare_all.sh --dry-run ROOT [options]  (or DRY_RUN=1): print the commands instead of running them
# Options (python -m animejax.report.train_all --help): --budget=quick|images:N|minutes:M, --models=a,b,
# --variant=quick|cpu|'' (full models), --data=builtin|FOLDER, --metrics=swd,..., --eval_images=N,
# --detector=lbpcascade_animeface.xml, --inception=WEIGHTS, --set=FIELD=VALUE (every model).
# The default, quick budget trains the ten :quick models on the built-in data in under an hour on 2 CPU cores.
# Rerunning the same command resumes: complete runs are skipped, interrupted ones continue.
set -euo pipefail
dry_run=${DRY_RUN:-0}
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi
root=${1:?usage: launch/compare_all.sh [--dry-run] ROOT [options]}
shift
command=(python -m animejax.report.train_all --root="$root" "$@")
if [ "$dry_run" = 1 ]; then
  command+=(--dry_run)
fi
exec "${command[@]}"
