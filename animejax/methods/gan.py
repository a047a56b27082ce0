"""Adversarial training: the shared GAN state and step, DCGAN, residual DCGAN and its cycle variant.

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

The non-saturating loss (softplus of logits) is defined here; `wgan_gp.py`
overrides the two objective hooks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from animejax import gan_losses
from animejax.data import augment
from animejax.data.pipeline import to_model_range
from animejax.errors import ConfigError
from animejax.models import dcgan, resdcgan
from animejax.optim import learning_rate_schedule, make_optimizer
from animejax.state import ema_update

INTERPOLATIONS = ("slerp", "lerp")


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


@dataclasses.dataclass(frozen=True)
class Networks:
    generator: nn.Module  # (latents [B, D], train) -> images [B, S, S, 3].
    discriminator: nn.Module  # (images, train) -> logits or scores [B].
    encoder: nn.Module | None  # (images, train) -> latents [B, D]; None when the family has none.


def build_networks(arch: str, config: ml_collections.ConfigDict) -> Networks:
    """The networks of family `arch` ("dcgan" or "resdcgan") from `config.model` and the image size."""
    model, size = config.model, config.data.image_size
    if arch == "dcgan":
        return Networks(
            dcgan.Generator(size, model.latent_dim, model.g_channels, model.upsample),
            dcgan.Discriminator(size, model.d_channels, model.d_normalization),
            None,
        )
    if arch == "resdcgan":
        return Networks(
            resdcgan.Generator(size, model.latent_dim, model.g_channels, model.max_channels, model.upsample),
            resdcgan.Discriminator(
                size, model.d_channels, model.max_channels, model.d_normalization, model.spectral_norm
            ),
            resdcgan.Encoder(size, model.latent_dim, model.d_channels, model.max_channels),
        )
    raise ConfigError(f"Unknown model.arch {arch!r}; choose dcgan or resdcgan.")


def _apply(module: nn.Module, params, stats, inputs: jax.Array, train: bool):
    """Applies `module`; returns (outputs, stats), with stats updated when training and the module has any."""
    variables = {"params": params, **({"batch_stats": stats} if stats else {})}
    if train and stats:
        outputs, updates = module.apply(variables, inputs, train=True, mutable=["batch_stats"])
        return outputs, updates["batch_stats"]
    return module.apply(variables, inputs, train=train), stats


def _variables(variables) -> tuple[Any, Any]:
    return variables["params"], variables.get("batch_stats", {})


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


class GANMethod:
    """Non-saturating GAN with the networks of `arch`; see the module docstring.

    `sample` returns, besides grids, "individual": images meant to be written
    one PNG each (for external metrics); `individual_sample_keys` names such keys.
    """

    arch = "dcgan"
    # sample() keys whose images are single samples to write one file each, not grids.
    individual_sample_keys = ("individual",)
    # The preview grid drawn from fixed noise, which animejax.progress_gif animates over training.
    progress_grid = "samples_fixed"
    # Whether D's outputs are logits (so D(real)/D(fake) metrics are probabilities).
    scores_are_logits = True

    def __init__(self, config: ml_collections.ConfigDict):
        gan, sample = config.gan, config.sample
        self.networks = build_networks(self.arch, config)
        self.latent_dim = config.model.latent_dim
        self.init_std = config.model.init_std
        self.n_critic = gan.n_critic
        if self.n_critic < 1:
            raise ConfigError(f"gan.n_critic must be at least 1, got {self.n_critic}.")
        self.cycle_lambda = gan.cycle_lambda
        self.cycle_image_lambda = gan.cycle_image_lambda
        self.use_encoder = bool(self.cycle_lambda or self.cycle_image_lambda)
        if self.use_encoder and self.networks.encoder is None:
            raise ConfigError(f"The cycle loss needs an encoder; model family {self.arch!r} has none (use resdcgan).")
        augment.parse_policy(gan.diffaugment)  # Fails early on unknown names.
        self.diffaugment = gan.diffaugment
        self.sample_batch_statistics = gan.sample_batch_statistics
        self.stall_d_real_above = gan.stall_d_real_above
        self.stall_d_fake_below = gan.stall_d_fake_below
        self.stall_patience = gan.stall_patience
        self._stalled_logs, self._stalled_since = 0, None

        num_steps = config.train.num_steps
        self.tx_g = make_optimizer(config.optim, num_steps)
        self.tx_d = make_optimizer(config.optim_d, num_steps * self.n_critic)  # n_critic updates per step.
        self.learning_rate_g = learning_rate_schedule(config.optim, num_steps)
        self.learning_rate_d = learning_rate_schedule(config.optim_d, num_steps * self.n_critic)
        self.ema_decay = config.ema.decay
        self.ema_warmup = config.ema.warmup

        self.use_ema = sample.use_ema
        self.grid_size = sample.grid_size
        self.num_interpolations = sample.num_interpolations
        self.interpolation_steps = sample.interpolation_steps
        if sample.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"Unknown sample.interpolation {sample.interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}."
            )
        self.interpolate = slerp if sample.interpolation == "slerp" else lerp
        self.num_individual = sample.num_individual
        self.sample_batch_size = config.eval.batch_size

    # --- networks -------------------------------------------------------

    def init_state(self, rng: jax.Array, images: jax.Array) -> GANState:
        """Fresh networks, optimizers and EMA; pure.

        The initialisers draw with the classic (non-partitionable) threefry: the
        state is born replicated, so nothing is lost, and XLA:CPU compiles this
        function about 5x faster than with the default partitionable form (about
        3 s instead of 15 s for a small DCGAN on 2 busy cores). Values are
        deterministic given `rng`, on any device count.
        """
        with jax.threefry_partitionable(False):
            return self._init_state(rng, images)

    def _init_state(self, rng: jax.Array, images: jax.Array) -> GANState:
        g_rng, d_rng, e_rng, g_init_rng, d_init_rng, state_rng = jax.random.split(rng, 6)
        nets = self.networks
        latents = jnp.zeros((images.shape[0], self.latent_dim), images.dtype)
        g_params, g_stats = _variables(nets.generator.init(g_rng, latents, train=False))
        d_params, d_stats = _variables(nets.discriminator.init(d_rng, images, train=False))
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
        return _apply(self.networks.generator, params, stats, latents, train)

    def discriminator(self, params, stats, images: jax.Array, train: bool):
        """D(images) -> (logits or critic scores [B], stats)."""
        return _apply(self.networks.discriminator, params, stats, images, train)

    def encoder(self, params, images: jax.Array) -> jax.Array:
        """E(images) -> latents [B, latent_dim]."""
        return self.networks.encoder.apply({"params": params}, images, train=True)

    def augment(self, images: jax.Array, rng: jax.Array) -> jax.Array:
        """DiffAugment of D's inputs (identity when `gan.diffaugment` is empty)."""
        return augment.diff_augment(images, rng, self.diffaugment) if self.diffaugment else images

    def noise(self, rng: jax.Array, count: int) -> jax.Array:
        """z ~ N(0, I): [count, latent_dim]."""
        return jax.random.normal(rng, (count, self.latent_dim))

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
        loss = jnp.mean(gan_losses.ns_discriminator_loss(real_logits, fake_logits))
        metrics = {
            "train/loss_d": loss,
            "train/d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
            "train/d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
        }
        return loss, (d_stats, metrics)

    def generator_adversarial_loss(self, fake_outputs: jax.Array) -> jax.Array:
        """Per-example adversarial loss of G from D's outputs on fakes: [B] -> [B]."""
        return gan_losses.ns_generator_loss(fake_outputs)

    # --- the step ---------------------------------------------------------

    def _discriminator_update(self, d_params, d_stats, d_opt_state, real, fake, rng):
        """One optimizer step of D; returns ((d_params, d_stats, d_opt_state), metrics)."""
        grad_fn = jax.value_and_grad(self.discriminator_loss, has_aux=True)
        (_, (d_stats, metrics)), grads = grad_fn(d_params, d_stats, real, jax.lax.stop_gradient(fake), rng)
        updates, d_opt_state = self.tx_d.update(grads, d_opt_state, d_params)
        metrics["train/grad_norm_d"] = optax.tree.norm(grads)
        return (optax.apply_updates(d_params, updates), d_stats, d_opt_state), metrics

    def _generator_losses(self, fake, e_params, d_params, d_stats, latents, rng):
        """G's loss as a function of the fake images (and E's parameters); returns (loss, (d_stats, metrics))."""
        outputs, d_stats = self.discriminator(d_params, d_stats, self.augment(fake, rng), True)
        adversarial = jnp.mean(self.generator_adversarial_loss(outputs))
        metrics = {"train/loss_g_adversarial": adversarial} if self.use_encoder else {}
        loss = adversarial
        if self.cycle_lambda:
            cycle = jnp.mean(gan_losses.mean_absolute_error(self.encoder(e_params, fake), latents))
            metrics["train/cycle_latent"] = cycle
            loss = loss + self.cycle_lambda * cycle
        return loss, (d_stats, metrics)

    def _image_cycle_loss(self, g_params, e_params, g_stats, real):
        """|G(E(x)) - x|_1 (mean per pixel) on real images; G's batch statistics are not kept."""
        decoded, _ = self.generator(g_params, g_stats, self.encoder(e_params, real), True)
        return jnp.mean(gan_losses.mean_absolute_error(decoded, real))

    def ema_decay_at(self, step: jax.Array) -> jax.Array:
        """The EMA decay at `step`: `ema.decay`, or min(decay, (1 + step) / (10 + step)) with `ema.warmup`."""
        if not self.ema_warmup:
            return jnp.asarray(self.ema_decay, jnp.float32)
        step = step.astype(jnp.float32)
        return jnp.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))

    def train_step(self, state: GANState, images: jax.Array, rng: jax.Array):
        """D update(s), then G (and E) update; see the module docstring and methods/base.py."""
        noise_rng, extra_critic_rng, critic_rng, generator_rng = jax.random.split(rng, 4)
        batch = images.shape[0]
        latents = self.noise(noise_rng, batch)

        def forward(g_params):
            return self.generator(g_params, state.g_batch_stats, latents, True)

        fake, g_vjp, g_stats = jax.vjp(forward, state.g_params, has_aux=True)

        d = (state.d_params, state.d_batch_stats, state.d_opt_state)
        # A Python loop, unrolled in the graph: XLA:CPU ran the same updates 4-6x slower as a lax.scan (while loop).
        for key in jax.random.split(extra_critic_rng, self.n_critic)[1:]:
            fake_rng, update_rng = jax.random.split(key)
            other_fake, _ = self.generator(state.g_params, state.g_batch_stats, self.noise(fake_rng, batch), True)
            d, _ = self._discriminator_update(*d, images, other_fake, update_rng)
        (d_params, d_stats, d_opt_state), metrics = self._discriminator_update(*d, images, fake, critic_rng)

        grad_fn = jax.value_and_grad(self._generator_losses, argnums=(0, 1), has_aux=True)
        (loss_g, (d_stats, g_metrics)), (fake_grads, e_grads) = grad_fn(
            fake, state.e_params, d_params, d_stats, latents, generator_rng
        )
        (g_grads,) = g_vjp(fake_grads)
        if self.cycle_image_lambda:
            image_fn = jax.value_and_grad(self._image_cycle_loss, argnums=(0, 1))
            image_cycle, (g_image, e_image) = image_fn(state.g_params, state.e_params, state.g_batch_stats, images)
            scale = self.cycle_image_lambda
            g_grads = jax.tree.map(lambda a, b: a + scale * b, g_grads, g_image)
            e_grads = jax.tree.map(lambda a, b: a + scale * b, e_grads, e_image)
            g_metrics["train/cycle_image"] = image_cycle
            loss_g = loss_g + scale * image_cycle
        metrics.update(g_metrics)

        updates, g_opt_state = self.tx_g.update(g_grads, state.g_opt_state, state.g_params)
        g_params = optax.apply_updates(state.g_params, updates)
        e_params, e_opt_state = state.e_params, state.e_opt_state
        if self.use_encoder:
            updates, e_opt_state = self.tx_g.update(e_grads, state.e_opt_state, state.e_params)
            e_params = optax.apply_updates(state.e_params, updates)
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

    # --- monitoring ---------------------------------------------------------

    def on_log(self, step: int, scalars: dict[str, float]) -> None:
        """Warns when D has won outright for `gan.stall_patience` consecutive logs (the seed project's stall)."""
        if not self.stall_patience or not self.scores_are_logits or "train/d_fake" not in scalars:
            return
        d_real, d_fake = scalars["train/d_real"], scalars["train/d_fake"]
        if not (d_fake < self.stall_d_fake_below and d_real > self.stall_d_real_above):
            self._stalled_logs, self._stalled_since = 0, None
            return
        self._stalled_logs += 1
        self._stalled_since = self._stalled_since or step
        if self._stalled_logs % self.stall_patience == 0:
            logging.warning(
                "GAN stall: the discriminator has won outright for %d consecutive logs (since step %d; now "
                "D(real)=%.3f, D(fake)=%.3f), so the generator gets almost no gradient. Consider "
                "--config.gan.diffaugment=color,translation,cutout, a lower optim_d.learning_rate, or resuming "
                "from an earlier checkpoint.",
                self._stalled_logs,
                self._stalled_since,
                d_real,
                d_fake,
            )

    # --- sampling -------------------------------------------------------

    def sampling_variables(self, state: GANState) -> tuple[Any, Any]:
        """(params, batch stats) of the generator used for images: the EMA's unless `sample.use_ema` is off."""
        if self.use_ema:
            return state.g_ema_params, state.g_ema_batch_stats
        return state.g_params, state.g_batch_stats

    def synthesize(self, params, stats, latents: jax.Array) -> jax.Array:
        """Images [B, S, S, 3] in (-1, 1) for latents [B, latent_dim], batch norm as `gan.sample_batch_statistics`."""
        return self.generator(params, stats, latents, self.sample_batch_statistics)[0]

    def generate(self, state: GANState, rng: jax.Array, batch_size: int) -> jax.Array:
        """Pure and jit-able (batch_size static): what metrics score, [batch_size, S, S, 3] in (-1, 1).

        Images of the sampling generator (the EMA unless `sample.use_ema` is off) from z ~ N(0, I).
        """
        return self.synthesize(*self.sampling_variables(state), self.noise(rng, batch_size))

    def preview(self, state: GANState, images: jax.Array, rng: jax.Array) -> dict[str, jax.Array]:
        """The fixed-noise grid (the loop passes the same key every time) from the EMA and the raw generator."""
        del images
        latents = self.noise(rng, self.grid_size * self.grid_size)
        return {
            "samples_fixed": self.synthesize(*self.sampling_variables(state), latents),
            "raw_fixed": self.synthesize(state.g_params, state.g_batch_stats, latents),
        }

    def interpolations(self, params, stats, rng: jax.Array) -> jax.Array:
        """`sample.num_interpolations` rows of `sample.interpolation_steps` images between random latent pairs.

        Returns:
          [rows * steps, S, S, 3], row-major.
        """
        start_rng, end_rng = jax.random.split(rng)
        start = self.noise(start_rng, self.num_interpolations)
        end = self.noise(end_rng, self.num_interpolations)
        latents = self.interpolate(start, end, jnp.linspace(0.0, 1.0, self.interpolation_steps))
        return self.synthesize(params, stats, latents.reshape(-1, self.latent_dim))

    def generate_many(self, state: GANState, rng: jax.Array, count: int) -> np.ndarray:
        """`count` images from the sampling generator, in jitted batches of `eval.batch_size`: [count, S, S, 3]."""
        generate = jax.jit(self.generate, static_argnums=2)
        out = []
        for begin in range(0, count, self.sample_batch_size):
            size = min(self.sample_batch_size, count - begin)
            out.append(np.asarray(generate(state, jax.random.fold_in(rng, begin), self.sample_batch_size))[:size])
        return np.concatenate(out)

    def sample(self, state: GANState, data: Iterable[np.ndarray], rng: jax.Array) -> dict[str, np.ndarray]:
        """A grid, a latent interpolation strip and `sample.num_individual` single images; all in [-1, 1].

        Returns:
          {"samples": [grid_size^2, S, S, 3], "interpolations": [rows * steps, S, S, 3],
           "individual": [num_individual, S, S, 3]} ("individual", absent when num_individual is 0, is
          meant for one PNG per image).
        """
        del data
        grid_rng, interpolation_rng, individual_rng = jax.random.split(rng, 3)
        params, stats = self.sampling_variables(state)
        latents = self.noise(grid_rng, self.grid_size * self.grid_size)
        samples = {
            "samples": np.asarray(jax.jit(self.synthesize)(params, stats, latents)),
            "interpolations": np.asarray(jax.jit(self.interpolations)(params, stats, interpolation_rng)),
        }
        if self.num_individual:
            samples["individual"] = self.generate_many(state, individual_rng, self.num_individual)
        return samples

    def evaluate(self, state: GANState, batches: Iterable[np.ndarray]) -> dict[str, float]:
        """Cheap statistics until FID/KID/SWD are plugged in, over the batches and as many generated images.

        Returns:
          eval/d_real, eval/d_fake: mean D output (probability for logits, raw critic score otherwise) on
            real and EMA-generated images, D with running statistics;
          eval/pixel_mean_gap, eval/pixel_std_gap: mean over RGB channels of |difference| of the per-channel
            pixel mean and standard deviation between real and generated images (in [-1, 1] units).
        """
        params, stats = self.sampling_variables(state)

        @jax.jit
        def batch_statistics(params, stats, d_params, d_stats, real_uint8, key):
            real = to_model_range(real_uint8)
            fake = self.synthesize(params, stats, self.noise(key, real.shape[0]))
            outputs = [self.discriminator(d_params, d_stats, x, False)[0] for x in (real, fake)]
            if self.scores_are_logits:
                outputs = [jax.nn.sigmoid(x) for x in outputs]
            moments = [(jnp.mean(x, axis=(0, 1, 2)), jnp.mean(jnp.square(x), axis=(0, 1, 2))) for x in (real, fake)]
            return [jnp.sum(x) for x in outputs], moments

        key = jax.random.PRNGKey(0)
        totals, moments, count = np.zeros(2), np.zeros((2, 2, 3)), 0
        for i, batch in enumerate(batches):
            variables = (params, stats, state.d_params, state.d_batch_stats)
            sums, batch_moments = jax.device_get(
                batch_statistics(*variables, jnp.asarray(batch), jax.random.fold_in(key, i))
            )
            totals += np.asarray(sums, np.float64)
            moments += len(batch) * np.asarray(batch_moments, np.float64)
            count += len(batch)
        means, squares = moments[:, 0] / count, moments[:, 1] / count
        stds = np.sqrt(np.maximum(squares - np.square(means), 0.0))
        return {
            "eval/d_real": float(totals[0] / count),
            "eval/d_fake": float(totals[1] / count),
            "eval/pixel_mean_gap": float(np.mean(np.abs(means[0] - means[1]))),
            "eval/pixel_std_gap": float(np.mean(np.abs(stds[0] - stds[1]))),
        }


class DCGANMethod(GANMethod):
    """DCGAN (Radford et al.): strided (transposed) convolutions, batch norm, non-saturating loss."""

    arch = "dcgan"


class ResDCGANMethod(GANMethod):
    """Residual DCGAN: residual up/down blocks, optional spectral norm in D, non-saturating loss."""

    arch = "resdcgan"


class ResDCGANCycleMethod(ResDCGANMethod):
    """Residual DCGAN with the cycle-consistency encoder; needs `gan.cycle_lambda` or `gan.cycle_image_lambda`."""

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        if not self.use_encoder:
            raise ConfigError("resdcgan_cycle needs gan.cycle_lambda > 0 or gan.cycle_image_lambda > 0.")
