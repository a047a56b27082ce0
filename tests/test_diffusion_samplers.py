"""Samplers with the exact denoiser of Gaussian data: moments, the probability-flow ODE map, inversion, jit, logs.

For data x0 ~ N(mu, diag(s^2)) the noisy marginal is x_t ~ N(a mu, a^2 s^2 + sigma^2) per dimension (a =
sqrt(abar_t), sigma = sqrt(1 - abar_t)) and the exact denoiser is closed form:
E[x0 | x_t] = mu + a s^2 / (a^2 s^2 + sigma^2) (x_t - a mu), eps_hat = (x_t - a x0_hat) / sigma.
The probability-flow ODE moves each dimension through its marginals monotonically, so it keeps the standardised
value z = (x_t - a mu) / sqrt(a^2 s^2 + sigma^2) fixed; from x at t = T - 1 it ends (sigma = 0) at mu + s z.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animejax.diffusion import samplers, schedules

MU = np.array([0.5, -1.0, 0.0, 1.5])
STD = np.array([1.0, 0.5, 2.0, 0.7])
SHAPE = (2, 2, 1)  # The 4 dimensions as tiny images.


def gaussian_denoiser(schedule):
    """The exact (x0_hat, eps_hat) of N(MU, diag(STD^2)) data, as a sampler's denoise_fn."""
    mu, std = jnp.asarray(MU.reshape(SHAPE), jnp.float32), jnp.asarray(STD.reshape(SHAPE), jnp.float32)

    def denoise(x_t, t):
        a = schedules.extract(schedule.sqrt_alphas_cumprod, t, x_t.ndim)
        sigma = schedules.extract(schedule.sqrt_one_minus_alphas_cumprod, t, x_t.ndim)
        x0_hat = mu + a * std**2 / (a**2 * std**2 + sigma**2) * (x_t - a * mu)
        return x0_hat, (x_t - a * x0_hat) / sigma

    return denoise


def exact_flow(schedule, x_T):
    """The exact probability-flow ODE map from x at t = T - 1 to clean data, in float64: [N, 4]."""
    abar = float(schedule.alphas_cumprod[-1])
    a, sigma = np.sqrt(abar), np.sqrt(1.0 - abar)
    z = (np.asarray(x_T, np.float64).reshape(-1, 4) - a * MU) / np.sqrt(a**2 * STD**2 + sigma**2)
    return MU + STD * z


def flat(x):
    return np.asarray(x, np.float64).reshape(x.shape[0], -1)


@pytest.fixture(scope="module", params=["linear", "cosine"])
def schedule(request):
    return schedules.make_schedule(request.param, 1000)


def test_timesteps_trailing_spacing():
    np.testing.assert_array_equal(samplers.timesteps(1000, 20), np.arange(999, 0, -50))
    np.testing.assert_array_equal(samplers.timesteps(1000, 1000), np.arange(999, -1, -1))
    np.testing.assert_array_equal(samplers.timesteps(1000, 1), [999])
    np.testing.assert_array_equal(samplers.timesteps(10, 3), [9, 5, 2])  # floor(10 (3 - i) / 3) - 1.
    for num_timesteps, num_steps in ((1000, 7), (1000, 999), (37, 36), (50, 13)):
        ts = samplers.timesteps(num_timesteps, num_steps)
        assert ts.shape == (num_steps,) and ts.dtype == np.int32
        assert ts[0] == num_timesteps - 1 and ts[-1] == num_timesteps // num_steps - 1
        assert np.all(np.diff(ts) <= -(num_timesteps // num_steps))
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="num_steps must be in"):
            samplers.timesteps(1000, bad)


# N = 10000 samples: the standard error of a sample mean is s / 100 and of a sample variance s^2 sqrt(2 / N) =
# 1.4% of s^2; the tolerance is 5 of those (a false failure rate of about 1e-6 per moment). The samplers' own
# biases must be smaller for the comparison to hold, so each runs with enough steps: the first-order DDIM
# shrinks the variance by O(1/S) (7% at 50 steps, 0.7% at 250 seen), DPM-Solver++(2M) by O(1/S^2) (<= 1% at
# 40); DDPM's fixed-small posterior variance makes the exact law of its T = 1000 step chain (its Gaussian
# moments propagated in float64) 0.4-1.5% narrower than the data. Starting from N(0, I) instead of the exact
# marginal at T - 1 shifts the mean by s a_{T-1} mu (a_{T-1} = 0.006 on the linear schedule): added to the mean
# tolerance. The largest deviation seen is a third of its tolerance.
@pytest.mark.parametrize("name,num_steps", [("ddpm", None), ("ddim", 250), ("dpm_solver++", 40)])
def test_samplers_reproduce_the_data_moments(schedule, name, num_steps):
    n = 10000
    x_T = jax.random.normal(jax.random.PRNGKey(0), (n,) + SHAPE)
    out, trajectory = samplers.SAMPLERS[name](
        gaussian_denoiser(schedule), schedule, x_T, jax.random.PRNGKey(1), num_steps
    )
    assert out.shape == x_T.shape and trajectory.shape == (0,) + x_T.shape
    out = flat(out)
    prior_shift = STD * float(schedule.sqrt_alphas_cumprod[-1]) * np.abs(MU)
    np.testing.assert_array_less(np.abs(out.mean(axis=0) - MU), 5 * STD / np.sqrt(n) + prior_shift)
    np.testing.assert_array_less(np.abs(out.var(axis=0, ddof=1) - STD**2), 5 * STD**2 * np.sqrt(2 / (n - 1)))


def test_deterministic_samplers_converge_to_the_exact_ode_map(schedule):
    n = 2000
    denoise = gaussian_denoiser(schedule)
    x_T = jax.random.normal(jax.random.PRNGKey(2), (n,) + SHAPE)
    exact = exact_flow(schedule, x_T)

    def rms_error(name, num_steps):
        out, _ = samplers.SAMPLERS[name](denoise, schedule, x_T, jax.random.PRNGKey(3), num_steps)
        return np.sqrt(((flat(out) - exact) ** 2).mean())

    ddim = {s: rms_error("ddim", s) for s in (20, 40)}
    dpm = {s: rms_error("dpm_solver++", s) for s in (20, 40)}
    # Seen (linear / cosine): DDIM 0.100 / 0.086 at 20 steps and half that at 40 (first order); DPM-Solver++
    # 0.013 / 0.024 at 20 steps, 4.2x / 3.1x less at 40 (second order, but the last step to clean data is first
    # order for every sampler).
    assert dpm[20] < ddim[20] / 3
    assert 1.7 < ddim[20] / ddim[40] < 2.3
    assert dpm[20] / dpm[40] > 2.7
    assert dpm[40] < 0.01 and ddim[40] < 0.06
    # All T steps: DDIM approaches the exact map itself (~2e-3 seen), so the reference is the right limit.
    assert rms_error("ddim", 1000) < 4e-3


def test_ddim_eta_zero_is_deterministic_and_eta_one_over_all_steps_is_ddpm():
    schedule = schedules.linear_schedule(100, 1e-3, 0.2)  # Nichol & Dhariwal's 1000 / T scaling of the endpoints.
    denoise = gaussian_denoiser(schedule)
    x_T = jax.random.normal(jax.random.PRNGKey(4), (64,) + SHAPE)
    a, _ = samplers.ddim_sample(denoise, schedule, x_T, jax.random.PRNGKey(5), 20)
    b, _ = samplers.ddim_sample(denoise, schedule, x_T, jax.random.PRNGKey(6), 20)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c, _ = samplers.ddim_sample(denoise, schedule, x_T, jax.random.PRNGKey(5), 20, eta=1.0)
    d, _ = samplers.ddim_sample(denoise, schedule, x_T, jax.random.PRNGKey(6), 20, eta=1.0)
    assert np.abs(np.asarray(c - d)).mean() > 0.05
    # Song et al. 2021 Sec. 4.1: eta = 1 on every timestep is DDPM's ancestral step (the same noise stream).
    ddim, _ = samplers.ddim_sample(denoise, schedule, x_T, jax.random.PRNGKey(7), 100, eta=1.0)
    ddpm, _ = samplers.ddpm_sample(denoise, schedule, x_T, jax.random.PRNGKey(7), 100)
    np.testing.assert_allclose(np.asarray(ddim), np.asarray(ddpm), atol=1e-4)
    with pytest.raises(ValueError, match="visits all 100 timesteps"):
        samplers.ddpm_sample(denoise, schedule, x_T, jax.random.PRNGKey(7), 20)


def test_ddim_inversion_round_trip(schedule):
    n = 2000
    denoise = gaussian_denoiser(schedule)
    x0 = jnp.asarray(MU.reshape(SHAPE) + STD.reshape(SHAPE) * np.random.default_rng(8).normal(size=(n,) + SHAPE))
    x0 = x0.astype(jnp.float32)
    # The exact inverse of the ODE map: z = (x0 - mu) / s, then x_{T-1} = a mu + sqrt(a^2 s^2 + sigma^2) z.
    abar = float(schedule.alphas_cumprod[-1])
    z = (flat(x0) - MU) / STD
    exact_latent = np.sqrt(abar) * MU + np.sqrt(abar * STD**2 + 1 - abar) * z
    errors, latent_errors = {}, {}
    for num_steps in (50, 100):
        latent = samplers.ddim_invert(denoise, schedule, x0, num_steps)
        back, _ = samplers.ddim_sample(denoise, schedule, latent, jax.random.PRNGKey(0), num_steps)
        errors[num_steps] = np.sqrt(((flat(back) - flat(x0)) ** 2).mean())
        latent_errors[num_steps] = np.sqrt(((flat(latent) - exact_latent) ** 2).mean())
    # Each step inverts with eps_hat taken at the other end of the step, an O(1/S) error that accumulates. Seen
    # (linear / cosine), round trip: 0.064 / 0.085 rms at 50 steps, 0.033 / 0.050 at 100; latent against the
    # exact inverse: 0.096 / 0.126 and 0.049 / 0.073. Both shrink as 1/S, so the inversion is exact in the limit.
    assert errors[100] < 0.06 and latent_errors[100] < 0.09
    assert 1.5 < errors[50] / errors[100] < 2.3
    assert 1.5 < latent_errors[50] / latent_errors[100] < 2.3


def test_trajectory_records_x0_predictions(schedule):
    denoise = gaussian_denoiser(schedule)
    x_T = jax.random.normal(jax.random.PRNGKey(9), (8,) + SHAPE)
    for name in samplers.SAMPLERS:
        num_steps = None if name == "ddpm" else 20
        steps = schedule.num_timesteps if name == "ddpm" else 20
        out, every_step = samplers.SAMPLERS[name](
            denoise, schedule, x_T, jax.random.PRNGKey(1), num_steps, record_every=1
        )
        _, every_sixth = samplers.SAMPLERS[name](
            denoise, schedule, x_T, jax.random.PRNGKey(1), num_steps, record_every=6
        )
        assert every_step.shape == (steps,) + x_T.shape
        assert every_sixth.shape == (-(-steps // 6),) + x_T.shape  # ceil(steps / 6): steps 0, 6, 12, ...
        np.testing.assert_array_equal(np.asarray(every_sixth), np.asarray(every_step[::6]))
        # The first snapshot is the denoiser's prediction from the input noise; the last is the output.
        t_first = jnp.full((8,), schedule.num_timesteps - 1, jnp.int32)
        np.testing.assert_allclose(np.asarray(every_step[0]), np.asarray(denoise(x_T, t_first)[0]), atol=1e-6)
        np.testing.assert_allclose(np.asarray(every_step[-1]), np.asarray(out), atol=1e-5)


def test_clip_x0_keeps_samples_in_range():
    schedule = schedules.linear_schedule(1000)
    denoise = gaussian_denoiser(schedule)  # Data mostly outside [-1, 1]: dimension 2 has s = 2.
    x_T = jax.random.normal(jax.random.PRNGKey(10), (256,) + SHAPE)
    for name, num_steps in (("ddpm", None), ("ddim", 20), ("dpm_solver++", 20)):
        clipped, _ = samplers.SAMPLERS[name](denoise, schedule, x_T, jax.random.PRNGKey(0), num_steps, clip_x0=True)
        plain, _ = samplers.SAMPLERS[name](denoise, schedule, x_T, jax.random.PRNGKey(0), num_steps)
        assert np.abs(np.asarray(clipped)).max() <= 1.0
        assert np.abs(np.asarray(plain)).max() > 2.0


def test_samplers_run_under_jit_with_a_traced_schedule():
    schedule = schedules.cosine_schedule(200)
    x_T = jax.random.normal(jax.random.PRNGKey(11), (16,) + SHAPE)

    def run(name, num_steps):
        def sample(sched, x, rng):
            return samplers.SAMPLERS[name](gaussian_denoiser(sched), sched, x, rng, num_steps, eta=0.5, record_every=4)

        return sample

    for name, num_steps in (("ddpm", None), ("ddim", 10), ("dpm_solver++", 10)):
        eager = run(name, num_steps)(schedule, x_T, jax.random.PRNGKey(1))
        jitted = jax.jit(run(name, num_steps))(schedule, x_T, jax.random.PRNGKey(1))
        for e, j in zip(eager, jitted):
            np.testing.assert_allclose(np.asarray(j), np.asarray(e), atol=1e-5)
    latent = jax.jit(lambda s, x: samplers.ddim_invert(gaussian_denoiser(s), s, x, 10))(schedule, x_T)
    np.testing.assert_allclose(
        np.asarray(latent), np.asarray(samplers.ddim_invert(gaussian_denoiser(schedule), schedule, x_T, 10)), atol=1e-5
    )


def test_progress_logs_every_tenth_of_the_steps(caplog):
    schedule = schedules.linear_schedule(100, 1e-3, 0.2)
    denoise = gaussian_denoiser(schedule)
    x_T = jnp.zeros((2,) + SHAPE)
    cases = {25: [*range(2, 25, 2), 25], 20: list(range(2, 21, 2)), 5: [1, 2, 3, 4, 5]}
    for num_steps, expected in cases.items():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="animejax.diffusion.samplers"):
            out, _ = jax.jit(
                lambda x: samplers.ddim_sample(denoise, schedule, x, jax.random.PRNGKey(0), num_steps, progress=True)
            )(x_T)
            jax.block_until_ready(out)
            jax.effects_barrier()
        messages = sorted((r.getMessage() for r in caplog.records), key=lambda m: int(m.split()[2].split("/")[0]))
        assert messages == [f"sampling step {k}/{num_steps}" for k in expected]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="animejax.diffusion.samplers"):
        jax.block_until_ready(samplers.dpm_solver_pp_sample(denoise, schedule, x_T, jax.random.PRNGKey(0), 10))
        jax.effects_barrier()
    assert not caplog.records  # progress defaults to False.
