"""Diffusion schedules, the forward process, the posterior and the prediction targets against float64 formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animejax.diffusion import schedules
from animejax.errors import ConfigError

T = 200


def numpy_linear_betas(num_timesteps, start=1e-4, end=0.02):
    return start + (end - start) * np.arange(num_timesteps) / (num_timesteps - 1)


def numpy_cosine_betas(num_timesteps, s=0.008, max_beta=0.999):
    """Nichol & Dhariwal 2021 eq. 17 and their clip: beta_t = min(1 - abar_t / abar_{t-1}, max_beta)."""
    u = np.arange(num_timesteps + 1) / num_timesteps
    f = np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
    abar = f / f[0]
    return np.minimum(1 - abar[1:] / abar[:-1], max_beta)


BETAS = {"linear": numpy_linear_betas, "cosine": numpy_cosine_betas}


def as64(x):
    return np.asarray(x, np.float64)


@pytest.fixture(params=["linear", "cosine"])
def named(request):
    """(schedule, float64 betas written here) for each named schedule, T = 200."""
    return schedules.make_schedule(request.param, T), BETAS[request.param](T)


def test_linear_betas_and_cosine_alphas_cumprod():
    linear = schedules.linear_schedule(1000)
    assert linear.num_timesteps == 1000
    assert linear.betas.dtype == jnp.float32
    np.testing.assert_allclose(as64(linear.betas)[[0, -1]], [1e-4, 0.02], rtol=1e-6)
    np.testing.assert_allclose(np.diff(as64(linear.betas)), (0.02 - 1e-4) / 999, rtol=1e-3)
    # abar at index i (the paper's t = i + 1) is f((i + 1) / T) / f(0) until the last, clipped step.
    cosine = schedules.cosine_schedule(T)
    u = np.arange(1, T + 1) / T
    f = np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2
    f0 = np.cos(0.008 / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(as64(cosine.alphas_cumprod)[:-1], f[:-1] / f0, rtol=1e-5, atol=1e-9)
    assert float(cosine.betas[-1]) == pytest.approx(0.999)
    np.testing.assert_allclose(float(cosine.alphas_cumprod[-1]), f[-2] / f0 * 0.001, rtol=1e-4)


def test_schedule_arrays_match_ho_et_al(named):
    schedule, betas = named
    abar = np.cumprod(1 - betas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    np.testing.assert_allclose(as64(schedule.betas), betas, rtol=1e-6)
    np.testing.assert_allclose(as64(schedule.alphas), 1 - betas, rtol=1e-6)
    np.testing.assert_allclose(as64(schedule.alphas_cumprod), abar, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(as64(schedule.alphas_cumprod_prev), abar_prev, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(as64(schedule.sqrt_alphas_cumprod), np.sqrt(abar), rtol=1e-5)
    np.testing.assert_allclose(as64(schedule.sqrt_one_minus_alphas_cumprod), np.sqrt(1 - abar), rtol=1e-5)
    # Ho et al. eq. 7: beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t.
    variance = (1 - abar_prev) / (1 - abar) * betas
    np.testing.assert_allclose(as64(schedule.posterior_variance), variance, rtol=1e-5, atol=1e-12)
    assert float(schedule.posterior_variance[0]) == 0.0
    np.testing.assert_allclose(
        as64(schedule.posterior_log_variance_clipped), np.log(np.concatenate([[variance[1]], variance[1:]])), rtol=1e-5
    )
    # Ho et al. eq. 7: mu_tilde = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) /
    # (1 - abar_t) x_t.
    np.testing.assert_allclose(
        as64(schedule.posterior_mean_coef1), np.sqrt(abar_prev) * betas / (1 - abar), rtol=1e-5, atol=1e-12
    )
    np.testing.assert_allclose(
        as64(schedule.posterior_mean_coef2), np.sqrt(1 - betas) * (1 - abar_prev) / (1 - abar), rtol=1e-5
    )


def test_q_sample_and_q_posterior(named):
    schedule, betas = named
    abar = np.cumprod(1 - betas)
    rng = np.random.default_rng(0)
    x0, noise = rng.normal(size=(2, 5, 4, 4, 3))
    x_t = rng.normal(size=(5, 4, 4, 3))
    t = np.array([0, 1, 50, 150, T - 1])
    a = abar[t][:, None, None, None]
    got = schedules.q_sample(schedule, jnp.asarray(x0, jnp.float32), jnp.asarray(t), jnp.asarray(noise, jnp.float32))
    np.testing.assert_allclose(as64(got), np.sqrt(a) * x0 + np.sqrt(1 - a) * noise, atol=1e-5)
    # The posterior N(mean, var) is the Gaussian conditional of x_{t-1} given x_t and x_0, from the joint
    # q(x_{t-1} | x_0) q(x_t | x_{t-1}): var = 1 / (1 / (1 - abar_{t-1}) + alpha_t / beta_t) and mean =
    # var (sqrt(abar_{t-1}) x_0 / (1 - abar_{t-1}) + sqrt(alpha_t) x_t / beta_t) (t > 0; at t = 0, x_0 itself).
    mean, var, log_var = schedules.q_posterior(
        schedule, jnp.asarray(x0, jnp.float32), jnp.asarray(x_t, jnp.float32), jnp.asarray(t)
    )
    assert var.shape == log_var.shape == (5, 1, 1, 1)
    abar_prev = np.concatenate([[1.0], abar[:-1]])[t][:, None, None, None]
    beta, alpha = betas[t][:, None, None, None], 1 - betas[t][:, None, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):  # t = 0 rows, replaced below.
        precision = 1 / (1 - abar_prev) + alpha / beta
        expected_var = np.where(t[:, None, None, None] > 0, 1 / precision, 0.0)
        expected_mean = expected_var * (np.sqrt(abar_prev) * x0 / (1 - abar_prev) + np.sqrt(alpha) * x_t / beta)
    expected_mean[0] = x0[0]
    np.testing.assert_allclose(as64(var), expected_var, rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(as64(mean), expected_mean, atol=1e-4)
    np.testing.assert_allclose(as64(log_var[1:]), np.log(expected_var[1:]), rtol=1e-5)


def test_targets_and_conversions(named):
    schedule, betas = named
    abar = np.cumprod(1 - betas)
    rng = np.random.default_rng(1)
    x0, noise = rng.normal(size=(2, 6, 2, 2, 1))
    t = np.array([0, 3, 60, 120, 180, T - 1])
    a, sigma = np.sqrt(abar[t])[:, None, None, None], np.sqrt(1 - abar[t])[:, None, None, None]
    x_t = a * x0 + sigma * noise
    formulas = {"epsilon": noise, "v": a * noise - sigma * x0, "x0": x0}  # v: Salimans & Ho 2022 Sec. 4.
    args = [jnp.asarray(v, jnp.float32) for v in (x0, noise)]
    for target, expected in formulas.items():
        prediction = schedules.training_target(schedule, target, *args, jnp.asarray(t))
        np.testing.assert_allclose(as64(prediction), expected, atol=1e-5)
        # The exact prediction converts back to the true (x0, noise). x0 from eps divides by a (down to ~1e-4 on
        # the cosine schedule's last step) and eps from x0 by sigma (0.01 on linear at t = 0), amplifying the
        # float32 rounding of x_t accordingly.
        x0_hat, eps_hat = schedules.to_x0_and_eps(
            schedule, target, jnp.asarray(expected, jnp.float32), jnp.asarray(x_t, jnp.float32), jnp.asarray(t)
        )
        np.testing.assert_allclose(as64(x0_hat), x0, atol=1e-6 / a.min() + 1e-5)
        np.testing.assert_allclose(as64(eps_hat), noise, atol=1e-6 / sigma.min() + 1e-5)
    # Any prediction gives a pair consistent with x_t (x_t = a x0_hat + sigma eps_hat), the same in all spaces.
    guess = rng.normal(size=x0.shape)
    x0_hat, eps_hat = schedules.to_x0_and_eps(
        schedule, "v", jnp.asarray(guess, jnp.float32), jnp.asarray(x_t, jnp.float32), jnp.asarray(t)
    )
    np.testing.assert_allclose(a * as64(x0_hat) + sigma * as64(eps_hat), x_t, atol=1e-5)
    np.testing.assert_allclose(as64(x0_hat), a * x_t - sigma * guess, atol=1e-5)
    with pytest.raises(ConfigError, match="epsilon, v, x0"):
        schedules.training_target(schedule, "score", *args, jnp.asarray(t))


def test_min_snr_weights(named):
    schedule, betas = named
    abar = np.cumprod(1 - betas)
    t = np.arange(0, T, 7)
    snr = abar[t] / (1 - abar[t])
    np.testing.assert_allclose(as64(schedules.snr(schedule, jnp.asarray(t))), snr, rtol=1e-4)
    gamma = 5.0
    formulas = {
        "epsilon": np.minimum(snr, gamma) / snr,
        "v": np.minimum(snr, gamma) / (snr + 1),
        "x0": np.minimum(snr, gamma),
    }
    for target, expected in formulas.items():
        got = schedules.loss_weight(schedule, jnp.asarray(t), target, gamma)
        np.testing.assert_allclose(as64(got), expected, rtol=1e-4)
        np.testing.assert_array_equal(np.asarray(schedules.loss_weight(schedule, jnp.asarray(t), target, 0.0)), 1.0)
    # The defining property: with x_t fixed, the weighted MSE of a wrong prediction in each target's space is
    # min(SNR, gamma) times its MSE in x0 space (Hang et al. 2023 eq. 8).
    rng = np.random.default_rng(2)
    x0, noise, wrong = rng.normal(size=(3, len(t), 4))
    a, sigma = np.sqrt(abar[t])[:, None], np.sqrt(1 - abar[t])[:, None]
    x_t = a * x0 + sigma * noise
    x0_err = ((wrong - x0) ** 2).mean(axis=1)
    wrong_eps = (x_t - a * wrong) / sigma  # The same wrong denoiser, as an epsilon and a v prediction.
    predictions = {"x0": wrong, "epsilon": wrong_eps, "v": a * wrong_eps - sigma * wrong}
    for target, prediction in predictions.items():
        true = schedules.training_target(schedule, target, jnp.asarray(x0), jnp.asarray(noise), jnp.asarray(t))
        weight = as64(schedules.loss_weight(schedule, jnp.asarray(t), target, gamma))
        weighted = weight * ((prediction - as64(true)) ** 2).mean(axis=1)
        np.testing.assert_allclose(weighted, np.minimum(snr, gamma) * x0_err, rtol=2e-3)


def test_schedule_is_a_pytree_and_names_are_checked():
    schedule = schedules.linear_schedule(10)
    doubled = jax.jit(lambda s: jax.tree_util.tree_map(lambda x: 2 * x, s))(schedule)
    assert isinstance(doubled, schedules.Schedule) and doubled.num_timesteps == 10
    np.testing.assert_allclose(np.asarray(doubled.betas), 2 * np.asarray(schedule.betas))
    assert len(jax.tree_util.tree_leaves(schedule)) == 10
    with pytest.raises(ConfigError, match="linear, cosine"):
        schedules.make_schedule("sigmoid", 10)
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        schedules.schedule_from_betas([0.1, 1.0])
    with pytest.raises(ValueError, match="at least 2"):
        schedules.schedule_from_betas([0.1])
