"""Sampling any generator of latents: previews, grids, interpolation strips and `generate`.

It needs only `synthesize(state, latents, rng) -> images` and the latent shape,
so a family with its own state and synthesis (truncation, style mixing,
per-layer noise drawn from `rng`) reuses it unchanged.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from animejax.errors import ConfigError

Synthesize = Callable[[Any, jax.Array, jax.Array], jax.Array]


def slerp(start: jax.Array, end: jax.Array, weights: jax.Array) -> jax.Array:
    """Spherical interpolation between latent pairs (linear where they are parallel).

    Args:
      start: [R, D].
      end: [R, D].
      weights: [T] in [0, 1].

    Returns:
      [R, T, D]; weight 0 gives `start`, 1 gives `end`.
    """
    unit_start = start / jnp.linalg.norm(start, axis=-1, keepdims=True)
    unit_end = end / jnp.linalg.norm(end, axis=-1, keepdims=True)
    cos = jnp.clip(jnp.sum(unit_start * unit_end, axis=-1), -1.0, 1.0)[:, None, None]
    omega = jnp.arccos(cos)
    t = weights[None, :, None]
    sin = jnp.sin(omega)
    parallel = sin < 1e-6
    safe_sin = jnp.where(parallel, 1.0, sin)
    w_start = jnp.where(parallel, 1.0 - t, jnp.sin((1.0 - t) * omega) / safe_sin)
    w_end = jnp.where(parallel, t, jnp.sin(t * omega) / safe_sin)
    return w_start * start[:, None] + w_end * end[:, None]


def lerp(start: jax.Array, end: jax.Array, weights: jax.Array) -> jax.Array:
    """Linear interpolation: start [R, D], end [R, D], weights [T] -> [R, T, D]."""
    t = weights[None, :, None]
    return (1.0 - t) * start[:, None] + t * end[:, None]


INTERPOLATIONS = {"slerp": slerp, "lerp": lerp}


class LatentSampler:
    """Images from latents z ~ N(0, I) through `synthesize`.

    Args:
      synthesize: (state, latents [B, *latent_shape], rng) -> images [B, S, S, 3] in [-1, 1], the generator
        used for samples (the EMA one, say).
      latent_shape: the shape of one latent, e.g. (latent_dim,).
      sample: `config.sample` (grid_size, num_interpolations, interpolation_steps, interpolation).
    """

    def __init__(self, synthesize: Synthesize, latent_shape: tuple[int, ...], sample: ml_collections.ConfigDict):
        if sample.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"Unknown sample.interpolation {sample.interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}."
            )
        self.synthesize = synthesize
        self.latent_shape = tuple(latent_shape)
        self.grid_size = sample.grid_size
        self.num_interpolations = sample.num_interpolations
        self.interpolation_steps = sample.interpolation_steps
        self.interpolate = INTERPOLATIONS[sample.interpolation]

    def noise(self, rng: jax.Array, count: int) -> jax.Array:
        """z ~ N(0, I): [count, *latent_shape]."""
        return jax.random.normal(rng, (count, *self.latent_shape))

    def latents(self, rng: jax.Array, count: int) -> tuple[jax.Array, jax.Array]:
        """The latents `generate` draws from `rng`, and the key it hands to `synthesize`."""
        latent_rng, synthesis_rng = jax.random.split(rng)
        return self.noise(latent_rng, count), synthesis_rng

    def generate(self, state: Any, rng: jax.Array, batch_size: int) -> jax.Array:
        """[batch_size, S, S, 3] in [-1, 1] from fresh latents; pure, jit-able (batch_size static)."""
        return self.synthesize(state, *self.latents(rng, batch_size))

    def grid(self, state: Any, rng: jax.Array) -> jax.Array:
        """grid_size^2 images; with the same key every time, the fixed-noise grid that shows training progress."""
        return self.generate(state, rng, self.grid_size * self.grid_size)

    def interpolations(self, state: Any, rng: jax.Array) -> jax.Array:
        """`sample.num_interpolations` rows of `sample.interpolation_steps` images between random latent pairs.

        Returns:
          [rows * steps, S, S, 3], row-major.
        """
        start_rng, end_rng, synthesis_rng = jax.random.split(rng, 3)
        size = math.prod(self.latent_shape)
        start = self.noise(start_rng, self.num_interpolations).reshape(-1, size)
        end = self.noise(end_rng, self.num_interpolations).reshape(-1, size)
        latents = self.interpolate(start, end, jnp.linspace(0.0, 1.0, self.interpolation_steps))
        return self.synthesize(state, latents.reshape(-1, *self.latent_shape), synthesis_rng)

    def sample_grids(self, state: Any, rng: jax.Array) -> dict[str, tuple[np.ndarray, int]]:
        """The grids --mode=sample writes: {"samples": (grid, columns), "interpolations": (strip, columns)}."""
        grid_rng, interpolation_rng = jax.random.split(rng)
        return {
            "samples": (np.asarray(jax.jit(self.grid)(state, grid_rng)), self.grid_size),
            "interpolations": (
                np.asarray(jax.jit(self.interpolations)(state, interpolation_rng)),
                self.interpolation_steps,
            ),
        }
