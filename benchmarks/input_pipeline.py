"""Input pipeline throughput: decoding JPEGs per image vs. batches from the decode cache.

(a) no cache: `ImageFolder.load` (JPEG decode + centre crop + Lanczos resize) for
    each image, in a thread pool of `config.data.num_workers` threads, the pool
    size the cache build uses;
(b) cache: after the cache is built (`cache.cached_images`), batches from
    `pipeline.batch_dataset` + `pipeline.iterate_batches` (grain background
    threads, random flip), as `train.py` reads them; optionally (c) the same plus
    `sharding.global_batch`, the host-to-device step of the training loop.

Uses the real faces in /work/shared/data/anime_faces_96 and falls back to the
built-in synthetic source (with a note) when they are absent. Each measurement
is repeated `--repeats` times with the 1-minute load average recorded before
it; medians are reported. `--step NAME=IMAGES_PER_S` (from benchmarks/vae_step.py)
adds the ratio of cached loading to that train step.

  python benchmarks/input_pipeline.py --step vae=64.0
  python benchmarks/input_pipeline.py --image_size=32 --step vae:cpu=250.0
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vae_step import CpuMeter, machine, wait_idle  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_FACES = os.path.join(os.path.dirname(REPO), "shared", "data", "anime_faces_96")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=SHARED_FACES, help="Image folder (synthetic source if it does not exist).")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--decode_images", type=int, default=4096, help="Images decoded per (a) repeat.")
    parser.add_argument("--batches", type=int, default=300, help="Batches read per (b) repeat.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num_workers", type=int, default=None, help="Decode threads; default config.data's (4).")
    parser.add_argument("--loader_threads", type=int, default=None, help="Default config.data's (2).")
    parser.add_argument("--prefetch", type=int, default=None, help="Default config.data's (4).")
    parser.add_argument("--cache_dir", default="", help="Decode cache to reuse; default a temporary directory.")
    parser.add_argument("--device_put", action="store_true", help="Also time (c): batches put on the JAX device.")
    parser.add_argument("--wait_idle", type=float, default=0.0, help="As in vae_step.py: wait for < 0.2 busy cores.")
    parser.add_argument("--step", action="append", default=[], help="NAME=IMAGES_PER_S of a train step.")
    return parser.parse_args(argv)


def load():
    return os.getloadavg()[0]


def _others(others: list[float]) -> str:
    return f" (others {others[-1]:.2f} cores)"


def time_decode(source, count: int, num_workers: int) -> float:
    """Images/s of `source.load` over the first `count` images in a pool of `num_workers` threads."""
    count = min(count, len(source))
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max(1, num_workers)) as pool:
        for image in pool.map(source.load, range(count)):
            assert image.shape[-1] == 3
    return count / (time.perf_counter() - start)


def time_batches(images, args, defaults, repeat: int, device_put: bool) -> float:
    """Images/s of the cached pipeline: `batches` batches after 5 warm-up batches."""
    from animejax.data import pipeline

    dataset = pipeline.batch_dataset(images, args.batch_size, seed=repeat, random_flip=True)
    threads = args.loader_threads or defaults.loader_threads
    batches = pipeline.iterate_batches(dataset, 0, threads, args.prefetch or defaults.prefetch)
    put = None
    if device_put:
        import jax

        from animejax import sharding

        shardings = sharding.make_mesh(1)

        def put(batch):
            return sharding.global_batch(batch, shardings)

    for _ in range(5):
        next(batches)
    start = time.perf_counter()
    last = None
    for _ in range(args.batches):
        batch = next(batches)
        last = put(batch) if put else batch
    if put:
        jax.block_until_ready(last)
    return args.batches * args.batch_size / (time.perf_counter() - start)


def main(argv=None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, REPO)
    from animejax.config_defaults import base_config
    from animejax.data import cache, sources, synthetic

    defaults = base_config().data
    num_workers = args.num_workers or defaults.num_workers
    if os.path.isdir(args.data):
        source = sources.ImageFolder(args.data, args.image_size)
        what = f"{len(source)} JPEGs in {args.data}"
    else:
        source = synthetic.SyntheticFaces(20_000, args.image_size, seed=0)
        what = (
            f"NOTE: {args.data} not found; the built-in synthetic source ({len(source)} images, rendered, not decoded)"
        )
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}, {machine()}; {what}")
    print(
        f"# {args.image_size} px, batch {args.batch_size}; decode threads {num_workers}, loader threads "
        f"{args.loader_threads or defaults.loader_threads}, prefetch {args.prefetch or defaults.prefetch}"
    )

    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="animejax_bench_cache_")
    try:
        decode, loads_a, others = [], [], []
        for repeat in range(args.repeats):
            if args.wait_idle:
                wait_idle(args.wait_idle)
            loads_a.append(load())
            meter = CpuMeter()
            decode.append(time_decode(source, args.decode_images, num_workers))
            others.append(meter.others_cores())
            print(f"# (a) repeat {repeat + 1}: load {loads_a[-1]:.2f}; {decode[-1]:.0f} img/s{_others(others)}")

        build_load = load()
        start = time.perf_counter()
        images = cache.cached_images(source, cache_dir, num_workers)
        build_seconds = time.perf_counter() - start
        print(
            f"# cache: {len(images)} images in {cache_dir}, obtained in {build_seconds:.1f} s "
            f"({len(images) / build_seconds:.0f} img/s if built now; load {build_load:.2f})"
        )

        cached, loads_b, put = [], [], []
        for repeat in range(args.repeats):
            if args.wait_idle:
                wait_idle(args.wait_idle)
            loads_b.append(load())
            meter = CpuMeter()
            cached.append(time_batches(images, args, defaults, repeat, False))
            others.append(meter.others_cores())
            line = f"# (b) repeat {repeat + 1}: load {loads_b[-1]:.2f}; {cached[-1]:.0f} img/s{_others(others)}"
            if args.device_put:
                put.append(time_batches(images, args, defaults, repeat, True))
                line += f"; (c) with device put {put[-1]:.0f} img/s"
            print(line)
    finally:
        if not args.cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)

    a, b = statistics.median(decode), statistics.median(cached)
    all_loads = loads_a + loads_b
    print("| px | batch | (a) no cache img/s | (b) decode cache img/s | b/a | load (1 min) | others' CPU (cores) |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.image_size} | {args.batch_size} | {a:.0f} | {b:.0f} | {b / a:.1f} | "
        f"{min(all_loads):.2f}-{max(all_loads):.2f} | {min(others):.2f}-{max(others):.2f} |"
    )
    if put:
        print(f"# (c) cache + device put: {statistics.median(put):.0f} img/s")
    for item in args.step:
        name, _, value = item.partition("=")
        ratio = b / float(value)
        verdict = "meets" if ratio >= 5 else "below"
        print(
            f"# cached loading / {name} train step ({float(value):.1f} img/s): {ratio:.1f}x ({verdict} the 5x target)"
        )


if __name__ == "__main__":
    main()
