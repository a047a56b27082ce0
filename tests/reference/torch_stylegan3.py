"""A PyTorch (NCHW) StyleGAN3 generator, and the copy of Flax variables into it.

Written from NVlabs/stylegan3's training/networks_stylegan3.py (modulated_conv2d, FullyConnectedLayer,
MappingNetwork, SynthesisInput, SynthesisLayer with its design_lowpass_filter, SynthesisNetwork, Generator) and
the plain-torch reference paths of its ops: torch_utils/ops/filtered_lrelu.py (`_filtered_lrelu_ref`),
upfirdn2d.py (`_upfirdn2d_ref`) and bias_act.py (`_bias_act_ref`). The CUDA plugins are replaced by those
reference paths; the rest keeps the reference's code: configs "stylegan3-t" / "stylegan3-r" without labels
(c_dim = 0), float32 throughout (the reference's FP16 layers only run on CUDA).

How it computes, where animejax.models.stylegan3 computes the same function differently:
- modulated convolution: per-sample kernels (pre-normalised, modulated, demodulated, times input_gain) applied
  as one grouped conv2d over the batch (animejax: the non-fused path, x * styles, conv, * dcoefs, NHWC, with
  the input gain on x);
- filtered_lrelu: bias_act, upfirdn2d by explicit zero insertion, pad/crop and depthwise conv2d (two 1-D passes
  for separable filters, one 2-D conv for the radial ones), leaky ReLU / gain / clamp, a second upfirdn2d and a
  strided slice (animejax: polyphase sums of shifted slices);
- Fourier features: the sampling grid from torch.nn.functional.affine_grid and a batched matmul with the
  transformed frequencies (animejax: a numpy grid and an einsum);
- filters from scipy.signal.firwin and scipy.special.j1 with np.kaiser (animejax: its own Kaiser formulas);
- the layer schedule recomputed here from the reference's formulas (animejax: alias_free.layer_schedule).

Flax layouts -> torch: conv kernels [kh, kw, I, O] -> weight [O, I, kh, kw]; dense kernels [I, O] -> [O, I];
the input's `kernel` [C, C] -> weight [C, C] transposed; buffers freqs [C, 2], phases [C] and magnitude_ema []
as they are. The user transform is the reference's `transform` buffer of SynthesisInput ([3, 3]), set with
`set_transform`. Submodule names are the reference's (mapping.fc{i}, synthesis.input, synthesis.L{i}_{size}_{ch}),
so `load_flax_params` pairs the variables by path. Used by tests/test_stylegan3_networks.py for parity.
"""

from __future__ import annotations

import numpy as np
import scipy.signal
import scipy.special
import torch
import torch.nn.functional as F
from torch import nn

from tests.reference.torch_stylegan2 import normalize_2nd_moment

# --------------------------------------------------------------------------------------------------- ops


def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
    """The reference's `_bias_act_ref` for the two activations StyleGAN3 uses ("linear", "lrelu")."""
    if act not in ("linear", "lrelu"):
        raise ValueError(f"unsupported activation {act!r}")
    alpha = float(alpha if alpha is not None else (0.2 if act == "lrelu" else 0.0))
    gain = float(gain if gain is not None else (np.sqrt(2) if act == "lrelu" else 1.0))
    clamp = float(clamp if clamp is not None else -1)
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    if act == "lrelu":
        x = F.leaky_relu(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _parse_padding(padding):
    if isinstance(padding, int):
        padding = [padding, padding]
    if len(padding) == 2:
        padx, pady = padding
        padding = [padx, padx, pady, pady]
    return [int(p) for p in padding]


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """The reference's `_upfirdn2d_ref`: zero insertion, pad/crop, depthwise conv2d (1-D filters as two passes,
    each scaled by gain ** 0.5), keep every `down`-th pixel. x [B, C, H, W]; f None, [fw] or [fh, fw]."""
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    batch_size, num_channels, in_height, in_width = x.shape
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    if not (in_width * up + padx0 + padx1 >= f.shape[-1] and in_height * up + pady0 + pady1 >= f.shape[0]):
        raise ValueError("upfirdn2d: the up-sampled, padded image is smaller than the filter")

    x = x.reshape([batch_size, num_channels, in_height, 1, in_width, 1])
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape([batch_size, num_channels, in_height * up, in_width * up])

    x = F.pad(x, [max(padx0, 0), max(padx1, 0), max(pady0, 0), max(pady1, 0)])
    x = x[:, :, max(-pady0, 0) : x.shape[2] - max(-pady1, 0), max(-padx0, 0) : x.shape[3] - max(-padx1, 0)]

    f = f * (gain ** (f.ndim / 2))
    f = f.to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))

    f = f[np.newaxis, np.newaxis].repeat([num_channels, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(input=x, weight=f, groups=num_channels)
    else:
        x = F.conv2d(input=x, weight=f.unsqueeze(2), groups=num_channels)
        x = F.conv2d(input=x, weight=f.unsqueeze(3), groups=num_channels)
    return x[:, :, ::down, ::down]


def _filter_size(f):
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


def filtered_lrelu(x, fu=None, fd=None, b=None, up=1, down=1, padding=0, gain=np.sqrt(2), slope=0.2, clamp=None):
    """The reference's `_filtered_lrelu_ref`: bias, up-sample (gain up**2), leaky ReLU * gain, clamp, down-sample."""
    fu_w, fu_h = _filter_size(fu)
    fd_w, fd_h = _filter_size(fd)
    px0, px1, py0, py1 = _parse_padding(padding)
    batch_size, channels, in_h, in_w = x.shape
    out_w = (in_w * up + (px0 + px1) - (fu_w - 1) - (fd_w - 1) + (down - 1)) // down
    out_h = (in_h * up + (py0 + py1) - (fu_h - 1) - (fd_h - 1) + (down - 1)) // down

    x = bias_act(x=x, b=b)
    x = upfirdn2d(x=x, f=fu, up=up, padding=[px0, px1, py0, py1], gain=up**2)
    x = bias_act(x=x, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    x = upfirdn2d(x=x, f=fd, down=down)
    if tuple(x.shape) != (batch_size, channels, out_h, out_w):
        raise AssertionError(f"filtered_lrelu: shape {tuple(x.shape)}, expected {(batch_size, channels, out_h, out_w)}")
    return x


def modulated_conv2d(x, w, s, demodulate=True, padding=0, input_gain=None):
    """The reference's StyleGAN3 `modulated_conv2d`: x [B, I, H, W], w [O, I, kh, kw], s [B, I] -> [B, O, H', W']."""
    batch_size = int(x.shape[0])
    out_channels, in_channels, kh, kw = w.shape

    # Pre-normalize inputs.
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()

    # Modulate weights.
    w = w.unsqueeze(0)  # [NOIkk]
    w = w * s.unsqueeze(1).unsqueeze(3).unsqueeze(4)

    # Demodulate weights.
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [NO]
        w = w * dcoefs.unsqueeze(2).unsqueeze(3).unsqueeze(4)

    # Apply input scaling.
    if input_gain is not None:
        input_gain = input_gain.expand(batch_size, in_channels)  # [NI]
        w = w * input_gain.unsqueeze(1).unsqueeze(3).unsqueeze(4)

    # One fused op: grouped convolution over the batch.
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = F.conv2d(input=x, weight=w.to(x.dtype), padding=padding, groups=batch_size)
    return x.reshape(batch_size, -1, *x.shape[2:])


# ------------------------------------------------------------------------------------------------ layers


class FullyConnectedLayer(nn.Module):
    """The reference's StyleGAN3 FullyConnectedLayer (weight_init, per-feature bias_init stored / lr_multiplier)."""

    def __init__(
        self, in_features, out_features, activation="linear", bias=True, lr_multiplier=1, weight_init=1, bias_init=0
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        bias_init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        self.bias = nn.Parameter(torch.from_numpy(bias_init / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            x = torch.addmm(b.unsqueeze(0), x, w.t())
        else:
            x = x.matmul(w.t())
            x = bias_act(x, b, act=self.activation)
        return x


class MappingNetwork(nn.Module):
    """The reference's StyleGAN3 MappingNetwork without labels: z [B, z_dim] -> ws [B, num_ws, w_dim]."""

    def __init__(self, z_dim, w_dim, num_ws, num_layers=2, lr_multiplier=0.01, w_avg_beta=0.998):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        features = [z_dim] + [w_dim] * num_layers
        for idx, in_features, out_features in zip(range(num_layers), features[:-1], features[1:]):
            layer = FullyConnectedLayer(in_features, out_features, activation="lrelu", lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        if truncation_cutoff is None:
            truncation_cutoff = self.num_ws
        x = normalize_2nd_moment(z.to(torch.float32))  # x * rsqrt(mean(x^2) + 1e-8), as the reference's.
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisInput(nn.Module):
    """The reference's SynthesisInput: w [B, w_dim] -> Fourier features [B, channels, size, size]."""

    def __init__(self, w_dim, channels, size, sampling_rate, bandwidth):
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = np.broadcast_to(np.asarray(size), [2])
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth

        # Draw random frequencies from uniform 2D disc.
        freqs = torch.randn([self.channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= bandwidth
        phases = torch.rand([self.channels]) - 0.5

        self.weight = nn.Parameter(torch.randn([self.channels, self.channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))  # User-specified inverse transform wrt. resulting image.
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, w):
        transforms = self.transform.unsqueeze(0)  # [batch, row, col]
        freqs = self.freqs.unsqueeze(0)  # [batch, channel, xy]
        phases = self.phases.unsqueeze(0)  # [batch, channel]

        # Apply learned transformation.
        t = self.affine(w)  # t = (r_c, r_s, t_x, t_y)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        m_r = torch.eye(3, device=w.device).unsqueeze(0).repeat([w.shape[0], 1, 1])  # Inverse rotation.
        m_r[:, 0, 0] = t[:, 0]
        m_r[:, 0, 1] = -t[:, 1]
        m_r[:, 1, 0] = t[:, 1]
        m_r[:, 1, 1] = t[:, 0]
        m_t = torch.eye(3, device=w.device).unsqueeze(0).repeat([w.shape[0], 1, 1])  # Inverse translation.
        m_t[:, 0, 2] = -t[:, 2]
        m_t[:, 1, 2] = -t[:, 3]
        transforms = m_r @ m_t @ transforms

        # Transform frequencies.
        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]

        # Dampen out-of-band frequencies that may occur due to the user-specified transform.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        # Construct sampling grid.
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size[0] / self.sampling_rate
        theta[1, 1] = 0.5 * self.size[1] / self.sampling_rate
        grids = F.affine_grid(theta.unsqueeze(0), [1, 1, int(self.size[1]), int(self.size[0])], align_corners=False)

        # Compute Fourier features.
        x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # [B, H, W, C]
        x = x + phases.unsqueeze(1).unsqueeze(2)
        x = torch.sin(x * (np.pi * 2))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)

        # Apply trainable mapping.
        weight = self.weight / np.sqrt(self.channels)
        x = x @ weight.t()
        return x.permute(0, 3, 1, 2)  # [batch, channel, height, width]


class SynthesisLayer(nn.Module):
    """The reference's SynthesisLayer (modulated conv, filtered leaky ReLU, magnitude EMA); float32 only."""

    def __init__(
        self,
        w_dim,
        is_torgb,
        is_critically_sampled,
        use_fp16,
        in_channels,
        out_channels,
        in_size,
        out_size,
        in_sampling_rate,
        out_sampling_rate,
        in_cutoff,
        out_cutoff,
        in_half_width,
        out_half_width,
        conv_kernel=3,
        filter_size=6,
        lrelu_upsampling=2,
        use_radial_filters=False,
        conv_clamp=256,
        magnitude_ema_beta=0.999,
    ):
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(self.w_dim, self.in_channels, bias_init=1)
        self.weight = nn.Parameter(
            torch.randn([self.out_channels, self.in_channels, self.conv_kernel, self.conv_kernel])
        )
        self.bias = nn.Parameter(torch.zeros([self.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        # Design upsampling filter.
        self.up_factor = int(np.rint(self.tmp_sampling_rate / self.in_sampling_rate))
        assert self.in_sampling_rate * self.up_factor == self.tmp_sampling_rate
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not self.is_torgb else 1
        self.register_buffer(
            "up_filter",
            self.design_lowpass_filter(
                numtaps=self.up_taps, cutoff=self.in_cutoff, width=self.in_half_width * 2, fs=self.tmp_sampling_rate
            ),
        )

        # Design downsampling filter.
        self.down_factor = int(np.rint(self.tmp_sampling_rate / self.out_sampling_rate))
        assert self.out_sampling_rate * self.down_factor == self.tmp_sampling_rate
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not self.is_torgb else 1
        self.down_radial = use_radial_filters and not self.is_critically_sampled
        self.register_buffer(
            "down_filter",
            self.design_lowpass_filter(
                numtaps=self.down_taps,
                cutoff=self.out_cutoff,
                width=self.out_half_width * 2,
                fs=self.tmp_sampling_rate,
                radial=self.down_radial,
            ),
        )

        # Compute padding.
        pad_total = (self.out_size - 1) * self.down_factor + 1  # Desired output size before downsampling.
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor  # Input size after upsampling.
        pad_total += self.up_taps + self.down_taps - 2  # Size reduction caused by the filters.
        pad_lo = (pad_total + self.up_factor) // 2  # Symmetric interpretation of sample locations (App. C.3).
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def forward(self, x, w, noise_mode="random", force_fp32=False, update_emas=False):
        assert noise_mode in ["random", "const", "none"]  # Unused.
        expected = (self.in_channels, int(self.in_size[1]), int(self.in_size[0]))
        if tuple(x.shape[1:]) != expected or tuple(w.shape) != (x.shape[0], self.w_dim):
            raise ValueError(f"SynthesisLayer: x {tuple(x.shape)} / w {tuple(w.shape)}, expected [B, {expected}]")

        # Track input magnitude.
        if update_emas:
            magnitude_cur = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(magnitude_cur.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()

        # Execute affine layer.
        styles = self.affine(w)
        if self.is_torgb:
            weight_gain = 1 / np.sqrt(self.in_channels * (self.conv_kernel**2))
            styles = styles * weight_gain

        # Execute modulated conv2d (float32: the reference's FP16 needs CUDA).
        x = modulated_conv2d(
            x=x.to(torch.float32),
            w=self.weight,
            s=styles,
            padding=self.conv_kernel - 1,
            demodulate=(not self.is_torgb),
            input_gain=input_gain,
        )

        # Execute bias, filtered leaky ReLU, and clamping.
        gain = 1 if self.is_torgb else np.sqrt(2)
        slope = 1 if self.is_torgb else 0.2
        x = filtered_lrelu(
            x=x,
            fu=self.up_filter,
            fd=self.down_filter,
            b=self.bias.to(x.dtype),
            up=self.up_factor,
            down=self.down_factor,
            padding=self.padding,
            gain=gain,
            slope=slope,
            clamp=self.conv_clamp,
        )
        assert tuple(x.shape[1:]) == (self.out_channels, int(self.out_size[1]), int(self.out_size[0]))
        return x

    @staticmethod
    def design_lowpass_filter(numtaps, cutoff, width, fs, radial=False):
        assert numtaps >= 1

        # Identity filter.
        if numtaps == 1:
            return None

        # Separable Kaiser low-pass filter.
        if not radial:
            f = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
            return torch.as_tensor(f, dtype=torch.float32)

        # Radially symmetric jinc-based filter.
        x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
        r = np.hypot(*np.meshgrid(x, x))
        f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
        beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
        w = np.kaiser(numtaps, beta)
        f *= np.outer(w, w)
        f /= np.sum(f)
        return torch.as_tensor(f, dtype=torch.float32)


class SynthesisNetwork(nn.Module):
    """The reference's SynthesisNetwork: ws [B, num_layers + 2, w_dim] -> images [B, C, R, R]."""

    def __init__(
        self,
        w_dim,
        img_resolution,
        img_channels,
        channel_base=32768,
        channel_max=512,
        num_layers=14,
        num_critical=2,
        first_cutoff=2,
        first_stopband=2**2.1,
        last_stopband_rel=2**0.3,
        margin_size=10,
        output_scale=0.25,
        num_fp16_res=4,
        **layer_kwargs,
    ):
        super().__init__()
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res

        # Geometric progression of layer cutoffs and min. stopbands.
        last_cutoff = self.img_resolution / 2  # f_{c,N}
        last_stopband = last_cutoff * last_stopband_rel  # f_{t,N}
        exponents = np.minimum(np.arange(self.num_layers + 1) / (self.num_layers - self.num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents  # f_c[i]
        stopbands = first_stopband * (last_stopband / first_stopband) ** exponents  # f_t[i]

        # Compute remaining layer parameters.
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, self.img_resolution))))  # s[i]
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs  # f_h[i]
        sizes = sampling_rates + self.margin_size * 2
        sizes[-2:] = self.img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = self.img_channels

        # Construct layers.
        self.input = SynthesisInput(
            w_dim=self.w_dim,
            channels=int(channels[0]),
            size=int(sizes[0]),
            sampling_rate=sampling_rates[0],
            bandwidth=cutoffs[0],
        )
        self.layer_names = []
        for idx in range(self.num_layers + 1):
            prev = max(idx - 1, 0)
            is_torgb = idx == self.num_layers
            is_critically_sampled = idx >= self.num_layers - self.num_critical
            use_fp16 = sampling_rates[idx] * (2**self.num_fp16_res) > self.img_resolution
            layer = SynthesisLayer(
                w_dim=self.w_dim,
                is_torgb=is_torgb,
                is_critically_sampled=is_critically_sampled,
                use_fp16=use_fp16,
                in_channels=int(channels[prev]),
                out_channels=int(channels[idx]),
                in_size=int(sizes[prev]),
                out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]),
                out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=cutoffs[prev],
                out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev],
                out_half_width=half_widths[idx],
                **layer_kwargs,
            )
            name = f"L{idx}_{layer.out_size[0]}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws, **layer_kwargs):
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise ValueError(f"SynthesisNetwork: ws {tuple(ws.shape)}, expected [B, {self.num_ws}, {self.w_dim}]")
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, **layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        assert tuple(x.shape[1:]) == (self.img_channels, self.img_resolution, self.img_resolution)
        return x.to(torch.float32)

    def set_transform(self, transform) -> None:
        """Sets the input's user-specified inverse transform buffer ([3, 3])."""
        with torch.no_grad():
            self.input.transform.copy_(torch.as_tensor(np.asarray(transform), dtype=self.input.transform.dtype))


class Generator(nn.Module):
    """The reference's StyleGAN3 Generator without labels: z [B, z_dim] -> images [B, C, R, R]."""

    def __init__(self, z_dim, w_dim, img_resolution, img_channels=3, mapping_kwargs=None, **synthesis_kwargs):
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, w_dim=w_dim, num_ws=self.num_ws, **(mapping_kwargs or {}))

    def forward(self, z, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        ws = self.mapping(z, truncation_psi, truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)


def torch_generator_like(flax_generator) -> Generator:
    """A float32 torch `Generator` with an animejax stylegan3 `Generator`'s configuration."""
    g = flax_generator
    return Generator(
        z_dim=g.z_dim,
        w_dim=g.w_dim,
        img_resolution=g.img_resolution,
        img_channels=g.img_channels,
        mapping_kwargs=dict(num_layers=g.mapping_layers, lr_multiplier=g.mapping_lr_multiplier),
        channel_base=g.channel_base,
        channel_max=g.channel_max,
        num_layers=g.num_layers,
        num_critical=g.num_critical,
        margin_size=g.margin_size,
        conv_kernel=g.conv_kernel,
        use_radial_filters=g.use_radial_filters,
        conv_clamp=g.conv_clamp,
        magnitude_ema_beta=g.magnitude_ema_beta,
    )


# ------------------------------------------------------------------------------------------ Flax -> torch


def load_flax_params(module: nn.Module, params, buffers=None, magnitude_ema=None) -> None:
    """Copies Flax variables of an animejax stylegan3 network into `module` in place, pairing them by path.

    Args:
        module: a network of this file (Generator, SynthesisNetwork, SynthesisInput, ...) whose submodule names
            match the Flax trees (the trees of the matching Flax module, e.g. variables["params"]["synthesis"] for
            a torch SynthesisNetwork).
        params: the Flax "params" tree. Every torch parameter must receive exactly one array and vice versa.
        buffers: the Flax "buffers" tree (freqs, phases), or None to leave those buffers alone.
        magnitude_ema: the Flax "magnitude_ema" tree, or None to leave those buffers alone.

    Raises:
        ValueError: on an unpaired parameter or buffer, or a shape mismatch.
    """
    torch_params = dict(module.named_parameters())
    torch_buffers = {
        name: b for name, b in module.named_buffers() if name.rsplit(".", 1)[-1] in ("freqs", "phases", "magnitude_ema")
    }
    assigned = set()

    def assign(table, name: str, value: np.ndarray) -> None:
        if name not in table:
            raise ValueError(f"Flax value {name} has no torch counterpart")
        if name in assigned:
            raise ValueError(f"{name} assigned twice")
        target = table[name]
        if tuple(target.shape) != value.shape:
            raise ValueError(f"{name}: torch shape {tuple(target.shape)} vs converted Flax shape {value.shape}")
        with torch.no_grad():
            target.copy_(torch.from_numpy(np.array(value, order="C")).to(target.dtype))
        assigned.add(name)

    def walk_params(tree, prefix: str) -> None:
        for key, value in tree.items():
            if hasattr(value, "items"):
                walk_params(value, f"{prefix}{key}.")
                continue
            array = np.asarray(value, np.float64)
            if key == "kernel" and array.ndim == 4:  # [kh, kw, I, O] -> [O, I, kh, kw].
                assign(torch_params, prefix + "weight", array.transpose(3, 2, 0, 1))
            elif key == "kernel" and array.ndim == 2:  # Dense [I, O] and the input's [C, C]: transposed.
                assign(torch_params, prefix + "weight", array.T)
            elif key == "bias":
                assign(torch_params, prefix + key, array)
            else:
                raise ValueError(f"unexpected Flax parameter {prefix}{key} with shape {array.shape}")

    def walk_buffers(tree, prefix: str, names) -> None:
        for key, value in tree.items():
            if hasattr(value, "items"):
                walk_buffers(value, f"{prefix}{key}.", names)
            elif key in names:
                assign(torch_buffers, prefix + key, np.asarray(value, np.float64))
            else:
                raise ValueError(f"unexpected Flax buffer {prefix}{key}")

    walk_params(params, "")
    missing = sorted(set(torch_params) - assigned)
    if missing:
        raise ValueError(f"torch parameters left without a Flax value: {missing}")
    for tree, names in ((buffers, ("freqs", "phases")), (magnitude_ema, ("magnitude_ema",))):
        if tree is None:
            continue
        walk_buffers(tree, "", names)
        missing = sorted(n for n in torch_buffers if n.rsplit(".", 1)[-1] in names and n not in assigned)
        if missing:
            raise ValueError(f"torch buffers left without a Flax value: {missing}")
