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


class Upsample2x(nn.Module):
    """Doubles height and width and maps to `features` channels.

    Modes: "subpixel" (3x3 conv to 4x channels then depth-to-space; fast on
    every backend), "transpose" (4x4 stride-2 transposed conv, as DCGAN; its
    weight gradient is slow on XLA:CPU) and "nearest" (nearest resize then 3x3
    conv).
    """

    features: int
    mode: str = "subpixel"
    dtype: Any = jnp.float32  # Computation dtype; params are float32.

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.mode == "subpixel":
            return depth_to_space(nn.Conv(4 * self.features, (3, 3), padding=1, dtype=self.dtype)(x), 2)
        if self.mode == "transpose":
            # Explicit padding 2 on each side of the dilated input = PyTorch's padding=1.
            padding = ((2, 2), (2, 2))
            return nn.ConvTranspose(self.features, (4, 4), strides=(2, 2), padding=padding, dtype=self.dtype)(x)
        if self.mode == "nearest":
            return nn.Conv(self.features, (3, 3), padding=1, dtype=self.dtype)(nearest_upsample_2x(x))
        raise ConfigError(f"Unknown upsample mode {self.mode!r}; choose one of {', '.join(UPSAMPLE_MODES)}.")


def leaky_relu(x: jax.Array) -> jax.Array:
    """LeakyReLU with slope 0.2, the GAN and autoencoder default."""
    return jnp.where(x >= 0, x, 0.2 * x)
