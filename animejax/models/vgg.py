"""VGG19 (Simonyan & Zisserman 2015) convolutional features in Flax, as torchvision's `vgg19().features`.

A port of torchvision's `vgg19().features` for perceptual losses: SRGAN's content loss (Ledig et al. 2017) compares
"VGG54" features, the output of relu5_4 (the 4th ReLU of the 5th block, before its max pool). Layers are named
after the paper's blocks (conv1_1, relu1_1, ..., pool5) and `torchvision_index` gives each one's index in
`vgg19().features`, so the ImageNet weights' `features.<index>.weight/bias` map one to one onto the submodules
`conv<block>_<n>` (`animejax.pretrained.vgg.convert_to_flax`). Layout is NHWC.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from animejax.errors import ConfigError

# torchvision's cfgs["E"]: output channels of each 3x3 conv (followed by a ReLU), "M" a 2x2 max pool.
_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")

# torchvision's input normalisation (on images in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Smallest input that every layer (pool5 included) runs on: 5 halvings leave 1x1.
MIN_INPUT_SIZE = 32


def _layers() -> tuple[tuple[str, int], ...]:
    """(name, output channels) of each module of `vgg19().features`, in order."""
    layers, block, conv, channels = [], 1, 0, 3
    for item in _CONFIG:
        if item == "M":
            layers.append((f"pool{block}", channels))
            block, conv = block + 1, 0
        else:
            conv, channels = conv + 1, item
            layers += [(f"conv{block}_{conv}", channels), (f"relu{block}_{conv}", channels)]
    return tuple(layers)


_LAYERS = _layers()
# Layer names in the order of `vgg19().features`: the position of a name is its torchvision index.
LAYER_NAMES: tuple[str, ...] = tuple(name for name, _ in _LAYERS)
_INDEX = {name: index for index, name in enumerate(LAYER_NAMES)}


def torchvision_index(layer_name: str) -> int:
    """The index of `layer_name` in torchvision's `vgg19().features` (conv1_1 -> 0, relu2_2 -> 8, relu5_4 -> 35).

    Raises:
        ConfigError: an unknown name (the message lists the valid ones).
    """
    if layer_name not in _INDEX:
        raise ConfigError(f"Unknown VGG19 layer {layer_name!r}; choose one of {', '.join(LAYER_NAMES)}.")
    return _INDEX[layer_name]


def layer_channels(layer_name: str) -> int:
    """The number of feature channels of `layer_name`'s output (e.g. 512 for relu5_4)."""
    return _LAYERS[torchvision_index(layer_name)][1]


def conv_layers(last_layer: str = "relu5_4") -> tuple[str, ...]:
    """The conv layers (the ones with weights) up to and including `last_layer`, in order."""
    return tuple(name for name in LAYER_NAMES[: torchvision_index(last_layer) + 1] if name.startswith("conv"))


class VGG19Features(nn.Module):
    """torchvision's `vgg19().features[: torchvision_index(last_layer) + 1]`, ImageNet normalisation included.

    Attributes:
        last_layer: the layer whose output is returned, one of `LAYER_NAMES` (default relu5_4, SRGAN's VGG54).
        dtype: the computation dtype of the convolutions (e.g. bfloat16); params and the output are float32.
        precision: the convolutions' matmul precision. None is the backend's default (on GPUs TF32, as PyTorch's
            cuDNN convolutions use by default), enough for a loss; HIGHEST keeps full float32.
    """

    last_layer: str = "relu5_4"
    dtype: Any = jnp.float32
    precision: jax.lax.Precision | None = None

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """Features of `last_layer`.

        Args:
            images: [B, H, W, 3] in [-1, 1]. Each max pool halves H and W (flooring), so pool5 needs at least
                32 x 32.

        Returns:
            [B, h, w, C] float32, e.g. [B, H/16, W/16, 512] for relu5_4.
        """
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"VGG19Features expects [B, H, W, 3] images, got shape {images.shape}.")
        last = torchvision_index(self.last_layer)
        x = (images.astype(jnp.float32) + 1.0) / 2.0  # [-1, 1] -> [0, 1].
        x = (x - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / jnp.asarray(IMAGENET_STD, jnp.float32)
        x = x.astype(self.dtype)
        for name, channels in _LAYERS[: last + 1]:
            if name.startswith("conv"):
                x = nn.Conv(
                    channels,
                    (3, 3),
                    padding=((1, 1), (1, 1)),
                    dtype=self.dtype,
                    param_dtype=jnp.float32,
                    precision=self.precision,
                    name=name,
                )(x)
            elif name.startswith("relu"):
                x = nn.relu(x)
            else:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))  # padding 0, floor mode, as torch's MaxPool2d(2, 2).
        return x.astype(jnp.float32)


def variable_shapes(last_layer: str = "relu5_4") -> dict:
    """The `{"params": {conv name: {"kernel": HWIO, "bias"}}}` tree of ShapeDtypeStructs, without running anything."""
    module = VGG19Features(last_layer)
    images = jnp.zeros((1, MIN_INPUT_SIZE, MIN_INPUT_SIZE, 3), jnp.float32)
    return jax.eval_shape(lambda: module.init(jax.random.key(0), images))
