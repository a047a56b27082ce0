"""benchmarks/conv_grads.py: the three passes of a convolution agree between XLA and torch, and are timed."""

import os
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
conv_grads = pytest.importorskip("conv_grads")
pytest.importorskip("torch")


def test_three_passes_agree_with_torch_and_are_timed():
    (result,) = conv_grads.main(["--shapes=2x8x4x6", "--calls=2", "--threads=0"])
    for name in ("forward", "input_grad", "kernel_grad"):
        assert result[f"{name}_rel_diff"] < 1e-5, (name, result)
        assert result[f"{name}_xla_ms"] > 0 and result[f"{name}_torch_ms"] > 0
    assert "| 2x8x4x6 |" in conv_grads.markdown([result])
