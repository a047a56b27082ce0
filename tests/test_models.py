"""Network shapes, the depth-to-space layout and the phase-split transposed convolution."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animejax.models.autoencoder import AutoEncoder, level_channels
from animejax.models.layers import DownConv4x4, PhaseConvTranspose, Upsample2x, depth_to_space, nearest_upsample_2x


def test_depth_to_space_matches_pixel_shuffle_formula():
    # torch.nn.PixelShuffle: out[c, h*r + i, w*r + j] = in[c*r*r + i*r + j, h, w] (channels-first).
    rng = np.random.default_rng(0)
    r, channels, height, width = 2, 3, 4, 5
    x = rng.normal(size=(2, height, width, channels * r * r)).astype(np.float32)
    expected = np.zeros((2, height * r, width * r, channels), np.float32)
    for c in range(channels):
        for i in range(r):
            for j in range(r):
                expected[:, i::r, j::r, c] = x[..., c * r * r + i * r + j]
    np.testing.assert_array_equal(np.asarray(depth_to_space(jnp.asarray(x), r)), expected)


def test_nearest_upsample_matches_jax_image_resize():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 5, 4))
    expected = jax.image.resize(x, (2, 6, 10, 4), "nearest")
    np.testing.assert_array_equal(np.asarray(nearest_upsample_2x(x)), np.asarray(expected))


@pytest.mark.parametrize("mode", ["subpixel", "transpose", "nearest"])
def test_upsample_doubles_resolution(mode):
    layer = Upsample2x(features=5, mode=mode)
    x = jnp.ones((2, 4, 4, 3))
    params = layer.init(jax.random.PRNGKey(0), x)
    assert layer.apply(params, x).shape == (2, 8, 8, 5)


@pytest.mark.parametrize("size,variational", [(32, True), (64, False)])
def test_autoencoder_shapes(size, variational):
    model = AutoEncoder(image_size=size, latent_dim=8, base_channels=4, max_channels=16, variational=variational)
    images = jnp.zeros((3, size, size, 3))
    params = model.init(jax.random.PRNGKey(0), images)
    code = model.apply(params, images, method=AutoEncoder.encode)
    if variational:
        assert code[0].shape == code[1].shape == (3, 8)
    else:
        assert code.shape == (3, 8)
    assert model.apply(params, jnp.zeros((3, 8)), method=AutoEncoder.decode).shape == (3, size, size, 3)


def test_level_channels_rejects_bad_sizes():
    assert level_channels(64, 32, 128) == [32, 64, 128, 128]
    with pytest.raises(ValueError, match="power of two"):
        level_channels(48, 32, 128)


def _phase_case(implementation, height=5, width=6, channels=3, features=4):
    """(layer, variables, x) for a PhaseConvTranspose on a non-square input (row and column phases differ)."""
    x = jax.random.normal(jax.random.PRNGKey(1), (2, height, width, channels))
    layer = PhaseConvTranspose(features, implementation=implementation)
    variables = layer.init(jax.random.PRNGKey(0), x)
    # A non-zero bias, so that its gradient and its place in the sum are checked too.
    variables = jax.tree_util.tree_map(lambda v: v, variables)  # A mutable copy.
    variables["params"]["bias"] = jax.random.normal(jax.random.PRNGKey(2), (features,))
    return layer, variables, x


def _value_and_grads(apply, variables, x):
    """The layer's output and the gradients of a fixed random projection of it w.r.t. params and input."""

    def loss(variables, x):
        y = apply(variables, x)
        return jnp.sum(y * jnp.sin(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape))), y

    (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(variables, x)
    return y, grads


@pytest.mark.parametrize("implementation", ["phases", "native", "auto"])
def test_phase_conv_transpose_equals_nn_conv_transpose(implementation):
    layer, variables, x = _phase_case(implementation)
    reference = nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))
    assert jax.tree_util.tree_map(jnp.shape, reference.init(jax.random.PRNGKey(0), x)) == jax.tree_util.tree_map(
        jnp.shape, variables
    )
    # Same initialiser and parameter names: the same key gives the same kernel.
    init_kernel = layer.init(jax.random.PRNGKey(0), x)["params"]["kernel"]
    np.testing.assert_array_equal(init_kernel, reference.init(jax.random.PRNGKey(0), x)["params"]["kernel"])
    y, (param_grads, x_grad) = _value_and_grads(layer.apply, variables, x)
    y_ref, (param_grads_ref, x_grad_ref) = _value_and_grads(reference.apply, variables, x)
    assert y.shape == (2, 10, 12, 4)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_grad, x_grad_ref, rtol=1e-5, atol=1e-4)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(param_grads["params"][name], param_grads_ref["params"][name], rtol=1e-5, atol=1e-4)


def _assert_equals_torch(layer, variables, x, conv, weight, kernel_grad_of):
    """The layer's output and gradients (`_value_and_grads`) equal those of torch layer `conv` in float64, given
    the flax kernel in torch's layout (`weight`) and the flax bias; `kernel_grad_of` maps torch's weight gradient
    back to the flax kernel's layout."""
    torch = pytest.importorskip("torch")
    y, (param_grads, x_grad) = _value_and_grads(layer.apply, variables, x)
    conv = conv.double()
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
        conv.bias.copy_(torch.from_numpy(np.asarray(variables["params"]["bias"], np.float64)))
    x_torch = torch.from_numpy(np.asarray(x, np.float64).transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    y_torch = conv(x_torch)
    n, c, h, w = y_torch.shape
    weights = torch.sin(torch.arange(y_torch.numel(), dtype=torch.float64)).reshape(n, h, w, c).permute(0, 3, 1, 2)
    (y_torch * weights).sum().backward()

    np.testing.assert_allclose(y, y_torch.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_grad, x_torch.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-4)
    kernel_grad = kernel_grad_of(conv.weight.grad.numpy())
    np.testing.assert_allclose(param_grads["params"]["kernel"], kernel_grad, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(param_grads["params"]["bias"], conv.bias.grad.numpy(), rtol=1e-5, atol=1e-4)


def test_phase_conv_transpose_equals_torch_conv_transpose2d():
    torch = pytest.importorskip("torch")
    layer, variables, x = _phase_case("phases")
    kernel = np.asarray(variables["params"]["kernel"], np.float64)
    # torch's ConvTranspose2d(4, stride=2, padding=1) flips the kernel: weight [I, O, H, W] = flax kernel flipped.
    conv = torch.nn.ConvTranspose2d(3, 4, 4, stride=2, padding=1)
    weight = kernel[::-1, ::-1].transpose(2, 3, 0, 1)
    _assert_equals_torch(layer, variables, x, conv, weight, lambda grad: grad.transpose(2, 3, 0, 1)[::-1, ::-1])
    assert layer.apply(variables, x).shape == (2, 10, 12, 4)


def test_upsample_transpose_keeps_the_conv_transpose_parameter_path():
    variables = Upsample2x(features=5, mode="transpose").init(jax.random.PRNGKey(0), jnp.ones((1, 4, 4, 3)))
    assert jax.tree_util.tree_map(jnp.shape, variables["params"]) == {
        "ConvTranspose_0": {"kernel": (4, 4, 3, 5), "bias": (5,)}
    }


def _down_case(implementation, height, width, use_bias=True):
    """(layer, variables, x) for a DownConv4x4 with a non-zero bias on a [2, height, width, 3] input."""
    x = jax.random.normal(jax.random.PRNGKey(1), (2, height, width, 3))
    layer = DownConv4x4(5, use_bias=use_bias, implementation=implementation)
    variables = jax.tree_util.tree_map(lambda v: v, layer.init(jax.random.PRNGKey(0), x))
    if use_bias:
        variables["params"]["bias"] = jax.random.normal(jax.random.PRNGKey(2), (5,))
    return layer, variables, x


@pytest.mark.parametrize("implementation", ["space_to_depth", "native", "auto"])
@pytest.mark.parametrize("height,width,use_bias", [(8, 6, True), (7, 6, True), (8, 10, False)])
def test_down_conv_equals_nn_conv(implementation, height, width, use_bias):
    """Same parameters, initial values, outputs and gradients as the nn.Conv it replaces (odd sizes: native)."""
    layer, variables, x = _down_case(implementation, height, width, use_bias)
    reference = nn.Conv(5, (4, 4), strides=(2, 2), padding=1, use_bias=use_bias)
    reference_init = reference.init(jax.random.PRNGKey(0), x)
    assert jax.tree_util.tree_map(jnp.shape, reference_init) == jax.tree_util.tree_map(jnp.shape, variables)
    np.testing.assert_array_equal(
        layer.init(jax.random.PRNGKey(0), x)["params"]["kernel"], reference_init["params"]["kernel"]
    )
    y, (param_grads, x_grad) = _value_and_grads(layer.apply, variables, x)
    y_ref, (param_grads_ref, x_grad_ref) = _value_and_grads(reference.apply, variables, x)
    assert y.shape == (2, height // 2, width // 2, 5)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_grad, x_grad_ref, rtol=1e-5, atol=1e-4)
    for name in param_grads["params"]:
        np.testing.assert_allclose(param_grads["params"][name], param_grads_ref["params"][name], rtol=1e-5, atol=1e-4)


def test_down_conv_equals_torch_conv2d():
    torch = pytest.importorskip("torch")
    layer, variables, x = _down_case("space_to_depth", 8, 6)
    weight = np.asarray(variables["params"]["kernel"], np.float64).transpose(3, 2, 0, 1)  # [O, I, H, W].
    conv = torch.nn.Conv2d(3, 5, 4, stride=2, padding=1)
    _assert_equals_torch(layer, variables, x, conv, weight, lambda grad: grad.transpose(2, 3, 1, 0))
    assert layer.apply(variables, x).shape == (2, 4, 3, 5)


def test_down_conv_keeps_the_nn_conv_parameter_paths():
    from animejax.models import dcgan

    encoder_params = AutoEncoder(image_size=32, latent_dim=8, base_channels=4, max_channels=16).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))
    )["params"]["encoder"]
    assert sorted(encoder_params) == ["Conv_0", "Conv_1", "Conv_2", "Dense_0"]
    critic = dcgan.Discriminator(image_size=32, base_channels=4, normalization="batch")
    variables = critic.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    assert jax.tree_util.tree_map(jnp.shape, variables["params"])["Conv_1"] == {"kernel": (4, 4, 4, 8)}
