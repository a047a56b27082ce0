"""DCGAN generator and discriminator (Radford et al. 2016), any size 4 * 2^k.

Generator: z [B, latent_dim] -> a 4x4 map (a bias-free projection, the same
map as PyTorch DCGAN's first 4x4 stride-1 transposed convolution on a 1x1
input) -> batch norm + ReLU -> `Upsample2x` levels halving the channels,
each with batch norm + ReLU -> a last `Upsample2x` to 3 channels -> tanh.
`upsample="transpose"` is the paper's 4x4 stride-2 transposed convolution;
`"subpixel"` (3x3 convolution to 4x channels, then depth-to-space) computes
its weight gradient about 10x faster on XLA:CPU (BENCHMARKS.md, "GAN train steps").

Discriminator: 4x4 stride-2 convolutions doubling the channels down to 4x4,
LeakyReLU(0.2), normalization on every level but the first (those convolutions
have no bias under batch norm), then a 4x4 valid convolution to one logit.
Batch norm (`"batch"`) is the paper's choice; a WGAN-GP critic needs
`"layer"` or `"none"`.

For 64 px and base 64 the channels are G: 512@4, 256@8, 128@16, 64@32, 3@64
and D: 64@32, 128@16, 256@8, 512@4, 1@1, as in the PyTorch DCGAN example.
Batch norm uses PyTorch's momentum 0.1 (Flax momentum 0.9) and epsilon 1e-5.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from animejax.errors import ConfigError
from animejax.models.layers import DownConv4x4, Upsample2x, leaky_relu

NORMALIZATIONS = ("batch", "layer", "none")
BN_MOMENTUM = 0.9  # Flax's momentum is PyTorch's 1 - momentum.
NORM_EPSILON = 1e-5


def num_levels(image_size: int) -> int:
    """Number of factor-2 resolution steps between 4x4 and `image_size` (which must be 4 * 2^k, k >= 1)."""
    levels = int(round(math.log2(max(image_size, 1) / 4)))
    if levels < 1 or 4 * 2**levels != image_size:
        raise ConfigError(f"data.image_size must be 4 times a power of two (8, 16, 32, 64, ...), got {image_size}.")
    return levels


def normalization(kind: str, train: bool, name: str | None = None, dtype: Any = jnp.float32):
    """A normalization layer over [B, H, W, C] maps, or the identity for "none".

    Statistics, scale and bias are float32 whatever `dtype` is; the output is cast to `dtype`.

    Args:
      kind: "batch" (batch statistics when training, running averages otherwise),
        "layer" (per example over H, W, C, with a per-channel scale and bias), or "none".
      train: whether batch norm uses (and updates) batch statistics.
      name: the submodule name.
      dtype: the computation dtype of the network around it.
    """
    if kind == "batch":
        layer = nn.BatchNorm(
            use_running_average=not train, momentum=BN_MOMENTUM, epsilon=NORM_EPSILON, dtype=jnp.float32, name=name
        )
    elif kind == "layer":
        layer = nn.LayerNorm(
            epsilon=NORM_EPSILON, reduction_axes=(-3, -2, -1), feature_axes=-1, dtype=jnp.float32, name=name
        )
    elif kind == "none":
        return lambda x: x
    else:
        raise ConfigError(f"Unknown normalization {kind!r}; choose one of {', '.join(NORMALIZATIONS)}.")
    return lambda x: layer(x.astype(jnp.float32)).astype(dtype)


class Generator(nn.Module):
    """DCGAN generator: latents [B, latent_dim] -> images [B, S, S, 3] in (-1, 1)."""

    image_size: int = 64
    latent_dim: int = 100
    base_channels: int = 64  # Channels at S/2 (PyTorch's ngf); doubled at each lower level.
    upsample: str = "transpose"  # transpose | subpixel | nearest (models.layers.Upsample2x).
    dtype: Any = jnp.float32  # Computation dtype; params, norm statistics and the output are float32.

    @nn.compact
    def __call__(self, latents: jax.Array, train: bool = True) -> jax.Array:
        levels = num_levels(self.image_size)
        channels = [self.base_channels * 2 ** (levels - 1 - i) for i in range(levels)]
        x = nn.Dense(4 * 4 * channels[0], use_bias=False, dtype=self.dtype, name="project")(latents)
        x = x.reshape(latents.shape[0], 4, 4, channels[0])
        x = nn.relu(normalization("batch", train, dtype=self.dtype)(x))
        for features in channels[1:]:
            x = Upsample2x(features, self.upsample, self.dtype)(x)
            x = nn.relu(normalization("batch", train, dtype=self.dtype)(x))
        x = Upsample2x(3, self.upsample, self.dtype)(x)
        return jnp.tanh(x.astype(jnp.float32))


class Discriminator(nn.Module):
    """DCGAN discriminator: images [B, S, S, 3] -> logits [B]."""

    image_size: int = 64
    base_channels: int = 64  # Channels at S/2 (PyTorch's ndf); doubled at each lower level.
    normalization: str = "batch"  # batch | layer | none; never on the first level.
    dtype: Any = jnp.float32  # Computation dtype; params, norm statistics and the logits are float32.

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = True) -> jax.Array:
        x = images
        for level in range(num_levels(self.image_size)):
            normalized = level > 0 and self.normalization != "none"
            # A bias before batch norm is cancelled by its mean subtraction: none there, as PyTorch DCGAN.
            use_bias = not (normalized and self.normalization == "batch")
            features = self.base_channels * 2**level
            # nn.Conv(features, (4, 4), strides=(2, 2), padding=1), under the name it had (checkpoints load).
            x = DownConv4x4(features, use_bias=use_bias, dtype=self.dtype, name=f"Conv_{level}")(x)
            if normalized:
                x = normalization(self.normalization, train, dtype=self.dtype)(x)
            x = leaky_relu(x)
        x = nn.Conv(1, (4, 4), padding="VALID", dtype=self.dtype, name="logit")(x)
        return x.reshape(images.shape[0]).astype(jnp.float32)


def dcgan_reinit(params, rng: jax.Array, std: float):
    """The paper's initialisation: kernels ~ N(0, std), norm scales ~ N(1, std), biases 0.

    Args:
      params: a Flax params tree.
      rng: PRNG key.
      std: standard deviation (0.02 in the paper).

    Returns:
      A tree like `params`.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(rng, len(leaves))
    new = []
    for (path, leaf), key in zip(leaves, keys):
        name = str(getattr(path[-1], "key", path[-1]))
        noise = std * jax.random.normal(key, leaf.shape, leaf.dtype)
        if name == "kernel":
            new.append(noise)
        elif name == "scale":
            new.append(1.0 + noise)
        else:
            new.append(jnp.zeros_like(leaf))
    return jax.tree_util.tree_unflatten(treedef, new)
