"""The Illustration2Vec feature network in Flax: images in [-1, 1] to its 4096-d `encode1` features.

Illustration2Vec (Saito and Matsui, "Illustration2Vec: a semantic vector representation of illustrations",
SIGGRAPH Asia 2015 Technical Briefs) is a VGG-style network trained on anime illustrations; its feature model
`illust2vec_ver200.caffemodel` is what the GANime project (a residual DCGAN on anime faces) used for an
anime-specific FID, through the original project's `extract_feature`, which returns the `encode1` layer.

The layout is the original prototxt's: 3x3 convolutions (pad 1) with ReLU, 2x2 max pools (stride 2, Caffe's
ceil rounding) after conv1_1, conv2_1, conv3_2, conv4_2 and conv5_2, then conv6_1..conv6_3 with ReLU (and a
dropout, the identity in inference), and `encode1`, an inner product over the 7x7x1024 map flattened in
Caffe's channel-major (C, H, W) order. `encode1neuron` is its sigmoid (the original's binary features).

Input preprocessing is the original's (`i2v/chainer_i2v.py`, the path GANime ran): the RGB image in [0, 255]
resized to 224x224 by `skimage.transform.resize(order=1, mode="constant")` on the image min-max scaled to
[0, 1] (so pixels beyond the border count as the image's minimum), then BGR order and the mean pixel
(B, G, R) = (164.76, 167.48, 181.14) subtracted. The resize is linear once the minimum is taken out, so it runs
here as two small matrix products per image (`resize_operator`), on device, inside the feature jit.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INPUT_SIZE = 224
FEATURE_DIM = 4096
# The mean pixel the original subtracts after the RGB -> BGR swap, in B, G, R order (i2v/chainer_i2v.py).
MEAN_BGR = (164.76139251, 167.47864617, 181.13838569)
CONV_NAMES = (
    "conv1_1",
    "conv2_1",
    "conv3_1",
    "conv3_2",
    "conv4_1",
    "conv4_2",
    "conv5_1",
    "conv5_2",
    "conv6_1",
    "conv6_2",
    "conv6_3",
)
CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512, 1024, 1024, 1024)
POOLED = {"conv1_1": "pool1", "conv2_1": "pool2", "conv3_2": "pool3", "conv4_2": "pool4", "conv5_2": "pool5"}
# Feature layers and what they are; "encode1" is what the original's `extract_feature`, and GANime's FID, use.
FEATURE_LAYERS = {
    "encode1": "encode1 (inner product over conv6_3, 4096-d, before the sigmoid; i2v's extract_feature)",
    "encode1neuron": "encode1neuron (sigmoid of encode1, 4096-d; i2v's binary features before thresholding)",
}
_GAUSSIAN_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default, used by skimage's anti-aliasing.


def check_feature_layer(layer: str) -> str:
    """`layer` if it is one of FEATURE_LAYERS, else ValueError naming them."""
    if layer not in FEATURE_LAYERS:
        choices = ", ".join(FEATURE_LAYERS)
        raise ValueError(f"Unknown Illustration2Vec feature layer {layer!r}; choose one of {choices}.")
    return layer


def _gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """`scipy.ndimage.gaussian_filter1d(x, sigma, mode="constant", cval=0)` as a [size, size] matrix."""
    radius = int(_GAUSSIAN_TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    taps /= taps.sum()
    matrix = np.zeros((size, size))
    for row in range(size):
        columns = row + offsets
        inside = (columns >= 0) & (columns < size)
        matrix[row, columns[inside]] += taps[inside]
    return matrix


@functools.lru_cache(maxsize=16)
def resize_operator(in_size: int, out_size: int) -> np.ndarray:
    """The [out_size, in_size] float64 matrix of skimage's `resize(order=1, mode="constant", cval=0)` along one
    axis: a Gaussian anti-aliasing filter (sigma = (in/out - 1) / 2, zero beyond the border) when shrinking,
    then linear interpolation at half-pixel centres, source coordinate (o + 0.5) in/out - 0.5, with samples
    beyond the border taken as 0 (scipy's "grid-constant"). Rows near the border therefore sum to less than
    1: the missing weight falls on the constant. Equal sizes give the identity (skimage returns the input).
    """
    if in_size == out_size:
        return np.eye(in_size)
    scale = in_size / out_size
    matrix = np.zeros((out_size, in_size))
    for row in range(out_size):
        source = (row + 0.5) * scale - 0.5
        low = math.floor(source)
        frac = source - low
        for column, weight in ((low, 1.0 - frac), (low + 1, frac)):
            if 0 <= column < in_size:
                matrix[row, column] += weight
    if out_size < in_size:
        matrix = matrix @ _gaussian_matrix(in_size, (scale - 1.0) / 2.0)
    return matrix


def preprocess(images: jax.Array, input_size: int = INPUT_SIZE) -> jax.Array:
    """[B, H, W, 3] RGB in [-1, 1] -> [B, input_size, input_size, 3] float32 network input (BGR, mean removed).

    What `i2v/chainer_i2v.py` does to a uint8 RGB image: resize with `resize_operator` applied to the image
    minus its minimum (over pixels and channels; the original's min-max scaling, whose constant border is the
    minimum), plus the minimum; then BGR order and `MEAN_BGR` subtracted. In [0, 255] units.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"Illustration2Vec expects [B, H, W, 3] images, got shape {images.shape}.")
    pixels = (images.astype(jnp.float32) + 1.0) * 127.5
    height, width = images.shape[1:3]
    if (height, width) != (input_size, input_size):
        low = jnp.min(pixels, axis=(1, 2, 3), keepdims=True)
        rows = jnp.asarray(resize_operator(height, input_size), jnp.float32)
        columns = jnp.asarray(resize_operator(width, input_size), jnp.float32)
        hi = jax.lax.Precision.HIGHEST
        pixels = jnp.einsum("oh,bhwc->bowc", rows, pixels - low, precision=hi)
        pixels = jnp.einsum("pw,bowc->bopc", columns, pixels, precision=hi) + low
    return pixels[..., ::-1] - jnp.asarray(MEAN_BGR, jnp.float32)


def max_pool_ceil(x: jax.Array) -> jax.Array:
    """Caffe's 2x2, stride-2 max pool on NHWC: ceil rounding, so an odd side keeps its last row/column."""
    padding = ((0, x.shape[1] % 2), (0, x.shape[2] % 2))  # Padded with -inf by nn.max_pool.
    return nn.max_pool(x, (2, 2), strides=(2, 2), padding=padding)


class Illust2Vec(nn.Module):
    """Illustration2Vec's feature network up to `feature_layer`, preprocessing included.

    Attributes:
        channels: output channels of CONV_NAMES (the released network's: CHANNELS; tests use narrower ones).
        encode_dim: outputs of encode1 (4096 in the released network).
        feature_layer: one of FEATURE_LAYERS.
        input_size: the side the images are resized to (224: encode1's input is (224 / 32)^2 x 1024).
        precision: the convolutions' and matmuls' precision; HIGHEST keeps float32 on GPUs (no TF32) and TPUs.
    """

    channels: tuple[int, ...] = CHANNELS
    encode_dim: int = FEATURE_DIM
    feature_layer: str = "encode1"
    input_size: int = INPUT_SIZE
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """[B, H, W, 3] RGB in [-1, 1] (any size; resized as the original does) -> [B, encode_dim] float32."""
        check_feature_layer(self.feature_layer)
        if len(self.channels) != len(CONV_NAMES):
            raise ValueError(f"channels must give {len(CONV_NAMES)} widths, got {self.channels}")
        x = preprocess(images, self.input_size)
        for name, width in zip(CONV_NAMES, self.channels):
            x = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), precision=self.precision, name=name)(x)
            x = nn.relu(x)
            if name in POOLED:
                x = max_pool_ceil(x)
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # Caffe flattens (C, H, W).
        x = nn.Dense(self.encode_dim, precision=self.precision, name="encode1")(x)
        return nn.sigmoid(x) if self.feature_layer == "encode1neuron" else x


def init_variables(module: Illust2Vec, rng: jax.Array) -> dict:
    """Randomly initialised `{"params"}` (shapes and tests; the metric needs the released weights)."""
    return module.init(rng, jnp.zeros((1, module.input_size, module.input_size, 3), jnp.float32))


def variable_shapes(module: Illust2Vec | None = None) -> dict:
    """The `{"params"}` tree of ShapeDtypeStructs, computed without running the network."""
    module = module or Illust2Vec()
    return jax.eval_shape(lambda: init_variables(module, jax.random.key(0)))
