"""Alias-free filtering of StyleGAN3 (Karras et al. 2021, "Alias-Free Generative Adversarial Networks"), NHWC.

The filter machinery of NVlabs/stylegan3 (training/networks_stylegan3.py, torch_utils/ops/filtered_lrelu.py):

- `design_lowpass_filter`: the Kaiser-windowed sinc low-pass of `SynthesisLayer.design_lowpass_filter` (the taps
  of scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs), computed here from the Kaiser formulas), or with
  `radial=True` the radially symmetric jinc filter of StyleGAN3-R (2-D, Kaiser window outer(w, w)).
- `layer_schedule`: the per-layer cutoffs, minimum stopbands, sampling rates, transition half-widths, sizes,
  channels, up/down factors, filter lengths and paddings of `SynthesisNetwork` / `SynthesisLayer`.
- `filtered_lrelu`: the reference's `filtered_lrelu` (as `_filtered_lrelu_ref`): bias, upfirdn2d up-sampling with
  gain up**2 and the padding, leaky ReLU times `gain`, clamp, upfirdn2d down-sampling.
- `filtered_lrelu_unfused`: the same function as a deliberately plain composition (zero insertion, dense depthwise
  convolutions, strided slicing), for tests and benchmarks/filtered_lrelu.py.

How `filtered_lrelu` computes. Filters are concrete numpy arrays (or None, the identity), read at trace time, so
the function jits with the filters as constants. A 1-D (or rank-1 2-D) filter is applied as animejax/models/
upfirdn.py applies it: one polyphase 1-D pass per axis, each a sum of shifted slices scaled by Python floats (no
products with inserted zeros, no discarded outputs computed). The bias add and the activation are elementwise
ops between those passes, which XLA fuses into the neighbouring slice sums (no extra trip through memory).

Backward pass: each up/FIR/down stage has a custom VJP whose backward is again an up/FIR/down in the same slice
form (the transpose of up-sampling by u, padding, convolving with f and down-sampling by d is up-sampling by d,
padding, convolving with the flipped f and down-sampling by u, as the reference's CUDA backward), differentiable
in turn (gradients of gradients work; forward-mode jvp through it does not, being a custom VJP). Left to JAX's
transposition rules the slices become pads, and XLA:CPU sums those some 25x slower than the forward slices: a
2x/2x layer with 12-tap filters on [4, 38, 38, 64], forward + backward, took 200 ms that way against 8 ms (the
forward alone 5 ms), 2 cores. The activation has a custom JVP written as selects on boolean masks (x < 0 and
|y| > clamp), so of the up-sampled tensor the backward keeps those masks, 2 bytes per element, not its float
values (the reference's CUDA kernel keeps 2-bit signs).

Non-separable 2-D filters (the radial down-sampling filters of StyleGAN3-R, 12 x 12 taps) are by default
applied as one polyphase sum of fh * fw shifted slices (`nonseparable="slices"`; with 2x down-sampling, 144
slices read at the output resolution). Two alternatives compute the same function: "svd" splits the filter into
separable terms by its SVD, keeping the components with s_k > 1e-9 s_0 (`NONSEPARABLE_TOLERANCE`; the
Kaiser-windowed jinc is nearly separable, 3 to 5 terms for the schedule's filters, the dropped rest far below
float32 rounding), and "conv" is one depthwise `conv_general_dilated` (input dilation for up-sampling, window
stride for down-sampling). A StyleGAN3-R 2x/2x layer on [4, 36, 36, 32], 2 busy CPU cores, best of 5: slices
3 ms forward and 5 ms forward + backward, svd 7 and 13 ms, conv 26 and 830 ms (XLA:CPU's depthwise convolutions
with dilation are slow). benchmarks/filtered_lrelu.py times all three against the unfused composition.

Semantics that follow the reference's CUDA kernel (which training uses) rather than `_filtered_lrelu_ref` where the
two differ: the leaky ReLU's gradient at exactly 0 is 1 (the kernel's sign bit is x < 0; torch's leaky_relu
gives `slope`), and float16 / bfloat16 inputs are computed in float32 and the result cast back (the kernel's
internal type for half inputs is float). The clamp passes the gradient where |y| <= clamp, as both.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from jax import lax

from animejax.models.upfirdn import _pad_axis, _parse_padding, _upfirdn1d

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2
NONSEPARABLE_IMPLS = ("slices", "svd", "conv")
NONSEPARABLE_TOLERANCE = 1e-9  # Keep SVD components with s_k > this * s_0.
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


# --- Filter design -----------------------------------------------------------------------------------------------


def kaiser_atten(numtaps: int, width: float) -> float:
    """Attenuation (dB) of a Kaiser FIR filter of `numtaps` taps and transition `width` (fraction of Nyquist).

    Kaiser's formula, as scipy.signal.kaiser_atten: 2.285 (numtaps - 1) pi width + 7.95.
    """
    return 2.285 * (numtaps - 1) * np.pi * width + 7.95


def kaiser_beta(atten: float) -> float:
    """The Kaiser window's beta for a stopband attenuation of `atten` dB (Kaiser's formula, as scipy's)."""
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def kaiser_window(numtaps: int, beta: float) -> np.ndarray:
    """The symmetric Kaiser window I0(beta sqrt(1 - (2n / (N - 1) - 1)^2)) / I0(beta), float64 (as np.kaiser)."""
    if numtaps == 1:
        return np.ones(1)
    ratio = 2.0 * np.arange(numtaps) / (numtaps - 1) - 1.0
    return np.i0(beta * np.sqrt(np.clip(1.0 - ratio**2, 0.0, None))) / np.i0(beta)


def design_lowpass_filter(
    numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False, dtype=np.float32
) -> np.ndarray | None:
    """The low-pass FIR filter of the reference's `SynthesisLayer.design_lowpass_filter`.

    Separable (default): the `numtaps` taps of a Kaiser-windowed sinc with cutoff `cutoff` and transition band
    `width` at sampling rate `fs`, normalised to sum 1: scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs),
    computed from the formulas (window beta from `kaiser_beta(kaiser_atten(numtaps, width / (fs / 2)))`).

    Radial: the [numtaps, numtaps] radially symmetric filter of StyleGAN3-R, jinc(r) = J1(2 pi cutoff r) / (pi r)
    at r = |(x, y)| / fs for pixel offsets (x, y) from the centre, times outer(w, w) of the same Kaiser window,
    normalised to sum 1. (At r = 0, which only odd `numtaps` reach, its limit `cutoff`; the reference, which only
    designs even sizes, would divide 0 by 0 there.)

    Args:
        numtaps: filter length (>= 1); 1 means no filtering and returns None, as the reference.
        cutoff: cutoff frequency, 0 < cutoff < fs / 2.
        width: transition band width (> 0), in the units of `fs` (the reference passes 2 * half_width).
        fs: sampling rate.
        radial: the 2-D radially symmetric filter instead of 1-D taps.
        dtype: of the result (the reference's buffers are float32).

    Returns:
        [numtaps] or [numtaps, numtaps] array, or None for numtaps == 1.
    """
    if int(numtaps) != numtaps or numtaps < 1:
        raise ValueError(f"design_lowpass_filter needs an integer numtaps >= 1, got {numtaps}")
    numtaps = int(numtaps)
    if numtaps == 1:
        return None
    nyquist = fs / 2
    if not 0 < cutoff < nyquist:
        raise ValueError(f"design_lowpass_filter needs 0 < cutoff < fs / 2, got cutoff={cutoff}, fs={fs}")
    if not width > 0:
        raise ValueError(f"design_lowpass_filter needs a positive transition width, got {width}")
    window = kaiser_window(numtaps, kaiser_beta(kaiser_atten(numtaps, width / nyquist)))
    offsets = np.arange(numtaps) - (numtaps - 1) / 2
    if not radial:
        c = cutoff / nyquist
        f = c * np.sinc(c * offsets) * window
    else:
        t = offsets / fs
        r = np.hypot(t[np.newaxis, :], t[:, np.newaxis])
        with np.errstate(divide="ignore", invalid="ignore"):
            f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
        f = np.where(r == 0, cutoff, f)
        f = f * np.outer(window, window)
    return (f / np.sum(f)).astype(dtype)


# --- The SynthesisNetwork schedule -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One layer of the reference's SynthesisNetwork: L{index}_{out_size}_{out_channels} (`name`).

    The `in_*` values are the previous layer's `out_*` (layer 0 reads the Fourier-feature input, whose channels,
    size, sampling rate and bandwidth are layer 0's in_channels, in_size, in_sampling_rate and in_cutoff).
    Frequencies are in cycles per unit of the image's coordinate span, sampling rates in samples per unit
    (an image of `img_resolution` pixels spans one unit at sampling rate img_resolution).
    """

    index: int
    name: str
    is_torgb: bool
    is_critically_sampled: bool
    use_fp16: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    tmp_sampling_rate: int  # Of the up-sampled signal the leaky ReLU sees.
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int  # 1 for the ToRGB layer.
    up_factor: int
    down_factor: int
    up_taps: int  # 1: no up-sampling filter (None).
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]  # (x0, x1, y0, y1) for filtered_lrelu, w.r.t. the up-sampled image.

    def filters(self, dtype=np.float32) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(up_filter, down_filter) as the reference's buffers, for `filtered_lrelu`."""
        fu = design_lowpass_filter(
            self.up_taps, self.in_cutoff, self.in_half_width * 2, self.tmp_sampling_rate, dtype=dtype
        )
        fd = design_lowpass_filter(
            self.down_taps,
            self.out_cutoff,
            self.out_half_width * 2,
            self.tmp_sampling_rate,
            radial=self.down_radial,
            dtype=dtype,
        )
        return fu, fd


def layer_schedule(
    img_resolution: int,
    img_channels: int = 3,
    channel_base: int = 32768,
    channel_max: int = 512,
    num_layers: int = 14,
    num_critical: int = 2,
    first_cutoff: float = 2,
    first_stopband: float = 2**2.1,
    last_stopband_rel: float = 2**0.3,
    margin_size: int = 10,
    num_fp16_res: int = 4,
    conv_kernel: int = 3,
    filter_size: int = 6,
    lrelu_upsampling: int = 2,
    use_radial_filters: bool = False,
) -> list[LayerSpec]:
    """The num_layers + 1 layers (the last is ToRGB) of the reference's SynthesisNetwork, same defaults.

    Cutoffs f_c and minimum stopbands f_t follow geometric progressions from (first_cutoff, first_stopband) to
    (img_resolution / 2, img_resolution / 2 * last_stopband_rel), reached at layer num_layers - num_critical and
    kept after it; the sampling rate is the smallest power of two >= 2 f_t (at most img_resolution); the half-width
    f_h = max(f_t, s / 2) - f_c; sizes are s + 2 margin_size except the last two layers (img_resolution);
    channels rint(min(channel_base / 2 / f_c, channel_max)), img_channels for ToRGB. Each layer up-samples to
    max(s_in, s_out) * lrelu_upsampling (ToRGB: no up-sampling), with filters of filter_size * factor taps,
    radial down-sampling filters where `use_radial_filters` and the layer is not critically sampled, and the
    reference's padding (Appendix C.3's symmetric interpretation of sample locations).

    StyleGAN3-T is the default; StyleGAN3-R is conv_kernel=1, channel_base and channel_max doubled,
    use_radial_filters=True.
    """
    if num_layers <= num_critical or num_critical < 0:
        raise ValueError(f"layer_schedule needs 0 <= num_critical < num_layers, got {num_critical}, {num_layers}")
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels

    layers = []
    for idx in range(num_layers + 1):
        prev = max(idx - 1, 0)
        is_torgb = idx == num_layers
        critical = idx >= num_layers - num_critical
        in_rate, out_rate = int(sampling_rates[prev]), int(sampling_rates[idx])
        tmp_rate = max(in_rate, out_rate) * (1 if is_torgb else lrelu_upsampling)
        kernel = 1 if is_torgb else conv_kernel
        up_factor, down_factor = int(np.rint(tmp_rate / in_rate)), int(np.rint(tmp_rate / out_rate))
        if in_rate * up_factor != tmp_rate or out_rate * down_factor != tmp_rate:
            raise ValueError(f"layer {idx}: sampling rates {in_rate}, {tmp_rate}, {out_rate}: not integer ratios")
        up_taps = filter_size * up_factor if up_factor > 1 and not is_torgb else 1
        down_taps = filter_size * down_factor if down_factor > 1 and not is_torgb else 1
        in_size, out_size = int(sizes[prev]), int(sizes[idx])
        # Output size before down-sampling, minus the input after the convolution and up-sampling, plus what the
        # two filters' valid correlations take off; split with the half-sample shift of the symmetric grid.
        pad_total = (out_size - 1) * down_factor + 1
        pad_total -= (in_size + kernel - 1) * up_factor
        pad_total += up_taps + down_taps - 2
        pad_lo = (pad_total + up_factor) // 2
        pad_hi = pad_total - pad_lo
        out_channels = int(channels[idx])
        layers.append(
            LayerSpec(
                index=idx,
                name=f"L{idx}_{out_size}_{out_channels}",
                is_torgb=is_torgb,
                is_critically_sampled=bool(critical),
                use_fp16=bool(sampling_rates[idx] * (2**num_fp16_res) > img_resolution),
                in_channels=int(channels[prev]),
                out_channels=out_channels,
                in_size=in_size,
                out_size=out_size,
                in_sampling_rate=in_rate,
                out_sampling_rate=out_rate,
                tmp_sampling_rate=int(tmp_rate),
                in_cutoff=float(cutoffs[prev]),
                out_cutoff=float(cutoffs[idx]),
                in_half_width=float(half_widths[prev]),
                out_half_width=float(half_widths[idx]),
                conv_kernel=kernel,
                up_factor=up_factor,
                down_factor=down_factor,
                up_taps=up_taps,
                down_taps=down_taps,
                down_radial=bool(use_radial_filters and not critical),
                padding=(pad_lo, pad_hi, pad_lo, pad_hi),
            )
        )
    return layers


# --- Filters as the resampling code sees them --------------------------------------------------------------------


def _concrete(f, what: str) -> np.ndarray | None:
    if f is None:
        return None
    if isinstance(f, jax.core.Tracer):
        raise ValueError(f"filtered_lrelu needs a concrete {what} (a numpy array or None), not a traced value")
    f = np.asarray(f, np.float64)
    if f.ndim not in (1, 2) or f.size == 0:
        raise ValueError(f"filtered_lrelu {what} must be None, 1-D taps or a 2-D array, got shape {f.shape}")
    return f


def _split(f: np.ndarray, tolerance: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """A 2-D filter as its SVD components with s_k > tolerance * s_0: [(taps along H, taps along W)]."""
    u, s, vt = np.linalg.svd(f)
    return [(u[:, k] * s[k], vt[k]) for k in range(len(s)) if s[k] > max(tolerance, 1e-15) * s[0]]


@dataclasses.dataclass(frozen=True)
class _Fir:
    """A concrete filter in hashable form (a static argument of the custom VJP): either separable terms, the filter
    being sum_k outer(fy_k, fx_k), or one dense 2-D array. Convolution taps, float64 values as Python floats."""

    terms: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...] = ()
    dense: tuple[tuple[float, ...], ...] = ()

    @staticmethod
    def make(f: np.ndarray | None, nonseparable: str) -> _Fir:
        """None: the identity; 1-D taps: outer(f, f); 2-D: one term if rank 1 (to 1e-9), else by `nonseparable`:
        its SVD terms ("svd") or the dense array ("slices", "conv")."""
        if f is None:
            return _Fir(terms=(((1.0,), (1.0,)),))
        if f.ndim == 1:
            taps = tuple(float(t) for t in f)
            return _Fir(terms=((taps, taps),))
        terms = _split(f, NONSEPARABLE_TOLERANCE)
        if terms and (len(terms) == 1 or nonseparable == "svd"):
            return _Fir(terms=tuple((tuple(map(float, fy)), tuple(map(float, fx))) for fy, fx in terms))
        return _Fir(dense=tuple(tuple(map(float, row)) for row in f))

    @property
    def size(self) -> tuple[int, int]:
        """(fh, fw)."""
        if self.dense:
            return len(self.dense), len(self.dense[0])
        return len(self.terms[0][0]), len(self.terms[0][1])

    def flipped(self) -> _Fir:
        """The filter reversed along both axes (convolution <-> correlation)."""
        if self.dense:
            return _Fir(dense=tuple(row[::-1] for row in self.dense[::-1]))
        return _Fir(terms=tuple((fy[::-1], fx[::-1]) for fy, fx in self.terms))


# --- Up/FIR/down on NHWC, three formulations for 2-D filters -----------------------------------------------------


def _upfirdn_separable(x, terms, up: int, down: int, padding, gain: float) -> jax.Array:
    """upfirdn2d of x with sum_k outer(fy_k, fx_k), each term one polyphase pass per axis (upfirdn.py's)."""
    x0, x1, y0, y1 = padding
    out = None
    for fy, fx in terms:
        y = _upfirdn1d(x, fx, up, down, x0, x1, axis=2)
        y = _upfirdn1d(y, fy * gain, up, down, y0, y1, axis=1)
        out = y if out is None else out + y
    return out


def _up_phases(length: int, n: int, up: int, pad0: int, pad1: int):
    """For a 1-D zero-insert-up, pad, correlate with n taps: (out_len, rows, [[(tap, offset)] per phase])."""
    out_len = length * up + pad0 + pad1 - n + 1
    if out_len <= 0:
        raise ValueError(f"filtered_lrelu: {length * up + pad0 + pad1} samples after padding are fewer than {n} taps")
    rows = -(-out_len // up)
    return out_len, rows, [[(i, (r + i - pad0) // up) for i in range(n) if (r + i - pad0) % up == 0] for r in range(up)]


def _upfirdn_slices(x, f: np.ndarray, up: int, down: int, padding, gain: float) -> jax.Array:
    """upfirdn2d with a 2-D filter as one polyphase sum of shifted slices: fh * fw terms per output pixel."""
    x0, x1, y0, y1 = padding
    t = f[::-1, ::-1] * gain  # Convolution as correlation with the reversed filter.
    fh, fw = t.shape
    b, h, w, c = x.shape
    if up == 1:
        x = _pad_axis(_pad_axis(x, x0, x1, axis=2), y0, y1, axis=1)
        h, w = x.shape[1], x.shape[2]
        oh, ow = (h - fh) // down + 1, (w - fw) // down + 1
        if oh <= 0 or ow <= 0:
            raise ValueError(f"filtered_lrelu: {h} x {w} samples after padding are fewer than {fh} x {fw} taps")
        rh, rw = oh + (fh - 1) // down, ow + (fw - 1) // down
        x = jnp.pad(x, ((0, 0), (0, max(rh * down - h, 0)), (0, max(rw * down - w, 0)), (0, 0)))
        x = x[:, : rh * down, : rw * down].reshape(b, rh, down, rw, down, c)
        out = None
        for i in range(fh):
            for j in range(fw):
                if t[i, j] == 0:
                    continue
                part = x[:, i // down : i // down + oh, i % down, j // down : j // down + ow, j % down]
                term = part * float(t[i, j])
                out = term if out is None else out + term
        return jnp.zeros((b, oh, ow, c), x.dtype) if out is None else out
    out_h, rows_h, terms_h = _up_phases(h, fh, up, y0, y1)
    out_w, rows_w, terms_w = _up_phases(w, fw, up, x0, x1)
    dh = [d for phase in terms_h for _, d in phase] or [0]
    dw = [d for phase in terms_w for _, d in phase] or [0]
    bh, bw = max(-min(dh), 0), max(-min(dw), 0)
    x = jnp.pad(x, ((0, 0), (bh, max(max(dh) + rows_h - h, 0)), (bw, max(max(dw) + rows_w - w, 0)), (0, 0)))
    phases = []
    for phase_h in terms_h:
        row = []
        for phase_w in terms_w:
            out = None
            for i, di in phase_h:
                for j, dj in phase_w:
                    if t[i, j] == 0:
                        continue
                    part = x[:, bh + di : bh + di + rows_h, bw + dj : bw + dj + rows_w]
                    term = part * float(t[i, j])
                    out = term if out is None else out + term
            row.append(jnp.zeros((b, rows_h, rows_w, c), x.dtype) if out is None else out)
        phases.append(jnp.stack(row, axis=3))  # [B, rows_h, rows_w, up, C]
    y = jnp.stack(phases, axis=2)  # [B, rows_h, up, rows_w, up, C]
    y = y.reshape(b, rows_h * up, rows_w * up, c)[:, :out_h, :out_w]
    if down > 1:
        y = y[:, ::down, ::down]
    return y


def _depthwise(x, f2d: np.ndarray, stride: int = 1, dilation: int = 1, padding=((0, 0), (0, 0))) -> jax.Array:
    """Correlation of each channel of NHWC x with the 2-D filter f2d (numpy), as one depthwise convolution."""
    c = x.shape[-1]
    kernel = jnp.broadcast_to(jnp.asarray(f2d, x.dtype)[:, :, None, None], f2d.shape + (1, c))
    return lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        padding,
        lhs_dilation=(dilation, dilation),
        dimension_numbers=_DIMENSIONS,
        feature_group_count=c,
        precision=lax.Precision.HIGHEST,
    )


def _upfirdn_conv(x, f: np.ndarray, up: int, down: int, padding, gain: float) -> jax.Array:
    """upfirdn2d with a 2-D filter as one depthwise convolution: input dilation `up`, window stride `down`."""
    x0, x1, y0, y1 = padding
    if up == 1:
        # Cropping (negative padding) first; the convolution pads only.
        x = _pad_axis(_pad_axis(x, min(x0, 0), min(x1, 0), axis=2), min(y0, 0), min(y1, 0), axis=1)
        pads = ((max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0)))
        return _depthwise(x, f[::-1, ::-1] * gain, stride=down, padding=pads)
    # lhs_dilation leaves up - 1 zeros between samples but none after the last one: add them to the end padding.
    # Cropping (negative padding) takes outputs off after the convolution, then the stride.
    x1, y1 = x1 + up - 1, y1 + up - 1
    pads = ((max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0)))
    y = _depthwise(x, f[::-1, ::-1] * gain, dilation=up, padding=pads)
    y = _pad_axis(_pad_axis(y, min(x0, 0), min(x1, 0), axis=2), min(y0, 0), min(y1, 0), axis=1)
    return y[:, ::down, ::down] if down > 1 else y


def _upfirdn_direct(x, fir: _Fir, up: int, down: int, padding, gain: float, impl: str) -> jax.Array:
    if not fir.dense:
        terms = [(np.asarray(fy), np.asarray(fx)) for fy, fx in fir.terms]
        return _upfirdn_separable(x, terms, up, down, padding, gain)
    f = np.asarray(fir.dense)
    if impl == "slices":
        return _upfirdn_slices(x, f, up, down, padding, gain)
    return _upfirdn_conv(x, f, up, down, padding, gain)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5, 6, 7))
def _upfirdn(x, fir: _Fir, up: int, down: int, padding, gain: float, impl: str, in_hw) -> jax.Array:
    """upfirdn2d of NHWC x (spatial size in_hw) whose backward pass is again an upfirdn2d in the same slice form.

    The transpose of up-sampling, padding, convolving and down-sampling is up-sampling by `down`, padding,
    convolving with the flipped filter and down-sampling by `up` (the reference's CUDA backward does the same).
    Left to JAX's transposition rules the slices become pads, which XLA:CPU sums some 25x slower (module docstring).
    """
    return _upfirdn_direct(x, fir, up, down, padding, gain, impl)


def _upfirdn_fwd(x, fir, up, down, padding, gain, impl, in_hw):
    return _upfirdn(x, fir, up, down, padding, gain, impl, in_hw), None


def _upfirdn_bwd(fir, up, down, padding, gain, impl, in_hw, _, g):
    (h, w), (oh, ow) = in_hw, g.shape[1:3]
    fh, fw = fir.size
    x0, x1, y0, y1 = padding
    # Per axis: before n - 1 - p0 (the full correlation's n - 1 less the forward's padding), after whatever
    # brings the result to the input's length.
    transposed = (
        fw - 1 - x0,
        w * up - ow * down + x0 - (up - 1),
        fh - 1 - y0,
        h * up - oh * down + y0 - (up - 1),
    )
    return (_upfirdn(g, fir.flipped(), down, up, transposed, gain, impl, (oh, ow)),)


_upfirdn.defvjp(_upfirdn_fwd, _upfirdn_bwd)


def _resample(x, fir: _Fir, up: int, down: int, padding, gain: float, impl: str) -> jax.Array:
    return _upfirdn(x, fir, up, down, tuple(padding), float(gain), impl, tuple(x.shape[1:3]))


# --- filtered_lrelu ----------------------------------------------------------------------------------------------


def _check_args(x, bias, up, down, gain, slope, clamp) -> None:
    if x.ndim != 4:
        raise ValueError(f"filtered_lrelu expects [B, H, W, C], got shape {x.shape}")
    if int(up) != up or int(down) != down or up < 1 or down < 1:
        raise ValueError(f"filtered_lrelu up and down must be integers >= 1, got up={up}, down={down}")
    if not gain > 0 or not slope >= 0 or (clamp is not None and not clamp >= 0):
        raise ValueError(f"filtered_lrelu needs gain > 0, slope >= 0, clamp None or >= 0; got {gain}, {slope}, {clamp}")
    if bias is not None and tuple(bias.shape) != (x.shape[-1],):
        raise ValueError(f"filtered_lrelu bias must have shape [{x.shape[-1]}], got {tuple(bias.shape)}")


def _compute_dtype(dtype):
    """float32 for 16-bit floats (the reference kernel's internal type), else the input's."""
    return jnp.float32 if jnp.dtype(dtype).itemsize < 4 else dtype


def output_size(in_size: int, up_taps: int, down_taps: int, up: int, down: int, pad0: int, pad1: int) -> int:
    """filtered_lrelu's output length along one axis: (in up + pads - (fu - 1) - (fd - 1) + down - 1) // down."""
    return (in_size * up + pad0 + pad1 - (up_taps - 1) - (down_taps - 1) + (down - 1)) // down


def filtered_lrelu(
    x: jax.Array,
    up_filter=None,
    down_filter=None,
    bias: jax.Array | None = None,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    gain: float = SQRT2,
    slope: float = LRELU_SLOPE,
    clamp: float | None = None,
    flip_filter: bool = False,
    nonseparable: str = "slices",
) -> jax.Array:
    """Filtered leaky ReLU of NHWC images, the reference's `filtered_lrelu` (see the module docstring for how).

    Per channel: add `bias`; insert up - 1 zeros after each pixel, zero-pad by `padding` (negative crops) and
    convolve with `up_filter` times up**2, keeping the outputs whose footprint lies inside; leaky ReLU with `slope`
    times `gain`; clamp to [-clamp, clamp]; convolve with `down_filter` (valid outputs only); keep every
    `down`-th pixel.

    Args:
        x: [B, H, W, C]; the result has its dtype (16-bit floats are computed in float32).
        up_filter, down_filter: concrete filters: None (identity), 1-D taps (applied along both axes) or a 2-D
            [fh, fw] array (separable or not), e.g. `design_lowpass_filter`'s.
        bias: [C] or None.
        up, down: integer factors.
        padding: w.r.t. the up-sampled image, reference order: an int, (x, y) or (x0, x1, y0, y1) with x the width.
        gain: scale of the activation (sqrt(2) for lrelu layers, 1 for the reference's ToRGB with slope 1).
        slope: negative-side slope of the leaky ReLU (1 makes it linear).
        clamp: maximum magnitude after the activation, or None.
        flip_filter: False convolves with the filters (the reference's default), True correlates.
        nonseparable: how non-separable 2-D filters are applied: "slices", "svd" or "conv" (module docstring).

    Returns:
        [B, H', W', C] with W' = (W * up + x0 + x1 - (fw_up - 1) - (fw_down - 1) + down - 1) // down, H' alike.
    """
    _check_args(x, bias, up, down, gain, slope, clamp)
    if nonseparable not in NONSEPARABLE_IMPLS:
        raise ValueError(f"nonseparable must be one of {NONSEPARABLE_IMPLS}, got {nonseparable!r}")
    up, down = int(up), int(down)
    fu = _Fir.make(_concrete(up_filter, "up_filter"), nonseparable)
    fd = _Fir.make(_concrete(down_filter, "down_filter"), nonseparable)
    if flip_filter:
        fu, fd = fu.flipped(), fd.flipped()
    padding = _parse_padding(padding)
    dtype = x.dtype
    x = x.astype(_compute_dtype(dtype))
    if bias is not None:
        x = x + bias.astype(x.dtype)
    x = _resample(x, fu, up, 1, padding, up * up, nonseparable)
    x = _lrelu_clamp(x, float(gain), float(slope), None if clamp is None else float(clamp))
    x = _resample(x, fd, 1, down, (0, 0, 0, 0), 1.0, nonseparable)
    return x.astype(dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _lrelu_clamp(x: jax.Array, gain: float, slope: float, clamp: float | None) -> jax.Array:
    """where(x < 0, slope x, x) * gain, then clamped to [-clamp, clamp]."""
    y = lax.select(x < 0, x * (gain * slope), x * gain)
    if clamp is not None:
        y = lax.clamp(-float(clamp), y, float(clamp))
    return y


@_lrelu_clamp.defjvp
def _lrelu_clamp_jvp(gain, slope, clamp, primals, tangents):
    """Tangent gain * (slope where x < 0, else 1), 0 where |y| > clamp: a linear function of the tangent whose
    only residuals are the two boolean masks (JAX's own rules for where / clip would also keep a float array of
    zeros for the clamped branch)."""
    (x,), (t,) = primals, tangents
    negative = x < 0
    y = lax.select(negative, x * (gain * slope), x * gain)
    dy = lax.select(negative, t * (gain * slope), t * gain)
    if clamp is not None:
        clamped = lax.abs(y) > clamp
        y = lax.select(clamped, lax.clamp(-float(clamp), y, float(clamp)), y)
        dy = lax.select(clamped, dy * 0.0, dy)
    return y, dy


# --- The plain composition ---------------------------------------------------------------------------------------


def _dense(f: np.ndarray | None) -> np.ndarray:
    """The 2-D filter: [[1]] for None, outer(f, f) for 1-D taps."""
    if f is None:
        return np.ones((1, 1))
    return np.outer(f, f) if f.ndim == 1 else f


def filtered_lrelu_unfused(
    x: jax.Array,
    up_filter=None,
    down_filter=None,
    bias: jax.Array | None = None,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    gain: float = SQRT2,
    slope: float = LRELU_SLOPE,
    clamp: float | None = None,
    flip_filter: bool = False,
) -> jax.Array:
    """`filtered_lrelu` as a deliberately plain composition of its steps, for tests and benchmarks.

    Bias add; explicit zero insertion (pad + reshape); lax.pad (negative crops); a dense 2-D depthwise
    `conv_general_dilated` with the flipped filter times up**2 (outer(f, f) for 1-D taps); leaky ReLU times gain
    and jnp.clip; a second dense depthwise convolution at full resolution; a strided slice. Convolutions at
    Precision.HIGHEST (a float32 reference also on GPUs). Same arguments and result as `filtered_lrelu`.
    """
    _check_args(x, bias, up, down, gain, slope, clamp)
    up, down = int(up), int(down)
    fu, fd = _dense(_concrete(up_filter, "up_filter")), _dense(_concrete(down_filter, "down_filter"))
    if not flip_filter:  # Convolution is correlation with the reversed filter.
        fu, fd = fu[::-1, ::-1], fd[::-1, ::-1]
    x0, x1, y0, y1 = _parse_padding(padding)
    dtype = x.dtype
    x = x.astype(_compute_dtype(dtype))
    if bias is not None:
        x = x + bias.astype(x.dtype)
    b, h, w, c = x.shape
    x = x.reshape(b, h, 1, w, 1, c)
    x = jnp.pad(x, ((0, 0), (0, 0), (0, up - 1), (0, 0), (0, up - 1), (0, 0))).reshape(b, h * up, w * up, c)
    x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (y0, y1, 0), (x0, x1, 0), (0, 0, 0)))
    x = _depthwise(x, fu * (up * up))
    x = jnp.where(x >= 0, x, x * slope) * gain
    if clamp is not None:
        x = jnp.clip(x, -clamp, clamp)
    x = _depthwise(x, fd)
    return x[:, ::down, ::down].astype(dtype)
