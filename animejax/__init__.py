"""Generative models of anime faces in JAX/Flax.

The Python API (animejax/api.py) is importable from here: `animejax.load_config`, `animejax.fit`,
`animejax.sample`, `animejax.evaluate`, `animejax.compare`, `animejax.run_config`. It loads on first use, so
`import animejax` imports neither JAX nor the models.
"""

_API = ("load_config", "run_config", "fit", "sample", "evaluate", "compare")
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from animejax import api

        return getattr(api, name)
    raise AttributeError(f"module 'animejax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
