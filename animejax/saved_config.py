"""A config file that loads a run's saved `config.json`, so `--config.a.b=value` overrides apply on top of it.

`--mode=sample` and `--mode=eval` without `--config` use `--config=<this file>:<workdir>` (main.py adds it).
"""

import json

import ml_collections

from animejax import storage
from animejax.errors import UserError


def _tuples(value):
    """JSON lists back to the tuples the config files use (so overrides such as `eval.metrics=swd,fid` parse)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def get_config(workdir: str) -> ml_collections.ConfigDict:
    """The config saved by the run in `workdir` (a local folder or a bucket URL)."""
    path = storage.as_path(workdir, "--workdir") / "config.json"
    if not path.exists():
        raise UserError(f"No saved config at {path}: pass --config=configs/<model>.py (or train first).")
    return ml_collections.ConfigDict(_tuples(json.loads(path.read_text())))
