"""Illustration2Vec features: the `.caffemodel` reader, the Flax port, the weights cache and `fid_i2v` end to end.

References, all independent of the code under test (tests/reference/caffe_i2v.py): `.caffemodel` files written
by the `protobuf` package's serializer from the published caffe.proto messages, in the Illustration2Vec layout
with seeded random weights and narrowed widths (the released file is 1 GB and not downloadable here); a float64
numpy forward pass of the file as protobuf itself decodes it; the original project's preprocessing through
skimage; and the Fréchet distance in float64 from its formula. chainer's `CaffeFunction` would be the other
reference, but chainer does not install on this Python (its sdist needs `pkg_resources`).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from animejax import evaluation, sharding, train, validation
from animejax.data import pipeline
from animejax.errors import ConfigError
from animejax.metrics import fid as fid_lib
from animejax.metrics import illust2vec, inception, registry
from animejax.pretrained import caffemodel, download
from animejax.pretrained import illust2vec as pretrained_i2v
from animejax.pretrained.caffemodel import CaffeModelError
from tests.local_server import CountingServer
from tests.reference import caffe_i2v as reference
from tests.test_evaluation import _reference_fid, _stored_images
from tests.test_train import tiny_config

CHANNELS = (8, 8, 16, 16, 16, 16, 16, 16, 32, 32, 32)  # The released widths divided by 8 to 32.
ENCODE_DIM, TAGS = 64, 10
# The Illustration2Vec prototxt's layers in order (the tag net's up to conv6_3, then the feature head), as
# the original project's models define them; our test files add a data layer first and a loss last.
PROTOTXT_LAYERS = [
    ("conv1_1", "Convolution"), ("relu1_1", "ReLU"), ("pool1", "Pooling"),
    ("conv2_1", "Convolution"), ("relu2_1", "ReLU"), ("pool2", "Pooling"),
    ("conv3_1", "Convolution"), ("relu3_1", "ReLU"), ("conv3_2", "Convolution"), ("relu3_2", "ReLU"),
    ("pool3", "Pooling"),
    ("conv4_1", "Convolution"), ("relu4_1", "ReLU"), ("conv4_2", "Convolution"), ("relu4_2", "ReLU"),
    ("pool4", "Pooling"),
    ("conv5_1", "Convolution"), ("relu5_1", "ReLU"), ("conv5_2", "Convolution"), ("relu5_2", "ReLU"),
    ("pool5", "Pooling"),
    ("conv6_1", "Convolution"), ("relu6_1", "ReLU"), ("conv6_2", "Convolution"), ("relu6_2", "ReLU"),
    ("conv6_3", "Convolution"), ("relu6_3", "ReLU"), ("drop6_3", "Dropout"),
    ("encode1", "InnerProduct"), ("encode1neuron", "Sigmoid"), ("encode2", "InnerProduct"),
]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Requests to the local server must not go through a proxy set in the environment."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def layers():
    return reference.illust2vec_layers(CHANNELS, ENCODE_DIM, illust2vec.INPUT_SIZE, TAGS, seed=0)


@pytest.fixture(scope="module")
def model_bytes(layers) -> bytes:
    return reference.serialize(layers)


def _real_faces(folder: str, count: int) -> np.ndarray:
    """The first `count` faces of the folder (files named 0.jpg, 1.jpg, ...), uint8 RGB."""
    names = sorted((name for name in os.listdir(folder) if name.endswith(".jpg")), key=lambda name: int(name[:-4]))
    return np.stack([np.asarray(Image.open(os.path.join(folder, n)).convert("RGB")) for n in names[:count]])


# --- the .caffemodel reader ------------------------------------------------------------------------------------


@pytest.mark.parametrize("v1, legacy_shapes", [(False, False), (True, True)], ids=["layer", "v1_layers"])
def test_reader_decodes_what_protobuf_wrote(layers, v1, legacy_shapes):
    net = caffemodel.parse_caffemodel(reference.serialize(layers, v1=v1, legacy_shapes=legacy_shapes))
    assert net.name == "illust2vec"
    assert [(layer.name, layer.type) for layer in net.layers] == [
        ("data", "Data"),
        *PROTOTXT_LAYERS,
        ("loss", "SigmoidCrossEntropyLoss"),
    ]
    for written, read in zip(layers, net.layers):
        assert (read.bottom, read.top) == (written["bottom"], written["top"]), read.name
        assert len(read.blobs) == len(written["blobs"]), read.name
        for array, blob in zip(written["blobs"], read.blobs):
            want = np.asarray(array, np.float32)
            got = blob.reshape(want.shape) if legacy_shapes else blob
            assert blob.dtype == np.float32 and got.shape == want.shape, read.name
            np.testing.assert_array_equal(got, want, err_msg=read.name)
    conv = net.layer("conv3_2").params
    assert conv == {"num_output": 16, "kernel": (3, 3), "stride": (1, 1), "pad": (1, 1), "dilation": (1, 1),
                    "group": 1, "bias_term": True, "axis": 1}  # fmt: skip
    pool = net.layer("pool4").params
    assert (pool["pool"], pool["kernel"], pool["stride"], pool["pad"], pool["round_mode"]) == (
        "MAX",
        (2, 2),
        (2, 2),
        (0, 0),
        "CEIL",
    )
    assert net.layer("encode1").params["num_output"] == ENCODE_DIM
    assert net.layer("encode2").params == {"num_output": TAGS, "bias_term": True, "axis": 1, "transpose": False}
    assert net.layer("drop6_3").params["dropout_ratio"] == pytest.approx(0.5)
    assert net.layer("relu1_1").params == {"negative_slope": 0.0}


def test_reader_skips_fields_it_does_not_use(model_bytes):
    net = reference.parse(model_bytes)
    net.layer[-1].loss_weight.append(1.0)  # LayerParameter fields the reader does not list.
    net.layer[1].blobs[0].diff.extend([0.5] * 4)
    net.input.append("data")
    parsed, plain = caffemodel.parse_caffemodel(net.SerializeToString()), caffemodel.parse_caffemodel(model_bytes)
    assert [layer.name for layer in parsed.layers] == [layer.name for layer in plain.layers]
    np.testing.assert_array_equal(parsed.layer("conv1_1").blobs[0], plain.layer("conv1_1").blobs[0])


def test_reader_rejects_other_layer_types_and_broken_files(layers, tmp_path):
    lrn = {"name": "norm1", "type": "LRN", "bottom": ["pool1"], "top": ["norm1"],
           "params": {"lrn_param": {"local_size": 5}}, "blobs": []}  # fmt: skip
    with_lrn = layers[:4] + [lrn] + layers[4:]
    with pytest.raises(CaffeModelError, match=r"layer 'norm1' has type 'LRN'.*supported types: Convolution"):
        caffemodel.parse_caffemodel(reference.serialize(with_lrn))
    with pytest.raises(CaffeModelError, match=r"layer 'norm1' has V1 type code 15"):
        caffemodel.parse_caffemodel(reference.serialize(with_lrn, v1=True))
    data = reference.serialize(layers)
    with pytest.raises(CaffeModelError):
        caffemodel.parse_caffemodel(data[: len(data) // 2])  # Cut inside a blob.
    with pytest.raises(CaffeModelError, match="holds no layers"):
        caffemodel.parse_caffemodel(b"\x0a\x03abc")  # A NetParameter with a name only.
    (tmp_path / "empty.caffemodel").write_bytes(b"")
    with pytest.raises(CaffeModelError, match="empty.caffemodel is empty"):
        caffemodel.load_caffemodel(str(tmp_path / "empty.caffemodel"))
    (tmp_path / "model.caffemodel").write_bytes(data)
    assert len(caffemodel.load_caffemodel(str(tmp_path / "model.caffemodel")).layers) == len(layers)


def test_converter_checks_the_layout(layers):
    fields, variables = pretrained_i2v.convert_to_flax(caffemodel.parse_caffemodel(reference.serialize(layers)))
    assert fields == {"channels": CHANNELS, "encode_dim": ENCODE_DIM, "input_size": 224}
    shapes = illust2vec.variable_shapes(illust2vec.Illust2Vec(**fields))
    assert jax.tree.map(lambda x: x.shape, variables) == jax.tree.map(lambda x: x.shape, shapes)
    no_pool3 = [dict(layer) for layer in layers if layer["name"] != "pool3"]
    no_pool3[no_pool3.index(next(x for x in no_pool3 if x["name"] == "conv4_1"))]["bottom"] = ["conv3_2"]
    with pytest.raises(CaffeModelError, match=r"layers up to encode1 are .*expected .*\* \(Pooling\)"):
        pretrained_i2v.convert_to_flax(caffemodel.parse_caffemodel(reference.serialize(no_pool3)))
    strided = [dict(layer) for layer in layers]
    conv = next(layer for layer in strided if layer["name"] == "conv2_1")
    conv["params"] = {"convolution_param": {**conv["params"]["convolution_param"], "kernel_size": [3], "pad": [2]}}
    with pytest.raises(CaffeModelError, match=r"conv2_1 \(Convolution\): pad=\(2, 2\), expected \(1, 1\)"):
        pretrained_i2v.convert_to_flax(caffemodel.parse_caffemodel(reference.serialize(strided)))


# --- the Flax port ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 96, 224, 256])
def test_preprocessing_matches_the_original(size):
    """Resize (up, identity, and down with skimage's anti-aliasing), BGR and mean, against i2v's own code path."""
    images = np.random.default_rng(size).integers(0, 256, size=(2, size, size, 3), dtype=np.uint8)
    images[1, :8] = 255  # A bright band at the top border, where the constant-border rule shows.
    ours = np.asarray(illust2vec.preprocess(jnp.asarray(pipeline.to_model_range(images))))
    want = np.stack([reference.preprocess_like_i2v(image).transpose(1, 2, 0) for image in images])
    np.testing.assert_allclose(ours, want, atol=2e-3 if size != 224 else 1e-4)


@pytest.mark.parametrize("layer", ["encode1", "encode1neuron"])
def test_port_matches_the_float64_caffe_forward_on_real_faces(shared_faces, model_bytes, layer):
    faces = _real_faces(shared_faces, 4)  # uint8 96x96 RGB.
    fields, variables = pretrained_i2v.convert_to_flax(caffemodel.parse_caffemodel(model_bytes))
    module = illust2vec.Illust2Vec(feature_layer=layer, **fields)
    ours = np.asarray(jax.jit(module.apply)(variables, jnp.asarray(pipeline.to_model_range(faces))))
    inputs = np.stack([reference.preprocess_like_i2v(face) for face in faces])
    want = reference.forward_float64(reference.parse(model_bytes), inputs, output=layer)
    assert ours.shape == want.shape == (4, ENCODE_DIM)
    scale = np.abs(want).max()
    assert np.abs(ours - want).max() <= 1e-4 * scale
    assert np.abs(want[0] - want[1]).max() > 0.01 * scale  # Different faces, different features.


# --- the weights: download, local path, converted cache ---------------------------------------------------------


def test_weights_download_convert_once_and_local_path(model_bytes, tmp_path, monkeypatch):
    server = CountingServer(model_bytes, pretrained_i2v.I2V_WEIGHTS_FILENAME)
    try:
        cache = str(tmp_path / "cache")
        module, variables, digest = pretrained_i2v.load_illust2vec(None, cache, url=server.url)
        assert server.requests == 1
        assert digest == download.file_sha256(os.path.join(cache, pretrained_i2v.I2V_WEIGHTS_FILENAME))
        converted = pretrained_i2v.converted_path(cache, digest)
        assert os.path.isfile(converted) and digest[:16] in os.path.basename(converted)

        def no_reading(path):
            raise AssertionError(f"{path} was decoded again instead of the converted checkpoint being used")

        monkeypatch.setattr(pretrained_i2v, "load_caffemodel", no_reading)
        again, cached_variables, same = pretrained_i2v.load_illust2vec(None, cache, "encode1neuron", url=server.url)
        assert server.requests == 1 and same == digest
        assert (again.channels, again.feature_layer) == (CHANNELS, "encode1neuron")
        jax.tree.map(np.testing.assert_array_equal, cached_variables, variables)
    finally:
        server.close()
    monkeypatch.undo()  # A new cache folder: this file is decoded and converted there.
    local = tmp_path / "mine.caffemodel"
    local.write_bytes(model_bytes)
    _, _, local_digest = pretrained_i2v.load_illust2vec(str(local), str(tmp_path / "other_cache"))
    assert local_digest == digest
    with pytest.raises(download.MissingWeightsError, match=r"--config.eval.i2v_path="):
        pretrained_i2v.load_illust2vec(str(tmp_path / "missing.caffemodel"), cache)
    with pytest.raises(ValueError, match="Unknown Illustration2Vec feature layer 'fc7'"):
        pretrained_i2v.load_illust2vec(str(local), cache, "fc7")


# --- the metric ---------------------------------------------------------------------------------------------------


@pytest.fixture
def random_networks(monkeypatch, model_bytes):
    """Both feature networks with seeded random weights in place of the released files; a fixed fake sha256."""
    from animejax.pretrained import inception as pretrained_inception

    fid_module = inception.FIDInceptionV3()
    fid_variables = inception.init_variables(fid_module, jax.random.PRNGKey(0), image_size=75)
    monkeypatch.setattr(pretrained_inception, "load_fid_inception", lambda *a, **k: (fid_module, fid_variables))
    fields, variables = pretrained_i2v.convert_to_flax(caffemodel.parse_caffemodel(model_bytes))
    sha = {"value": "ab" * 32}

    def load(path, cache_dir, layer="encode1", url=None):
        return illust2vec.Illust2Vec(feature_layer=layer, **fields), variables, sha["value"]

    monkeypatch.setattr(pretrained_i2v, "load_illust2vec", load)
    return (fid_module, fid_variables), (illust2vec.Illust2Vec(**fields), variables), sha


def _evaluator(config, tmp_path, num_devices=1):
    config.eval.stats_cache_dir = str(tmp_path / "stats")
    images, source = pipeline.load_images(config.data)
    shardings = sharding.make_mesh(num_devices)
    return evaluation.Evaluator(config.eval, shardings, images, source.name, source.fingerprint()), images


def test_fid_i2v_end_to_end_equals_the_formula_in_one_pass(random_networks, tmp_path, cache_dir):
    _, (module, variables), sha = random_networks
    config = tiny_config(cache_dir)
    config.eval.batch_size = 8
    config.eval.kid_num_images, config.eval.kid_subsets, config.eval.kid_subset_size = 8, 2, 8
    evaluator, images = _evaluator(config, tmp_path, num_devices=2)
    calls = []
    original = evaluator.network_features
    evaluator.network_features = lambda batch, networks: (
        calls.append(tuple(sorted(networks))) or original(batch, networks)
    )
    real, other = jnp.asarray(images[:16]), jnp.asarray(images[16:24])  # 16 real images, 8 generated.
    metrics = ("fid", "fid_i2v", "kid", "kid_i2v")
    results = evaluator.evaluate(_stored_images, other, jax.random.PRNGKey(0), metrics, 8, 16)
    assert list(results) == ["eval/fid8", "eval/fid_i2v8", "eval/kid8_mean", "eval/kid8_std",
                             "eval/kid_i2v8_mean", "eval/kid_i2v8_std"]  # fmt: skip
    # The generated batch went through both networks in one call; the real images once per network.
    assert calls == [("illust2vec", "inception"), ("inception",), ("inception",), ("illust2vec",), ("illust2vec",)]

    direct = jax.jit(lambda x: module.apply(variables, pipeline.to_model_range(x)))
    features_real, features_other = np.asarray(direct(real)), np.asarray(direct(other))
    expected = _reference_fid(features_other, features_real)
    assert expected > 1.0
    assert results["eval/fid_i2v8"] == pytest.approx(expected, rel=1e-3)
    assert results["eval/fid_i2v8"] != pytest.approx(results["eval/fid8"], rel=1e-2)
    from animejax.metrics import kid

    kid_mean, _ = kid.kernel_inception_distance(features_other, features_real[:8], num_subsets=2, subset_size=8)
    assert results["eval/kid_i2v8_mean"] == pytest.approx(kid_mean, rel=1e-3, abs=1e-6)

    # Separate reference caches, the Illustration2Vec one keyed by the weights' sha256.
    stats = sorted(f for f in os.listdir(tmp_path / "stats") if f.endswith(".npz"))
    metas = [fid_lib.load_stats_npz(str(tmp_path / "stats" / f)).meta["preprocessing"] for f in stats]
    assert len(stats) == 2 and sorted("i2v_weights_sha256" in meta for meta in metas) == [False, True]
    i2v_meta = next(meta for meta in metas if "i2v_weights_sha256" in meta)
    assert i2v_meta["i2v_weights_sha256"] == "ab" * 32
    sha["value"] = "cd" * 32  # Other weights: other statistics, not the cached ones.
    other_evaluator, _ = _evaluator(config, tmp_path)
    other_evaluator.reference(16, registry.ILLUST2VEC)
    assert len([f for f in os.listdir(tmp_path / "stats") if f.endswith(".npz")]) == 3
    described = evaluator.describe(metrics)
    assert described["i2v_weights_sha256"] == "ab" * 32 and "encode1" in described["i2v_feature_network"]


def test_missing_i2v_weights_fail_before_training(tmp_path, cache_dir):
    config = tiny_config(cache_dir, num_steps=4)
    config.eval.every_steps = 2
    config.eval.train_metrics = ("fid_i2v",)
    config.eval.best_metric = "fid_i2v"
    config.eval.i2v_path = str(tmp_path / "nowhere.caffemodel")
    with pytest.raises(download.MissingWeightsError, match=r"nowhere.caffemodel.*--config.eval.i2v_path"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "checkpoints" / "2")


def test_i2v_layer_is_validated():
    config = tiny_config("unused")
    config.eval.i2v_layer = "fc7"
    with pytest.raises(ConfigError, match=r"eval.i2v_layer='fc7': must be one of encode1, encode1neuron"):
        validation.validate(config)
    with pytest.raises(ConfigError, match="not an Illustration2Vec feature layer"):
        registry.get("fid_i2v").check(config.eval)
    assert dict(validation._CHOICES)["eval.i2v_layer"] == tuple(illust2vec.FEATURE_LAYERS)
