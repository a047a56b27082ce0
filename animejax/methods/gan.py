"""Adversarial training: the GAN state, objective and step shared by DCGAN, residual DCGAN, its cycle variant.

One jitted `train_step(state, images, rng)` updates the discriminator, then the
generator (and the encoder of the cycle variant), as the PyTorch DCGAN
example does:

1. z ~ N(0, I) [B, latent_dim]; fake = G(z) with batch statistics, computed
   once with `jax.vjp` so the generator step reuses its forward pass.
2. `gan.n_critic - 1` extra discriminator updates, each on fresh noise, then
   one on `fake`, all on the same real batch: a step consumes one batch
   whatever n_critic is (the loop's data position and images/s stay per
   step; WGAN-GP's critic sees each real batch n_critic times, with fresh
   fakes, interpolates and augmentations each time). The updates are
   unrolled in the graph: as a `lax.scan` XLA:CPU ran them 4-6x slower. The
   D metrics reported are those of the last update.
3. The generator (+ encoder) update against the updated discriminator: the
   adversarial loss on D(fake), plus `gan.cycle_lambda * |E(fake) - z|_1` and
   `gan.cycle_image_lambda * |G(E(x)) - x|_1` when the encoder is on.
4. EMA of the generator's parameters and batch-norm statistics, which
   `preview`, `sample` and `evaluate` use.

Keys are split by purpose from the step's key. Batch norm inside jit with a
batch sharded over devices computes statistics of the global batch, so any
number of devices gives the same step as one. Running statistics of D are
updated by each of its forward passes in train mode (real, fake, and the
generator step's fake), as PyTorch's modules in train mode do.

The networks come from `animejax.models.gan_networks` by `model.arch`, so
every GAN method takes either family. The non-saturating loss (softplus of
logits) is defined here; `wgan_gp.py` overrides the two objective hooks.
Sampling (previews, grids, interpolations, `generate`) is
`latent_sampling.LatentSampler` over `synthesize`.
"""

from __future__ import annotations

from typing import Any, Iterable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from animejax import models
from animejax.errors import ConfigError
from animejax.methods import augment, losses
from animejax.methods.base import Batch, LoopCallback, Method, Samples
from animejax.methods.common import apply_module, ema_decay, ema_update, optimizer_step, split_variables
from animejax.methods.latent_sampling import LatentSampler
from animejax.methods.monitors import StallMonitor
from animejax.methods.optim import learning_rate_schedule, make_optimizer
from animejax.models import dcgan


@flax.struct.dataclass
class GANState:
    """Generator, discriminator (and encoder) with their optimizers, and the generator's EMA.

    Attributes:
      step: int32 scalar, number of generator updates taken.
      g_params, g_batch_stats: the generator's parameters and batch-norm running statistics.
      d_params, d_batch_stats: the discriminator's parameters and its 'batch_stats'
        collection (batch norm, spectral norm's power-iteration vectors); {} when empty.
      e_params: the encoder's parameters for the cycle loss; {} when off.
      g_ema_params, g_ema_batch_stats: exponential moving averages of the generator's.
      g_opt_state, d_opt_state, e_opt_state: optax states ({} for the absent encoder).
      rng: uint32 [2] root PRNG key of the run; step keys are folded from it.
    """

    step: jax.Array
    g_params: Any
    g_batch_stats: Any
    d_params: Any
    d_batch_stats: Any
    e_params: Any
    g_ema_params: Any
    g_ema_batch_stats: Any
    g_opt_state: optax.OptState
    d_opt_state: optax.OptState
    e_opt_state: optax.OptState
    rng: jax.Array


class GANMethod(Method):
    """Non-saturating GAN on the networks of `model.arch`; see the module docstring."""

    progress_grid = "samples_fixed"
    # Whether D's outputs are logits (so D(real)/D(fake) metrics are probabilities).
    scores_are_logits = True

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        gan = config.gan
        self.networks = models.gan_networks(config)
        self.latent_dim = config.model.latent_dim
        self.init_std = config.model.init_std
        self.n_critic = gan.n_critic
        if self.n_critic < 1:
            raise ConfigError(f"gan.n_critic must be at least 1, got {self.n_critic}.")
        self.cycle_lambda = gan.cycle_lambda
        self.cycle_image_lambda = gan.cycle_image_lambda
        self.use_encoder = bool(self.cycle_lambda or self.cycle_image_lambda)
        if self.use_encoder and self.networks.encoder is None:
            raise ConfigError(
                f"The cycle loss needs an encoder; model family {config.model.arch!r} has none (use resdcgan)."
            )
        augment.parse_policy(gan.diffaugment)  # Fails early on unknown names.
        self.diffaugment = gan.diffaugment
        self.sample_batch_statistics = gan.sample_batch_statistics
        self.stall_monitor = StallMonitor(gan.stall_d_real_above, gan.stall_d_fake_below, gan.stall_patience)

        num_steps = config.train.num_steps
        self.tx_g = make_optimizer(config.optim, num_steps)
        self.tx_d = make_optimizer(config.optim_d, num_steps * self.n_critic)  # n_critic updates per step.
        self.learning_rate_g = learning_rate_schedule(config.optim, num_steps)
        self.learning_rate_d = learning_rate_schedule(config.optim_d, num_steps * self.n_critic)
        self.ema_decay = config.ema.decay
        self.ema_warmup = config.ema.warmup
        self.use_ema = config.sample.use_ema
        self.sampler = LatentSampler(self.synthesize, (self.latent_dim,), config.sample)

    # --- networks -------------------------------------------------------

    def init_state(self, rng: jax.Array, batch: Batch) -> GANState:
        """Fresh networks, optimizers and EMA; pure.

        The initialisers draw with the classic (non-partitionable) threefry: the
        state is born replicated, so nothing is lost, and XLA:CPU compiles this
        function about 5x faster than with the default partitionable form (about
        3 s instead of 15 s for a small DCGAN on 2 busy cores). Values are
        deterministic given `rng`, on any device count.
        """
        with jax.threefry_partitionable(False):
            return self._init_state(rng, batch["image"])

    def _init_state(self, rng: jax.Array, images: jax.Array) -> GANState:
        g_rng, d_rng, e_rng, g_init_rng, d_init_rng, state_rng = jax.random.split(rng, 6)
        nets = self.networks
        latents = jnp.zeros((images.shape[0], self.latent_dim), images.dtype)
        g_params, g_stats = split_variables(nets.generator.init(g_rng, latents, train=False))
        d_params, d_stats = split_variables(nets.discriminator.init(d_rng, images, train=False))
        if self.init_std:
            g_params = dcgan.dcgan_reinit(g_params, g_init_rng, self.init_std)
            d_params = dcgan.dcgan_reinit(d_params, d_init_rng, self.init_std)
        e_params = nets.encoder.init(e_rng, images, train=False)["params"] if self.use_encoder else {}
        return GANState(
            step=jnp.zeros((), jnp.int32),
            g_params=g_params,
            g_batch_stats=g_stats,
            d_params=d_params,
            d_batch_stats=d_stats,
            e_params=e_params,
            g_ema_params=g_params,
            g_ema_batch_stats=g_stats,
            g_opt_state=self.tx_g.init(g_params),
            d_opt_state=self.tx_d.init(d_params),
            e_opt_state=self.tx_g.init(e_params) if self.use_encoder else {},
            rng=state_rng,
        )

    def generator(self, params, stats, latents: jax.Array, train: bool):
        """G(latents) -> (images [B, S, S, 3] in (-1, 1), stats)."""
        return apply_module(self.networks.generator, params, stats, latents, train)

    def discriminator(self, params, stats, images: jax.Array, train: bool):
        """D(images) -> (logits or critic scores [B], stats)."""
        return apply_module(self.networks.discriminator, params, stats, images, train)

    def encoder(self, params, images: jax.Array) -> jax.Array:
        """E(images) -> latents [B, latent_dim]."""
        return self.networks.encoder.apply({"params": params}, images, train=True)

    def augment(self, images: jax.Array, rng: jax.Array) -> jax.Array:
        """DiffAugment of D's inputs (identity when `gan.diffaugment` is empty)."""
        return augment.diff_augment(images, rng, self.diffaugment) if self.diffaugment else images

    def noise(self, rng: jax.Array, count: int) -> jax.Array:
        """The step's z ~ N(0, I): [count, latent_dim]."""
        return self.sampler.noise(rng, count)

    # --- objective hooks (wgan_gp.py overrides them) ------------------------

    def discriminator_loss(self, d_params, d_stats, real: jax.Array, fake: jax.Array, rng: jax.Array):
        """Mean non-saturating D loss on (augmented) real and fake images.

        Args:
          d_params, d_stats: the discriminator's variables.
          real: [B, S, S, 3] in [-1, 1].
          fake: [B, S, S, 3], gradient stopped.
          rng: PRNG key (augmentation).

        Returns:
          (loss, (d_stats, metrics)).
        """
        real_rng, fake_rng = jax.random.split(rng)
        real_logits, d_stats = self.discriminator(d_params, d_stats, self.augment(real, real_rng), True)
        fake_logits, d_stats = self.discriminator(d_params, d_stats, self.augment(fake, fake_rng), True)
        loss = jnp.mean(losses.ns_discriminator_loss(real_logits, fake_logits))
        metrics = {
            "train/loss_d": loss,
            "train/d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
            "train/d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
        }
        return loss, (d_stats, metrics)

    def generator_adversarial_loss(self, fake_outputs: jax.Array) -> jax.Array:
        """Per-example adversarial loss of G from D's outputs on fakes: [B] -> [B]."""
        return losses.ns_generator_loss(fake_outputs)

    # --- the step ---------------------------------------------------------

    def _discriminator_update(self, d_params, d_stats, d_opt_state, real, fake, rng):
        """One optimizer step of D; returns ((d_params, d_stats, d_opt_state), metrics)."""
        grad_fn = jax.value_and_grad(self.discriminator_loss, has_aux=True)
        (_, (d_stats, metrics)), grads = grad_fn(d_params, d_stats, real, jax.lax.stop_gradient(fake), rng)
        d_params, d_opt_state = optimizer_step(self.tx_d, grads, d_opt_state, d_params)
        metrics["train/grad_norm_d"] = optax.tree.norm(grads)
        return (d_params, d_stats, d_opt_state), metrics

    def _generator_losses(self, fake, e_params, d_params, d_stats, latents, rng):
        """G's loss as a function of the fake images (and E's parameters); returns (loss, (d_stats, metrics))."""
        outputs, d_stats = self.discriminator(d_params, d_stats, self.augment(fake, rng), True)
        adversarial = jnp.mean(self.generator_adversarial_loss(outputs))
        metrics = {"train/loss_g_adversarial": adversarial} if self.use_encoder else {}
        loss = adversarial
        if self.cycle_lambda:
            cycle = jnp.mean(losses.mean_absolute_error(self.encoder(e_params, fake), latents))
            metrics["train/cycle_latent"] = cycle
            loss = loss + self.cycle_lambda * cycle
        return loss, (d_stats, metrics)

    def _image_cycle_loss(self, g_params, e_params, g_stats, real):
        """|G(E(x)) - x|_1 (mean per pixel) on real images; G's batch statistics are not kept."""
        decoded, _ = self.generator(g_params, g_stats, self.encoder(e_params, real), True)
        return jnp.mean(losses.mean_absolute_error(decoded, real))

    def ema_decay_at(self, step: jax.Array) -> jax.Array:
        """The EMA decay at `step`: `ema.decay`, or min(decay, (1 + step) / (10 + step)) with `ema.warmup`."""
        return ema_decay(step, self.ema_decay, self.ema_warmup)

    def _critic_updates(self, state: GANState, real: jax.Array, fake: jax.Array, extra_rng, critic_rng):
        """The n_critic D updates of a step: n_critic - 1 on fresh fakes, then one on `fake`; returns (d, metrics)."""
        d = (state.d_params, state.d_batch_stats, state.d_opt_state)
        # A Python loop, unrolled in the graph: XLA:CPU ran the same updates 4-6x slower as a lax.scan (while loop).
        for key in jax.random.split(extra_rng, self.n_critic)[1:]:
            fake_rng, update_rng = jax.random.split(key)
            other_fake, _ = self.generator(
                state.g_params, state.g_batch_stats, self.noise(fake_rng, real.shape[0]), True
            )
            d, _ = self._discriminator_update(*d, real, other_fake, update_rng)
        return self._discriminator_update(*d, real, fake, critic_rng)

    def _generator_gradients(self, state, g_vjp, fake, d_params, d_stats, latents, real, rng):
        """G's (and E's) gradients against the updated D; returns (g_grads, e_grads, d_stats, loss_g, metrics)."""
        grad_fn = jax.value_and_grad(self._generator_losses, argnums=(0, 1), has_aux=True)
        (loss_g, (d_stats, metrics)), (fake_grads, e_grads) = grad_fn(
            fake, state.e_params, d_params, d_stats, latents, rng
        )
        (g_grads,) = g_vjp(fake_grads)
        if self.cycle_image_lambda:
            image_fn = jax.value_and_grad(self._image_cycle_loss, argnums=(0, 1))
            image_cycle, (g_image, e_image) = image_fn(state.g_params, state.e_params, state.g_batch_stats, real)
            scale = self.cycle_image_lambda
            g_grads = jax.tree.map(lambda a, b: a + scale * b, g_grads, g_image)
            e_grads = jax.tree.map(lambda a, b: a + scale * b, e_grads, e_image)
            metrics["train/cycle_image"] = image_cycle
            loss_g = loss_g + scale * image_cycle
        return g_grads, e_grads, d_stats, loss_g, metrics

    def train_step(self, state: GANState, batch: Batch, rng: jax.Array, frozen: Any = None):
        """D update(s), then G (and E) update; see the module docstring and methods/base.py."""
        del frozen
        real = batch["image"]
        noise_rng, extra_critic_rng, critic_rng, generator_rng = jax.random.split(rng, 4)
        latents = self.noise(noise_rng, real.shape[0])

        def forward(g_params):
            return self.generator(g_params, state.g_batch_stats, latents, True)

        fake, g_vjp, g_stats = jax.vjp(forward, state.g_params, has_aux=True)
        (d_params, d_stats, d_opt_state), metrics = self._critic_updates(
            state, real, fake, extra_critic_rng, critic_rng
        )
        g_grads, e_grads, d_stats, loss_g, g_metrics = self._generator_gradients(
            state, g_vjp, fake, d_params, d_stats, latents, real, generator_rng
        )
        metrics.update(g_metrics)
        g_params, g_opt_state = optimizer_step(self.tx_g, g_grads, state.g_opt_state, state.g_params)
        e_params, e_opt_state = state.e_params, state.e_opt_state
        if self.use_encoder:
            e_params, e_opt_state = optimizer_step(self.tx_g, e_grads, state.e_opt_state, state.e_params)
            metrics["train/grad_norm_e"] = optax.tree.norm(e_grads)
        decay = self.ema_decay_at(state.step)
        metrics["train/loss_g"] = loss_g
        metrics["train/grad_norm_g"] = optax.tree.norm(g_grads)
        metrics["train/learning_rate_g"] = self.learning_rate_g(state.step)
        metrics["train/learning_rate_d"] = self.learning_rate_d(state.step * self.n_critic)
        new_state = state.replace(
            step=state.step + 1,
            g_params=g_params,
            g_batch_stats=g_stats,
            d_params=d_params,
            d_batch_stats=d_stats,
            e_params=e_params,
            g_ema_params=ema_update(state.g_ema_params, g_params, decay),
            g_ema_batch_stats=ema_update(state.g_ema_batch_stats, g_stats, decay),
            g_opt_state=g_opt_state,
            d_opt_state=d_opt_state,
            e_opt_state=e_opt_state,
        )
        return new_state, metrics

    def callbacks(self) -> list[LoopCallback]:
        """The stall warning, for discriminators whose outputs are probabilities."""
        return [self.stall_monitor] if self.scores_are_logits else []

    # --- sampling -------------------------------------------------------

    def sampling_variables(self, state: GANState) -> tuple[Any, Any]:
        """(params, batch stats) of the generator used for images: the EMA's unless `sample.use_ema` is off."""
        if self.use_ema:
            return state.g_ema_params, state.g_ema_batch_stats
        return state.g_params, state.g_batch_stats

    def _synthesize_with(self, params, stats, latents: jax.Array) -> jax.Array:
        return self.generator(params, stats, latents, self.sample_batch_statistics)[0]

    def synthesize(self, state: GANState, latents: jax.Array, rng: jax.Array) -> jax.Array:
        """Images [B, S, S, 3] in (-1, 1) of the sampling generator; batch norm as `gan.sample_batch_statistics`."""
        del rng  # These generators draw nothing beyond their latents.
        return self._synthesize_with(*self.sampling_variables(state), latents)

    def generate(self, state: GANState, rng: jax.Array, batch_size: int) -> jax.Array:
        """What metrics score: the sampling generator's images from z ~ N(0, I), [batch_size, S, S, 3]."""
        return self.sampler.generate(state, rng, batch_size)

    def preview(self, state: GANState, batch: Batch, rng: jax.Array) -> dict[str, jax.Array]:
        """The fixed-noise grid (the loop passes the same key every time) from the EMA and the raw generator."""
        del batch
        latents, synthesis_rng = self.sampler.latents(rng, self.grid_size * self.grid_size)
        return {
            "samples_fixed": self.synthesize(state, latents, synthesis_rng),
            "raw_fixed": self._synthesize_with(state.g_params, state.g_batch_stats, latents),
        }

    def sample(self, state: GANState, batches: Iterable[Batch], rng: jax.Array) -> Samples:
        """A grid, a latent interpolation strip and `sample.num_individual` single images."""
        del batches
        grids_rng, individual_rng = jax.random.split(rng)
        return Samples(self.sampler.sample_grids(state, grids_rng), self.individual_images(state, individual_rng))

    def evaluate(self, state: GANState, batches: Iterable[Batch]) -> dict[str, float]:
        """Cheap statistics over the batches and as many generated images.

        Returns:
          eval/d_real, eval/d_fake: mean D output (probability for logits, raw critic score otherwise) on
            real and EMA-generated images, D with running statistics;
          eval/pixel_mean_gap, eval/pixel_std_gap: mean over RGB channels of |difference| of the per-channel
            pixel mean and standard deviation between real and generated images (in [-1, 1] units).
        """

        @jax.jit
        def batch_statistics(state, real, key):
            fake = self.generate(state, key, real.shape[0])
            outputs = [self.discriminator(state.d_params, state.d_batch_stats, x, False)[0] for x in (real, fake)]
            if self.scores_are_logits:
                outputs = [jax.nn.sigmoid(x) for x in outputs]
            moments = [(jnp.mean(x, axis=(0, 1, 2)), jnp.mean(jnp.square(x), axis=(0, 1, 2))) for x in (real, fake)]
            return [jnp.sum(x) for x in outputs], moments

        key = jax.random.PRNGKey(0)
        totals, moments, count = np.zeros(2), np.zeros((2, 2, 3)), 0
        for i, batch in enumerate(batches):
            real = jnp.asarray(batch["image"])
            sums, batch_moments = jax.device_get(batch_statistics(state, real, jax.random.fold_in(key, i)))
            totals += np.asarray(sums, np.float64)
            moments += len(real) * np.asarray(batch_moments, np.float64)
            count += len(real)
        means, squares = moments[:, 0] / count, moments[:, 1] / count
        stds = np.sqrt(np.maximum(squares - np.square(means), 0.0))
        return {
            "eval/d_real": float(totals[0] / count),
            "eval/d_fake": float(totals[1] / count),
            "eval/pixel_mean_gap": float(np.mean(np.abs(means[0] - means[1]))),
            "eval/pixel_std_gap": float(np.mean(np.abs(stds[0] - stds[1]))),
        }


class CycleGANMethod(GANMethod):
    """The GAN with the cycle-consistency encoder; needs `gan.cycle_lambda` or `gan.cycle_image_lambda`."""

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        if not self.use_encoder:
            raise ConfigError(f"{config.method} needs gan.cycle_lambda > 0 or gan.cycle_image_lambda > 0.")
