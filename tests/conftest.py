"""Test setup: 8 simulated CPU devices, shared data location, config helpers."""

import os
import shutil
import tempfile

# Must precede the first `import jax` anywhere in the test session.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The command line's compilation cache (animejax/compilation_cache.py) for this session only, never the user's
# ~/.cache: the processes of a kill-and-resume test compile their program once, as a user's resumed run does.
COMPILATION_CACHE = tempfile.mkdtemp(prefix="animejax_xla_cache_")
os.environ["ANIMEJAX_COMPILATION_CACHE"] = COMPILATION_CACHE

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_FACES = os.path.join(os.path.dirname(REPO), "shared", "data", "anime_faces_96")


@pytest.fixture(scope="session")
def shared_faces() -> str:
    """The 20k real faces beside the checkout; skips when this is a user's clone without them."""
    if not os.path.isdir(SHARED_FACES):
        pytest.skip(f"real-face data not found at {SHARED_FACES} (only present on the project's machines)")
    return SHARED_FACES


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """One decode cache for the whole session, so each dataset is decoded once."""
    return str(tmp_path_factory.mktemp("decode_cache"))


def subprocess_env() -> dict:
    """Environment for child processes: one CPU device, the repo importable."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = env["XLA_FLAGS"].replace("--xla_force_host_platform_device_count=8", "").strip()
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(COMPILATION_CACHE, ignore_errors=True)
