"""Equivariance metrics EQ-T, EQ-T_frac and EQ-R (Karras et al. 2021, "Alias-Free GANs", Appendix E).

A port of NVlabs/stylegan3's metrics/equivariance.py to NHWC JAX, with the same operators and semantics:

- EQ-T: the generator's input is translated by a random whole-pixel t; the reference image is shifted by the
  same t (`apply_integer_translation`, operator T_x of Appendix E.1); pixels shifted in from outside are masked.
- EQ-T_frac: the same with a fractional t; the reference image is shifted with a separable Lanczos (a = 3) kernel
  (`apply_fractional_translation`, Appendix E.2); pixels whose taps reach outside the image are masked.
- EQ-R: the input is rotated by a random angle; the reference image is rotated with an oriented band-limited
  filter on a 4x up-sampled copy and bilinear resampling (`apply_fractional_rotation`), and the transformed image
  is filtered with the same band limit without rotating it (`apply_fractional_pseudo_rotation`, R*_alpha of
  Appendix E.3); the masks of both are multiplied.

Each metric is PSNR = 20 log10(2) - 10 log10(MSE) over all masked pixels and channels (images in [-1, 1]).

Conventions: images are [B, H, W, C] float32. Translations (fractions of the image size) and angles (radians) are
host values; filters, sampling grids, shift matrices and masks are built on the host in numpy and passed to
jitted JAX kernels as arrays, so a new translation or angle reuses the compiled kernel. Every operator returns
(image, mask), the mask broadcast to the image's shape, as the reference. Convolutions and matrix products run
at `Precision.HIGHEST` (no TF32/bf16 passes on GPU).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("eqt_int", "eqt_frac", "eqr")
_HIGHEST = jax.lax.Precision.HIGHEST


def sinc(x: np.ndarray) -> np.ndarray:
    """sin(pi x) / (pi x), 1 at 0 (float64 numpy)."""
    return np.sinc(np.asarray(x, np.float64))


def lanczos_window(x: np.ndarray, a: float) -> np.ndarray:
    """sinc(x / a) inside |x| < a, 0 outside."""
    x = np.abs(np.asarray(x, np.float64)) / a
    return np.where(x < 1, sinc(x), 0.0)


def rotation_matrix(angle: float) -> np.ndarray:
    """The reference's 3x3 float32 [[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]] of `angle` (radians)."""
    angle = np.float64(np.float32(angle))
    mat = np.eye(3, dtype=np.float64)
    mat[0, 0] = mat[1, 1] = np.cos(angle)
    mat[0, 1] = np.sin(angle)
    mat[1, 0] = -np.sin(angle)
    return mat.astype(np.float32)


def _pixels(t: float, size: int) -> np.float32:
    """t * size in float32, as the reference's `torch.as_tensor(t * size).to(torch.float32)`."""
    return np.float32(np.float64(t) * size)


def _full_mask(x: jax.Array, mask: np.ndarray) -> jax.Array:
    return jnp.broadcast_to(jnp.asarray(mask, x.dtype)[None, :, :, None], x.shape)


# ---------------------------------------------------------------------------------------------------------------
# Translations.


@jax.jit
def _roll_masked(x: jax.Array, shift: jax.Array, mask: jax.Array) -> jax.Array:
    rolled = jnp.roll(x, (shift[0], shift[1]), axis=(1, 2))
    return jnp.where(mask[None, :, :, None] > 0, rolled, jnp.zeros((), x.dtype))


def apply_integer_translation(x: jax.Array, tx: float, ty: float) -> tuple[jax.Array, jax.Array]:
    """Shift [B, H, W, C] images by round(tx * W), round(ty * H) pixels (T_x of Appendix E.1).

    Pixels shifted in from outside are 0 in both image and mask; a shift of a whole image or more gives zeros.
    """
    _, height, width, _ = x.shape
    ix = int(np.round(_pixels(tx, width)))  # half to even, as torch.round
    iy = int(np.round(_pixels(ty, height)))
    mask = np.zeros((height, width), np.float32)
    if abs(ix) < width and abs(iy) < height:
        mask[max(iy, 0) : height + min(iy, 0), max(ix, 0) : width + min(ix, 0)] = 1
    z = _roll_masked(x, jnp.asarray([iy, ix], jnp.int32), jnp.asarray(mask))
    return z, _full_mask(x, mask)


def _lanczos_shift_matrix(t: float, size: int, a: int) -> tuple[np.ndarray, int, int]:
    """[size, size] matrix A with (A x)[n] = sum_m k(n - t * size - m) x[m]; also the mask's [start, stop).

    k is the reference's normalised sinc(d) sinc(d / a) on the 2a integer taps around the shift. This equals the
    reference's filter2d + crop + paste: outside the pasted region the sum has no in-image terms.
    """
    shift = _pixels(t, size)
    i = int(np.floor(shift))
    frac = np.float64(shift - np.float32(i))
    b = a - 1
    taps = np.arange(2 * a) - b
    kernel = sinc(taps - frac) * sinc((taps - frac) / a)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    n = np.arange(size)[:, None]
    k = n - i + b - np.arange(size)[None, :]  # tap index of input m for output n
    inside = (k >= 0) & (k < 2 * a)
    mat = np.where(inside, kernel[np.clip(k, 0, 2 * a - 1)], np.float32(0))
    return mat.astype(np.float32), max(i + a, 0), min(i - b, 0) + size


@jax.jit
def _separable_matmul(x: jax.Array, mat_y: jax.Array, mat_x: jax.Array) -> jax.Array:
    y = jnp.einsum("bhwc,vw->bhvc", x, mat_x, precision=_HIGHEST)
    return jnp.einsum("bhwc,uh->buwc", y, mat_y, precision=_HIGHEST)


def apply_fractional_translation(x: jax.Array, tx: float, ty: float, a: int = 3) -> tuple[jax.Array, jax.Array]:
    """Shift [B, H, W, C] images by tx * W, ty * H pixels with a Lanczos-a kernel (T_x of Appendix E.2).

    The mask keeps the pixels whose 2a taps all lie inside the source image.
    """
    _, height, width, _ = x.shape
    mat_x, mx0, mx1 = _lanczos_shift_matrix(tx, width, a)
    mat_y, my0, my1 = _lanczos_shift_matrix(ty, height, a)
    mask = np.zeros((height, width), np.float32)
    if mx0 < mx1 and my0 < my1:
        mask[my0:my1, mx0:mx1] = 1
    z = _separable_matmul(x, jnp.asarray(mat_y), jnp.asarray(mat_x))
    return z, _full_mask(x, mask)


# ---------------------------------------------------------------------------------------------------------------
# Affine transformations (rotation).


def construct_affine_bandlimit_filter(
    mat, a: int = 3, amax: int = 16, aflt: int = 64, up: int = 4, cutoff_in: float = 1, cutoff_out: float = 1
) -> np.ndarray:
    """The oriented low-pass filter of `construct_affine_bandlimit_filter`: [2 amax up - 1]^2 float32.

    The convolution of the input's and the (affinely) transformed output's sinc band limits, windowed by the
    convolution of the two Lanczos-a windows, built on an aflt-wide grid sampled `up` times per pixel, cropped to
    amax, and normalised per polyphase component (each of the up^2 phases sums to 1 / up^2). Computed in float64.
    """
    if not a <= amax < aflt:
        raise ValueError(f"need a <= amax < aflt, got a={a}, amax={amax}, aflt={aflt}")
    mat = np.asarray(mat, np.float32).astype(np.float64)

    # Filter taps in input and output coordinates, 0 first (the FFT's circular layout).
    taps = np.roll((np.arange(aflt * up * 2 - 1) + 1) / up - aflt, 1 - aflt * up)
    yi, xi = np.meshgrid(taps, taps, indexing="ij")
    xo = xi * mat[0, 0] + yi * mat[0, 1]
    yo = xi * mat[1, 0] + yi * mat[1, 1]

    def circular_conv(p, q):
        return np.fft.ifft2(np.fft.fft2(p) * np.fft.fft2(q)).real

    f = circular_conv(sinc(xi * cutoff_in) * sinc(yi * cutoff_in), sinc(xo * cutoff_out) * sinc(yo * cutoff_out))
    w = circular_conv(lanczos_window(xi, a) * lanczos_window(yi, a), lanczos_window(xo, a) * lanczos_window(yo, a))
    f = f * w

    c = (aflt - amax) * up
    f = np.roll(f, (aflt * up - 1,) * 2, axis=(0, 1))[c:-c, c:-c]
    f = np.pad(f, ((0, 1), (0, 1))).reshape(amax * 2, up, amax * 2, up)
    f = f / f.sum(axis=(0, 2), keepdims=True) / up**2
    return f.reshape(amax * 2 * up, amax * 2 * up)[:-1, :-1].astype(np.float32)


@functools.partial(jax.jit, static_argnames=("up", "pad", "gain"))
def _upfirdn2d(x: jax.Array, f: jax.Array, up: int, pad: tuple[int, int, int, int], gain: float) -> jax.Array:
    """upfirdn2d's zero-insert `up`x, zero-pad (x0, x1, y0, y1), true 2-D convolution with f [fh, fw] (any f)."""
    batch, height, width, channels = x.shape
    x0, x1, y0, y1 = pad
    planes = jnp.transpose(x, (0, 3, 1, 2)).reshape(batch * channels, height, width, 1)
    kernel = (jnp.flip(f, (0, 1)) * gain).astype(x.dtype)[:, :, None, None]
    # lhs_dilation leaves no zeros after the last pixel; the reference's H * up grid has up - 1 of them.
    out = jax.lax.conv_general_dilated(
        planes,
        kernel,
        window_strides=(1, 1),
        padding=((y0, y1 + up - 1), (x0, x1 + up - 1)),
        lhs_dilation=(up, up),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=_HIGHEST,
    )
    out_h, out_w = out.shape[1:3]
    return jnp.transpose(out.reshape(batch, channels, out_h, out_w), (0, 2, 3, 1))


def filter2d(x: jax.Array, f: np.ndarray) -> jax.Array:
    """upfirdn2d.filter2d with no extra padding: same-size output, zeros outside the image."""
    fh, fw = f.shape
    return _upfirdn2d(x, jnp.asarray(f), up=1, pad=(fw // 2, (fw - 1) // 2, fh // 2, (fh - 1) // 2), gain=1.0)


def upsample2d(x: jax.Array, f: np.ndarray, up: int, padding: int = 0) -> jax.Array:
    """upfirdn2d.upsample2d: [B, H, W, C] -> [B, H up + 2 padding, W up + 2 padding, C], gain up^2."""
    fh, fw = f.shape
    pad = (
        padding + (fw + up - 1) // 2,
        padding + (fw - up) // 2,
        padding + (fh + up - 1) // 2,
        padding + (fh - up) // 2,
    )
    return _upfirdn2d(x, jnp.asarray(f), up=up, pad=pad, gain=float(up * up))


def affine_grid(theta: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's affine_grid(align_corners=False) for one 2x3 theta: normalised (x, y), each [height, width].

    Computed in float32 like torch; output pixel centres are at (2 j + 1) / width - 1.
    """
    theta = np.asarray(theta, np.float32)
    bx = (np.linspace(-1, 1, width, dtype=np.float32) * np.float32((width - 1) / width))[None, :]
    by = (np.linspace(-1, 1, height, dtype=np.float32) * np.float32((height - 1) / height))[:, None]
    gx = bx * theta[0, 0] + by * theta[0, 1] + theta[0, 2]
    gy = bx * theta[1, 0] + by * theta[1, 1] + theta[1, 2]
    return gx.astype(np.float32), gy.astype(np.float32)


def _source_coords(gx: np.ndarray, gy: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """grid_sample's unnormalisation for align_corners=False: ((g + 1) size - 1) / 2, float32."""
    one, two = np.float32(1), np.float32(2)
    return ((gx + one) * np.float32(width) - one) / two, ((gy + one) * np.float32(height) - one) / two


def bilinear_taps(gx: np.ndarray, gy: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat source indices and weights [h, w, 4] of grid_sample(bilinear, zeros, align_corners=False).

    Corners outside the [height, width] source get weight 0 (and index 0), as zeros padding.
    """
    ix, iy = _source_coords(gx, gy, height, width)
    x0, y0 = np.floor(ix), np.floor(iy)
    corners = [(x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)]
    weights = [
        (x0 + 1 - ix) * (y0 + 1 - iy),
        (ix - x0) * (y0 + 1 - iy),
        (x0 + 1 - ix) * (iy - y0),
        (ix - x0) * (iy - y0),
    ]
    idx, wts = [], []
    for (cx, cy), wt in zip(corners, weights):
        valid = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)
        idx.append(np.where(valid, cy * width + cx, 0).astype(np.int32))
        wts.append(np.where(valid, wt, 0).astype(np.float32))
    return np.stack(idx, -1), np.stack(wts, -1)


def nearest_sample(image: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """grid_sample(nearest, zeros, align_corners=False) of one [H, W] numpy image (round half to even)."""
    height, width = image.shape
    ix, iy = _source_coords(gx, gy, height, width)
    cx, cy = np.rint(ix).astype(np.int64), np.rint(iy).astype(np.int64)
    valid = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)
    return np.where(valid, image[np.clip(cy, 0, height - 1), np.clip(cx, 0, width - 1)], 0).astype(image.dtype)


@functools.partial(jax.jit, static_argnames=("up", "pad"))
def _upsample_and_sample(x, f, idx, wts, up: int, pad: tuple[int, int, int, int]) -> jax.Array:
    y = _upfirdn2d(x, f, up=up, pad=pad, gain=float(up * up))
    batch, up_h, up_w, channels = y.shape
    out_h, out_w = idx.shape[:2]
    gathered = jnp.take(y.reshape(batch, up_h * up_w, channels), idx.reshape(-1), axis=1)
    gathered = gathered.reshape(batch, out_h, out_w, 4, channels)
    return jnp.sum(gathered * wts[None, :, :, :, None], axis=3)


def apply_affine_transformation(x: jax.Array, mat, up: int = 4, **filter_kwargs) -> tuple[jax.Array, jax.Array]:
    """Resample [B, H, W, C] images under the 3x3 affine `mat` (`apply_affine_transformation`).

    The image is up-sampled `up`x with `construct_affine_bandlimit_filter(mat, up=up, **filter_kwargs)` (padded by
    the filter's radius p) and sampled bilinearly at the affine grid of mat's inverse; the mask is 1 where the
    nearest up-sampled pixel lies more than 2p + 1 samples inside the padded up-sampled image.
    """
    _, height, width, _ = x.shape
    mat = np.asarray(mat, np.float32)
    f = construct_affine_bandlimit_filter(mat, up=up, **filter_kwargs)
    p = f.shape[0] // 2

    # The reference's sampling grid, float32 like torch.
    theta = np.linalg.inv(mat).astype(np.float32)
    theta[:2, 2] *= 2
    theta[0, 2] += np.float32(1 / up / width)
    theta[1, 2] += np.float32(1 / up / height)
    theta[0, :] *= np.float32(width / (width + p / up * 2))
    theta[1, :] *= np.float32(height / (height + p / up * 2))
    gx, gy = affine_grid(theta[:2], height, width)

    up_h, up_w = height * up + 2 * p, width * up + 2 * p
    idx, wts = bilinear_taps(gx, gy, up_h, up_w)
    n = f.shape[0]  # upsample2d's padding, plus p on each side
    pad = (p + (n + up - 1) // 2, p + (n - up) // 2) * 2
    z = _upsample_and_sample(x, jnp.asarray(f), jnp.asarray(idx), jnp.asarray(wts), up=up, pad=pad)

    c = p * 2 + 1
    border = np.zeros((up_h, up_w), np.float32)
    border[c:-c, c:-c] = 1
    return z, _full_mask(x, nearest_sample(border, gx, gy))


def apply_fractional_rotation(x: jax.Array, angle: float, a: int = 3, **filter_kwargs) -> tuple[jax.Array, jax.Array]:
    """Rotate [B, H, W, C] images by `angle` radians (R_alpha of Appendix E.3), amax = 2a."""
    return apply_affine_transformation(x, rotation_matrix(angle), a=a, amax=a * 2, **filter_kwargs)


def apply_fractional_pseudo_rotation(
    x: jax.Array, angle: float, a: int = 3, **filter_kwargs
) -> tuple[jax.Array, jax.Array]:
    """Filter [B, H, W, C] images as if rotated by `angle`, without rotating them (R*_alpha of Appendix E.3).

    The filter is `construct_affine_bandlimit_filter(rotation_matrix(-angle), a, amax=2a, up=1)`; the mask drops
    the filter's radius at each border.
    """
    f = construct_affine_bandlimit_filter(rotation_matrix(-angle), a=a, amax=a * 2, up=1, **filter_kwargs)
    c = f.shape[0] // 2
    mask = np.zeros(x.shape[1:3], np.float32)
    mask[c:-c, c:-c] = 1
    return filter2d(x, f), _full_mask(x, mask)


# ---------------------------------------------------------------------------------------------------------------
# The metric.


@jax.jit
def _masked_row_sums(ref: jax.Array, img: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-row float32 sums of squared error * mask and of mask, [B, H] each (summed in float64 on the host)."""
    return jnp.sum(jnp.square(ref - img) * mask, axis=(2, 3)), jnp.sum(mask, axis=(2, 3))


def equivariance_psnr(
    render: Callable[[int, np.ndarray], jax.Array],
    num_batches: int,
    rng: int | np.random.Generator = 0,
    kinds: tuple[str, ...] = KINDS,
    translate_max: float = 0.125,
    rotate_max: float = 1.0,
    img_resolution: int | None = None,
) -> dict[str, float]:
    """EQ-T, EQ-T_frac and EQ-R in dB, as `compute_equivariance_metrics` of the reference.

    For each batch, `render(batch, M)` is called first with M = I (the reference image) and then once per kind, in
    the order eqt_int, eqt_frac, eqr, with the kind's M drawn on the host:

    - eqt_int: t = (U[0, 1)^2 * 2 - 1) * translate_max rounded to whole pixels of `img_resolution`; M = I with
      M[:2, 2] = -t; compared with `apply_integer_translation(orig, t[0], t[1])`.
    - eqt_frac: the same t without rounding; compared with `apply_fractional_translation`.
    - eqr: angle = (U[0, 1) * 2 - 1) * rotate_max * pi; M = rotation_matrix(-angle); the fractionally rotated
      reference is compared with the pseudo-rotated rendered image, under the product of their masks.

    Args:
        render: render(batch, M) -> [B, H, W, C] images in [-1, 1] of the generator whose input (Fourier features)
            is transformed by the user-specified 3x3 float32 M (StyleGAN3's `G.synthesis.input.transform`); all
            calls with the same `batch` must use the same latents and noise.
        num_batches: batches to average over (the reference's num_samples / batch_size).
        rng: numpy Generator or seed for the translations and angles (U[0, 1) draws are `rng.random`).
        kinds: which of "eqt_int", "eqt_frac", "eqr" to compute.
        translate_max: largest translation, as a fraction of the image size.
        rotate_max: largest rotation, as a fraction of pi.
        img_resolution: resolution for rounding eqt_int's t; the rendered width by default.

    Returns:
        {kind: PSNR in dB} (inf when the images agree exactly).
    """
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds}")
    rng = np.random.default_rng(rng)
    sums = {kind: np.zeros(2, np.float64) for kind in kinds}
    eye = np.eye(3, dtype=np.float32)
    for batch in range(num_batches):
        orig = jnp.asarray(render(batch, eye.copy()))
        resolution = img_resolution or orig.shape[2]
        for kind in (k for k in KINDS if k in kinds):
            if kind in ("eqt_int", "eqt_frac"):
                t = ((rng.random(2) * 2 - 1) * translate_max).astype(np.float32)
                if kind == "eqt_int":
                    t = np.round(t * np.float32(resolution)) / np.float32(resolution)
                transform = eye.copy()
                transform[:2, 2] = -t
                img = jnp.asarray(render(batch, transform))
                shift = apply_integer_translation if kind == "eqt_int" else apply_fractional_translation
                ref, mask = shift(orig, t[0], t[1])
            else:
                angle = np.float32((rng.random() * 2 - 1) * (rotate_max * np.pi))
                img = jnp.asarray(render(batch, rotation_matrix(-angle)))
                ref, ref_mask = apply_fractional_rotation(orig, angle)
                img, pseudo_mask = apply_fractional_pseudo_rotation(img, angle)
                mask = ref_mask * pseudo_mask
            err, count = _masked_row_sums(ref, img, mask)
            sums[kind] += [np.asarray(err, np.float64).sum(), np.asarray(count, np.float64).sum()]
    with np.errstate(divide="ignore"):
        return {kind: float(20 * np.log10(2) - 10 * np.log10(s[0] / s[1])) for kind, s in sums.items()}
