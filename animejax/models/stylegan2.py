"""StyleGAN2 generator and discriminator (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"),
NHWC, in the design of NVlabs/stylegan2-ada-pytorch's training/networks.py (config "stylegan2", no labels).

What is where:
- `EqualizedDense`, `EqualizedConv2d`: equalised learning rate. Weights are stored N(0, 1) / lr_multiplier and
  scaled at run time by lr_multiplier / sqrt(fan_in); biases (initialised to `bias_init`) by lr_multiplier.
  Activations are the reference's bias_act: bias, then linear or leaky ReLU (slope 0.2) times sqrt(2), times an
  extra gain, then an optional clamp to +-conv_clamp * gain.
- `MappingNetwork`: z -> normalize_2nd_moment -> `num_layers` dense lrelu layers (lr_multiplier 0.01) -> w.
  Tracking w_avg and truncation are the method's business; `truncate` is the formula.
- `modulated_conv2d`: the modulation / demodulation of the reference, as a function of (x, weight, styles).
- `SynthesisLayer` (modulated 3x3 conv, optional 2x up-sampling with the [1, 3, 3, 1] FIR, noise, bias, lrelu),
  `ToRGBLayer` (modulated 1x1 conv without demodulation), `SynthesisBlock` (the "skip" architecture: each block's
  RGB output is added to the FIR-up-sampled image of the blocks below), `SynthesisNetwork` (blocks b4 ... bR
  from a learned 4x4 constant), `Generator` (mapping + synthesis).
- `Discriminator`: the "resnet" architecture: fromRGB (1x1) at the top resolution only, then per resolution
  conv3x3, conv3x3 with 2x FIR down-sampling, and a 1x1 down-sampled skip; the two paths are scaled by
  sqrt(0.5) and added. The 4x4 epilogue: minibatch standard deviation, conv3x3, dense, dense(1).

Layouts and names follow the reference where it has them (blocks b4 ... bR, layers conv0, conv1, torgb, fromrgb,
skip, affine, fc{i}, const), with Flax's [kh, kw, in, out] conv kernels and [in, out] dense kernels; the
epilogue's `fc` reads the 4x4 map flattened in NHWC order. Channels at resolution r: min(channel_base // r,
channel_max). Resolutions 32 to 256 (powers of two).

Noise inputs: each `SynthesisLayer` has a scalar `noise_strength` (initialised 0) times per-pixel noise shared over
channels. noise_mode "random" draws it from the "noise" rng collection, "const" reads a fixed [r, r] buffer drawn
N(0, 1) at init into the "noise_const" variable collection (as the reference's registered `noise_const` buffer: it
travels with checkpoints and can take a pretrained network's buffers), "none" adds nothing.

Modulated convolutions run by default as the reference's non-fused path (activations scaled by the styles before
and by the demodulation coefficients after one shared-weight convolution); `fused_modconv=True` selects the
reference's grouped convolution with per-sample weights, the same function. Up-sampling convolutions are
transposed convolutions computed sub-pixel (one stride-1 convolution with up^2 times the output channels, then an
interleave), followed by the FIR. Measured on 2 CPU cores (G and D at 64 px, batch 16, channel_base 4096,
channel_max 128, forward + backward): the generator takes 2.2 s as here, 48 s with fused modulated convolutions
(XLA:CPU's grouped convolutions are slow), 7.0 s with the transposed convolutions as `lhs_dilation` convolutions
(slow kernel gradients) and 4.3 s with the FIR as depthwise convolutions; the discriminator 1.6 s, and 6.5 s with
depthwise-convolution FIRs.

Mixed precision: `dtype` is the computation dtype of the synthesis and discriminator convolutions, dense layers and
activations; params are float32. The mapping network, the styles (affine layers), the demodulation coefficients,
the accumulated RGB image and the discriminator's 4x4 epilogue (as the reference's, which is always float32) are
float32; images and logits come out float32.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from animejax.models.upfirdn import setup_filter, upfirdn2d, upsample2d

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
RESOLUTIONS = (32, 64, 128, 256)
NOISE_MODES = ("random", "const", "none")
RESAMPLE_TAPS = (1, 3, 3, 1)
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def check_resolution(img_resolution: int) -> None:
    """Raises ValueError unless `img_resolution` is one of 32, 64, 128, 256."""
    if img_resolution not in RESOLUTIONS:
        raise ValueError(
            f"StyleGAN2 networks support image resolutions {', '.join(map(str, RESOLUTIONS))}, got {img_resolution}"
        )


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at `resolution`: min(channel_base // resolution, channel_max), as the reference."""
    return min(channel_base // resolution, channel_max)


def num_ws(img_resolution: int) -> int:
    """The number of w vectors the synthesis network reads: 2 * log2(R) - 2 for the skip architecture.

    As the reference's bookkeeping: every block's convolutions (one at 4x4, two above) plus the last block's
    toRGB; each other toRGB shares its w with the next block's first convolution.
    """
    check_resolution(img_resolution)
    return 2 * int(round(math.log2(img_resolution))) - 2


def normalize_2nd_moment(x: jax.Array, axis: int = -1, eps: float = 1e-8) -> jax.Array:
    """x / sqrt(mean(x^2) + eps) along `axis`."""
    return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)


def truncate(w: jax.Array, w_avg: jax.Array, psi: float) -> jax.Array:
    """The truncation trick: w_avg + psi * (w - w_avg) (broadcasting w_avg [w_dim] over w [..., w_dim])."""
    return w_avg + psi * (w - w_avg)


def bias_act(x: jax.Array, b: jax.Array | None = None, act: str = "linear", gain: float | None = None, clamp=None):
    """The reference's bias_act on the last axis: x + b, activation, times gain, clamp to +-clamp.

    act is "linear" (default gain 1) or "lrelu" (slope 0.2, default gain sqrt(2)). The result has x's dtype.
    """
    if act not in ("linear", "lrelu"):
        raise ValueError(f"unknown activation {act!r}; choose linear or lrelu")
    if b is not None:
        x = x + b.astype(x.dtype)
    if act == "lrelu":
        x = jnp.where(x >= 0, x, LRELU_SLOPE * x)
    if gain is None:
        gain = LRELU_GAIN if act == "lrelu" else 1.0
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = jnp.clip(x, -clamp, clamp)
    return x


def _conv(x: jax.Array, w: jax.Array, stride: int = 1, padding: int = 0, groups: int = 1) -> jax.Array:
    """Correlation of NHWC x with HWIO w, symmetric zero padding.

    Only "same" padding of an odd kernel goes inside the convolution; anything else is padded beforehand: XLA:CPU
    computes the kernel gradient of other in-convolution paddings (e.g. (2, 1), or 1 around a 2x2 kernel) with a
    generic loop some 30x slower.
    """
    kh, kw = w.shape[0], w.shape[1]
    if padding and not (kh == kw and kh % 2 == 1 and padding == kh // 2 and stride == 1):
        x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        padding = 0
    return lax.conv_general_dilated(
        x,
        w,
        (stride, stride),
        ((padding, padding), (padding, padding)),
        dimension_numbers=_DIMENSIONS,
        feature_group_count=groups,
    )


def _transposed_conv(x: jax.Array, w: jax.Array, up: int, groups: int = 1) -> jax.Array:
    """torch's conv_transpose2d(x, w, stride=up) in NHWC/HWIO: out[up*i + k] += x[i] w[k], full size (H-1)*up + kh,
    followed by up*J - kh trailing zeros per axis (J = ceil(kh / up)).

    Computed sub-pixel: output phase r at position m is sum_j x[m - j] w[up*j + r], a J x J correlation of x
    padded by J - 1; the up^2 phases are output channels of one convolution, then interleaved.
    """
    kh, kw, cin, cout = w.shape
    taps = -(-max(kh, kw) // up)
    w = jnp.pad(w, ((0, up * taps - kh), (0, up * taps - kw), (0, 0), (0, 0)))
    # [t, r, t', r', I, O] with w index up * (taps - 1 - t) + r: reverse the tap order.
    w = w.reshape(taps, up, taps, up, cin, cout)[::-1, :, ::-1]
    cout_g = cout // groups
    w = w.reshape(taps, up, taps, up, cin, groups, cout_g).transpose(0, 2, 4, 5, 1, 3, 6)
    w = w.reshape(taps, taps, cin, groups * up * up * cout_g)
    x = jnp.pad(x, ((0, 0), (taps - 1, taps - 1), (taps - 1, taps - 1), (0, 0)))
    y = lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=_DIMENSIONS, feature_group_count=groups)
    n, h, wd, _ = y.shape
    y = y.reshape(n, h, wd, groups, up, up, cout_g).transpose(0, 1, 4, 2, 5, 3, 6)
    return y.reshape(n, h * up, wd * up, groups * cout_g)


def conv2d_resample(
    x: jax.Array, w: jax.Array, f=None, up: int = 1, down: int = 1, padding: int = 0, groups: int = 1
) -> jax.Array:
    """The reference's conv2d_resample for NHWC x and HWIO w: convolution with optional FIR up/down-sampling.

    With up == 1 the kernel is correlated with x (torch conv2d); with up > 1 it is applied as a transposed
    convolution, i.e. convolved with the zero-up-sampled x, as the reference's layers do (flip_weight = (up == 1)).
    `padding` is with respect to the up-sampled image, once, at the start.

    Args:
        x: [B, H, W, C].
        w: [kh, kw, C / groups, O].
        f: the FIR filter (`setup_filter`) for up/down-sampling; required when up or down > 1.
        up, down: integer factors.
        padding: symmetric zero padding.
        groups: feature groups (the fused modulated convolution uses the batch).

    Returns:
        [B, H * up / down, W * up / down, O] (for padding = kh // 2).
    """
    kh, kw = w.shape[0], w.shape[1]
    if (up > 1 or down > 1) and f is None:
        raise ValueError("conv2d_resample needs a filter f for up- or down-sampling")
    fw, fh = (f.shape[1], f.shape[0]) if f is not None else (1, 1)
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2

    if kh == 1 and kw == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=(px0, px1, py0, py1))
        return _conv(x, w, groups=groups)
    if kh == 1 and kw == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups)
        return upfirdn2d(x, f, up=up, padding=(px0, px1, py0, py1), gain=up * up)
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=(px0, px1, py0, py1))
        return _conv(x, w, stride=down, groups=groups)
    if up > 1:
        x = _transposed_conv(x, w, up, groups)
        # The transposed convolution's full output starts kw - 1 before the padded image and ends kw - up after
        # it; `_transposed_conv` appends up * taps - kw zeros, so the end is at up * taps - up.
        end = up * -(-max(kh, kw) // up) - up
        p = (px0 - (kw - 1), px1 - end, py0 - (kh - 1), py1 - end)
        x = upfirdn2d(x, f, padding=p, gain=up * up)
        if down > 1:
            x = upfirdn2d(x, f, down=down)
        return x
    return _conv(x, w, padding=padding, groups=groups)


def modulated_conv2d(
    x: jax.Array,
    weight: jax.Array,
    styles: jax.Array,
    demodulate: bool = True,
    up: int = 1,
    down: int = 1,
    padding: int | None = None,
    resample_filter=None,
    fused: bool = False,
) -> jax.Array:
    """StyleGAN2's modulated convolution (the reference's `modulated_conv2d`), NHWC.

    Per sample b the kernel is weight[..., i, o] * styles[b, i], and with `demodulate` it is further multiplied by
    d[b, o] = 1 / sqrt(sum_{kh, kw, i} (weight * styles[b])^2 + 1e-8). The non-fused path computes
    conv(x * styles, weight) * d; the fused path a grouped convolution (groups = batch) with the per-sample
    kernels. Both are the same function; on XLA:CPU the non-fused one is much faster.

    Args:
        x: [B, H, W, I] in the computation dtype.
        weight: [kh, kw, I, O] float32 (used as given: no equalised-lr gain, demodulation makes it irrelevant).
        styles: [B, I] float32.
        demodulate: normalise each output channel as above.
        up, down: integer resampling factors (with `resample_filter`, default the [1, 3, 3, 1] FIR).
        padding: symmetric padding of the (up-sampled) input; default kh // 2.
        resample_filter: the `setup_filter` filter used when up or down > 1.
        fused: use the grouped per-sample convolution.

    Returns:
        [B, H * up / down, W * up / down, O] in x's dtype. Styles and demodulation coefficients are float32 and
        are cast to x's dtype where they scale activations (non-fused) or the kernels (fused).
    """
    batch, _, _, in_channels = x.shape
    kh, kw, w_in, out_channels = weight.shape
    if w_in != in_channels or styles.shape != (batch, in_channels):
        raise ValueError(
            f"modulated_conv2d: x {x.shape}, weight {weight.shape} and styles {styles.shape} disagree on the input "
            "channels or the batch"
        )
    if padding is None:
        padding = kh // 2
    if resample_filter is None and (up > 1 or down > 1):
        resample_filter = setup_filter(RESAMPLE_TAPS)
    weight = weight.astype(jnp.float32)
    styles = styles.astype(jnp.float32)
    dcoefs = None
    if demodulate:
        # sum_{k, i} (w[k, i, o] s[b, i])^2 as a [B, I] x [I, O] product, without forming the per-sample kernels.
        dcoefs = lax.rsqrt(jnp.square(styles) @ jnp.sum(jnp.square(weight), axis=(0, 1)) + 1e-8)  # [B, O]
    resample = dict(f=resample_filter, up=up, down=down, padding=padding)

    if not fused:
        x = x * styles.astype(x.dtype)[:, None, None, :]
        x = conv2d_resample(x, weight.astype(x.dtype), **resample)
        if demodulate:
            x = x * dcoefs.astype(x.dtype)[:, None, None, :]
        return x

    w = weight[None] * styles[:, None, None, :, None]  # [B, kh, kw, I, O]
    if demodulate:
        w = w * dcoefs[:, None, None, None, :]
    w = w.transpose(1, 2, 3, 0, 4).reshape(kh, kw, in_channels, batch * out_channels)
    height, width = x.shape[1], x.shape[2]
    x = x.transpose(1, 2, 0, 3).reshape(1, height, width, batch * in_channels)
    y = conv2d_resample(x, w.astype(x.dtype), groups=batch, **resample)
    out_h, out_w = y.shape[1], y.shape[2]
    return y.reshape(out_h, out_w, batch, out_channels).transpose(2, 0, 1, 3)


def minibatch_stddev(x: jax.Array, group_size: int | None = 4, num_channels: int = 1) -> jax.Array:
    """The reference's MinibatchStdLayer, NHWC: appends `num_channels` feature maps of group standard deviations.

    The batch splits into G = min(group_size, B) interleaved groups (sample b is in group b mod (B / G), as the
    reference's reshape(G, -1, ...)) and the channels into `num_channels` sets; per group and set: the standard
    deviation over the G samples (sqrt(var + 1e-8)) averaged over pixels and channels, broadcast to every
    pixel of those samples. Computed in float32; returned in x's dtype.

    Raises:
        ValueError: if G does not divide the batch or num_channels does not divide the channels.
    """
    batch, height, width, channels = x.shape
    group = batch if group_size is None else min(group_size, batch)
    if batch % group:
        raise ValueError(
            f"minibatch stddev: the batch of {batch} is not divisible by the group size {group} "
            f"(min(mbstd_group_size={group_size}, batch)); use a batch that is a multiple of it"
        )
    if channels % num_channels:
        raise ValueError(f"minibatch stddev: {num_channels} channel sets do not divide {channels} channels")
    y = x.astype(jnp.float32).reshape(group, batch // group, height, width, num_channels, channels // num_channels)
    y = y - jnp.mean(y, axis=0)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)  # [n, H, W, F, c]
    y = jnp.mean(y, axis=(1, 2, 4))  # [n, F]
    y = jnp.tile(y, (group, 1))[:, None, None, :]
    y = jnp.broadcast_to(y, (batch, height, width, num_channels)).astype(x.dtype)
    return jnp.concatenate([x, y], axis=-1)


class EqualizedDense(nn.Module):
    """Dense layer with equalised learning rate (the reference's FullyConnectedLayer): x [.., I] -> [.., features].

    kernel [I, features] ~ N(0, weight_init^2) / lr_multiplier, applied times lr_multiplier / sqrt(I); bias =
    bias_init (a float, or one value per feature), applied times lr_multiplier; then `bias_act` with `activation`.
    """

    features: int
    activation: str = "linear"
    lr_multiplier: float = 1.0
    bias_init: float | tuple[float, ...] = 0.0
    use_bias: bool = True
    dtype: Any = jnp.float32
    weight_init: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        kernel = self.param(
            "kernel",
            nn.initializers.normal(self.weight_init / self.lr_multiplier),
            (fan_in, self.features),
            jnp.float32,
        )
        w = kernel * (self.lr_multiplier / math.sqrt(fan_in))
        y = jnp.dot(x.astype(self.dtype), w.astype(self.dtype))
        b = None
        if self.use_bias:
            init = self.bias_init

            def bias_init(key, shape, dtype):
                del key
                return jnp.broadcast_to(jnp.asarray(init, dtype), shape)

            b = self.param("bias", bias_init, (self.features,), jnp.float32)
            b = b * self.lr_multiplier
        return bias_act(y, b, self.activation)


class EqualizedConv2d(nn.Module):
    """Convolution with equalised learning rate and optional FIR resampling (the reference's Conv2dLayer).

    kernel [k, k, I, features] ~ N(0, 1) / lr_multiplier, applied times lr_multiplier / sqrt(I k^2), "same"
    padding, through `conv2d_resample`; then bias (times lr_multiplier) and `bias_act` with gain act_gain * gain
    and clamp conv_clamp * gain.
    """

    features: int
    kernel_size: int = 3
    activation: str = "linear"
    use_bias: bool = True
    up: int = 1
    down: int = 1
    lr_multiplier: float = 1.0
    conv_clamp: float | None = None
    resample_taps: Sequence[int] = RESAMPLE_TAPS
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, gain: float = 1.0) -> jax.Array:
        """x: [B, H, W, I] -> [B, H * up / down, W * up / down, features] in `dtype`."""
        k, fan_in = self.kernel_size, x.shape[-1] * self.kernel_size**2
        shape = (k, k, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.normal(1.0 / self.lr_multiplier), shape, jnp.float32)
        w = (kernel * (self.lr_multiplier / math.sqrt(fan_in))).astype(self.dtype)
        f = setup_filter(self.resample_taps)
        y = conv2d_resample(x.astype(self.dtype), w, f, up=self.up, down=self.down, padding=k // 2)
        b = None
        if self.use_bias:
            b = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32) * self.lr_multiplier
        act_gain = (LRELU_GAIN if self.activation == "lrelu" else 1.0) * gain
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(y, b, self.activation, gain=act_gain, clamp=clamp)


class MappingNetwork(nn.Module):
    """z [B, z_dim] -> w [B, w_dim]: normalize_2nd_moment then `num_layers` lrelu `EqualizedDense` layers fc{i}.

    Always float32 (a few [B, 512] matmuls; w feeds every style, the w_avg tracking and truncation).
    """

    z_dim: int = 512
    w_dim: int = 512
    num_layers: int = 8
    lr_multiplier: float = 0.01

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"MappingNetwork expects z of shape [B, {self.z_dim}], got {z.shape}")
        x = normalize_2nd_moment(z.astype(jnp.float32))
        for i in range(self.num_layers):
            x = EqualizedDense(self.w_dim, "lrelu", lr_multiplier=self.lr_multiplier, name=f"fc{i}")(x)
        return x


def _check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"unknown noise_mode {noise_mode!r}; choose one of {', '.join(NOISE_MODES)}")


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x up-sampling), noise, bias, lrelu: the reference's SynthesisLayer.

    Params: affine (w -> styles, bias_init 1), kernel [k, k, I, features] ~ N(0, 1), noise_strength (scalar, 0),
    bias [features] (0). Variables: "noise_const" / noise_const [r, r] (r the output resolution), see the module
    docstring.
    """

    features: int
    up: int = 1
    kernel_size: int = 3
    use_noise: bool = True
    conv_clamp: float | None = None
    fused_modconv: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, noise_mode: str = "random", gain: float = 1.0) -> jax.Array:
        """x: [B, r / up, r / up, I], w: [B, w_dim] -> [B, r, r, features] in `dtype`."""
        _check_noise_mode(noise_mode)
        batch, in_channels = x.shape[0], x.shape[-1]
        resolution = x.shape[1] * self.up
        styles = EqualizedDense(in_channels, bias_init=1.0, name="affine")(w.astype(jnp.float32))
        k = self.kernel_size
        weight = self.param("kernel", nn.initializers.normal(1.0), (k, k, in_channels, self.features), jnp.float32)
        x = modulated_conv2d(x.astype(self.dtype), weight, styles, up=self.up, fused=self.fused_modconv)

        if self.use_noise:
            strength = self.param("noise_strength", nn.initializers.zeros, (), jnp.float32)
            noise = None
            if noise_mode == "const" or self.is_initializing():
                buffer = self.variable(
                    "noise_const",
                    "noise_const",
                    lambda: jax.random.normal(self.make_rng("params"), (resolution, resolution), jnp.float32),
                )
                if noise_mode == "const":
                    noise = buffer.value[None, :, :, None]
            if noise_mode == "random" and (self.has_rng("noise") or not self.is_initializing()):
                noise = jax.random.normal(self.make_rng("noise"), (batch, resolution, resolution, 1), jnp.float32)
            if noise is not None:
                x = x + (noise * strength).astype(x.dtype)

        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, bias, "lrelu", gain=LRELU_GAIN * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution without demodulation, bias, optional clamp: the reference's ToRGBLayer.

    Styles are affine(w) / sqrt(I) (the equalised-lr gain, applied to the styles as the reference does).
    """

    features: int = 3
    conv_clamp: float | None = None
    fused_modconv: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        """x: [B, r, r, I], w: [B, w_dim] -> [B, r, r, features] in `dtype`."""
        in_channels = x.shape[-1]
        styles = EqualizedDense(in_channels, bias_init=1.0, name="affine")(w.astype(jnp.float32))
        styles = styles * (1.0 / math.sqrt(in_channels))
        weight = self.param("kernel", nn.initializers.normal(1.0), (1, 1, in_channels, self.features), jnp.float32)
        x = modulated_conv2d(x.astype(self.dtype), weight, styles, demodulate=False, fused=self.fused_modconv)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return bias_act(x, bias, "linear", clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip-architecture synthesis network (the reference's SynthesisBlock, "skip").

    The first block (`first`, 4x4) starts from a learned constant [4, 4, features] ~ N(0, 1) and has one
    convolution (conv1); the others up-sample with conv0 then apply conv1. Every block adds its toRGB output to
    the FIR-up-sampled image from below. ws holds the block's num_conv + 1 w vectors.
    """

    features: int
    first: bool = False
    img_channels: int = 3
    conv_clamp: float | None = None
    fused_modconv: bool = False
    dtype: Any = jnp.float32

    @property
    def num_conv(self) -> int:
        return 1 if self.first else 2

    @nn.compact
    def __call__(self, x, img, ws: jax.Array, noise_mode: str = "random"):
        """(x [B, r/2, r/2, C] or None, img [B, r/2, r/2, 3] float32 or None, ws [B, num_conv + 1, w_dim])
        -> (x [B, r, r, features] in `dtype`, img [B, r, r, img_channels] float32)."""
        if ws.shape[1] != self.num_conv + 1:
            raise ValueError(f"SynthesisBlock expects {self.num_conv + 1} w vectors, got ws of shape {ws.shape}")
        layer = dict(conv_clamp=self.conv_clamp, fused_modconv=self.fused_modconv, dtype=self.dtype)
        if self.first:
            const = self.param("const", nn.initializers.normal(1.0), (4, 4, self.features), jnp.float32)
            x = jnp.broadcast_to(const.astype(self.dtype), (ws.shape[0], 4, 4, self.features))
            x = SynthesisLayer(self.features, **layer, name="conv1")(x, ws[:, 0], noise_mode)
        else:
            x = SynthesisLayer(self.features, up=2, **layer, name="conv0")(x, ws[:, 0], noise_mode)
            x = SynthesisLayer(self.features, **layer, name="conv1")(x, ws[:, 1], noise_mode)
        y = ToRGBLayer(
            self.img_channels, self.conv_clamp, fused_modconv=self.fused_modconv, dtype=self.dtype, name="torgb"
        )(x, ws[:, self.num_conv])
        y = y.astype(jnp.float32)
        if img is not None:
            img = upsample2d(img.astype(jnp.float32), setup_filter(RESAMPLE_TAPS))
        return x, y if img is None else img + y


class SynthesisNetwork(nn.Module):
    """ws [B, num_ws, w_dim] -> images [B, R, R, img_channels] float32: blocks b4, b8, ..., bR ("skip")."""

    w_dim: int = 512
    img_resolution: int = 256
    img_channels: int = 3
    channel_base: int = 32768
    channel_max: int = 512
    conv_clamp: float | None = None
    fused_modconv: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ws: jax.Array, noise_mode: str = "random") -> jax.Array:
        """ws: [B, num_ws(R), w_dim]; noise_mode: "random" (needs the "noise" rng), "const" or "none"."""
        check_resolution(self.img_resolution)
        _check_noise_mode(noise_mode)
        expected = num_ws(self.img_resolution)
        if ws.ndim != 3 or ws.shape[1:] != (expected, self.w_dim):
            raise ValueError(f"SynthesisNetwork expects ws of shape [B, {expected}, {self.w_dim}], got {ws.shape}")
        ws = ws.astype(jnp.float32)
        x = img = None
        w_index = 0
        for log2 in range(2, int(math.log2(self.img_resolution)) + 1):
            res = 2**log2
            block = SynthesisBlock(
                channels_at(res, self.channel_base, self.channel_max),
                first=res == 4,
                img_channels=self.img_channels,
                conv_clamp=self.conv_clamp,
                fused_modconv=self.fused_modconv,
                dtype=self.dtype,
                name=f"b{res}",
            )
            count = block.num_conv
            x, img = block(x, img, ws[:, w_index : w_index + count + 1], noise_mode)
            w_index += count
        return img


class Generator(nn.Module):
    """StyleGAN2 generator: submodules `mapping` (`MappingNetwork`) and `synthesis` (`SynthesisNetwork`).

    Methods: `map(z)` -> w [B, w_dim]; `synthesize(ws, noise_mode)` -> images; `__call__(z, noise_mode)` =
    synthesize(map(z) broadcast to num_ws). Call them with `generator.apply(variables, z, method=Generator.map)`;
    variables are {"params", "noise_const"} from `init` (which needs only the "params" rng).
    """

    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 256
    channel_base: int = 32768
    channel_max: int = 512
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    dtype: Any = jnp.float32  # Synthesis computation dtype (e.g. jnp.bfloat16); params always float32.
    img_channels: int = 3
    conv_clamp: float | None = None
    fused_modconv: bool = False

    @property
    def num_ws(self) -> int:
        return num_ws(self.img_resolution)

    def setup(self):
        check_resolution(self.img_resolution)
        self.mapping = MappingNetwork(self.z_dim, self.w_dim, self.mapping_layers, self.mapping_lr_multiplier)
        self.synthesis = SynthesisNetwork(
            self.w_dim,
            self.img_resolution,
            self.img_channels,
            self.channel_base,
            self.channel_max,
            conv_clamp=self.conv_clamp,
            fused_modconv=self.fused_modconv,
            dtype=self.dtype,
        )

    def map(self, z: jax.Array) -> jax.Array:
        """z [B, z_dim] -> w [B, w_dim] float32."""
        return self.mapping(z)

    def synthesize(self, ws: jax.Array, noise_mode: str = "random") -> jax.Array:
        """ws [B, num_ws, w_dim] -> images [B, R, R, img_channels] float32."""
        return self.synthesis(ws, noise_mode)

    def __call__(self, z: jax.Array, noise_mode: str = "random") -> jax.Array:
        """z [B, z_dim] -> images [B, R, R, img_channels] float32, one w for every layer."""
        w = self.map(z)
        ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], self.num_ws, w.shape[1]))
        return self.synthesize(ws, noise_mode)


class DiscriminatorBlock(nn.Module):
    """One resolution of the resnet discriminator: (fromrgb if `first`), skip 1x1 down, conv0 3x3, conv1 3x3 down;
    skip(x) * sqrt(0.5) + conv1(conv0(x)) * sqrt(0.5)."""

    tmp_channels: int
    out_channels: int
    first: bool = False
    conv_clamp: float | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, r, r, C] (the image when `first`) -> [B, r/2, r/2, out_channels] in `dtype`."""
        conv = dict(conv_clamp=self.conv_clamp, dtype=self.dtype)
        if self.first:
            x = EqualizedConv2d(self.tmp_channels, 1, "lrelu", **conv, name="fromrgb")(x)
        half = math.sqrt(0.5)
        y = EqualizedConv2d(self.out_channels, 1, use_bias=False, down=2, dtype=self.dtype, name="skip")(x, half)
        x = EqualizedConv2d(self.tmp_channels, 3, "lrelu", **conv, name="conv0")(x)
        x = EqualizedConv2d(self.out_channels, 3, "lrelu", down=2, **conv, name="conv1")(x, half)
        return y + x


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 end of the discriminator, in float32: minibatch stddev, conv 3x3, fc (dense on the NHWC-flattened
    map), out (dense to 1): [B, 4, 4, C] -> logits [B]."""

    channels: int
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    conv_clamp: float | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32)
        if self.mbstd_num_channels > 0:
            x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = EqualizedConv2d(self.channels, 3, "lrelu", conv_clamp=self.conv_clamp, name="conv")(x)
        x = EqualizedDense(self.channels, "lrelu", name="fc")(x.reshape(x.shape[0], -1))
        return EqualizedDense(1, name="out")(x)[:, 0]


class Discriminator(nn.Module):
    """StyleGAN2 resnet discriminator: images [B, R, R, 3] -> logits [B] float32.

    Blocks bR, ..., b8 (`DiscriminatorBlock`, channels min(channel_base // r, channel_max)) and the epilogue b4.
    The batch must be divisible by min(mbstd_group_size, B).
    """

    img_resolution: int = 256
    channel_base: int = 32768
    channel_max: int = 512
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    dtype: Any = jnp.float32  # Computation dtype above 4x4 (e.g. jnp.bfloat16); params always float32.
    conv_clamp: float | None = None

    @nn.compact
    def __call__(self, img: jax.Array) -> jax.Array:
        check_resolution(self.img_resolution)
        if img.ndim != 4 or img.shape[1:3] != (self.img_resolution, self.img_resolution):
            raise ValueError(
                f"Discriminator expects images [B, {self.img_resolution}, {self.img_resolution}, C], got {img.shape}"
            )
        x = img.astype(self.dtype)
        for log2 in range(int(math.log2(self.img_resolution)), 2, -1):
            res = 2**log2
            x = DiscriminatorBlock(
                channels_at(res, self.channel_base, self.channel_max),
                channels_at(res // 2, self.channel_base, self.channel_max),
                first=res == self.img_resolution,
                conv_clamp=self.conv_clamp,
                dtype=self.dtype,
                name=f"b{res}",
            )(x)
        return DiscriminatorEpilogue(
            channels_at(4, self.channel_base, self.channel_max),
            self.mbstd_group_size,
            self.mbstd_num_channels,
            self.conv_clamp,
            name="b4",
        )(x)
