"""Upsample, FIR-filter and downsample NHWC images: stylegan2-ada-pytorch's `upfirdn2d` (Karras et al. 2020).

The same operation, arguments and filter normalisation as torch_utils/ops/upfirdn2d.py of NVlabs/stylegan2-ada-pytorch,
for [B, H, W, C] arrays: zero-insertion up-sampling, zero padding (negative = cropping), true convolution with a
separable FIR filter, then keeping every `down`-th pixel.

The filter must be separable (1-D taps, or a rank-1 2-D array such as `setup_filter` returns) and concrete (numpy,
not traced): it is applied as one 1-D pass per axis, each a sum of shifted slices of the input scaled by Python
floats, with the up- and down-sampling done polyphase (no products with inserted zeros, no strided slices). On
XLA:CPU that is 10-40x faster, forward and backward, than a depthwise `conv_general_dilated` with
`feature_group_count` (2-D, or two 1-D passes): 2x up-sampling of [16, 32, 32, 128] measured 54 ms forward and
93 ms with its gradient, against 0.56 s and 2.0 s as a 2-D depthwise convolution; 2x down-sampling of
[16, 64, 64, 64] 5 ms and 27 ms against 39 ms and 1.0 s. The result keeps the input's dtype.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1), normalize: bool = True, gain: float = 1.0) -> np.ndarray:
    """The 2-D FIR filter outer(taps, taps), normalised to sum 1 and times `gain`, as `upfirdn2d.setup_filter`.

    (The reference returns this 2-D form for fewer than 8 taps; `upfirdn2d` applies it separably.)

    Args:
        taps: the 1-D filter taps.
        normalize: divide by the sum, so a constant image keeps its value.
        gain: overall scale.

    Returns:
        [len(taps), len(taps)] float32 numpy array.
    """
    f = np.asarray(taps, np.float64)
    if f.ndim != 1 or f.size == 0:
        raise ValueError(f"setup_filter expects a non-empty 1-D sequence of taps, got shape {f.shape}")
    f = np.outer(f, f)
    if normalize:
        f = f / f.sum()
    return (f * gain).astype(np.float32)


def _separate(f) -> tuple[np.ndarray, np.ndarray]:
    """(taps along H, taps along W) of a 1-D or rank-1 2-D filter, in float64."""
    if isinstance(f, jax.core.Tracer):
        raise ValueError("upfirdn2d needs a concrete filter (a numpy array), not a traced value")
    f = np.asarray(f, np.float64)
    if f.ndim == 1:
        return f, f
    if f.ndim != 2:
        raise ValueError(f"upfirdn2d filter must be 1-D (separable taps) or 2-D, got shape {f.shape}")
    # A rank-1 f = outer(a, b) has row sums a * sum(b), column sums b * sum(a) and total sum(a) * sum(b).
    total = f.sum()
    if total != 0:
        fy, fx = f.sum(axis=1), f.sum(axis=0) / total
        if np.allclose(np.outer(fy, fx), f, rtol=1e-6, atol=1e-7 * np.abs(f).max()):
            return fy, fx
    raise ValueError("upfirdn2d supports separable (rank-1) 2-D filters only")


def _parse_padding(padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    if len(padding) != 4:
        raise ValueError(f"padding must be an int, (x, y) or (x0, x1, y0, y1), got {padding}")
    return padding


def _pad_axis(x: jax.Array, before: int, after: int, axis: int) -> jax.Array:
    """Zero padding along `axis`; negative amounts crop."""
    if before < 0 or after < 0:
        x = lax.slice_in_dim(x, max(-before, 0), x.shape[axis] - max(-after, 0), axis=axis)
    if before > 0 or after > 0:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (max(before, 0), max(after, 0))
        x = jnp.pad(x, widths)
    return x


def _fir_down(x: jax.Array, taps: np.ndarray, down: int, axis: int) -> jax.Array:
    """out[j] = sum_i taps[i] x[j * down + i] (correlation, no padding), polyphase."""
    n = len(taps)
    length = x.shape[axis]
    out_len = (length - n) // down + 1
    if out_len <= 0:
        raise ValueError(f"upfirdn2d: {length} samples after padding are fewer than the {n} filter taps")
    if down > 1:
        # Phase p of the signal is x[p::down]; tap i reads phase i % down at offset i // down.
        rows = out_len + (n - 1) // down
        x = _pad_axis(x, 0, rows * down - length, axis)
        shape = x.shape[:axis] + (rows, down) + x.shape[axis + 1 :]
        x = x.reshape(shape)
    out = None
    for i, t in enumerate(taps):
        if t == 0:
            continue
        if down > 1:
            part = lax.index_in_dim(x, i % down, axis + 1, keepdims=False)
            part = lax.slice_in_dim(part, i // down, i // down + out_len, axis=axis)
        else:
            part = lax.slice_in_dim(x, i, i + out_len, axis=axis)
        term = part * float(t)
        out = term if out is None else out + term
    if out is None:
        shape = list(x.shape)
        shape[axis] = out_len
        if down > 1:
            del shape[axis + 1]
        out = jnp.zeros(shape, x.dtype)
    return out


def _fir_up(x: jax.Array, taps: np.ndarray, up: int, pad0: int, pad1: int, axis: int) -> jax.Array:
    """Zero-insert `up`x, pad (pad0, pad1), then correlate with taps; computed per output phase."""
    n = len(taps)
    length = x.shape[axis]
    out_len = length * up + pad0 + pad1 - n + 1
    if out_len <= 0:
        raise ValueError(f"upfirdn2d: {length * up + pad0 + pad1} samples after padding are fewer than {n} taps")
    rows = -(-out_len // up)
    # Output j = up * m + r reads the up-sampled signal at j + i - pad0, which is x[m + d] with
    # d = (r + i - pad0) / up when that is a whole number and a zero otherwise.
    terms = [[(i, (r + i - pad0) // up) for i in range(n) if (r + i - pad0) % up == 0] for r in range(up)]
    offsets = [d for phase in terms for _, d in phase]
    lo = min(offsets)
    hi = max(offsets) + rows - 1
    x = _pad_axis(x, max(-lo, 0), max(hi - (length - 1), 0), axis)
    base = max(-lo, 0)
    phases = []
    for phase in terms:
        out = None
        for i, d in phase:
            if taps[i] == 0:
                continue
            term = lax.slice_in_dim(x, base + d, base + d + rows, axis=axis) * float(taps[i])
            out = term if out is None else out + term
        if out is None:
            shape = list(x.shape)
            shape[axis] = rows
            out = jnp.zeros(shape, x.dtype)
        phases.append(out)
    y = jnp.stack(phases, axis=axis + 1)
    y = y.reshape(y.shape[:axis] + (rows * up,) + y.shape[axis + 2 :])
    return lax.slice_in_dim(y, 0, out_len, axis=axis)


def _upfirdn1d(x: jax.Array, taps: np.ndarray, up: int, down: int, pad0: int, pad1: int, axis: int) -> jax.Array:
    taps = taps[::-1]  # True convolution, as the reference (flip_filter=False), is correlation with reversed taps.
    if up == 1:
        return _fir_down(_pad_axis(x, pad0, pad1, axis), taps, down, axis)
    y = _fir_up(x, taps, up, pad0, pad1, axis)
    if down > 1:
        y = lax.slice_in_dim(y, 0, y.shape[axis], stride=down, axis=axis)
    return y


def upfirdn2d(x: jax.Array, f, up: int = 1, down: int = 1, padding=(0, 0, 0, 0), gain: float = 1.0) -> jax.Array:
    """Pad, upsample, FIR-filter and downsample a batch of NHWC images, as stylegan2-ada-pytorch's `upfirdn2d`.

    Per channel: insert `up - 1` zeros after each pixel, zero-pad by `padding` (negative crops), convolve with
    `f` keeping only outputs whose footprint lies inside, then keep every `down`-th pixel (starting at 0).

    Args:
        x: [B, H, W, C] (any float dtype; the result has the same dtype).
        f: the filter: 1-D taps (applied along both axes, the 2-D filter being outer(f, f)) or a rank-1 2-D
            [fh, fw] array such as `setup_filter` returns. Must be concrete (numpy or a list).
        up: integer up-sampling factor (both axes).
        down: integer down-sampling factor (both axes).
        padding: with respect to the up-sampled image, in the reference's order: an int, (x, y), or
            (x_before, x_after, y_before, y_after) where x is the width axis and y the height axis.
        gain: overall scale of the output (the reference's `gain`; upsample2d uses up**2).

    Returns:
        [B, H', W', C] with H' = (H * up + y_before + y_after - fh) // down + 1, likewise W'.

    Raises:
        ValueError: on a non-separable or traced filter, a non-positive factor, or padding that leaves fewer
            samples than taps.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects [B, H, W, C], got shape {x.shape}")
    if int(up) != up or int(down) != down or up < 1 or down < 1:
        raise ValueError(f"upfirdn2d up and down must be integers >= 1, got up={up}, down={down}")
    fy, fx = _separate(f)
    fy = fy * gain
    x0, x1, y0, y1 = _parse_padding(padding)
    x = _upfirdn1d(x, fx, int(up), int(down), x0, x1, axis=2)
    return _upfirdn1d(x, fy, int(up), int(down), y0, y1, axis=1)


def _filter_size(f) -> tuple[int, int]:
    """(fw, fh)."""
    shape = np.shape(f)
    return (shape[0], shape[0]) if len(shape) == 1 else (shape[1], shape[0])


def upsample2d(x: jax.Array, f, up: int = 2, padding=(0, 0, 0, 0), gain: float = 1.0) -> jax.Array:
    """Upsample NHWC images by `up` with the FIR filter `f`: [B, H, W, C] -> [B, H*up, W*up, C].

    As the reference's `upsample2d`: padding (fw + up - 1) // 2 before and (fw - up) // 2 after (plus the
    user's `padding`, reference order as in `upfirdn2d`) and gain * up**2, so that a constant image keeps its value.
    """
    fw, fh = _filter_size(f)
    x0, x1, y0, y1 = _parse_padding(padding)
    p = (x0 + (fw + up - 1) // 2, x1 + (fw - up) // 2, y0 + (fh + up - 1) // 2, y1 + (fh - up) // 2)
    return upfirdn2d(x, f, up=up, padding=p, gain=gain * up * up)


def downsample2d(x: jax.Array, f, down: int = 2, padding=(0, 0, 0, 0), gain: float = 1.0) -> jax.Array:
    """Downsample NHWC images by `down` with the FIR filter `f`: [B, H, W, C] -> [B, H/down, W/down, C].

    As the reference's `downsample2d`: padding (fw - down + 1) // 2 before and (fw - down) // 2 after, plus
    the user's `padding` (reference order as in `upfirdn2d`).
    """
    fw, fh = _filter_size(f)
    x0, x1, y0, y1 = _parse_padding(padding)
    p = (x0 + (fw - down + 1) // 2, x1 + (fw - down) // 2, y0 + (fh - down + 1) // 2, y1 + (fh - down) // 2)
    return upfirdn2d(x, f, down=down, padding=p, gain=gain)
