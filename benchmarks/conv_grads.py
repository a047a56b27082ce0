"""A 3x3 convolution's three passes, XLA against torch: forward, input gradient and kernel gradient.

Where a train step loses to PyTorch eager on the CPU with most of its time in convolutions (StyleGAN2 at 64 px,
BENCHMARKS.md "CPU parity"), this says which pass loses. Shapes are batch x size x in x out channels, NHWC for
XLA, NCHW for torch, "same" padding; both at --threads cores.

    python benchmarks/conv_grads.py --shapes=8x64x32x32,8x64x64x64,8x32x64x64,8x16x128x128
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import pin_threads  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="8x64x32x32,8x64x64x64,8x32x64x64,8x16x128x128")
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20, help="Timed calls per pass (after 3 untimed).")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


def _median_ms(call, calls: int) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def measure(shape: tuple[int, int, int, int], kernel: int, calls: int) -> dict:
    """Median ms of each pass in both frameworks, and the largest relative difference of their results."""
    import jax
    import torch
    from jax import lax

    batch, size, cin, cout = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, size, size, cin), dtype=np.float32)
    w = (rng.standard_normal((kernel, kernel, cin, cout)) / np.sqrt(kernel * kernel * cin)).astype(np.float32)
    dy = rng.standard_normal((batch, size, size, cout), dtype=np.float32)
    pad = kernel // 2

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), [(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))

    passes = {
        "forward": jax.jit(conv),
        "input_grad": jax.jit(lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0]),
        "kernel_grad": jax.jit(lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0]),
    }
    xj, wj, dyj = jax.numpy.asarray(x), jax.numpy.asarray(w), jax.numpy.asarray(dy)
    args = {"forward": (xj, wj), "input_grad": (xj, wj, dyj), "kernel_grad": (xj, wj, dyj)}

    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    wt = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous()
    dyt = torch.from_numpy(dy).permute(0, 3, 1, 2).contiguous()
    torch_passes = {
        "forward": lambda: torch.nn.functional.conv2d(xt, wt, padding=pad),
        "input_grad": lambda: torch.nn.grad.conv2d_input(xt.shape, wt, dyt, padding=pad),
        "kernel_grad": lambda: torch.nn.grad.conv2d_weight(xt, wt.shape, dyt, padding=pad),
    }
    to_nhwc = {"forward": (0, 2, 3, 1), "input_grad": (0, 2, 3, 1), "kernel_grad": (2, 3, 1, 0)}
    result = {"shape": "x".join(map(str, shape)), "kernel": kernel}
    for name, fn in passes.items():
        ours = np.asarray(fn(*args[name]))
        theirs = torch_passes[name]().permute(*to_nhwc[name]).numpy()
        result[f"{name}_rel_diff"] = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
        result[f"{name}_xla_ms"] = _median_ms(lambda: jax.block_until_ready(fn(*args[name])), calls)
        result[f"{name}_torch_ms"] = _median_ms(torch_passes[name], calls)
    return result


def markdown(results: list[dict]) -> str:
    lines = [
        "| B x S x in x out | forward XLA / torch ms | input grad XLA / torch ms | kernel grad XLA / torch ms |",
        "|---|---|---|---|",
    ]
    for r in results:
        cells = [
            f"{r[f'{p}_xla_ms']:.2f} / {r[f'{p}_torch_ms']:.2f} ({r[f'{p}_xla_ms'] / r[f'{p}_torch_ms']:.2f}x)"
            for p in ("forward", "input_grad", "kernel_grad")
        ]
        lines.append(f"| {r['shape']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    threads = pin_threads(args.threads)  # Before JAX and torch start their thread pools.
    import torch

    torch.set_num_threads(threads)
    shapes = [tuple(int(v) for v in item.split("x")) for item in args.shapes.split(",")]
    results = [measure(shape, args.kernel, args.calls) for shape in shapes]
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
