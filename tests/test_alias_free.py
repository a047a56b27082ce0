"""StyleGAN3's alias-free filtering (animejax/models/alias_free.py): the Kaiser low-pass design against
scipy.signal.firwin, the radial jinc filter, the SynthesisNetwork schedule against values worked out by hand from
the paper's formulas, and filtered_lrelu (fused and unfused) against a float64 numpy composition of its steps,
gradients included. Tiny arrays and short filters: the whole file runs in well under a minute on 2 cores."""

import math

import jax
import jax.ad_checkpoint
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
import scipy.special

from animejax.models import alias_free as af

# ------------------------------------------------------------------------------------------- filter design


@pytest.mark.parametrize(
    "numtaps, cutoff, width, fs",
    [
        (12, 2.0, 12.0, 32),  # StyleGAN3-T L0 up filter (cutoff 2, half-width 6, 32 samples per unit).
        (24, 5.0397, 21.9206, 64),  # A 4x up-sampling filter.
        (12, 128.0, 59.173, 512),  # The critically sampled layers at 256 px.
        (6, 1.5, 1.0, 8),
        (7, 2.0, 1.2, 9.0),  # Odd length.
        (5, 0.3, 0.05, 1.0),  # Low attenuation: beta 0 (a rectangular window).
        (40, 3.0, 0.8, 10.0),  # High attenuation: the a > 50 branch.
    ],
)
def test_lowpass_matches_firwin(numtaps, cutoff, width, fs):
    expected = scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)
    ours = af.design_lowpass_filter(numtaps, cutoff, width, fs, dtype=np.float64)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-15)
    single = af.design_lowpass_filter(numtaps, cutoff, width, fs)
    assert single.dtype == np.float32 and single.shape == (numtaps,)
    np.testing.assert_allclose(single, expected.astype(np.float32), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("atten", [5.0, 21.0, 21.5, 35.0, 50.0, 50.1, 90.0])
def test_kaiser_formulas_match_scipy(atten):
    assert af.kaiser_beta(atten) == pytest.approx(scipy.signal.kaiser_beta(atten), rel=1e-14, abs=1e-15)
    for numtaps, width in ((12, 0.3), (24, 0.05), (3, 0.9)):
        assert af.kaiser_atten(numtaps, width) == pytest.approx(scipy.signal.kaiser_atten(numtaps, width), rel=1e-14)
    for n in (1, 2, 7, 12):
        beta = af.kaiser_beta(atten)
        np.testing.assert_allclose(af.kaiser_window(n, beta), scipy.signal.windows.kaiser(n, beta), rtol=1e-13)


def test_lowpass_identity_and_errors():
    assert af.design_lowpass_filter(1, 2.0, 1.0, 16) is None
    assert af.design_lowpass_filter(1, 2.0, 1.0, 16, radial=True) is None
    for args in [(0, 2.0, 1.0, 16), (4, 8.0, 1.0, 16), (4, 0.0, 1.0, 16), (4, 2.0, 0.0, 16), (2.5, 2.0, 1.0, 16)]:
        with pytest.raises(ValueError):
            af.design_lowpass_filter(*args)


def _reference_radial(numtaps, cutoff, width, fs):
    """The reference's recipe, with scipy's Kaiser helpers and numpy's window (even numtaps only)."""
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    w = np.kaiser(numtaps, scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2))))
    f = f * np.outer(w, w)
    return f / f.sum()


@pytest.mark.parametrize(
    "numtaps, cutoff, width, fs", [(12, 2.0, 12.0, 32), (12, 22.63, 82.75, 256), (8, 3.0, 4.0, 16)]
)
def test_radial_filter(numtaps, cutoff, width, fs):
    f = af.design_lowpass_filter(numtaps, cutoff, width, fs, radial=True, dtype=np.float64)
    assert f.shape == (numtaps, numtaps)
    np.testing.assert_allclose(f, _reference_radial(numtaps, cutoff, width, fs), rtol=1e-12, atol=1e-16)
    # Radially symmetric: both mirror images and the transpose.
    np.testing.assert_allclose(f, f.T, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(f, f[::-1], rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(f, f[:, ::-1], rtol=1e-12, atol=1e-16)
    # DC gain 1; a low-pass with the stopband from f_t = cutoff + width / 2 on, in every direction; isotropic in
    # the passband (the response along an axis and along the diagonal agree at the same radius).
    t = np.arange(numtaps) - (numtaps - 1) / 2
    assert f.sum() == pytest.approx(1.0, abs=1e-12)

    def response(nu, angle):
        ex, ey = (np.exp(-2j * np.pi * nu * c / fs * t) for c in (math.cos(angle), math.sin(angle)))
        return abs(ey @ f @ ex)

    for angle in (0, math.pi / 4, math.pi / 3):
        assert response(cutoff + width / 2, angle) < 0.03
    assert response(cutoff / 2, 0) > 0.8 and abs(response(cutoff / 2, 0) - response(cutoff / 2, math.pi / 4)) < 0.01
    assert not np.allclose(np.linalg.svd(f, compute_uv=False)[1], 0)  # Not separable.
    single = af.design_lowpass_filter(numtaps, cutoff, width, fs, radial=True)
    assert single.dtype == np.float32 and abs(float(single.sum()) - 1) < 1e-6


def test_radial_filter_odd_size_centre():
    f = af.design_lowpass_filter(7, 2.0, 1.5, 9.0, radial=True, dtype=np.float64)
    assert np.all(np.isfinite(f)) and f.sum() == pytest.approx(1.0)
    assert f[3, 3] == f.max()  # The centre takes the limit J1(2 pi c r) / (pi r) -> c.


# ------------------------------------------------------------------------------------------- the schedule


def _hand_schedule(res, num_layers=14, num_critical=2):
    """Cutoffs, stopbands, half-widths by the paper's formulas, sampling rates as worked out below."""
    n = num_layers - num_critical
    ratio = [min(i / n, 1) for i in range(num_layers + 1)]
    cutoffs = [2 * (res / 2 / 2) ** e for e in ratio]
    stopbands = [2**2.1 * (res / 2 * 2**0.3 / 2**2.1) ** e for e in ratio]
    return cutoffs, stopbands


def test_layer_schedule_256():
    layers = af.layer_schedule(256)
    assert len(layers) == 15
    cutoffs, stopbands = _hand_schedule(256)
    # f_c = 2 * 64^(i/12) = 2^(1 + i/2); f_t = 2^(2.1 + 5.2 i / 12); s = 2^ceil(log2(2 f_t)) capped at 256:
    # log2(2 f_t) = 3.1, 3.53, 3.97 -> 16; 4.4, 4.83 -> 32; 5.27, 5.7 -> 64; 6.13, 6.57, 7.0 -> 128; then 256.
    rates = [16, 16, 16, 32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 256, 256]
    sizes = [r + 20 for r in rates[:13]] + [256, 256]
    channels = [512] * 9 + [362, 256, 181, 128, 128, 3]  # rint(min(16384 / f_c, 512)), 3 for ToRGB.
    names = [f"L{i}_{sizes[i]}_{channels[i]}" for i in range(15)]
    assert [s.name for s in layers] == names
    assert [s.out_sampling_rate for s in layers] == rates
    assert [s.in_sampling_rate for s in layers] == [16] + rates[:-1]
    assert [s.out_size for s in layers] == sizes and [s.in_size for s in layers] == [36] + sizes[:-1]
    assert [s.out_channels for s in layers] == channels and [s.in_channels for s in layers] == [512] + channels[:-1]
    for i, s in enumerate(layers):
        assert s.out_cutoff == pytest.approx(2 ** (1 + min(i, 12) / 2), rel=1e-12)
        assert s.out_cutoff == pytest.approx(cutoffs[i], rel=1e-12)
        assert s.out_half_width == pytest.approx(max(stopbands[i], rates[i] / 2) - cutoffs[i], rel=1e-12)
        assert s.in_cutoff == pytest.approx(cutoffs[max(i - 1, 0)], rel=1e-12)
    # Up-sampling to twice the larger rate (4x where the rate doubles), none for ToRGB.
    ups = [2, 2, 2, 4, 2, 4, 2, 4, 2, 2, 4, 2, 2, 2, 1]
    assert [s.up_factor for s in layers] == ups and [s.down_factor for s in layers] == [2] * 14 + [1]
    assert [s.up_taps for s in layers] == [6 * u for u in ups[:-1]] + [1]
    assert [s.down_taps for s in layers] == [12] * 14 + [1]
    assert [s.tmp_sampling_rate for s in layers] == [2 * max(a, b) for a, b in zip([16] + rates, rates[:-1])] + [256]
    # pad_total = (out - 1) * down + 1 - (in + k - 1) * up + up_taps + down_taps - 2, lo = (total + up) // 2:
    # same size: 2 S - 1 - 2 (S + 2) + 22 = 17 -> (9, 8); 36 -> 52 at 4x: 103 - 152 + 34 = -15 -> (-6, -9);
    # 276 -> 256 (L13): 511 - 556 + 22 = -23 -> (-11, -12); ToRGB 256 -> 256: 0 -> (0, 0).
    pads = {2: (9, 8), 4: (-6, -9)}
    for s in layers[:13]:
        assert s.padding == pads[s.up_factor] * 2
    assert layers[13].padding == (-11, -12, -11, -12) and layers[14].padding == (0, 0, 0, 0)
    assert [s.is_critically_sampled for s in layers] == [False] * 12 + [True] * 3
    assert [s.is_torgb for s in layers] == [False] * 14 + [True]
    assert [s.use_fp16 for s in layers] == [False] * 3 + [True] * 12  # s * 2^4 > 256.
    assert [s.conv_kernel for s in layers] == [3] * 14 + [1] and not any(s.down_radial for s in layers)


def test_layer_schedule_64():
    layers = af.layer_schedule(64)
    cutoffs, stopbands = _hand_schedule(64)
    # f_c = 2 * 16^(i/12) = 2^(1 + i/3); f_t = 2^(2.1 + 3.2 i / 12); log2(2 f_t) = 3.1 ... 3.9 (i <= 3) -> 16,
    # 4.17 ... 4.97 (i <= 7) -> 32, then 5.23 ... -> 64 (the cap).
    rates = [16] * 4 + [32] * 4 + [64] * 7
    sizes = [36] * 4 + [52] * 4 + [84] * 5 + [64, 64]
    assert [s.out_sampling_rate for s in layers] == rates
    assert [s.out_size for s in layers] == sizes
    assert [s.out_channels for s in layers] == [512] * 14 + [3]  # 16384 / f_c >= 512 throughout.
    assert [s.up_factor for s in layers] == [2, 2, 2, 2, 4, 2, 2, 2, 4, 2, 2, 2, 2, 2, 1]
    for i, s in enumerate(layers):
        assert s.out_cutoff == pytest.approx(2 ** (1 + min(i, 12) / 3), rel=1e-12)
        assert s.out_half_width == pytest.approx(max(stopbands[i], rates[i] / 2) - cutoffs[i], rel=1e-12)
    assert layers[12].out_half_width == pytest.approx(32 * 2**0.3 - 32)  # Critical: f_t - f_c at s / 2 = f_c.
    assert layers[13].padding == (-11, -12, -11, -12) and layers[4].padding == (-6, -9, -6, -9)
    assert [s.use_fp16 for s in layers] == [True] * 15  # 16 * 16 > 64 already.


def test_layer_schedule_stylegan3_r():
    layers = af.layer_schedule(64, channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True)
    assert [s.down_radial for s in layers] == [True] * 12 + [False] * 3
    assert [s.conv_kernel for s in layers] == [1] * 15
    # With 1x1 convolutions the same-size padding is 2 S - 1 - 2 S + 22 = 21 -> (11, 10).
    assert layers[0].padding == (11, 10, 11, 10)
    fu, fd = layers[0].filters()
    assert fu.shape == (12,) and fd.shape == (12, 12)
    np.testing.assert_allclose(fd.sum(), 1.0, rtol=1e-6)
    assert layers[14].filters() == (None, None)
    with pytest.raises(ValueError):
        af.layer_schedule(64, num_layers=2, num_critical=2)


# ------------------------------------------------------------------------------------------- filtered_lrelu


def _np_upfirdn(x, f2d, up, down, padding, gain):
    """float64: insert zeros, pad or crop, convolve (correlate with the flipped filter, valid outputs), decimate."""
    x0, x1, y0, y1 = padding
    b, h, w, c = x.shape
    z = np.zeros((b, h * up, w * up, c))
    z[:, ::up, ::up] = x
    z = np.pad(z, ((0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0)), (0, 0)))
    z = z[:, max(-y0, 0) : z.shape[1] - max(-y1, 0), max(-x0, 0) : z.shape[2] - max(-x1, 0)]
    k = np.asarray(f2d, np.float64)[::-1, ::-1] * gain
    fh, fw = k.shape
    oh, ow = z.shape[1] - fh + 1, z.shape[2] - fw + 1
    out = np.zeros((b, oh, ow, c))
    for i in range(fh):
        for j in range(fw):
            out += k[i, j] * z[:, i : i + oh, j : j + ow]
    return out[:, ::down, ::down]


def _np_filtered_lrelu(x, fu, fd, b, up, down, padding, gain=math.sqrt(2), slope=0.2, clamp=None, flip=False):
    def dense(f):
        f = np.ones((1, 1)) if f is None else np.asarray(f, np.float64)
        f = np.outer(f, f) if f.ndim == 1 else f
        return f[::-1, ::-1] if flip else f

    padding = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    y = np.asarray(x, np.float64) + (0 if b is None else np.asarray(b, np.float64))
    y = _np_upfirdn(y, dense(fu), up, 1, padding, up * up)
    y = np.where(y < 0, y * slope, y) * gain
    if clamp is not None:
        y = np.clip(y, -clamp, clamp)
    return _np_upfirdn(y, dense(fd), 1, down, (0, 0, 0, 0), 1.0)


def _lowpass(up_or_down, radial=False, taps=3):
    """A short Kaiser low-pass for a factor (None for 1), as the schedule designs them but 3 taps per factor."""
    if up_or_down == 1:
        return None
    fs = 8.0 * up_or_down
    return af.design_lowpass_filter(taps * up_or_down, 2.5, 3.0, fs, radial=radial)


RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 9, 7, 3)).astype(np.float32) * 2  # Non-square, to catch H/W mix-ups.
BIAS = RNG.normal(size=(3,)).astype(np.float32)
ASYM = RNG.normal(size=(4,)).astype(np.float32)  # Not symmetric: flip_filter and filter orientation matter.
ASYM2D = RNG.normal(size=(3, 4)).astype(np.float32)

# (up, down, up_filter, down_filter, padding)
CASES = {
    "1/1 none": (1, 1, None, None, (1, 0, -1, 2)),
    "2/2 separable": (2, 2, _lowpass(2), _lowpass(2), (3, 2, 4, 1)),
    "2/2 radial": (2, 2, _lowpass(2), _lowpass(2, radial=True), (3, 2, 3, 2)),
    "1/2 radial": (1, 2, None, _lowpass(2, radial=True), (2, 3, 1, 2)),
    "2/1": (2, 1, _lowpass(2), None, (2, 3, 3, 2)),
    "1/4": (1, 4, None, _lowpass(4, taps=2), (3, 4, 3, 4)),
    "4/2 cropped": (4, 2, _lowpass(4, taps=2), _lowpass(2), (-2, -1, -3, 0)),
    "2/2 asymmetric": (2, 2, ASYM, ASYM2D, (2, 1, 0, 3)),
    "1/2 2-D up filter": (1, 2, ASYM2D, _lowpass(2), 2),
}


def _args(name, **kw):
    up, down, fu, fd, padding = CASES[name]
    return dict(up_filter=fu, down_filter=fd, up=up, down=down, padding=padding, **kw)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("clamp", [None, 1.5])
def test_filtered_lrelu_matches_numpy(name, clamp):
    args = _args(name, clamp=clamp)
    up, down, fu, fd, padding = CASES[name]
    expected = _np_filtered_lrelu(X, fu, fd, BIAS, up, down, padding, clamp=clamp)
    scale = np.abs(expected).max()
    impls = af.NONSEPARABLE_IMPLS if np.ndim(fu) == 2 or np.ndim(fd) == 2 else ["slices"]
    for impl in impls:
        ours = af.filtered_lrelu(jnp.asarray(X), bias=jnp.asarray(BIAS), nonseparable=impl, **args)
        assert ours.shape == expected.shape and ours.dtype == jnp.float32, (impl, ours.shape, expected.shape)
        np.testing.assert_allclose(np.asarray(ours), expected, atol=3e-6 * scale, err_msg=impl)
    unfused = af.filtered_lrelu_unfused(jnp.asarray(X), bias=jnp.asarray(BIAS), **args)
    assert unfused.shape == expected.shape
    np.testing.assert_allclose(np.asarray(unfused), expected, atol=3e-6 * scale)
    if clamp is not None:
        unclamped = _np_filtered_lrelu(X, fu, fd, BIAS, up, down, padding)
        assert np.abs(unclamped - expected).max() > 0.1 * scale  # The clamp is exercised.


def test_filtered_lrelu_options():
    """flip_filter, gain, slope, no bias, and the output-size formula."""
    up, down, fu, fd, padding = CASES["2/2 asymmetric"]
    kw = dict(up=up, down=down, padding=padding, gain=0.7, slope=0.05, flip_filter=True)
    expected = _np_filtered_lrelu(X, fu, fd, None, up, down, padding, gain=0.7, slope=0.05, flip=True)
    for fn in (af.filtered_lrelu, af.filtered_lrelu_unfused):
        np.testing.assert_allclose(np.asarray(fn(jnp.asarray(X), fu, fd, **kw)), expected, atol=1e-5)
    # slope 1, gain 1 (the reference's ToRGB call): a linear filter.
    linear = af.filtered_lrelu(jnp.asarray(X), fu, fd, up=2, down=2, padding=padding, gain=1.0, slope=1.0)
    flipped = af.filtered_lrelu(-jnp.asarray(X), fu, fd, up=2, down=2, padding=padding, gain=1.0, slope=1.0)
    np.testing.assert_allclose(np.asarray(linear), -np.asarray(flipped), atol=1e-5)
    x0, x1, y0, y1 = padding
    assert linear.shape[2] == af.output_size(7, 4, 4, 2, 2, x0, x1)
    assert linear.shape[1] == af.output_size(9, 4, 3, 2, 2, y0, y1)


def test_layer_shapes_from_schedule():
    """A StyleGAN3-T and a StyleGAN3-R layer with the schedule's filters and padding give the layer's out_size."""
    tiny = dict(channel_base=256, channel_max=4)
    radial = dict(conv_kernel=1, use_radial_filters=True)
    for spec in (af.layer_schedule(32, **tiny)[3], af.layer_schedule(32, **radial, **tiny)[2]):
        fu, fd = spec.filters()
        n = spec.in_size + spec.conv_kernel - 1
        x = RNG.normal(size=(1, n, n, spec.out_channels)).astype(np.float32)
        out = af.filtered_lrelu(jnp.asarray(x), fu, fd, None, spec.up_factor, spec.down_factor, spec.padding, clamp=256)
        assert out.shape == (1, spec.out_size, spec.out_size, spec.out_channels), spec.name
        expected = _np_filtered_lrelu(x, fu, fd, None, spec.up_factor, spec.down_factor, spec.padding, clamp=256)
        np.testing.assert_allclose(np.asarray(out), expected, atol=3e-6 * np.abs(expected).max())


def test_jit_and_low_precision():
    args = _args("2/2 radial", clamp=1.5)
    x, b = jnp.asarray(X), jnp.asarray(BIAS)
    fn = jax.jit(lambda x, b: af.filtered_lrelu(x, bias=b, **args))
    eager = af.filtered_lrelu(x, bias=b, **args)
    np.testing.assert_allclose(np.asarray(fn(x, b)), np.asarray(eager), atol=1e-6)
    half = fn(x.astype(jnp.bfloat16), b.astype(jnp.bfloat16))
    assert half.dtype == jnp.bfloat16
    x16, b16 = (np.asarray(v.astype(jnp.bfloat16), np.float64) for v in (x, b))
    expected = _np_filtered_lrelu(x16, args["up_filter"], args["down_filter"], b16, 2, 2, args["padding"], clamp=1.5)
    np.testing.assert_allclose(np.asarray(half, np.float32), expected, atol=1e-2 * np.abs(expected).max())


def _loss(fn, args, weights):
    return lambda x, b: jnp.sum(weights * fn(x, bias=b, **args))


@pytest.mark.parametrize("name", ["2/2 separable", "2/2 radial", "1/4", "4/2 cropped", "2/2 asymmetric"])
def test_gradients_fused_equal_unfused(name):
    args = _args(name, clamp=1.5)
    x, b = jnp.asarray(X), jnp.asarray(BIAS)
    weights = jnp.asarray(RNG.normal(size=af.filtered_lrelu(x, **args).shape), jnp.float32)
    fused = jax.grad(_loss(af.filtered_lrelu, args, weights), argnums=(0, 1))(x, b)
    unfused = jax.grad(_loss(af.filtered_lrelu_unfused, args, weights), argnums=(0, 1))(x, b)
    for ours, theirs in zip(fused, unfused):
        assert ours.shape == theirs.shape and np.all(np.isfinite(np.asarray(ours)))
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-5 * np.abs(np.asarray(theirs)).max())
    assert np.abs(np.asarray(fused[0])).max() > 0


def test_second_order_gradients():
    """The custom VJP's backward is differentiable: the gradient of a gradient norm matches the plain version."""
    args = _args("2/2 radial", clamp=1.5)
    x, b = jnp.asarray(X), jnp.asarray(BIAS)

    def penalty(fn):
        return lambda x: jnp.sum(jax.grad(lambda x: jnp.sum(jnp.square(fn(x, bias=b, **args))))(x) ** 2)

    ours, theirs = jax.grad(penalty(af.filtered_lrelu))(x), jax.grad(penalty(af.filtered_lrelu_unfused))(x)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-4 * np.abs(np.asarray(theirs)).max())


def test_backward_keeps_only_masks(capsys):
    """Of the up-sampled intermediate, the backward pass keeps boolean masks (x < 0, |y| > clamp), no floats."""
    args = _args("2/2 separable", clamp=1.5)
    up_shape = _np_upfirdn(X, np.ones((6, 6)), 2, 1, args["padding"], 1).shape
    jax.ad_checkpoint.print_saved_residuals(
        lambda x, b: af.filtered_lrelu(x, bias=b, **args), jnp.asarray(X), jnp.asarray(BIAS)
    )
    shape = ",".join(map(str, up_shape))
    kept = [line for line in capsys.readouterr().out.splitlines() if f"[{shape}]" in line]
    assert len(kept) == 2 and all(line.startswith("bool[") for line in kept), kept


def test_errors():
    x = jnp.asarray(X)
    with pytest.raises(ValueError, match="concrete"):
        jax.jit(lambda f: af.filtered_lrelu(x, f, None, up=2))(jnp.ones(4))
    with pytest.raises(ValueError):
        af.filtered_lrelu(x[0], None, None)
    with pytest.raises(ValueError):
        af.filtered_lrelu(x, None, None, bias=jnp.zeros(4))
    with pytest.raises(ValueError):
        af.filtered_lrelu(x, None, None, up=0)
    with pytest.raises(ValueError):
        af.filtered_lrelu(x, None, None, nonseparable="fft")
    with pytest.raises(ValueError):
        af.filtered_lrelu(x, np.ones(12) / 12, None, up=1)  # 12 taps over 7 columns.
