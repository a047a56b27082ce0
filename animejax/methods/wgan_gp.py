"""WGAN-GP (Gulrajani et al. 2017): the Wasserstein objective with a gradient penalty, on the shared GAN step.

Only the objective differs from `gan.GANMethod`: the critic minimises
mean f(fake) - mean f(real) + gp_weight * mean (|grad f(x_hat)| - 1)^2 on
random interpolates x_hat of the (augmented) real and fake batches, and the
generator minimises -mean f(fake). The n_critic critic updates per generator
update happen inside the one jitted step (see gan.py). The critic must treat
examples independently (no batch norm: `model.d_normalization` "layer" or
"none"), or the per-example input gradients of the penalty would be wrong.
The paper's optimizer is Adam(1e-4, b1=0, b2=0.9) for both networks
(configs/wgan_gp.py).

Metrics: train/d_real and train/d_fake are raw critic means, train/wasserstein
their difference (the critic's estimate of W1), train/gp the penalty and
train/gp_grad_norm the mean input-gradient norm at the interpolates.

The penalty's gradient is a second-order one (the critic's input gradient,
differentiated in its parameters); `gan.gp_gradient` picks how it is taken
(`losses.parameter_gradient_penalty`; all choices are exact). "auto" takes
"forward_over_reverse" on the CPU, where the reverse-over-reverse graph is
several times slower (BENCHMARKS.md, "CPU parity"), and the plain
reverse-over-reverse elsewhere. Two approximations are options, off by
default: `gan.gp_batch_fraction` < 1 penalises only that leading fraction of
the interpolates, and `gan.gp_interval` = k > 1 penalises only every k-th
step, with weight k * gp_weight (lazy regularisation, as StyleGAN2's R1);
the two kinds of step are compiled separately (`phase`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from animejax.errors import ConfigError
from animejax.methods import losses
from animejax.methods.gan import GANMethod


class WGANGPMethod(GANMethod):
    """Wasserstein GAN with gradient penalty; network family from `model.arch`."""

    scores_are_logits = False

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        if config.model.d_normalization == "batch":
            raise ConfigError(
                "wgan_gp's critic cannot use batch norm (the gradient penalty needs per-example gradients); "
                "set model.d_normalization to layer or none."
            )
        gan = config.gan
        self.gp_weight = gan.gp_weight
        self.gp_gradient = losses.resolve_penalty_gradient(gan.get("gp_gradient", "auto"), "gan.gp_gradient")
        self.gp_batch_fraction = gan.get("gp_batch_fraction", 1.0)
        if not 0.0 < self.gp_batch_fraction <= 1.0:
            raise ConfigError(f"gan.gp_batch_fraction must be in (0, 1], got {self.gp_batch_fraction}.")
        self.gp_interval = gan.get("gp_interval", 1)
        if self.gp_interval < 1:
            raise ConfigError(f"gan.gp_interval must be at least 1, got {self.gp_interval}.")
        self._penalise = True  # Set by train_step while its phase is traced.

    def phase(self, step: int) -> str | None:
        """Step phase: "penalty" or "no_penalty" with a lazy penalty (`gan.gp_interval` > 1), else None (one phase)."""
        if self.gp_interval == 1:
            return None
        return "penalty" if step % self.gp_interval == 0 else "no_penalty"

    def train_step(self, state, batch, rng: jax.Array, frozen: Any = None, phase: str | None = None):
        """GANMethod's step; in the "no_penalty" phase the critic loss has no gradient penalty."""
        # discriminator_loss reads the flag while this phase's step is traced (once per compiled phase).
        self._penalise = phase != "no_penalty"
        try:
            return super().train_step(state, batch, rng, frozen)
        finally:
            self._penalise = True

    def penalty_points(self, real: jax.Array, fake: jax.Array, rng: jax.Array) -> jax.Array:
        """The interpolates the penalty is taken at: the leading `gp_batch_fraction` of the batch (at least one)."""
        count = max(1, math.ceil(self.gp_batch_fraction * real.shape[0]))
        return losses.random_interpolates(real[:count], fake[:count], rng)

    def discriminator_loss(self, d_params, d_stats, real: jax.Array, fake: jax.Array, rng: jax.Array):
        """Mean Wasserstein critic loss plus the weighted gradient penalty; returns (loss, (d_stats, metrics))."""
        real_rng, fake_rng, interpolate_rng = jax.random.split(rng, 3)
        real, fake = self.augment(real, real_rng), self.augment(fake, fake_rng)
        real_scores, d_stats = self.discriminator(d_params, d_stats, real, True)
        fake_scores, d_stats = self.discriminator(d_params, d_stats, fake, True)

        critic_loss = jnp.mean(losses.wasserstein_critic_loss(real_scores, fake_scores))
        metrics = {
            "train/d_real": jnp.mean(real_scores),
            "train/d_fake": jnp.mean(fake_scores),
            "train/wasserstein": -critic_loss,
        }
        loss = critic_loss
        if self._penalise:

            def critic(params, x):
                return self.discriminator(params, d_stats, x, True)[0]

            points = self.penalty_points(real, fake, interpolate_rng)
            penalty, norms = losses.parameter_gradient_penalty(critic, d_params, points, formulation=self.gp_gradient)
            loss = loss + self.gp_interval * self.gp_weight * jnp.mean(penalty)
            metrics["train/gp"], metrics["train/gp_grad_norm"] = jnp.mean(penalty), jnp.mean(norms)
        metrics["train/loss_d"] = loss
        return loss, (d_stats, metrics)

    def generator_adversarial_loss(self, fake_outputs: jax.Array) -> jax.Array:
        """-f(fake): [B] -> [B]."""
        return losses.wasserstein_generator_loss(fake_outputs)
