"""PSNR, SSIM, BT.601 luma and the SR degradation against independent references.

References: float64 numpy formulas, skimage's structural_similarity, a brute-force float64 sliding-window
SSIM, torch's antialiased interpolate and PIL's BICUBIC resize (float "F" mode and uint8).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from skimage.metrics import structural_similarity

from animejax.data.degrade import DOWNSAMPLE_METHODS, downsample, upsample_bicubic
from animejax.metrics.image_quality import crop_border, psnr, rgb_to_y, ssim


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _smooth(batch: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth colourful [-1, 1] images: sums of low-frequency sinusoids with a random phase per image."""
    rng = _rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(batch):
        phase = rng.uniform(0, 2 * np.pi, 3)
        img = np.stack(
            [np.sin(6 * xx + p) * np.cos(4 * yy - p) * 0.6 + 0.3 * np.sin(9 * xx * yy + 2 * p) for p in phase], -1
        )
        out.append(img)
    return np.clip(np.asarray(out), -1, 1).astype(np.float32)


def _gradients(batch: int, size: int) -> np.ndarray:
    """Linear ramps in different directions per channel (a sky / shading-like image)."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    ramps = np.stack([2 * xx - 1, 2 * yy - 1, xx + yy - 1], -1)
    return np.stack([ramps * (1 - 0.2 * b) for b in range(batch)]).astype(np.float32)


def _noisy(x: np.ndarray, std: float, seed: int = 1) -> np.ndarray:
    return np.clip(x + _rng(seed).normal(0, std, x.shape), -1, 1).astype(np.float32)


# ----------------------------------------------------------------------------------------------------- PSNR


def test_psnr_matches_float64_formula():
    rng = _rng(0)
    x = rng.uniform(-1, 1, (4, 16, 20, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(0, [[[[0.01]]], [[[0.1]]], [[[0.3]]], [[[1.0]]]], x.shape), -1, 1).astype(np.float32)
    got = np.asarray(psnr(x, y))
    mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2, axis=(1, 2, 3))
    want = 10 * np.log10(4.0 / mse)
    assert got.shape == (4,) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # Another data range (e.g. [0, 1] images): only the peak changes.
    np.testing.assert_allclose(np.asarray(psnr(x, y, data_range=1.0)), 10 * np.log10(1.0 / mse), rtol=1e-5)


def test_psnr_identical_is_inf_and_constant_offset_closed_form():
    x = _rng(1).uniform(-0.5, 0.5, (3, 8, 8, 3)).astype(np.float32)
    assert np.all(np.isposinf(np.asarray(psnr(x, x))))
    offsets = np.array([0.5, 0.1, 0.01], np.float32)
    y = x + offsets[:, None, None, None]
    np.testing.assert_allclose(np.asarray(psnr(x, y)), 10 * np.log10(4.0 / offsets.astype(np.float64) ** 2), atol=1e-4)


def test_psnr_rejects_bad_input():
    x = np.zeros((2, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:, :4])
    with pytest.raises(ValueError, match="float"):
        psnr(x.astype(np.uint8), x.astype(np.uint8))


# ----------------------------------------------------------------------------------------------------- SSIM


def _skimage_ssim(x: np.ndarray, y: np.ndarray, win_size: int = 11, sigma: float = 1.5) -> np.ndarray:
    return np.array(
        [
            structural_similarity(
                a.astype(np.float64),
                b.astype(np.float64),
                channel_axis=-1,
                data_range=2.0,
                gaussian_weights=True,
                sigma=sigma,
                use_sample_covariance=False,
                win_size=win_size,
            )
            for a, b in zip(x, y)
        ]
    )


def _bruteforce_ssim(x: np.ndarray, y: np.ndarray, n: int = 11, sigma: float = 1.5, rng: float = 2.0) -> np.ndarray:
    """Float64 SSIM from explicit n x n Gaussian-weighted windows over every valid position (two-pass moments)."""
    taps = np.exp(-0.5 * ((np.arange(n) - (n - 1) / 2) / sigma) ** 2)
    weights = np.outer(taps, taps) / taps.sum() ** 2
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    out = []
    for a, b in zip(x.astype(np.float64), y.astype(np.float64)):
        wa = sliding_window_view(a, (n, n), axis=(0, 1))  # [h, w, C, n, n]
        wb = sliding_window_view(b, (n, n), axis=(0, 1))
        mu_a = np.einsum("ijckl,kl->ijc", wa, weights)
        mu_b = np.einsum("ijckl,kl->ijc", wb, weights)
        da = wa - mu_a[..., None, None]
        db = wb - mu_b[..., None, None]
        var_a = np.einsum("ijckl,kl->ijc", da * da, weights)
        var_b = np.einsum("ijckl,kl->ijc", db * db, weights)
        cov = np.einsum("ijckl,kl->ijc", da * db, weights)
        smap = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        out.append(smap.mean())
    return np.array(out)


def _ssim_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = _rng(2)
    noise = rng.uniform(-1, 1, (2, 24, 24, 3)).astype(np.float32)
    smooth = _smooth(2, 32)
    grads = _gradients(2, 32)
    # Near-saturated flat regions with faint texture stress float32 cancellation in E[x^2] - E[x]^2.
    bright = np.where(np.arange(32)[None, None, :, None] < 16, 0.95, -0.95) + 0.01 * rng.normal(size=(2, 32, 32, 3))
    bright = np.clip(bright, -1, 1).astype(np.float32)
    return {
        "random": (noise, _noisy(noise, 0.3)),
        "smooth_vs_noisy": (smooth, _noisy(smooth, 0.05)),
        "smooth_vs_blurred": (smooth, np.asarray(upsample_bicubic(downsample(smooth, 4), 4))),
        "gradients_vs_contrast": (grads, np.clip(0.8 * grads + 0.1, -1, 1)),
        "bright_flat_vs_noisy": (bright, _noisy(bright, 0.005)),
    }


@pytest.mark.parametrize("case", list(_ssim_cases()))
def test_ssim_matches_skimage_and_bruteforce(case):
    x, y = _ssim_cases()[case]
    got = np.asarray(ssim(x, y))
    assert got.shape == (x.shape[0],) and got.dtype == np.float32
    want = _skimage_ssim(x, y)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(_bruteforce_ssim(x, y), want, atol=1e-10, rtol=0)  # the two references agree


def test_ssim_other_window_matches_skimage():
    # skimage's Gaussian radius is int(3.5 sigma + 0.5): sigma 0.8 gives the 7-tap window.
    x = _smooth(2, 12, seed=3)
    y = _noisy(x, 0.1)
    got = np.asarray(ssim(x, y, window_size=7, sigma=0.8))
    np.testing.assert_allclose(got, _skimage_ssim(x, y, win_size=7, sigma=0.8), atol=1e-5, rtol=0)
    np.testing.assert_allclose(got, _bruteforce_ssim(x, y, n=7, sigma=0.8), atol=1e-5, rtol=0)


def test_ssim_identical_is_one_and_jits_inside_jit():
    x = _smooth(3, 16)
    assert np.all(np.asarray(ssim(x, x)) == 1.0)
    y = _noisy(x, 0.1)
    inner = jax.jit(lambda a, b: ssim(crop_border(a, 2), crop_border(b, 2), data_range=2.0))(x, y)
    np.testing.assert_allclose(np.asarray(inner), _skimage_ssim(x[:, 2:-2, 2:-2], y[:, 2:-2, 2:-2]), atol=1e-5)


def test_ssim_rejects_small_and_bad_input():
    small = np.zeros((1, 10, 16, 3), np.float32)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(small, small)
    x = np.zeros((1, 16, 16, 3), np.float32)
    with pytest.raises(ValueError, match="odd"):
        ssim(x, x, window_size=10)
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, x[..., :1])


# ------------------------------------------------------------------------------------------- luma, cropping


def test_rgb_to_y_matches_bt601_formula():
    x = _rng(4).uniform(-1, 1, (2, 8, 8, 3))
    got = np.asarray(rgb_to_y(x.astype(np.float32)))
    rgb01 = (x + 1) / 2
    y255 = 16 + 65.481 * rgb01[..., 0] + 128.553 * rgb01[..., 1] + 24.966 * rgb01[..., 2]
    assert got.shape == (2, 8, 8, 1)
    np.testing.assert_allclose(got[..., 0], y255 / 127.5 - 1, atol=1e-6)
    # Black and white land on Y = 16 and 235.
    extremes = np.asarray(rgb_to_y(np.array([-1.0, 1.0], np.float32).reshape(1, 1, 2, 1).repeat(3, axis=3)))
    np.testing.assert_allclose((extremes.ravel() + 1) * 127.5, [16.0, 235.0], atol=1e-4)


def test_y_psnr_equals_255_range_psnr_on_y():
    rng = _rng(5)
    a = rng.uniform(-1, 1, (2, 12, 12, 3)).astype(np.float32)
    b = _noisy(a, 0.1)
    ya, yb = ((np.asarray(rgb_to_y(v), np.float64) + 1) * 127.5 for v in (a, b))
    want = 10 * np.log10(255.0**2 / np.mean((ya - yb) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(np.asarray(psnr(rgb_to_y(a), rgb_to_y(b))), want, rtol=1e-5)


def test_crop_border():
    x = jnp.arange(2 * 10 * 12 * 1, dtype=jnp.float32).reshape(2, 10, 12, 1)
    assert crop_border(x, 0) is x
    np.testing.assert_array_equal(np.asarray(crop_border(x, 3)), np.asarray(x)[:, 3:7, 3:9])
    with pytest.raises(ValueError, match="leaves nothing"):
        crop_border(x, 5)


# ---------------------------------------------------------------------------------------------- degradation


def _torch_resize(x: np.ndarray, size: int, mode: str) -> np.ndarray:
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    kwargs = {"antialias": True, "align_corners": False} if mode != "area" else {}
    out = torch.nn.functional.interpolate(t, size=(size, size), mode=mode, **kwargs)
    return out.permute(0, 2, 3, 1).numpy()


def _pil_float(x: np.ndarray, size: int) -> np.ndarray:
    """PIL BICUBIC on each channel as a float32 ("F") image: PIL's weights, float64 sums, no rounding."""
    return np.stack(
        [
            np.stack(
                [np.asarray(Image.fromarray(img[..., c], "F").resize((size, size), Image.BICUBIC)) for c in range(3)],
                -1,
            )
            for img in x
        ]
    )


def _pil_uint8(x: np.ndarray, size: int) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC)) for img in x])


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round((x.astype(np.float64) + 1) * 127.5), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_downsample_bicubic_matches_torch_antialias(factor):
    x = _rng(6).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    got = np.asarray(downsample(x, factor))
    assert got.shape == (2, 64 // factor, 64 // factor, 3) and got.dtype == np.float32
    # Measured max |error| 1.8e-7 (x2), 6e-8 (x4), 3e-8 (x8): float32 rounding.
    np.testing.assert_allclose(got, _torch_resize(x, 64 // factor, "bicubic"), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method,torch_mode", [("bilinear", "bilinear"), ("area", "area")])
def test_downsample_other_methods_match_torch(method, torch_mode):
    x = _rng(7).uniform(-1, 1, (1, 48, 48, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(downsample(x, 4, method)), _torch_resize(x, 12, torch_mode), atol=1e-6)


@pytest.mark.parametrize("factor", [2, 4])
def test_downsample_and_upsample_match_pil_bicubic(factor):
    x = _noisy(_smooth(2, 64, seed=8), 0.05, seed=9)
    u8 = _to_uint8(x)
    xf = u8.astype(np.float32) / 127.5 - 1  # exactly the uint8 images, in [-1, 1]
    size = 64 // factor
    # Float PIL ("F" mode, in 0..255 units): measured max |error| 3e-5 of 255 (float32 rounding).
    down = np.asarray(downsample(xf, factor))
    np.testing.assert_allclose((down + 1) * 127.5, _pil_float(u8.astype(np.float32), size), atol=2e-4)
    # uint8 PIL rounds and clips its intermediate image after the horizontal pass, so results agree to a level
    # or two, mostly exactly (measured here: max 1 level, 86-89% exact down, 77% up; 2 levels seen on other images).
    diff = np.abs(_to_uint8(down).astype(int) - _pil_uint8(u8, size))
    assert diff.max() <= 2 and (diff == 0).mean() > 0.75 and diff.mean() < 0.3
    lr = u8[:, :size, :size]
    up = np.asarray(upsample_bicubic(lr.astype(np.float32) / 127.5 - 1, factor))
    assert up.shape == (2, 64, 64, 3)
    np.testing.assert_allclose((up + 1) * 127.5, _pil_float(lr.astype(np.float32), 64), atol=2e-4)
    diff = np.abs(_to_uint8(up).astype(int) - _pil_uint8(lr, 64))
    assert diff.max() <= 2 and (diff == 0).mean() > 0.7 and diff.mean() < 0.4


def test_degrade_shapes_and_errors():
    x = jnp.zeros((2, 24, 16, 3), jnp.float32)
    np.testing.assert_array_equal(np.asarray(downsample(x, 1)), np.asarray(x))
    assert downsample(x, 8).shape == (2, 3, 2, 3)
    assert upsample_bicubic(x, 3).shape == (2, 72, 48, 3)
    assert downsample(x.astype(jnp.bfloat16), 2).dtype == jnp.bfloat16
    assert jax.jit(lambda a: downsample(a, 4, "lanczos3"))(x).shape == (2, 6, 4, 3)
    assert set(DOWNSAMPLE_METHODS) >= {"bicubic", "bilinear", "area"}
    with pytest.raises(ValueError, match="divisible"):
        downsample(jnp.zeros((1, 30, 32, 3)), 4)
    with pytest.raises(ValueError, match="Unknown downsample method"):
        downsample(x, 2, "nearest")
    with pytest.raises(ValueError, match="positive integer"):
        downsample(x, 2.5)
    with pytest.raises(ValueError, match="float"):
        upsample_bicubic(jnp.zeros((1, 4, 4, 3), jnp.uint8), 2)
