"""The model configs, one file per model, shipped with the package (the repository's `configs/` links here).

`--config=vae` or `--config=vae:quick` names one of these files; `--config=path/to/file.py[:variant]` takes any
config file, such as a user's own.
"""

from __future__ import annotations

import os

FOLDER = os.path.dirname(os.path.abspath(__file__))


def available() -> dict[str, str]:
    """Config name -> the first line of its docstring, for every packaged config."""
    out = {}
    for file_name in sorted(os.listdir(FOLDER)):
        if file_name.endswith(".py") and not file_name.startswith("_"):
            with open(os.path.join(FOLDER, file_name)) as f:
                text = f.read()
            summary = text.split('"""')[1].strip().splitlines()[0] if text.startswith('"""') else ""
            out[file_name[:-3]] = summary
    return out


def resolve(spec: str) -> str:
    """`name[:variant]` -> the packaged file's `path[:variant]`; a path (with a "/" or ".py") is returned as it is.

    Raises:
      ValueError: for a name that is neither a packaged config nor an existing file.
    """
    name, colon, variant = spec.partition(":")
    if os.sep in name or "/" in name or name.endswith(".py") or os.path.isfile(name):
        if not os.path.isfile(name):
            raise ValueError(f"No config file {name!r}: pass a config file path, or one of {', '.join(available())}.")
        return spec
    path = os.path.join(FOLDER, f"{name}.py")
    if not os.path.exists(path):
        raise ValueError(f"Unknown config {name!r}: pass a config file path, or one of {', '.join(available())}.")
    return path + colon + variant
