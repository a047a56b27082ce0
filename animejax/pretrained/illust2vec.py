"""Illustration2Vec's released feature weights: where to get them, the Caffe layout checked and converted to Flax.

The weights are the original project's `illust2vec_ver200.caffemodel` (its v2.0.0 release, about 1 GB, most of
it the 50176 x 4096 `encode1` matrix). `load_illust2vec` finds the file (`download.resolve`: a local path, the
cache, or a download), reads it without Caffe (`caffemodel.load_caffemodel`), checks that its layers are the
Illustration2Vec layout and converts them for `animejax.metrics.illust2vec.Illust2Vec` (`convert_to_flax`).
The conversion runs once: its result is cached beside the file as a Flax msgpack checkpoint named by the
file's sha256, which also keys the reference statistics of `fid_i2v`.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from animejax.metrics.illust2vec import CONV_NAMES, POOLED, Illust2Vec, check_feature_layer
from animejax.pretrained import download
from animejax.pretrained.caffemodel import COMPUTE_TYPES, CaffeLayer, CaffeModelError, CaffeNet, load_caffemodel

I2V_WEIGHTS_URL = "https://github.com/rezoo/illustration2vec/releases/download/v2.0.0/illust2vec_ver200.caffemodel"
I2V_WEIGHTS_FILENAME = "illust2vec_ver200.caffemodel"
# No sha256 is pinned: the original project publishes the file only as a release asset (and earlier on
# illustration2vec.net) with no checksum, and no public source found pins one. Any content is accepted; the
# digest computed here keys the converted checkpoint and the fid_i2v reference statistics, and is reported.
I2V_WEIGHTS_SHA256 = None
I2V_WEIGHTS = download.WeightsFile(
    description="Illustration2Vec feature weights",
    file_name=I2V_WEIGHTS_FILENAME,
    url=I2V_WEIGHTS_URL,
    sha256=I2V_WEIGHTS_SHA256,
    how_to_get=(
        "download {url} (about 1 GB) on a machine with internet access and either put it at {cache_path} "
        "or pass its path with --config.eval.i2v_path=/path/to/{file_name}."
    ),
)
CONVERTED_VERSION = 1  # Part of the converted checkpoint's name: bump when the conversion changes.

log = logging.getLogger(__name__)


def _expected_sequence() -> list[tuple[str, str | None]]:
    """(type, name or None when any name will do) of the compute layers from conv1_1 to encode1."""
    sequence: list[tuple[str, str | None]] = []
    for name in CONV_NAMES:
        sequence += [("Convolution", name), ("ReLU", None)]
        if name in POOLED:
            sequence.append(("Pooling", None))
    return sequence + [("InnerProduct", "encode1")]


def _layout_problems(layer: CaffeLayer, in_channels: int) -> list[str]:
    """What in one compute layer differs from the Illustration2Vec prototxt."""
    p, where = layer.params, f"{layer.name} ({layer.type})"
    if layer.type == "Convolution":
        wanted = {"kernel": (3, 3), "stride": (1, 1), "pad": (1, 1), "dilation": (1, 1), "group": 1, "bias_term": True}
        problems = [f"{where}: {key}={p[key]}, expected {value}" for key, value in wanted.items() if p[key] != value]
        out, shapes = p["num_output"], [blob.shape for blob in layer.blobs]
        if len(shapes) != 2 or shapes[0] != (out, in_channels, 3, 3) or math.prod(shapes[1]) != out:
            problems.append(f"{where}: blobs {shapes}, expected a weight ({out}, {in_channels}, 3, 3) and {out} biases")
        return problems
    if layer.type == "Pooling":
        wanted = {"pool": "MAX", "kernel": (2, 2), "stride": (2, 2), "pad": (0, 0), "global_pooling": False}
        return [f"{where}: {key}={p[key]}, expected {value}" for key, value in wanted.items() if p[key] != value]
    if layer.type == "ReLU":
        return [f"{where}: negative_slope={p['negative_slope']}, expected 0"] if p["negative_slope"] != 0 else []
    if layer.type == "InnerProduct":
        wanted = {"bias_term": True, "axis": 1, "transpose": False}
        problems = [f"{where}: {key}={p[key]}, expected {value}" for key, value in wanted.items() if p[key] != value]
        out, shapes = p["num_output"], [blob.shape for blob in layer.blobs]
        if len(shapes) != 2 or layer.blobs[0].size % out or layer.blobs[1].size != out:
            problems.append(f"{where}: blobs {shapes} do not fit num_output={out}")
        return problems
    return []


def convert_to_flax(net: CaffeNet) -> tuple[dict[str, Any], dict]:
    """An Illustration2Vec `.caffemodel` -> (`Illust2Vec` fields, `{"params"}` of float32 numpy arrays).

    The compute layers from conv1_1 to encode1 (dropouts aside) must be the original layout, each reading the
    previous one's output blob: conv kernels 3x3/pad 1/stride 1, ReLU, 2x2/stride 2 max pools where the
    prototxt has them, and the inner product encode1. Widths are read from the blobs (so narrower networks of
    the same layout convert too) and the input size from encode1's input, (size / 32)^2 x conv6_3's width.
    Layers after encode1 (encode1neuron, the tag head encode2, losses) are not used. Convolution weights go
    from OIHW to HWIO; encode1's [out, in] weight becomes the [in, out] kernel over the (C, H, W) flattening
    that `Illust2Vec` reproduces.

    Raises:
        CaffeModelError: the layers, their settings, wiring or blob shapes differ from the layout (all listed).
    """
    names = [layer.name for layer in net.layers]
    if "encode1" not in names:
        raise CaffeModelError(f"The file has no encode1 layer; is it illust2vec_ver200.caffemodel? Layers: {names}")
    first = next((i for i, layer in enumerate(net.layers) if layer.type in COMPUTE_TYPES), 0)
    chain = net.layers[first : names.index("encode1") + 1]
    compute = [layer for layer in chain if layer.type != "Dropout"]
    found = [(layer.type, layer.name) for layer in compute]
    expected = _expected_sequence()
    problems = []
    if len(found) != len(expected) or any(
        kind != want_kind or (want_name is not None and name != want_name)
        for (kind, name), (want_kind, want_name) in zip(found, expected)
    ):
        problems.append(
            "layers up to encode1 are "
            + ", ".join(f"{name} ({kind})" for kind, name in found)
            + "; expected "
            + ", ".join(f"{name or '*'} ({kind})" for kind, name in expected)
        )
    for previous, layer in zip(chain, chain[1:]):
        if not layer.bottom or not previous.top or layer.bottom[0] != previous.top[0]:
            problems.append(f"{layer.name} reads {layer.bottom}, not {previous.name}'s output {previous.top}")
    channels, in_channels = [], 3
    if not problems:
        for layer in compute:
            problems += _layout_problems(layer, in_channels)
            if layer.type == "Convolution":
                in_channels = layer.params["num_output"]
                channels.append(in_channels)
    encode1 = chain[-1]
    input_size = 0
    if not problems:
        spatial = encode1.blobs[0].size // encode1.params["num_output"] / channels[-1]
        side = math.isqrt(int(spatial)) if spatial == int(spatial) else 0
        if side * side != spatial:
            inputs = encode1.blobs[0].size // encode1.params["num_output"]
            problems.append(f"encode1 takes {inputs} inputs, not a square map of conv6_3's {channels[-1]} channels")
        input_size = 32 * side
    if problems:
        raise CaffeModelError("The weights do not fit Illustration2Vec's layout: " + "; ".join(problems) + ".")
    params: dict[str, dict[str, np.ndarray]] = {}
    for layer in compute:
        if layer.type == "Convolution":
            kernel, bias = layer.blobs
            params[layer.name] = {"kernel": kernel.transpose(2, 3, 1, 0).copy(), "bias": bias.reshape(-1).copy()}
    weight, bias = encode1.blobs
    out_dim = encode1.params["num_output"]
    params["encode1"] = {"kernel": weight.reshape(out_dim, -1).T.copy(), "bias": bias.reshape(-1).copy()}
    fields = {"channels": tuple(channels), "encode_dim": out_dim, "input_size": input_size}
    return fields, {"params": params}


def converted_path(cache_dir: str, sha256: str) -> str:
    """Where the converted checkpoint of the caffemodel with this sha256 is cached."""
    stem = os.path.splitext(I2V_WEIGHTS_FILENAME)[0]
    return os.path.join(cache_dir, f"{stem}-{sha256[:16]}-flax-v{CONVERTED_VERSION}.msgpack")


def _save_converted(path: str, fields: dict, variables: dict) -> None:
    """Writes the converted checkpoint atomically (temporary file, then rename)."""
    payload = {"fields": {key: np.asarray(value) for key, value in fields.items()}, "variables": variables}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".msgpack")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(serialization.msgpack_serialize(payload))
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def _load_converted(path: str) -> tuple[dict, dict]:
    with open(path, "rb") as f:
        payload = serialization.msgpack_restore(f.read())
    fields = payload["fields"]
    fields = {
        "channels": tuple(int(c) for c in np.asarray(fields["channels"])),
        "encode_dim": int(fields["encode_dim"]),
        "input_size": int(fields["input_size"]),
    }
    return fields, payload["variables"]


def load_illust2vec(
    local_path: str | None = None,
    cache_dir: str | None = None,
    feature_layer: str = "encode1",
    url: str | None = None,
):
    """The Illustration2Vec feature network and its released weights, ready for `module.apply(variables, images)`.

    Args:
        local_path: a caffemodel the user has (e.g. `config.eval.i2v_path`), or None to use the cache or download.
        cache_dir: the download cache and the converted checkpoint's folder; None means
            `download.default_cache_dir()`.
        feature_layer: one of `animejax.metrics.illust2vec.FEATURE_LAYERS` (checked before anything is read).
        url: where to download from instead of the released URL (a mirror, or a test server).

    Returns:
        (Illust2Vec module, {"params"} of float32 jax arrays, the caffemodel's hex sha256).

    Raises:
        ValueError: an unknown feature layer.
        download.WeightsError: the file is missing or cannot be downloaded.
        CaffeModelError: the file is not a readable caffemodel of the Illustration2Vec layout.
    """
    check_feature_layer(feature_layer)
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir or download.default_cache_dir()))
    path = download.resolve(I2V_WEIGHTS, local_path, cache_dir, url)
    digest = download.file_sha256(path)
    converted = converted_path(cache_dir, digest)
    if os.path.isfile(converted):
        fields, variables = _load_converted(converted)
    else:
        log.info("Converting %s to a Flax checkpoint at %s (once)", path, converted)
        fields, variables = convert_to_flax(load_caffemodel(path))
        _save_converted(converted, fields, variables)
    module = Illust2Vec(feature_layer=feature_layer, **fields)
    return module, jax.tree.map(jnp.asarray, variables), digest
