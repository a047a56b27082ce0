"""Shared building blocks: up-sampling layers chosen by name, the computation dtypes by name.

Mixed precision (`model.dtype`): every network takes a computation `dtype` for its convolutions, dense layers
and activations; parameters, normalisation statistics and the outputs the losses see stay float32.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from animejax.errors import ConfigError

UPSAMPLE_MODES = ("subpixel", "transpose", "nearest")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_NHWC = ("NHWC", "HWIO", "NHWC")


def compute_dtype(name: str) -> Any:
    """The jnp dtype of `model.dtype` ("float32" or "bfloat16")."""
    if name not in DTYPES:
        raise ConfigError(f"Unknown model.dtype {name!r}; choose one of {', '.join(DTYPES)}.")
    return DTYPES[name]


def depth_to_space(x: jax.Array, factor: int) -> jax.Array:
    """[B, H, W, C*f*f] -> [B, H*f, W*f, C], with torch.nn.PixelShuffle's channel order."""
    batch, height, width, channels = x.shape
    out_channels = channels // (factor * factor)
    x = x.reshape(batch, height, width, out_channels, factor, factor)
    x = x.transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(batch, height * factor, width * factor, out_channels)


def space_to_depth(x: jax.Array, factor: int) -> jax.Array:
    """[B, H*f, W*f, C] -> [B, H, W, C*f*f], the inverse of `depth_to_space` (torch.nn.PixelUnshuffle's order)."""
    batch, height, width, channels = x.shape
    if height % factor or width % factor:
        raise ValueError(f"space_to_depth: height and width {height}x{width} must be multiples of {factor}")
    x = x.reshape(batch, height // factor, factor, width // factor, factor, channels)
    x = x.transpose(0, 1, 3, 5, 2, 4)
    return x.reshape(batch, height // factor, width // factor, channels * factor * factor)


def nearest_upsample_2x(x: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, 2H, 2W, C], each pixel repeated 2x2.

    The same values as `jax.image.resize(..., "nearest")`, written as a broadcast whose gradient XLA:CPU runs
    about 5x faster.
    """
    batch, height, width, channels = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (batch, height, 2, width, 2, channels))
    return x.reshape(batch, 2 * height, 2 * width, channels)


def transposed_conv_implementation() -> str:
    """How `PhaseConvTranspose` computes on the default backend: "phases" on the CPU, "native" elsewhere.

    XLA:CPU runs the weight gradient of an lhs-dilated convolution as a naive loop nest (10x slower than torch
    for the DCGAN at 64 px; BENCHMARKS.md, "CPU parity"); the four phase convolutions have ordinary gradients.
    GPUs and TPUs keep XLA's native transposed convolution until a measurement says otherwise
    (`benchmarks/gpu_suite.py` times both).
    """
    return "phases" if jax.default_backend() == "cpu" else "native"


class PhaseConvTranspose(nn.Module):
    """`nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))` (torch's
    ConvTranspose2d(4, stride=2, padding=1) without the kernel flip), computed as four 2x2 convolutions.

    Same parameters (names, shapes, initialisers) and the same sums: output pixel (2m + a, 2n + b) only sees
    the kernel taps (2s + a, 2r + b), s, r in {0, 1}, so output phase (a, b) is a 2x2 correlation of the input
    padded by (1 - a, a) rows and (1 - b, b) columns with `kernel[a::2, b::2]`; the phases are then interleaved.
    `implementation` "native" runs `nn.ConvTranspose`'s own lhs-dilated convolution instead; "auto" picks by
    backend (`transposed_conv_implementation`).
    """

    features: int
    dtype: Any = jnp.float32
    implementation: str = "auto"  # auto | phases | native

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (4, 4, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        x, kernel, bias = (v.astype(self.dtype) for v in (x, kernel, bias))
        implementation = self.implementation
        if implementation == "auto":
            implementation = transposed_conv_implementation()
        if implementation == "native":
            y = jax.lax.conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)), dimension_numbers=_NHWC)
            return y + bias
        if implementation != "phases":
            raise ValueError(f"PhaseConvTranspose: unknown implementation {implementation!r} (auto, phases, native)")
        batch, height, width, _ = x.shape
        phases = [
            jax.lax.conv_general_dilated(
                x, kernel[a::2, b::2], (1, 1), ((1 - a, a), (1 - b, b)), dimension_numbers=_NHWC
            )
            for a in (0, 1)
            for b in (0, 1)
        ]
        y = jnp.stack(phases, axis=-1).reshape(batch, height, width, self.features, 2, 2)
        return y.transpose(0, 1, 4, 2, 5, 3).reshape(batch, 2 * height, 2 * width, self.features) + bias


def strided_conv_implementation() -> str:
    """How `DownConv4x4` computes on the default backend: "space_to_depth" on the CPU, "native" elsewhere.

    XLA:CPU runs some stride-2 4x4 convolutions' gradients 1.5-2.5x slower than the same sums as a stride-1 2x2
    convolution of the space-to-depth input (BENCHMARKS.md, "Stride-2 convolutions as space-to-depth"). GPUs and
    TPUs keep XLA's native strided convolution.
    """
    return "space_to_depth" if jax.default_backend() == "cpu" else "native"


class DownConv4x4(nn.Module):
    """`nn.Conv(features, (4, 4), strides=(2, 2), padding=1)`, the DCGAN discriminator's and the encoders'
    down-sampling convolution, computed as a 2x2 stride-1 convolution of the padded input rearranged
    space-to-depth (for even sizes).

    Same parameters (names, shapes, initialisers) and sums: output (i, j) sees padded input rows 2i + 2s + a,
    s, a in {0, 1}, which is row i + s, sub-row a of the space-to-depth input, so the 2x2 kernel at (s, r) holds
    `kernel[2s + a, 2r + b]` for every (a, b). `implementation` "native" runs nn.Conv's strided convolution;
    "auto" picks by backend (`strided_conv_implementation`).
    """

    features: int
    use_bias: bool = True
    dtype: Any = jnp.float32
    implementation: str = "auto"  # auto | space_to_depth | native

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_channels = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (4, 4, in_channels, self.features))
        x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
        implementation = self.implementation
        if implementation == "auto":
            implementation = strided_conv_implementation()
        if implementation not in ("space_to_depth", "native"):
            raise ValueError(f"DownConv4x4: unknown implementation {implementation!r} (auto, space_to_depth, native)")
        if implementation == "native" or x.shape[1] % 2 or x.shape[2] % 2:
            y = jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_NHWC)
        else:
            stacked = space_to_depth(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), 2)  # Channels (c, a, b).
            # [s, a, r, b, c, o] -> [s, r, (c, a, b), o], matching the stacked channels.
            kernel = kernel.reshape(2, 2, 2, 2, in_channels, self.features).transpose(0, 2, 4, 1, 3, 5)
            kernel = kernel.reshape(2, 2, 4 * in_channels, self.features)
            y = jax.lax.conv_general_dilated(stacked, kernel, (1, 1), "VALID", dimension_numbers=_NHWC)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,)).astype(self.dtype)
        return y


class Upsample2x(nn.Module):
    """Doubles height and width and maps to `features` channels.

    Modes: "subpixel" (3x3 conv to 4x channels then depth-to-space; fast on
    every backend), "transpose" (4x4 stride-2 transposed conv, as DCGAN;
    `PhaseConvTranspose`, whose parameters are `nn.ConvTranspose`'s) and
    "nearest" (nearest resize then 3x3 conv).
    """

    features: int
    mode: str = "subpixel"
    dtype: Any = jnp.float32  # Computation dtype; params are float32.

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.mode == "subpixel":
            return depth_to_space(nn.Conv(4 * self.features, (3, 3), padding=1, dtype=self.dtype)(x), 2)
        if self.mode == "transpose":
            # The name keeps the parameter paths of the nn.ConvTranspose this layer replaced (checkpoints load).
            return PhaseConvTranspose(self.features, self.dtype, name="ConvTranspose_0")(x)
        if self.mode == "nearest":
            return nn.Conv(self.features, (3, 3), padding=1, dtype=self.dtype)(nearest_upsample_2x(x))
        raise ConfigError(f"Unknown upsample mode {self.mode!r}; choose one of {', '.join(UPSAMPLE_MODES)}.")


def leaky_relu(x: jax.Array) -> jax.Array:
    """LeakyReLU with slope 0.2, the GAN and autoencoder default."""
    return jnp.where(x >= 0, x, 0.2 * x)
