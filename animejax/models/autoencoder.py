"""Convolutional encoder/decoder for the autoencoder and the VAE.

The encoder halves the resolution with 4x4 stride-2 convolutions down to 4x4,
then maps to the latent (the VAE's encoder outputs a mean and a log-variance).
The decoder mirrors it from a 4x4 map, doubling with `Upsample2x`. Channels
start at `base_channels` at full resolution and double each level up to
`max_channels`.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from animejax.models.layers import DownConv4x4, Upsample2x, leaky_relu


def level_channels(image_size: int, base_channels: int, max_channels: int) -> list[int]:
    """Channels after each stride-2 level, from full resolution down to 4x4."""
    levels = int(math.log2(image_size // 4))
    if 4 * 2**levels != image_size:
        raise ValueError(f"image_size must be 4 times a power of two (32, 64, 128, ...), got {image_size}.")
    return [min(base_channels * 2**i, max_channels) for i in range(levels)]


class Encoder(nn.Module):
    """[B, S, S, 3] in [-1, 1] -> [B, out_features]."""

    image_size: int
    out_features: int
    base_channels: int = 32
    max_channels: int = 256
    dtype: Any = jnp.float32  # Computation dtype; params and the output are float32.

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        x = images
        for level, channels in enumerate(level_channels(self.image_size, self.base_channels, self.max_channels)):
            # nn.Conv(channels, (4, 4), strides=(2, 2), padding=1), under the name it had (checkpoints load).
            x = leaky_relu(DownConv4x4(channels, dtype=self.dtype, name=f"Conv_{level}")(x))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.out_features, dtype=self.dtype)(x).astype(jnp.float32)


class Decoder(nn.Module):
    """[B, latent] -> [B, S, S, 3] unbounded outputs (the method maps them to images)."""

    image_size: int
    base_channels: int = 32
    max_channels: int = 256
    upsample: str = "subpixel"
    dtype: Any = jnp.float32  # Computation dtype; params and the output are float32.

    @nn.compact
    def __call__(self, latents: jax.Array) -> jax.Array:
        channels = level_channels(self.image_size, self.base_channels, self.max_channels)[::-1]
        x = nn.Dense(4 * 4 * channels[0], dtype=self.dtype)(latents)
        x = leaky_relu(x.reshape(latents.shape[0], 4, 4, channels[0]))
        for out_channels in channels[1:] + [self.base_channels]:
            x = leaky_relu(Upsample2x(out_channels, self.upsample, self.dtype)(x))
        return nn.Conv(3, (3, 3), padding=1, dtype=self.dtype)(x).astype(jnp.float32)


class AutoEncoder(nn.Module):
    """Autoencoder (variational when `variational`).

    `encode` returns the latent code [B, latent_dim] for the plain autoencoder,
    and (mean, log_variance), each [B, latent_dim], for the VAE.
    """

    image_size: int = 64
    latent_dim: int = 128
    base_channels: int = 32
    max_channels: int = 256
    upsample: str = "subpixel"
    variational: bool = True
    dtype: Any = jnp.float32  # Computation dtype of encoder and decoder; params, codes and outputs are float32.

    def setup(self):
        out_features = 2 * self.latent_dim if self.variational else self.latent_dim
        self.encoder = Encoder(self.image_size, out_features, self.base_channels, self.max_channels, self.dtype)
        self.decoder = Decoder(self.image_size, self.base_channels, self.max_channels, self.upsample, self.dtype)

    def encode(self, images: jax.Array):
        h = self.encoder(images)
        if not self.variational:
            return h
        mean, log_variance = jnp.split(h, 2, axis=-1)
        return mean, log_variance

    def decode(self, latents: jax.Array) -> jax.Array:
        return self.decoder(latents)

    def __call__(self, images: jax.Array):
        """Initialises every parameter; returns the decoding of the (mean) code."""
        code = self.encode(images)
        return self.decode(code[0] if self.variational else code)
