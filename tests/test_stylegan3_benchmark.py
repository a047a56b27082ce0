"""benchmarks/stylegan3_step.py at the tiniest sizes: both models compile, step and report consistent ratios."""

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, subprocess_env

TINY = [
    "--resolution=32",
    "--channel_base=256",
    "--channel_max=8",
    "--z_dim=16",
    "--num_layers=4",
    "--batch_size=4",
    "--steps=1",
    "--exact_steps",
    "--warmup=0",
    "--synth_calls=1",
    "--augment=none",
    # Two of the four models: each step compiles for tens of seconds on 2 cores even this small.
    "--models=sg2_plain,sg3_t",
    "--config_width_flops=0",
]


def test_tiny_run_reports_sec_per_kimg_and_ratios(tmp_path):
    out_json = tmp_path / "sg3.json"
    command = [sys.executable, os.path.join(REPO, "benchmarks", "stylegan3_step.py"), *TINY, f"--json={out_json}"]
    completed = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    rows = [line for line in completed.stdout.splitlines() if line.startswith("| SG")]
    assert [row.split("|")[1].strip() for row in rows] == ["SG2 plain", "SG3-T"], completed.stdout

    out = json.loads(out_json.read_text())
    results = out["results"]
    assert out["resolution"] == 32 and out["batch_size"] == 4
    for r in results.values():
        assert r["finite_metrics"]
        assert math.isfinite(r["sec_per_kimg"]) and r["sec_per_kimg"] > 0
        assert math.isfinite(r["synth_sec_per_kimg"]) and r["synth_sec_per_kimg"] > 0
        assert r["compile_s"] > 0
        assert r["channel_base"] == 256 and r["channel_max"] == 8
        assert r["params"]["D"] == results["sg2_plain"]["params"]["D"]  # The same discriminator.
    assert results["sg3_t"]["style_mixing"] == 0 and results["sg2_plain"]["pl_weight"] == 0
    ratio = out["ratios"]["SG3-T/SG2 plain sec_per_kimg"]
    assert ratio == pytest.approx(results["sg3_t"]["sec_per_kimg"] / results["sg2_plain"]["sec_per_kimg"])
    # docs/configs.md, FFHQ-U 1024 on V100: 28.71 / 17.55.
    assert out["paper_ratios"]["FFHQ-U 1024 SG3-T/SG2 V100"] == pytest.approx(1.636, abs=1e-3)
