"""Fréchet distance statistics: streaming feature moments, the distance, and the reference-stats cache.

This module takes feature arrays (e.g. Inception pool3 activations, [B, D]); it does not compute them.
`FeatureStats` accumulates float64 sums over batches so a 50k x 2048 feature set is never held at once.
`frechet_distance` gives pytorch-fid's `calculate_frechet_distance` value from symmetric
eigendecompositions. Statistics are stored in pytorch-fid's npz layout (keys `mu` and `sigma`), so its
`fid_score` reads our files; our own metadata rides along as a JSON string under `animejax_meta`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from animejax.errors import UserError

STATS_CACHE_VERSION = 1
META_KEY = "animejax_meta"


class StatsFileError(UserError):
    """A statistics file that is missing, unreadable or lacks `mu`/`sigma`."""


class ReferenceStats(NamedTuple):
    """Gaussian statistics of a feature set, as stored in an npz file.

    Attributes:
        mu: [D] float64 mean.
        sigma: [D, D] float64 covariance.
        meta: the metadata dict stored with them ({} for files written by other tools).
    """

    mu: np.ndarray
    sigma: np.ndarray
    meta: dict


class FeatureStats:
    """Running float64 mean and covariance of features fed in batches.

    Sums are taken around a shift (the mean of the first batch) so that the covariance keeps its precision
    when features have a large mean. `mean_cov` equals `np.mean(x, 0)` and `np.cov(x, rowvar=False)`
    (unbiased, divisor N - 1) of all rows fed, which is what pytorch-fid computes.

    Example:
        stats = FeatureStats()
        for batch in batches:
            stats.update(features_fn(batch))  # [B, D]
        mu, sigma = stats.mean_cov()
    """

    def __init__(self) -> None:
        self.num_items = 0
        self._shift: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None

    @property
    def dim(self) -> int | None:
        """The feature dimension D, or None before the first update."""
        return None if self._shift is None else self._shift.shape[0]

    def update(self, features: Any) -> None:
        """Adds a batch of features.

        Args:
            features: [B, D] array (any float dtype, numpy or JAX); it is converted to float64 on the host.

        Raises:
            ValueError: if the batch is not 2-D or its D differs from earlier batches.
        """
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be [B, D], got shape {x.shape}")
        if x.shape[0] == 0:
            return
        if self._shift is None:
            self._shift = x.mean(axis=0)
            self._sum = np.zeros(x.shape[1], np.float64)
            self._outer = np.zeros((x.shape[1], x.shape[1]), np.float64)
        elif x.shape[1] != self._shift.shape[0]:
            raise ValueError(f"features have D={x.shape[1]}, earlier batches had D={self._shift.shape[0]}")
        centred = x - self._shift
        self._sum += centred.sum(axis=0)
        self._outer += centred.T @ centred
        self.num_items += x.shape[0]

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Returns (mu [D], sigma [D, D]) in float64 over everything fed so far.

        Raises:
            ValueError: with fewer than 2 items (the unbiased covariance is undefined).
        """
        if self.num_items < 2:
            raise ValueError(f"need at least 2 feature rows for a covariance, got {self.num_items}")
        n = self.num_items
        mean_centred = self._sum / n
        mu = self._shift + mean_centred
        sigma = (self._outer - n * np.outer(mean_centred, mean_centred)) / (n - 1)
        sigma = (sigma + sigma.T) / 2  # exact symmetry, as np.cov gives
        return mu, sigma


def _linalg_backend() -> tuple[Any, Any]:
    """(array module, dtype) for the Fréchet distance's linear algebra on the default JAX backend.

    GPU: jax.numpy in float64 (cuSOLVER supports it). TPU: jax.numpy in float32, which has no float64; see
    `trace_sqrt_product` for the error. CPU: numpy in float64, since there the host is the device and LAPACK's
    eigvalsh through numpy is several times faster than XLA:CPU's eigh (BENCHMARKS.md, "Fréchet distance").
    """
    backend = jax.default_backend()
    if backend == "cpu":
        return np, np.float64
    if backend == "tpu":
        return jnp, jnp.float32
    return jnp, jnp.float64


def _psd_factor(xp: Any, sigma: Any) -> Any:
    """A factor F with F F^T = sigma: Cholesky when sigma is positive definite, else from eigh (clipped at 0)."""
    try:
        factor = xp.linalg.cholesky(sigma)
        if bool(xp.all(xp.isfinite(factor))):  # jax.numpy signals failure with NaNs, numpy by raising
            return factor
    except np.linalg.LinAlgError:
        pass
    eigenvalues, eigenvectors = xp.linalg.eigh(sigma)
    return eigenvectors * xp.sqrt(xp.clip(eigenvalues, 0, None))


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, xp: Any = None, dtype: Any = None) -> float:
    """Tr sqrt(sigma1 sigma2) for covariance matrices, exactly, from symmetric eigendecompositions.

    With F F^T = sigma1, the product sigma1 sigma2 has the eigenvalues of the symmetric PSD matrix
    F^T sigma2 F, so the trace of its square root is the sum of their square roots: no general matrix square
    root (scipy's `sqrtm`, about 48 s for 2048 x 2048 on a 2-core CPU) and no complex arithmetic. F is a
    Cholesky factor when sigma1 is positive definite (more features than dimensions), otherwise
    V diag(sqrt(lambda)) from eigh. Each matrix is divided by its mean diagonal first, which changes nothing
    in exact arithmetic and keeps float32 away from overflow.

    In float32 (TPU, or `dtype=jnp.float32`), eigenvalues carry an absolute error of about D * 2^-24 of the
    largest, so the trace is accurate to about 1e-5 relative for full-rank 2048-d covariances and to 1e-3 when
    they are rank-deficient (fewer samples than dimensions), as measured in tests/test_fid.py.

    Args:
        sigma1: [D, D] covariance.
        sigma2: [D, D] covariance.
        xp, dtype: array module (numpy or jax.numpy) and float dtype; default: `_linalg_backend()`.

    Returns:
        The trace, as a Python float.
    """
    if xp is None:
        xp, dtype = _linalg_backend()
    sigma1 = np.asarray(sigma1, np.float64)
    sigma2 = np.asarray(sigma2, np.float64)
    scale1 = max(float(np.trace(sigma1)) / sigma1.shape[0], np.finfo(np.float64).tiny)
    scale2 = max(float(np.trace(sigma2)) / sigma2.shape[0], np.finfo(np.float64).tiny)
    with jax.enable_x64(dtype == np.float64):
        a = xp.asarray(sigma1 / scale1, dtype)
        b = xp.asarray(sigma2 / scale2, dtype)
        factor = _psd_factor(xp, a)
        inner = factor.T @ b @ factor
        eigenvalues = xp.linalg.eigvalsh((inner + inner.T) / 2)
        total = float(xp.sum(xp.sqrt(xp.clip(eigenvalues, 0, None))))
    return total * float(np.sqrt(scale1 * scale2))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2): pytorch-fid's value, without `sqrtm`.

    d^2 = |mu1 - mu2|^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr sqrt(sigma1 sigma2), the traces in float64 and the
    last one by `trace_sqrt_product` on the default backend. pytorch-fid's `calculate_frechet_distance` takes
    scipy's `sqrtm` of the product (with a diagonal offset when it is singular and the real part of a complex
    result); the value is the same to 1e-6 relative or better (tests/test_fid.py), in seconds instead of
    about a minute at D = 2048.

    Args:
        mu1: [D] mean of the first set (e.g. generated samples).
        sigma1: [D, D] covariance of the first set.
        mu2: [D] mean of the second set (e.g. reference statistics).
        sigma2: [D, D] covariance of the second set.

    Returns:
        The distance (the FID when the statistics are of Inception pool3 features).

    Raises:
        ValueError: on mismatched shapes or non-finite statistics.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors have different shapes: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"covariances must be [D, D] with D={mu1.shape[0]}: {sigma1.shape} vs {sigma2.shape}")
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(value).all():
            raise ValueError(f"{name} has non-finite entries; the features it was computed from are not finite")
    diff = mu1 - mu2
    trace_term = np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(diff.dot(diff) + trace_term)


def save_stats_npz(path: str, mu: np.ndarray, sigma: np.ndarray, meta: dict | None = None) -> None:
    """Writes statistics in pytorch-fid's npz layout, atomically (temporary file, then rename).

    Args:
        path: destination file; written exactly there (no `.npz` is appended).
        mu: [D] mean.
        sigma: [D, D] covariance.
        meta: optional JSON-serialisable dict stored as a string under `animejax_meta`; pytorch-fid ignores it.
    """
    mu = np.asarray(mu, np.float64)
    sigma = np.asarray(sigma, np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"expected mu [D] and sigma [D, D], got {mu.shape} and {sigma.shape}")
    arrays = {"mu": mu, "sigma": sigma}
    if meta is not None:
        arrays[META_KEY] = np.array(json.dumps(meta, sort_keys=True))  # a unicode scalar: no pickle needed
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def load_stats_npz(path: str) -> ReferenceStats:
    """Reads statistics from an npz file (ours or pytorch-fid's).

    Args:
        path: an npz file with keys `mu` and `sigma`, and optionally `animejax_meta`.

    Returns:
        ReferenceStats(mu, sigma, meta) with float64 arrays; meta is {} when the file has none.

    Raises:
        StatsFileError: if the file is missing, unreadable or lacks a key.
    """
    if not os.path.isfile(path):
        raise StatsFileError(f"statistics file not found: {path}")
    try:
        with np.load(path) as f:
            missing = [key for key in ("mu", "sigma") if key not in f.files]
            if missing:
                raise StatsFileError(f"statistics file {path} lacks {missing}; it has {f.files}")
            mu, sigma = f["mu"][:], f["sigma"][:]
            meta = json.loads(str(f[META_KEY])) if META_KEY in f.files else {}
    except StatsFileError:
        raise
    except (OSError, ValueError) as error:
        raise StatsFileError(f"cannot read statistics file {path} ({error}); delete it to recompute") from error
    return ReferenceStats(np.asarray(mu, np.float64), np.asarray(sigma, np.float64), meta)


def reference_stats_key(
    dataset_name: str, fingerprint: str, image_size: int, num_images: int | None, preprocessing: Any
) -> dict:
    """The fields that identify reference statistics (stored as their metadata)."""
    return {
        "version": STATS_CACHE_VERSION,
        "dataset": dataset_name,
        "fingerprint": fingerprint,
        "image_size": int(image_size),
        "num_images": None if num_images is None else int(num_images),
        "preprocessing": preprocessing,
    }


def reference_stats_path(
    cache_dir: str,
    dataset_name: str,
    fingerprint: str,
    image_size: int,
    num_images: int | None,
    preprocessing: Any,
) -> str:
    """The cache file for a dataset's reference statistics.

    The name carries a readable prefix and a hash of every field, so a change in any of them (the dataset's
    content fingerprint, the resolution, the image budget, the preprocessing) selects a different file.

    Args:
        cache_dir: folder of the cache.
        dataset_name: the dataset's name (e.g. the source name).
        fingerprint: a string that changes when the dataset's content changes.
        image_size: the resolution the images are fed at, in pixels.
        num_images: how many images the statistics cover (None: all).
        preprocessing: a JSON-serialisable description of the feature pipeline (feature network, layer,
            resize filter, value range...).

    Returns:
        The path `<cache_dir>/<name>-<size>px-<count>-<hash>.npz`.
    """
    key = reference_stats_key(dataset_name, fingerprint, image_size, num_images, preprocessing)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset_name)[:40] or "dataset"
    count = "all" if num_images is None else str(int(num_images))
    return os.path.join(cache_dir, f"{safe_name}-{int(image_size)}px-{count}-{digest}.npz")


def cached_reference_stats(
    path: str, compute_fn: Callable[[], tuple[np.ndarray, np.ndarray]], meta: dict | None = None
) -> ReferenceStats:
    """Loads statistics from `path` if present, else computes them with `compute_fn` and stores them.

    The file is written to a temporary name and renamed when complete, so an interrupted run never leaves a
    partial file that a later run would load.

    Args:
        path: the cache file, usually from `reference_stats_path`.
        compute_fn: called with no arguments only on a cache miss; returns (mu [D], sigma [D, D]).
        meta: metadata stored with new statistics (e.g. `reference_stats_key(...)`).

    Returns:
        ReferenceStats(mu, sigma, meta).
    """
    if os.path.exists(path):
        logging.info("Loading reference statistics from %s", path)
        return load_stats_npz(path)
    logging.info("Computing reference statistics for %s", path)
    mu, sigma = compute_fn()
    save_stats_npz(path, mu, sigma, meta=meta or {})
    return load_stats_npz(path)
