"""Pure loss primitives: reconstruction, KL, non-saturating and Wasserstein GAN losses, gradient penalty, L1.

Every function takes arrays (or a critic apply function) and returns one value
per example, [B], unless its docstring says otherwise; methods average them.
Logits are raw discriminator outputs (before the sigmoid); critic scores are
raw WGAN critic outputs.
"""

from __future__ import annotations

from typing import Any, Callable

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


def ns_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """The discriminator's cross-entropy: -log sigmoid(real) - log(1 - sigmoid(fake)).

    Written with softplus, stable for any logit: softplus(-real) + softplus(fake).

    Args:
      real_logits: [B] discriminator logits on real images.
      fake_logits: [B] discriminator logits on generated images.

    Returns:
      [B].
    """
    return jax.nn.softplus(-real_logits) + jax.nn.softplus(fake_logits)


def ns_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """The non-saturating generator loss of Goodfellow et al.: -log sigmoid(fake) = softplus(-fake).

    Args:
      fake_logits: [B] discriminator logits on generated images.

    Returns:
      [B].
    """
    return jax.nn.softplus(-fake_logits)


def wasserstein_critic_loss(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
    """The critic's Wasserstein loss, to minimise: f(fake) - f(real).

    Its negated batch mean estimates the Wasserstein-1 distance when f is 1-Lipschitz.

    Args:
      real_scores: [B] critic scores on real images.
      fake_scores: [B] critic scores on generated images.

    Returns:
      [B].
    """
    return fake_scores - real_scores


def wasserstein_generator_loss(fake_scores: jax.Array) -> jax.Array:
    """The generator's Wasserstein loss: -f(fake).

    Args:
      fake_scores: [B] critic scores on generated images.

    Returns:
      [B].
    """
    return -fake_scores


def random_interpolates(real: jax.Array, fake: jax.Array, rng: jax.Array) -> jax.Array:
    """Points eps * real + (1 - eps) * fake, eps ~ U[0, 1] drawn once per example (Gulrajani et al.).

    Args:
      real: [B, ...] real images.
      fake: [B, ...] generated images.
      rng: PRNG key for eps.

    Returns:
      [B, ...], like `real`.
    """
    eps = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    return eps * real + (1.0 - eps) * fake


def gradient_penalty(
    critic_fn: Callable[[jax.Array], jax.Array], points: jax.Array, target: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """(|grad_x f(x)|_2 - target)^2 at each point, and the gradient norms.

    The per-example input gradient is taken as the gradient of sum_b f(x_b),
    which is exact only when the critic treats examples independently (no
    batch normalization): WGAN-GP critics must not use it. Differentiable in
    the critic's parameters (the penalty's own gradient is a second-order one).

    Args:
      critic_fn: x [B, ...] -> scores [B].
      points: [B, ...] where to evaluate the input gradient.
      target: the wanted gradient norm (1 for WGAN-GP).

    Returns:
      (penalty [B], gradient norm [B]).
    """
    grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(points)
    squared = jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1)
    norms = jnp.sqrt(squared + 1e-12)  # The epsilon keeps the norm's gradient finite at zero.
    return jnp.square(norms - target), norms


PENALTY_GRADIENTS = ("reverse_over_reverse", "forward_over_reverse", "reverse_over_forward")


def parameter_gradient_penalty(
    critic_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    points: jax.Array,
    target: float = 1.0,
    formulation: str = "reverse_over_reverse",
) -> tuple[jax.Array, jax.Array]:
    """`gradient_penalty` of `critic_fn(params, .)`, with a choice of how its gradient is taken.

    The penalty's gradient needs the mixed second derivative of S = sum_b f(params, x_b): for the cotangent
    v = dL/dg of g = grad_x S, it is grad_params <grad_x S, v> (and grad_x <grad_x S, v> for the points).
    The formulations compute exactly that, in different op patterns:
    - "reverse_over_reverse": autodiff through `gradient_penalty` (reverse mode over the input gradient);
    - "forward_over_reverse": d/de grad_(params, x) S(params, x + e v) at e = 0 (a JVP of the gradient);
    - "reverse_over_forward": grad_(params, x) of the JVP <grad_x S, v> = d/de S(params, x + e v).
    The last two recompute the critic's forward pass in the backward pass (a custom VJP).

    Returns:
      (penalty [B], gradient norm [B]), as `gradient_penalty`.
    """
    if formulation == "reverse_over_reverse":
        return gradient_penalty(lambda x: critic_fn(params, x), points, target)
    if formulation not in PENALTY_GRADIENTS:
        raise ValueError(f"Unknown penalty gradient formulation {formulation!r}; choose one of {PENALTY_GRADIENTS}.")

    def summed(p, x):
        return jnp.sum(critic_fn(p, x))

    @jax.custom_vjp
    def penalty(p, x):
        return gradient_penalty(lambda y: critic_fn(p, y), x, target)

    def forward(p, x):
        grads = jax.grad(summed, argnums=1)(p, x)
        norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1) + 1e-12)
        return (jnp.square(norms - target), norms), (p, x, grads, norms)

    def backward(residuals, cotangents):
        p, x, grads, norms = residuals
        penalty_ct, norms_ct = cotangents
        per_norm = (2.0 * (norms - target) * penalty_ct + norms_ct) / norms
        v = grads * per_norm.reshape((-1,) + (1,) * (grads.ndim - 1))
        if formulation == "forward_over_reverse":
            return jax.jvp(lambda y: jax.grad(summed, argnums=(0, 1))(p, y), (x,), (v,))[1]
        return jax.grad(lambda q, y: jax.jvp(lambda z: summed(q, z), (y,), (v,))[1], argnums=(0, 1))(p, x)

    penalty.defvjp(forward, backward)
    return penalty(params, points)


def mean_absolute_error(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """Mean over all non-batch elements of |prediction - target| (the cycle-consistency L1).

    The mean, not the sum, so a cycle weight means the same for any latent
    size or resolution.

    Args:
      prediction: [B, ...].
      target: [B, ...], same shape.

    Returns:
      [B].
    """
    diff = jnp.abs(prediction - target)
    return jnp.mean(diff.reshape(diff.shape[0], -1), axis=-1)
