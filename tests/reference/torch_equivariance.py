"""A PyTorch (NCHW) transcription of the image operators of the StyleGAN3 equivariance metrics.

Written from NVlabs/stylegan3's metrics/equivariance.py (sinc, lanczos_window, rotation_matrix,
apply_integer_translation, apply_fractional_translation, construct_affine_bandlimit_filter,
apply_affine_transformation, apply_fractional_rotation, apply_fractional_pseudo_rotation, and the PSNR
accumulation of compute_equivariance_metrics) and torch_utils/ops/upfirdn2d.py (`filter2d` and `upsample2d` on
top of the plain-torch `_upfirdn2d_ref`: zero insertion, zero padding, true convolution). The operators keep the
reference's code, float32 arithmetic and conventions; only the CUDA plugin is replaced by the plain-torch path.
Used by tests/test_equivariance.py for parity with animejax.metrics.equivariance.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------------------------
# upfirdn2d (plain-torch reference path).


def upfirdn2d(x, f, up=1, padding=(0, 0, 0, 0), gain=1.0):
    """Zero-insert `up`x, pad (x0, x1, y0, y1) (negative crops), convolve with the 2-D filter f [fh, fw]."""
    b, c, h, w = x.shape
    x0, x1, y0, y1 = padding
    x = x.reshape(b, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(b, c, h * up, w * up)
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0) : x.shape[2] - max(-y1, 0), max(-x0, 0) : x.shape[3] - max(-x1, 0)]
    kernel = (f * gain).flip([0, 1]).to(x.dtype)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, kernel, groups=c)


def _parse_padding(padding):
    if isinstance(padding, int):
        padding = [padding, padding]
    if len(padding) == 2:
        padx, pady = padding
        padding = [padx, padx, pady, pady]
    return padding


def filter2d(x, f, padding=0):
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fh, fw = f.shape
    p = [padx0 + fw // 2, padx1 + (fw - 1) // 2, pady0 + fh // 2, pady1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p)


def upsample2d(x, f, up=2, padding=0):
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fh, fw = f.shape
    p = [padx0 + (fw + up - 1) // 2, padx1 + (fw - up) // 2, pady0 + (fh + up - 1) // 2, pady1 + (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, gain=up * up)


# ---------------------------------------------------------------------------------------------------------------
# metrics/equivariance.py.


def sinc(x):
    y = (x * np.pi).abs()
    z = torch.sin(y) / y.clamp(1e-30, float("inf"))
    return torch.where(y < 1e-30, torch.ones_like(x), z)


def lanczos_window(x, a):
    x = x.abs() / a
    return torch.where(x < 1, sinc(x), torch.zeros_like(x))


def rotation_matrix(angle):
    angle = torch.as_tensor(angle).to(torch.float32)
    mat = torch.eye(3, device=angle.device)
    mat[0, 0] = angle.cos()
    mat[0, 1] = angle.sin()
    mat[1, 0] = -angle.sin()
    mat[1, 1] = angle.cos()
    return mat


def apply_integer_translation(x, tx, ty):
    _n, _c, h, w = x.shape
    tx = torch.as_tensor(tx * w).to(dtype=torch.float32)
    ty = torch.as_tensor(ty * h).to(dtype=torch.float32)
    ix = tx.round().to(torch.int64)
    iy = ty.round().to(torch.int64)
    z = torch.zeros_like(x)
    m = torch.zeros_like(x)
    if abs(ix) < w and abs(iy) < h:
        y = x[:, :, max(-iy, 0) : h + min(-iy, 0), max(-ix, 0) : w + min(-ix, 0)]
        z[:, :, max(iy, 0) : h + min(iy, 0), max(ix, 0) : w + min(ix, 0)] = y
        m[:, :, max(iy, 0) : h + min(iy, 0), max(ix, 0) : w + min(ix, 0)] = 1
    return z, m


def apply_fractional_translation(x, tx, ty, a=3):
    _n, _c, h, w = x.shape
    tx = torch.as_tensor(tx * w).to(dtype=torch.float32)
    ty = torch.as_tensor(ty * h).to(dtype=torch.float32)
    ix = tx.floor().to(torch.int64)
    iy = ty.floor().to(torch.int64)
    fx = tx - ix
    fy = ty - iy
    b = a - 1

    z = torch.zeros_like(x)
    zx0 = max(ix - b, 0)
    zy0 = max(iy - b, 0)
    zx1 = min(ix + a, 0) + w
    zy1 = min(iy + a, 0) + h
    if zx0 < zx1 and zy0 < zy1:
        taps = torch.arange(a * 2) - b
        filter_x = (sinc(taps - fx) * sinc((taps - fx) / a)).unsqueeze(0)
        filter_y = (sinc(taps - fy) * sinc((taps - fy) / a)).unsqueeze(1)
        y = x
        y = filter2d(y, filter_x / filter_x.sum(), padding=[b, a, 0, 0])
        y = filter2d(y, filter_y / filter_y.sum(), padding=[0, 0, b, a])
        y = y[:, :, max(b - iy, 0) : h + b + a + min(-iy - a, 0), max(b - ix, 0) : w + b + a + min(-ix - a, 0)]
        z[:, :, zy0:zy1, zx0:zx1] = y

    m = torch.zeros_like(x)
    mx0 = max(ix + a, 0)
    my0 = max(iy + a, 0)
    mx1 = min(ix - b, 0) + w
    my1 = min(iy - b, 0) + h
    if mx0 < mx1 and my0 < my1:
        m[:, :, my0:my1, mx0:mx1] = 1
    return z, m


def construct_affine_bandlimit_filter(mat, a=3, amax=16, aflt=64, up=4, cutoff_in=1, cutoff_out=1):
    assert a <= amax < aflt
    mat = torch.as_tensor(mat).to(torch.float32)

    taps = ((torch.arange(aflt * up * 2 - 1) + 1) / up - aflt).roll(1 - aflt * up)
    yi, xi = torch.meshgrid(taps, taps, indexing="ij")
    xo, yo = (torch.stack([xi, yi], dim=2) @ mat[:2, :2].t()).unbind(2)

    fi = sinc(xi * cutoff_in) * sinc(yi * cutoff_in)
    fo = sinc(xo * cutoff_out) * sinc(yo * cutoff_out)
    f = torch.fft.ifftn(torch.fft.fftn(fi) * torch.fft.fftn(fo)).real

    wi = lanczos_window(xi, a) * lanczos_window(yi, a)
    wo = lanczos_window(xo, a) * lanczos_window(yo, a)
    w = torch.fft.ifftn(torch.fft.fftn(wi) * torch.fft.fftn(wo)).real

    f = f * w

    c = (aflt - amax) * up
    f = f.roll([aflt * up - 1] * 2, dims=[0, 1])[c:-c, c:-c]
    f = F.pad(f, [0, 1, 0, 1]).reshape(amax * 2, up, amax * 2, up)
    f = f / f.sum([0, 2], keepdim=True) / (up**2)
    f = f.reshape(amax * 2 * up, amax * 2 * up)[:-1, :-1]
    return f


def apply_affine_transformation(x, mat, up=4, **filter_kwargs):
    _n, _c, h, w = x.shape
    mat = torch.as_tensor(mat).to(dtype=torch.float32)

    f = construct_affine_bandlimit_filter(mat, up=up, **filter_kwargs)
    assert f.ndim == 2 and f.shape[0] == f.shape[1] and f.shape[0] % 2 == 1
    p = f.shape[0] // 2

    theta = mat.inverse()
    theta[:2, 2] *= 2
    theta[0, 2] += 1 / up / w
    theta[1, 2] += 1 / up / h
    theta[0, :] *= w / (w + p / up * 2)
    theta[1, :] *= h / (h + p / up * 2)
    theta = theta[:2, :3].unsqueeze(0).repeat([x.shape[0], 1, 1])
    g = F.affine_grid(theta, x.shape, align_corners=False)

    y = upsample2d(x=x, f=f, up=up, padding=p)
    z = F.grid_sample(y, g, mode="bilinear", padding_mode="zeros", align_corners=False)

    m = torch.zeros_like(y)
    c = p * 2 + 1
    m[:, :, c:-c, c:-c] = 1
    m = F.grid_sample(m, g, mode="nearest", padding_mode="zeros", align_corners=False)
    return z, m


def apply_fractional_rotation(x, angle, a=3, **filter_kwargs):
    angle = torch.as_tensor(angle).to(dtype=torch.float32)
    mat = rotation_matrix(angle)
    return apply_affine_transformation(x, mat, a=a, amax=a * 2, **filter_kwargs)


def apply_fractional_pseudo_rotation(x, angle, a=3, **filter_kwargs):
    angle = torch.as_tensor(angle).to(dtype=torch.float32)
    mat = rotation_matrix(-angle)
    f = construct_affine_bandlimit_filter(mat, a=a, amax=a * 2, up=1, **filter_kwargs)
    y = filter2d(x=x, f=f)
    m = torch.zeros_like(y)
    c = f.shape[0] // 2
    m[:, :, c:-c, c:-c] = 1
    return y, m


def psnr(sums):
    """compute_equivariance_metrics' last step: sums = [err_0, mask_0, err_1, mask_1, ...] (float64)."""
    sums = torch.as_tensor(sums, dtype=torch.float64)
    mses = sums[0::2] / sums[1::2]
    return np.log10(2) * 20 - mses.log10() * 10
