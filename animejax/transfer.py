"""Starting a run from another run's weights (`train.init_from`): transfer learning and fine-tuning.

The new run takes the networks of the source checkpoint (parameters, batch statistics, EMAs and whatever else
its state holds, e.g. StyleGAN2's w average) with a fresh optimizer state, step 0 and its own key, so its
learning-rate schedule, EMA ramp-up and data order start over. Fields a method lists in `transfer_exclude`
(StyleGAN2's ADA probability and path-length mean) are fresh too. It applies only when the run's own workdir has
no checkpoint yet: once the new run has saved, it resumes from its own checkpoints.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import orbax.checkpoint as ocp

from animejax import checkpoint, storage
from animejax.errors import UserError

FRESH_FIELDS = ("step", "rng")


class InitFromError(UserError, ValueError):
    """`train.init_from` names no readable checkpoint."""


def _manager_and_step(source: str) -> tuple[ocp.CheckpointManager, int]:
    """A workdir (its latest checkpoint) or one checkpoint folder `<workdir>/checkpoints/<step>` (local or URL)."""
    path = storage.check_reachable(source, "train.init_from")
    if (path / "checkpoints").is_dir():
        folder, step = path / "checkpoints", None
    elif path.name.isdigit() and path.is_dir():
        folder, step = path.parent, int(path.name)
    else:
        raise InitFromError(
            f"train.init_from={source!r} is neither a run's workdir (with a checkpoints/ folder) nor a checkpoint "
            "folder such as runs/dcgan/checkpoints/20000."
        )
    manager = ocp.CheckpointManager(folder, item_handlers={"state": ocp.StandardCheckpointHandler()})
    step = manager.latest_step() if step is None else step
    if step is None or step not in manager.all_steps():
        raise InitFromError(f"train.init_from={source!r}: no complete checkpoint under {folder}.")
    return manager, step


def transferred_fields(state: Any, exclude: tuple[str, ...]) -> list[str]:
    """The state fields taken from the source: all but step, rng, optimizer states and `exclude`."""
    names = [field.name for field in dataclasses.fields(state)]
    return [n for n in names if n not in FRESH_FIELDS and not n.endswith("opt_state") and n not in exclude]


@dataclasses.dataclass(frozen=True)
class Source:
    """A checkpoint `train.init_from` names, checked to fit this config's networks (from `checked_source`)."""

    name: str  # train.init_from as given.
    manager: ocp.CheckpointManager
    step: int


def checked_source(source: str, abstract_state: Any) -> Source:
    """The checkpoint at `source`, read as far as its metadata (no arrays), whose tensors fit `abstract_state`.

    Raises:
      InitFromError: no checkpoint at `source`.
      checkpoint.CheckpointMismatchError: the source's tensors differ in shape from this config's (another
        resolution, width or family), naming the first ones.
    """
    manager, step = _manager_and_step(source)
    problems = checkpoint._shape_mismatches(manager.item_metadata(step)["state"], abstract_state)
    if problems:
        raise checkpoint.CheckpointMismatchError(
            f"train.init_from={source!r} (step {step}) does not fit this config: the networks must have the "
            f"same shapes. Tensors that differ (first 5): {'; '.join(problems[:5])}."
        )
    return Source(source, manager, step)


def initialise_from(source: Source, fresh_state: Any, abstract_state: Any, exclude: tuple[str, ...] = ()) -> Any:
    """`fresh_state` with the networks of the checked checkpoint `source` (see the module docstring)."""
    manager, step = source.manager, source.step
    fields = transferred_fields(fresh_state, exclude)
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))["state"]
    manager.close()
    logging.info(
        "Initialised from %s (step %d): %s taken; optimizer state, step and key fresh",
        source.name,
        step,
        ", ".join(fields),
    )
    return fresh_state.replace(**{name: getattr(restored, name) for name in fields})
