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

from animejax.errors import ConfigError


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
    return _penalty_of_gradients(grads, target)


def _penalty_of_gradients(grads: jax.Array, target: float) -> tuple[jax.Array, jax.Array]:
    squared = jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1)
    norms = jnp.sqrt(squared + 1e-12)  # The epsilon keeps the norm's gradient finite at zero.
    return jnp.square(norms - target), norms


PENALTY_GRADIENTS = ("reverse_over_reverse", "forward_over_reverse", "reverse_over_forward")


def resolve_penalty_gradient(name: str, field: str) -> str:
    """The formulation `name` names in config field `field`; "auto" is "forward_over_reverse" on the CPU.

    On XLA:CPU reverse-over-reverse differentiates the input gradient's convolutions into window-reversed ones,
    which run as a naive loop (BENCHMARKS.md, "CPU parity"); elsewhere plain autodiff recomputes nothing.

    Raises:
      ConfigError: an unknown name.
    """
    if name == "auto":
        return "forward_over_reverse" if jax.default_backend() == "cpu" else "reverse_over_reverse"
    if name not in PENALTY_GRADIENTS:
        raise ConfigError(f"Unknown {field} {name!r}; choose one of {', '.join(('auto',) + PENALTY_GRADIENTS)}.")
    return name


def input_gradient(
    fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    points: jax.Array,
    formulation: str = "reverse_over_reverse",
) -> jax.Array:
    """grad_x sum fn(params, x) at x = points, differentiable in params and points, with a choice of how.

    A loss of this gradient (a gradient penalty, R1, StyleGAN2's path length) needs its mixed second
    derivative: for the cotangent v of g = grad_x S, S = sum fn(params, x), the VJP is grad_(params, x) <g, v>.
    The formulations compute exactly that, in different op patterns:
    - "reverse_over_reverse": plain autodiff of the gradient (reverse mode over reverse mode);
    - "forward_over_reverse": d/de grad_(params, x) S(params, x + e v) at e = 0 (a JVP of the gradient);
    - "reverse_over_forward": grad_(params, x) of the JVP <grad_x S, v> = d/de S(params, x + e v).
    The last two are a custom VJP that recomputes fn's forward pass in the backward pass.
    """

    def summed(p, x):
        return jnp.sum(fn(p, x))

    if formulation == "reverse_over_reverse":
        return jax.grad(summed, argnums=1)(params, points)
    if formulation not in PENALTY_GRADIENTS:
        raise ValueError(f"Unknown penalty gradient formulation {formulation!r}; choose one of {PENALTY_GRADIENTS}.")

    @jax.custom_vjp
    def gradient(p, x):
        return jax.grad(summed, argnums=1)(p, x)

    def forward(p, x):
        return jax.grad(summed, argnums=1)(p, x), (p, x)

    def backward(residuals, v):
        p, x = residuals
        if formulation == "forward_over_reverse":
            return jax.jvp(lambda y: jax.grad(summed, argnums=(0, 1))(p, y), (x,), (v,))[1]
        return jax.grad(lambda q, y: jax.jvp(lambda z: summed(q, z), (y,), (v,))[1], argnums=(0, 1))(p, x)

    gradient.defvjp(forward, backward)
    return gradient(params, points)


def parameter_gradient_penalty(
    critic_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    points: jax.Array,
    target: float = 1.0,
    formulation: str = "reverse_over_reverse",
) -> tuple[jax.Array, jax.Array]:
    """`gradient_penalty` of `critic_fn(params, .)`, its gradient taken per `formulation` (`input_gradient`).

    Returns:
      (penalty [B], gradient norm [B]), as `gradient_penalty`.
    """
    return _penalty_of_gradients(input_gradient(critic_fn, params, points, formulation), target)


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
