"""Orbax checkpoints of a run's train state, and the config saved beside them.

`<workdir>/config.json` records the config of the run's latest training session;
`<workdir>/checkpoints/<step>/` holds the state (params, optimizer, EMA, step,
PRNG key: the data position follows from the step). Restoring into a config
whose shapes differ raises `CheckpointMismatchError` naming the config fields
and the first tensor that differ, instead of silently starting from zero.

A checkpoint that cannot be read (truncated data, an emptied or deleted
metadata file) is damaged, not a config change: the run resumes from the
newest step that restores, warns naming both steps, and moves the damaged
step aside to `<workdir>/checkpoints_damaged/` (never deleting it).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from animejax import multihost, storage
from animejax.errors import UserError


class CheckpointMismatchError(UserError, ValueError):
    """A checkpoint written by a config with different shapes."""


class DamagedCheckpointsError(UserError, RuntimeError):
    """Every checkpoint of a run is unreadable."""


def _flatten_config(tree: Any, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten_config(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_differences(saved: dict, current: dict) -> list[str]:
    """'field: saved -> current' for each differing leaf of two config dicts."""
    saved_flat, current_flat = _flatten_config(saved), _flatten_config(current)
    keys = sorted(set(saved_flat) | set(current_flat))
    return [
        f"{k}: {saved_flat.get(k, '<absent>')!r} -> {current_flat.get(k, '<absent>')!r}"
        for k in keys
        if saved_flat.get(k) != current_flat.get(k)
    ]


def _leaf_shapes(tree: Any) -> dict[str, tuple]:
    """'a/b/c' -> shape for every leaf; dataclass fields and dict keys are spelled alike."""
    shapes = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        names = [str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in path]
        shapes["/".join(names)] = tuple(leaf.shape)
    return shapes


def _shape_mismatches(saved_tree: Any, abstract_state: Any) -> list[str]:
    saved, wanted = _leaf_shapes(saved_tree), _leaf_shapes(abstract_state)
    problems = [f"{k}: absent from the checkpoint" for k in wanted if k not in saved]
    problems += [f"{k}: in the checkpoint, absent from this config's state" for k in saved if k not in wanted]
    problems += [
        f"{k}: checkpoint {saved[k]} vs config {wanted[k]}" for k in wanted if k in saved and saved[k] != wanted[k]
    ]
    return problems


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


class Checkpointer:
    """Saves every N steps and on demand, keeps the last K, restores the latest."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict):
        self.workdir = storage.as_path(workdir, "--workdir")  # A local folder or a bucket URL (gs://...).
        self.config_path = self.workdir / "config.json"
        self.config_dict = json.loads(config.to_json_best_effort())
        options = ocp.CheckpointManagerOptions(max_to_keep=config.checkpoint.max_to_keep, create=True)
        self.manager = ocp.CheckpointManager(
            self.workdir / "checkpoints",
            options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler()},
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def write_config(self) -> None:
        """Records the run's config beside the checkpoints (process 0 only)."""
        if jax.process_index() == 0:
            storage.write_text(self.config_path, json.dumps(self.config_dict, indent=2, sort_keys=True))

    def saved_config(self) -> dict | None:
        if not self.config_path.exists():
            return None
        return json.loads(self.config_path.read_text())

    def restore_latest(self, abstract_state: Any) -> Any | None:
        """The newest checkpoint that restores, with `abstract_state`'s shardings, or None if there is none.

        Damaged newer steps are moved aside with a warning (see the module docstring).

        Raises:
          CheckpointMismatchError: when a readable checkpoint's tensors do not fit this config.
          DamagedCheckpointsError: when no checkpoint can be read (nothing is moved then).
        """
        damaged = []
        # Every process tries the steps process 0 sees, and a step counts as readable only where all of them
        # read it: processes that disagreed would restore different states and deadlock in the first collective.
        for step in multihost.process_zero_list(sorted(self.manager.all_steps(), reverse=True)):
            why = None
            try:
                saved_tree = self.manager.item_metadata(step)["state"]
                if saved_tree is None or not jax.tree.leaves(saved_tree):
                    raise ValueError("its metadata lists no tensors")
            except Exception as error:  # Orbax and tensorstore raise many types for unreadable files.
                why = f"unreadable metadata ({_first_line(error)})"
            if not multihost.all_processes(why is None):
                damaged.append((step, why or "unreadable metadata in another process"))
                continue
            self._check_shapes(step, saved_tree, abstract_state)
            try:
                args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
                restored = self.manager.restore(step, args=args)["state"]
            except Exception as error:
                why = f"unreadable data ({_first_line(error)})"
            if not multihost.all_processes(why is None):
                damaged.append((step, why or "unreadable data in another process"))
                continue
            self._set_aside(damaged, step)
            logging.info("Restored checkpoint at step %d from %s", step, self.manager.directory)
            return restored
        if damaged:
            listing = "; ".join(f"step {step}: {why}" for step, why in damaged)
            raise DamagedCheckpointsError(
                f"No checkpoint under {self.manager.directory} can be read ({listing}). Move that folder away to "
                "start again from scratch, or restore it from a backup."
            )
        return None

    def _check_shapes(self, step: int, saved_tree: Any, abstract_state: Any) -> None:
        problems = _shape_mismatches(saved_tree, abstract_state)
        if problems:
            changed = config_differences(self.saved_config() or {}, self.config_dict)
            raise CheckpointMismatchError(
                f"The checkpoint at step {step} in {self.manager.directory} does not fit this config.\n"
                f"Config fields changed since that run: {'; '.join(changed) or 'none recorded'}.\n"
                f"Tensors that differ (first 5): {'; '.join(problems[:5])}.\n"
                "Resume with the original values, or start a new run with another --workdir."
            )

    def _set_aside(self, damaged: list[tuple[int, str]], restored_step: int) -> None:
        """Moves damaged steps to <workdir>/checkpoints_damaged/<step>-<time> and warns; never deletes."""
        if not damaged:
            return
        aside = self.workdir / "checkpoints_damaged"
        for step, why in damaged:
            target = aside / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
            if jax.process_index() == 0:
                aside.mkdir(parents=True, exist_ok=True)
                (self.workdir / "checkpoints" / str(step)).rename(target)
            logging.warning(
                "Checkpoint step %d is damaged (%s); resuming from step %d instead. The damaged step was moved to %s.",
                step,
                why,
                restored_step,
                target,
            )
        self.manager.reload()

    def save(self, step: int, state: Any, force: bool = False) -> None:
        """Saves asynchronously; `force` saves even off the manager's interval (preemption, end)."""
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)), force=force)

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


class BestCheckpointer:
    """Keeps the one state with the best eval metric under workdir/best, with best.json naming it."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict):
        self.directory = storage.as_path(workdir, "--workdir") / "best"
        self.record_path = self.directory / "best.json"
        options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers={"state": ocp.StandardCheckpointHandler()}
        )
        self.record = None
        if self.record_path.exists():
            self.record = json.loads(self.record_path.read_text())

    def is_better(self, value: float, lower_is_better: bool) -> bool:
        if self.record is None:
            return True
        return value < self.record["value"] if lower_is_better else value > self.record["value"]

    def save(self, step: int, state: Any, metric: str, value: float) -> None:
        """Saves `state` as the new best (replacing the previous one) and records why."""
        if step in self.manager.all_steps():  # A resumed run re-evaluating a step it had passed before.
            self.manager.delete(step)
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)), force=True)
        self.manager.wait_until_finished()
        self.record = {"step": int(step), "metric": metric, "value": float(value)}
        if jax.process_index() == 0:
            storage.write_text(self.record_path, json.dumps(self.record, indent=2))
        logging.info("New best %s = %.5g at step %d, saved under %s", metric, value, step, self.directory)

    def close(self) -> None:
        self.manager.close()
