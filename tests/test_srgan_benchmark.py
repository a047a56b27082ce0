"""benchmarks/srgan_step.py at the tiniest sizes: the parity check passes and all three measurements report."""

import math
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, subprocess_env

TINY = [
    "--image_size=32",
    "--channels=8",
    "--num_blocks=1",
    "--d_channels=8",
    "--batch_size=4",
    "--steps=1",
    "--repeats=1",
    "--warmup=0",
]


def test_tiny_run_matches_torch_and_reports_the_three_measurements(tmp_path):
    pytest.importorskip("torch")
    env = subprocess_env()
    # The three runners' initial states compile the same init: a compilation cache compiles it once.
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "jax_cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    command = [sys.executable, os.path.join(REPO, "benchmarks", "srgan_step.py"), *TINY]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    out = completed.stdout

    parity = next(line for line in out.splitlines() if line.startswith("# parity"))
    checks = dict(re.findall(r"(LR bicubic|[GD]\([^)]*\) (?:running|batch) stats) ([0-9.e+-]+)", parity))
    assert len(checks) == 5, parity
    assert all(float(value) < 1e-4 for value in checks.values()), parity
    assert int(re.search(r"LR 8-bit levels differing (\d+) of", parity).group(1)) <= 1, parity

    for label in ("pixel step", "adversarial step", "upscale 4x"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {label}"))
        jax_ips, torch_ips, ratio = (float(cell) for cell in row.split("|")[7:10])
        assert all(math.isfinite(x) and x > 0 for x in (jax_ips, torch_ips, ratio)), row
        assert ratio == pytest.approx(jax_ips / torch_ips, rel=0.02, abs=0.01), row
