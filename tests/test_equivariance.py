"""Tests of the EQ-T / EQ-T_frac / EQ-R equivariance metrics (animejax.metrics.equivariance)."""

import jax
import numpy as np
import pytest
import torch

from animejax.metrics import equivariance as eq
from tests.reference import torch_equivariance as ref


def _uniform(shape, seed):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(np.float32)


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def _assert_same(ours, theirs, atol=1e-5):
    """(image, mask) NHWC JAX vs (image, mask) NCHW torch: images to atol, masks exactly."""
    (z, m), (zt, mt) = ours, theirs
    assert z.shape == m.shape == tuple(zt.shape[i] for i in (0, 2, 3, 1))
    np.testing.assert_allclose(np.asarray(z), zt.numpy().transpose(0, 2, 3, 1), atol=atol, rtol=0)
    np.testing.assert_array_equal(np.asarray(m), mt.numpy().transpose(0, 2, 3, 1))


# Smooth test images: a sum of sinusoids of at most 0.125 cycles per pixel, the same frequencies in both axes'
# units of the image width (so rotations keep them below that), different phases per channel.
_FREQS = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, -0.5]]) * 4.0  # cycles per image width
_AMPS = np.array([0.35, 0.3, 0.25])


def _pattern(u, v, channels=3):
    """[..., channels] values of the band-limited pattern at (u, v), in image widths, float64."""
    phases = np.linspace(0.0, 2.0, channels)[:, None] + np.arange(len(_FREQS))[None, :]
    arg = 2 * np.pi * (u[..., None, None] * _FREQS[:, 0] + v[..., None, None] * _FREQS[:, 1]) + phases
    return np.sum(_AMPS * np.cos(arg), axis=-1)


def _pixel_coords(size):
    """Pixel centres of a size x size image in image widths, centred: (u [1, size], v [size, 1])."""
    c = (np.arange(size) + 0.5) / size - 0.5
    return c[None, :], c[:, None]


def _render_transformed(transform, size=32, batch=2, shift=0.0):
    """The pattern at M[:2, :2] p + M[:2, 2] for the pixel centres p (StyleGAN3's input transform), [B, S, S, 3]."""
    u, v = _pixel_coords(size)
    m = np.asarray(transform, np.float64)
    tu = m[0, 0] * u + m[0, 1] * v + m[0, 2]
    tv = m[1, 0] * u + m[1, 1] * v + m[1, 2]
    images = np.stack([_pattern(tu + shift * i, tv) for i in range(batch)])
    return images.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Parity with the reference operators.

TRANSLATIONS = [(0.0, 0.0), (3 / 32, -5 / 32), (0.1, -0.23), (-0.37, 0.052), (0.5 / 32, 0.0), (1.2, 0.1), (-0.95, 0.5)]


@pytest.mark.parametrize("shape", [(2, 32, 32, 3), (1, 24, 40, 2)])
def test_translations_match_reference(shape):
    x = _uniform(shape, 0)
    for tx, ty in TRANSLATIONS:
        _assert_same(eq.apply_integer_translation(x, tx, ty), ref.apply_integer_translation(_nchw(x), tx, ty))
        _assert_same(eq.apply_fractional_translation(x, tx, ty), ref.apply_fractional_translation(_nchw(x), tx, ty))
    ours = eq.apply_fractional_translation(x, 0.07, -0.11, a=2)
    _assert_same(ours, ref.apply_fractional_translation(_nchw(x), 0.07, -0.11, a=2))


def test_bandlimit_filter_matches_reference():
    shear = np.array([[1.1, 0.3, 0.2], [-0.2, 0.9, 0.1], [0, 0, 1]], np.float32)
    for mat, kwargs in [
        (eq.rotation_matrix(0.7), dict(a=3, amax=6, up=4)),
        (eq.rotation_matrix(-0.7), dict(a=3, amax=6, up=1)),
        (shear, dict(a=2, amax=5, aflt=16, up=2, cutoff_in=0.8, cutoff_out=0.9)),
    ]:
        ours = eq.construct_affine_bandlimit_filter(mat, **kwargs)
        theirs = ref.construct_affine_bandlimit_filter(torch.from_numpy(mat), **kwargs).numpy()
        assert ours.shape == theirs.shape == (2 * kwargs["amax"] * kwargs["up"] - 1,) * 2
        np.testing.assert_allclose(ours, theirs, atol=1e-6 * np.abs(theirs).max(), rtol=0)
    np.testing.assert_allclose(eq.rotation_matrix(0.7), ref.rotation_matrix(0.7).numpy(), atol=1e-7)


@pytest.mark.parametrize("angle", [0.0, 0.3, -1.0, 2.5])
def test_rotations_match_reference(angle):
    x = _uniform((2, 32, 32, 3), 1)
    _assert_same(eq.apply_fractional_rotation(x, angle), ref.apply_fractional_rotation(_nchw(x), angle))
    _assert_same(eq.apply_fractional_pseudo_rotation(x, angle), ref.apply_fractional_pseudo_rotation(_nchw(x), angle))


def test_general_affine_on_a_non_square_image_matches_reference():
    x = _uniform((1, 24, 40, 3), 2)
    mat = np.array([[1.1, 0.3, 0.2], [-0.2, 0.9, -0.1], [0, 0, 1]], np.float32)
    kwargs = dict(up=2, a=2, amax=4, aflt=16)
    ours = eq.apply_affine_transformation(x, mat, **kwargs)
    _assert_same(ours, ref.apply_affine_transformation(_nchw(x), mat, **kwargs))


# ---------------------------------------------------------------------------------------------------------------
# Closed-form checks, independent of the reference.


@pytest.mark.parametrize("shift", [(3, -5), (-7, 0), (0, 0), (40, 2)])
def test_integer_translation_is_a_shift_with_zeros(shift):
    """Output (i, j) is x[i - iy, j - ix] where that is inside the image (mask 1), else 0 (mask 0)."""
    ix, iy = shift
    x = _uniform((2, 16, 32, 3), 3)
    z, m = eq.apply_integer_translation(x, ix / 32, iy / 16)
    rows, cols = np.arange(16)[:, None] - iy, np.arange(32)[None, :] - ix
    inside = (rows >= 0) & (rows < 16) & (cols >= 0) & (cols < 32)
    expected = np.where(inside[None, :, :, None], x[:, np.clip(rows, 0, 15), np.clip(cols, 0, 31)], 0)
    np.testing.assert_array_equal(np.asarray(z), expected)
    np.testing.assert_array_equal(np.asarray(m), np.broadcast_to(inside[None, :, :, None], x.shape))


@pytest.mark.parametrize("t", [(0.3 / 32, -2.6 / 32), (-4.45 / 32, 1.5 / 32)])
def test_fractional_translation_of_a_band_limited_pattern(t):
    """Lanczos-3 shift of the pattern equals the pattern at p - t inside the mask (measured 0.005; range 0.9)."""
    u, v = _pixel_coords(32)
    x = _pattern(u, v)[None].astype(np.float32)
    z, m = eq.apply_fractional_translation(x, *t)
    expected = _pattern(u - t[0], v - t[1])[None]
    inside = np.asarray(m) > 0
    # Output n reads source pixels n - floor(t) - 3 ... n - floor(t) + 2; it is kept when all are in the image.
    rows, cols = (np.arange(32) - np.floor(t[k] * 32) for k in (1, 0))
    rows, cols = ((first - 3 >= 0) & (first + 2 < 32) for first in (rows, cols))
    np.testing.assert_array_equal(inside[0, :, :, 0], rows[:, None] & cols[None, :])
    assert np.abs(np.asarray(z) - expected)[inside].max() < 0.01


def test_rotation_of_a_band_limited_pattern():
    """Inside the mask, rotation by 0 is the identity (measured 4e-6), rotation by a gives the pattern at
    [[cos a, -sin a], [sin a, cos a]] p (measured 0.004; 1.5 the other way round) and the pseudo-rotation leaves the
    low-frequency pattern unchanged (measured 4e-4); the pattern's range is 0.9."""
    u, v = _pixel_coords(32)
    x = _pattern(u, v)[None].astype(np.float32)
    z, m = eq.apply_fractional_rotation(x, 0.0)
    inside = np.asarray(m) > 0
    assert inside.mean() > 0.35
    assert np.abs(np.asarray(z) - x)[inside].max() < 1e-4
    angle = 0.4
    z, m = eq.apply_fractional_rotation(x, angle)
    c, s = np.cos(angle), np.sin(angle)
    expected = _pattern(c * u - s * v, s * u + c * v)[None]
    inside = np.asarray(m) > 0
    assert inside.mean() > 0.3
    assert np.abs(np.asarray(z) - expected)[inside].max() < 0.01
    y, m = eq.apply_fractional_pseudo_rotation(x, angle)
    inside = np.asarray(m) > 0
    assert np.abs(np.asarray(y) - x)[inside].max() < 2e-3


def test_operators_trace_under_jit():
    """Host-valued shifts and angles with a traced image give the eager results."""
    x = _uniform((1, 16, 16, 3), 4)
    for op, arg in [
        (eq.apply_integer_translation, (0.2, -0.1)),
        (eq.apply_fractional_translation, (0.13, -0.07)),
        (eq.apply_fractional_rotation, (0.5,)),
        (eq.apply_fractional_pseudo_rotation, (0.5,)),
    ]:
        jitted = jax.jit(lambda image: op(image, *arg))(x)
        for a, b in zip(jitted, op(x, *arg)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# The metric.


def _replayed_draws(seed, num_batches, kinds, translate_max=0.125, rotate_max=1.0, size=32):
    """The transforms, t and angles of `equivariance_psnr`'s documented draws, per batch and kind."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(num_batches):
        for kind in [k for k in eq.KINDS if k in kinds]:
            if kind == "eqr":
                angle = np.float32((rng.random() * 2 - 1) * rotate_max * np.pi)
                c, s = np.cos(np.float64(angle)), np.sin(np.float64(angle))
                draws.append((kind, angle, np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float32)))
            else:
                t = ((rng.random(2) * 2 - 1) * translate_max).astype(np.float32)
                if kind == "eqt_int":
                    t = np.round(t * size) / size
                    assert np.allclose(t * size, np.round(t * size), atol=1e-5)
                draws.append((kind, t, np.array([[1, 0, -t[0]], [0, 1, -t[1]], [0, 0, 1]], np.float32)))
    return draws


def test_draws_and_psnr_match_the_reference_loop():
    """Renderer calls get I then the replayed M per kind; the PSNRs equal the reference's loop on them in torch."""
    calls = []

    def render(batch, transform):
        calls.append((batch, transform.copy()))
        return _render_transformed(transform, shift=0.03 * batch) + 0.01 * _uniform((2, 32, 32, 3), batch + 10)

    psnr = eq.equivariance_psnr(render, num_batches=2, rng=5)
    draws = _replayed_draws(5, 2, eq.KINDS)
    assert list(psnr) == list(eq.KINDS)
    assert [b for b, _ in calls] == [0] * 4 + [1] * 4
    sums = np.zeros(6)
    for batch in range(2):
        (_, identity), *rest = calls[4 * batch : 4 * batch + 4]
        np.testing.assert_array_equal(identity, np.eye(3))
        orig = _nchw(render(batch, identity))
        for k, ((kind, param, expected_m), (_, got_m)) in enumerate(zip(draws[3 * batch : 3 * batch + 3], rest)):
            assert got_m.dtype == np.float32
            np.testing.assert_allclose(got_m, expected_m, atol=1e-7)
            img = _nchw(render(batch, got_m))
            if kind == "eqt_int":
                target, mask = ref.apply_integer_translation(orig, torch.tensor(param[0]), torch.tensor(param[1]))
            elif kind == "eqt_frac":
                target, mask = ref.apply_fractional_translation(orig, torch.tensor(param[0]), torch.tensor(param[1]))
            else:
                target, ref_mask = ref.apply_fractional_rotation(orig, torch.tensor(param))
                img, pseudo_mask = ref.apply_fractional_pseudo_rotation(img, torch.tensor(param))
                mask = ref_mask * pseudo_mask
            sums[2 * k] += ((target - img).square() * mask).double().sum().item()
            sums[2 * k + 1] += mask.double().sum().item()
    np.testing.assert_allclose([psnr[k] for k in eq.KINDS], ref.psnr(sums).numpy(), atol=1e-3)


def test_equivariant_renderer_scores_high_and_invariant_renderer_low():
    """Over 3 batches, the pattern rendered at M p scores > 100 dB on EQ-T (measured inf: whole-pixel shifts give
    the same float32 values), > 50 dB on EQ-T_frac (59) and EQ-R (63), the interpolation filters' error; the same
    pattern ignoring M scores < 20 dB on every metric (measured 10.6-11.8 dB)."""
    equivariant = eq.equivariance_psnr(lambda b, m: _render_transformed(m, shift=0.1 * b), num_batches=3, rng=0)
    invariant = eq.equivariance_psnr(lambda b, m: _render_transformed(np.eye(3), shift=0.1 * b), num_batches=3, rng=0)
    print("equivariant", equivariant, "invariant", invariant)
    assert equivariant["eqt_int"] > 100
    assert equivariant["eqt_frac"] > 50
    assert equivariant["eqr"] > 50
    assert all(value < 20 for value in invariant.values())


def test_kinds_subset_and_input_checks():
    only_frac = eq.equivariance_psnr(lambda b, m: _render_transformed(m), num_batches=1, rng=1, kinds=("eqt_frac",))
    assert list(only_frac) == ["eqt_frac"]
    exact = eq.equivariance_psnr(lambda b, m: np.zeros((1, 16, 16, 3), np.float32), 1, kinds=("eqt_int",))
    assert exact == {"eqt_int": np.inf}
    with pytest.raises(ValueError, match="kinds"):
        eq.equivariance_psnr(lambda b, m: None, 1, kinds=("eqt",))
