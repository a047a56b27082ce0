"""Tests of the Fréchet distance, streaming feature statistics and the reference-stats cache."""

import json
import os

import jax.numpy as jnp
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
    np.testing.assert_allclose(fid.frechet_distance(mu1, s1, mu2, s2), expected, rtol=1e-6)


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


def test_frechet_handles_singular_covariances():
    """Rank-deficient sample covariances (N < D) take the eigh factor; the value matches the reference."""
    rng = np.random.default_rng(4)
    mu1, s1 = _random_gaussian(rng, 64, num=20)
    mu2, s2 = _random_gaussian(rng, 64, num=30)
    assert np.linalg.matrix_rank(s1) < 64
    # Zero eigenvalues come out as +-1e-15 and their square roots as 3e-8: two factorisations of the same
    # singular product agree to about 1e-8 relative, not to rounding.
    np.testing.assert_allclose(fid.frechet_distance(mu1, s1, mu2, s2), _reference_fid(mu1, s1, mu2, s2), rtol=1e-7)


@pytest.mark.parametrize("num", [None, 40])
def test_trace_sqrt_on_jax_float64_equals_numpy(num):
    """The accelerator path (jax.numpy in float64) gives the host path's value."""
    rng = np.random.default_rng(8)
    _, s1 = _random_gaussian(rng, 96, num)
    _, s2 = _random_gaussian(rng, 96, num)
    host = fid.trace_sqrt_product(s1, s2, xp=np, dtype=np.float64)
    device = fid.trace_sqrt_product(s1, s2, xp=jnp, dtype=jnp.float64)
    np.testing.assert_allclose(device, host, rtol=1e-12 if num is None else 1e-8)  # singular: see above


@pytest.mark.parametrize("num, rtol", [(3000, 1e-5), (500, 1e-3)])  # full rank; rank-deficient
def test_trace_sqrt_float32_error_bound(num, rtol):
    """The float32 path (backends without float64) stays within the error its docstring states."""
    rng = np.random.default_rng(9)
    dim = 1024
    _, s1 = _random_gaussian(rng, dim, num)
    _, s2 = _random_gaussian(rng, dim, num)
    exact = fid.trace_sqrt_product(s1, s2, xp=np, dtype=np.float64)
    np.testing.assert_allclose(fid.trace_sqrt_product(s1, s2, xp=jnp, dtype=jnp.float32), exact, rtol=rtol)


def test_frechet_rejects_non_finite_statistics():
    mu, sigma = np.zeros(4), np.eye(4)
    with pytest.raises(ValueError, match="sigma2 has non-finite"):
        fid.frechet_distance(mu, sigma, mu, np.full((4, 4), np.nan))


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


def _face_pixels(folder, begin, count, size=16):
    """Real faces as features: [count, size*size*3] float64 pixels, strongly correlated and ill-conditioned."""
    from PIL import Image

    names = sorted(os.listdir(folder))[begin : begin + count]
    rows = [
        np.asarray(Image.open(os.path.join(folder, n)).convert("RGB").resize((size, size)), np.float64) / 255
        for n in names
    ]
    return np.stack(rows).reshape(count, -1)


def _real_feature_stats(folder, count):
    x, y = _face_pixels(folder, 0, count), _face_pixels(folder, 10000, count)
    return x, (x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pytorch-fid passes scipy's deprecated `disp`
def test_frechet_matches_pytorch_fid_on_real_features(shared_faces):
    """2000 real faces as 768-d features: full-rank but ill-conditioned covariances, as real FID statistics."""
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    _, stats = _real_feature_stats(shared_faces, 2000)
    np.testing.assert_allclose(fid.frechet_distance(*stats), fid_score.calculate_frechet_distance(*stats), rtol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_frechet_on_rank_deficient_real_features(shared_faces):
    """400 faces, 768-d: rank 399. Reference: the Gram route, exact for sigma1 = X^T X / (N - 1).

    The nonzero eigenvalues of sigma1 sigma2 are those of the small PD matrix X sigma2 X^T / (N - 1), with no
    zero eigenvalue to take a square root of. Measured: ours within 1.2e-7 of it, pytorch-fid's sqrtm of the
    singular product 4.8e-6 off; both are held to the bounds below.
    """
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    x, (mu1, s1, mu2, s2) = _real_feature_stats(shared_faces, 400)
    centred = (x - mu1) / np.sqrt(len(x) - 1)
    gram = centred @ s2 @ centred.T
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((gram + gram.T) / 2), 0, None)).sum()
    exact = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    np.testing.assert_allclose(fid.frechet_distance(mu1, s1, mu2, s2), exact, rtol=1e-6)
    np.testing.assert_allclose(fid_score.calculate_frechet_distance(mu1, s1, mu2, s2), exact, rtol=2e-5)
