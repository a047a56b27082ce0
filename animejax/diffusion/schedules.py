"""Discrete diffusion schedules and the closed-form maps between noise, data and the network's target.

The forward process of Ho et al. 2020 (DDPM) adds Gaussian noise over T steps: q(x_t | x_0) =
N(sqrt(abar_t) x_0, (1 - abar_t) I) with abar_t = prod_{s<=t} (1 - beta_s). Timesteps are 0-based here:
index t = 0 is the least noisy step (the paper's t = 1), t = T - 1 the noisiest. A `Schedule` holds every
per-step coefficient the training loss and the samplers need, named as in Ho et al.'s released code
(diffusion_utils_2.py), computed in float64 numpy and stored as float32 arrays.

The network predicts one of `TARGETS`: the noise ("epsilon", Ho et al.), the velocity ("v", Salimans & Ho
2022: v = sqrt(abar) eps - sqrt(1 - abar) x_0) or the data ("x0"). `training_target` gives the regression
target, `to_x0_and_eps` turns a prediction back into the (x_0, eps) pair the samplers use, and `loss_weight`
is min-SNR-gamma weighting (Hang et al. 2023) expressed in each target's space.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from animejax.errors import ConfigError

TARGETS = ("epsilon", "v", "x0")


@flax.struct.dataclass
class Schedule:
    """Per-timestep coefficients of a discrete diffusion process; every field is a float32 [T] array.

    A pytree (its arrays are leaves), so it can be passed to jitted functions as an argument.

    Attributes:
        betas: beta_t, the variance added at step t.
        alphas: 1 - beta_t.
        alphas_cumprod: abar_t = prod_{s<=t} alpha_s.
        alphas_cumprod_prev: abar_{t-1}, with abar_{-1} = 1.
        sqrt_alphas_cumprod: sqrt(abar_t), the mean coefficient of q(x_t | x_0).
        sqrt_one_minus_alphas_cumprod: sqrt(1 - abar_t), the standard deviation of q(x_t | x_0).
        posterior_variance: beta_t (1 - abar_{t-1}) / (1 - abar_t), the variance of q(x_{t-1} | x_t, x_0)
            (Ho et al. eq. 7); 0 at t = 0.
        posterior_log_variance_clipped: its log, with the t = 0 value replaced by the t = 1 one (as Ho et al.'s
            code, so it stays finite).
        posterior_mean_coef1: sqrt(abar_{t-1}) beta_t / (1 - abar_t), the x_0 coefficient of the posterior mean.
        posterior_mean_coef2: sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t), the x_t coefficient.
    """

    betas: jax.Array
    alphas: jax.Array
    alphas_cumprod: jax.Array
    alphas_cumprod_prev: jax.Array
    sqrt_alphas_cumprod: jax.Array
    sqrt_one_minus_alphas_cumprod: jax.Array
    posterior_variance: jax.Array
    posterior_log_variance_clipped: jax.Array
    posterior_mean_coef1: jax.Array
    posterior_mean_coef2: jax.Array

    @property
    def num_timesteps(self) -> int:
        """T, the number of diffusion steps (static: read from the array shape)."""
        return self.betas.shape[0]


def schedule_from_betas(betas) -> Schedule:
    """The `Schedule` of a beta sequence, computed in float64 as Ho et al.'s `GaussianDiffusion2.__init__`.

    Args:
        betas: [T] betas, T >= 2, each in (0, 1).

    Returns:
        The schedule, float32 arrays.

    Raises:
        ValueError: if betas is not 1-D with T >= 2 or a value lies outside (0, 1).
    """
    betas = np.asarray(betas, np.float64)
    if betas.ndim != 1 or betas.shape[0] < 2:
        raise ValueError(f"betas must be a 1-D array of at least 2 values, got shape {betas.shape}")
    if not np.all((betas > 0) & (betas < 1)):
        raise ValueError(f"betas must lie in (0, 1), got values in [{betas.min()}, {betas.max()}]")
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    fields = dict(
        betas=betas,
        alphas=alphas,
        alphas_cumprod=alphas_cumprod,
        alphas_cumprod_prev=alphas_cumprod_prev,
        sqrt_alphas_cumprod=np.sqrt(alphas_cumprod),
        sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - alphas_cumprod),
        posterior_variance=posterior_variance,
        posterior_log_variance_clipped=np.log(np.append(posterior_variance[1], posterior_variance[1:])),
        posterior_mean_coef1=betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
    )
    return Schedule(**{name: jnp.asarray(value, jnp.float32) for name, value in fields.items()})


def linear_schedule(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """Ho et al.'s linear schedule: betas evenly spaced from `beta_start` to `beta_end` (both included).

    The default endpoints are the paper's, meant for T = 1000 (abar_{T-1} = 4e-5). With far fewer steps they
    leave visible signal at t = T - 1; Nichol & Dhariwal 2021 scale both endpoints by 1000 / T for that case.

    Args:
        num_timesteps: T.
        beta_start: beta_0.
        beta_end: beta_{T-1}.
    """
    return schedule_from_betas(np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64))


def cosine_schedule(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Nichol & Dhariwal 2021's cosine schedule: abar(t) = f(t) / f(0), f(t) = cos(((t / T) + s) / (1 + s) pi/2)^2.

    As in their `betas_for_alpha_bar`: beta at index i is 1 - abar((i + 1) / T) / abar(i / T), clipped to
    `max_beta` (only the last one is, where f(1) = 0), so abar at index i is f((i + 1) / T) / f(0) until the clip.

    Args:
        num_timesteps: T.
        s: the offset keeping beta_0 from being too small.
        max_beta: the largest beta allowed.
    """

    def f(u):
        return np.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    steps = np.arange(num_timesteps, dtype=np.float64)
    betas = 1.0 - f((steps + 1) / num_timesteps) / f(steps / num_timesteps)
    return schedule_from_betas(np.minimum(betas, max_beta))


SCHEDULES = {"linear": linear_schedule, "cosine": cosine_schedule}


def make_schedule(name: str, num_timesteps: int) -> Schedule:
    """The named schedule with its default parameters.

    Args:
        name: a key of `SCHEDULES`.
        num_timesteps: T.

    Raises:
        ConfigError: on an unknown name.
    """
    if name not in SCHEDULES:
        raise ConfigError(f"Unknown diffusion schedule {name!r}; choose one of {', '.join(SCHEDULES)}.")
    return SCHEDULES[name](num_timesteps)


def extract(arr: jax.Array, t: jax.Array, ndim: int) -> jax.Array:
    """Gathers per-example coefficients and shapes them to broadcast against a batch.

    Args:
        arr: [T] per-timestep values.
        t: [B] int timesteps.
        ndim: the rank of the batch they multiply (4 for [B, H, W, C]).

    Returns:
        [B, 1, ..., 1] (rank `ndim`) values arr[t].
    """
    return arr[t].reshape((t.shape[0],) + (1,) * (ndim - 1))


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """A draw from q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), given the noise.

    Args:
        schedule: the schedule.
        x0: [B, ...] clean data.
        t: [B] int timesteps.
        noise: [B, ...] standard normal noise.

    Returns:
        x_t: [B, ...] sqrt(abar_t) x0 + sqrt(1 - abar_t) noise.
    """
    return (
        extract(schedule.sqrt_alphas_cumprod, t, x0.ndim) * x0
        + extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise
    )


def q_posterior(
    schedule: Schedule, x0: jax.Array, x_t: jax.Array, t: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The forward-process posterior q(x_{t-1} | x_t, x_0) (Ho et al. eq. 6-7).

    Args:
        schedule: the schedule.
        x0: [B, ...] data (or its prediction).
        x_t: [B, ...] noisy data at t.
        t: [B] int timesteps.

    Returns:
        (mean [B, ...], variance [B, 1, ..., 1], log_variance_clipped [B, 1, ..., 1]).
    """
    mean = (
        extract(schedule.posterior_mean_coef1, t, x_t.ndim) * x0
        + extract(schedule.posterior_mean_coef2, t, x_t.ndim) * x_t
    )
    variance = extract(schedule.posterior_variance, t, x_t.ndim)
    log_variance = extract(schedule.posterior_log_variance_clipped, t, x_t.ndim)
    return mean, variance, log_variance


def x0_from_eps(schedule: Schedule, x_t: jax.Array, eps: jax.Array, t: jax.Array) -> jax.Array:
    """x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t); all arrays [B, ...], t [B]."""
    return (x_t - extract(schedule.sqrt_one_minus_alphas_cumprod, t, x_t.ndim) * eps) / extract(
        schedule.sqrt_alphas_cumprod, t, x_t.ndim
    )


def eps_from_x0(schedule: Schedule, x_t: jax.Array, x0: jax.Array, t: jax.Array) -> jax.Array:
    """eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t); all arrays [B, ...], t [B]."""
    return (x_t - extract(schedule.sqrt_alphas_cumprod, t, x_t.ndim) * x0) / extract(
        schedule.sqrt_one_minus_alphas_cumprod, t, x_t.ndim
    )


def v_from_x0_and_eps(schedule: Schedule, x0: jax.Array, eps: jax.Array, t: jax.Array) -> jax.Array:
    """The velocity v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022); arrays [B, ...], t [B]."""
    return (
        extract(schedule.sqrt_alphas_cumprod, t, x0.ndim) * eps
        - extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * x0
    )


def x0_and_eps_from_v(schedule: Schedule, x_t: jax.Array, v: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x_0, eps) from a velocity: x_0 = a x_t - sigma v, eps = sigma x_t + a v, a = sqrt(abar_t), sigma^2 = 1 - a^2.

    Args:
        schedule: the schedule.
        x_t: [B, ...] noisy data.
        v: [B, ...] velocity.
        t: [B] int timesteps.
    """
    a = extract(schedule.sqrt_alphas_cumprod, t, x_t.ndim)
    sigma = extract(schedule.sqrt_one_minus_alphas_cumprod, t, x_t.ndim)
    return a * x_t - sigma * v, sigma * x_t + a * v


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ConfigError(f"Unknown diffusion prediction target {target!r}; choose one of {', '.join(TARGETS)}.")


def training_target(schedule: Schedule, target: str, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """What the network regresses onto for x_t = q_sample(schedule, x0, t, noise).

    Args:
        schedule: the schedule.
        target: one of `TARGETS`.
        x0: [B, ...] clean data.
        noise: [B, ...] the noise x_t was made with.
        t: [B] int timesteps.

    Returns:
        [B, ...]: noise ("epsilon"), sqrt(abar) noise - sqrt(1 - abar) x0 ("v") or x0 ("x0").

    Raises:
        ConfigError: on an unknown target.
    """
    _check_target(target)
    if target == "epsilon":
        return noise
    if target == "v":
        return v_from_x0_and_eps(schedule, x0, noise, t)
    return x0


def to_x0_and_eps(
    schedule: Schedule, target: str, prediction: jax.Array, x_t: jax.Array, t: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """A network prediction in `target` space as the pair (x0_hat, eps_hat) consistent with x_t.

    Both outputs satisfy x_t = sqrt(abar_t) x0_hat + sqrt(1 - abar_t) eps_hat.

    Args:
        schedule: the schedule.
        target: one of `TARGETS`.
        prediction: [B, ...] the network output.
        x_t: [B, ...] its input.
        t: [B] int timesteps.

    Returns:
        (x0_hat [B, ...], eps_hat [B, ...]).

    Raises:
        ConfigError: on an unknown target.
    """
    _check_target(target)
    if target == "epsilon":
        return x0_from_eps(schedule, x_t, prediction, t), prediction
    if target == "v":
        return x0_and_eps_from_v(schedule, x_t, prediction, t)
    return prediction, eps_from_x0(schedule, x_t, prediction, t)


def snr(schedule: Schedule, t: jax.Array) -> jax.Array:
    """The signal-to-noise ratio abar_t / (1 - abar_t): [B] float32 for [B] int timesteps.

    1 - abar_t is taken from the float64-computed sqrt(1 - abar_t): float32 1 - abar_t loses digits near t = 0.
    """
    return schedule.alphas_cumprod[t] / schedule.sqrt_one_minus_alphas_cumprod[t] ** 2


def loss_weight(schedule: Schedule, t: jax.Array, target: str, min_snr_gamma: float) -> jax.Array:
    """Per-example min-SNR-gamma loss weights (Hang et al. 2023) for an MSE in `target` space.

    With x_t fixed, an error in x0 space maps to eps space scaled by sqrt(SNR) and to v space by
    sqrt(SNR + 1), so these weights make every target's weighted MSE equal min(SNR, gamma) times the x0-space
    MSE: epsilon min(SNR, gamma) / SNR, v min(SNR, gamma) / (SNR + 1), x0 min(SNR, gamma).

    Args:
        schedule: the schedule.
        t: [B] int timesteps.
        target: one of `TARGETS`.
        min_snr_gamma: gamma (5 in the paper); 0 gives weight 1 (the plain loss of that target).

    Returns:
        [B] float32 weights.

    Raises:
        ConfigError: on an unknown target.
        ValueError: on a negative gamma.
    """
    _check_target(target)
    if min_snr_gamma < 0:
        raise ValueError(f"min_snr_gamma must be >= 0 (0 turns the weighting off), got {min_snr_gamma}")
    ratio = snr(schedule, t)
    if min_snr_gamma == 0:
        return jnp.ones_like(ratio)
    clipped = jnp.minimum(ratio, min_snr_gamma)
    if target == "epsilon":
        return clipped / ratio
    if target == "v":
        return clipped / (ratio + 1.0)
    return clipped
