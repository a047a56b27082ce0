"""Kernel Inception Distance: unbiased MMD^2 with a cubic polynomial kernel over random subsets of features.

The definition is that of Bińkowski et al. (2018) as computed by torch-fidelity (`metric_kid.py`) and clean-fid
(`kernel_distance`): k(x, y) = (x·y / d + 1)^3, and for subsets X, Y of m rows each

    MMD^2 = [sum_{i!=j} k(x_i, x_j) + sum_{i!=j} k(y_i, y_j)] / (m (m - 1)) - 2 sum_{i,j} k(x_i, y_j) / m^2.

The subsets are drawn without replacement, first from `features1` then from `features2`, with
`np.random.RandomState(seed).choice`, in the order torch-fidelity draws them; the reported std is over subsets
(ddof 0), as torch-fidelity reports it. This module takes feature arrays; it does not compute them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """k(x, y) = (x·y / d + coef0)^degree for every pair of rows; [M, D] x [N, D] -> [M, N] float64."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased MMD^2 from kernel matrices of two sets of m rows each (diagonals of k_xx, k_yy excluded)."""
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    features1: Any, features2: Any, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID between two feature sets: mean and std of the unbiased MMD^2 over random subsets.

    `subset_size` is clipped to the smaller set's size (torch-fidelity refuses such inputs, clean-fid clips
    too); a message is logged when that happens. With both sets no larger than `subset_size` every subset is
    a permutation of all rows, so every subset gives the same value and the std is 0.

    Args:
        features1: [N1, D] features (e.g. of generated images); converted to float64.
        features2: [N2, D] features (e.g. of real images).
        num_subsets: how many subset pairs to average over.
        subset_size: rows per subset before clipping.
        seed: seed of the subset draws.

    Returns:
        (mean, std) of MMD^2 over the subsets (KID is often reported x1e3).

    Raises:
        ValueError: on mismatched feature dimensions or fewer than 2 rows in a set.
    """
    x_all = np.asarray(features1, np.float64)
    y_all = np.asarray(features2, np.float64)
    if x_all.ndim != 2 or y_all.ndim != 2 or x_all.shape[1] != y_all.shape[1]:
        raise ValueError(f"features must be [N1, D] and [N2, D], got {x_all.shape} and {y_all.shape}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    n1, n2 = x_all.shape[0], y_all.shape[0]
    m = min(subset_size, n1, n2)
    if m < 2:
        raise ValueError(f"KID needs at least 2 rows per set, got {n1} and {n2} (subset_size {subset_size})")
    if m < subset_size:
        logging.info("KID subset size clipped from %d to %d (sets of %d and %d rows)", subset_size, m, n1, n2)

    rng = np.random.RandomState(seed)
    values = np.zeros(num_subsets, np.float64)
    for i in range(num_subsets):
        x = x_all[rng.choice(n1, m, replace=False)]
        y = y_all[rng.choice(n2, m, replace=False)]
        values[i] = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))
    return float(values.mean()), float(values.std())
