"""torchvision's VGG19 ImageNet weights: where to get them, and their state dict converted to Flax variables.

The weights are torchvision's `vgg19-dcbb9e9d.pth` (`VGG19_Weights.IMAGENET1K_V1`, about 548 MB, most of it the
classifier, which is not used). `load_vgg19` finds the file (`download.resolve`), reads it without torch
(`torch_pickle.load_torch_state_dict`) and converts the convolutions up to the chosen layer for
`animejax.models.vgg.VGG19Features` (`convert_to_flax`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from animejax.models.vgg import VGG19Features, conv_layers, torchvision_index, variable_shapes
from animejax.pretrained import download
from animejax.pretrained.torch_pickle import CheckpointFormatError, load_torch_state_dict

VGG19_WEIGHTS_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_WEIGHTS_FILENAME = "vgg19-dcbb9e9d.pth"
# The first 8 hex digits of the file's sha256, as torchvision publishes them in the file name and torch.hub's
# `check_hash` verifies them. The full digest is not pinned: it could not be checked against a download here.
VGG19_WEIGHTS_SHA256_PREFIX = "dcbb9e9d"
# A local file with another digest is used with a warning (re-saved copies load); a wrong cached file is an error
# (the 548 MB download is not repeated silently).
VGG19_WEIGHTS = download.WeightsFile(
    description="torchvision VGG19 ImageNet weights",
    file_name=VGG19_WEIGHTS_FILENAME,
    url=VGG19_WEIGHTS_URL,
    sha256=VGG19_WEIGHTS_SHA256_PREFIX,
    how_to_get=(
        "download {url} (sha256 starting with {sha256}) on a machine with internet access, or take the copy "
        "torch.hub keeps in ~/.cache/torch/hub/checkpoints/, and either put it at {cache_path} or pass its path "
        "with --config.srgan.vgg_path=/path/to/{file_name}."
    ),
)

# Not used by the convolutional features.
_IGNORED_PREFIXES = ("classifier.",)


def _torch_shape(leaf_name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A Flax leaf's shape in PyTorch's layout (kernel HWIO -> weight OIHW)."""
    return (shape[3], shape[2], shape[0], shape[1]) if leaf_name == "kernel" else tuple(shape)


def convert_to_flax(state_dict: dict[str, np.ndarray], last_layer: str = "relu5_4") -> dict[str, dict]:
    """torchvision's `vgg19().state_dict()` -> `{"params"}` for `VGG19Features(last_layer)`.

    `features.<i>.weight` (OIHW) becomes `params/<conv name>/kernel` (HWIO) and `features.<i>.bias`
    `params/<conv name>/bias`, where <i> is `torchvision_index(<conv name>)`, e.g. features.34 -> conv5_4.
    `classifier.*` and the convolutions after `last_layer` are dropped.

    Args:
        state_dict: names as in `torchvision.models.vgg19().state_dict()`, arrays as numpy.
        last_layer: the last layer `VGG19Features` computes (see `animejax.models.vgg.LAYER_NAMES`).

    Returns:
        Nested dicts of float32 numpy arrays.

    Raises:
        ConfigError: `last_layer` is not a VGG19 layer.
        CheckpointFormatError: a needed tensor is missing or misshapen, or a `features.*` name is not one of
            VGG19's convolutions (e.g. a vgg19_bn state dict); the message names the keys.
    """
    needed = conv_layers(last_layer)
    all_convs = {
        f"features.{torchvision_index(name)}.{leaf}" for name in conv_layers("pool5") for leaf in ("weight", "bias")
    }
    shapes = variable_shapes(last_layer)["params"]
    params: dict[str, dict[str, np.ndarray]] = {}
    missing, wrong = [], []
    for name in needed:
        index = torchvision_index(name)
        for flax_leaf, torch_leaf in (("kernel", "weight"), ("bias", "bias")):
            key = f"features.{index}.{torch_leaf}"
            want = _torch_shape(flax_leaf, shapes[name][flax_leaf].shape)
            if key not in state_dict:
                missing.append(key)
                continue
            array = np.asarray(state_dict[key], np.float32)
            if array.shape != want:
                wrong.append(f"{key}: {array.shape} (want {want})")
                continue
            params.setdefault(name, {})[flax_leaf] = array.transpose(2, 3, 1, 0) if flax_leaf == "kernel" else array
    unexpected = sorted(key for key in state_dict if not key.startswith(_IGNORED_PREFIXES) and key not in all_convs)
    if missing or unexpected or wrong:
        details = "; ".join(
            f"{label} ({len(items)}): {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if items
        )
        raise CheckpointFormatError(f"The weights do not fit torchvision's VGG19 up to {last_layer}: {details}.")
    return {"params": params}


def load_vgg19(
    path: str | None = None,
    cache_dir: str | None = None,
    last_layer: str = "relu5_4",
    url: str | None = None,
    dtype: Any = jnp.float32,
):
    """`VGG19Features(last_layer)` and torchvision's ImageNet weights, ready for `module.apply(variables, images)`.

    Args:
        path: a weights file the user has (e.g. `config.srgan.vgg_path`), or None to use the cache or download.
        cache_dir: the download cache; None means `download.default_cache_dir()`.
        last_layer: the layer whose features the module returns (default relu5_4, SRGAN's VGG54).
        url: where to download from instead of the released URL (a mirror, or a test server).
        dtype: the module's computation dtype.

    Returns:
        (VGG19Features(last_layer, dtype), {"params"} of float32 jax arrays).

    Raises:
        ConfigError: `last_layer` is not a VGG19 layer (checked before anything is downloaded).
        download.WeightsError: the file is missing, cannot be downloaded or fails its checksum.
        CheckpointFormatError: the file is not torchvision's VGG19 state dict.
    """
    torchvision_index(last_layer)
    file_path = download.resolve(VGG19_WEIGHTS, path, cache_dir, url)
    variables = convert_to_flax(load_torch_state_dict(file_path), last_layer)
    return VGG19Features(last_layer, dtype=dtype), jax.tree.map(jnp.asarray, variables)
