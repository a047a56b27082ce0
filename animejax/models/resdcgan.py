"""Residual DCGAN ("RESdcgan"): residual up-sampling blocks in G, residual down-sampling blocks in D, and E.

Generator: z -> a 4x4 map -> `levels` up blocks (pre-activation batch norm +
ReLU, `Upsample2x`, batch norm + ReLU, 3x3 conv; shortcut: nearest 2x resize
then 1x1 conv) -> batch norm + ReLU -> 3x3 conv to RGB -> tanh.

Discriminator: `levels` down blocks (LeakyReLU(0.2) + 3x3 conv, twice, then
2x2 average pooling; shortcut: 1x1 conv then pooling; the first block has no
pre-activation) down to 4x4 -> LeakyReLU -> sum over positions -> a dense
logit. Every convolution and the dense layer can be spectrally normalized
(Miyato et al. 2018): flax's `nn.SpectralNorm` keeps its power-iteration
vector `u` and `sigma` in the 'batch_stats' collection, updated when
`train=True` (apply with mutable=['batch_stats']).

Encoder (for the cycle-consistency variant): the discriminator's trunk without
normalization, ending in a dense map to the latent size.

Channels at resolution S / 2^(i+1) are min(base * 2^i, max_channels) in D and E;
G mirrors them.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from animejax.models.dcgan import normalization, num_levels
from animejax.models.layers import Upsample2x, leaky_relu, nearest_upsample_2x


def _channels(image_size: int, base_channels: int, max_channels: int) -> list[int]:
    """D/E channels after each down block, from S/2 down to 4x4."""
    return [min(base_channels * 2**i, max_channels) for i in range(num_levels(image_size))]


def _avg_pool2(x: jax.Array) -> jax.Array:
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class _Linear(nn.Module):
    """A 'SAME' convolution (or a dense layer when `kernel_size` is None), spectrally normalized if asked."""

    features: int
    kernel_size: tuple[int, int] | None
    spectral_norm: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.kernel_size is None:
            layer = nn.Dense(self.features, dtype=self.dtype, name="dense")
        else:
            layer = nn.Conv(self.features, self.kernel_size, padding="SAME", dtype=self.dtype, name="conv")
        if self.spectral_norm:
            # The power iteration and sigma in float32; the layer then computes in `dtype`.
            return nn.SpectralNorm(layer, dtype=jnp.float32)(x, update_stats=train)
        return layer(x)


class ResBlockUp(nn.Module):
    """[B, H, W, C] -> [B, 2H, 2W, features]."""

    features: int
    upsample: str = "nearest"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        h = nn.relu(normalization("batch", train, dtype=self.dtype)(x))
        h = Upsample2x(self.features, self.upsample, self.dtype)(h)
        h = nn.relu(normalization("batch", train, dtype=self.dtype)(h))
        h = nn.Conv(self.features, (3, 3), padding=1, dtype=self.dtype)(h)
        skip = nn.Conv(self.features, (1, 1), dtype=self.dtype, name="shortcut")(nearest_upsample_2x(x))
        return h + skip


class ResBlockDown(nn.Module):
    """[B, H, W, C] -> [B, H/2, W/2, features]."""

    features: int
    first: bool = False  # The first block sees images: no pre-activation.
    normalization: str = "none"
    spectral_norm: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        h = x
        if not self.first:
            h = leaky_relu(normalization(self.normalization, train, dtype=self.dtype)(h))
        h = _Linear(self.features, (3, 3), self.spectral_norm, self.dtype)(h, train)
        h = leaky_relu(normalization(self.normalization, train, dtype=self.dtype)(h))
        h = _Linear(self.features, (3, 3), self.spectral_norm, self.dtype)(h, train)
        skip = _Linear(self.features, (1, 1), self.spectral_norm, self.dtype, name="shortcut")(x, train)
        return _avg_pool2(h) + _avg_pool2(skip)


class Generator(nn.Module):
    """Residual generator: latents [B, latent_dim] -> images [B, S, S, 3] in (-1, 1)."""

    image_size: int = 64
    latent_dim: int = 128
    base_channels: int = 64  # Channels at full resolution; doubled per lower level.
    max_channels: int = 512
    upsample: str = "nearest"  # Main-path up-sampling: transpose | subpixel | nearest.
    dtype: Any = jnp.float32  # Computation dtype; params, norm statistics and the output are float32.

    @nn.compact
    def __call__(self, latents: jax.Array, train: bool = True) -> jax.Array:
        channels = _channels(self.image_size, self.base_channels, self.max_channels)[::-1]
        x = nn.Dense(4 * 4 * channels[0], dtype=self.dtype, name="project")(latents)
        x = x.reshape(latents.shape[0], 4, 4, channels[0])
        for features in channels[1:] + [self.base_channels]:
            x = ResBlockUp(features, self.upsample, self.dtype)(x, train)
        x = nn.relu(normalization("batch", train, dtype=self.dtype)(x))
        x = nn.Conv(3, (3, 3), padding=1, dtype=self.dtype, name="to_rgb")(x)
        return jnp.tanh(x.astype(jnp.float32))


class Discriminator(nn.Module):
    """Residual discriminator: images [B, S, S, 3] -> logits [B]."""

    image_size: int = 64
    base_channels: int = 64
    max_channels: int = 512
    normalization: str = "none"  # batch | layer | none.
    spectral_norm: bool = True
    dtype: Any = jnp.float32  # Computation dtype; params, norm statistics and the logits are float32.

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = True) -> jax.Array:
        x = images
        for i, features in enumerate(_channels(self.image_size, self.base_channels, self.max_channels)):
            x = ResBlockDown(features, i == 0, self.normalization, self.spectral_norm, self.dtype)(x, train)
        x = jnp.sum(leaky_relu(x).astype(jnp.float32), axis=(1, 2))
        logits = _Linear(1, None, self.spectral_norm, self.dtype, name="logit")(x, train)
        return logits.reshape(images.shape[0]).astype(jnp.float32)


class Encoder(nn.Module):
    """Residual encoder for the cycle-consistency loss: images [B, S, S, 3] -> latents [B, latent_dim]."""

    image_size: int = 64
    latent_dim: int = 128
    base_channels: int = 64
    max_channels: int = 512
    dtype: Any = jnp.float32  # Computation dtype; params and the latents are float32.

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = True) -> jax.Array:
        x = images
        for i, features in enumerate(_channels(self.image_size, self.base_channels, self.max_channels)):
            x = ResBlockDown(features, i == 0, dtype=self.dtype)(x, train)
        x = leaky_relu(x).reshape(images.shape[0], -1)
        return nn.Dense(self.latent_dim, dtype=self.dtype, name="latent")(x).astype(jnp.float32)
