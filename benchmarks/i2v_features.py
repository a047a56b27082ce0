"""Illustration2Vec feature throughput beside the FID Inception's: same images, same batches, same run.

Three jitted functions get the same uint8 faces of `--image_size` px (the real faces when present, else the
built-in synthetic set; `fid_features.load_images`), scaled to [-1, 1] as the evaluator does: the FID Inception
(pytorch-fid's bilinear resize to 299, pool3), Illustration2Vec (the original's resize to 224, BGR and mean,
VGG-style network to encode1), and both in one call, as the evaluator runs them when `fid` and `fid_i2v` are
asked together. Both networks have seeded random weights at their released sizes (the released files cannot be
downloaded on our machines; speed does not depend on the values). Timings exclude compilation and report
images/s; "both" is what one generated batch costs in features with the two metrics on.

  python benchmarks/i2v_features.py --num_images=64 --batch_size=16        # on a 2-core CPU
  python benchmarks/i2v_features.py --num_images=5000 --batch_size=250     # on a GPU
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_images", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--image_size", type=int, default=64, help="Side of the input images before the resizes.")
    parser.add_argument("--xla_defaults_off", action="store_true", help="Skip animejax's default XLA flags.")
    return parser.parse_args(argv)


def feature_functions():
    """{name: jitted (variables, uint8 batch) -> features}, and {name: variables} (seeded random weights)."""
    import jax
    import jax.numpy as jnp

    from animejax.metrics import illust2vec, inception, resize

    fid_module, i2v_module = inception.FIDInceptionV3(), illust2vec.Illust2Vec()
    variables = {
        "inception": inception.init_variables(fid_module, jax.random.PRNGKey(0)),
        "illust2vec": illust2vec.init_variables(i2v_module, jax.random.PRNGKey(1)),
    }
    applies = {
        "inception": lambda v, x: fid_module.apply(v, resize.resize_for_inception(x, "pytorch_fid")),
        "illust2vec": i2v_module.apply,
    }

    def make(names):
        def features(variables, batch):
            x = batch.astype(jnp.float32) / 127.5 - 1.0
            return {name: applies[name](variables[name], x) for name in names}

        return jax.jit(features)

    functions = {
        "FID Inception-v3 (299 px, pool3 2048-d)": make(("inception",)),
        "Illustration2Vec (224 px, encode1 4096-d)": make(("illust2vec",)),
        "both in one call (the evaluator with fid and fid_i2v)": make(("inception", "illust2vec")),
    }
    return functions, variables


def time_function(function, variables, images: np.ndarray, batch_size: int) -> float:
    """images/s of `function` over `images` in batches, compilation and the first batch excluded."""
    import jax

    jax.block_until_ready(function(variables, images[:batch_size]))  # Compiles.
    start = time.perf_counter()
    for begin in range(0, len(images), batch_size):
        out = function(variables, images[begin : begin + batch_size])
    jax.block_until_ready(out)
    return len(images) / (time.perf_counter() - start)


def main(argv=None) -> None:
    args = parse_args(argv)
    if not args.xla_defaults_off:  # Measure what `animejax --mode=eval` runs.
        from animejax import xla_flags

        xla_flags.set_defaults()
    import jax
    from fid_features import load_images

    if args.num_images % args.batch_size:
        raise SystemExit("--num_images must be a multiple of --batch_size (every batch is then full).")
    images, where = load_images(args.num_images, args.image_size)
    functions, variables = feature_functions()
    rates = {name: time_function(function, variables, images, args.batch_size) for name, function in functions.items()}
    print(f"# Feature networks, {args.num_images} images of {args.image_size} px ({where}), batch {args.batch_size}")
    print(
        f"date {datetime.date.today()} | {platform.machine()} | load {os.getloadavg()[0]:.1f} | "
        f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.devices()[0].device_kind}) | "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    print("| network | images/s |")
    print("|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.1f} |")
    names = list(rates)
    print(f"Illustration2Vec / Inception: {rates[names[1]] / rates[names[0]]:.2f}x")


if __name__ == "__main__":
    main()
