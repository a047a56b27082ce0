"""VGG19 features: parity with torchvision, the converter of its ImageNet weights, and sha256-prefix downloads.

Parity tests need torch and torchvision (test-only dependencies) and skip without them. No test downloads the
real weights: torchvision's VGG19 is built with seeded random weights, saved with `torch.save` and read back
through `load_vgg19` (the torch-free reader and the converter). Downloads go to a local HTTP server on
127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animejax.errors import ConfigError
from animejax.models import vgg
from animejax.pretrained import download
from animejax.pretrained import vgg as pretrained_vgg
from animejax.pretrained.download import MissingWeightsError, WeightsChecksumError
from animejax.pretrained.torch_pickle import CheckpointFormatError
from tests.local_server import CountingServer

VGG19_WEIGHTS = pretrained_vgg.VGG19_WEIGHTS


def _torch():
    return pytest.importorskip("torch", reason="torch is a test-only dependency (parity reference)")


def _torchvision_vgg19():
    _torch()
    return pytest.importorskip("torchvision.models", reason="torchvision is a test-only dependency").vgg19


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Requests to the local server must not go through a proxy set in the environment."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def torch_vgg(tmp_path_factory):
    """torchvision's VGG19 with seeded random weights, and its state dict saved as a .pth.

    torchvision initialises conv biases to zero; they are refilled with random values so that the biases'
    conversion is tested too. The classifier's two large weight matrices (411 MB and 67 MB) are left out of
    the file to keep it small; its other tensors stay in, for the converter to ignore. The file is written in
    PyTorch's legacy (pre-1.6, non-zip) format, as the released 2017 file is.
    """
    torch = _torch()
    torch.manual_seed(0)
    model = _torchvision_vgg19()(weights=None).eval()
    with torch.no_grad():
        for layer in model.features:
            if isinstance(layer, torch.nn.Conv2d):
                layer.bias.copy_(torch.randn(layer.bias.shape) * 0.1)
    state = {k: v for k, v in model.state_dict().items() if k not in ("classifier.0.weight", "classifier.3.weight")}
    path = str(tmp_path_factory.mktemp("weights") / "random_vgg19.pth")
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return model, {name: tensor.numpy() for name, tensor in state.items()}, path


def _images(size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1.0, 1.0, (2, size, size, 3)).astype(np.float32)


def _torch_features(model, images: np.ndarray, layer: str) -> np.ndarray:
    """torchvision's `features[: index + 1]` on the ImageNet-normalised images, as NHWC."""
    torch = _torch()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    mean = torch.tensor(vgg.IMAGENET_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(vgg.IMAGENET_STD).reshape(1, 3, 1, 1)
    with torch.no_grad():
        out = model.features[: vgg.torchvision_index(layer) + 1](((x + 1) / 2 - mean) / std)
    return out.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("layer", ["relu1_2", "relu2_2", "conv3_1", "relu5_4", "pool5"])
def test_features_match_torchvision(torch_vgg, layer):
    """Ours (weights read without torch) vs torchvision's `features[: index + 1]` on the same 2 x 32 x 32 images.

    Tolerance: max |ours - torchvision| <= 1e-4 * max |torchvision| for the layer (scale-relative: random-weight
    activations grow or shrink with depth; float32 rounding is relative to that scale). Measured on CPU: at most
    1.0e-6 of the scale (scales 0.43 to 1.8, so also under 2e-6 absolute).
    """
    model, _, path = torch_vgg
    images = _images()
    expected = _torch_features(model, images, layer)
    module, variables = pretrained_vgg.load_vgg19(path, last_layer=layer)
    module = module.clone(precision=jax.lax.Precision.HIGHEST)  # Full float32 on GPUs too (default: TF32).
    assert sorted(variables["params"]) == sorted(vgg.conv_layers(layer))
    features = np.asarray(jax.jit(module.apply)(variables, jnp.asarray(images)))
    assert features.shape == expected.shape and features.dtype == np.float32
    assert features.shape[-1] == vgg.layer_channels(layer)
    scale = np.abs(expected).max()
    assert scale > 0 and np.isfinite(expected).all()
    error = np.abs(features - expected).max() / scale
    print(f"{layer}: shape {features.shape}, scale {scale:.3g}, max abs error {error * scale:.3g} ({error:.2g} rel)")
    assert error <= 1e-4


def test_zip_format_file_loads_the_same(torch_vgg, tmp_path):
    """A copy re-saved by PyTorch >= 1.6 (zip format) gives the same variables."""
    torch = _torch()
    model, state, path = torch_vgg
    zip_path = str(tmp_path / "resaved.pth")
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, zip_path)
    _, expected = pretrained_vgg.load_vgg19(path, last_layer="relu2_2")
    _, variables = pretrained_vgg.load_vgg19(zip_path, last_layer="relu2_2")
    jax.tree.map(np.testing.assert_array_equal, variables, expected)


def test_bfloat16_features_stay_close(torch_vgg):
    """bfloat16 convolutions: float32 output within a few percent of the feature scale."""
    model, _, path = torch_vgg
    images = _images()
    expected = _torch_features(model, images, "relu2_2")
    module, variables = pretrained_vgg.load_vgg19(path, last_layer="relu2_2", dtype=jnp.bfloat16)
    features = np.asarray(jax.jit(module.apply)(variables, jnp.asarray(images)))
    assert features.dtype == np.float32
    assert np.abs(features - expected).max() <= 5e-2 * np.abs(expected).max()


def test_layer_names_follow_torchvision_features(torch_vgg):
    """Every name's kind is the module at its index in `vgg19().features`, with that module's channels."""
    torch = _torch()
    model, _, _ = torch_vgg
    assert len(vgg.LAYER_NAMES) == len(model.features) == 37
    kinds = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}
    channels = 3
    for index, (name, module) in enumerate(zip(vgg.LAYER_NAMES, model.features)):
        assert vgg.torchvision_index(name) == index
        assert isinstance(module, kinds[name[:4]]), (name, module)
        channels = module.out_channels if isinstance(module, torch.nn.Conv2d) else channels
        assert vgg.layer_channels(name) == channels, name
    assert vgg.torchvision_index("relu5_4") == 35 and vgg.torchvision_index("relu2_2") == 8


def test_unknown_layer_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="relu5_5.*conv1_1, relu1_1, .*relu5_4, pool5"):
        vgg.torchvision_index("relu5_5")
    with pytest.raises(ConfigError, match="choose one of"):
        vgg.VGG19Features("fc7").init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ConfigError, match="choose one of"):  # Before looking for (or downloading) the file.
        pretrained_vgg.load_vgg19(str(tmp_path / "nope.pth"), last_layer="VGG54")


def test_variable_shapes():
    params = vgg.variable_shapes("relu2_2")["params"]
    assert sorted(params) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2"]
    assert params["conv2_1"]["kernel"].shape == (3, 3, 64, 128) and params["conv2_1"]["bias"].shape == (128,)
    assert len(vgg.variable_shapes()["params"]) == 16


# --- convert_to_flax: clear errors ------------------------------------------------------------------------------


def test_converter_names_a_missing_key(torch_vgg):
    _, state, _ = torch_vgg
    state = dict(state)
    del state["features.7.bias"]  # conv2_2.
    with pytest.raises(CheckpointFormatError, match=r"missing \(1\): features\.7\.bias"):
        pretrained_vgg.convert_to_flax(state, "relu2_2")
    assert set(pretrained_vgg.convert_to_flax(state, "relu2_1")["params"]) == {"conv1_1", "conv1_2", "conv2_1"}


def test_converter_names_a_wrong_shape_and_unexpected_keys(torch_vgg):
    _, state, _ = torch_vgg
    state = dict(state)
    state["features.0.weight"] = state["features.0.weight"].transpose(2, 3, 1, 0)  # Already HWIO.
    state["features.1.running_mean"] = np.zeros(64, np.float32)  # As in vgg19_bn.
    with pytest.raises(CheckpointFormatError) as error:
        pretrained_vgg.convert_to_flax(state, "relu1_2")
    message = str(error.value)
    assert "wrong shape (1): features.0.weight: (3, 3, 3, 64) (want (64, 3, 3, 3))" in message
    assert "unexpected (1): features.1.running_mean" in message


def test_converter_layout(torch_vgg):
    _, state, _ = torch_vgg
    params = pretrained_vgg.convert_to_flax(state)["params"]
    np.testing.assert_array_equal(params["conv5_4"]["kernel"], state["features.34.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["conv5_4"]["bias"], state["features.34.bias"])


# --- download.resolve with a sha256 prefix ----------------------------------------------------------------------


@pytest.fixture
def served_file():
    payload = np.random.default_rng(0).bytes(1 << 20)
    server = CountingServer(payload, VGG19_WEIGHTS.file_name)
    yield server, payload
    server.close()


def _other_prefix(prefix: str) -> str:
    return ("0" if prefix[0] != "0" else "1") + prefix[1:]


def test_prefix_match_is_accepted_and_cached(tmp_path, served_file):
    server, payload = served_file
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    weights = dataclasses.replace(VGG19_WEIGHTS, sha256=prefix)
    cache = tmp_path / "cache"
    path = download.resolve(weights, cache_dir=str(cache), url=server.url)
    assert path == str(cache / pretrained_vgg.VGG19_WEIGHTS_FILENAME)
    assert open(path, "rb").read() == payload and server.requests == 1
    assert download.resolve(weights, cache_dir=str(cache), url=server.url) == path
    assert server.requests == 1  # Served from the cache, whose prefix matched.
    assert os.listdir(cache) == [pretrained_vgg.VGG19_WEIGHTS_FILENAME]
    # A cached file whose digest does not start with the prefix is reported, and says so.
    with pytest.raises(download.CorruptCacheError, match=f"expected sha256 starting with {_other_prefix(prefix)}"):
        download.resolve(dataclasses.replace(weights, sha256=_other_prefix(prefix)), cache_dir=str(cache))


def test_wrong_prefix_is_refused_and_leaves_nothing_in_the_cache(tmp_path, served_file):
    server, payload = served_file
    cache = tmp_path / "cache"
    assert not hashlib.sha256(payload).hexdigest().startswith(pretrained_vgg.VGG19_WEIGHTS_SHA256_PREFIX)
    with pytest.raises(WeightsChecksumError, match="expected sha256 starting with dcbb9e9d") as error:
        download.resolve(VGG19_WEIGHTS, cache_dir=str(cache), url=server.url)
    assert "--config.srgan.vgg_path=/path/to/vgg19-dcbb9e9d.pth" in str(error.value)
    assert server.requests == 1 and list(cache.iterdir()) == []


def test_load_vgg19_downloads_through_the_cache(tmp_path, torch_vgg, monkeypatch):
    """End to end: the (random) weights file served locally, checked against its sha256 prefix, loaded."""
    _, state, path = torch_vgg
    payload = open(path, "rb").read()
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    monkeypatch.setattr(pretrained_vgg, "VGG19_WEIGHTS", dataclasses.replace(VGG19_WEIGHTS, sha256=prefix))
    server = CountingServer(payload, VGG19_WEIGHTS.file_name)
    try:
        _, variables = pretrained_vgg.load_vgg19(None, str(tmp_path / "cache"), "relu1_1", url=server.url)
    finally:
        server.close()
    assert server.requests == 1 and (tmp_path / "cache" / VGG19_WEIGHTS.file_name).is_file()
    np.testing.assert_array_equal(variables["params"]["conv1_1"]["bias"], state["features.0.bias"])


def test_missing_local_file_names_the_config_flag(tmp_path):
    with pytest.raises(MissingWeightsError) as error:
        pretrained_vgg.load_vgg19(str(tmp_path / "nope.pth"), cache_dir=str(tmp_path / "cache"))
    message = str(error.value)
    assert "does not exist" in message and pretrained_vgg.VGG19_WEIGHTS_URL in message
    assert (
        "--config.srgan.vgg_path=/path/to/vgg19-dcbb9e9d.pth" in message and "sha256 starting with dcbb9e9d" in message
    )
    assert str(tmp_path / "cache") in message and not (tmp_path / "cache").exists()


def test_local_file_with_another_prefix_warns_or_fails(tmp_path, caplog):
    local = tmp_path / "resaved.pth"
    local.write_bytes(b"re-saved weights")
    with caplog.at_level("WARNING", logger=download.__name__):
        assert download.resolve(VGG19_WEIGHTS, local_path=str(local)) == str(local)
    assert "not the released file's" in caplog.text
    with pytest.raises(WeightsChecksumError, match="expected sha256 starting with dcbb9e9d"):
        download.resolve(dataclasses.replace(VGG19_WEIGHTS, strict_local=True), local_path=str(local))


@pytest.mark.parametrize("sha256", ["", "dcbb9e9", "dcbb9e9d-", "g" * 64, "0" * 65])
def test_weights_file_rejects_a_malformed_sha256(sha256):
    with pytest.raises(ValueError, match="8 to 64 hex digits"):
        dataclasses.replace(VGG19_WEIGHTS, sha256=sha256)
