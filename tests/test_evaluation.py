"""The evaluator end to end (FID through the whole pipeline, in-training eval, best checkpoint, errors) and the
metric registry (names, directions, headlines, what a report lists)."""

import json
import os

import jax
import numpy as np
import pytest
import scipy.linalg

from animejax import evaluation, sharding, train
from animejax.data import pipeline
from animejax.errors import ConfigError
from animejax.metrics import detection, inception, registry
from animejax.metrics import fid as fid_lib
from animejax.metrics.resize import resize_for_inception
from animejax.pretrained import download
from animejax.pretrained import inception as pretrained_inception
from tests.test_train import tiny_config


@pytest.fixture
def random_inception(monkeypatch):
    """The FID network with seeded random weights in place of the released file (not downloadable here)."""
    module = inception.FIDInceptionV3()
    variables = inception.init_variables(module, jax.random.PRNGKey(0), image_size=75)
    # He-scaled kernels keep activations O(1) through the 90 ReLU layers (Flax's default init fades them).
    variables = {
        "params": jax.tree_util.tree_map_with_path(
            lambda path, x: x * np.sqrt(2.0) if path[-1].key == "kernel" else x, variables["params"]
        ),
        "batch_stats": variables["batch_stats"],
    }
    monkeypatch.setattr(pretrained_inception, "load_fid_inception", lambda *args, **kwargs: (module, variables))
    return module, variables


def _evaluator(config, tmp_path, num_devices=1):
    config.eval.stats_cache_dir = str(tmp_path / "stats")
    images, source = pipeline.load_images(config.data)
    shardings = sharding.make_mesh(num_devices)
    return evaluation.Evaluator(config.eval, shardings, images, source.name, source.fingerprint()), images


def _reference_fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance in float64 straight from the formula: |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2)."""
    a, b = features_a.astype(np.float64), features_b.astype(np.float64)
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(sigma_a @ sigma_b).real
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(sigma_a + sigma_b - 2 * root))


def _stored_images(state, key, batch_size):
    """A "generator" that returns the images it is given as its state."""
    del key
    return pipeline.to_model_range(state[:batch_size])


def test_fid_through_the_evaluator_matches_the_formula(random_inception, tmp_path, cache_dir):
    config = tiny_config(cache_dir)
    config.eval.batch_size = 8
    config.eval.kid_num_images = 8
    evaluator, images = _evaluator(config, tmp_path, num_devices=2)

    real, other = jax.numpy.asarray(images[:8]), jax.numpy.asarray(images[8:16])
    same = evaluator.evaluate(_stored_images, real, jax.random.PRNGKey(0), ("fid", "kid"), 8, 8)
    different = evaluator.evaluate(_stored_images, other, jax.random.PRNGKey(0), ("fid",), 8, 8)

    module, variables = random_inception
    direct = jax.jit(lambda x: module.apply(variables, resize_for_inception(pipeline.to_model_range(x), "pytorch_fid")))
    features_real, features_other = np.asarray(direct(real)), np.asarray(direct(other))
    expected = _reference_fid(features_other, features_real)
    assert expected > 1.0
    assert different["eval/fid8"] == pytest.approx(expected, rel=1e-3)
    assert abs(same["eval/fid8"]) < 1e-4 * expected
    # The reference statistics were cached in pytorch-fid's npz format.
    (stats_file,) = [f for f in os.listdir(tmp_path / "stats") if f.endswith(".npz")]
    with np.load(tmp_path / "stats" / stats_file) as stats:
        np.testing.assert_allclose(stats["mu"], features_real.mean(0), rtol=1e-4, atol=1e-5)


def test_reference_stats_from_a_pytorch_fid_npz(random_inception, tmp_path, cache_dir):
    config = tiny_config(cache_dir)
    config.eval.batch_size = 8
    evaluator, images = _evaluator(config, tmp_path)
    real = jax.numpy.asarray(images[:8])
    first = evaluator.evaluate(_stored_images, real, jax.random.PRNGKey(0), ("fid",), 8, 8)
    (stats_file,) = [f for f in os.listdir(tmp_path / "stats") if f.endswith(".npz")]
    with np.load(tmp_path / "stats" / stats_file) as stats:  # Rewrite as pytorch-fid saves: mu and sigma only.
        np.savez(tmp_path / "pytorch_fid_stats.npz", mu=stats["mu"], sigma=stats["sigma"])
    config.eval.reference_stats = str(tmp_path / "pytorch_fid_stats.npz")
    second = evaluator.evaluate(_stored_images, real, jax.random.PRNGKey(0), ("fid",), 8, 8)
    assert second == first
    with pytest.raises(evaluation.ConfigError, match="KID needs reference features"):
        evaluator.evaluate(_stored_images, real, jax.random.PRNGKey(0), ("kid",), 8, 8)


def test_more_reference_images_than_the_dataset_is_an_error(random_inception, tmp_path, cache_dir):
    config = tiny_config(cache_dir)
    config.eval.batch_size = 8
    evaluator, _ = _evaluator(config, tmp_path)
    with pytest.raises(evaluation.NotEnoughImagesError, match="asks for 100000 real images but the dataset has 256"):
        evaluator.reference(100_000)


def test_in_training_eval_logs_and_keeps_the_best_checkpoint(tmp_path, cache_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config(cache_dir, num_steps=6)
    config.eval.every_steps = 3
    config.eval.batch_size = 16
    config.eval.stats_cache_dir = str(tmp_path / "stats")
    train.train_and_evaluate(config, str(tmp_path / "run"))
    record = json.loads((tmp_path / "run" / "best" / "best.json").read_text())
    assert record["metric"] == "eval/swd256/mean" and record["step"] in (3, 6)
    assert os.listdir(tmp_path / "run" / "best") and str(record["step"]) in os.listdir(tmp_path / "run" / "best")
    events = EventAccumulator(str(tmp_path / "run"), size_guidance={"scalars": 0})
    events.Reload()
    values = {e.step: e.value for e in events.Scalars("eval/swd256/mean")}
    assert sorted(values) == [3, 6] and record["value"] == pytest.approx(min(values.values()), rel=1e-6)


def test_missing_inception_weights_fail_before_training(tmp_path, cache_dir):
    config = tiny_config(cache_dir, num_steps=4)
    config.eval.every_steps = 2
    config.eval.train_metrics = ("fid",)
    config.eval.best_metric = "fid"
    config.eval.inception_path = str(tmp_path / "nowhere.pth")
    with pytest.raises(download.MissingWeightsError, match="nowhere.pth"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "checkpoints" / "2")


def test_best_metric_must_be_evaluated(tmp_path, cache_dir):
    config = tiny_config(cache_dir)
    config.eval.every_steps = 2
    config.eval.best_metric = "fid"  # train_metrics is ("swd",) in the quick variant.
    with pytest.raises(evaluation.ConfigError, match="best_metric='fid' is not among"):
        train.train_and_evaluate(config, str(tmp_path / "run"))


def test_headline_picks_one_value_per_metric():
    results = {
        "eval/fid10k": 12.0,
        "eval/kid10k_mean": 0.01,
        "eval/kid10k_std": 0.001,
        "eval/swd1k/32": 5.0,
        "eval/swd1k/mean": 4.0,
        "eval/detection_rate1k": 0.7,
    }
    assert evaluation.headline(results, "fid") == ("eval/fid10k", 12.0, True)
    assert evaluation.headline(results, "kid") == ("eval/kid10k_mean", 0.01, True)
    assert evaluation.headline(results, "swd") == ("eval/swd1k/mean", 4.0, True)
    assert evaluation.headline(results, "detection") == ("eval/detection_rate1k", 0.7, False)


def test_registry_directions_and_headline_keys():
    expected = {
        "fid": ("fid{budget}", True),
        "fid_i2v": ("fid_i2v{budget}", True),
        "kid": ("kid{budget}_mean", True),
        "kid_i2v": ("kid_i2v{budget}_mean", True),
        "swd": ("swd{budget}/mean", True),
        "detection": ("detection_rate{budget}", False),
    }
    assert evaluation.METRICS == registry.METRICS == tuple(expected)
    for name, (key, lower_is_better) in expected.items():
        metric = registry.get(name)
        assert (metric.name, metric.headline_key, metric.lower_is_better) == (name, key, lower_is_better)
    assert registry.get("fid").is_headline("eval/fid50k") and registry.get("fid").is_headline("fid2048")
    assert not registry.get("fid").is_headline("eval/fid50k_extra")
    assert not registry.get("kid").is_headline("eval/kid10k_std")
    assert not registry.get("fid").is_headline("eval/fid_i2v50k")
    assert registry.get("fid_i2v").is_headline("fid_i2v2048")
    assert not registry.get("kid").is_headline("eval/kid_i2v10k_mean")
    assert not registry.get("swd").is_headline("eval/swd1k/32")


def test_headline_asks_the_registry():
    results = {"train/fid2048": 3.0, "train/swd2048/64": 2.0, "train/swd2048/mean": 1.5}
    assert evaluation.headline(results, "fid") == ("train/fid2048", 3.0, True)
    assert evaluation.headline(results, "swd") == ("train/swd2048/mean", 1.5, True)
    with pytest.raises(ConfigError, match="Cannot rank by 'kid'"):
        evaluation.headline(results, "kid")
    with pytest.raises(
        ConfigError, match=r"Unknown metric\(s\) \['is'\]; choose from fid, fid_i2v, kid, kid_i2v, swd, detection"
    ):
        evaluation.headline(results, "is")


def test_metrics_name_their_results_as_their_headline_says(monkeypatch):
    """Each metric fed small fake batches: result names carry the budget, and `headline` finds the right one."""
    config = tiny_config("unused").eval
    config.kid_num_images, config.kid_subsets, config.kid_subset_size = 6, 2, 4
    config.swd_num_images = config.detection_num_images = 6
    rng = np.random.default_rng(0)
    features = rng.normal(size=(10, 8)).astype(np.float32)  # 8-d stand-ins for the 2048-d pool3 features.
    pixels = rng.integers(0, 256, size=(10, 16, 16, 3), dtype=np.uint8)
    reference = features[::-1].astype(np.float64)
    references = registry.References(
        reference_stats=lambda: fid_lib.ReferenceStats(reference.mean(0), np.cov(reference, rowvar=False), {}),
        reference_features=lambda: features[::-1],
        real_images=lambda count, what: pixels[::-1][:count],
        detector_path=lambda: "cascade.xml",
        i2v_reference_stats=lambda: fid_lib.ReferenceStats(reference.mean(0) + 1, np.cov(reference, rowvar=0), {}),
        i2v_reference_features=lambda: features[::-1] + 1,
    )
    monkeypatch.setattr(detection, "detection_rate", lambda images, path, **_: {"rate": len(images) / 10})
    results = {}
    for metric_class in registry.lookup(registry.METRICS):
        metric = metric_class(config, 10)
        for begin in range(0, 10, 4):  # Batches of 4, 4, 2.
            metric.update(features[begin : begin + 4], pixels[begin : begin + 4])
        results.update(metric.results(references, "eval/"))
    assert set(results) == {
        "eval/fid10",
        "eval/fid_i2v10",
        "eval/kid6_mean",
        "eval/kid6_std",
        "eval/kid_i2v6_mean",
        "eval/kid_i2v6_std",
        *(f"eval/swd6/{level}" for level in (16, "mean")),
        "eval/detection_rate6",
    }
    assert evaluation.headline(results, "detection") == ("eval/detection_rate6", 0.6, False)
    assert evaluation.headline(results, "kid")[0] == "eval/kid6_mean"
    assert evaluation.headline(results, "fid_i2v")[0] == "eval/fid_i2v10"
    assert results["eval/fid_i2v10"] > results["eval/fid10"]  # Its own references (shifted by 1 here).


def test_unknown_metric_is_a_config_error_listing_the_valid_ones(tmp_path, cache_dir):
    config = tiny_config(cache_dir)
    config.eval.batch_size = 8
    evaluator, _ = _evaluator(config, tmp_path)
    with pytest.raises(
        ConfigError, match=r"Unknown metric\(s\) \['isc'\]; choose from fid, fid_i2v, kid, kid_i2v, swd, detection"
    ):
        evaluator.prepare(("fid", "isc"))
    with pytest.raises(ConfigError, match="Unknown metric"):
        evaluator.describe(("isc",))


def test_describe_lists_only_what_the_metrics_used(tmp_path, cache_dir):
    config = tiny_config(cache_dir)
    config.eval.batch_size = 8
    evaluator, _ = _evaluator(config, tmp_path)
    everything = evaluator.describe()
    assert set(everything) == {
        "feature_network",
        "inception_weights",
        "resize",
        "i2v_feature_network",
        "i2v_weights",
        "i2v_preprocessing",
        "generated_images_quantized_to_uint8",
        "detector",
    }
    assert everything["inception_weights"] == pretrained_inception.FID_WEIGHTS_FILENAME
    assert evaluator.describe(("swd",)) == {"generated_images_quantized_to_uint8": True}
    i2v_keys = {"i2v_feature_network", "i2v_weights", "i2v_preprocessing"}
    assert set(evaluator.describe(("kid", "swd"))) == set(everything) - {"detector"} - i2v_keys
    assert set(evaluator.describe(("fid_i2v",))) == i2v_keys | {"generated_images_quantized_to_uint8"}
    assert set(evaluator.describe(("detection",))) == {"generated_images_quantized_to_uint8", "detector"}
    assert evaluator.describe(("detection",))["detector"] == everything["detector"]
    assert evaluator.describe(()) == {}
