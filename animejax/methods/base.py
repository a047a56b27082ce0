"""What every training method provides to the generic loop in `animejax.train`.

A method owns its networks, losses and optimizers. The loop only calls:

- `init_state(rng, images) -> state`: pure; jitted with replicated outputs.
- `train_step(state, images, rng) -> (state, metrics)`: pure; jitted once with
  the state donated. `images` is float32 [B, S, S, 3] in [-1, 1], sharded on
  the batch axis; `metrics` maps flat names ("train/loss") to scalars.
- `preview(state, images, rng) -> {name: images}`: grids logged while
  training, images float in [-1, 1].
- `generate(state, rng, batch_size) -> images`: pure, jit-able; the samples
  that metrics (FID, KID, SWD, detection rate) score, float in [-1, 1].
- `sample(state, data, rng) -> {name: images}`: what `--mode=sample` writes.
- `evaluate(state, batches) -> {name: float}`: what `--mode=eval` reports.
- optionally `on_log(step, scalars)`: called with the averaged scalars at each
  log step (host side), e.g. to warn when a GAN's discriminator wins outright.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Protocol

import jax
import numpy as np


class Method(Protocol):
    """The interface above; see the module docstring."""

    def init_state(self, rng: jax.Array, images: jax.Array) -> Any: ...

    def train_step(self, state: Any, images: jax.Array, rng: jax.Array) -> tuple[Any, Mapping[str, jax.Array]]: ...

    def preview(self, state: Any, images: jax.Array, rng: jax.Array) -> Mapping[str, jax.Array]: ...

    def generate(self, state: Any, rng: jax.Array, batch_size: int) -> jax.Array: ...

    def sample(self, state: Any, data: Iterable[np.ndarray], rng: jax.Array) -> Mapping[str, np.ndarray]: ...

    def evaluate(self, state: Any, batches: Iterable[np.ndarray]) -> Mapping[str, float]: ...
