"""StyleGAN3 generator (Karras et al. 2021, "Alias-Free Generative Adversarial Networks"), NHWC, in the design of
NVlabs/stylegan3's training/networks_stylegan3.py (configs "stylegan3-t" and "stylegan3-r", no labels).

What is where:
- `SynthesisInput`: Fourier features. Frequencies drawn once at init uniformly from a disc of radius `bandwidth`
  (and random phases), kept in the "buffers" collection as the reference's registered buffers; a learned affine
  layer maps w to a rotation and a translation (initialised to the identity) which, composed with an optional
  user-specified inverse `transform` of the image, moves the features; then sin, the out-of-band damping of the
  reference, and a learned [C, C] linear map.
- `modulated_conv2d`: StyleGAN3's modulated convolution: StyleGAN2's (models/stylegan2.py) after pre-normalising
  the weights per output channel and the styles by their RMS over the batch, and with an input gain.
- `SynthesisLayer`: modulated conv (padding kernel - 1), then `alias_free.filtered_lrelu` (bias, up-sampling,
  leaky ReLU with clamp at 256, down-sampling) with the layer's designed filters; the last layer (ToRGB) is a 1x1
  conv with gain 1 and slope 1. Each layer keeps `magnitude_ema`, the running mean of its input's squared
  magnitude (collection "magnitude_ema"), and divides its input by its square root: `update_emas=True` (the
  training pass whose images D sees) moves it by `magnitude_ema_beta`.
- `SynthesisNetwork`: the input and the num_layers + 1 layers of `alias_free.layer_schedule` (names
  L{index}_{size}_{channels} as the reference's), output times `output_scale` (0.25); num_ws = num_layers + 2.
- `Generator`: StyleGAN2's `MappingNetwork` (2 layers by default, as the reference's StyleGAN3 configs) and the
  synthesis network. StyleGAN3 has no noise inputs; `noise_mode` is accepted for the StyleGAN2 interface and
  ignored.

StyleGAN3-T is the default; StyleGAN3-R is conv_kernel=1, channel_base and channel_max doubled and
use_radial_filters=True (`stylegan3_r_kwargs`). The discriminator is StyleGAN2's (models/stylegan2.py), as in
the reference.

Layouts: Flax [kh, kw, in, out] conv kernels (torch's [out, in, kh, kw] transposed) and [in, out] dense kernels;
the input's linear map is stored as `kernel` [in, out] (the reference's `weight` transposed).

Mixed precision: `dtype` is the computation dtype of the modulated convolutions; styles, demodulation, the
Fourier features and the magnitude statistics are float32, `filtered_lrelu` computes 16-bit inputs in float32,
and images come out float32.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from animejax.models import alias_free
from animejax.models.stylegan2 import EqualizedDense, MappingNetwork
from animejax.models.stylegan2 import modulated_conv2d as stylegan2_modulated_conv2d

CONFIGS = ("t", "r")


def stylegan3_r_kwargs(channel_base: int, channel_max: int) -> dict[str, Any]:
    """The reference's StyleGAN3-R changes to StyleGAN3-T: 1x1 convolutions, doubled channels, radial filters."""
    return dict(conv_kernel=1, channel_base=channel_base * 2, channel_max=channel_max * 2, use_radial_filters=True)


def modulated_conv2d(
    x: jax.Array,
    weight: jax.Array,
    styles: jax.Array,
    demodulate: bool = True,
    padding: int = 0,
    input_gain: jax.Array | float | None = None,
) -> jax.Array:
    """The StyleGAN3 reference's `modulated_conv2d`, NHWC: x [B, H, W, I], weight [kh, kw, I, O], styles [B, I].

    With `demodulate`, the weight is first divided by its RMS over (kh, kw, I) per output channel and the styles by
    their RMS over the whole batch (so the 1e-8 of the demodulation acts at a fixed scale), then modulated and
    demodulated as StyleGAN2's. `input_gain` (a scalar, the layer's 1 / sqrt(magnitude_ema)) scales the input
    channels after demodulation: applied here to x, the same function.
    """
    weight = weight.astype(jnp.float32)
    styles = styles.astype(jnp.float32)
    if demodulate:
        weight = weight * lax.rsqrt(jnp.mean(jnp.square(weight), axis=(0, 1, 2), keepdims=True))
        styles = styles * lax.rsqrt(jnp.mean(jnp.square(styles)))
    if input_gain is not None:
        x = x * jnp.asarray(input_gain, jnp.float32).astype(x.dtype)
    return stylegan2_modulated_conv2d(x, weight, styles, demodulate=demodulate, padding=padding)


def _identity_transforms(batch: int, transform: jax.Array | None) -> jax.Array:
    """The user-specified inverse transform as [B, 3, 3] float32 (identity when None)."""
    if transform is None:
        return jnp.broadcast_to(jnp.eye(3, dtype=jnp.float32), (batch, 3, 3))
    transform = jnp.asarray(transform, jnp.float32)
    if transform.shape == (3, 3):
        return jnp.broadcast_to(transform, (batch, 3, 3))
    if transform.shape != (batch, 3, 3):
        raise ValueError(f"transform must be [3, 3] or [{batch}, 3, 3], got {transform.shape}")
    return transform


def sampling_grid(size: int, sampling_rate: float) -> np.ndarray:
    """[size, size, 2] (x, y) coordinates of pixel centres in units of the image, centred on 0 (as torch's
    affine_grid with theta = diag(size / 2 / sampling_rate) and align_corners=False): ((i + 0.5) - size / 2) / s."""
    coords = (np.arange(size) + 0.5 - size / 2) / sampling_rate
    gx, gy = np.meshgrid(coords, coords)
    return np.stack([gx, gy], axis=-1).astype(np.float32)


class SynthesisInput(nn.Module):
    """w [B, w_dim] -> Fourier features [B, size, size, channels] float32 (the reference's SynthesisInput).

    Params: affine (w -> (r_c, r_s, t_x, t_y), weight 0 and bias (1, 0, 0, 0) at init), kernel [C, C] ~ N(0, 1)
    applied / sqrt(C). Buffers ("buffers" collection): freqs [C, 2], phases [C].
    """

    w_dim: int
    channels: int
    size: int
    sampling_rate: float
    bandwidth: float

    @nn.compact
    def __call__(self, w: jax.Array, transform: jax.Array | None = None) -> jax.Array:
        """transform: the inverse transform of the resulting image, [3, 3] or [B, 3, 3] (None: the identity)."""
        channels = self.channels

        def draw_frequencies():
            freqs = jax.random.normal(self.make_rng("params"), (channels, 2), jnp.float32)
            radii = jnp.sqrt(jnp.sum(jnp.square(freqs), axis=1, keepdims=True))
            return freqs / (radii * jnp.exp(jnp.square(radii)) ** 0.25) * self.bandwidth

        freqs = self.variable("buffers", "freqs", draw_frequencies).value
        phases = self.variable(
            "buffers", "phases", lambda: jax.random.uniform(self.make_rng("params"), (channels,), jnp.float32) - 0.5
        ).value
        w = w.astype(jnp.float32)
        t = EqualizedDense(4, weight_init=0.0, bias_init=(1.0, 0.0, 0.0, 0.0), name="affine")(w)
        t = t / jnp.sqrt(jnp.sum(jnp.square(t[:, :2]), axis=1, keepdims=True))
        cos, sin, tx, ty = t[:, 0], t[:, 1], t[:, 2], t[:, 3]
        zero, one = jnp.zeros_like(cos), jnp.ones_like(cos)
        # Inverse rotation, then inverse translation, w.r.t. the resulting image; then the user's transform.
        m_r = jnp.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], axis=1).reshape(-1, 3, 3)
        m_t = jnp.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], axis=1).reshape(-1, 3, 3)
        transforms = m_r @ m_t @ _identity_transforms(w.shape[0], transform)

        phases = phases[None] + (freqs[None] @ transforms[:, :2, 2:])[..., 0]  # [B, C]
        freqs = freqs[None] @ transforms[:, :2, :2]  # [B, C, 2]
        # Dampen frequencies that the user's transform moved out of band.
        norms = jnp.sqrt(jnp.sum(jnp.square(freqs), axis=2))
        amplitudes = jnp.clip(1 - (norms - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth), 0, 1)

        grid = jnp.asarray(sampling_grid(self.size, self.sampling_rate))  # [H, W, 2]
        x = jnp.einsum("hwk,bck->bhwc", grid, freqs, precision=lax.Precision.HIGHEST) + phases[:, None, None, :]
        x = jnp.sin(x * (2 * np.pi)) * amplitudes[:, None, None, :]
        kernel = self.param("kernel", nn.initializers.normal(1.0), (channels, channels), jnp.float32)
        return jnp.dot(x, kernel / np.sqrt(channels))


class SynthesisLayer(nn.Module):
    """One layer of the alias-free synthesis network (the reference's SynthesisLayer), laid out by `spec`.

    Params: affine (w -> styles, bias 1), kernel [k, k, I, O] ~ N(0, 1), bias [O] (0). Variables:
    "magnitude_ema" / magnitude_ema (scalar, 1 at init).
    """

    spec: alias_free.LayerSpec
    w_dim: int
    conv_clamp: float | None = 256.0
    magnitude_ema_beta: float = 0.999
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, update_emas: bool = False) -> jax.Array:
        """x [B, in_size, in_size, I], w [B, w_dim] -> [B, out_size, out_size, O] in `dtype` (float32 for ToRGB)."""
        spec = self.spec
        expected = (spec.in_size, spec.in_size, spec.in_channels)
        if x.ndim != 4 or x.shape[1:] != expected:
            raise ValueError(f"{spec.name} expects x of shape [B, {', '.join(map(str, expected))}], got {x.shape}")
        magnitude = self.variable("magnitude_ema", "magnitude_ema", lambda: jnp.ones((), jnp.float32))
        if update_emas and not self.is_initializing():
            current = jnp.mean(jnp.square(lax.stop_gradient(x).astype(jnp.float32)))
            magnitude.value = current + self.magnitude_ema_beta * (magnitude.value - current)
        input_gain = lax.rsqrt(magnitude.value)

        k = spec.conv_kernel
        styles = EqualizedDense(spec.in_channels, bias_init=1.0, name="affine")(w.astype(jnp.float32))
        if spec.is_torgb:
            styles = styles * (1 / math.sqrt(spec.in_channels * k * k))
        weight = self.param(
            "kernel", nn.initializers.normal(1.0), (k, k, spec.in_channels, spec.out_channels), jnp.float32
        )
        dtype = jnp.float32 if spec.is_torgb else self.dtype
        x = modulated_conv2d(
            x.astype(dtype), weight, styles, demodulate=not spec.is_torgb, padding=k - 1, input_gain=input_gain
        )
        bias = self.param("bias", nn.initializers.zeros, (spec.out_channels,), jnp.float32)
        up_filter, down_filter = spec.filters(np.float64)
        return alias_free.filtered_lrelu(
            x,
            up_filter,
            down_filter,
            bias,
            up=spec.up_factor,
            down=spec.down_factor,
            padding=spec.padding,
            gain=1.0 if spec.is_torgb else alias_free.SQRT2,
            slope=1.0 if spec.is_torgb else alias_free.LRELU_SLOPE,
            clamp=self.conv_clamp,
        )


class SynthesisNetwork(nn.Module):
    """ws [B, num_layers + 2, w_dim] -> images [B, R, R, img_channels] float32 (the reference's SynthesisNetwork)."""

    w_dim: int = 512
    img_resolution: int = 256
    img_channels: int = 3
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    margin_size: int = 10
    output_scale: float = 0.25
    conv_kernel: int = 3
    filter_size: int = 6
    use_radial_filters: bool = False
    conv_clamp: float | None = 256.0
    magnitude_ema_beta: float = 0.999
    dtype: Any = jnp.float32

    @property
    def num_ws(self) -> int:
        return self.num_layers + 2

    def schedule(self) -> list[alias_free.LayerSpec]:
        """The layers' cutoffs, sampling rates, sizes, channels and filters (`alias_free.layer_schedule`)."""
        return alias_free.layer_schedule(
            self.img_resolution,
            self.img_channels,
            self.channel_base,
            self.channel_max,
            num_layers=self.num_layers,
            num_critical=self.num_critical,
            margin_size=self.margin_size,
            conv_kernel=self.conv_kernel,
            filter_size=self.filter_size,
            use_radial_filters=self.use_radial_filters,
        )

    @nn.compact
    def __call__(self, ws: jax.Array, transform: jax.Array | None = None, update_emas: bool = False) -> jax.Array:
        """ws [B, num_ws, w_dim]; transform: the inverse transform of the image ([3, 3] or [B, 3, 3], None = I);
        update_emas: move the layers' input-magnitude averages (needs the "magnitude_ema" collection mutable)."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"SynthesisNetwork expects ws of shape [B, {self.num_ws}, {self.w_dim}], got {ws.shape}")
        specs = self.schedule()
        first = specs[0]
        ws = ws.astype(jnp.float32)
        x = SynthesisInput(
            self.w_dim, first.in_channels, first.in_size, first.in_sampling_rate, first.in_cutoff, name="input"
        )(ws[:, 0], transform)
        for index, spec in enumerate(specs):
            layer = SynthesisLayer(
                spec, self.w_dim, self.conv_clamp, self.magnitude_ema_beta, dtype=self.dtype, name=spec.name
            )
            x = layer(x, ws[:, index + 1], update_emas)
        return x.astype(jnp.float32) * self.output_scale


class Generator(nn.Module):
    """StyleGAN3 generator: `mapping` (StyleGAN2's `MappingNetwork`) and `synthesis` (`SynthesisNetwork`).

    Methods: `map(z)` -> w [B, w_dim]; `synthesize(ws, noise_mode, transform, update_emas)` -> images;
    `__call__(z)` = synthesize(map(z) broadcast to num_ws). Variables from `init` (the "params" rng only):
    {"params", "buffers", "magnitude_ema"}.
    """

    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 256
    channel_base: int = 32768
    channel_max: int = 512
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    num_layers: int = 14
    num_critical: int = 2
    margin_size: int = 10
    conv_kernel: int = 3
    use_radial_filters: bool = False
    magnitude_ema_beta: float = 0.999
    dtype: Any = jnp.float32  # Computation dtype of the modulated convolutions; params always float32.
    img_channels: int = 3
    conv_clamp: float | None = 256.0

    @property
    def num_ws(self) -> int:
        return self.num_layers + 2

    def setup(self):
        self.mapping = MappingNetwork(self.z_dim, self.w_dim, self.mapping_layers, self.mapping_lr_multiplier)
        self.synthesis = SynthesisNetwork(
            self.w_dim,
            self.img_resolution,
            self.img_channels,
            self.channel_base,
            self.channel_max,
            num_layers=self.num_layers,
            num_critical=self.num_critical,
            margin_size=self.margin_size,
            conv_kernel=self.conv_kernel,
            use_radial_filters=self.use_radial_filters,
            conv_clamp=self.conv_clamp,
            magnitude_ema_beta=self.magnitude_ema_beta,
            dtype=self.dtype,
        )

    def map(self, z: jax.Array) -> jax.Array:
        """z [B, z_dim] -> w [B, w_dim] float32."""
        return self.mapping(z)

    def synthesize(
        self,
        ws: jax.Array,
        noise_mode: str = "const",
        transform: jax.Array | None = None,
        update_emas: bool = False,
    ) -> jax.Array:
        """ws [B, num_ws, w_dim] -> images [B, R, R, img_channels] float32 (`noise_mode` is ignored: no noise)."""
        del noise_mode
        return self.synthesis(ws, transform, update_emas)

    def __call__(self, z: jax.Array, noise_mode: str = "const") -> jax.Array:
        """z [B, z_dim] -> images, one w for every layer."""
        w = self.map(z)
        ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], self.num_ws, w.shape[1]))
        return self.synthesize(ws, noise_mode)
