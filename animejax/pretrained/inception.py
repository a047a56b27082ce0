"""The FID Inception's released weights: where to get them, and pytorch-fid's names converted to Flax variables.

The weights are pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, the TensorFlow FID graph
`inception-2015-12-05` ported to PyTorch. `load_fid_inception` finds the file (`download.resolve`), reads it
without torch (`torch_pickle.load_torch_state_dict`) and converts it for `FIDInceptionV3` (`convert_to_flax`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from animejax.metrics.inception import FIDInceptionV3, variable_shapes
from animejax.pretrained import download
from animejax.pretrained.torch_pickle import CheckpointFormatError, load_torch_state_dict

FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
# Full sha256 of the released file (95,628,359 bytes). pytorch-fid publishes only the
# torch.hub-style prefix in the file name ("6726825d") and does not check it itself.
# The full digest is the one several unrelated public projects pin in their asset
# checks (found with code search for "pt_inception-2015-12-05-6726825d" and
# "6726825d0af5f729"), both for this file and for torch-fidelity's re-host of the
# same 95,628,359 bytes (`weights-inception-2015-12-05-6726825d.pth`, release
# v0.2.0); another project's notes give this file as 95,628,359 bytes with sha256
# prefix 6726825d. It starts with the published prefix, so a file that passes this
# check also passes torch.hub's. Not checked here against a download (no internet).
FID_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
# A local file with another digest is used with a warning (re-saved copies load); a wrong cached file is an error
# (the 96 MB download is not repeated silently).
FID_WEIGHTS = download.WeightsFile(
    description="FID Inception weights",
    file_name=FID_WEIGHTS_FILENAME,
    url=FID_WEIGHTS_URL,
    sha256=FID_WEIGHTS_SHA256,
    how_to_get=(
        "download {url} (sha256 {sha256}) on a machine with internet access and either put it at {cache_path} "
        "or pass its path with --config.eval.inception_path=/path/to/{file_name}."
    ),
)

_TORCH_TO_FLAX = {  # PyTorch suffix -> (collection, Flax leaf path suffix)
    "conv.weight": ("params", ("conv", "kernel")),
    "bn.weight": ("params", ("bn", "scale")),
    "bn.bias": ("params", ("bn", "bias")),
    "bn.running_mean": ("batch_stats", ("bn", "mean")),
    "bn.running_var": ("batch_stats", ("bn", "var")),
}
# Unused for pool3 features in inference: the 1008-way classifier and BN's step counters.
_IGNORED_SUFFIXES = ("num_batches_tracked",)
_IGNORED_PREFIXES = ("fc.",)


def _flatten(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, prefix + (key,)))
        else:
            flat[prefix + (key,)] = value
    return flat


def _unflatten(flat: dict[tuple[str, ...], Any]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def convert_to_flax(state_dict: dict[str, np.ndarray]) -> dict[str, dict]:
    """pytorch-fid's Inception state dict -> `{"params", "batch_stats"}` for `FIDInceptionV3`.

    Conv weights go from OIHW to HWIO; BatchNorm weight/bias/running_mean/
    running_var become scale/bias/mean/var. `fc.*` and `*.num_batches_tracked`
    are dropped (not used for pool3 features in inference). The result is checked
    against the module's variable shapes.

    Args:
        state_dict: names as in `fid_inception_v3().state_dict()`, e.g.
            "Mixed_5b.branch1x1.conv.weight", arrays as numpy.

    Returns:
        Nested dicts of float32 numpy arrays.

    Raises:
        CheckpointFormatError: names or shapes do not fit the FID Inception.
    """
    flat: dict[tuple[str, ...], np.ndarray] = {}
    unexpected = []
    for name, value in state_dict.items():
        if name.endswith(_IGNORED_SUFFIXES) or name.startswith(_IGNORED_PREFIXES):
            continue
        parts = name.split(".")
        suffix = ".".join(parts[-2:])
        if suffix not in _TORCH_TO_FLAX:
            unexpected.append(name)
            continue
        collection, leaf = _TORCH_TO_FLAX[suffix]
        array = np.asarray(value, np.float32)
        if suffix == "conv.weight":
            array = array.transpose(2, 3, 1, 0) if array.ndim == 4 else array  # OIHW -> HWIO.
        flat[(collection, *parts[:-2], *leaf)] = array
    expected = {path: leaf.shape for path, leaf in _flatten(variable_shapes()).items()}
    missing = sorted(".".join(path) for path in expected.keys() - flat.keys())
    unexpected += sorted(".".join(path) for path in flat.keys() - expected.keys())
    wrong = [
        f"{'.'.join(path)}: {flat[path].shape} (want {expected[path]})"
        for path in sorted(expected.keys() & flat.keys())
        if flat[path].shape != expected[path]
    ]
    if missing or unexpected or wrong:
        details = "; ".join(
            f"{label} ({len(items)}): {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if items
        )
        raise CheckpointFormatError(f"The weights do not fit pytorch-fid's FID Inception: {details}.")
    return _unflatten(flat)


def flax_to_torch_state_dict(variables: dict) -> dict[str, np.ndarray]:
    """The inverse of `convert_to_flax`: PyTorch names and layouts (without `fc.*` and step counters)."""
    flax_to_torch = {(collection, leaf): suffix for suffix, (collection, leaf) in _TORCH_TO_FLAX.items()}
    state = {}
    for (collection, *path), value in _flatten(jax.device_get(variables)).items():
        module, leaf = tuple(path[:-2]), tuple(path[-2:])
        suffix = flax_to_torch[(collection, leaf)]
        array = np.asarray(value)
        if suffix == "conv.weight":
            array = array.transpose(3, 2, 0, 1)  # HWIO -> OIHW.
        state[".".join(module + (suffix,))] = array
    return state


def load_fid_inception(local_path: str | None = None, cache_dir: str | None = None):
    """The FID Inception module and its released weights, ready for `module.apply(variables, images)`.

    Args:
        local_path: a weights file the user has (e.g. `config.eval.inception_path`), or None.
        cache_dir: the download cache (e.g. `config.eval.weights_cache_dir`); None means
            `download.default_cache_dir()`.

    Returns:
        (FIDInceptionV3(), {"params", "batch_stats"} of jax arrays).

    Raises:
        download.WeightsError: the file is missing, cannot be downloaded or fails its checksum.
        CheckpointFormatError: the file is not pytorch-fid's Inception state dict.
    """
    path = download.resolve(FID_WEIGHTS, local_path, cache_dir)
    variables = convert_to_flax(load_torch_state_dict(path))
    return FIDInceptionV3(), jax.tree.map(jnp.asarray, variables)
