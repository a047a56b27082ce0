"""Config validation, in one place, before anything is built: types, ranges, and sizes the networks can take.

`validate(config)` collects every problem as one line naming the field, the value and what is allowed, and
raises one `ConfigError` listing them all; `run_setup.setup_run` calls it first. Whether the networks take the
image size is known when the state is traced (once, abstractly, in `setup_run`): `network_size_error` turns a
failure there into the same kind of message.
"""

from __future__ import annotations

import jax
import ml_collections

from animejax.errors import ConfigError

# (field, minimum) of integer fields that must be at least that.
_AT_LEAST = (
    ("train.batch_size", 1),
    ("train.num_steps", 1),
    ("train.log_every", 1),
    ("train.sample_every", 1),
    ("train.checkpoint_every", 1),
    ("data.image_size", 8),
    ("data.num_images", 1),
    ("data.loader_threads", 1),
    ("data.prefetch", 1),
    ("eval.batch_size", 1),
    ("sample.grid_size", 1),
    ("checkpoint.max_to_keep", 1),
    ("mesh.num_devices", 0),
    ("eval.every_steps", 0),
    ("sample.num_individual", 0),
    ("eval.detector_min_image_size", 0),
    ("eval.num_images", 1),
    ("eval.train_num_images", 1),
    ("eval.swd_num_images", 1),
    ("eval.detection_num_images", 1),
    ("eval.kid_num_images", 2),  # KID's unbiased MMD divides by m(m - 1).
    ("eval.kid_subsets", 1),
    ("eval.kid_subset_size", 2),
    ("eval.reference_images", 0),
    ("eval.loss_num_images", 0),
)
# (field, low, high) of numbers in the half-open range [low, high).
_IN_RANGE = (
    ("ema.decay", 0.0, 1.0),
    ("optim.b1", 0.0, 1.0),
    ("optim.b2", 0.0, 1.0),
    ("train.time_budget_s", 0.0, float("inf")),
)


def _get(config: ml_collections.ConfigDict, field: str):
    node = config
    for part in field.split("."):
        if not hasattr(node, "keys") or part not in node:
            return None
        node = node[part]
    return node


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _range_problems(config: ml_collections.ConfigDict) -> list[str]:
    problems = []
    for field, minimum in _AT_LEAST:
        value = _get(config, field)
        if value is None:
            continue
        if not _is_int(value):
            problems.append(f"{field}={value!r}: must be an integer >= {minimum}")
        elif value < minimum:
            problems.append(f"{field}={value}: must be at least {minimum}")
    for field, low, high in _IN_RANGE:
        value = _get(config, field)
        if value is not None and not (isinstance(value, (int, float)) and low <= value < high):
            problems.append(f"{field}={value!r}: must be a number in [{low}, {high})")
    for group in ("optim", "optim_d"):
        value = _get(config, f"{group}.learning_rate")
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            problems.append(f"{group}.learning_rate={value!r}: must be a number > 0")
    return problems


# (field, allowed values) of string fields with a fixed set of choices.
_CHOICES = (("eval.i2v_layer", ("encode1", "encode1neuron")),)  # animejax.metrics.illust2vec.FEATURE_LAYERS


def _choice_problems(config: ml_collections.ConfigDict) -> list[str]:
    problems = []
    for field, allowed in _CHOICES:
        value = _get(config, field)
        if value is not None and value not in allowed:
            problems.append(f"{field}={value!r}: must be one of {', '.join(allowed)}")
    return problems


def _data_problems(config: ml_collections.ConfigDict) -> list[str]:
    source, path = _get(config, "data.source"), _get(config, "data.path")
    if source == "folder" and not path:
        return ["data.source=folder needs data.path: a folder of images (searched recursively)"]
    if source == "tfds" and not path:
        return [
            "data.source=tfds needs data.path: a TFDS dataset name (e.g. anime_faces) or its prepared version folder"
        ]
    return []


def _metric_problems(config: ml_collections.ConfigDict) -> list[str]:
    """Unknown names in eval.metrics, found before training (not at its first evaluation, or at --mode=eval)."""
    from animejax.metrics import registry

    metrics = _get(config, "eval.metrics")
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics or ())
    try:
        registry.lookup(names)
    except ConfigError as error:
        return [f"eval.metrics={','.join(names)}: {error}"]
    return []


def _device_problems(config: ml_collections.ConfigDict) -> list[str]:
    requested, available = _get(config, "mesh.num_devices"), jax.device_count()
    if _is_int(requested) and requested > available:
        return [f"mesh.num_devices={requested}: only {available} device(s) are visible; use 0 (all) or 1-{available}"]
    return []


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises one ConfigError listing every type, range, data source, metric name and device problem of `config`."""
    problems = _range_problems(config) + _choice_problems(config) + _data_problems(config) + _metric_problems(config)
    problems += _device_problems(config)
    if problems:
        raise ConfigError("Invalid config:\n  " + "\n  ".join(problems))


def network_size_error(config: ml_collections.ConfigDict, error: Exception) -> ConfigError:
    """The ConfigError for networks that cannot take `data.image_size` with the `model` fields (`error` says why).

    `run_setup.setup_run` traces the method's state abstractly (no compilation) once; a ValueError or TypeError
    there means the sizes do not fit, and this names the fields instead of showing a traceback.
    """
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ConfigError(
        f"Invalid config:\n  data.image_size={config.data.image_size} with model {dict(config.model)}: "
        f"the networks cannot take it ({first})"
    )
