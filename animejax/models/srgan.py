"""SRGAN's generator (SRResNet) and discriminator (Ledig et al. 2017), after goldhuang/leftthomas SRGAN-PyTorch.

SRResNet: low-res images [B, h, w, 3] -> a 9x9 convolution to C channels + PReLU -> `num_blocks` residual
blocks (3x3 conv, batch norm, PReLU, 3x3 conv, batch norm, + the block's input) -> 3x3 conv + batch norm,
plus the first PReLU's output (the global skip) -> log2(scale) up-sampling stages (3x3 conv to 4C channels,
depth-to-space by 2 with torch.nn.PixelShuffle's channel order, PReLU) -> a 9x9 convolution to RGB -> tanh.
Every PReLU has one learnable slope (torch.nn.PReLU()'s default), initialised to 0.25. The network is fully
convolutional: any input size, output [B, h*scale, w*scale, 3] in (-1, 1).

Discriminator: images [B, H, W, 3] (any size; 16 and up reach 1x1 after the four stride-2 levels) -> a 3x3
conv to C + LeakyReLU(0.2) -> seven 3x3 conv + batch norm + LeakyReLU blocks with (channels, stride) =
(C, 2), (2C, 1), (2C, 2), (4C, 1), (4C, 2), (8C, 1), (8C, 2) -> global average pooling -> 1x1 conv to 16C +
LeakyReLU -> 1x1 conv to one logit [B] (the PyTorch versions apply a sigmoid; the losses here take logits).
The 3x3 convolutions pad one pixel on each side, so the stride-2 ones sample the same positions as PyTorch.

Every convolution has a bias (torch's default). Batch norm is PyTorch's: momentum 0.1 (Flax momentum 0.9),
epsilon 1e-5, float32 statistics (Flax's running variance averages the biased batch variance, PyTorch's the
unbiased one). tests/reference/torch_srgan.py is a PyTorch copy used for parity tests and benchmarks.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from animejax.errors import ConfigError
from animejax.models.dcgan import normalization
from animejax.models.layers import depth_to_space, leaky_relu

# (channel multiplier, stride) of the discriminator's conv + batch norm blocks.
DISCRIMINATOR_BLOCKS = ((1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2))
PADDING_1 = ((1, 1), (1, 1))  # Explicit symmetric padding: PyTorch's padding=1, also for stride 2.


def num_upsampling_stages(scale: int) -> int:
    """log2(scale): the number of 2x sub-pixel stages; `scale` must be a power of two >= 2."""
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 2 or scale & (scale - 1):
        raise ConfigError(f"SRResNet scale must be a power of two >= 2 (4 or 8 in practice), got {scale!r}.")
    return scale.bit_length() - 1


class PReLU(nn.Module):
    """max(x, 0) + alpha * min(x, 0) with one learnable float32 slope `alpha` (torch.nn.PReLU())."""

    init_slope: float = 0.25
    dtype: Any = jnp.float32  # Computation dtype; the slope is stored as float32.

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        alpha = self.param("alpha", nn.initializers.constant(self.init_slope), (), jnp.float32)
        x = x.astype(self.dtype)
        return jnp.where(x >= 0, x, alpha.astype(self.dtype) * x)


class ResidualBlock(nn.Module):
    """x + bn2(conv2(prelu(bn1(conv1(x))))), 3x3 convolutions keeping `features` channels."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        h = nn.Conv(self.features, (3, 3), padding=1, dtype=self.dtype, name="conv1")(x)
        h = normalization("batch", train, name="bn1", dtype=self.dtype)(h)
        h = PReLU(dtype=self.dtype, name="prelu")(h)
        h = nn.Conv(self.features, (3, 3), padding=1, dtype=self.dtype, name="conv2")(h)
        h = normalization("batch", train, name="bn2", dtype=self.dtype)(h)
        return x + h


class UpsampleBlock(nn.Module):
    """2x sub-pixel up-sampling: 3x3 conv to 4 * `features` channels, depth-to-space by 2, PReLU."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(4 * self.features, (3, 3), padding=1, dtype=self.dtype, name="conv")(x)
        return PReLU(dtype=self.dtype, name="prelu")(depth_to_space(x, 2))


class SRResNet(nn.Module):
    """SRGAN generator: low-res [B, h, w, 3] in [-1, 1] -> [B, h*scale, w*scale, 3] float32 in (-1, 1)."""

    scale: int = 4  # A power of two >= 2.
    channels: int = 64
    num_blocks: int = 16
    dtype: Any = jnp.float32  # Computation dtype; params, norm statistics and the output are float32.

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        stages = num_upsampling_stages(self.scale)
        x = nn.Conv(self.channels, (9, 9), padding=4, dtype=self.dtype, name="conv_in")(x.astype(self.dtype))
        skip = PReLU(dtype=self.dtype, name="prelu_in")(x)
        h = skip
        for i in range(self.num_blocks):
            h = ResidualBlock(self.channels, self.dtype, name=f"block_{i}")(h, train)
        h = nn.Conv(self.channels, (3, 3), padding=1, dtype=self.dtype, name="conv_mid")(h)
        h = normalization("batch", train, name="bn_mid", dtype=self.dtype)(h) + skip
        for i in range(stages):
            h = UpsampleBlock(self.channels, self.dtype, name=f"upsample_{i}")(h)
        h = nn.Conv(3, (9, 9), padding=4, dtype=self.dtype, name="conv_out")(h)
        return jnp.tanh(h.astype(jnp.float32))


class DiscriminatorBlock(nn.Module):
    """3x3 conv (padding 1, `strides`) + batch norm + LeakyReLU(0.2)."""

    features: int
    strides: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        strides = (self.strides, self.strides)
        x = nn.Conv(self.features, (3, 3), strides=strides, padding=PADDING_1, dtype=self.dtype, name="conv")(x)
        return leaky_relu(normalization("batch", train, name="bn", dtype=self.dtype)(x))


class Discriminator(nn.Module):
    """SRGAN discriminator: images [B, H, W, 3] -> logits [B] float32."""

    channels: int = 64
    dtype: Any = jnp.float32  # Computation dtype; params, norm statistics and the logits are float32.

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        batch = x.shape[0]
        x = nn.Conv(self.channels, (3, 3), padding=PADDING_1, dtype=self.dtype, name="conv_in")(x.astype(self.dtype))
        x = leaky_relu(x)
        for i, (multiplier, stride) in enumerate(DISCRIMINATOR_BLOCKS):
            x = DiscriminatorBlock(multiplier * self.channels, stride, self.dtype, name=f"block_{i}")(x, train)
        x = x.astype(jnp.float32).mean(axis=(1, 2), keepdims=True).astype(self.dtype)  # Global average pooling.
        x = leaky_relu(nn.Conv(16 * self.channels, (1, 1), dtype=self.dtype, name="conv_hidden")(x))
        x = nn.Conv(1, (1, 1), dtype=self.dtype, name="conv_logit")(x)
        return x.reshape(batch).astype(jnp.float32)
