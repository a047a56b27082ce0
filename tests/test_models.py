"""Network shapes and the depth-to-space layout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animejax.models.autoencoder import AutoEncoder, level_channels
from animejax.models.layers import Upsample2x, depth_to_space, nearest_upsample_2x


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
