"""What training, sampling and evaluation share: the mesh, this process's data, the method and its state."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from animejax import checkpoint, evaluation, methods, sharding, storage, transfer, validation
from animejax.data import pipeline
from animejax.errors import UserError
from animejax.methods.base import Method


@dataclasses.dataclass
class RunSetup:
    """A run's mesh, data, method and state (restored from the latest checkpoint, or fresh)."""

    config: ml_collections.ConfigDict
    shardings: sharding.MeshShardings
    images: np.ndarray  # This process's decoded training images, uint8 [N, S, S, 3].
    source: Any  # The ImageSource they came from (name and fingerprint key metric caches).
    local_batch: int
    method: Method
    checkpointer: checkpoint.Checkpointer
    state: Any
    restored: bool
    # This process's share of the `data.holdout_images` kept out of training (uint8 [M, S, S, 3]), or None.
    holdout: np.ndarray | None = None


def setup_run(config: ml_collections.ConfigDict, workdir: str) -> RunSetup:
    """Validates the config, builds the mesh and method, loads data, and creates or restores the train state.

    Nothing is written (no cache, no workdir) before the config, the devices, the network sizes and a new run's
    train.init_from check out, nor before a bucket workdir's bucket is found.
    """
    validation.validate(config)
    storage.check_folder(workdir, "--workdir")
    shardings = sharding.make_mesh(config.mesh.num_devices)
    local_batch = sharding.local_batch_size(config.train.batch_size, shardings)
    method = methods.get_method(config)
    root_key = jax.random.PRNGKey(config.seed)
    example = _example_batch(config, local_batch)
    abstract_state = _abstract_state(method, config, shardings, local_batch)

    images, source = pipeline.load_images(config.data, jax.process_index(), jax.process_count())
    images, holdout = split_holdout(images, config.data.get("holdout_images", 0), jax.process_count())
    pipeline.check_enough_images(images, local_batch, _data_description(config.data))
    init_from, init_source = config.train.get("init_from"), None
    if init_from and not storage.as_path(storage.join(workdir, "checkpoints")).exists():
        # A new run: its source is checked before the workdir exists.
        init_source = transfer.checked_source(init_from, abstract_state)
    checkpointer = checkpoint.Checkpointer(workdir, config)
    state = checkpointer.restore_latest(abstract_state)
    restored = state is not None
    if not restored:
        init = jax.jit(method.init_state, out_shardings=shardings.replicated)
        state = init(root_key, example)
        if init_from:
            init_source = init_source or transfer.checked_source(init_from, abstract_state)
            state = transfer.initialise_from(init_source, state, abstract_state, method.transfer_exclude)
    return RunSetup(config, shardings, images, source, local_batch, method, checkpointer, state, restored, holdout)


def split_holdout(images: np.ndarray, holdout_images: int, process_count: int = 1):
    """(training images, held-out images or None): the last `holdout_images / process_count` of this process's.

    The split is a fixed function of the dataset (its last images), so a resumed or evaluated run holds out
    the same ones it trained without.
    """
    local = holdout_images // process_count
    if local <= 0:
        return images, None
    if local >= len(images):
        raise pipeline.sources.DataError(
            f"data.holdout_images={holdout_images} leaves no training images ({len(images) * process_count} in "
            "the dataset). Lower it or add images."
        )
    return images[: len(images) - local], images[len(images) - local :]


def holdout_batches(run: RunSetup, batch_size: int):
    """The held-out images in order, `{"image": float32 in [-1, 1]}` batches of up to `batch_size` (last shorter)."""
    if run.holdout is None:
        return
    for begin in range(0, len(run.holdout), batch_size):
        yield {"image": pipeline.to_model_range(np.asarray(run.holdout[begin : begin + batch_size]))}


def _example_batch(config: ml_collections.ConfigDict, local_batch: int) -> dict[str, jax.Array]:
    size = config.data.image_size
    return {"image": jnp.zeros((local_batch, size, size, 3), jnp.float32)}


def _abstract_state(method: Method, config: ml_collections.ConfigDict, shardings, local_batch: int) -> Any:
    """The state's shapes and dtypes (traced, not computed), replicated on the mesh."""
    try:
        abstract_state = jax.eval_shape(
            method.init_state, jax.random.PRNGKey(config.seed), _example_batch(config, local_batch)
        )
    except (ValueError, TypeError) as error:
        raise validation.network_size_error(config, error) from None
    return jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=shardings.replicated), abstract_state
    )


class NoCheckpointError(UserError, FileNotFoundError):
    """Sampling, evaluating or upscaling with a workdir that holds no checkpoint."""


def no_checkpoint_error(workdir: str) -> NoCheckpointError:
    """The error for a workdir without checkpoints, saying how to make one."""
    checkpoints = storage.as_path(workdir, "--workdir") / "checkpoints"
    return NoCheckpointError(
        f"No checkpoint under {checkpoints}; train first with --mode=train and the same --workdir."
    )


def check_has_checkpoints(workdir: str) -> None:
    """Raises `no_checkpoint_error` when `workdir` has no checkpoint folder; checked before anything is built,
    since a Checkpointer would create the folder."""
    if not (storage.check_folder(workdir, "--workdir") / "checkpoints").is_dir():
        raise no_checkpoint_error(workdir)


def restore_trained(config: ml_collections.ConfigDict, workdir: str) -> tuple[Method, Any]:
    """A trained run's method and latest state, without loading its data (its dataset may be elsewhere)."""
    check_has_checkpoints(workdir)
    validation.validate(config)
    shardings = sharding.make_mesh(config.mesh.num_devices)
    local_batch = sharding.local_batch_size(config.train.batch_size, shardings)
    method = methods.get_method(config)
    checkpointer = checkpoint.Checkpointer(workdir, config)
    state = checkpointer.restore_latest(_abstract_state(method, config, shardings, local_batch))
    checkpointer.close()
    if state is None:
        raise no_checkpoint_error(workdir)
    return method, state


def make_evaluator(run: RunSetup) -> evaluation.Evaluator:
    """The sample-quality evaluator for this run's data and mesh."""
    return evaluation.Evaluator(run.config.eval, run.shardings, run.images, run.source.name, run.source.fingerprint())


def host_batches(run: RunSetup, seed: int):
    """Endless batches of this process's images in model form, `{"image": float32 in [-1, 1]}`, unflipped."""
    dataset = pipeline.batch_dataset(run.images, run.local_batch, seed, random_flip=False)
    for images in pipeline.iterate_batches(dataset, 0, run.config.data.loader_threads, run.config.data.prefetch):
        yield {"image": pipeline.to_model_range(images)}


def _data_description(data: ml_collections.ConfigDict) -> str:
    return f"data.source={data.source}" + (f" at {data.path!r}" if data.path else "")
