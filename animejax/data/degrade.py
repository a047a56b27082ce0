"""The low-resolution degradation for super-resolution, made on device from high-resolution crops.

Training and evaluation batches carry only the HR images; the LR inputs are computed from them inside the
jitted step with `downsample`, so the data pipeline, its cache and its augmentations stay those of the HR
images, and every LR image is exactly the degradation of its HR target.

- `downsample(images, factor, method="bicubic")`: antialiased resampling by an integer factor with
  `jax.image.resize(..., antialias=True)`: the kernel is stretched by the factor (a low-pass filter), pixel
  centres are half-pixel aligned (align_corners=False) and the weights are renormalised over the pixels
  inside the image at the borders. For "bicubic" (Keys' cubic, a = -0.5) that is PIL's
  `Image.resize(..., BICUBIC)` and `torch.nn.functional.interpolate(mode="bicubic", antialias=True,
  align_corners=False)` (the usual "bicubic x4" degradation of SR datasets made with PIL or torchvision; not
  MATLAB's `imresize`, whose Keys kernel is a = -0.5 too but whose borders are mirrored rather than
  renormalised). "bilinear" is the antialiased triangle filter (PIL BILINEAR, torch antialias=True), "area"
  the mean of each factor x factor block (torch's mode="area"), "lanczos3" / "lanczos5" Lanczos windows.
- `upsample_bicubic(images, factor)`: plain bicubic upscaling, the baseline that SR models are compared
  against. It is PIL-style bicubic (Keys a = -0.5, borders renormalised), which is what `jax.image.resize`
  computes; torch's non-antialiased `interpolate(mode="bicubic")` differs (a = -0.75, borders replicated).

Both take float [B, H, W, C] images (any value convention; [-1, 1] in this project) and return the input's
float dtype. Nothing is clipped: cubic and Lanczos kernels overshoot slightly at sharp edges, as torch's do
(PIL clips only because it writes uint8); clip the result if the range matters. The resampling is two
dense matrix products at `Precision.HIGHEST` (no TF32).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# Downsampling methods: this module's name -> jax.image.resize's.
DOWNSAMPLE_METHODS: dict[str, str] = {
    "bicubic": "bicubic",
    "bilinear": "linear",
    "area": "area",
    "lanczos3": "lanczos3",
    "lanczos5": "lanczos5",
}


def _check_images(images: jax.Array, factor: int, name: str) -> int:
    """Validates float [B, H, W, C] images and a positive integer factor; returns the factor as int."""
    if isinstance(factor, bool) or int(factor) != factor or factor < 1:
        raise ValueError(f"{name} factor must be a positive integer, got {factor!r}")
    if images.ndim != 4:
        raise ValueError(f"{name} takes [B, H, W, C] images, got shape {images.shape}")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"{name} takes float images, got dtype {images.dtype}")
    return int(factor)


@functools.partial(jax.jit, static_argnames=("factor", "method"))
def downsample(images: jax.Array, factor: int, method: str = "bicubic") -> jax.Array:
    """Antialiased downsampling by an integer factor: [B, H, W, C] -> [B, H / factor, W / factor, C].

    Args:
        images: float [B, H, W, C]; H and W divisible by `factor`.
        factor: the integer scale (1 returns the images unchanged).
        method: one of DOWNSAMPLE_METHODS ("bicubic" = PIL BICUBIC = torch bicubic with antialias=True).

    Raises:
        ValueError: on an unknown method, a non-integer factor, non-float input, or H or W not divisible
            by the factor.
    """
    factor = _check_images(images, factor, "downsample")
    if method not in DOWNSAMPLE_METHODS:
        raise ValueError(f"Unknown downsample method {method!r}; choose one of {', '.join(DOWNSAMPLE_METHODS)}.")
    batch, height, width, channels = images.shape
    if height % factor or width % factor:
        raise ValueError(f"downsample by {factor} needs H and W divisible by {factor}, got {height}x{width}")
    if factor == 1:
        return images
    shape = (batch, height // factor, width // factor, channels)
    return jax.image.resize(
        images, shape, method=DOWNSAMPLE_METHODS[method], antialias=True, precision=jax.lax.Precision.HIGHEST
    ).astype(images.dtype)


@functools.partial(jax.jit, static_argnames=("factor",))
def upsample_bicubic(images: jax.Array, factor: int) -> jax.Array:
    """PIL-style bicubic upscaling (Keys a = -0.5, half-pixel centres): [B, H, W, C] -> [B, fH, fW, C].

    The bicubic baseline of SR comparisons; not clipped (it overshoots slightly at edges).
    """
    factor = _check_images(images, factor, "upsample_bicubic")
    if factor == 1:
        return images
    batch, height, width, channels = images.shape
    shape = (batch, height * factor, width * factor, channels)
    return jax.image.resize(images, shape, method="bicubic", precision=jax.lax.Precision.HIGHEST).astype(images.dtype)
