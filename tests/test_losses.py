"""Loss primitives against float64 numpy formulas."""

import numpy as np
import pytest

from animejax.methods import losses


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_gaussian_kl_matches_closed_form(rng):
    mean = rng.normal(size=(5, 7))
    log_variance = rng.normal(size=(5, 7))
    variance = np.exp(log_variance)
    # KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2)/2 - 1/2, summed over dims.
    expected = np.sum(-0.5 * log_variance + (variance + mean**2) / 2 - 0.5, axis=1)
    got = losses.gaussian_kl(mean.astype(np.float32), log_variance.astype(np.float32))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


def test_gaussian_kl_is_zero_for_the_prior():
    np.testing.assert_allclose(np.asarray(losses.gaussian_kl(np.zeros((3, 4)), np.zeros((3, 4)))), 0.0, atol=1e-7)


def test_squared_error(rng):
    a, b = rng.normal(size=(4, 6, 6, 3)), rng.normal(size=(4, 6, 6, 3))
    expected = ((a - b) ** 2).reshape(4, -1).sum(axis=1)
    got = losses.squared_error(a.astype(np.float32), b.astype(np.float32))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_bernoulli_nll_matches_cross_entropy(rng):
    logits = rng.normal(scale=4.0, size=(3, 5, 5, 3))
    target = rng.uniform(size=(3, 5, 5, 3))
    p = 1.0 / (1.0 + np.exp(-logits))
    expected = -(target * np.log(p) + (1 - target) * np.log(1 - p)).reshape(3, -1).sum(axis=1)
    got = losses.bernoulli_nll(logits.astype(np.float32), target.astype(np.float32))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_bernoulli_nll_is_stable_for_large_logits():
    got = np.asarray(losses.bernoulli_nll(np.array([[200.0, -200.0]]), np.array([[1.0, 0.0]])))
    assert np.isfinite(got).all() and got[0] < 1e-6
