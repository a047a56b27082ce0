"""XLA's persistent compilation cache for the command line.

Every process of a run compiles its programs anew. That takes seconds for the small models and a minute for a
StyleGAN2 step on a CPU. With the cache on, a run resuming after an interruption, and any later process, loads
the executables an earlier process stored.

JAX keys each entry by the program, its compile options and XLA flags, the devices and the jax and jaxlib
versions, so anything changed compiles anew. Only programs that took MIN_COMPILE_S or longer to compile are
stored. With the `filelock` package (a dependency) the folder keeps its most recently used MAX_BYTES.
"""

from __future__ import annotations

import os

from absl import logging

from animejax import storage
from animejax.errors import UserError

ENVIRONMENT_VARIABLE = "ANIMEJAX_COMPILATION_CACHE"  # The flag's default when set (the test suite sets it).
MAX_BYTES = 2 * 1024**3
MIN_COMPILE_S = 1.0
_SAVED_EVENT = "/jax/compilation_cache/compile_time_saved_sec"
_enabled_folder: str | None = None  # What `enable` last turned on, for the log line.
_listening = False


def default_dir() -> str:
    """$XDG_CACHE_HOME/animejax/xla (~/.cache/animejax/xla)."""
    root = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    return os.path.join(root, "animejax", "xla")


def resolve(setting: str) -> str | None:
    """The folder that `--compilation_cache=setting` names: "" the default folder, "none" none (off).

    Raises:
        UserError: for a bucket URL (each host keeps its cache on its own disk).
    """
    if setting.strip().lower() == "none":
        return None
    if storage.is_url(setting):
        raise UserError(
            f"--compilation_cache={setting!r} is a URL; give a folder on this host's disk, leave it empty for "
            f"{default_dir()}, or pass none to compile every program anew"
        )
    return os.path.expanduser(setting) if setting else default_dir()


def enable(setting: str) -> str | None:
    """Turns the cache on in the folder `resolve(setting)` names and logs each program loaded from it.

    Returns:
        The folder, or None when the setting is "none": then JAX's cache is off, even where the environment's
        JAX_COMPILATION_CACHE_DIR names a folder.
    """
    import jax

    folder = resolve(setting)
    if folder is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    try:
        import filelock  # noqa: F401  (JAX's size limit needs it; without it the folder is left unbounded.)

        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    except ImportError:
        logging.info("filelock is not installed: the compilation cache in %s is not size-limited", folder)
    global _enabled_folder
    _enabled_folder = folder
    _listen()
    return folder


def _loaded(event: str, seconds: float, **_) -> None:
    if event == _SAVED_EVENT:
        logging.info(
            "Loaded a compiled program from the compilation cache in %s (%.1f s of compiling saved)",
            _enabled_folder,
            seconds,
        )


def _listen() -> None:
    """Registers `_loaded` with JAX's monitoring, once per process however often `enable` runs."""
    global _listening
    if not _listening:
        import jax

        jax.monitoring.register_event_duration_secs_listener(_loaded)
        _listening = True
