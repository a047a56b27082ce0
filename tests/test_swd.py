"""Tests of the multi-scale sliced Wasserstein distance."""

import jax
import numpy as np
import pytest
import scipy.ndimage

from animejax.metrics import swd as swd_lib

SMALL = dict(patches_per_image=32, dir_repeats=2, dirs_per_repeat=64, batch_size=32)


def _smooth_images(seed, num=48, size=32):
    """Random smooth colour images in [-1, 1]: bilinearly upsampled 4x4 noise plus a little fine noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1, 1, size=(num, 4, 4, 3))
    images = scipy.ndimage.zoom(coarse, (1, size / 4, size / 4, 1), order=1)
    return np.clip(images + 0.05 * rng.normal(size=images.shape), -1, 1).astype(np.float32)


def _reference_laplacian_pyramid(images_nchw, num_levels):
    """The Progressive GAN reference's pyramid (scipy.ndimage.convolve, mirror borders), NCHW."""
    gaussian = np.float32([1, 4, 6, 4, 1])
    gaussian = np.outer(gaussian, gaussian)[None, None] / 256.0

    def down(x):
        return scipy.ndimage.convolve(x, gaussian, mode="mirror")[:, :, ::2, ::2]

    def up(x):
        res = np.zeros(x.shape[:2] + (x.shape[2] * 2, x.shape[3] * 2), x.dtype)
        res[:, :, ::2, ::2] = x
        return scipy.ndimage.convolve(res, gaussian * 4.0, mode="mirror")

    pyramid = [np.float32(images_nchw)]
    for _ in range(1, num_levels):
        pyramid.append(down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - up(pyramid[-1])
    return pyramid


def test_pyramid_matches_reference_implementation():
    images = _smooth_images(0, num=4, size=32)
    ours = swd_lib.laplacian_pyramid(images, 3)
    theirs = _reference_laplacian_pyramid(images.transpose(0, 3, 1, 2), 3)
    assert [level.shape[1] for level in ours] == [32, 16, 8]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(a), b.transpose(0, 2, 3, 1), atol=1e-5)


def test_sliced_wasserstein_of_a_1d_shift_is_the_shift():
    """In one dimension every unit direction is +-1, so the distance is exactly the shift."""
    a = np.random.default_rng(1).normal(size=(500, 1)).astype(np.float32)
    got = swd_lib._sliced_wasserstein(a, a + 0.25, jax.random.key(0), num_dirs=8)
    np.testing.assert_allclose(float(got), 0.25, rtol=1e-5)


def test_identical_sets_give_zero_and_keys_name_the_levels():
    a = _smooth_images(2)
    result = swd_lib.swd(a, a.copy(), **SMALL)
    assert list(result) == ["swd/32", "swd/16", "swd/mean"]
    assert all(value == 0.0 for value in result.values())


def test_grows_monotonically_with_the_shift():
    """b = a + t * noise: 0 at t = 0 and growing with t at every level."""
    a = _smooth_images(3)
    noise = np.random.default_rng(5).normal(size=a.shape).astype(np.float32)
    results = [swd_lib.swd(a, a + t * noise, **SMALL) for t in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)]
    assert results[0]["swd/mean"] == 0.0
    for key in results[0]:
        values = [result[key] for result in results]
        assert all(x < y for x, y in zip(values, values[1:])), (key, values)


def test_symmetric_deterministic_and_batch_independent():
    a, b = _smooth_images(6), _smooth_images(7)
    ab = swd_lib.swd(a, b, seed=3, **SMALL)
    assert ab == swd_lib.swd(b, a, seed=3, **SMALL)
    assert ab == swd_lib.swd(a, b, seed=3, **SMALL)
    assert ab == swd_lib.swd(a, b, seed=3, **{**SMALL, "batch_size": 20})  # last batch padded
    assert ab != swd_lib.swd(a, b, seed=4, **SMALL)


def test_uint8_and_float_conventions_agree():
    a, b = _smooth_images(8), _smooth_images(9)
    a8, b8 = [np.round((x + 1) * 127.5).astype(np.uint8) for x in (a, b)]
    from_uint8 = swd_lib.swd(a8, b8, **SMALL)
    from_float = swd_lib.swd(a8 / 127.5 - 1, b8 / 127.5 - 1, **SMALL)
    for key in from_uint8:
        np.testing.assert_allclose(from_uint8[key], from_float[key], rtol=1e-3)


def test_input_checks():
    a = _smooth_images(10, num=4)
    with pytest.raises(ValueError, match="same shape"):
        swd_lib.swd(a, a[:3])
    with pytest.raises(ValueError, match="smaller than"):
        swd_lib.swd(a[:, :8, :8], a[:, :8, :8])
    with pytest.raises(ValueError, match="dtype"):
        swd_lib.swd(a.astype(np.int32), a.astype(np.int32))
    assert swd_lib.resolutions(64) == [64, 32, 16]
    assert swd_lib.resolutions(96) == [96, 48, 24]
