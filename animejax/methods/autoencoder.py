"""Autoencoder and VAE: objectives, train step, and the samplers the original notebooks compared.

The VAE minimises reconstruction + beta * KL with reparameterised sampling; the
autoencoder minimises reconstruction alone. Reconstruction is the summed
squared error of tanh outputs ("mse") or the Bernoulli negative
log-likelihood of sigmoid outputs on pixels mapped to [0, 1] ("bce").

Sampling, as the original comparison did: decode latents drawn from N(0, I),
and from a Gaussian with the per-dimension mean and standard deviation of the
training images' latents; plus interpolation between encodings of real pairs.
"""

from __future__ import annotations

from typing import Any, Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from animejax import models
from animejax.errors import ConfigError
from animejax.methods import losses
from animejax.methods.base import Batch, Method, Samples
from animejax.methods.common import TrainState, ema_update, optimizer_step
from animejax.methods.optim import learning_rate_schedule, make_optimizer

RECONSTRUCTIONS = ("mse", "bce")


class AutoencoderMethod(Method):
    """Deterministic convolutional autoencoder."""

    variational = False
    report_terms = ("mse_per_pixel",)  # The reconstruction error, comparable across autoencoders.

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        model = config.model
        if model.reconstruction not in RECONSTRUCTIONS:
            raise ConfigError(
                f"Unknown model.reconstruction {model.reconstruction!r}; choose one of {', '.join(RECONSTRUCTIONS)}."
            )
        self.model = models.autoencoder_network(config, self.variational)
        self.reconstruction = model.reconstruction
        self.beta = model.beta
        self.ema_decay = config.ema.decay
        self.use_ema = config.sample.use_ema
        self.latent_stats_images = config.sample.latent_stats_images
        self.num_interpolations = config.sample.num_interpolations
        self.interpolation_steps = config.sample.interpolation_steps
        self.tx = make_optimizer(config.optim, config.train.num_steps)
        self.learning_rate = learning_rate_schedule(config.optim, config.train.num_steps)

    # --- networks -------------------------------------------------------

    def init_state(self, rng: jax.Array, batch: Batch) -> TrainState:
        params_rng, state_rng = jax.random.split(rng)
        params = self.model.init(params_rng, batch["image"])["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            ema_params=params,
            opt_state=self.tx.init(params),
            rng=state_rng,
        )

    def encode_mean(self, params, images: jax.Array) -> jax.Array:
        """The deterministic code of images: the posterior mean for the VAE. [B, latent_dim]."""
        code = self.model.apply({"params": params}, images, method="encode")
        return code[0] if self.variational else code

    def decode(self, params, latents: jax.Array) -> jax.Array:
        """Latents [B, D] -> images [B, S, S, 3] in [-1, 1]."""
        raw = self.model.apply({"params": params}, latents, method="decode")
        return jnp.tanh(raw) if self.reconstruction == "mse" else 2.0 * jax.nn.sigmoid(raw) - 1.0

    # --- objective ------------------------------------------------------

    def _reconstruction_loss(self, raw: jax.Array, images: jax.Array) -> jax.Array:
        if self.reconstruction == "mse":
            return losses.squared_error(jnp.tanh(raw), images)
        return losses.bernoulli_nll(raw, (images + 1.0) / 2.0)

    def loss(self, params, images: jax.Array, rng: jax.Array):
        """Mean over the batch of reconstruction (+ beta * KL); returns (loss, metrics)."""
        if self.variational:
            mean, log_variance = self.model.apply({"params": params}, images, method="encode")
            noise = jax.random.normal(rng, mean.shape, mean.dtype)
            latents = mean + jnp.exp(0.5 * log_variance) * noise
            kl = losses.gaussian_kl(mean, log_variance)
        else:
            latents = self.model.apply({"params": params}, images, method="encode")
            kl = jnp.zeros(images.shape[0])
        raw = self.model.apply({"params": params}, latents, method="decode")
        reconstruction = self._reconstruction_loss(raw, images)
        loss = jnp.mean(reconstruction + self.beta * kl)
        decoded = jnp.tanh(raw) if self.reconstruction == "mse" else 2.0 * jax.nn.sigmoid(raw) - 1.0
        metrics = {
            "train/loss": loss,
            "train/reconstruction": jnp.mean(reconstruction),
            "train/mse_per_pixel": jnp.mean(jnp.square(decoded - images)),
        }
        if self.variational:
            metrics["train/kl"] = jnp.mean(kl)
        return loss, metrics

    def train_step(self, state: TrainState, batch: Batch, rng: jax.Array, frozen: Any = None):
        """One optimizer step; see methods/base.py."""
        del frozen
        (_, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(state.params, batch["image"], rng)
        params, opt_state = optimizer_step(self.tx, grads, state.opt_state, state.params)
        metrics["train/grad_norm"] = optax.tree.norm(grads)
        metrics["train/learning_rate"] = self.learning_rate(state.step)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            ema_params=ema_update(state.ema_params, params, self.ema_decay),
            opt_state=opt_state,
        )
        return new_state, metrics

    # --- sampling -------------------------------------------------------

    def sampling_params(self, state: TrainState):
        return state.ema_params if self.use_ema else state.params

    def generate(self, state: TrainState, rng: jax.Array, batch_size: int) -> jax.Array:
        """Samples decoded from N(0, I) latents: [batch_size, S, S, 3] in [-1, 1] (what metrics score)."""
        latents = jax.random.normal(rng, (batch_size, self.model.latent_dim))
        return self.decode(self.sampling_params(state), latents)

    def preview(self, state: TrainState, batch: Batch, rng: jax.Array) -> dict[str, jax.Array]:
        """Reconstructions (real and decoded side by side) and N(0, I) samples."""
        params = self.sampling_params(state)
        count = self.grid_size * self.grid_size
        real = batch["image"][: count // 2]
        decoded = self.decode(params, self.encode_mean(params, real))
        pairs = jnp.stack([real, decoded], axis=1).reshape(-1, *real.shape[1:])
        latents = jax.random.normal(rng, (count, self.model.latent_dim))
        return {"reconstructions": pairs, "samples_normal": self.decode(params, latents)}

    def latent_statistics(self, params, batches: Iterable[Batch]) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and std of the codes of up to `latent_stats_images` training images."""
        encode = jax.jit(self.encode_mean)
        codes, seen = [], 0
        for batch in batches:
            codes.append(np.asarray(encode(params, jnp.asarray(batch["image"])), np.float64))
            seen += len(codes[-1])
            if seen >= self.latent_stats_images:
                break
        codes = np.concatenate(codes)[: self.latent_stats_images]
        return codes.mean(axis=0), codes.std(axis=0)

    def interpolations(self, params, images: jax.Array) -> jax.Array:
        """Rows of decoded linear interpolations between codes of image pairs.

        Args:
          images: [2 * rows, S, S, 3] real images in [-1, 1].

        Returns:
          [rows * interpolation_steps, S, S, 3], row-major.
        """
        codes = self.encode_mean(params, images)
        start, end = codes[0::2], codes[1::2]
        weights = jnp.linspace(0.0, 1.0, self.interpolation_steps)[None, :, None]
        latents = start[:, None] + weights * (end - start)[:, None]
        return self.decode(params, latents.reshape(-1, latents.shape[-1]))

    def sample(self, state: TrainState, batches: Iterable[Batch], rng: jax.Array) -> Samples:
        """The two samplers (N(0, I) and the fitted Gaussian), an interpolation grid, and single N(0, I) images."""
        params = self.sampling_params(state)
        batches = iter(batches)
        mean, std = self.latent_statistics(params, batches)
        count = self.grid_size * self.grid_size
        normal_rng, fitted_rng, individual_rng = jax.random.split(rng, 3)
        normal = jax.random.normal(normal_rng, (count, self.model.latent_dim))
        fitted = mean + std * np.asarray(jax.random.normal(fitted_rng, (count, self.model.latent_dim)))
        pairs = []
        while sum(len(p) for p in pairs) < 2 * self.num_interpolations:
            pairs.append(np.asarray(next(batches)["image"]))
        pairs = jnp.asarray(np.concatenate(pairs)[: 2 * self.num_interpolations])
        decode = jax.jit(self.decode)
        grids = {
            "samples_normal": (np.asarray(decode(params, normal)), self.grid_size),
            "samples_latent_gaussian": (
                np.asarray(decode(params, jnp.asarray(fitted, jnp.float32))),
                self.grid_size,
            ),
            "interpolations": (np.asarray(jax.jit(self.interpolations)(params, pairs)), self.interpolation_steps),
        }
        return Samples(grids, self.individual_images(state, individual_rng))

    def evaluate(self, state: TrainState, batches: Iterable[Batch]) -> dict[str, float]:
        """Mean loss terms and per-pixel MSE of the reconstructions over the given batches."""
        params = self.sampling_params(state)
        loss = jax.jit(self.loss)
        totals, count = {}, 0
        for i, batch in enumerate(batches):
            images = jnp.asarray(batch["image"])
            _, metrics = loss(params, images, jax.random.PRNGKey(i))
            for name, value in metrics.items():
                totals[name] = totals.get(name, 0.0) + float(value) * len(images)
            count += len(images)
        return {name.replace("train/", "eval/"): total / count for name, total in totals.items()}


class VAEMethod(AutoencoderMethod):
    """Variational autoencoder: reparameterised sampling and a beta-weighted KL term."""

    variational = True
