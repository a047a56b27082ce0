"""A PyTorch (NCHW) copy of animejax.models.unet.UNet, and the copy of Flax params into it.

The same definition as Ho et al. 2020's UNet in diffusion_tf/models/unet.py, written independently of the
Flax code with the same submodule names, so `load_flax_params` can pair layers by path. Layouts: Flax Conv
kernels [H, W, I, O] -> torch Conv2d weights [O, I, H, W]; Flax Dense kernels [I, O] -> torch Linear weights
[O, I]; GroupNorm scale/bias -> weight/bias. Used by tests/test_unet.py for parity; also meant for benchmarks.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NORM_EPSILON = 1e-6


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Ho et al.'s sinusoidal embedding: concat[sin(t w_k), cos(t w_k)], w_k = max_period^(-k / (half - 1))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / (half - 1))
    args = t.to(torch.float64)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def group_norm(channels: int, num_groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(num_groups, channels), channels, eps=NORM_EPSILON)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv3x3, + Linear(SiLU(temb)), GroupNorm, SiLU, dropout, conv3x3; 1x1 shortcut if needed."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, dropout: float, num_groups: int):
        super().__init__()
        self.norm1 = group_norm(in_channels, num_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = group_norm(out_channels, num_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (x if self.shortcut is None else self.shortcut(x)) + h


class AttentionBlock(nn.Module):
    """x + proj_out(multi-head self-attention over H*W positions of GroupNorm(x)), 1x1 conv projections."""

    def __init__(self, channels: int, num_heads: int, num_groups: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm = group_norm(channels, num_groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        d = c // self.num_heads
        h = self.norm(x)
        q, k, v = (proj(h).reshape(b, self.num_heads, d, height * width) for proj in (self.q, self.k, self.v))
        weights = torch.softmax(torch.einsum("bhdq,bhdk->bhqk", q, k) / math.sqrt(d), dim=-1)
        out = torch.einsum("bhqk,bhdk->bhdq", weights, v).reshape(b, c, height, width)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """3x3 stride-2 conv after padding one pixel on the right and bottom (TensorFlow "SAME")."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TorchUNet(nn.Module):
    """Ho et al.'s UNet in NCHW: forward(x [B, C, H, W], t [B]) -> [B, out_channels, H, W].

    `image_size` (the input height) decides which levels get attention, as `attention_resolutions` lists
    feature-map heights.
    """

    def __init__(
        self,
        image_size: int,
        base_channels: int = 128,
        channel_multipliers: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        num_groups: int = 32,
        num_heads: int = 1,
        out_channels: int = 3,
        in_channels: int = 3,
    ):
        super().__init__()
        ch, temb_ch = base_channels, 4 * base_channels
        self.base_channels = ch
        self.num_res_blocks = num_res_blocks
        self.levels = len(channel_multipliers)
        self.attn_levels = set()
        self.temb_dense0 = nn.Linear(ch, temb_ch)
        self.temb_dense1 = nn.Linear(temb_ch, temb_ch)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        skip_channels, current, resolution = [ch], ch, image_size
        for level, multiplier in enumerate(channel_multipliers):
            if resolution in attention_resolutions:
                self.attn_levels.add(level)
            for i in range(num_res_blocks):
                self.add_module(
                    f"down_{level}_block_{i}", ResBlock(current, ch * multiplier, temb_ch, dropout, num_groups)
                )
                current = ch * multiplier
                if level in self.attn_levels:
                    self.add_module(f"down_{level}_attn_{i}", AttentionBlock(current, num_heads, num_groups))
                skip_channels.append(current)
            if level != self.levels - 1:
                self.add_module(f"down_{level}_downsample", Downsample(current))
                skip_channels.append(current)
                resolution //= 2
        self.mid_block1 = ResBlock(current, current, temb_ch, dropout, num_groups)
        self.mid_attn = AttentionBlock(current, num_heads, num_groups)
        self.mid_block2 = ResBlock(current, current, temb_ch, dropout, num_groups)
        for level in reversed(range(self.levels)):
            out = ch * channel_multipliers[level]
            for i in range(num_res_blocks + 1):
                skip = skip_channels.pop()
                self.add_module(f"up_{level}_block_{i}", ResBlock(current + skip, out, temb_ch, dropout, num_groups))
                current = out
                if level in self.attn_levels:
                    self.add_module(f"up_{level}_attn_{i}", AttentionBlock(current, num_heads, num_groups))
            if level != 0:
                self.add_module(f"up_{level}_upsample", Upsample(current))
        self.norm_out = group_norm(current, num_groups)
        self.conv_out = nn.Conv2d(current, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = timestep_embedding(t, self.base_channels).to(x.dtype)
        temb = self.temb_dense1(F.silu(self.temb_dense0(temb)))
        hs = [self.conv_in(x)]
        for level in range(self.levels):
            for i in range(self.num_res_blocks):
                h = getattr(self, f"down_{level}_block_{i}")(hs[-1], temb)
                if level in self.attn_levels:
                    h = getattr(self, f"down_{level}_attn_{i}")(h)
                hs.append(h)
            if level != self.levels - 1:
                hs.append(getattr(self, f"down_{level}_downsample")(hs[-1]))
        h = self.mid_block2(self.mid_attn(self.mid_block1(hs[-1], temb)), temb)
        for level in reversed(range(self.levels)):
            for i in range(self.num_res_blocks + 1):
                h = getattr(self, f"up_{level}_block_{i}")(torch.cat([h, hs.pop()], dim=1), temb)
                if level in self.attn_levels:
                    h = getattr(self, f"up_{level}_attn_{i}")(h)
            if level != 0:
                h = getattr(self, f"up_{level}_upsample")(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def torch_unet_like(flax_unet, image_size: int, in_channels: int = 3) -> TorchUNet:
    """A `TorchUNet` with the configuration of an animejax `UNet` module (float64 by default: call .float())."""
    return TorchUNet(
        image_size,
        base_channels=flax_unet.base_channels,
        channel_multipliers=tuple(flax_unet.channel_multipliers),
        num_res_blocks=flax_unet.num_res_blocks,
        attention_resolutions=tuple(flax_unet.attention_resolutions),
        dropout=flax_unet.dropout,
        num_groups=flax_unet.num_groups,
        num_heads=flax_unet.num_heads,
        out_channels=flax_unet.out_channels,
        in_channels=in_channels,
    ).double()


def load_flax_params(module: nn.Module, params) -> None:
    """Copies a Flax params tree into `module` in place, pairing submodules by name.

    Every torch parameter must receive exactly one Flax array (and vice versa); shapes are checked.

    Args:
        module: a `TorchUNet` (or one of its blocks).
        params: the matching Flax "params" dict (nested dicts of arrays).

    Raises:
        ValueError: on an unpaired parameter or a shape mismatch.
    """
    assigned = set()
    torch_params = dict(module.named_parameters())

    def assign(name: str, value: np.ndarray) -> None:
        if name not in torch_params:
            raise ValueError(f"Flax parameter {name} has no torch counterpart")
        target = torch_params[name]
        if tuple(target.shape) != value.shape:
            raise ValueError(f"{name}: torch shape {tuple(target.shape)} vs converted Flax shape {value.shape}")
        with torch.no_grad():
            target.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(target.dtype))
        assigned.add(name)

    def walk(tree, prefix: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict) or hasattr(value, "items"):
                walk(value, f"{prefix}{key}.")
                continue
            array = np.asarray(value, np.float64)
            if key == "kernel" and array.ndim == 4:
                assign(prefix + "weight", array.transpose(3, 2, 0, 1))
            elif key == "kernel" and array.ndim == 2:
                assign(prefix + "weight", array.T)
            elif key in ("scale", "bias"):
                assign(prefix + ("weight" if key == "scale" else "bias"), array)
            else:
                raise ValueError(f"unexpected Flax parameter {prefix}{key} with shape {array.shape}")

    walk(params, "")
    missing = sorted(set(torch_params) - assigned)
    if missing:
        raise ValueError(f"torch parameters left without a Flax value: {missing}")
