"""What training, sampling and evaluation share: the mesh, this process's data, the method and its state."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from animejax import checkpoint, evaluation, methods, sharding, transfer, validation
from animejax.data import pipeline
from animejax.methods.base import Method


@dataclasses.dataclass
class RunSetup:
    """A run's mesh, data, method and state (restored from the latest checkpoint, or fresh)."""

    config: ml_collections.ConfigDict
    shardings: sharding.MeshShardings
    images: np.ndarray  # This process's decoded images, uint8 [N, S, S, 3].
    source: Any  # The ImageSource they came from (name and fingerprint key metric caches).
    local_batch: int
    method: Method
    checkpointer: checkpoint.Checkpointer
    state: Any
    restored: bool


def setup_run(config: ml_collections.ConfigDict, workdir: str) -> RunSetup:
    """Validates the config, builds the mesh and method, loads data, and creates or restores the train state.

    Nothing is written (no cache, no workdir) before the config, the devices and the network sizes check out.
    """
    validation.validate(config)
    shardings = sharding.make_mesh(config.mesh.num_devices)
    local_batch = sharding.local_batch_size(config.train.batch_size, shardings)
    method = methods.get_method(config)
    root_key = jax.random.PRNGKey(config.seed)
    size = config.data.image_size
    example = {"image": jnp.zeros((local_batch, size, size, 3), jnp.float32)}
    try:
        abstract_state = jax.eval_shape(method.init_state, root_key, example)
    except (ValueError, TypeError) as error:
        raise validation.network_size_error(config, error) from None
    abstract_state = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=shardings.replicated), abstract_state
    )

    images, source = pipeline.load_images(config.data, jax.process_index(), jax.process_count())
    pipeline.check_enough_images(images, local_batch, _data_description(config.data))
    checkpointer = checkpoint.Checkpointer(workdir, config)
    state = checkpointer.restore_latest(abstract_state)
    restored = state is not None
    if not restored:
        init = jax.jit(method.init_state, out_shardings=shardings.replicated)
        state = init(root_key, example)
        if config.train.get("init_from"):
            state = transfer.initialise_from(config.train.init_from, state, abstract_state, method.transfer_exclude)
    return RunSetup(config, shardings, images, source, local_batch, method, checkpointer, state, restored)


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
