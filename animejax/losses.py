"""Pure loss primitives. Each returns one value per example: [B]."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _sum_per_example(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def gaussian_kl(mean: jax.Array, log_variance: jax.Array) -> jax.Array:
    """KL(N(mean, exp(log_variance)) || N(0, I)) summed over latent dims.

    Args:
      mean: [B, D].
      log_variance: [B, D].

    Returns:
      [B].
    """
    return 0.5 * _sum_per_example(jnp.square(mean) + jnp.exp(log_variance) - 1.0 - log_variance)


def squared_error(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """Sum of squared errors over all pixels: [B, ...] -> [B]."""
    return _sum_per_example(jnp.square(prediction - target))


def bernoulli_nll(logits: jax.Array, target: jax.Array) -> jax.Array:
    """Binary cross-entropy of targets in [0, 1] under Bernoulli(sigmoid(logits)), summed per example.

    Numerically stable form: max(l, 0) - l * t + log(1 + exp(-|l|)).
    """
    elementwise = jnp.maximum(logits, 0) - logits * target + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return _sum_per_example(elementwise)
