"""FID Inception: parity with pytorch-fid, the resize modes, and the converter of the released weights.

Parity tests need torch and pytorch-fid (test-only dependencies) and skip without
them. No test downloads the real weights: pytorch-fid's network is built with
random weights (its download is patched out). The torch-free loader and the
weights cache are tested in tests/test_pretrained.py.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animejax.errors import ConfigError
from animejax.metrics import inception, resize
from animejax.pretrained import inception as pretrained_inception
from animejax.pretrained.torch_pickle import CheckpointFormatError
from tests.conftest import SHARED_FACES

NUM_IMAGES = 8


def _torch():
    return pytest.importorskip("torch", reason="torch is a test-only dependency (parity reference)")


def _pytorch_fid_inception():
    _torch()
    return pytest.importorskip("pytorch_fid.inception", reason="pytorch-fid is a test-only dependency")


def _randomize(module, seed: int) -> None:
    """Seeded random weights and BN statistics that keep activations O(1) through the network."""
    torch = _torch()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv2d):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            elif isinstance(layer, torch.nn.BatchNorm2d):
                layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) + 0.5)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.1)
                layer.running_mean.copy_(torch.randn(layer.running_mean.shape, generator=generator) * 0.1)
                layer.running_var.copy_(torch.rand(layer.running_var.shape, generator=generator) + 0.5)
                layer.num_batches_tracked.fill_(1000)
            elif isinstance(layer, torch.nn.Linear):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.01)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.01)


@pytest.fixture(scope="module")
def torch_fid(tmp_path_factory):
    """pytorch-fid's pool3 network with random weights, and its full Inception3 state dict saved as a .pth.

    pytorch-fid builds torchvision's Inception3, swaps in its FID blocks, then loads
    the released weights with `load_state_dict_from_url`. The patch hands that call
    the network's own state dict instead (so nothing is downloaded) and keeps the
    Inception3 object, whose state dict has the released file's names (fc included).
    """
    fid_inception = _pytorch_fid_inception()
    torch = _torch()
    built = []
    original_build = fid_inception._inception_v3
    mp = pytest.MonkeyPatch()
    mp.setattr(fid_inception, "_inception_v3", lambda *a, **k: built.append(original_build(*a, **k)) or built[-1])
    mp.setattr(fid_inception, "load_state_dict_from_url", lambda *a, **k: built[-1].state_dict())
    try:
        model = fid_inception.InceptionV3(
            [fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
            resize_input=False,
            normalize_input=False,
            use_fid_inception=True,
        ).eval()
    finally:
        mp.undo()
    full = built[-1]
    _randomize(full, seed=0)  # The pool3 network shares these modules.
    state = {name: tensor.clone() for name, tensor in full.state_dict().items()}
    path = str(tmp_path_factory.mktemp("weights") / "random_fid_inception.pth")
    torch.save(state, path)
    return model, state, path


def _load_faces() -> np.ndarray:
    """[8, H, W, 3] float32 in [0, 1]: the first shared real faces, else seeded random images."""
    if os.path.isdir(SHARED_FACES):
        from PIL import Image

        images = [
            np.asarray(Image.open(os.path.join(SHARED_FACES, f"{i}.jpg")).convert("RGB")) for i in range(NUM_IMAGES)
        ]
        return np.stack(images).astype(np.float32) / 255.0
    return np.random.default_rng(0).uniform(0.0, 1.0, (NUM_IMAGES, 96, 96, 3)).astype(np.float32)


def test_features_match_pytorch_fid(torch_fid):
    """End to end: pytorch-fid's resize + normalisation + network vs ours, on the same 96 px images.

    Tolerance: max |ours - pytorch-fid| <= 1e-4 * max |pytorch-fid| over all 8 x 2048
    features (measured: about 1e-6 of the feature scale, float32 rounding).
    """
    torch = _torch()
    model, _, path = torch_fid
    images = _load_faces()
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        # What pytorch-fid's forward does with resize_input=True, normalize_input=True.
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        expected = model(2 * x - 1)[0].reshape(len(images), -1).numpy()

    module, variables = pretrained_inception.load_fid_inception(local_path=path)
    features = jax.jit(lambda v, im: module.apply(v, resize.resize_for_inception(im, "pytorch_fid")))(
        variables, jnp.asarray(2 * images - 1)
    )
    features = np.asarray(features)

    assert features.shape == (NUM_IMAGES, inception.FEATURE_DIM)
    scale = np.abs(expected).max()
    assert expected.std() > 0.1 and np.isfinite(expected).all()  # Random weights still give O(1) features.
    np.testing.assert_allclose(features / scale, expected / scale, rtol=0, atol=1e-4)


def test_variable_names_match_the_checkpoint(torch_fid):
    """Every conv/BN tensor of the released layout has the Flax variable of its name and shape, and no more.

    The expected Flax tree is spelled out here from the PyTorch names and layouts (conv OIHW -> HWIO kernel,
    BN weight/bias -> params scale/bias, running mean/var -> batch_stats mean/var), independently of the
    converter's own table.
    """
    _, state, _ = torch_fid
    leaf_names = {
        "conv.weight": ("params", "conv", "kernel"),
        "bn.weight": ("params", "bn", "scale"),
        "bn.bias": ("params", "bn", "bias"),
        "bn.running_mean": ("batch_stats", "bn", "mean"),
        "bn.running_var": ("batch_stats", "bn", "var"),
    }
    expected = {}
    for name, tensor in state.items():
        if name.startswith("fc.") or name.endswith("num_batches_tracked"):
            continue
        *module, layer, leaf = name.split(".")
        collection, flax_layer, flax_leaf = leaf_names[f"{layer}.{leaf}"]
        shape = tuple(tensor.shape)
        if flax_leaf == "kernel":
            shape = (shape[2], shape[3], shape[1], shape[0])
        expected["/".join((collection, *module, flax_layer, flax_leaf))] = shape
    actual = {
        "/".join(str(k.key) for k in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(inception.variable_shapes())
    }
    assert len(expected) == 94 * 5  # 94 BasicConv2d: conv kernel + 4 BN tensors each.
    assert sorted(actual.keys() - expected.keys()) == [] and sorted(expected.keys() - actual.keys()) == []
    assert {k: v for k, v in actual.items() if expected[k] != v} == {}


def test_pools_match_torch():
    torch = _torch()
    F = torch.nn.functional
    x = np.random.default_rng(1).normal(size=(2, 9, 7, 5)).astype(np.float32)
    tx = torch.from_numpy(x).permute(0, 3, 1, 2)
    to_nhwc = lambda t: t.permute(0, 2, 3, 1).numpy()  # noqa: E731
    for include in (True, False):
        expected = to_nhwc(F.avg_pool2d(tx, kernel_size=3, stride=1, padding=1, count_include_pad=include))
        np.testing.assert_allclose(inception.avg_pool_3x3(jnp.asarray(x), include), expected, atol=1e-6)
    expected = to_nhwc(F.max_pool2d(tx, kernel_size=3, stride=1, padding=1))
    np.testing.assert_array_equal(inception.max_pool_3x3(jnp.asarray(x), stride=1, padding=1), expected)
    expected = to_nhwc(F.max_pool2d(tx, kernel_size=3, stride=2))  # floor mode: 9x7 -> 4x3.
    np.testing.assert_array_equal(inception.max_pool_3x3(jnp.asarray(x), stride=2), expected)


@pytest.mark.parametrize("size", [64, 96, 400])
def test_pytorch_fid_resize_matches_torch(size):
    torch = _torch()
    x = np.random.default_rng(size).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    tx = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    expected = torch.nn.functional.interpolate(tx, size=(299, 299), mode="bilinear", align_corners=False)
    ours = resize.resize_for_inception(jnp.asarray(x), "pytorch_fid")
    assert ours.shape == (2, 299, 299, 3)
    np.testing.assert_allclose(ours, expected.permute(0, 2, 3, 1).numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(64, 64), (96, 80), (512, 512)])
def test_clean_resize_matches_pil_bicubic(shape):
    """clean-fid's "clean" resize: PIL BICUBIC on each float32 channel, then clipped."""
    image_module = pytest.importorskip("PIL.Image")
    x = np.random.default_rng(0).uniform(-1, 1, (2, *shape, 3)).astype(np.float32)
    expected = np.stack(
        [
            np.stack(
                [
                    np.asarray(image_module.fromarray(x[b, :, :, c], mode="F").resize((299, 299), image_module.BICUBIC))
                    for c in range(3)
                ],
                axis=-1,
            )
            for b in range(2)
        ]
    ).clip(-1, 1)
    ours = resize.resize_for_inception(jnp.asarray(x), "clean")
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


def test_resize_modes_keep_299_and_reject_unknown():
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 299, 299, 3)).astype(np.float32))
    for mode in resize.RESIZE_MODES:
        np.testing.assert_array_equal(resize.resize_for_inception(x, mode), x)
    with pytest.raises(ConfigError, match="pytorch_fid, clean"):
        resize.resize_for_inception(x, "lanczos")


def test_converter_round_trip(torch_fid):
    """torch state dict -> Flax -> torch state dict gives back every conv and BN tensor exactly."""
    _, state, _ = torch_fid
    numpy_state = {name: tensor.numpy() for name, tensor in state.items()}
    back = pretrained_inception.flax_to_torch_state_dict(pretrained_inception.convert_to_flax(numpy_state))
    dropped = set(numpy_state) - set(back)
    assert dropped == {"fc.weight", "fc.bias"} | {k for k in numpy_state if k.endswith(".num_batches_tracked")}
    for name, array in back.items():
        np.testing.assert_array_equal(array, numpy_state[name], err_msg=name)
        assert array.shape == numpy_state[name].shape, name


def test_converter_rejects_a_wrong_layout(torch_fid):
    _, state, _ = torch_fid
    numpy_state = {name: tensor.numpy() for name, tensor in state.items()}
    del numpy_state["Mixed_6b.branch7x7_2.conv.weight"]
    numpy_state["Mixed_5b.branch1x1.bn.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointFormatError, match="missing.*Mixed_6b.*wrong shape.*Mixed_5b"):
        pretrained_inception.convert_to_flax(numpy_state)
