"""Sample-quality evaluation: FID, KID, SWD and face-detection rate of a generator.

Generated images come straight from the method's jitted `generate` (no PNG
round trip; quantised to 8-bit levels like saved images). Inception features
are computed on device, batched and sharded over the mesh; statistics are
accumulated in float64 on the host. Reference statistics of the dataset are
computed once and cached in an npz keyed by dataset, resolution, image count
and preprocessing. Every report says what it computed: image counts, resize,
weights and detector settings.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from animejax import sharding
from animejax.data import pipeline
from animejax.errors import ConfigError, UserError
from animejax.metrics import fid, inception_weights, kid, resize, swd

METRICS = ("fid", "kid", "swd", "detection")


class NotEnoughImagesError(UserError):
    """A metric asked for more real images than the dataset holds."""


def budget_name(count: int) -> str:
    """50000 -> '50k', 2048 -> '2048': metric names carry their sample budget."""
    return f"{count // 1000}k" if count % 1000 == 0 and count >= 1000 else str(count)


def quantize(images: jax.Array) -> jax.Array:
    """Rounds images in [-1, 1] to the 256 levels a saved PNG would hold."""
    return jnp.round((jnp.clip(images, -1.0, 1.0) + 1.0) * 127.5) / 127.5 - 1.0


class Evaluator:
    """Scores generated images against the configured dataset.

    Args:
      eval_config: `config.eval`.
      shardings: the run's mesh shardings.
      real_images: this process's decoded dataset, uint8 [N, S, S, 3].
      dataset_name: names the dataset in the reference-stats cache key.
      dataset_fingerprint: changes when the dataset's content changes.
    """

    def __init__(
        self,
        eval_config: ml_collections.ConfigDict,
        shardings: sharding.MeshShardings,
        real_images: np.ndarray,
        dataset_name: str,
        dataset_fingerprint: str,
    ):
        self.config = eval_config
        self.shardings = shardings
        self.real_images = real_images
        self.dataset_name = dataset_name
        self.dataset_fingerprint = dataset_fingerprint
        self.batch_size = eval_config.batch_size
        sharding.local_batch_size(self.batch_size, shardings)  # Fails early on an unsplittable batch.
        self.resize_mode = resize.check_resize_mode(eval_config.fid_resize)
        self._inception = None
        self._features = None
        self._reference: dict[int, tuple[fid.ReferenceStats, np.ndarray]] = {}
        self._samplers: dict[Callable, Callable] = {}

    # --- networks and files ---------------------------------------------

    def _load_inception(self):
        if self._inception is None:
            module, variables = inception_weights.load_fid_inception(
                self.config.inception_path or None, self.config.weights_cache_dir or None
            )
            variables = jax.device_put(variables, self.shardings.replicated)

            def features(variables, images):
                return module.apply(variables, resize.resize_for_inception(images, self.resize_mode))

            self._features = jax.jit(
                features,
                in_shardings=(self.shardings.replicated, self.shardings.data),
                out_shardings=self.shardings.replicated,
            )
            self._inception = variables
        return self._inception

    def prepare(self, metrics: tuple[str, ...]) -> None:
        """Loads what `metrics` need (weights, detector) now, so a missing file fails before training."""
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ConfigError(f"Unknown metric(s) {unknown}; choose from {', '.join(METRICS)}.")
        if "fid" in metrics or "kid" in metrics:
            self._load_inception()
        if "detection" in metrics:
            self._detector_path()

    def _detector_path(self) -> str:
        from animejax.metrics import detection  # OpenCV is optional: only the detection rate needs it.

        return detection.detector_path(self.config.detector_path or None, self.config.weights_cache_dir or None)

    def features(self, images: jax.Array) -> np.ndarray:
        """Inception pool3 features of a batch in [-1, 1] sharded on the mesh: [B, 2048] float32 (host)."""
        return np.asarray(self._features(self._load_inception(), images))

    def describe(self) -> dict[str, Any]:
        """What the features and detector are: recorded in every report."""
        return {
            "feature_network": "FID Inception-v3 (pytorch-fid port), pool3 2048-d",
            "inception_weights": self.config.inception_path or inception_weights.FID_WEIGHTS_FILENAME,
            "resize": f"{self.resize_mode}: {resize.RESIZE_MODES[self.resize_mode]}",
            "generated_images_quantized_to_uint8": True,
            "detector": {
                "file": "lbpcascade_animeface.xml",
                "scale_factor": self.config.detector_scale_factor,
                "min_neighbors": self.config.detector_min_neighbors,
                "min_size": self.config.detector_min_size,
            },
        }

    # --- real data --------------------------------------------------------

    def _real_batches(self, count: int):
        """Yields (global batch sharded on the mesh, number of valid rows) over the first `count` real images."""
        local = self.batch_size // jax.process_count()
        for begin in range(0, count, self.batch_size):
            valid = min(self.batch_size, count - begin)
            rows = np.asarray(self.real_images[begin // jax.process_count() :][:local])
            if len(rows) < local:  # Pad the last batch; padded rows are dropped after the features.
                rows = np.concatenate([rows, np.repeat(rows[-1:], local - len(rows), axis=0)])
            yield sharding.global_batch(pipeline.to_model_range(rows), self.shardings), valid

    def _check_real_count(self, count: int, what: str) -> None:
        available = len(self.real_images) * jax.process_count()
        if count > available:
            raise NotEnoughImagesError(
                f"{what} asks for {count} real images but the dataset has {available}. "
                "Lower the eval.*_num_images setting or use a larger dataset."
            )

    def reference(self, count: int) -> tuple[fid.ReferenceStats, np.ndarray]:
        """Mean/covariance of the first `count` real images' features, and up to `eval.kid_num_images` features.

        Cached on disk (npz + npy) and in memory.
        """
        if jax.process_count() > 1:  # Whole global batches only, so no process contributes padding.
            count -= count % self.batch_size
        if count in self._reference:
            return self._reference[count]
        self._check_real_count(count, "The FID/KID reference")
        cache_dir = self.config.stats_cache_dir or os.path.join(pipeline.default_cache_dir(), "..", "fid_stats")
        preprocessing = {k: v for k, v in self.describe().items() if k != "detector"}
        path = fid.reference_stats_path(
            os.path.abspath(cache_dir),
            self.dataset_name,
            self.dataset_fingerprint,
            int(self.real_images.shape[1]),
            count,
            preprocessing,
        )
        kid_path = path[: -len(".npz")] + "-kid_features.npy"
        kid_count = min(self.config.kid_num_images, count)

        def compute():
            stats, kept = fid.FeatureStats(), []
            for images, valid in _progress(self._real_batches(count), count, self.batch_size, "reference features"):
                feats = self.features(images)[:valid]
                stats.update(feats)
                if sum(len(k) for k in kept) < kid_count:
                    kept.append(feats)
            if jax.process_index() == 0:
                os.makedirs(os.path.dirname(kid_path), exist_ok=True)
                np.save(kid_path + ".tmp.npy", np.concatenate(kept)[:kid_count])
                os.replace(kid_path + ".tmp.npy", kid_path)
            return stats.mean_cov()

        if not os.path.exists(kid_path) and os.path.exists(path):
            os.remove(path)  # Stats without their KID features: recompute both.
        key = fid.reference_stats_key(
            self.dataset_name, self.dataset_fingerprint, int(self.real_images.shape[1]), count, preprocessing
        )
        stats = fid.cached_reference_stats(path, compute, meta=key)
        self._reference[count] = (stats, np.load(kid_path))
        return self._reference[count]

    # --- generated data ---------------------------------------------------

    def _sampler(self, generate: Callable) -> Callable:
        """generate jitted once per generator function: (state, key) -> quantised images sharded on the mesh."""
        if generate not in self._samplers:
            self._samplers[generate] = jax.jit(
                lambda state, key: quantize(generate(state, key, self.batch_size)),
                out_shardings=self.shardings.data,
            )
        return self._samplers[generate]

    def evaluate(
        self,
        generate: Callable[[Any, jax.Array, int], jax.Array],
        state: Any,
        rng: jax.Array,
        metrics: tuple[str, ...],
        num_images: int,
        reference_images: int,
        prefix: str = "eval/",
    ) -> dict[str, float]:
        """Scores `num_images` generated images with each metric.

        Args:
          generate: (state, rng, batch_size) -> images [B, S, S, 3] in [-1, 1], e.g. `method.generate`.
          state: the train state passed to `generate`.
          rng: key of the samples.
          metrics: subset of METRICS.
          num_images: generated images for FID/KID (SWD and detection use their own eval.* counts, capped here).
          reference_images: real images behind the FID/KID reference statistics.
          prefix: metric-name prefix.

        Returns:
          Flat metric names (carrying their budgets, e.g. "eval/fid50k") -> values.
        """
        self.prepare(metrics)
        start = time.monotonic()
        need_features = "fid" in metrics or "kid" in metrics
        swd_count = min(self.config.swd_num_images, num_images) if "swd" in metrics else 0
        detection_count = min(self.config.detection_num_images, num_images) if "detection" in metrics else 0
        kid_count = min(self.config.kid_num_images, num_images) if "kid" in metrics else 0
        generated_count = num_images if need_features else max(swd_count, detection_count)
        sample = self._sampler(generate)
        to_host = jax.jit(lambda x: x, out_shardings=self.shardings.replicated)

        stats, kid_features, pixels = fid.FeatureStats(), [], []
        kept_pixels = max(swd_count, detection_count)
        batches = range(0, generated_count, self.batch_size)
        for index in _progress(iter(batches), generated_count, self.batch_size, "generated samples"):
            valid = min(self.batch_size, generated_count - index)
            images = sample(state, jax.random.fold_in(rng, index))
            if need_features:
                feats = self.features(images)[:valid]
                stats.update(feats)
                if sum(len(k) for k in kid_features) < kid_count:
                    kid_features.append(feats)
            if sum(len(p) for p in pixels) < kept_pixels:
                pixels.append(pipeline.to_uint8(to_host(images))[:valid])
        pixels = np.concatenate(pixels) if pixels else None

        results: dict[str, float] = {}
        if self.config.reference_stats:  # Statistics computed elsewhere, e.g. by pytorch-fid.
            if "kid" in metrics:
                raise ConfigError("KID needs reference features, which eval.reference_stats files lack: drop 'kid'.")
            reference = fid.load_stats_npz(self.config.reference_stats)
        elif need_features:
            reference, reference_features = self.reference(reference_images)
        if "fid" in metrics:
            mu, sigma = stats.mean_cov()
            results[f"{prefix}fid{budget_name(num_images)}"] = fid.frechet_distance(
                mu, sigma, reference.mu, reference.sigma
            )
        if "kid" in metrics:
            mean, std = kid.kernel_inception_distance(
                np.concatenate(kid_features)[:kid_count],
                reference_features,
                num_subsets=self.config.kid_subsets,
                subset_size=self.config.kid_subset_size,
            )
            name = f"{prefix}kid{budget_name(kid_count)}"
            results[f"{name}_mean"], results[f"{name}_std"] = mean, std
        if "swd" in metrics:
            self._check_real_count(swd_count, "SWD")
            distances = swd.swd(pixels[:swd_count], np.asarray(self.real_images[:swd_count]))
            results.update(
                {f"{prefix}{k.replace('swd/', f'swd{budget_name(swd_count)}/')}": v for k, v in distances.items()}
            )
        if "detection" in metrics:
            from animejax.metrics import detection

            found = detection.detection_rate(
                pixels[:detection_count],
                self._detector_path(),
                scale_factor=self.config.detector_scale_factor,
                min_neighbors=self.config.detector_min_neighbors,
                min_size=self.config.detector_min_size,
            )
            results[f"{prefix}detection_rate{budget_name(detection_count)}"] = found["rate"]
        logging.info(
            "Evaluated %s on %d samples in %.1f s", ", ".join(metrics), generated_count, time.monotonic() - start
        )
        return results


def headline(results: dict[str, float], metric: str) -> tuple[str, float, bool]:
    """The one value that ranks checkpoints for `metric`: (name, value, lower_is_better).

    "fid" -> eval/fid<N>, "kid" -> its mean, "swd" -> the mean over levels, "detection" -> the rate (higher
    is better).
    """
    suffix = {"kid": "_mean", "swd": "/mean"}.get(metric, "")
    matches = [k for k in results if k.split("/", 1)[-1].startswith(metric) and k.endswith(suffix)]
    if len(matches) != 1:
        raise ConfigError(f"Cannot rank by {metric!r}: results hold {sorted(results)}.")
    return matches[0], float(results[matches[0]]), metric != "detection"


def _progress(iterator, total: int, batch_size: int, what: str):
    """Passes items through, logging progress about every 10 seconds."""
    last = start = time.monotonic()
    for done, item in enumerate(iterator):
        yield item
        now = time.monotonic()
        if now - last > 10:
            last = now
            count = min((done + 1) * batch_size, total)
            rate = count / (now - start)
            logging.info("%s: %d/%d images (%.0f img/s, ETA %.0f s)", what, count, total, rate, (total - count) / rate)
