"""A PyTorch (NCHW) SRGAN generator (SRResNet) and discriminator, and the copy of Flax variables into them.

Written from Ledig et al. 2017 and the goldhuang / leftthomas SRGAN-PyTorch designs, independently of
animejax.models.srgan, with the same submodule names, so `load_flax_variables` pairs tensors by path.
The discriminator returns logits (no sigmoid). Layouts: Flax conv kernels [H, W, I, O] -> torch Conv2d
weights [O, I, H, W]; BatchNorm scale/bias/mean/var -> weight/bias/running_mean/running_var; a PReLU's scalar
`alpha` -> its weight [1]. Used by tests/test_srgan_networks.py for parity and by benchmarks (float32 modules
by default, constructed standalone from their arguments).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ResidualBlock(nn.Module):
    """conv3x3, BN, PReLU, conv3x3, BN, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class UpsampleBlock(nn.Module):
    """conv3x3 to 4x the channels, PixelShuffle(2), PReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4 * channels, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.prelu = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.shuffle(self.conv(x)))


class TorchSRResNet(nn.Module):
    """SRResNet: forward(x [B, 3, h, w]) -> tanh output [B, 3, h*scale, w*scale]."""

    def __init__(self, scale: int = 4, channels: int = 64, num_blocks: int = 16):
        super().__init__()
        stages = int(round(np.log2(scale)))
        if scale < 2 or 2**stages != scale:
            raise ValueError(f"scale must be a power of two >= 2, got {scale}")
        self.num_blocks, self.stages = num_blocks, stages
        self.conv_in = nn.Conv2d(3, channels, 9, padding=4)
        self.prelu_in = nn.PReLU()
        for i in range(num_blocks):
            self.add_module(f"block_{i}", ResidualBlock(channels))
        self.conv_mid = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn_mid = nn.BatchNorm2d(channels)
        for i in range(stages):
            self.add_module(f"upsample_{i}", UpsampleBlock(channels))
        self.conv_out = nn.Conv2d(channels, 3, 9, padding=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.prelu_in(self.conv_in(x))
        h = skip
        for i in range(self.num_blocks):
            h = getattr(self, f"block_{i}")(h)
        h = self.bn_mid(self.conv_mid(h)) + skip
        for i in range(self.stages):
            h = getattr(self, f"upsample_{i}")(h)
        return torch.tanh(self.conv_out(h))


class DiscriminatorBlock(nn.Module):
    """conv3x3 (padding 1, stride), BN, LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class TorchDiscriminator(nn.Module):
    """SRGAN discriminator: forward(x [B, 3, H, W]) -> logits [B]."""

    BLOCKS = ((1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2))  # (channel multiplier, stride).

    def __init__(self, channels: int = 64):
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels, 3, padding=1)
        current = channels
        for i, (multiplier, stride) in enumerate(self.BLOCKS):
            self.add_module(f"block_{i}", DiscriminatorBlock(current, multiplier * channels, stride))
            current = multiplier * channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv_hidden = nn.Conv2d(current, 16 * channels, 1)
        self.conv_logit = nn.Conv2d(16 * channels, 1, 1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv_in(x))
        for i in range(len(self.BLOCKS)):
            h = getattr(self, f"block_{i}")(h)
        h = self.conv_logit(self.act(self.conv_hidden(self.pool(h))))
        return h.view(x.shape[0])


def load_flax_variables(module: nn.Module, variables) -> None:
    """Copies Flax {"params", "batch_stats"} into `module` in place, pairing tensors by path.

    Every torch parameter and BatchNorm running statistic must receive exactly one Flax array (and vice
    versa); shapes are checked. `num_batches_tracked` is left alone (unused with a set momentum).

    Args:
        module: a `TorchSRResNet` or `TorchDiscriminator` (or one of their blocks).
        variables: the matching Flax variables: "params" and, when the module has batch norm, "batch_stats".

    Raises:
        ValueError: on an unpaired tensor or a shape mismatch.
    """
    targets = dict(module.named_parameters())
    targets.update(
        (name, buffer) for name, buffer in module.named_buffers() if name.endswith(("running_mean", "running_var"))
    )
    assigned = set()

    def assign(name: str, value: np.ndarray) -> None:
        if name not in targets:
            raise ValueError(f"Flax variable {name} has no torch counterpart")
        if name in assigned:
            raise ValueError(f"torch tensor {name} assigned twice")
        target = targets[name]
        if tuple(target.shape) != value.shape:
            raise ValueError(f"{name}: torch shape {tuple(target.shape)} vs converted Flax shape {value.shape}")
        with torch.no_grad():
            target.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(target.dtype))
        assigned.add(name)

    renames = {"bias": "bias", "scale": "weight", "mean": "running_mean", "var": "running_var"}

    def walk(tree, prefix: str) -> None:
        for key, value in tree.items():
            if hasattr(value, "items"):
                walk(value, f"{prefix}{key}.")
                continue
            array = np.asarray(value, np.float64)
            if key == "kernel" and array.ndim == 4:
                assign(prefix + "weight", array.transpose(3, 2, 0, 1))
            elif key == "alpha" and array.ndim == 0:
                assign(prefix + "weight", array.reshape(1))
            elif key in renames:
                assign(prefix + renames[key], array)
            else:
                raise ValueError(f"unexpected Flax variable {prefix}{key} with shape {array.shape}")

    walk(variables["params"], "")
    walk(variables.get("batch_stats", {}), "")
    missing = sorted(set(targets) - assigned)
    if missing:
        raise ValueError(f"torch tensors left without a Flax value: {missing}")
