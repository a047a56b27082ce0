"""Tests of the Fréchet distance, streaming feature statistics and the reference-stats cache."""

import json
import os

import numpy as np
import pytest

from animejax.errors import UserError
from animejax.metrics import fid


def _random_gaussian(rng, dim, num=None):
    """A random mean and a well-conditioned covariance (from samples when num is given)."""
    mu = rng.normal(size=dim)
    if num is None:
        a = rng.normal(size=(dim, dim))
        return mu, a @ a.T / dim + 0.1 * np.eye(dim)
    x = rng.normal(size=(num, dim)) @ rng.normal(size=(dim, dim)) * 0.3 + mu
    return x.mean(0), np.cov(x, rowvar=False)


def _psd_sqrt(a):
    """Symmetric PSD square root by eigendecomposition (independent of scipy.linalg.sqrtm)."""
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _reference_fid(mu1, sigma1, mu2, sigma2):
    """Tr sqrt(s1 s2) = Tr sqrt(s1^1/2 s2 s1^1/2), the symmetric form, all by eigh in float64."""
    root1 = _psd_sqrt(sigma1)
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ sigma2 @ root1), 0, None)).sum()
    diff = mu1 - mu2
    return diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean


@pytest.mark.parametrize("dim", [2, 16, 64])
def test_frechet_matches_eigh_reference(dim):
    rng = np.random.default_rng(dim)
    mu1, s1 = _random_gaussian(rng, dim)
    mu2, s2 = _random_gaussian(rng, dim)
    got = fid.frechet_distance(mu1, s1, mu2, s2)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, _reference_fid(mu1, s1, mu2, s2), rtol=1e-9)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pytorch-fid passes scipy's deprecated `disp`
@pytest.mark.parametrize("num", [None, 40])  # full rank, and rank-deficient sample covariances (N < D)
def test_frechet_matches_pytorch_fid(num):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(7)
    mu1, s1 = _random_gaussian(rng, 64, num)
    mu2, s2 = _random_gaussian(rng, 64, num)
    expected = fid_score.calculate_frechet_distance(mu1, s1, mu2, s2)
    np.testing.assert_allclose(fid.frechet_distance(mu1, s1, mu2, s2), expected, rtol=1e-12, atol=1e-9)


def test_frechet_closed_form_diagonal():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
    v1, v2 = rng.uniform(0.1, 3, size=32), rng.uniform(0.1, 3, size=32)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    np.testing.assert_allclose(fid.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)), expected, rtol=1e-10)


def test_frechet_closed_form_commuting():
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(24, 24)))
    a, b = rng.uniform(0.1, 2, size=24), rng.uniform(0.1, 2, size=24)
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    mu1, mu2 = rng.normal(size=24), rng.normal(size=24)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    np.testing.assert_allclose(fid.frechet_distance(mu1, s1, mu2, s2), expected, rtol=1e-9)


def test_frechet_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(3).normal(size=(500, 64))
    stats = fid.FeatureStats()
    stats.update(x)
    mu, sigma = stats.mean_cov()
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-8


def test_frechet_eps_retry_and_imaginary_check(monkeypatch):
    """The retry and the imaginary-part check, driven by a stubbed square root."""
    rng = np.random.default_rng(4)
    mu1, s1 = _random_gaussian(rng, 8)
    mu2, s2 = _random_gaussian(rng, 8)
    real_sqrtm = fid._sqrtm
    calls = []

    def nan_first(matrix):
        calls.append(matrix)
        return np.full_like(matrix, np.nan) if len(calls) == 1 else real_sqrtm(matrix)

    monkeypatch.setattr(fid, "_sqrtm", nan_first)
    eps = 1e-3
    got = fid.frechet_distance(mu1, s1, mu2, s2, eps=eps)
    offset = eps * np.eye(8)
    np.testing.assert_allclose(calls[1], (s1 + offset) @ (s2 + offset))
    expected = _reference_fid(mu1, s1 + offset, mu2, s2 + offset) - 2 * 8 * eps  # traces without the offset
    np.testing.assert_allclose(got, expected, rtol=1e-9)

    monkeypatch.setattr(fid, "_sqrtm", lambda m: real_sqrtm(m) + 0.5j * np.eye(m.shape[0]))
    with pytest.raises(ValueError, match="Imaginary component"):
        fid.frechet_distance(mu1, s1, mu2, s2)
    monkeypatch.setattr(fid, "_sqrtm", lambda m: real_sqrtm(m) + 1e-6j * np.ones_like(m))
    np.testing.assert_allclose(fid.frechet_distance(mu1, s1, mu2, s2), _reference_fid(mu1, s1, mu2, s2), rtol=1e-6)


def test_frechet_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_feature_stats_streaming_equals_whole_array():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1003, 48)).astype(np.float32) * 3 + 100  # large mean: the shift keeps precision
    stats = fid.FeatureStats()
    for begin in range(0, len(x), 128):
        stats.update(x[begin : begin + 128])
    mu, sigma = stats.mean_cov()
    x64 = x.astype(np.float64)
    assert stats.num_items == 1003 and stats.dim == 48
    np.testing.assert_allclose(mu, np.mean(x64, axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x64, rowvar=False), rtol=1e-9, atol=1e-10)


def test_feature_stats_errors():
    stats = fid.FeatureStats()
    with pytest.raises(ValueError):
        stats.mean_cov()
    stats.update(np.zeros((4, 3)))
    with pytest.raises(ValueError):
        stats.update(np.zeros((4, 5)))


def test_npz_round_trip_and_pytorch_fid_reader(tmp_path):
    rng = np.random.default_rng(6)
    mu, sigma = _random_gaussian(rng, 16)
    path = str(tmp_path / "stats.npz")
    fid.save_stats_npz(path, mu, sigma, meta={"dataset": "faces", "num_images": 10})
    loaded = fid.load_stats_npz(path)
    np.testing.assert_array_equal(loaded.mu, mu)
    np.testing.assert_array_equal(loaded.sigma, sigma)
    assert loaded.meta == {"dataset": "faces", "num_images": 10}
    assert os.listdir(tmp_path) == ["stats.npz"]  # no temporary file left behind

    with np.load(path) as f:  # exactly how pytorch_fid.fid_score.compute_statistics_of_path reads it
        m, s = f["mu"][:], f["sigma"][:]
    np.testing.assert_array_equal(m, mu)
    np.testing.assert_array_equal(s, sigma)
    assert json.loads(str(np.load(path)[fid.META_KEY]))["dataset"] == "faces"


def test_npz_readable_by_pytorch_fid(tmp_path):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    mu, sigma = _random_gaussian(np.random.default_rng(8), 8)
    path = str(tmp_path / "stats.npz")
    fid.save_stats_npz(path, mu, sigma, meta={"k": 1})
    m, s = fid_score.compute_statistics_of_path(path, None, 1, 8, "cpu")
    np.testing.assert_array_equal(m, mu)
    np.testing.assert_array_equal(s, sigma)

    plain = str(tmp_path / "theirs.npz")  # a file written by pytorch-fid's save_fid_stats
    np.savez_compressed(plain, mu=mu, sigma=sigma)
    assert fid.load_stats_npz(plain).meta == {}


def test_load_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        fid.load_stats_npz(str(tmp_path / "missing.npz"))
    path = str(tmp_path / "bad.npz")
    np.savez(path, mu=np.zeros(3))
    with pytest.raises(UserError, match="sigma"):
        fid.load_stats_npz(path)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not an npz")
    with pytest.raises(UserError, match="delete it"):
        fid.load_stats_npz(str(garbage))


def test_reference_stats_computed_once_then_loaded(tmp_path):
    fields = dict(dataset_name="anime/96", fingerprint="abc", image_size=64, num_images=1000, preprocessing="v3")
    path = fid.reference_stats_path(str(tmp_path), **fields)
    meta = fid.reference_stats_key(**fields)
    mu, sigma = _random_gaussian(np.random.default_rng(9), 4)
    calls = []

    def compute():
        calls.append(1)
        return mu, sigma

    first = fid.cached_reference_stats(path, compute, meta=meta)
    second = fid.cached_reference_stats(path, compute, meta=meta)
    assert len(calls) == 1
    np.testing.assert_array_equal(first.mu, second.mu)
    np.testing.assert_array_equal(second.sigma, sigma)
    assert second.meta == json.loads(json.dumps(meta))
    assert os.listdir(tmp_path) == [os.path.basename(path)]


def test_reference_stats_path_changes_with_each_field(tmp_path):
    base = dict(dataset_name="anime", fingerprint="abc", image_size=64, num_images=1000, preprocessing={"net": "pool3"})
    changes = dict(
        dataset_name="other", fingerprint="abd", image_size=96, num_images=None, preprocessing={"net": "logits"}
    )
    path = fid.reference_stats_path(str(tmp_path), **base)
    assert path == fid.reference_stats_path(str(tmp_path), **base)
    assert path.startswith(str(tmp_path)) and path.endswith(".npz")
    seen = {path}
    for field, value in changes.items():
        other = fid.reference_stats_path(str(tmp_path), **{**base, field: value})
        assert other not in seen, field
        seen.add(other)
