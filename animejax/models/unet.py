"""The denoising UNet of Ho et al. 2020 (DDPM), as in their released diffusion_tf/models/unet.py.

x [B, H, W, C] and timesteps t [B] -> [B, H, W, out_channels]. The timestep goes through a sinusoidal
embedding of `base_channels` features and an MLP (Dense 4 ch, SiLU, Dense 4 ch) into every residual block.
Going down, each level has `num_res_blocks` ResBlocks (self-attention after each at the resolutions listed)
and a stride-2 convolution except the last; the middle is ResBlock, attention, ResBlock; going up, each
level has `num_res_blocks + 1` ResBlocks, each fed the concatenation of the current map and the matching
down-path activation (popped last-in first-out), then nearest 2x up-sampling and a 3x3 convolution. The end is
GroupNorm, SiLU and a 3x3 convolution. With the defaults (base 128, multipliers (1, 2, 2, 2), attention at
16x16) this is Ho et al.'s CIFAR-10 model, 35.7M parameters at 32 px.

As in Ho et al.'s code: GroupNorm with epsilon 1e-6, the timestep projection in a ResBlock is applied to
SiLU(temb), the stride-2 convolution pads as TensorFlow's "SAME" (nothing before, one pixel after), and with
`zero_init` the last convolution of every ResBlock, the attention output projection and the final
convolution start at zero (so an initialised network outputs 0).

Mixed precision: `dtype` is the computation dtype of every convolution, dense layer and activation; params
are float32. The sinusoidal embedding, GroupNorm (input cast to float32, statistics and affine in float32,
output cast back to `dtype`) and the attention logits and softmax are float32, and the output is cast to
float32.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from animejax.models.layers import nearest_upsample_2x

NORM_EPSILON = 1e-6

# Ho et al.'s default_init: variance scaling with scale 1 over fan_avg, uniform.
kernel_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
zeros_init = nn.initializers.zeros


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal timestep features, Ho et al.'s `get_timestep_embedding`: concat[sin, cos].

    With half = dim // 2 and frequencies w_k = max_period^(-k / (half - 1)), k = 0..half-1, the features are
    [sin(t w_0), ..., sin(t w_{half-1}), cos(t w_0), ..., cos(t w_{half-1})], zero-padded by one for odd dim.

    Args:
        t: [B] timesteps (int or float).
        dim: the number of features, >= 4.
        max_period: 1 / w_{half-1}, the inverse of the lowest frequency.

    Returns:
        [B, dim] float32.

    Raises:
        ValueError: if dim < 4.
    """
    if dim < 4:
        raise ValueError(f"timestep embedding dim must be >= 4, got {dim}")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - 1))
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def group_count(num_groups: int, channels: int) -> int:
    """min(num_groups, channels), checked to divide channels.

    Raises:
        ValueError: if it does not.
    """
    groups = min(num_groups, channels)
    if channels % groups:
        raise ValueError(
            f"GroupNorm needs min(num_groups, channels) to divide channels: {groups} groups for {channels} channels; "
            "choose num_groups (or base_channels and channel_multipliers) so that it does"
        )
    return groups


def group_norm(x: jax.Array, num_groups: int, dtype: Any, name: str) -> jax.Array:
    """GroupNorm over [B, H, W, C] computed in float32 (statistics and affine), returned in `dtype`.

    Call from inside a compact module: the layer (params "scale" and "bias") is a submodule named `name`.

    Raises:
        ValueError: if min(num_groups, C) does not divide C.
    """
    groups = group_count(num_groups, x.shape[-1])
    norm = nn.GroupNorm(num_groups=groups, epsilon=NORM_EPSILON, dtype=jnp.float32, param_dtype=jnp.float32, name=name)
    return norm(x.astype(jnp.float32)).astype(dtype)


def _conv(features: int, kernel: int, dtype: Any, name: str, zero: bool = False, strides: int = 1, padding="SAME"):
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(strides, strides),
        padding=padding,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=zeros_init if zero else kernel_init,
        name=name,
    )


def _dense(features: int, dtype: Any, name: str):
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, kernel_init=kernel_init, name=name)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv3x3, + Dense(SiLU(temb)), GroupNorm, SiLU, dropout, conv3x3; plus a shortcut.

    The shortcut is a 1x1 convolution when the channel count changes, else the identity.
    """

    out_channels: int
    dropout: float = 0.0
    num_groups: int = 32
    dtype: Any = jnp.float32
    zero_init: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array, train: bool) -> jax.Array:
        """x: [B, H, W, C_in], temb: [B, E] -> [B, H, W, out_channels] in `dtype`."""
        h = nn.silu(group_norm(x, self.num_groups, self.dtype, "norm1"))
        h = _conv(self.out_channels, 3, self.dtype, "conv1")(h)
        h = h + _dense(self.out_channels, self.dtype, "temb_proj")(nn.silu(temb))[:, None, None, :]
        h = nn.silu(group_norm(h, self.num_groups, self.dtype, "norm2"))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = _conv(self.out_channels, 3, self.dtype, "conv2", zero=self.zero_init)(h)
        if x.shape[-1] != self.out_channels:
            x = _conv(self.out_channels, 1, self.dtype, "shortcut")(x)
        return x.astype(self.dtype) + h


class AttentionBlock(nn.Module):
    """Self-attention over the H*W positions with a residual: x + proj_out(attention(GroupNorm(x))).

    q, k and v are 1x1 convolutions of C channels split into `num_heads` heads of C / num_heads; the logits
    q.k / sqrt(C / num_heads) and their softmax over positions are float32.
    """

    num_heads: int = 1
    num_groups: int = 32
    dtype: Any = jnp.float32
    zero_init: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, H, W, C] -> [B, H, W, C] in `dtype`."""
        batch, height, width, channels = x.shape
        if channels % self.num_heads:
            raise ValueError(f"attention: num_heads={self.num_heads} must divide the {channels} channels")
        head_dim = channels // self.num_heads
        h = group_norm(x, self.num_groups, self.dtype, "norm")

        def heads(name):  # [B, heads, H*W, head_dim]
            y = _conv(channels, 1, self.dtype, name)(h)
            return y.reshape(batch, height * width, self.num_heads, head_dim).transpose(0, 2, 1, 3)

        q, k, v = heads("q"), heads("k"), heads("v")
        # Batched matmuls rather than einsums: XLA:CPU runs this forward about 2x faster (BENCHMARKS.md,
        # "Diffusion"); float32 logits are requested only when computing in a narrower dtype.
        wide = {} if jnp.dtype(self.dtype) == jnp.float32 else {"preferred_element_type": jnp.float32}
        logits = jnp.matmul(q, k.swapaxes(-1, -2), **wide) / math.sqrt(head_dim)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
        out = jnp.matmul(weights, v).transpose(0, 2, 1, 3).reshape(batch, height, width, channels)
        out = _conv(channels, 1, self.dtype, "proj_out", zero=self.zero_init)(out)
        return x.astype(self.dtype) + out


class Downsample(nn.Module):
    """A 3x3 stride-2 convolution keeping the channels; TensorFlow "SAME" padding (0 before, 1 after)."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, H, W, C] (H, W even) -> [B, H/2, W/2, C]."""
        return _conv(x.shape[-1], 3, self.dtype, "conv", strides=2, padding="SAME")(x)


class Upsample(nn.Module):
    """Nearest-neighbour 2x up-sampling then a 3x3 convolution keeping the channels."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, H, W, C] -> [B, 2H, 2W, C]."""
        return _conv(x.shape[-1], 3, self.dtype, "conv")(nearest_upsample_2x(x))


class UNet(nn.Module):
    """Ho et al.'s DDPM UNet: (x [B, H, W, C], t [B]) -> [B, H, W, out_channels] float32.

    Submodule names: temb_dense0, temb_dense1, conv_in, down_{level}_block_{i}, down_{level}_attn_{i},
    down_{level}_downsample, mid_block1, mid_attn, mid_block2, up_{level}_block_{i}, up_{level}_attn_{i},
    up_{level}_upsample, norm_out, conv_out (level 0 is the full resolution).
    """

    base_channels: int = 128
    channel_multipliers: Sequence[int] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: Sequence[int] = (16,)  # Feature-map heights (pixels) with attention: 16 = the 16x16 level.
    dropout: float = 0.1
    num_groups: int = 32
    num_heads: int = 1
    dtype: Any = jnp.float32  # Computation dtype (e.g. jnp.bfloat16); params are always float32.
    out_channels: int = 3
    zero_init: bool = True  # Zero-initialise the last conv of each block and the output conv, as Ho et al.

    def check(self, height: int, width: int) -> None:
        """Raises ValueError unless height and width are divisible by 2^(levels - 1).

        (A group count that does not divide a layer's channels raises from `group_norm` while tracing.)
        """
        factor = 2 ** (len(self.channel_multipliers) - 1)
        if height % factor or width % factor:
            raise ValueError(
                f"UNet with {len(self.channel_multipliers)} levels needs the image height and width divisible by "
                f"{factor}, got {height}x{width}"
            )

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, train: bool = False) -> jax.Array:
        """Predicts the network's target.

        Args:
            x: [B, H, W, C] float noisy images.
            t: [B] int32 or float timesteps.
            train: enables dropout (needs the "dropout" rng collection).

        Returns:
            [B, H, W, out_channels] float32.
        """
        self.check(x.shape[1], x.shape[2])
        ch = self.base_channels
        block = dict(dropout=self.dropout, num_groups=self.num_groups, dtype=self.dtype, zero_init=self.zero_init)
        attention = dict(
            num_heads=self.num_heads, num_groups=self.num_groups, dtype=self.dtype, zero_init=self.zero_init
        )

        temb = timestep_embedding(t, ch)
        temb = _dense(4 * ch, self.dtype, "temb_dense0")(temb)
        temb = _dense(4 * ch, self.dtype, "temb_dense1")(nn.silu(temb))

        levels = len(self.channel_multipliers)
        hs = [_conv(ch, 3, self.dtype, "conv_in")(x)]
        for level, multiplier in enumerate(self.channel_multipliers):
            for i in range(self.num_res_blocks):
                h = ResBlock(ch * multiplier, **block, name=f"down_{level}_block_{i}")(hs[-1], temb, train)
                if h.shape[1] in self.attention_resolutions:
                    h = AttentionBlock(**attention, name=f"down_{level}_attn_{i}")(h)
                hs.append(h)
            if level != levels - 1:
                hs.append(Downsample(self.dtype, name=f"down_{level}_downsample")(hs[-1]))

        h = hs[-1]
        mid_channels = h.shape[-1]
        h = ResBlock(mid_channels, **block, name="mid_block1")(h, temb, train)
        h = AttentionBlock(**attention, name="mid_attn")(h)
        h = ResBlock(mid_channels, **block, name="mid_block2")(h, temb, train)

        for level in reversed(range(levels)):
            multiplier = self.channel_multipliers[level]
            for i in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, hs.pop().astype(h.dtype)], axis=-1)
                h = ResBlock(ch * multiplier, **block, name=f"up_{level}_block_{i}")(h, temb, train)
                if h.shape[1] in self.attention_resolutions:
                    h = AttentionBlock(**attention, name=f"up_{level}_attn_{i}")(h)
            if level != 0:
                h = Upsample(self.dtype, name=f"up_{level}_upsample")(h)
        assert not hs

        h = nn.silu(group_norm(h, self.num_groups, self.dtype, "norm_out"))
        h = _conv(self.out_channels, 3, self.dtype, "conv_out", zero=self.zero_init)(h)
        return h.astype(jnp.float32)
