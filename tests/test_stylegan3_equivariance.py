"""Equivariance as the paper measures it (animejax/metrics/equivariance.py, Appendix E of Karras et al. 2021) on
tiny randomly initialised synthesis networks: StyleGAN3-T against a StyleGAN2 synthesis network of similar size
for translations, StyleGAN3-R against StyleGAN3-T for rotations.

The StyleGAN2 network is its skip architecture (models/stylegan2.py's blocks) fed by the same Fourier-feature
input at 4x4 in place of the learned constant (the paper's configuration B), so a translation of its input is
defined exactly as for StyleGAN3.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from animejax.metrics.equivariance import equivariance_psnr
from animejax.models import stylegan2, stylegan3

RESOLUTION, W_DIM, BATCH = 32, 16, 2


class StyleGAN2FourierSynthesis(nn.Module):
    """StyleGAN2's skip synthesis (blocks b8 ... bR) from a 4x4 Fourier-feature input; no noise."""

    channel_base: int = 512
    channel_max: int = 32

    @property
    def num_ws(self) -> int:
        return 1 + 3 * (int(math.log2(RESOLUTION)) - 2)

    @nn.compact
    def __call__(self, ws, transform=None):
        channels = stylegan2.channels_at(4, self.channel_base, self.channel_max)
        x = stylegan3.SynthesisInput(W_DIM, channels, 4, 4, 2, name="input")(ws[:, 0], transform)
        img, index = None, 1
        for log2 in range(3, int(math.log2(RESOLUTION)) + 1):
            res = 2**log2
            block = stylegan2.SynthesisBlock(stylegan2.channels_at(res, self.channel_base, self.channel_max))
            x, img = block(x, img, ws[:, index : index + 3], "none")
            index += 2
        return img


def _stylegan3(**kwargs):
    widths = {"channel_base": 512, "channel_max": 32, **kwargs}
    return stylegan3.SynthesisNetwork(W_DIM, RESOLUTION, num_layers=6, **widths)


def _psnr(net, kinds, seed=0):
    ws = jax.random.normal(jax.random.PRNGKey(seed), (BATCH, net.num_ws, W_DIM))
    variables = net.init(jax.random.PRNGKey(seed + 1), ws)
    render = jax.jit(lambda ws, m: net.apply(variables, ws, m))
    batches = [jax.random.normal(jax.random.PRNGKey(seed + 2 + b), ws.shape) for b in range(2)]
    return equivariance_psnr(lambda b, m: render(batches[b], jnp.asarray(m)), 2, rng=seed, kinds=kinds)


@pytest.fixture(scope="module")
def translation_scores():
    kinds = ("eqt_int", "eqt_frac")
    return _psnr(_stylegan3(), kinds), _psnr(StyleGAN2FourierSynthesis(), kinds)


def test_stylegan3_t_is_clearly_more_translation_equivariant_than_stylegan2(translation_scores):
    # Measured (2 batches of 2): StyleGAN3-T 106 dB (integer) and 77 dB (fractional), StyleGAN2 13 dB for both.
    sg3, sg2 = translation_scores
    for kind in ("eqt_int", "eqt_frac"):
        assert sg3[kind] > 50 and sg3[kind] > sg2[kind] + 30, (kind, sg3, sg2)


def test_stylegan3_r_is_more_rotation_equivariant_than_t():
    r = _psnr(_stylegan3(**stylegan3.stylegan3_r_kwargs(256, 16)), ("eqr",))  # R's doubling: T's widths.
    t = _psnr(_stylegan3(), ("eqr",))
    # Measured: StyleGAN3-R 72 dB, StyleGAN3-T 25 dB.
    assert r["eqr"] > 45 and r["eqr"] > t["eqr"] + 20, (r, t)
