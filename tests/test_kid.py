"""Tests of the Kernel Inception Distance against a direct evaluation of the unbiased MMD^2 formula."""

import itertools

import numpy as np
import pytest

from animejax.metrics.kid import kernel_inception_distance


def _direct_mmd2(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, pair by pair in float64."""
    m, d = len(x), x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return (xx + yy) / (m * (m - 1)) - 2 * xy / (m * m)


def test_single_subset_covering_everything_matches_formula():
    """Exact up to rounding: atol covers sums of O(1) kernel values that cancel to O(1e-3)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 8))
    y = rng.normal(size=(30, 8)) * 1.3 + 0.2
    mean, std = kernel_inception_distance(x, y, num_subsets=1, subset_size=30)
    np.testing.assert_allclose(mean, _direct_mmd2(x, y), rtol=1e-10, atol=1e-12)
    assert std == 0.0
    # Larger subset_size is clipped to the set size; every subset is then a permutation of all rows.
    mean, std = kernel_inception_distance(x, y, num_subsets=5, subset_size=1000, seed=3)
    np.testing.assert_allclose(mean, _direct_mmd2(x, y), rtol=1e-10, atol=1e-12)
    assert std < 1e-12 * abs(mean)


def test_subsets_are_those_torch_fidelity_draws():
    """Unequal sets: subsets drawn with RandomState(seed).choice, first set first, clipped to the smaller set."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(25, 6)), rng.normal(size=(12, 6)) + 0.5
    draws = np.random.RandomState(11)
    expected = []
    for _ in range(4):
        xs = x[draws.choice(25, 12, replace=False)]
        ys = y[draws.choice(12, 12, replace=False)]
        expected.append(_direct_mmd2(xs, ys))
    mean, std = kernel_inception_distance(x, y, num_subsets=4, subset_size=100, seed=11)
    np.testing.assert_allclose(mean, np.mean(expected), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(std, np.std(expected), rtol=1e-9)


def test_same_distribution_near_zero_and_shift_positive():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(1000, 64)), rng.normal(size=(1000, 64))
    same_mean, same_std = kernel_inception_distance(a, b, num_subsets=20, subset_size=500)
    shifted_mean, shifted_std = kernel_inception_distance(a, b + 0.3, num_subsets=20, subset_size=500)
    assert abs(same_mean) < 3 * same_std + 1e-3
    assert shifted_mean > 10 * abs(same_mean) + 5 * shifted_std
    assert shifted_mean > 0.01


def test_deterministic_and_checks():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 4)), rng.normal(size=(60, 4))
    assert kernel_inception_distance(a, b, 3, 20, seed=5) == kernel_inception_distance(a, b, 3, 20, seed=5)
    assert kernel_inception_distance(a, b, 3, 20, seed=5) != kernel_inception_distance(a, b, 3, 20, seed=6)
    with pytest.raises(ValueError):
        kernel_inception_distance(a, rng.normal(size=(50, 5)))
    with pytest.raises(ValueError):
        kernel_inception_distance(a[:1], b)
