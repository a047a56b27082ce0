"""benchmarks/gpu_suite.py --dry_run: every entry of the GPU suite runs on the CPU and reports finite figures."""

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, subprocess_env


def test_dry_run_runs_every_entry(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("pytorch_fid")
    out = tmp_path / "suite"
    command = [sys.executable, os.path.join(REPO, "benchmarks", "gpu_suite.py"), "--dry_run", f"--out={out}"]
    completed = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=1500)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((out / "gpu_suite.json").read_text())
    assert report["dry_run"] and not report["skipped"]
    errors = [r for r in report["results"] if "error" in r]
    assert not errors, errors
    names = [r["entry"] for r in report["results"]]
    for family in ("ddpm", "stylegan2", "dcgan", "resdcgan", "wgan_gp", "vae", "stylegan3"):
        assert f"train {family}" in names
        assert any(name.startswith(f"sample {family}") for name in names)
    assert {r["dtype"] for r in report["results"] if r["entry"] == "train dcgan"} == {"float32", "bfloat16"}
    assert any(name.startswith("FID of a DCGAN end to end") for name in names)
    transposed = next(r for r in report["results"] if r["entry"].startswith("DCGAN G fwd+bwd: phase-split"))
    assert transposed["uses"] == "phases"  # The CPU's choice (animejax.models.layers.transposed_conv_implementation).
    strided = next(r for r in report["results"] if r["entry"].startswith("DCGAN D fwd+bwd: space-to-depth"))
    assert strided["uses"] == "space_to_depth"  # animejax.models.layers.strided_conv_implementation on the CPU.
    for result in report["results"]:
        assert math.isfinite(result["animejax"]) and result["animejax"] > 0, result
        if result.get("reference") is not None:
            assert math.isfinite(result["ratio"]) and result["ratio"] > 0, result
        if result["entry"].startswith("train"):
            assert result["tflops_per_step"] > 0, result  # XLA's cost analysis gave the step's FLOPs.
    features = next(r for r in report["results"] if r["entry"].startswith("FID Inception features"))
    assert features["max_rel_diff"] < 1e-4  # Same weights as pytorch-fid: the same features.
    table = (out / "gpu_suite.md").read_text()
    assert "Dry run" in table and table.count("\n| ") == len(report["results"]) + 1  # Header + one row each.


@pytest.mark.parametrize("workers", [1, 2])
def test_budget_skips_entries_it_cannot_start(tmp_path, workers):
    """Past --budget_s no entry starts, in the GPU's one process and in a dry run's side-by-side workers."""
    pytest.importorskip("torch")
    out = tmp_path / "suite"
    command = [
        sys.executable,
        os.path.join(REPO, "benchmarks", "gpu_suite.py"),
        "--dry_run",
        "--families=vae,dcgan",
        "--budget_s=0",
        f"--workers={workers}",
        f"--out={out}",
    ]
    completed = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((out / "gpu_suite.json").read_text())
    assert report["results"] == []
    assert report["skipped"][:2] == ["train vae float32", "fid features"]
    assert "train dcgan bfloat16" in report["skipped"] and "sample dcgan" in report["skipped"]
    assert "Skipped (budget of 0 s reached)" in (out / "gpu_suite.md").read_text()


def test_workers_only_for_dry_runs():
    """Timed entries on a GPU must run alone: --workers above 1 without --dry_run is refused."""
    completed = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "gpu_suite.py"), "--workers=2"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert "--workers=2: give 1, or more with --dry_run only" in completed.stderr
