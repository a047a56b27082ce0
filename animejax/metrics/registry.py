"""The sample-quality metrics by config name: what each needs, how it accumulates, what it reports and ranks by.

One small `Metric` subclass per metric, registered under its name in `REGISTRY` ("fid", "fid_i2v", "kid",
"kid_i2v", "swd", "detection"). The `Evaluator` (animejax/evaluation.py) builds one instance per evaluation, feeds
it every generated batch (the features of the network it needs, Inception or Illustration2Vec, and/or uint8
images, as its `needs` say), then asks for its results, handing it the real-data side through a `References`
object. Both feature networks run in one jitted call per generated batch, so FID and FID-i2v share the samples.
Result names carry their sample budgets ("eval/fid50k", "eval/fid_i2v50k", "eval/kid10k_mean", "eval/swd10k/32",
"eval/detection_rate1k"); `headline_key` names the one result that ranks checkpoints and `lower_is_better` its
direction.
"""

from __future__ import annotations

import abc
import dataclasses
import re
from typing import Callable, ClassVar, Iterable

import ml_collections
import numpy as np

from animejax.errors import ConfigError
from animejax.metrics import detection, fid, kid, swd

INCEPTION = "inception"  # Inception pool3 features of the generated images (and of real ones, as reference).
ILLUST2VEC = "illust2vec"  # Illustration2Vec features (eval.i2v_layer) of the generated images, likewise.
FEATURE_NETWORKS = (INCEPTION, ILLUST2VEC)
PIXELS = "pixels"  # The generated images themselves, uint8 [N, S, S, 3] on the host.
DETECTOR = "detector"  # The face-detector file.

_BUDGET_PATTERN = r"\d+k?"  # What `budget_name` writes.


def budget_name(count: int) -> str:
    """50000 -> '50k', 2048 -> '2048': metric names carry their sample budget."""
    return f"{count // 1000}k" if count % 1000 == 0 and count >= 1000 else str(count)


@dataclasses.dataclass(frozen=True)
class References:
    """The real-data side of one evaluation: functions, so each part is computed only when a metric asks for it.

    Attributes:
        reference_stats: () -> mean [2048] and covariance [2048, 2048] of the real images' Inception features.
        reference_features: () -> Inception features of real images for KID, [M, 2048] float32.
        real_images: (count, what) -> the first `count` real images, uint8 [count, S, S, 3]; `what` names the
            asker in the error raised when the dataset has fewer.
        detector_path: () -> the verified face-detector file.
        i2v_reference_stats, i2v_reference_features: the same two for Illustration2Vec features (fid_i2v,
            kid_i2v); by default they raise, for callers that run no Illustration2Vec metric.
    """

    reference_stats: Callable[[], fid.ReferenceStats]
    reference_features: Callable[[], np.ndarray]
    real_images: Callable[[int, str], np.ndarray]
    detector_path: Callable[[], str]
    i2v_reference_stats: Callable[[], fid.ReferenceStats] = lambda: _no_i2v_references()
    i2v_reference_features: Callable[[], np.ndarray] = lambda: _no_i2v_references()


def _no_i2v_references():
    raise ValueError("these References carry no Illustration2Vec reference features")


class Metric(abc.ABC):
    """One metric over one evaluation: built with the eval config, fed generated batches, then asked for results.

    Subclasses set `name`, `needs` (a subset of {INCEPTION, ILLUST2VEC, PIXELS, DETECTOR}, at most one feature
    network), `headline_key` (its ranking result's name without the prefix, "{budget}" standing for the budget)
    and `lower_is_better`, and implement `results`. The default `update` keeps the first `budget` rows of the
    input the metric needs (the features of its network if it needs one, else pixels).

    Args:
        config: `config.eval`.
        num_images: generated images of the evaluation; `budget` is this metric's share of them.
    """

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]]
    headline_key: ClassVar[str]
    lower_is_better: ClassVar[bool] = True

    def __init__(self, config: ml_collections.ConfigDict, num_images: int):
        self.config = config
        self.budget = self.budget_for(config, num_images)
        self._kept: list[np.ndarray] = []
        self._count = 0

    @classmethod
    def budget_for(cls, config: ml_collections.ConfigDict, num_images: int) -> int:
        """How many of the `num_images` generated images this metric scores (all, unless capped by config)."""
        del config
        return num_images

    @classmethod
    def check(cls, config: ml_collections.ConfigDict) -> None:
        """Raises ConfigError for eval settings this metric cannot work with (called before any work)."""
        del config

    @classmethod
    def features_from(cls) -> str | None:
        """The feature network whose features this metric takes (INCEPTION or ILLUST2VEC), or None."""
        return next((network for network in FEATURE_NETWORKS if network in cls.needs), None)

    @property
    def features_needed(self) -> int:
        """Generated images whose features (of `features_from()`) this metric takes."""
        return self.budget if self.features_from() else 0

    @property
    def pixels_needed(self) -> int:
        """Generated images this metric takes as uint8 pixels."""
        return self.budget if PIXELS in self.needs else 0

    def update(self, features: np.ndarray | None, pixels: np.ndarray | None) -> None:
        """Accumulates one generated batch.

        Args:
            features: [B, D] float32 features of `features_from()`'s network (Inception: D = 2048), or None once
                no metric needs more or the metric needs none.
            pixels: [B, S, S, 3] uint8 images, or None once no metric needs more.
        """
        rows = features if self.features_from() else pixels
        if rows is not None and self._count < self.budget:
            rows = rows[: self.budget - self._count]
            self._kept.append(rows)
            self._count += len(rows)

    def kept(self) -> np.ndarray:
        """The rows kept by `update`: [budget, ...]."""
        return np.concatenate(self._kept)

    @abc.abstractmethod
    def results(self, references: References, prefix: str) -> dict[str, float]:
        """Flat result names (`prefix` + names carrying the budget) -> values."""

    def result_name(self, prefix: str, key: str | None = None) -> str:
        """`prefix` + `key` (default `headline_key`) with this evaluation's budget filled in."""
        return prefix + (key or self.headline_key).format(budget=budget_name(self.budget))

    @classmethod
    def is_headline(cls, name: str) -> bool:
        """Whether the result `name` (with any "<prefix>/" in front, and any budget) is this metric's headline."""
        before, after = cls.headline_key.split("{budget}")
        return re.search(rf"(?:^|/){re.escape(before)}{_BUDGET_PATTERN}{re.escape(after)}\Z", name) is not None


class FID(Metric):
    """Fréchet Inception distance (Heusel et al., 2017) of all generated images' features to the reference."""

    name = "fid"
    needs = frozenset({INCEPTION})
    headline_key = "fid{budget}"

    def __init__(self, config: ml_collections.ConfigDict, num_images: int):
        super().__init__(config, num_images)
        self._stats = fid.FeatureStats()

    def update(self, features: np.ndarray | None, pixels: np.ndarray | None) -> None:
        """Adds the batch's features to the running float64 mean and covariance."""
        if features is not None and self._count < self.budget:
            features = features[: self.budget - self._count]
            self._stats.update(features)
            self._count += len(features)

    def reference_stats(self, references: References) -> fid.ReferenceStats:
        """The real images' statistics in this metric's feature space."""
        return references.reference_stats()

    def results(self, references: References, prefix: str) -> dict[str, float]:
        mu, sigma = self._stats.mean_cov()
        reference = self.reference_stats(references)
        return {self.result_name(prefix): fid.frechet_distance(mu, sigma, reference.mu, reference.sigma)}


def _check_i2v_layer(config: ml_collections.ConfigDict) -> None:
    from animejax.metrics.illust2vec import FEATURE_LAYERS  # Flax: imported only when the metric is asked for.

    if config.i2v_layer not in FEATURE_LAYERS:
        raise ConfigError(
            f"eval.i2v_layer={config.i2v_layer!r} is not an Illustration2Vec feature layer; "
            f"choose one of {', '.join(FEATURE_LAYERS)}."
        )


class FIDI2V(FID):
    """The Fréchet distance on Illustration2Vec features (`eval.i2v_layer`, GANime's anime-specific FID).

    Its reference statistics are cached apart from the Inception ones, keyed by the caffemodel's sha256.
    """

    name = "fid_i2v"
    needs = frozenset({ILLUST2VEC})
    headline_key = "fid_i2v{budget}"

    @classmethod
    def check(cls, config: ml_collections.ConfigDict) -> None:
        _check_i2v_layer(config)

    def reference_stats(self, references: References) -> fid.ReferenceStats:
        return references.i2v_reference_stats()


class KID(Metric):
    """Kernel Inception distance (Binkowski et al., 2018) on the first `eval.kid_num_images` features: mean, std."""

    name = "kid"
    needs = frozenset({INCEPTION})
    headline_key = "kid{budget}_mean"

    @classmethod
    def budget_for(cls, config: ml_collections.ConfigDict, num_images: int) -> int:
        return min(config.kid_num_images, num_images)

    @classmethod
    def check(cls, config: ml_collections.ConfigDict) -> None:
        if config.reference_stats:
            raise ConfigError("KID needs reference features, which eval.reference_stats files lack: drop 'kid'.")

    def reference_features(self, references: References) -> np.ndarray:
        """The real images' features in this metric's feature space."""
        return references.reference_features()

    def results(self, references: References, prefix: str) -> dict[str, float]:
        mean, std = kid.kernel_inception_distance(
            self.kept(),
            self.reference_features(references),
            num_subsets=self.config.kid_subsets,
            subset_size=self.config.kid_subset_size,
        )
        name = self.result_name(prefix, self.headline_key[: -len("_mean")])
        return {f"{name}_mean": mean, f"{name}_std": std}


class KIDI2V(KID):
    """The kernel distance on Illustration2Vec features (the first `eval.kid_num_images`), mean and std."""

    name = "kid_i2v"
    needs = frozenset({ILLUST2VEC})
    headline_key = "kid_i2v{budget}_mean"

    @classmethod
    def check(cls, config: ml_collections.ConfigDict) -> None:
        _check_i2v_layer(config)  # Its reference features are the dataset's, whatever eval.reference_stats says.

    def reference_features(self, references: References) -> np.ndarray:
        return references.i2v_reference_features()


class SWD(Metric):
    """Sliced Wasserstein distance (Karras et al., 2018) per pyramid level and their mean, x1e3."""

    name = "swd"
    needs = frozenset({PIXELS})
    headline_key = "swd{budget}/mean"

    @classmethod
    def budget_for(cls, config: ml_collections.ConfigDict, num_images: int) -> int:
        return min(config.swd_num_images, num_images)

    def results(self, references: References, prefix: str) -> dict[str, float]:
        real = references.real_images(self.budget, "SWD")
        distances = swd.swd(self.kept(), real)  # "swd/64", ..., "swd/mean"
        name = self.result_name(prefix, "swd{budget}")
        return {f"{name}/{key.split('/', 1)[1]}": value for key, value in distances.items()}


class Detection(Metric):
    """Fraction of generated images in which lbpcascade_animeface finds a face (higher is better)."""

    name = "detection"
    needs = frozenset({PIXELS, DETECTOR})
    headline_key = "detection_rate{budget}"
    lower_is_better = False

    @classmethod
    def budget_for(cls, config: ml_collections.ConfigDict, num_images: int) -> int:
        return min(config.detection_num_images, num_images)

    def results(self, references: References, prefix: str) -> dict[str, float]:
        images = self.kept()
        # Smaller images are enlarged first: at 32 px the cascade finds a face in about half of the real faces,
        # enlarged to 64 px in 96% (BENCHMARKS.md, "Detection rate at small sizes"). Older saved configs lack it.
        smallest = self.config.get("detector_min_image_size", 0)
        found = detection.detection_rate(
            images,
            references.detector_path(),
            scale_factor=self.config.detector_scale_factor,
            min_neighbors=self.config.detector_min_neighbors,
            min_size=self.config.detector_min_size,
            upscale_to=smallest if images.shape[1] < smallest else None,
        )
        return {self.result_name(prefix): found["rate"]}


REGISTRY: dict[str, type[Metric]] = {cls.name: cls for cls in (FID, FIDI2V, KID, KIDI2V, SWD, Detection)}
METRICS = tuple(REGISTRY)


def lookup(names: Iterable[str]) -> list[type[Metric]]:
    """The metric classes `names` name, once each, in registry order (the order results are reported in).

    Raises:
        ConfigError: a name that is not registered; the message lists the valid ones.
    """
    names = tuple(names)
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        raise ConfigError(f"Unknown metric(s) {unknown}; choose from {', '.join(METRICS)}.")
    return [REGISTRY[name] for name in METRICS if name in names]


def get(name: str) -> type[Metric]:
    """The metric class registered as `name`; ConfigError listing the valid names if there is none."""
    return lookup((name,))[0]


def uses(metrics: Iterable[type[Metric] | Metric], need: str) -> bool:
    """Whether any of `metrics` needs `need` (INCEPTION, ILLUST2VEC, PIXELS or DETECTOR)."""
    return any(need in metric.needs for metric in metrics)
