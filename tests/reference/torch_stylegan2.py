"""A PyTorch (NCHW) StyleGAN2 generator and discriminator, and the copy of Flax params into them.

Written from the design of NVlabs/stylegan2-ada-pytorch (training/networks.py, torch_utils/ops: upfirdn2d's
reference implementation, conv2d_resample, bias_act): zero-insertion up-sampling then grouped conv2d for the FIR,
transposed convolutions for up-sampling layers, fused grouped modulated convolutions (or the non-fused path), and
the minibatch stddev of MinibatchStdLayer. Independently of animejax.models.stylegan2, which computes the same
functions differently (polyphase FIR passes, sub-pixel transposed convolutions, NHWC); the submodule names are the
same, so `load_flax_params` pairs parameters by path. Used by tests/test_stylegan2_networks.py for parity.

Layouts: Flax conv kernels [H, W, I, O] -> torch [O, I, H, W]; Flax dense kernels [I, O] -> torch [O, I], except
the discriminator epilogue's `fc`, whose Flax input is the 4x4 map flattened as (h, w, c) and torch's as (c, h, w);
the synthesis constant [4, 4, C] -> [C, 4, 4]; noise_const buffers [r, r] as they are.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TAPS = (1.0, 3.0, 3.0, 1.0)


def fir_filter(taps=TAPS) -> torch.Tensor:
    """outer(taps, taps) / sum, float64 [n, n]."""
    f = torch.tensor(taps, dtype=torch.float64)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1, padding=(0, 0, 0, 0), gain: float = 1.0):
    """Zero-insert `up`x, pad (x0, x1, y0, y1) (negative crops), convolve with f (flipped correlation), keep every
    `down`-th pixel. x: [B, C, H, W]."""
    b, c, h, w = x.shape
    x0, x1, y0, y1 = padding
    x = x.reshape(b, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up)
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0) : x.shape[2] - max(-y1, 0), max(-x0, 0) : x.shape[3] - max(-x1, 0)]
    kernel = (f * gain).flip([0, 1]).to(x.dtype)[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, kernel, groups=c)
    return x[:, :, ::down, ::down]


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    n = f.shape[0]
    p0, p1 = (n + up - 1) // 2, (n - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True):
    """2-D convolution (square weight [O, I / groups, k, k]) with FIR up/down-sampling, the reference's code paths."""
    out_channels, in_per_group, kh, kw = w.shape
    n = 1 if f is None else f.shape[0]
    px0 = px1 = padding
    if up > 1:
        px0, px1 = px0 + (n + up - 1) // 2, px1 + (n - up) // 2
    if down > 1:
        px0, px1 = px0 + (n - down + 1) // 2, px1 + (n - down) // 2
    if not flip_weight:
        w_corr = w.flip([2, 3])
    else:
        w_corr = w
    if kh == 1 and kw == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=(px0, px1, px0, px1))
        return F.conv2d(x, w_corr, groups=groups)
    if kh == 1 and kw == 1 and up > 1 and down == 1:
        x = F.conv2d(x, w_corr, groups=groups)
        return upfirdn2d(x, f, up=up, padding=(px0, px1, px0, px1), gain=up * up)
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=(px0, px1, px0, px1))
        return F.conv2d(x, w_corr, stride=down, groups=groups)
    if up > 1:
        # conv_transpose2d wants [I, O / groups, kh, kw]; it is the adjoint of the correlation conv2d.
        wt = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_channels // groups, kh, kw)
        if flip_weight:
            wt = wt.flip([2, 3])
        x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
        p = (px0 - (kw - 1), px1 - (kw - up))
        x = upfirdn2d(x, f, padding=(p[0], p[1], p[0], p[1]), gain=up * up)
        if down > 1:
            x = upfirdn2d(x, f, down=down)
        return x
    return F.conv2d(x, w_corr, padding=padding, groups=groups)


def bias_act(x, b=None, act="linear", gain=None, clamp=None):
    if b is not None:
        x = x + b.reshape(1, -1, *([1] * (x.ndim - 2)))
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    gain = (math.sqrt(2) if act == "lrelu" else 1.0) if gain is None else gain
    x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def modulated_conv2d(x, weight, styles, demodulate=True, up=1, padding=0, f=None, flip_weight=True, fused=True):
    """x [B, I, H, W], weight [O, I, kh, kw], styles [B, I] -> [B, O, H', W']."""
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    w = weight[None] * styles.reshape(batch, 1, in_channels, 1, 1)  # [B, O, I, kh, kw]
    dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() if demodulate else None
    if not fused:
        x = x * styles.reshape(batch, -1, 1, 1)
        x = conv2d_resample(x, weight, f=f, up=up, padding=padding, flip_weight=flip_weight)
        return x * dcoefs.reshape(batch, -1, 1, 1) if demodulate else x
    if demodulate:
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(x, w, f=f, up=up, padding=padding, groups=batch, flip_weight=flip_weight)
    return x.reshape(batch, -1, *x.shape[2:])


class FullyConnectedLayer(nn.Module):
    def __init__(self, in_features, out_features, bias=True, activation="linear", lr_multiplier=1.0, bias_init=0.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.input_chw = None  # (C, H, W) when the Flax twin reads an NHWC-flattened map.

    def forward(self, x):
        x = x.matmul((self.weight * self.weight_gain).t())
        b = None if self.bias is None else self.bias * self.bias_gain
        return bias_act(x, b, self.activation)


class Conv2dLayer(nn.Module):
    def __init__(
        self, in_channels, out_channels, kernel_size, bias=True, activation="linear", up=1, down=1, clamp=None
    ):
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, clamp
        self.register_buffer("resample_filter", fir_filter())
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x, gain=1.0):
        w = self.weight * self.weight_gain
        x = conv2d_resample(x, w, self.resample_filter, self.up, self.down, self.padding, flip_weight=(self.up == 1))
        act_gain = (math.sqrt(2) if self.activation == "lrelu" else 1.0) * gain
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias, self.activation, act_gain, clamp)


def normalize_2nd_moment(x, eps=1e-8):
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    def __init__(self, z_dim, w_dim, num_layers=8, lr_multiplier=0.01):
        super().__init__()
        self.num_layers = num_layers
        features = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            layer = FullyConnectedLayer(features[i], features[i + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            setattr(self, f"fc{i}", layer)

    def forward(self, z):
        x = normalize_2nd_moment(z)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class SynthesisLayer(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, up=1, clamp=None):
        super().__init__()
        self.up, self.resolution, self.conv_clamp = up, resolution, clamp
        self.register_buffer("resample_filter", fir_filter())
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x, w, noise_mode="const", fused=True, gain=1.0):
        styles = self.affine(w)
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            up=self.up,
            padding=1,
            f=self.resample_filter,
            flip_weight=(self.up == 1),
            fused=fused,
        )
        if noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        elif noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, self.resolution, self.resolution, dtype=x.dtype) * self.noise_strength
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias, "lrelu", math.sqrt(2) * gain, clamp)


class ToRGBLayer(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, clamp=None):
        super().__init__()
        self.conv_clamp = clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x, w, fused=True):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, clamp=None):
        super().__init__()
        self.in_channels = in_channels
        self.register_buffer("resample_filter", fir_filter())
        self.num_conv = 1 if in_channels == 0 else 2
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, clamp=clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, clamp=clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, clamp=clamp)

    def forward(self, x, img, ws, noise_mode="const", fused=True):
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        else:
            x = self.conv0(x, next(w_iter), noise_mode, fused)
        x = self.conv1(x, next(w_iter), noise_mode, fused)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused)
        return x, (y if img is None else img + y)


class SynthesisNetwork(nn.Module):
    def __init__(self, w_dim, img_resolution, img_channels=3, channel_base=32768, channel_max=512, clamp=None):
        super().__init__()
        self.resolutions = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.resolutions}
        self.num_ws = 0
        for r in self.resolutions:
            block = SynthesisBlock(channels[r // 2] if r > 4 else 0, channels[r], w_dim, r, img_channels, clamp)
            self.num_ws += block.num_conv
            setattr(self, f"b{r}", block)
        self.num_ws += 1

    def forward(self, ws, noise_mode="const", fused=True):
        x = img = None
        index = 0
        for r in self.resolutions:
            block = getattr(self, f"b{r}")
            x, img = block(x, img, ws[:, index : index + block.num_conv + 1], noise_mode, fused)
            index += block.num_conv
        return img


class Generator(nn.Module):
    def __init__(self, z_dim, w_dim, img_resolution, channel_base, channel_max, mapping_layers=8, lr_multiplier=0.01):
        super().__init__()
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, 3, channel_base, channel_max)
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, lr_multiplier)
        self.num_ws = self.synthesis.num_ws

    def forward(self, z, noise_mode="const", fused=True):
        w = self.mapping(z)
        return self.synthesis(w.unsqueeze(1).repeat(1, self.num_ws, 1), noise_mode, fused)


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels, tmp_channels, out_channels, img_channels=3):
        super().__init__()
        self.in_channels = in_channels
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu")
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu")
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x):
        if self.in_channels == 0:
            x = self.fromrgb(x)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


def minibatch_stddev(x, group_size=4, num_channels=1):
    n, c, h, w = x.shape
    g = n if group_size is None else min(group_size, n)
    y = x.reshape(g, -1, num_channels, c // num_channels, h, w)
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()
    y = y.mean(dim=[2, 3, 4]).reshape(-1, num_channels, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, channels, mbstd_group_size=4, mbstd_num_channels=1):
        super().__init__()
        self.group_size, self.num_channels = mbstd_group_size, mbstd_num_channels
        self.conv = Conv2dLayer(channels + mbstd_num_channels, channels, 3, activation="lrelu")
        self.fc = FullyConnectedLayer(channels * 16, channels, activation="lrelu")
        self.fc.input_chw = (channels, 4, 4)
        self.out = FullyConnectedLayer(channels, 1)

    def forward(self, x):
        if self.num_channels > 0:
            x = minibatch_stddev(x, self.group_size, self.num_channels)
        return self.out(self.fc(self.conv(x).flatten(1)))


class Discriminator(nn.Module):
    def __init__(self, img_resolution, channel_base=32768, channel_max=512, mbstd_group_size=4, mbstd_num_channels=1):
        super().__init__()
        self.resolutions = [2**i for i in range(int(math.log2(img_resolution)), 2, -1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.resolutions + [4]}
        for r in self.resolutions:
            block = DiscriminatorBlock(channels[r] if r < img_resolution else 0, channels[r], channels[r // 2])
            setattr(self, f"b{r}", block)
        self.b4 = DiscriminatorEpilogue(channels[4], mbstd_group_size, mbstd_num_channels)

    def forward(self, img):
        x = img
        for r in self.resolutions:
            x = getattr(self, f"b{r}")(x)
        return self.b4(x)[:, 0]


def torch_generator_like(flax_generator) -> Generator:
    """A float64 torch `Generator` with an animejax `Generator`'s configuration."""
    g = flax_generator
    return Generator(
        g.z_dim, g.w_dim, g.img_resolution, g.channel_base, g.channel_max, g.mapping_layers, g.mapping_lr_multiplier
    ).double()


def torch_discriminator_like(flax_discriminator) -> Discriminator:
    """A float64 torch `Discriminator` with an animejax `Discriminator`'s configuration."""
    d = flax_discriminator
    return Discriminator(
        d.img_resolution, d.channel_base, d.channel_max, d.mbstd_group_size, d.mbstd_num_channels
    ).double()


def load_flax_params(module: nn.Module, params, noise_const=None) -> None:
    """Copies a Flax params tree (and optionally its "noise_const" collection) into `module` in place, by path.

    Every torch parameter must receive exactly one Flax array (and vice versa); shapes are checked. With
    `noise_const`, every torch noise_const buffer must receive one too.

    Args:
        module: a torch network of this file (or a submodule of one) whose submodule names match the Flax tree.
        params: the matching Flax "params" dict.
        noise_const: the matching Flax "noise_const" dict, or None to leave the buffers alone.

    Raises:
        ValueError: on an unpaired parameter or buffer, or a shape mismatch.
    """
    torch_params = dict(module.named_parameters())
    torch_buffers = {name: b for name, b in module.named_buffers() if name.endswith("noise_const")}
    modules = dict(module.named_modules())
    assigned = set()

    def assign(table, name: str, value: np.ndarray) -> None:
        if name not in table:
            raise ValueError(f"Flax value {name} has no torch counterpart")
        target = table[name]
        if tuple(target.shape) != value.shape:
            raise ValueError(f"{name}: torch shape {tuple(target.shape)} vs converted Flax shape {value.shape}")
        with torch.no_grad():
            target.copy_(torch.from_numpy(np.array(value, order="C")).to(target.dtype))
        assigned.add(name)

    def walk(tree, prefix: str, buffers: bool) -> None:
        for key, value in tree.items():
            if hasattr(value, "items"):
                walk(value, f"{prefix}{key}.", buffers)
                continue
            array = np.asarray(value, np.float64)
            owner = modules.get(prefix[:-1])
            if buffers:
                assign(torch_buffers, prefix + key, array)
            elif key == "kernel" and array.ndim == 4:
                assign(torch_params, prefix + "weight", array.transpose(3, 2, 0, 1))
            elif key == "kernel" and array.ndim == 2:
                chw = getattr(owner, "input_chw", None)
                if chw is not None:  # Flax rows are (h, w, c)-ordered; torch columns (c, h, w).
                    c, h, w = chw
                    array = array.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
                assign(torch_params, prefix + "weight", array.T)
            elif key == "const" and array.ndim == 3:
                assign(torch_params, prefix + key, array.transpose(2, 0, 1))
            elif key in ("bias", "noise_strength"):
                assign(torch_params, prefix + key, array)
            else:
                raise ValueError(f"unexpected Flax parameter {prefix}{key} with shape {array.shape}")

    walk(params, "", False)
    missing = sorted(set(torch_params) - assigned)
    if missing:
        raise ValueError(f"torch parameters left without a Flax value: {missing}")
    if noise_const is not None:
        walk(noise_const, "", True)
        missing = sorted(set(torch_buffers) - assigned)
        if missing:
            raise ValueError(f"torch noise buffers left without a Flax value: {missing}")
