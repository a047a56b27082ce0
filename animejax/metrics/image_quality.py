"""Full-reference image quality for super-resolution: PSNR, SSIM, BT.601 luma and border cropping.

Pure jax.numpy and jitted, so they run on device inside evaluation. Every function takes batches of float
images in [-1, 1], shaped [B, H, W, C] (C = 3 for RGB, 1 after `rgb_to_y`), and the metrics return one
float32 value per image, shape [B]; averaging over a dataset is the caller's choice. Integer images are
refused (a uint8 batch would silently need data_range=255).

- `psnr`: 10 log10(data_range^2 / MSE), the MSE over H, W and C of each image. No epsilon: identical images
  give +inf (as skimage's `peak_signal_noise_ratio` and BasicSR's `calculate_psnr` do), so a mean over a
  set that contains one is inf; clamp or filter before averaging if that matters.
- `ssim`: Wang et al. (2004) with an 11-tap Gaussian window (sigma 1.5), population covariances, the SSIM
  map averaged over the 'valid' region (no padding: the outer (window_size - 1) / 2 pixels of each side are
  left out) and then over channels. These are exactly the settings of
  `skimage.metrics.structural_similarity(x, y, channel_axis=-1, data_range=2, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, win_size=11)`, and of the MATLAB reference `ssim_index.m` per
  channel. The Gaussian filter is separable and runs as two 1-D passes of shifted, weighted slices (exact
  float32 arithmetic on any backend, no TF32 convolution); the local second moments are taken on images
  centred by their own per-channel mean, which SSIM's variances and covariance do not depend on, to keep
  float32 cancellation small.
- `rgb_to_y`: ITU-R BT.601 luma, the Y of MATLAB's `rgb2ycbcr` used by SR papers. With R, G, B in [0, 1],
  Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255, which lies in [16/255, 235/255]; it is returned in the
  same [-1, 1] convention as the input (2 Y - 1, so in [-0.8745, 0.8431]), shaped [B, H, W, 1]. Hence
  `psnr(rgb_to_y(a), rgb_to_y(b))` (data_range=2) equals PSNR on Y in [0, 255] with peak 255, the "Y-channel
  PSNR" of the SR literature (BasicSR's `test_y_channel=True`; unlike MATLAB on uint8 images, Y is not
  rounded to integers), and likewise for SSIM.
- `crop_border`: drops `pixels` rows and columns on every side, e.g. the scale factor, as SR evaluations
  usually do before PSNR / SSIM.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# BT.601 luma weights on [0, 1] RGB giving Y in [0, 255] (MATLAB rgb2ycbcr), and its offset.
_BT601_WEIGHTS = (65.481, 128.553, 24.966)
_BT601_OFFSET = 16.0


def _check_pair(x: jax.Array, y: jax.Array, name: str) -> tuple[jax.Array, jax.Array]:
    """Float32 [B, H, W, C] pair of equal shapes; ValueError otherwise."""
    for arr in (x, y):
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise ValueError(f"{name} takes float images in [-1, 1], got dtype {arr.dtype}")
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(f"{name} takes two [B, H, W, C] batches of the same shape, got {x.shape} and {y.shape}")
    return x.astype(jnp.float32), y.astype(jnp.float32)


@jax.jit
def psnr(x: jax.Array, y: jax.Array, data_range: float = 2.0) -> jax.Array:
    """Peak signal-to-noise ratio in dB per image: 10 log10(data_range^2 / MSE), [B] float32.

    The MSE is over H, W and C of each image. Identical images give +inf (no epsilon).

    Args:
        x, y: [B, H, W, C] float images in [-1, 1].
        data_range: the peak-to-peak value range, 2 for [-1, 1].
    """
    x, y = _check_pair(x, y, "psnr")
    mse = jnp.mean(jnp.square(x - y), axis=(1, 2, 3))
    return 10.0 * jnp.log10(jnp.square(jnp.asarray(data_range, jnp.float32)) / mse)


def _gaussian_taps(window_size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of `window_size` taps (as scipy.ndimage / MATLAB fspecial build it)."""
    radius = (window_size - 1) // 2
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def _filter_valid(x: jax.Array, taps: np.ndarray) -> jax.Array:
    """Separable 'valid' filtering of [B, H, W, C] along H then W: [B, H - n + 1, W - n + 1, C]."""
    n = len(taps)
    height = x.shape[1] - n + 1
    x = sum(taps[k] * x[:, k : k + height] for k in range(n))
    width = x.shape[2] - n + 1
    return sum(taps[k] * x[:, :, k : k + width] for k in range(n))


@functools.partial(jax.jit, static_argnames=("window_size", "sigma"))
def ssim(
    x: jax.Array,
    y: jax.Array,
    data_range: float = 2.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
    """Structural similarity per image (Wang et al. 2004), mean over the valid region and channels; [B] float32.

    Matches skimage's `structural_similarity(..., channel_axis=-1, gaussian_weights=True, sigma=sigma,
    use_sample_covariance=False, win_size=window_size)` whenever window_size = 2 int(3.5 sigma + 0.5) + 1
    (skimage's Gaussian always has that radius; the default 11 / 1.5 qualifies). ssim(x, x) is exactly 1.

    Args:
        x, y: [B, H, W, C] float images in [-1, 1]; H and W at least `window_size`.
        data_range: the peak-to-peak value range, 2 for [-1, 1]; sets C1 = (k1 R)^2 and C2 = (k2 R)^2.
        window_size: odd number of Gaussian taps per axis.
        sigma: the Gaussian's standard deviation in pixels.
        k1, k2: the stabilising constants' factors.

    Raises:
        ValueError: on different shapes, non-float input, an even window or images smaller than the window.
    """
    x, y = _check_pair(x, y, "ssim")
    if window_size < 1 or window_size % 2 != 1:
        raise ValueError(f"ssim window_size must be odd and positive, got {window_size}")
    if x.shape[1] < window_size or x.shape[2] < window_size:
        raise ValueError(
            f"ssim needs images at least {window_size}x{window_size} (the window size), got "
            f"{x.shape[1]}x{x.shape[2]}; pass a smaller odd window_size (with a matching sigma) for small images"
        )
    taps = _gaussian_taps(window_size, sigma)
    # Variances and covariance do not change when each image is shifted by a constant; centring first keeps
    # E[x^2] - E[x]^2 from cancelling large float32 values.
    x_mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    y_mean = jnp.mean(y, axis=(1, 2), keepdims=True)
    xc = x - x_mean
    yc = y - y_mean
    moments = _filter_valid(jnp.concatenate([xc, yc, xc * xc, yc * yc, xc * yc], axis=3), taps)
    mu_xc, mu_yc, e_xx, e_yy, e_xy = jnp.split(moments, 5, axis=3)
    var_x = e_xx - mu_xc * mu_xc
    var_y = e_yy - mu_yc * mu_yc
    cov_xy = e_xy - mu_xc * mu_yc
    mu_x = mu_xc + x_mean
    mu_y = mu_yc + y_mean
    c1 = jnp.square(k1 * jnp.asarray(data_range, jnp.float32))
    c2 = jnp.square(k2 * jnp.asarray(data_range, jnp.float32))
    numerator = (2.0 * mu_x * mu_y + c1) * (2.0 * cov_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    ssim_map = numerator / denominator
    return jnp.mean(ssim_map, axis=(1, 2, 3))


@jax.jit
def rgb_to_y(x: jax.Array) -> jax.Array:
    """BT.601 luma of [B, H, W, 3] RGB in [-1, 1]: [B, H, W, 1] in [16/127.5 - 1, 235/127.5 - 1].

    Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 on [0, 1] RGB (MATLAB rgb2ycbcr, not rounded), returned
    as 2 Y - 1 so that data_range=2 metrics on it equal 255-range metrics on Y in [0, 255].
    """
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"rgb_to_y takes float images in [-1, 1], got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[3] != 3:
        raise ValueError(f"rgb_to_y takes [B, H, W, 3] RGB images, got {x.shape}")
    x = x.astype(jnp.float32)
    w_r, w_g, w_b = (w / 255.0 for w in _BT601_WEIGHTS)
    # In [-1, 1] terms R = (r + 1) / 2 and the output is 2 Y - 1, so y = (w · rgb + 2 * 16 + sum(w)) / 255 - 1.
    offset = (2.0 * _BT601_OFFSET + sum(_BT601_WEIGHTS)) / 255.0 - 1.0
    return (w_r * x[..., 0:1] + w_g * x[..., 1:2] + w_b * x[..., 2:3]) + offset


def crop_border(x: jax.Array, pixels: int) -> jax.Array:
    """Drops `pixels` rows and columns on every side of [B, H, W, C] images (0 returns x unchanged)."""
    pixels = int(pixels)
    if pixels < 0:
        raise ValueError(f"crop_border pixels must be >= 0, got {pixels}")
    if x.ndim != 4:
        raise ValueError(f"crop_border takes [B, H, W, C] images, got {x.shape}")
    if pixels == 0:
        return x
    if 2 * pixels >= x.shape[1] or 2 * pixels >= x.shape[2]:
        raise ValueError(f"crop_border of {pixels} px on each side leaves nothing of {x.shape[1]}x{x.shape[2]} images")
    return x[:, pixels:-pixels, pixels:-pixels]
