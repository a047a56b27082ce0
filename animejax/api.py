"""The Python API: the command line's modes as functions, for notebooks and scripts.

    import animejax

    config = animejax.load_config("vae:quick", {"train.num_steps": 100})
    animejax.fit(config, "runs/vae")                    # --mode=train (resumes from runs/vae)
    animejax.sample("runs/vae")                         # --mode=sample with the run's saved config
    animejax.evaluate("runs/vae", {"eval.num_images": 512})
    animejax.compare("runs/*", "reports/cmp", overrides={"eval.metrics": ("swd",)})

Each call does what `python -m animejax.main` does with the same config and overrides: overrides are the
`--config.a.b=value` flags as a dict of dotted field names and Python values, checked the same way (an unknown
field or a value of the wrong type is an `animejax.errors.ConfigError`). Training is `fit`, not `train`: the
name `animejax.train` belongs to the training module. JAX is imported only by the calls that run models, after
the CLI's default XLA flags are set.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections

from animejax import configs, saved_config, xla_flags
from animejax.errors import ConfigError

Overrides = Mapping[str, Any] | None
PathLike = str | os.PathLike


def load_config(spec: str, overrides: Overrides = None) -> ml_collections.ConfigDict:
    """A model config, locked as the command line locks it, with `overrides` applied.

    Args:
      spec: what `--config=` takes: a packaged config `name[:variant]` ("vae", "vae:quick") or a config file
        `path.py[:argument]` ("configs/vae.py:quick", a file of your own).
      overrides: dotted field -> value, e.g. {"train.num_steps": 50, "eval.metrics": ("swd",)}; nested dicts
        such as {"train": {"num_steps": 50}} work too.

    Raises:
      ConfigError: an unknown config name or variant, an unknown field, or a value of the wrong type.
    """
    try:
        resolved = configs.resolve(spec)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    path, _, argument = resolved.partition(":")
    module_spec = importlib.util.spec_from_file_location("_animejax_api_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(argument) if argument else module.get_config()
    return _with_overrides(config, overrides, spec)


def run_config(workdir: PathLike, overrides: Overrides = None) -> ml_collections.ConfigDict:
    """The config a run saved (workdir/config.json), locked, with `overrides` applied (as sample/eval use it)."""
    workdir = os.fspath(workdir)
    return _with_overrides(saved_config.get_config(workdir), overrides, f"{workdir}/config.json")


def fit(config: ml_collections.ConfigDict | str, workdir: PathLike, overrides: Overrides = None) -> Any:
    """Trains until `config.train.num_steps`, resuming from `workdir` (`--mode=train`); returns the final state.

    Args:
      config: a config from `load_config`, or a spec for it ("vae:quick").
      workdir: the run's folder (or bucket URL): checkpoints, TensorBoard events, sample grids, config.json.
      overrides: fields to change, as in `load_config` (applied to a copy of a given config).

    Raises:
      animejax.train.Interrupted: SIGINT (a notebook's interrupt) or SIGTERM stopped training after saving a
        checkpoint; calling `fit` again continues from it.
    """
    if isinstance(config, str):
        config = load_config(config, overrides)
    elif overrides:
        config = _with_overrides(config.copy_and_resolve_references(), overrides, "the config")
    _prepare_jax()
    from animejax import train

    return train.train_and_evaluate(config, os.fspath(workdir))


def sample(workdir: PathLike, overrides: Overrides = None) -> dict[str, str]:
    """Writes sample grids (PNG), single images and GIFs of the latest checkpoint under workdir/samples
    (`--mode=sample`) with the run's saved config and `overrides`; returns name -> path."""
    config = run_config(workdir, overrides)
    _prepare_jax()
    from animejax import inference

    return inference.sample(config, os.fspath(workdir))


def evaluate(workdir: PathLike, overrides: Overrides = None) -> dict[str, float]:
    """Scores the latest checkpoint with `eval.metrics` and the method's own terms (`--mode=eval`), with the
    run's saved config and `overrides`; returns metric -> value (also written to workdir/eval_<step>.json)."""
    config = run_config(workdir, overrides)
    _prepare_jax()
    from animejax import inference

    return inference.evaluate(config, os.fspath(workdir))


def compare(
    runs: PathLike | Iterable[PathLike], out: PathLike, which: str = "best", overrides: Overrides = None
) -> dict[str, str]:
    """Evaluates several runs alike and writes report.md, report.html, report.json and PNGs under `out`
    (`--mode=compare`); returns name -> path of the report files.

    Args:
      runs: run folders, or globs ("runs/*"), as one string (comma-separated) or a list.
      out: the report's folder (or bucket URL).
      which: "best" (each run's workdir/best, else its latest checkpoint) or "latest".
      overrides: fields of the shared settings (animejax/report/settings.py), e.g. {"eval.metrics": ("swd",),
        "eval.num_images": 256}; the defaults are --mode=eval's (FID on 50k samples, which downloads weights).
    """
    if which not in ("best", "latest"):
        raise ConfigError(f"which={which!r}: choose 'best' or 'latest'.")
    patterns = runs if isinstance(runs, str | os.PathLike) else ",".join(os.fspath(run) for run in runs)
    from animejax.report import settings

    config = _with_overrides(settings.get_config(), overrides, "the compare settings")
    _prepare_jax()
    from animejax import report

    return report.run(config, os.fspath(patterns), os.fspath(out), which)


def _prepare_jax() -> None:
    """The command line's default XLA flags; they take effect if JAX's backend has not started yet."""
    xla_flags.set_defaults()


def _flatten(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping) and not isinstance(value, ml_collections.ConfigDict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _with_overrides(config: ml_collections.ConfigDict, overrides: Overrides, source: str) -> ml_collections.ConfigDict:
    """Locks `config` (no new fields, as `--config` is locked) and sets each dotted field of `overrides`."""
    config.lock()
    for key, value in _flatten(overrides or {}).items():
        parts = key.split(".")
        node = config
        for depth, part in enumerate(parts):
            where = ".".join(parts[:depth]) or "the top level"
            if not isinstance(node, ml_collections.ConfigDict):
                raise ConfigError(f"{key}: {where} is a value in {source}, not a group of fields.")
            if part not in node:
                choices = ", ".join(sorted(node.keys()))
                raise ConfigError(f"{key}: {source} has no field {part!r} in {where}; valid fields there: {choices}.")
            if depth < len(parts) - 1:
                node = node[part]
        if isinstance(node[parts[-1]], ml_collections.ConfigDict):
            raise ConfigError(f"{key} is a group of fields ({', '.join(sorted(node[parts[-1]].keys()))}): set those.")
        try:
            node[parts[-1]] = value
        except TypeError as error:  # ml_collections' type check: a str for an int field, ...
            raise ConfigError(f"{key}={value!r}: {error}") from None
    return config
