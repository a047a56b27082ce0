"""The evaluation's statistics in one process of a multi-process run, for tests/test_multihost.py.

`python -m tests.multihost_eval OUT.npz CACHE_DIR STATS_DIR --coordinator_address=A --num_processes=N --process_id=I`
joins the run, computes `statistics(cache_dir, stats_dir)` and has process 0 write them to OUT.npz. The test calls
`statistics` in its own process too (one process, 8 devices) and compares the two.
"""

from __future__ import annotations

import sys

import flax.linen as nn
import jax
import numpy as np

from animejax import config_defaults, evaluation, multihost, sharding
from animejax.data import pipeline
from animejax.pretrained import inception as pretrained_inception

NUM_IMAGES, IMAGE_SIZE = 256, 32  # The synthetic faces of the test's training runs.
REFERENCE_IMAGES, GENERATED_IMAGES = 64, 32


class TinyFeatures(nn.Module):
    """A stand-in for the FID Inception (whose weights are not here): pooled pixels through a dense layer."""

    @nn.compact
    def __call__(self, images):
        pooled = nn.avg_pool(images, (23, 23), strides=(23, 23))  # 299 px -> 13 x 13.
        return nn.Dense(32)(pooled.reshape((pooled.shape[0], -1)))


def eval_config(cache_dir: str, stats_dir: str):
    """A config with small FID, KID and SWD budgets: images decoded into cache_dir, statistics into stats_dir."""
    config = config_defaults.autoencoder_config("vae", "quick", beta=1.0)
    config.data.num_images, config.data.image_size, config.data.cache_dir = NUM_IMAGES, IMAGE_SIZE, cache_dir
    evaluation_config = config.eval
    evaluation_config.batch_size = 16
    evaluation_config.stats_cache_dir = stats_dir
    evaluation_config.kid_num_images = evaluation_config.swd_num_images = GENERATED_IMAGES
    evaluation_config.kid_subsets, evaluation_config.kid_subset_size = 4, 16
    return config


def _uniform_images(state, key, batch_size):
    """A "generator" without state: uniform noise images (the same on any mesh: JAX's random bits do not depend
    on the sharding)."""
    del state
    return jax.random.uniform(key, (batch_size, IMAGE_SIZE, IMAGE_SIZE, 3), minval=-1.0, maxval=1.0)


def tiny_inception(*args, **kwargs):
    """In place of pretrained_inception.load_fid_inception: TinyFeatures and its seeded weights."""
    del args, kwargs
    module = TinyFeatures()
    return module, module.init(jax.random.PRNGKey(0), np.zeros((1, 299, 299, 3), np.float32))


def statistics(cache_dir: str, stats_dir: str) -> dict[str, np.ndarray]:
    """The reference mean, covariance and KID features of the first REFERENCE_IMAGES real images, and FID, KID
    and SWD of GENERATED_IMAGES noise images against them, on all devices of all processes (the Inception
    replaced by `tiny_inception`)."""
    config = eval_config(cache_dir, stats_dir)
    images, source = pipeline.load_images(config.data, jax.process_index(), jax.process_count())
    evaluator = evaluation.Evaluator(config.eval, sharding.make_mesh(), images, source.name, source.fingerprint())
    stats, kid_features = evaluator.reference(REFERENCE_IMAGES)
    results = evaluator.evaluate(
        _uniform_images, None, jax.random.PRNGKey(1), ("fid", "kid", "swd"), GENERATED_IMAGES, REFERENCE_IMAGES
    )
    return {
        "mu": stats.mu,
        "sigma": stats.sigma,
        "kid_features": kid_features,
        "num_real_images": np.asarray(evaluator.num_real_images),
        **{name: np.asarray(value) for name, value in results.items()},
    }


def main(argv: list[str]) -> None:
    out, cache_dir, stats_dir, *flags = argv
    values = dict(flag.removeprefix("--").split("=", 1) for flag in flags)
    multihost.initialize(
        values["coordinator_address"], int(values["num_processes"]), int(values["process_id"]), timeout_s=30
    )
    pretrained_inception.load_fid_inception = tiny_inception
    found = statistics(cache_dir, stats_dir)
    # What each process sees of a shared folder can differ (checkpoint.restore_latest relies on this agreeing).
    own_view = [30, 20, 10] if jax.process_index() == 0 else [20]
    agreed = multihost.process_zero_list(own_view)
    found["process_zero_list_agrees"] = np.asarray(multihost.all_processes(agreed == [30, 20, 10]))
    if jax.process_index() == 0:
        np.savez(out, **found)
    multihost.finish()


if __name__ == "__main__":
    main(sys.argv[1:])
