"""Run folders and what they logged: the saved config, checkpoints, best.json, TensorBoard scalars, a status.

Nothing here builds a model: these are the facts a report states about each run whether or not it can be
evaluated (a run without a checkpoint is still a row).
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import statistics
import tempfile

import ml_collections

from animejax import saved_config, storage, training_clock
from animejax.errors import UserError

# The eval fields that belong to the training run, not to the shared evaluation (see settings.py).
PER_RUN_EVAL_FIELDS = ("every_steps", "train_metrics", "train_num_images", "best_metric")
_GLOB_CHARACTERS = "*?["


class RunsError(UserError, ValueError):
    """--runs names no run, or a folder that is not a run."""


def resolve_runs(patterns: str) -> list[str]:
    """The run folders `patterns` names: comma-separated paths, URLs or globs (`runs/*`, `gs://b/runs/*`).

    Globs keep folders only; a folder listed by name must exist. Each folder must hold a config.json.

    Raises:
      RunsError: nothing matched, a listed folder is missing, or a folder has no config.json.
    """
    found: list[str] = []
    for pattern in (p.strip() for p in patterns.split(",")):
        if not pattern:
            continue
        if any(c in pattern for c in _GLOB_CHARACTERS):
            matches = _glob_folders(pattern)
            if not matches:
                raise RunsError(f"--runs: {pattern!r} matches no folder.")
            found += matches
        elif storage.as_path(pattern, "--runs").is_dir():
            found.append(pattern.rstrip("/"))
        else:
            raise RunsError(f"--runs: {pattern!r} is not a folder.")
    if not found:
        raise RunsError("--runs names no run folder: give paths or globs, e.g. --runs='runs/*'.")
    unique = list(dict.fromkeys(found))
    missing = [path for path in unique if not storage.as_path(storage.join(path, "config.json")).exists()]
    if missing:
        raise RunsError(
            f"Not run folders (no config.json, which training writes first): {', '.join(missing)}. "
            "Narrow --runs to run workdirs."
        )
    return unique


def _glob_folders(pattern: str) -> list[str]:
    if not storage.is_url(pattern):
        return sorted(path.rstrip("/") for path in glob.glob(os.path.expanduser(pattern)) if os.path.isdir(path))
    # A URL: glob below the part without glob characters, through etils.epath.
    parts = pattern.split("/")
    fixed = next(i for i, part in enumerate(parts) if any(c in part for c in _GLOB_CHARACTERS))
    root = storage.as_path("/".join(parts[:fixed]), "--runs")
    return sorted(os.fspath(path) for path in root.glob("/".join(parts[fixed:])) if path.is_dir())


def run_names(workdirs: list[str]) -> list[str]:
    """Short, distinct names: each folder's name, lengthened to a longer path tail only where names collide."""
    parts = [w.rstrip("/").split("/") for w in workdirs]
    depth = [1] * len(parts)
    while True:
        names = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clashes = [i for i, name in enumerate(names) if names.count(name) > 1 and depth[i] < len(parts[i])]
        if not clashes:
            return names
        for i in clashes:
            depth[i] += 1


@dataclasses.dataclass
class Series:
    """One logged scalar of a run: parallel lists of step, training wall-clock seconds at that point, value."""

    steps: list[int] = dataclasses.field(default_factory=list)
    seconds: list[float] = dataclasses.field(default_factory=list)
    values: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class TrainingLog:
    """The scalars of a run's training sessions (event files holding train/* scalars).

    Attributes:
      scalars: tag -> Series, the last value per step (a resumed session re-logging a step replaces it).
      sessions: the training sessions (one event file each, as each start of training opens one).
      wall_clock_s: the sum over sessions of first event to last scalar, so time between sessions is left out.
      images_per_second: the median logged `perf/images_per_second` (None when none was logged).
      non_finite: "tag at step k" for each non-finite logged train/* value.
    """

    scalars: dict[str, Series]
    sessions: int
    wall_clock_s: float | None
    images_per_second: float | None
    non_finite: list[str]


def read_training_log(workdir: str) -> TrainingLog:
    """Reads the run's TensorBoard event files with tensorboard's own reader (no TensorFlow needed).

    Event files of `--mode=eval` (no train/* scalars) are left out: their wall times are not training time.
    """
    folder = storage.as_path(workdir)
    files = sorted(entry for entry in folder.iterdir() if entry.name.startswith("events.out.tfevents"))
    points: dict[str, dict[int, tuple[float, float]]] = {}
    offset, sessions, rates, non_finite = 0.0, 0, [], []
    for path in files:
        start, events = _read_events(path)
        if not any(tag.startswith("train/") for _, _, tag, _ in events):
            continue
        sessions += 1
        end = start
        for wall_time, step, tag, value in events:
            end = max(end, wall_time)
            points.setdefault(tag, {})[step] = (offset + wall_time - start, value)
            if tag == "perf/images_per_second" and math.isfinite(value):
                rates.append(value)
            if tag.startswith("train/") and not math.isfinite(value):
                non_finite.append(f"{tag} at step {step}")
        offset += end - start
    scalars = {}
    for tag, by_step in points.items():
        steps = sorted(by_step)
        scalars[tag] = Series(steps, [by_step[s][0] for s in steps], [by_step[s][1] for s in steps])
    return TrainingLog(
        scalars=scalars,
        sessions=sessions,
        wall_clock_s=offset if sessions else None,
        images_per_second=statistics.median(rates) if rates else None,
        non_finite=non_finite,
    )


def _read_events(path) -> tuple[float, list[tuple[float, int, str, float]]]:
    """(the file's first wall time, [(wall time, step, tag, value)] of its numeric scalars)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    local = os.fspath(path)
    tmp = None
    if storage.is_url(path):  # tensorboard's reader opens local files only without TensorFlow.
        tmp = tempfile.NamedTemporaryFile(suffix=path.name, delete=False)
        tmp.write(path.read_bytes())
        tmp.close()
        local = tmp.name
    try:
        start, out = None, []
        for event in EventFileLoader(local).Load():
            start = event.wall_time if start is None else start
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    number = float(value.simple_value)
                elif value.HasField("tensor"):  # clu's TensorFlow writer stores scalars as tensors.
                    array = tensor_util.make_ndarray(value.tensor)
                    if array.size != 1 or array.dtype.kind not in "fiu":
                        continue  # Images, text.
                    number = float(array.reshape(()))
                else:
                    continue
                out.append((event.wall_time, int(event.step), value.tag, number))
        return (start or 0.0), out
    finally:
        if tmp is not None:
            os.remove(tmp.name)


def checkpoint_steps(workdir: str, folder: str = "checkpoints") -> list[int]:
    """The steps saved under workdir/<folder> (Orbax's numbered step folders), ascending."""
    path = storage.as_path(storage.join(workdir, folder))
    if not path.is_dir():
        return []
    return sorted(int(entry.name) for entry in path.iterdir() if entry.name.isdigit() and entry.is_dir())


def best_record(workdir: str) -> dict | None:
    """workdir/best/best.json ({"step", "metric", "value"}) when the run kept a best checkpoint, else None."""
    import json

    path = storage.as_path(storage.join(workdir, "best", "best.json"))
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if record.get("step") in checkpoint_steps(workdir, "best") else None


def training_process_running(workdir: str) -> bool:
    """Whether a process on this machine is training `workdir` (its command line names the folder).

    Only local processes are visible: a run on another machine is judged by its files alone.
    """
    target = os.fspath(workdir).rstrip("/")
    absolute = target if storage.is_url(target) else os.path.abspath(target)
    own = os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc") if os.path.isdir("/proc") else ()):
        if int(pid) == own:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "--mode=compare" in args or not any("animejax" in arg for arg in args):
            continue
        if any(arg.endswith(("=" + target, "=" + absolute)) or arg in (target, absolute) for arg in args):
            if not any(arg in ("--mode=eval", "--mode=sample", "--mode=upscale") for arg in args):
                return True
    return False


@dataclasses.dataclass
class RunInfo:
    """A run folder's facts, before any evaluation."""

    workdir: str
    name: str
    config: ml_collections.ConfigDict
    checkpoints: list[int]
    best: dict | None
    log: TrainingLog

    @property
    def model(self) -> str:
        """The method, and its network family where the config names one: "dcgan (dcgan)", "vae (conv)"."""
        arch = self.config.model.get("arch", "") if "model" in self.config else ""
        return f"{self.config.method} ({arch})" if arch else str(self.config.method)

    def status(self) -> str:
        """complete | complete (time budget) | running | crashed/stopped | diverged | no checkpoint, with reasons."""
        num_steps = int(self.config.train.num_steps)
        last = self.checkpoints[-1] if self.checkpoints else None
        notes = []
        if self.log.non_finite:
            notes.append(f"diverged: non-finite {', '.join(self.log.non_finite[:3])}")
        if training_process_running(self.workdir):
            notes.append(f"running (step {last or 0} of {num_steps} saved)")
        elif last is None:
            notes.append("no checkpoint")
        elif last < num_steps and training_clock.budget_stop_step(self.workdir) == last:
            notes.append(f"complete (time budget spent at step {last} of {num_steps})")
        elif last < num_steps:
            notes.append(f"stopped at step {last} of {num_steps}, no training process found (crashed or killed)")
        return "; ".join(notes) or "complete"


def load_run(workdir: str, name: str) -> RunInfo:
    """The facts of one run folder (its config.json must exist: `resolve_runs` checked)."""
    return RunInfo(
        workdir=workdir,
        name=name,
        config=saved_config.get_config(workdir),
        checkpoints=checkpoint_steps(workdir),
        best=best_record(workdir),
        log=read_training_log(workdir),
    )
