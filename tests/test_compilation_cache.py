"""animejax/compilation_cache.py: where the cache lives, and that a later process loads what an earlier compiled.

The kill-and-resume tests in tests/test_train.py check the same through the command line: the resumed process
logs its train step loaded from the cache and still ends bit-identical to the uninterrupted run.
"""

import os
import subprocess
import sys

import pytest

from animejax import compilation_cache
from animejax.errors import UserError
from tests.conftest import REPO, subprocess_env

# A tiny program stands in for a train step, so the threshold that keeps quick compilations out goes to 0.
_COMPILE_ONE_PROGRAM = """
import sys
import jax, jax.numpy as jnp
from absl import logging
from animejax import compilation_cache
logging.set_verbosity(logging.INFO)
print("folder:", compilation_cache.enable(sys.argv[1]))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.jit(lambda x: jnp.sin(x) @ x).lower(jnp.ones((8, 8))).compile()
"""


def _compile_in_a_new_process(setting: str, **env) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", _COMPILE_ONE_PROGRAM, setting]
    env = {**subprocess_env(), **env}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_resolve_names_the_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compilation_cache.resolve("") == os.path.join(str(tmp_path), "animejax", "xla")
    assert compilation_cache.resolve("none") is None and compilation_cache.resolve(" None ") is None
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compilation_cache.resolve("~/xla") == os.path.join(str(tmp_path), "home", "xla")
    with pytest.raises(UserError, match="URL.*this host's disk"):
        compilation_cache.resolve("gs://bucket/xla")


def test_a_second_process_loads_the_program_the_first_compiled(tmp_path):
    folder = tmp_path / "xla"
    first = _compile_in_a_new_process(str(folder))
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"folder: {folder}" in first.stdout
    assert "from the compilation cache" not in first.stderr
    entries = sorted(os.listdir(folder))
    assert entries, "the first process stored nothing"

    second = _compile_in_a_new_process(str(folder))
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"Loaded a compiled program from the compilation cache in {folder}" in second.stderr
    assert sorted(os.listdir(folder)) == entries  # Loaded, not compiled and stored again.

    # none is off even where JAX's own environment variable names the filled folder, or an empty one.
    off = _compile_in_a_new_process("none", JAX_COMPILATION_CACHE_DIR=str(folder))
    assert off.returncode == 0 and "folder: None" in off.stdout
    assert "from the compilation cache" not in off.stderr
    unused = tmp_path / "unused"
    assert _compile_in_a_new_process("none", JAX_COMPILATION_CACHE_DIR=str(unused)).returncode == 0
    assert not unused.exists() or not os.listdir(unused)
