"""The Fréchet distance itself: animejax's eigendecomposition route against pytorch-fid's `sqrtm`, same statistics.

Features are drawn as N correlated Gaussian vectors of dimension D (2048, Inception pool3's), their mean and
covariance taken with `animejax.metrics.fid.FeatureStats`, and both implementations compute the distance between
two such sets; the script reports seconds per distance, the ratio and the relative difference of the values.
animejax runs on the default JAX backend (`fid._linalg_backend`: numpy/LAPACK on a CPU, jax.numpy on a GPU).

  python benchmarks/frechet_distance.py                      # D=2048, N=10000, 3 repeats
  python benchmarks/frechet_distance.py --num=1000           # rank-deficient covariances (N < D)
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import warnings

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--num", type=int, default=10_000, help="Feature vectors per set.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no_reference", action="store_true", help="Skip pytorch-fid (e.g. where it is absent).")
    parser.add_argument("--wait_idle", type=float, default=0.0, help="As in vae_step.py: wait for < 0.2 busy cores.")
    return parser.parse_args(argv)


def feature_stats(rng: np.random.Generator, num: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of `num` correlated Gaussian features, fed in batches as the evaluator feeds them."""
    from animejax.metrics import fid

    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    stats = fid.FeatureStats()
    for begin in range(0, num, 1000):
        stats.update(rng.normal(size=(min(1000, num - begin), dim)) @ mixing + rng.normal())
    return stats.mean_cov()


def median_seconds(fn, repeats: int, wait: float) -> tuple[float, float]:
    from vae_step import wait_idle

    times, value = [], None
    for _ in range(repeats):
        if wait:
            wait_idle(wait)
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), float(value)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import jax
    from vae_step import machine

    from animejax.metrics import fid

    rng = np.random.default_rng(0)
    stats1, stats2 = feature_stats(rng, args.num, args.dim), feature_stats(rng, args.num, args.dim)
    fid.frechet_distance(*stats1, *stats2)  # warm-up (jax.numpy compiles its ops on accelerators)
    ours_s, ours = median_seconds(lambda: fid.frechet_distance(*stats1, *stats2), args.repeats, args.wait_idle)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "backend": jax.default_backend(),
        "dim": args.dim,
        "num": args.num,
        "animejax_s": ours_s,
        "animejax_fid": ours,
    }
    if not args.no_reference:
        from pytorch_fid import fid_score

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # pytorch-fid passes scipy's deprecated `disp`
            ref_s, ref = median_seconds(
                lambda: fid_score.calculate_frechet_distance(*stats1, *stats2), args.repeats, args.wait_idle
            )
        result.update(pytorch_fid_s=ref_s, pytorch_fid=ref, speedup=ref_s / ours_s, rel_diff=abs(ours - ref) / ref)
    for key, value in result.items():
        print(f"{key}: {value}")
    return result


if __name__ == "__main__":
    main()
