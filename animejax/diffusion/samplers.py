"""Samplers that turn Gaussian noise into data with a trained denoiser: DDPM, DDIM and DPM-Solver++(2M).

Every sampler in `SAMPLERS` has the signature

    sample(denoise_fn, schedule, x_T, rng, num_steps, *, eta=0.0, clip_x0=False, record_every=0, progress=False)
        -> (x_0, trajectory)

where `denoise_fn(x_t, t) -> (x0_hat, eps_hat)` takes [B, ...] float32 inputs and [B] int32 timesteps (the
caller wraps the network and `schedules.to_x0_and_eps`). Each sampler makes `num_steps` calls of `denoise_fn`,
the i-th at timestep `timesteps(T, S)[i]`, from the noisiest t = T - 1 down to the least noisy visited; the
last step goes to clean data and returns the data prediction there (DDPM visits every t, so its last step is
at t = 0, whose posterior mean is that prediction).

`trajectory` is [K, B, ...] with K = ceil(num_steps / record_every): the x0_hat of steps 0, record_every,
2 record_every, ... (noisiest first), the "x_0 over time" strip of Ho et al. 2020 Fig. 6; [0, B, ...] when
record_every = 0. x_0 is not appended: the last step's x0_hat (which is x_0) is there only when S - 1 is a
multiple of record_every.

Each sampling loop is one `jax.lax.scan`: a sampler runs tens to thousands of identical network calls, and
as a scan it compiles the network once and runs with no host round trips, where unrolling would compile one
copy per step (the GAN critic updates in methods/gan.py are unrolled instead: they are a few steps). The
whole sampler jits with `denoise_fn`, `num_steps`, `clip_x0`, `record_every` and `progress` static; the
schedule may be a traced argument.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from animejax.diffusion.schedules import Schedule, extract

DenoiseFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]

logger = logging.getLogger(__name__)


def timesteps(num_timesteps: int, num_steps: int) -> np.ndarray:
    """The S timesteps a sampler visits, noisiest first: the "trailing" spacing of Lin et al. 2024.

    t_i = floor((S - i) T / S) - 1 for i = 0..S-1: T - 1, then every T/S steps down to T/S - 1 (for T = 1000,
    S = 20: 999, 949, ..., 49; S = T gives every timestep). Starting at T - 1 means the sampler starts where
    x_T ~ N(0, I) is (nearly) the true marginal, unlike the "leading" spacing of the DDIM code, which starts at
    T - T/S; after the last timestep the sampler steps straight to clean data (abar = 1) with its data
    prediction, as diffusers' DPM-Solver does, rather than spending a denoiser call at t = 0, where the noise
    is only sqrt(1 - abar_0).

    Args:
        num_timesteps: T.
        num_steps: S, 1 <= S <= T (S = 1 gives [T - 1]).

    Returns:
        [S] int32, strictly decreasing.

    Raises:
        ValueError: if S is outside [1, T].
    """
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must be in [1, {num_timesteps}] (the schedule's T), got {num_steps}")
    i = np.arange(num_steps, dtype=np.int64)
    return ((num_steps - i) * num_timesteps // num_steps - 1).astype(np.int32)


def _log_progress(step, total: int) -> None:
    logger.info("sampling step %d/%d", int(step), total)


def _maybe_report(i: jax.Array, num_steps: int, progress: bool) -> None:
    """Logs "sampling step k/S" after every ~10% of the steps (and the last), from inside the scan."""
    if not progress:
        return
    every = max(1, num_steps // 10)
    done = i + 1
    jax.lax.cond(
        (done % every == 0) | (done == num_steps),
        lambda: jax.debug.callback(functools.partial(_log_progress, total=num_steps), done),
        lambda: None,
    )


def _scan_steps(step_fn, carry, xs, x_T: jax.Array, num_steps: int, record_every: int, progress: bool):
    """Runs `step_fn(carry, xs_i) -> (carry, x0_hat)` over the steps in one scan, recording and reporting.

    Returns:
        (final carry, trajectory [K, B, ...]).
    """
    if record_every < 0:
        raise ValueError(f"record_every must be >= 0, got {record_every}")
    num_records = math.ceil(num_steps / record_every) if record_every else 0
    trajectory = jnp.zeros((num_records,) + x_T.shape, x_T.dtype)

    def body(state, inputs):
        carry, trajectory = state
        i, xs_i = inputs
        carry, x0_hat = step_fn(carry, xs_i)
        if record_every:
            j = i // record_every
            snapshot = jnp.where(i % record_every == 0, x0_hat.astype(x_T.dtype), trajectory[j])
            trajectory = trajectory.at[j].set(snapshot)
        _maybe_report(i, num_steps, progress)
        return (carry, trajectory), None

    (carry, trajectory), _ = jax.lax.scan(body, (carry, trajectory), (jnp.arange(num_steps), xs))
    return carry, trajectory


def _denoise(denoise_fn: DenoiseFn, schedule: Schedule, x: jax.Array, t: jax.Array, clip_x0: bool):
    """Calls the denoiser at scalar timestep t; with clip_x0, clips x0_hat to [-1, 1] and re-derives eps_hat."""
    t_batch = jnp.full((x.shape[0],), t, jnp.int32)
    x0_hat, eps_hat = denoise_fn(x, t_batch)
    if clip_x0:
        x0_hat = jnp.clip(x0_hat, -1.0, 1.0)
        a = extract(schedule.sqrt_alphas_cumprod, t_batch, x.ndim)
        eps_hat = (x - a * x0_hat) / extract(schedule.sqrt_one_minus_alphas_cumprod, t_batch, x.ndim)
    return x0_hat, eps_hat


def ddpm_sample(
    denoise_fn: DenoiseFn,
    schedule: Schedule,
    x_T: jax.Array,
    rng: jax.Array,
    num_steps: int | None = None,
    *,
    eta: float = 0.0,
    clip_x0: bool = False,
    record_every: int = 0,
    progress: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Ancestral sampling (Ho et al. 2020 Algorithm 2) over all T steps.

    x_{t-1} = posterior mean(x0_hat, x_t) + sqrt(posterior variance) z, the "fixed small" variance; no noise
    at t = 0, so the result is the posterior mean there, which equals x0_hat(x_0, 0).

    Args:
        denoise_fn: (x_t [B, ...], t [B] int32) -> (x0_hat, eps_hat).
        schedule: the schedule (T steps).
        x_T: [B, ...] float32 standard normal noise.
        rng: PRNG key for the per-step noise (step i uses `jax.random.split(rng, T)[i]`).
        num_steps: None or T; ancestral sampling visits every timestep (for fewer steps use "ddim" with eta=1).
        eta: ignored (the common signature).
        clip_x0: clip x0_hat to [-1, 1] before the posterior mean.
        record_every: record x0_hat every this many steps (0: none).
        progress: log "sampling step k/T" every ~10% of the steps.

    Returns:
        (x_0 [B, ...], trajectory [K, B, ...]).

    Raises:
        ValueError: if num_steps is neither None nor T.
    """
    del eta
    total = schedule.num_timesteps
    if num_steps not in (None, total):
        raise ValueError(
            f"ddpm sampling visits all {total} timesteps, got num_steps={num_steps}; "
            "use the ddim sampler with eta=1 for ancestral sampling over fewer steps"
        )
    ts = jnp.arange(total - 1, -1, -1, dtype=jnp.int32)
    keys = jax.random.split(rng, total)

    def step(x, inputs):
        t, key = inputs
        x0_hat, _ = _denoise(denoise_fn, schedule, x, t, clip_x0)
        t_batch = jnp.full((x.shape[0],), t, jnp.int32)
        mean = (
            extract(schedule.posterior_mean_coef1, t_batch, x.ndim) * x0_hat
            + extract(schedule.posterior_mean_coef2, t_batch, x.ndim) * x
        )
        std = jnp.where(t > 0, jnp.sqrt(schedule.posterior_variance[t]), 0.0)
        noise = jax.random.normal(key, x.shape, x.dtype)
        return (mean + std * noise).astype(x.dtype), x0_hat

    return _scan_steps(step, x_T, (ts, keys), x_T, total, record_every, progress)


def _levels(schedule: Schedule, num_steps: int):
    """The visited timesteps and their noise levels, with the clean level (abar = 1) appended: [S] and [S + 1].

    Returns:
        (ts [S] int32, abar [S + 1], sigma [S + 1]) with sigma = sqrt(1 - abar) read from the schedule's float64-
        computed column (float32 1 - abar would lose digits near t = 0).
    """
    ts = timesteps(schedule.num_timesteps, num_steps)
    abar = jnp.append(schedule.alphas_cumprod[ts], 1.0)
    sigma = jnp.append(schedule.sqrt_one_minus_alphas_cumprod[ts], 0.0)
    return jnp.asarray(ts), abar, sigma


def ddim_sample(
    denoise_fn: DenoiseFn,
    schedule: Schedule,
    x_T: jax.Array,
    rng: jax.Array,
    num_steps: int,
    *,
    eta: float = 0.0,
    clip_x0: bool = False,
    record_every: int = 0,
    progress: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """DDIM (Song et al. 2021 eq. 12) over the S timesteps `timesteps(T, num_steps)`.

    From timestep t to the next one s (abar_s = 1 after the last): x_s = sqrt(abar_s) x0_hat
    + sqrt(1 - abar_s - sigma^2) eps_hat + sigma z with sigma = eta sqrt((1 - abar_s) / (1 - abar_t))
    sqrt(1 - abar_t / abar_s). eta = 0 is deterministic (the probability-flow ODE's first-order solver);
    eta = 1 with S = T is DDPM ancestral sampling.

    Args:
        denoise_fn: (x_t [B, ...], t [B] int32) -> (x0_hat, eps_hat).
        schedule: the schedule.
        x_T: [B, ...] float32 standard normal noise.
        rng: PRNG key for the eta noise (step i uses `jax.random.split(rng, S)[i]`; unused when eta is 0).
        num_steps: S, the number of denoiser calls.
        eta: the stochasticity (0 deterministic, 1 ancestral).
        clip_x0: clip x0_hat to [-1, 1] (and re-derive eps_hat from it).
        record_every: record x0_hat every this many steps (0: none).
        progress: log "sampling step k/S" every ~10% of the steps.

    Returns:
        (x_0 [B, ...], trajectory [K, B, ...]).
    """
    ts, abar, sigma_level = _levels(schedule, num_steps)
    abar_next = abar[1:]
    # sigma_eta^2 = eta^2 (1 - abar_s) / (1 - abar_t) (1 - abar_t / abar_s); the direction coefficient
    # sqrt(1 - abar_s - sigma_eta^2) is sigma_s sqrt(1 - eta^2 (1 - abar_t / abar_s) / (1 - abar_t)).
    ratio = (1.0 - abar[:-1] / abar_next) / sigma_level[:-1] ** 2
    sigma = eta * sigma_level[1:] * jnp.sqrt(ratio)
    direction = sigma_level[1:] * jnp.sqrt(jnp.maximum(1.0 - eta**2 * ratio, 0.0))
    stochastic = not (isinstance(eta, (int, float)) and eta == 0)
    keys = jax.random.split(rng, num_steps)

    def step(x, inputs):
        t, a_next, c_dir, sig, key = inputs
        x0_hat, eps_hat = _denoise(denoise_fn, schedule, x, t, clip_x0)
        x_next = jnp.sqrt(a_next) * x0_hat + c_dir * eps_hat
        if stochastic:
            x_next = x_next + sig * jax.random.normal(key, x.shape, x.dtype)
        return x_next.astype(x.dtype), x0_hat

    return _scan_steps(step, x_T, (ts, abar_next, direction, sigma, keys), x_T, num_steps, record_every, progress)


def ddim_invert(
    denoise_fn: DenoiseFn, schedule: Schedule, x0: jax.Array, num_steps: int, *, progress: bool = False
) -> jax.Array:
    """Deterministic DDIM run backwards (Song et al. 2021 Sec. 5.4): data -> the x_T that eta=0 DDIM maps back.

    The sampler's step i goes from t_i to the next level (t_{i+1}, or clean data after the last) with eps_hat
    evaluated at (x_{t_i}, t_i). Its inverse here, taken in the reverse order from the clean data, evaluates
    eps_hat at the known end instead, with the same timestep t_i (the explicit approximation, as diffusers'
    DDIMInverseScheduler): x_{t_i} / a_{t_i} = x_u / a_u + (sigma_{t_i} / a_{t_i} - sigma_u / a_u) eps_hat,
    a = sqrt(abar), sigma = sqrt(1 - abar), u the less noisy level. S denoiser calls, as the sampler.

    Args:
        denoise_fn: (x_t [B, ...], t [B] int32) -> (x0_hat, eps_hat); only eps_hat is used.
        schedule: the schedule.
        x0: [B, ...] float32 data.
        num_steps: S, the sampler's number of steps to invert.
        progress: log "sampling step k/S" every ~10% of the steps.

    Returns:
        x_T: [B, ...] the latent at t = T - 1.
    """
    ts, abar, sigma = _levels(schedule, num_steps)
    # Reverse order: from level i + 1 (less noisy; the clean data first) up to level i, the denoiser at ts[i].
    alpha = jnp.sqrt(abar)
    levels_from = (alpha[1:][::-1], sigma[1:][::-1])
    levels_to = (alpha[:-1][::-1], sigma[:-1][::-1])

    def step(x, inputs):
        t, (a_from, s_from), (a_to, s_to) = inputs
        _, eps_hat = _denoise(denoise_fn, schedule, x, t, False)
        x0_hat = (x - s_from * eps_hat) / a_from
        return (a_to * x0_hat + s_to * eps_hat).astype(x.dtype), x0_hat

    x_T, _ = _scan_steps(step, x0, (ts[::-1], levels_from, levels_to), x0, num_steps, 0, progress)
    return x_T


def dpm_solver_pp_sample(
    denoise_fn: DenoiseFn,
    schedule: Schedule,
    x_T: jax.Array,
    rng: jax.Array,
    num_steps: int,
    *,
    eta: float = 0.0,
    clip_x0: bool = False,
    record_every: int = 0,
    progress: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a second-order multistep probability-flow ODE solver.

    Works on the data prediction x0_hat in the log-SNR time lambda_t = log(alpha_t / sigma_t), alpha_t =
    sqrt(abar_t), sigma_t = sqrt(1 - abar_t), over the timesteps t_0 > ... > t_{S-1} of `timesteps`.
    With h_i = lambda_{t_{i+1}} - lambda_{t_i}, r_i = h_{i-1} / h_i:

        D_i = (1 + 1/(2 r_i)) x0_hat_i - 1/(2 r_i) x0_hat_{i-1}   (D_0 = x0_hat_0: the first step is first order)
        x_{t_{i+1}} = (sigma_{t_{i+1}} / sigma_{t_i}) x_{t_i} - alpha_{t_{i+1}} (e^{-h_i} - 1) D_i

    The final step from t_{S-1} goes to sigma = 0 (lambda = infinity), where the first-order update is the
    data prediction itself: x_0 = x0_hat(x_{t_{S-1}}, t_{S-1}), as diffusers' DPMSolverMultistepScheduler with
    final_sigmas_type="zero". S denoiser calls, as DDIM.

    Args:
        denoise_fn: (x_t [B, ...], t [B] int32) -> (x0_hat, eps_hat).
        schedule: the schedule.
        x_T: [B, ...] float32 standard normal noise.
        rng: unused (deterministic; the common signature).
        num_steps: S, the number of denoiser calls.
        eta: ignored (the solver is deterministic).
        clip_x0: clip x0_hat to [-1, 1] (the data prediction the solver extrapolates).
        record_every: record x0_hat every this many steps (0: none).
        progress: log "sampling step k/S" every ~10% of the steps.

    Returns:
        (x_0 [B, ...], trajectory [K, B, ...]).
    """
    del rng, eta
    ts, abar, sigma = _levels(schedule, num_steps)
    log_alpha, log_sigma = 0.5 * jnp.log(abar[:-1]), jnp.log(sigma[:-1])
    lam = log_alpha - log_sigma
    h = lam[1:] - lam[:-1]  # [S - 1]: the steps between visited timesteps.
    # The last step (to sigma = 0) gives x_0 = x0_hat through its coefficients: ratio 0, data coefficient 1.
    sigma_ratio = jnp.append(sigma[1:-1] / sigma[:-2], 0.0)
    data_coef = jnp.append(-jnp.sqrt(abar[1:-1]) * jnp.expm1(-h), 1.0)
    # 1 / (2 r_i) = h_i / (2 h_{i-1}); 0 on the first step (first order) and on the last.
    half_inv_r = jnp.concatenate([jnp.zeros((1,)), h[1:] / (2.0 * h[:-1]), jnp.zeros((1,))])[:num_steps]

    def step(carry, inputs):
        x, previous_x0 = carry
        t, ratio, coef, c = inputs
        x0_hat, _ = _denoise(denoise_fn, schedule, x, t, clip_x0)
        d = (1.0 + c) * x0_hat - c * previous_x0
        x_next = ratio * x + coef * d
        return (x_next.astype(x.dtype), x0_hat), x0_hat

    (x_0, _), trajectory = _scan_steps(
        step,
        (x_T, jnp.zeros_like(x_T)),
        (ts, sigma_ratio, data_coef, half_inv_r),
        x_T,
        num_steps,
        record_every,
        progress,
    )
    return x_0, trajectory


SAMPLERS = {"ddpm": ddpm_sample, "ddim": ddim_sample, "dpm_solver++": dpm_solver_pp_sample}
