"""Trains every model config on one dataset with one budget, then compares them in one report.

    python -m animejax.report.train_all --root=runs/compare                       # :quick models, quick budget
    python -m animejax.report.train_all --root=runs/cmp --budget=images:200000 --variant= --data=/path/to/faces
    python -m animejax.report.train_all --root=runs/cmp --budget=minutes:30 --models=vae,dcgan,ddpm

(`launch/compare_all.sh` runs this.) Each model trains in its own process into `<root>/<model>`, its output
also in `<root>/<model>/train.log`. A model that fails is reported and the next one trains: the report marks it.
Rerunning the same command resumes: complete runs are skipped, interrupted ones continue from their checkpoint.

Budgets, the same for every model:
- `images:N`: N training images seen, so each model trains ceil(N / its batch size) steps, evaluated (the
  report's curves), checkpointed and previewed at fixed fractions of its run. Fields ending in `pretrain_steps`
  (SRGAN's SRResNet phase) keep their fraction of the run.
- `minutes:M`: M minutes of training each (`train.time_budget_s`; grids and evaluations do not count), with the
  config's own cadences; a run also ends at its `train.num_steps`, which `--set=train.num_steps=N` raises.
- `quick` (the default): `images:12800` on the `:quick` models, about 45 minutes on 2 CPU cores for all ten
  (RESULTS.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shlex
import signal
import subprocess
import sys
import time

from animejax import configs, saved_config, storage, training_clock
from animejax.errors import UserError
from animejax.report import runs as runs_lib

QUICK_IMAGES = 12_800
EVALUATIONS_PER_RUN = 4  # In-training evaluations of an images budget: the points of the report's curves.


class BudgetError(UserError, ValueError):
    """--budget is not quick, images:N or minutes:M."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """What every model gets: `images` seen, or `minutes` of training."""

    images: int = 0
    minutes: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Budget:
        kind, _, amount = text.partition(":")
        try:
            if kind == "quick" and not amount:
                return cls(images=QUICK_IMAGES)
            if kind == "images" and int(amount) > 0:
                return cls(images=int(amount))
            if kind == "minutes" and float(amount) > 0:
                return cls(minutes=float(amount))
        except ValueError:
            pass
        raise BudgetError(f"--budget={text!r}: use quick, images:N (images seen, N > 0) or minutes:M (M > 0).")

    def describe(self) -> str:
        return f"{self.images:,} training images each" if self.images else f"{self.minutes:g} minutes of training each"


def budget_overrides(config, budget: Budget) -> dict[str, object]:
    """The `--config.` overrides that give `config` (a model's config, its other overrides applied) `budget`."""
    if budget.minutes:
        out: dict[str, object] = {"train.time_budget_s": budget.minutes * 60}
        if not config.eval.every_steps:
            out["eval.every_steps"] = config.train.checkpoint_every
        return out
    steps = math.ceil(budget.images / config.train.batch_size)
    every = max(1, steps // EVALUATIONS_PER_RUN)
    out = {
        "train.num_steps": steps,
        "train.log_every": max(1, steps // 20),
        "train.sample_every": max(1, steps // 2),
        "train.checkpoint_every": every,
        "eval.every_steps": every,
    }
    for group_name, group in config.items():
        for field, value in group.items() if hasattr(group, "items") else ():
            if field.endswith("pretrain_steps") and value:
                fraction = value / config.train.num_steps
                out[f"{group_name}.{field}"] = min(steps - 1, round(steps * fraction))
    return out


def load_config(model: str, variant: str, overrides: dict[str, str]):
    """A packaged config with `--set` overrides, through the same parser as the command line."""
    from absl import flags
    from ml_collections import config_flags

    spec = configs.resolve(f"{model}:{variant}" if variant else model)
    argv = ["train_all", f"--config={spec}"] + [f"--config.{k}={v}" for k, v in overrides.items()]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=values, sys_argv=argv)  # Override flags come from argv.
    try:
        values(argv)
    except (flags.Error, AttributeError, KeyError) as error:
        raise UserError(f"{model}: bad --set override: {error}") from None
    return values.config


def parse_settings(items: list[str]) -> dict[str, str]:
    """FIELD=VALUE items (--set) -> {field: value}."""
    out = {}
    for item in items:
        field, equals, value = item.partition("=")
        if not equals or not field:
            raise UserError(f"--set={item!r}: write FIELD=VALUE, e.g. --set=train.batch_size=64.")
        out[field.removeprefix("config.")] = value
    return out


def train_command(model: str, variant: str, workdir: str, overrides: dict[str, object]) -> list[str]:
    spec = f"{model}:{variant}" if variant else model
    command = [sys.executable, "-m", "animejax.main", f"--config={spec}", f"--workdir={workdir}"]
    return command + [f"--config.{field}={_flag_value(value)}" for field, value in overrides.items()]


def _flag_value(value: object) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def run_logged(command: list[str], log_path: str) -> int:
    """Runs `command`, its output both on this terminal and in `log_path`; returns its exit status.

    SIGINT/SIGTERM go to the child, which saves a checkpoint and stops; then they stop this runner too.
    """
    print("+ " + shlex.join(command), flush=True)
    with open(log_path, "a") as log:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # Progress lines as they come, not when a buffer fills.
        child = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
        )
        forward = lambda signum, frame: child.send_signal(signum)  # noqa: E731
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for line in child.stdout:
                sys.stdout.write(line)
                log.write(line)
            return child.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m animejax.report.train_all", description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="runs go to ROOT/<model>, the report to ROOT/report")
    parser.add_argument("--budget", default="quick", help="quick | images:N | minutes:M (default quick)")
    parser.add_argument("--models", default="", help="comma-separated config names (default: every packaged one)")
    parser.add_argument("--variant", default=None, help="config variant of every model (default quick; '' = full)")
    parser.add_argument("--data", default="builtin", help="builtin (offline, drawn faces) or a folder of images")
    parser.add_argument("--metrics", default="swd", help="metrics of the in-training and final evaluations")
    parser.add_argument("--eval_images", type=int, default=1024, help="generated images behind each final metric")
    parser.add_argument("--detector", default="", help="local lbpcascade_animeface.xml (adds the detection rate)")
    parser.add_argument("--inception", default="", help="local FID Inception weights file (adds FID and KID)")
    parser.add_argument("--set", action="append", default=[], help="FIELD=VALUE override of every model's config")
    parser.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    try:
        return _train_all(args)
    except UserError as error:
        print(f"train_all: error: {error}", file=sys.stderr)
        return 1


def _shared_settings(args) -> tuple[dict[str, object], list[str]]:
    """(the overrides every model trains with, the metrics of the final evaluation) from the command's flags."""
    metrics = [m for m in args.metrics.split(",") if m]
    shared: dict[str, object] = parse_settings(args.set)
    if args.data != "builtin":
        if not os.path.isdir(args.data) and not storage.is_url(args.data):
            raise UserError(f"--data={args.data!r} is not a folder of images (or 'builtin').")
        shared.update({"data.source": "folder", "data.path": _absolute(args.data)})
    if args.detector:
        shared["eval.detector_path"] = _absolute(args.detector)
        metrics += [] if "detection" in metrics else ["detection"]
    if args.inception:
        shared["eval.inception_path"] = _absolute(args.inception)
        metrics += [m for m in ("fid", "kid") if m not in metrics]
    shared["eval.train_metrics"] = ",".join(m for m in metrics if m != "detection") or "swd"
    shared["eval.best_metric"] = "fid" if "fid" in metrics else "swd"
    return shared, metrics


def _compare_command(args, models: list[str], metrics: list[str], shared: dict[str, object]) -> list[str]:
    """`--mode=compare` over the models' runs, every metric on --eval_images samples."""
    n = args.eval_images
    command = [sys.executable, "-m", "animejax.main", "--mode=compare"]
    command += ["--runs=" + ",".join(os.path.join(args.root, m) for m in models)]
    command += ["--out=" + os.path.join(args.root, "report"), "--config.eval.metrics=" + ",".join(metrics)]
    for field in ("num_images", "swd_num_images", "kid_num_images", "detection_num_images"):
        command.append(f"--config.eval.{field}={n}")
    command += [f"--config.eval.kid_subset_size={min(1000, n)}", f"--config.eval.batch_size={min(250, n)}"]
    return command + [f"--config.eval.{k[len('eval.') :]}={v}" for k, v in shared.items() if k.endswith("_path")]


def _train_all(args) -> int:
    budget = Budget.parse(args.budget)
    variant = "quick" if args.variant is None else args.variant
    models = [m.strip() for m in args.models.split(",") if m.strip()] or list(configs.available())
    unknown = [m for m in models if m not in configs.available()]
    if unknown:
        raise UserError(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(configs.available())}.")
    shared, metrics = _shared_settings(args)

    print(f"Training {len(models)} models ({', '.join(models)}) with {budget.describe()}, into {args.root}", flush=True)
    outcomes = {}
    for model in models:
        workdir = os.path.join(args.root, model)
        config = load_config(model, variant, shared)
        overrides = {**shared, **budget_overrides(config, budget)}
        command = train_command(model, variant, workdir, overrides)
        if os.path.exists(os.path.join(workdir, "config.json")) and _finished(workdir, overrides):
            print(f"{model}: already trained with this budget, skipped", flush=True)
            outcomes[model] = "trained earlier"
            continue
        if args.dry_run:
            print("+ " + shlex.join(command))
            continue
        os.makedirs(workdir, exist_ok=True)
        start = time.monotonic()
        status = run_logged(command, os.path.join(workdir, "train.log"))
        minutes = (time.monotonic() - start) / 60
        outcomes[model] = f"exit {status} after {minutes:.1f} min"
        print(f"{model}: {outcomes[model]}", flush=True)
        if status == 75:  # Stopped by a signal after saving: stop here, rerunning resumes.
            print("Interrupted: rerun the same command to continue.", flush=True)
            return 75

    compare = _compare_command(args, models, metrics, shared)
    if args.dry_run:
        print("+ " + shlex.join(compare))
        return 0
    status = run_logged(compare, os.path.join(args.root, "compare.log"))
    for model, outcome in outcomes.items():
        print(f"  {model}: {outcome}")
    print(f"Report: {os.path.join(args.root, 'report', 'report.md')} (exit {status})", flush=True)
    return status


def _absolute(path: str) -> str:
    """Local paths absolute, so the saved configs hold wherever the runs are evaluated from later."""
    return path if storage.is_url(path) else os.path.abspath(path)


def _finished(workdir: str, overrides: dict[str, object]) -> bool:
    """Whether the run at `workdir` has trained this budget: its last checkpoint reached the budget's steps, or
    this time budget ended it there (a larger budget trains it on)."""
    checkpoints = runs_lib.checkpoint_steps(workdir)
    if not checkpoints:
        return False
    steps = int(overrides.get("train.num_steps", saved_config.get_config(workdir).train.num_steps))
    if checkpoints[-1] >= steps:
        return True
    record = training_clock.read_record(workdir)
    budget = overrides.get("train.time_budget_s")
    return (
        budget is not None
        and record.get("budget_s") == float(budget)
        and (record.get("budget_spent_at_step") == checkpoints[-1])
    )


if __name__ == "__main__":
    sys.exit(main())
