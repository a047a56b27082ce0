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
"""

from __future__ import annotations

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
        self.gp_weight = config.gan.gp_weight

    def discriminator_loss(self, d_params, d_stats, real: jax.Array, fake: jax.Array, rng: jax.Array):
        """Mean Wasserstein critic loss plus the weighted gradient penalty; returns (loss, (d_stats, metrics))."""
        real_rng, fake_rng, interpolate_rng = jax.random.split(rng, 3)
        real, fake = self.augment(real, real_rng), self.augment(fake, fake_rng)
        real_scores, d_stats = self.discriminator(d_params, d_stats, real, True)
        fake_scores, d_stats = self.discriminator(d_params, d_stats, fake, True)

        def critic(x):
            return self.discriminator(d_params, d_stats, x, True)[0]

        points = losses.random_interpolates(real, fake, interpolate_rng)
        penalty, norms = losses.gradient_penalty(critic, points)
        critic_loss = jnp.mean(losses.wasserstein_critic_loss(real_scores, fake_scores))
        loss = critic_loss + self.gp_weight * jnp.mean(penalty)
        metrics = {
            "train/loss_d": loss,
            "train/d_real": jnp.mean(real_scores),
            "train/d_fake": jnp.mean(fake_scores),
            "train/wasserstein": -critic_loss,
            "train/gp": jnp.mean(penalty),
            "train/gp_grad_norm": jnp.mean(norms),
        }
        return loss, (d_stats, metrics)

    def generator_adversarial_loss(self, fake_outputs: jax.Array) -> jax.Array:
        """-f(fake): [B] -> [B]."""
        return losses.wasserstein_generator_loss(fake_outputs)
