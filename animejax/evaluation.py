"""Sample-quality evaluation of a generator: runs the metrics of `animejax.metrics.registry` on its samples.

Generated images come straight from the method's jitted `generate` (no PNG
round trip; quantised to 8-bit levels like saved images) and are handed to each
metric batch by batch. Features are computed on device, batched and sharded over
the mesh; when metrics need both feature networks (Inception for fid/kid,
Illustration2Vec for fid_i2v/kid_i2v), one jitted call computes both on the same
batch, so the samples are drawn once. Statistics are accumulated in float64 on
the host. Reference statistics of the dataset are computed once per feature
network and cached in an npz keyed by dataset, resolution, image count and
preprocessing (for Illustration2Vec, the weights' sha256 too). Every report says
what it computed: image counts, and the resize, weights and detector settings
the metrics used.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from animejax import multihost, sharding
from animejax.data import pipeline
from animejax.errors import ConfigError, UserError
from animejax.metrics import detection, fid, registry, resize
from animejax.metrics.illust2vec import FEATURE_LAYERS
from animejax.pretrained import illust2vec as pretrained_illust2vec
from animejax.pretrained import inception as pretrained_inception

METRICS = registry.METRICS  # ("fid", "fid_i2v", "kid", "kid_i2v", "swd", "detection")
INCEPTION, ILLUST2VEC = registry.INCEPTION, registry.ILLUST2VEC
I2V_PREPROCESSING = (
    "i2v/chainer_i2v.py's: skimage resize(order=1, mode='constant') of the min-max scaled uint8 image to 224x224, "
    "BGR, mean pixel (164.76, 167.48, 181.14) subtracted"
)


class NotEnoughImagesError(UserError):
    """A metric asked for more real images than the dataset holds."""


quantize = pipeline.quantize


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
        # Real images of the whole dataset that every process can serve its share of (shards may differ by one).
        self.num_real_images = multihost.smallest(len(real_images)) * jax.process_count()
        self.dataset_name = dataset_name
        self.dataset_fingerprint = dataset_fingerprint
        self.batch_size = eval_config.batch_size
        sharding.local_batch_size(self.batch_size, shardings, "eval.batch_size")  # Fails early if unsplittable.
        self.resize_mode = resize.check_resize_mode(eval_config.fid_resize)
        # Feature network name -> (apply(variables, images in [-1, 1]) -> [B, D], variables on the mesh).
        self._networks: dict[str, tuple[Callable, Any]] = {}
        self._feature_fns: dict[tuple[str, ...], Callable] = {}  # Networks -> one jitted call computing them.
        self._i2v_sha256: str | None = None
        self._reference: dict[tuple[str, int], tuple[fid.ReferenceStats, np.ndarray]] = {}
        self._samplers: dict[Callable, Callable] = {}  # generate or translate -> its jitted, quantised form.
        self._to_host = jax.jit(lambda x: x, out_shardings=shardings.replicated)

    # --- networks and files ---------------------------------------------

    def _load_network(self, network: str) -> None:
        """Loads a feature network's weights onto the mesh once (a missing file fails here, before sampling)."""
        if network in self._networks:
            return
        if network == INCEPTION:
            module, variables = pretrained_inception.load_fid_inception(
                self.config.inception_path or None, self.config.weights_cache_dir or None
            )

            def apply(variables, images):
                return module.apply(variables, resize.resize_for_inception(images, self.resize_mode))

        elif network == ILLUST2VEC:
            module, variables, self._i2v_sha256 = pretrained_illust2vec.load_illust2vec(
                self.config.i2v_path or None, self.config.weights_cache_dir or None, self.config.i2v_layer
            )
            apply = module.apply
        else:
            raise ValueError(f"Unknown feature network {network!r}; expected one of {registry.FEATURE_NETWORKS}.")
        self._networks[network] = (apply, jax.device_put(variables, self.shardings.replicated))

    def _load_inception(self):
        self._load_network(INCEPTION)
        return self._networks[INCEPTION][1]

    def prepare(self, metrics: tuple[str, ...]) -> None:
        """Checks `metrics` (ConfigError: unknown names, conflicting settings) and loads what they need now.

        So a wrong name or setting, or a missing weights or detector file, fails before training.
        """
        selected = registry.lookup(metrics)
        for metric in selected:
            metric.check(self.config)
        for network in registry.FEATURE_NETWORKS:
            if registry.uses(selected, network):
                self._load_network(network)
        if registry.uses(selected, registry.DETECTOR):
            self._detector_path()

    def _detector_path(self) -> str:
        return detection.detector_path(self.config.detector_path or None, self.config.weights_cache_dir or None)

    def features(self, images: jax.Array) -> np.ndarray:
        """Inception pool3 features of a batch in [-1, 1] sharded on the mesh: [B, 2048] float32 (host)."""
        return self.network_features(images, (INCEPTION,))[INCEPTION]

    def network_features(self, images: jax.Array, networks: tuple[str, ...]) -> dict[str, np.ndarray]:
        """{network: [B, D] float32 features (host)} of a batch in [-1, 1] sharded on the mesh.

        All `networks` run in one jitted call (one program, one pass over the batch on the device).
        """
        networks = tuple(sorted(set(networks)))
        if not networks:
            return {}
        for network in networks:
            self._load_network(network)
        if networks not in self._feature_fns:
            applies = {network: self._networks[network][0] for network in networks}
            self._feature_fns[networks] = jax.jit(
                lambda variables, images: {name: apply(variables[name], images) for name, apply in applies.items()},
                in_shardings=(self.shardings.replicated, self.shardings.data),
                out_shardings=self.shardings.replicated,
            )
        variables = {network: self._networks[network][1] for network in networks}
        return {name: np.asarray(value) for name, value in self._feature_fns[networks](variables, images).items()}

    def describe(self, metrics: tuple[str, ...] = METRICS) -> dict[str, Any]:
        """What `metrics` used, recorded in every report.

        Args:
          metrics: the metrics that ran (default: all). The feature network, weights and resize are listed if
            one of them takes Inception features, the detector settings if one runs the detector; no metrics
            give {}.
        """
        selected = registry.lookup(metrics)
        settings: dict[str, Any] = {}
        if registry.uses(selected, registry.INCEPTION):
            settings["feature_network"] = "FID Inception-v3 (pytorch-fid port), pool3 2048-d"
            settings["inception_weights"] = self.config.inception_path or pretrained_inception.FID_WEIGHTS_FILENAME
            settings["resize"] = f"{self.resize_mode}: {resize.RESIZE_MODES[self.resize_mode]}"
        if registry.uses(selected, registry.ILLUST2VEC):
            layer = self.config.i2v_layer
            network = FEATURE_LAYERS.get(layer, layer)
            settings["i2v_feature_network"] = f"Illustration2Vec (illust2vec_ver200), {network}"
            settings["i2v_weights"] = self.config.i2v_path or pretrained_illust2vec.I2V_WEIGHTS_FILENAME
            if self._i2v_sha256:  # Known once the weights are loaded (always so after an evaluation).
                settings["i2v_weights_sha256"] = self._i2v_sha256
            settings["i2v_preprocessing"] = I2V_PREPROCESSING
        if selected:
            settings["generated_images_quantized_to_uint8"] = True
        if registry.uses(selected, registry.DETECTOR):
            settings["detector"] = {
                "file": detection.FILE_NAME,
                "scale_factor": self.config.detector_scale_factor,
                "min_neighbors": self.config.detector_min_neighbors,
                "min_size": self.config.detector_min_size,
                "smaller_images_enlarged_to": self.config.get("detector_min_image_size", 0),
            }
        return settings

    # --- real data --------------------------------------------------------

    def _real_batches(self, count: int, images: np.ndarray | None = None):
        """Yields (global batch sharded on the mesh, number of valid rows) over the first `count` real images.

        `images` (this process's share of another set, e.g. the held-out images) replaces the dataset's.
        """
        images = self.real_images if images is None else images
        local = self.batch_size // jax.process_count()
        for begin in range(0, count, self.batch_size):
            valid = min(self.batch_size, count - begin)
            rows = np.asarray(images[begin // jax.process_count() :][:local])
            if len(rows) < local:  # Pad the last batch; padded rows are dropped after the features.
                rows = np.concatenate([rows, np.repeat(rows[-1:], local - len(rows), axis=0)])
            yield sharding.global_batch(pipeline.to_model_range(rows), self.shardings), valid

    def _check_real_count(self, count: int, what: str) -> None:
        available = self.num_real_images
        if count > available:
            raise NotEnoughImagesError(
                f"{what} asks for {count} real images but the dataset has {available}. "
                "Lower the eval.*_num_images setting or use a larger dataset."
            )

    def reference(self, count: int, network: str = INCEPTION) -> tuple[fid.ReferenceStats, np.ndarray]:
        """Mean/covariance of the first `count` real images' features of `network`, and up to
        `eval.kid_num_images` of those features.

        Cached on disk (npz + npy) and in memory, apart for each network: Illustration2Vec statistics are keyed
        by the weights' sha256 and layer as well.
        """
        if jax.process_count() > 1:  # Whole global batches only, so no process contributes padding.
            count -= count % self.batch_size
        if (network, count) in self._reference:
            return self._reference[(network, count)]
        self._check_real_count(count, "The FID/KID reference")
        cache_dir = self.config.stats_cache_dir or os.path.join(pipeline.default_cache_dir(), "..", "fid_stats")
        self._load_network(network)  # The weights' hash is part of the Illustration2Vec key.
        # What the features depend on (part of the cache key); the Inception key is unchanged from before.
        preprocessing = self.describe(("fid",) if network == INCEPTION else ("fid_i2v",))
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
                feats = _dataset_order(self.network_features(images, (network,))[network])[:valid]
                stats.update(feats)
                if sum(len(k) for k in kept) < kid_count:
                    kept.append(feats)
            return stats.mean_cov(), np.concatenate(kept)[:kid_count]

        # Statistics without their KID features are recomputed. With several processes, all compute (the
        # features are a collective) or none: each host may have a cache of its own, and each writes its copy.
        if multihost.all_processes(os.path.exists(path) and os.path.exists(kid_path)):
            logging.info("Loading reference statistics from %s", path)
        else:
            logging.info("Computing reference statistics for %s", path)
            (mu, sigma), kid_features = compute()
            _save_npy(kid_path, kid_features)
            meta = fid.reference_stats_key(
                self.dataset_name, self.dataset_fingerprint, int(self.real_images.shape[1]), count, preprocessing
            )
            fid.save_stats_npz(path, mu, sigma, meta=meta)
        self._reference[(network, count)] = (fid.load_stats_npz(path), np.load(kid_path))
        return self._reference[(network, count)]

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
          Flat metric names (carrying their budgets, e.g. "eval/fid50k") -> values, in registry order.
        """
        sample = self._sampler(generate)
        return self._score(
            lambda index: sample(state, jax.random.fold_in(rng, index)), metrics, num_images, reference_images, prefix
        )

    def evaluate_conditional(
        self,
        translate: Callable[[Any, dict], jax.Array],
        state: Any,
        inputs: np.ndarray,
        metrics: tuple[str, ...],
        reference_images: int,
        prefix: str = "eval/",
    ) -> dict[str, float]:
        """Scores a conditional method's outputs for `inputs` (all of them) with each metric.

        Args:
          translate: (state, {"image": originals in [-1, 1]}) -> outputs [B, S, S, 3] in [-1, 1], e.g.
            `method.translate` (SRGAN's upscaled low-resolution versions of the originals).
          state: the train state passed to `translate`.
          inputs: this process's share of the originals, uint8 [M, S, S, 3] (the held-out images).
          metrics, reference_images, prefix: as `evaluate`; the outputs are compared with the dataset's
            real images as generated samples are.
        """
        count = len(inputs) * jax.process_count()
        if jax.process_count() > 1:
            count -= count % self.batch_size
        batches = self._real_batches(count, inputs)
        if translate not in self._samplers:
            self._samplers[translate] = jax.jit(
                lambda state, images: quantize(translate(state, {"image": images})), out_shardings=self.shardings.data
            )
        output = self._samplers[translate]
        return self._score(lambda index: output(state, next(batches)[0]), metrics, count, reference_images, prefix)

    def _score(self, next_images: Callable[[int], jax.Array], metrics, num_images, reference_images, prefix):
        """Feeds the images `next_images(index)` (the batch from image `index` on) to `metrics`; their results."""
        self.prepare(metrics)
        start = time.monotonic()
        selected = [metric(self.config, num_images) for metric in registry.lookup(metrics)]
        generated_count = self._feed(selected, next_images)
        references = self._references(reference_images)
        results: dict[str, float] = {}
        for metric in selected:
            results.update(metric.results(references, prefix))
        logging.info(
            "Evaluated %s on %d samples in %.1f s", ", ".join(metrics), generated_count, time.monotonic() - start
        )
        return results

    def _references(self, reference_images: int) -> registry.References:
        """The real-data side of one evaluation; each part is computed or loaded only when a metric asks."""

        def reference_stats() -> fid.ReferenceStats:
            if self.config.reference_stats:  # Statistics computed elsewhere, e.g. by pytorch-fid.
                return fid.load_stats_npz(self.config.reference_stats)
            return self.reference(reference_images)[0]

        def real_images(count: int, what: str) -> np.ndarray:
            """The dataset's first `count` images, in its order, gathered from every process's shard."""
            self._check_real_count(count, what)
            local = -(-count // jax.process_count())
            return multihost.interleave(np.asarray(self.real_images[:local]))[:count]

        return registry.References(
            reference_stats=reference_stats,
            reference_features=lambda: self.reference(reference_images)[1],
            real_images=real_images,
            detector_path=self._detector_path,
            i2v_reference_stats=lambda: self.reference(reference_images, ILLUST2VEC)[0],
            i2v_reference_features=lambda: self.reference(reference_images, ILLUST2VEC)[1],
        )

    def _feed(self, metrics: list[registry.Metric], next_images: Callable[[int], jax.Array]) -> int:
        """Takes as many images as `metrics` need, feeds each batch to every metric; returns the count.

        Each network's features are computed (all networks still wanted in one jitted call on the batch), and
        uint8 pixels fetched to the host, while a metric still wants them. For generated samples, the batch
        starting at image `i` uses the key `fold_in(rng, i)`: a metric sees the same images whatever else runs.
        """
        features_needed: dict[str, int] = {}
        for metric in metrics:
            if metric.features_from():
                network = metric.features_from()
                features_needed[network] = max(features_needed.get(network, 0), metric.features_needed)
        pixels_needed = max((metric.pixels_needed for metric in metrics), default=0)
        count = max([pixels_needed, *features_needed.values()])
        for index in _progress(iter(range(0, count, self.batch_size)), count, self.batch_size, "generated samples"):
            valid = min(self.batch_size, count - index)
            images = next_images(index)
            networks = tuple(network for network, needed in features_needed.items() if index < needed)
            features = {name: value[:valid] for name, value in self.network_features(images, networks).items()}
            pixels = pipeline.to_uint8(self._to_host(images))[:valid] if index < pixels_needed else None
            for metric in metrics:
                metric.update(features.get(metric.features_from()), pixels)
        return count


def _dataset_order(rows: np.ndarray) -> np.ndarray:
    """The rows of one of `_real_batches`' global batches in the dataset's order.

    With P processes the batch holds process 0's rows, then process 1's...; process p's rows are the images
    p, p + P, p + 2P... of the batch's span (its shard), so row j of process p is image p + P * j.
    """
    processes = jax.process_count()
    if processes == 1:
        return rows
    return rows.reshape((processes, -1, *rows.shape[1:])).swapaxes(0, 1).reshape(rows.shape)


def _save_npy(path: str, array: np.ndarray) -> None:
    """np.save through a temporary file of this process, renamed when complete (processes may share the folder)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp_path, path)
    except BaseException:
        os.remove(tmp_path)
        raise


def headline(results: dict[str, float], metric: str) -> tuple[str, float, bool]:
    """The one value that ranks checkpoints for `metric`: (name, value, lower_is_better).

    The registered metric names it (`headline_key`: "fid" -> eval/fid<N>, "kid" -> its mean, "swd" -> the mean
    over levels, "detection" -> the rate, higher is better). ConfigError for an unknown metric, or results
    without exactly one such value.
    """
    metric_class = registry.get(metric)
    matches = [name for name in results if metric_class.is_headline(name)]
    if len(matches) != 1:
        raise ConfigError(f"Cannot rank by {metric!r}: results hold {sorted(results)}.")
    return matches[0], float(results[matches[0]]), metric_class.lower_is_better


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
