"""benchmarks/hlo_convolutions.py: the convolutions read from a compiled program compute what the program's do."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from tests.conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import hlo_convolutions  # noqa: E402


def _numpy_conv_nhwc(x, w, stride, padding):
    """Float64 cross-correlation: x [B, H, W, C], w [kh, kw, C, O], padding ((top, bottom), (left, right))."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), *padding, (0, 0)))
    w = np.asarray(w, np.float64)
    kh, kw = w.shape[:2]
    out_h = (x.shape[1] - kh) // stride + 1
    out_w = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride, :]
            out += patch @ w[i, j]
    return out


def _compiled_text(function, *args):
    return jax.jit(function).lower(*args).compile().as_text()


def test_a_training_steps_three_convolutions_are_read_and_rebuilt_with_their_shapes():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 9, 9, 3)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).standard_normal((3, 3, 3, 5)), jnp.float32)

    def loss(x, w):
        y = jax.lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jnp.sin(y))

    convolutions = hlo_convolutions.parse_convolutions(_compiled_text(jax.grad(loss, argnums=(0, 1)), x, w))
    assert len(convolutions) == 3  # Forward, input gradient, kernel gradient.
    for convolution in convolutions:
        function, lhs, rhs = convolution.build()
        assert function(lhs, rhs).shape == convolution.out_shape, convolution.describe()
    assert hlo_convolutions.time_alone(convolutions[0], calls=2) > 0


def test_the_rebuilt_forward_convolution_computes_the_float64_reference():
    x = np.random.default_rng(0).standard_normal((2, 8, 7, 3)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((3, 3, 3, 4)).astype(np.float32)
    padding = ((0, 1), (2, 1))

    def forward(x, w):
        return jax.lax.conv_general_dilated(x, w, (2, 2), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))

    (convolution,) = hlo_convolutions.parse_convolutions(_compiled_text(forward, x, w))
    assert convolution.window_fields()["pad"] == [(0, 1), (2, 1)]
    assert convolution.window_fields()["stride"] == [2, 2]
    function, _, _ = convolution.build()
    np.testing.assert_allclose(function(x, w), _numpy_conv_nhwc(x, w, 2, padding), rtol=1e-5, atol=1e-5)


def test_window_fields_and_grouped_reversed_convolutions():
    convolution = hlo_convolutions.Convolution(
        dtype="f32",
        lhs_dtype="f32",
        rhs_dtype="f32",
        lhs_shape=(1, 4, 4, 4),
        rhs_shape=(3, 3, 2, 4),
        out_shape=(1, 4, 4, 4),
        window="size=3x3 pad=1_1x1_1 rhs_reversal=1x1",
        dim_labels="b01f_01io->b01f",
        feature_group_count=2,
    )
    assert convolution.window_fields() == {
        "size": [3, 3],
        "stride": [1, 1],
        "pad": [(1, 1), (1, 1)],
        "lhs_dilate": [1, 1],
        "rhs_dilate": [1, 1],
        "rhs_reversal": [1, 1],
    }
    assert convolution.jax_dimension_numbers() == ("NHWC", "HWIO", "NHWC")
    function, x, w = convolution.build()
    x, w = np.asarray(x), np.asarray(w)
    flipped = w[::-1, ::-1]
    groups = [slice(0, 2), slice(2, 4)]
    expected = np.concatenate([_numpy_conv_nhwc(x[..., g], flipped[..., g], 1, ((1, 1), (1, 1))) for g in groups], -1)
    np.testing.assert_allclose(function(x, w), expected, rtol=1e-5, atol=1e-5)
    assert "groups=2" in convolution.describe()
