"""Resizing images in [-1, 1] to the FID Inception's 299x299 input, by a named mode.

FID values depend on the resize (Parmar et al., "On Aliased Resizing and
Surprising Subtleties in GAN Evaluation"), so the mode is a config string that
reports print next to every FID. The modes:

- `"pytorch_fid"` (default): what pytorch-fid's `InceptionV3(resize_input=True)`
  does, `F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)`
  with no antialiasing. Ported index for index (same source coordinates, taps
  and weights computed in float32 as PyTorch's kernels compute them, same edge
  clamping); it matches PyTorch to about 1e-7 (float32 rounding) on [-1, 1]
  images, upsampling and downsampling alike.
- `"clean"`: clean-fid's "clean" resize, PIL's `Image.resize(..., BICUBIC)` on
  each channel as a float32 (`mode="F"`) image, then clipped to the value range.
  That is Keys' cubic kernel with a = -0.5, half-pixel centres, the kernel
  stretched by the downscale factor (antialiasing), and weights renormalised
  over the pixels inside the image. The weights are computed as Pillow computes
  them (float64); the sums run in float32 where Pillow accumulates in float64,
  so it matches PIL to about 1e-6 on [-1, 1] images. Clipping to [-1, 1] here is clean-fid's clip to [0, 255], since the
  resize commutes with the affine map between the two ranges. This is only the
  resize: clean-fid's own feature network and its uint8 input handling are not
  part of it.

Neither mode changes an image that is already 299x299.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from animejax.errors import ConfigError

INCEPTION_SIZE = 299

RESIZE_MODES: dict[str, str] = {
    "pytorch_fid": "bilinear, align_corners=False, no antialias (pytorch-fid's F.interpolate)",
    "clean": "antialiased bicubic, PIL BICUBIC on float32 channels, clipped (clean-fid's 'clean' resize)",
}


def check_resize_mode(mode: str) -> str:
    """Returns `mode` if it names a resize mode; raises ConfigError listing the valid ones otherwise."""
    if mode not in RESIZE_MODES:
        raise ConfigError(f"Unknown FID resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}.")
    return mode


def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch's bilinear (align_corners=False) source pixels and weights along one axis.

    Mirrors ATen's `area_pixel_compute_source_index` and `compute_indices_weights_linear`
    in float32: src = (in/out) * (dst + 0.5) - 0.5, clamped at 0; the left tap is
    floor(src), the right tap the next pixel or the same one at the last pixel.
    PyTorch's CPU kernels (AVX2/AVX-512 builds) and CUDA kernels evaluate
    `scale * (dst + 0.5) - 0.5` as one fused multiply-add, rounded once; that is
    done here in float64 (exact for these operands) and rounded to float32. A
    separate multiply and subtract would move the weights by up to 4e-6 at 96 px.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    dst = np.arange(out_size, dtype=np.float32) + np.float32(0.5)
    src = (np.float64(scale) * dst.astype(np.float64) - 0.5).astype(np.float32)  # fma(scale, dst, -0.5)
    src = np.maximum(src, np.float32(0.0))
    index0 = np.floor(src).astype(np.int32)
    lambda1 = np.clip(src - index0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    lambda0 = (np.float32(1.0) - lambda1).astype(np.float32)
    index1 = np.where(index0 < in_size - 1, index0 + 1, index0).astype(np.int32)
    return index0, index1, lambda0, lambda1


def _lerp_axis(x: jax.Array, axis: int, out_size: int) -> jax.Array:
    index0, index1, lambda0, lambda1 = _linear_taps(x.shape[axis], out_size)
    shape = [1] * x.ndim
    shape[axis] = out_size
    w0 = jnp.asarray(lambda0.reshape(shape), x.dtype)
    w1 = jnp.asarray(lambda1.reshape(shape), x.dtype)
    return w0 * jnp.take(x, index0, axis=axis) + w1 * jnp.take(x, index1, axis=axis)


def torch_bilinear_resize(images: jax.Array, size: int | tuple[int, int]) -> jax.Array:
    """`F.interpolate(x, size, mode="bilinear", align_corners=False)` (antialias off) on NHWC images.

    Args:
        images: [B, H, W, C] float.
        size: output height and width (one int for a square).

    Returns:
        [B, out_h, out_w, C], same dtype.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    x = images
    if x.shape[2] != out_w:
        x = _lerp_axis(x, 2, out_w)
    if x.shape[1] != out_h:
        x = _lerp_axis(x, 1, out_h)
    return x


def _bicubic(x: np.ndarray) -> np.ndarray:
    """PIL's bicubic filter: Keys' cubic convolution kernel with a = -0.5, support 2."""
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _pil_bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out_size, in_size] float64 weights of PIL's BICUBIC resize along one axis.

    Follows `precompute_coeffs` in Pillow's Resample.c: centre (o + 0.5) * scale,
    kernel stretched by max(scale, 1) when shrinking, window truncated to the
    image, weights renormalised to sum 1; all in float64 as Pillow does.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    weights = np.zeros((out_size, in_size), np.float64)
    for out_index in range(out_size):
        center = (out_index + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        taps = _bicubic((np.arange(xmin, xmax) - center + 0.5) / filterscale)
        total = taps.sum()
        weights[out_index, xmin:xmax] = taps / total if total != 0.0 else taps
    return weights


def pil_bicubic_resize(images: jax.Array, size: int | tuple[int, int], clip: tuple[float, float]) -> jax.Array:
    """PIL's BICUBIC resize of float32 channels (antialiased when shrinking), then clipped.

    Like Pillow, the width is resized first, then the height, each only if it
    changes. The weights are Pillow's, computed in float64 (JAX's own
    `jax.image.resize(method="bicubic")` computes them in float32 and is off by
    up to 3e-5 at these sizes); the sums run in float32 at HIGHEST precision.

    Args:
        images: [B, H, W, C] float.
        size: output height and width (one int for a square).
        clip: (low, high) value range to clip to, as clean-fid clips to [0, 255].

    Returns:
        [B, out_h, out_w, C] float32.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    x = images.astype(jnp.float32)
    if (x.shape[1], x.shape[2]) == (out_h, out_w):
        return x
    highest = jax.lax.Precision.HIGHEST
    if x.shape[2] != out_w:
        matrix = jnp.asarray(_pil_bicubic_matrix(x.shape[2], out_w), jnp.float32)
        x = jnp.einsum("ow,bhwc->bhoc", matrix, x, precision=highest)
    if x.shape[1] != out_h:
        matrix = jnp.asarray(_pil_bicubic_matrix(x.shape[1], out_h), jnp.float32)
        x = jnp.einsum("oh,bhwc->bowc", matrix, x, precision=highest)
    return jnp.clip(x, *clip)


def resize_for_inception(images: jax.Array, mode: str = "pytorch_fid", size: int = INCEPTION_SIZE) -> jax.Array:
    """Resizes images in [-1, 1] to the Inception input with the named mode.

    Args:
        images: [B, H, W, 3] float in [-1, 1], any H and W.
        mode: a key of RESIZE_MODES ("pytorch_fid" or "clean").
        size: output height and width; 299 for the FID Inception.

    Returns:
        [B, size, size, 3] float32 in [-1, 1].
    """
    check_resize_mode(mode)
    if images.ndim != 4:
        raise ValueError(f"Expected [B, H, W, C] images, got shape {images.shape}.")
    images = images.astype(jnp.float32)
    if mode == "pytorch_fid":
        return torch_bilinear_resize(images, size)
    return pil_bicubic_resize(images, size, clip=(-1.0, 1.0))
