"""Training wall-clock across sessions, and the time budget (`train.time_budget_s`) it enforces.

`<workdir>/training_time.json` holds, for each saved step, the seconds spent training up to it over all
sessions (grids and in-training evaluations left out, as in `perf/images_per_second`; compilation counted), and
the step where the budget ran out. A resumed run starts its clock from the restored step's entry, so a budget
holds across interruptions. A run stopped by its budget is complete: rerunning it trains no further unless the
budget is raised.
"""

from __future__ import annotations

import json
import logging
import time

import jax

from animejax import storage

FILE_NAME = "training_time.json"


def read_record(workdir: str) -> dict:
    """The run's training_time.json ({"seconds_at_step": {step: s}, "budget_s", "budget_spent_at_step"}) or {}."""
    path = storage.as_path(storage.join(workdir, FILE_NAME))
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:  # A file cut short by a kill mid-write: the clock restarts from zero, said so.
        logging.warning("%s is unreadable; training time restarts from 0 s.", path)
        return {}


class TrainingClock:
    """Seconds of training of one run over all its sessions, from the restored step on.

    Call `pause(seconds)` for side work, `save(step)` when a checkpoint of `step` is written.
    """

    def __init__(self, workdir: str, start_step: int, budget_s: float):
        self.workdir, self.budget_s = workdir, float(budget_s)
        self.record = read_record(workdir)
        self.record.setdefault("seconds_at_step", {})
        if self.budget_s and start_step and str(start_step) not in self.record["seconds_at_step"]:
            logging.warning("No training time recorded for step %d: the time budget counts from 0 s now.", start_step)
        self.spent_before = float(self.record["seconds_at_step"].get(str(start_step), 0.0)) if start_step else 0.0
        self.start = time.monotonic()

    def pause(self, seconds: float) -> None:
        """Leaves `seconds` of side work out of the training time."""
        self.start += seconds

    def seconds(self) -> float:
        """Training seconds up to now, over all sessions."""
        return self.spent_before + time.monotonic() - self.start

    def budget_spent(self) -> bool:
        """Whether `train.time_budget_s` (0 = none) has run out."""
        return self.budget_s > 0 and self.seconds() >= self.budget_s

    def save(self, step: int, budget_stop: bool = False) -> None:
        """Records the training time at `step` (a checkpoint's), and whether the budget ended the run there."""
        self.record["seconds_at_step"][str(step)] = round(self.seconds(), 3)
        self.record["budget_s"] = self.budget_s
        if budget_stop:
            self.record["budget_spent_at_step"] = step
        elif self.record.get("budget_spent_at_step") is not None and step > self.record["budget_spent_at_step"]:
            self.record["budget_spent_at_step"] = None  # A raised budget trained on.
        if jax.process_index() == 0:
            storage.write_text(storage.join(self.workdir, FILE_NAME), json.dumps(self.record, indent=1))


def budget_stop_step(workdir: str) -> int | None:
    """The step where the run's time budget ended it, if it did."""
    return read_record(workdir).get("budget_spent_at_step")
