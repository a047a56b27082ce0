"""Denoising diffusion (Ho et al. 2020): the objective, the train step, and sampling with any registered sampler.

Training: x_0 from the batch, t ~ U{0, ..., T-1} and eps ~ N(0, I) per image,
x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps; the denoiser (dropout on)
predicts `diffusion.target` (epsilon, v or x0) and the loss is the mean over
images of w(t) * mean over pixels of (prediction - target)^2, with w = 1 (Ho
et al.'s simple loss) or min-SNR-gamma (Hang et al. 2023). The EMA of the
parameters (`ema.decay`, with warm-up) is what every sampler uses.

Sampling: `animejax.diffusion.samplers.SAMPLERS` (DDPM, DDIM, DPM-Solver++)
over the EMA denoiser. `generate` (what metrics score) uses `eval.sampler`
for `eval.sampler_steps`, so in-training FID stays affordable; previews and
--mode=sample use `sample.sampler` and `sample.sampler_steps`; --mode=sample
also writes the forward noising strip of real images, the reverse
denoising strip (x_0 predicted over time) and one row per entry of
`sample.sampler_rows` from the same noise, to show the step-count trade-off.
"""

from __future__ import annotations

from typing import Any, Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from animejax import models
from animejax.diffusion import samplers, schedules
from animejax.errors import ConfigError
from animejax.methods.base import Batch, Method, Samples
from animejax.methods.common import TrainState, ema_decay, ema_update, optimizer_step
from animejax.methods.optim import learning_rate_schedule, make_optimizer


def parse_sampler_rows(spec: str, num_timesteps: int) -> list[tuple[str, int]]:
    """'ddim:50,dpm_solver++:20' -> [("ddim", 50), ("dpm_solver++", 20)], checked against the registry."""
    rows = []
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        name, _, steps = item.partition(":")
        check_sampler(name, int(steps) if steps.isdigit() else -1, num_timesteps, "sample.sampler_rows")
        rows.append((name, int(steps)))
    return rows


def check_sampler(name: str, steps: int, num_timesteps: int, field: str) -> None:
    """Raises ConfigError for an unknown sampler or a step count it cannot take."""
    if name not in samplers.SAMPLERS:
        raise ConfigError(f"{field}: unknown sampler {name!r}; choose one of {', '.join(samplers.SAMPLERS)}.")
    if name == "ddpm" and steps != num_timesteps:
        raise ConfigError(f"{field}: ddpm runs all {num_timesteps} steps; got {steps} (use ddim with eta=1).")
    if not 1 <= steps <= num_timesteps:
        raise ConfigError(f"{field}: {name} needs 1 to {num_timesteps} steps, got {steps}.")


class DiffusionMethod(Method):
    """DDPM training with DDPM/DDIM/DPM-Solver++ sampling; see the module docstring."""

    progress_grid = "samples_fixed"

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        diffusion, sample = config.diffusion, config.sample
        self.network = models.denoiser_network(config)
        self.schedule = schedules.make_schedule(diffusion.schedule, diffusion.num_timesteps)
        self.num_timesteps = diffusion.num_timesteps
        if diffusion.target not in schedules.TARGETS:
            raise ConfigError(
                f"Unknown diffusion.target {diffusion.target!r}; choose one of {', '.join(schedules.TARGETS)}."
            )
        if diffusion.min_snr_gamma < 0:
            raise ConfigError(f"diffusion.min_snr_gamma must be >= 0 (0 disables), got {diffusion.min_snr_gamma}.")
        self.target, self.min_snr_gamma, self.clip_x0 = diffusion.target, diffusion.min_snr_gamma, diffusion.clip_x0
        check_sampler(sample.sampler, sample.sampler_steps, self.num_timesteps, "sample.sampler")
        check_sampler(config.eval.sampler, config.eval.sampler_steps, self.num_timesteps, "eval.sampler")
        self.sampler_rows = parse_sampler_rows(sample.sampler_rows, self.num_timesteps)
        self.tx = make_optimizer(config.optim, config.train.num_steps)
        self.learning_rate = learning_rate_schedule(config.optim, config.train.num_steps)
        self.ema_decay, self.ema_warmup, self.use_ema = config.ema.decay, config.ema.warmup, sample.use_ema

    # --- networks -------------------------------------------------------

    def init_state(self, rng: jax.Array, batch: Batch) -> TrainState:
        """Fresh denoiser, optimizer and EMA; pure. Classic threefry: XLA:CPU compiles it about 4x faster."""
        with jax.threefry_partitionable(False):
            params_rng, state_rng = jax.random.split(rng)
            images = batch["image"]
            t = jnp.zeros((images.shape[0],), jnp.int32)
            params = self.network.init({"params": params_rng}, images, t, train=False)["params"]
        return TrainState(jnp.zeros((), jnp.int32), params, params, self.tx.init(params), state_rng)

    def sampling_params(self, state: TrainState):
        return state.ema_params if self.use_ema else state.params

    def denoiser(self, params) -> samplers.DenoiseFn:
        """The network in eval mode as a sampler's (x_t, t) -> (x0_hat, eps_hat)."""

        def denoise(x_t: jax.Array, t: jax.Array):
            prediction = self.network.apply({"params": params}, x_t, t, train=False)
            return schedules.to_x0_and_eps(self.schedule, self.target, prediction, x_t, t)

        return denoise

    # --- objective ------------------------------------------------------

    def loss(self, params, images: jax.Array, rng: jax.Array, train: bool = True):
        """The weighted MSE on `diffusion.target` at random timesteps; returns (loss, metrics)."""
        t_rng, noise_rng, dropout_rng = jax.random.split(rng, 3)
        t = jax.random.randint(t_rng, (images.shape[0],), 0, self.num_timesteps)
        noise = jax.random.normal(noise_rng, images.shape, images.dtype)
        x_t = schedules.q_sample(self.schedule, images, t, noise)
        prediction = self.network.apply({"params": params}, x_t, t, train=train, rngs={"dropout": dropout_rng})
        target = schedules.training_target(self.schedule, self.target, images, noise, t)
        mse = jnp.mean(jnp.square(prediction - target).reshape(images.shape[0], -1), axis=-1)
        weight = schedules.loss_weight(self.schedule, t, self.target, self.min_snr_gamma)
        loss = jnp.mean(weight * mse)
        return loss, {"train/loss": loss, "train/mse": jnp.mean(mse)}

    def train_step(self, state: TrainState, batch: Batch, rng: jax.Array, frozen: Any = None):
        """One optimizer step on the diffusion loss, then the EMA update; see methods/base.py."""
        del frozen
        (_, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(state.params, batch["image"], rng)
        params, opt_state = optimizer_step(self.tx, grads, state.opt_state, state.params)
        decay = ema_decay(state.step, self.ema_decay, self.ema_warmup)
        metrics["train/grad_norm"] = optax.tree.norm(grads)
        metrics["train/learning_rate"] = self.learning_rate(state.step)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            ema_params=ema_update(state.ema_params, params, decay),
            opt_state=opt_state,
        )
        return new_state, metrics

    # --- sampling -------------------------------------------------------

    def run_sampler(
        self, params, rng, batch_size: int, sampler: str, steps: int, record_every: int = 0, progress=False
    ):
        """x_T ~ N(0, I) from `rng`, then `sampler` for `steps`: (images [B, S, S, 3], trajectory [K, B, ...])."""
        noise_rng, sampler_rng = jax.random.split(rng)
        size = self.config.data.image_size
        x_T = jax.random.normal(noise_rng, (batch_size, size, size, 3))
        return samplers.SAMPLERS[sampler](
            self.denoiser(params),
            self.schedule,
            x_T,
            sampler_rng,
            steps,
            eta=self.config.sample.eta,
            clip_x0=self.clip_x0,
            record_every=record_every,
            progress=progress,
        )

    def generate(self, state: TrainState, rng: jax.Array, batch_size: int) -> jax.Array:
        """What metrics score: `eval.sampler` for `eval.sampler_steps` on the EMA denoiser, clipped to [-1, 1]."""
        evaluation = self.config.eval
        images, _ = self.run_sampler(
            self.sampling_params(state), rng, batch_size, evaluation.sampler, evaluation.sampler_steps
        )
        return jnp.clip(images, -1.0, 1.0)

    def preview(self, state: TrainState, batch: Batch, rng: jax.Array) -> dict[str, jax.Array]:
        """The same noise every time through `sample.sampler`: the grid that shows training progress."""
        del batch
        sample = self.config.sample
        count = self.grid_size * self.grid_size
        images, _ = self.run_sampler(self.sampling_params(state), rng, count, sample.sampler, sample.sampler_steps)
        return {"samples_fixed": jnp.clip(images, -1.0, 1.0)}

    def noising_strip(self, images: jax.Array, rng: jax.Array, columns: int) -> jax.Array:
        """Rows of q(x_t | x_0) for each real image at `columns` timesteps from 0 to T - 1 (same noise per row).

        Returns:
          [rows * columns, S, S, 3], row-major, clipped to [-1, 1] for display.
        """
        t = jnp.linspace(0, self.num_timesteps - 1, columns).round().astype(jnp.int32)
        noise = jax.random.normal(rng, images.shape)
        rows = jax.vmap(lambda x, n: schedules.q_sample(self.schedule, jnp.repeat(x[None], columns, 0), t, n))(
            images, jnp.repeat(noise[:, None], columns, 1)
        )
        return jnp.clip(rows.reshape(-1, *images.shape[1:]), -1.0, 1.0)

    def _sample_grids(self, params, real: jax.Array, rng: jax.Array) -> dict[str, tuple[np.ndarray, int]]:
        sample = self.config.sample
        grid_rng, strip_rng, noising_rng, rows_rng = jax.random.split(rng, 4)
        count, columns = self.grid_size * self.grid_size, sample.strip_columns
        run = jax.jit(self.run_sampler, static_argnums=(2, 3, 4, 5, 6))
        grid, _ = run(params, grid_rng, count, sample.sampler, sample.sampler_steps, 0, True)
        # The denoising strip: x0_hat at `columns` points along the configured sampler's steps.
        record_every = max(1, -(-sample.sampler_steps // columns))
        last, trajectory = run(params, strip_rng, sample.strip_rows, sample.sampler, sample.sampler_steps, record_every)
        strip = jnp.concatenate([trajectory, last[None]], axis=0).swapaxes(0, 1)
        grids = {
            "samples": (np.asarray(jnp.clip(grid, -1, 1)), self.grid_size),
            "noising": (np.asarray(jax.jit(self.noising_strip, static_argnums=2)(real, noising_rng, columns)), columns),
            "denoising": (np.asarray(jnp.clip(strip.reshape(-1, *grid.shape[1:]), -1, 1)), strip.shape[1]),
        }
        row_images = [
            run(params, rows_rng, self.grid_size, name, steps, 0, True)[0] for name, steps in self.sampler_rows
        ]
        if row_images:
            grids["samplers"] = (np.asarray(jnp.clip(jnp.concatenate(row_images), -1, 1)), self.grid_size)
        return grids

    def sample(self, state: TrainState, batches: Iterable[Batch], rng: jax.Array) -> Samples:
        """Grid, noising and denoising strips, one row per `sample.sampler_rows` entry, and single images.

        Rows of the sampler comparison share their initial noise (the same key), so they differ only by sampler
        and step count.
        """
        grids_rng, individual_rng = jax.random.split(rng)
        real = jnp.asarray(next(iter(batches))["image"][: self.config.sample.strip_rows])
        grids = self._sample_grids(self.sampling_params(state), real, grids_rng)
        return Samples(grids, self.individual_images(state, individual_rng))

    def evaluate(self, state: TrainState, batches: Iterable[Batch]) -> dict[str, float]:
        """The diffusion loss of the sampling parameters on the batches (dropout off, fixed timesteps and noise)."""
        loss = jax.jit(lambda params, images, key: self.loss(params, images, key, train=False)[1])
        totals, count = {}, 0
        for i, batch in enumerate(batches):
            images = jnp.asarray(batch["image"])
            for name, value in loss(self.sampling_params(state), images, jax.random.PRNGKey(i)).items():
                totals[name] = totals.get(name, 0.0) + float(value) * len(images)
            count += len(images)
        return {name.replace("train/", "eval/"): total / count for name, total in totals.items()}
