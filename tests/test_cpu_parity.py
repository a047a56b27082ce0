"""benchmarks/cpu_parity.py: the timing loop's arithmetic on runners of known speed, and one real entry end to end."""

import os
import sys
import time

import pytest

from tests.conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
cpu_parity = pytest.importorskip("cpu_parity")


def _sleeper(seconds_per_step: float, calls: list):
    def run(steps: int) -> float:
        calls.append(steps)
        start = time.perf_counter()
        time.sleep(seconds_per_step * steps)
        return time.perf_counter() - start

    return run


def test_measure_reports_medians_of_img_per_s_in_whole_lazy_periods(monkeypatch):
    jax_calls, torch_calls = [], []
    # animejax at 10 ms a step, torch at 20 ms: twice as fast, batch 8, lazy period 4.
    pair = cpu_parity.Pair(_sleeper(0.01, jax_calls), _sleeper(0.02, torch_calls), 8, "1,000", None, period=4)
    monkeypatch.setattr(cpu_parity, "make_pair", lambda model, size: (pair, "a label"))
    args = cpu_parity.parse_args(["--repeats=3", "--window_s=0.2"])
    result = cpu_parity.measure("vae", 32, args)
    assert result["steps_per_window"] % 4 == 0 and result["steps_per_window"] >= 4
    assert all(steps % 4 == 0 for steps in jax_calls + torch_calls)
    assert (len(jax_calls), len(torch_calls)) == (2 + 3, 1 + 3)  # Warm-ups: two for JAX (the first compiles), one.
    assert result["animejax_ips"] == pytest.approx(800.0, rel=0.2)  # 8 images / 10 ms.
    assert result["torch_ips"] == pytest.approx(400.0, rel=0.2)
    assert result["speed_ratio"] == pytest.approx(2.0, rel=0.2)
    table = cpu_parity.markdown(
        {"command": "c", "machine": "m", "wall_s": 60.0, "results": [result, {"model": "x", "size": 64, "error": "E"}]}
    )
    assert "| vae (a label) | 32 | 8 | 1,000 |" in table and "error: E" in table


def test_one_real_entry_runs_both_frameworks():
    pytest.importorskip("torch")
    args = cpu_parity.parse_args(["--repeats=1", "--window_s=0.01"])
    result = cpu_parity.measure("dcgan_transpose", 32, args)
    assert result["params"] == "370,723 / 167,841"  # Equal in both frameworks (checked by the pair).
    assert result["animejax_ips"] > 0 and result["torch_ips"] > 0
