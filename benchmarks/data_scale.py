"""The measurements behind ARCHITECTURE.md's "Data and checkpoints at cluster scale": small here, extrapolated there.

(a) Decode-cache build (`cache.cached_images`: read, decode, centre crop, Lanczos resize, write the memmap) on
    `--images` real faces (96 px JPEGs) at 64 px, and on JPEGs re-encoded at 1.5x the target side for 256 and
    1024 px, with `--num_workers` threads;
(b) the memory a host's listing of a bucket folder takes: Python strings of `gs://` object URLs;
(c) train-state sizes (= checkpoint sizes: parameters, optimizer, EMA) of packaged configs, from an abstract
    trace of `method.init_state` (nothing allocated), and one real Orbax checkpoint on disk to compare with.

  python benchmarks/data_scale.py
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import tracemalloc

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CpuMeter, wait_idle  # noqa: E402
from vae_step import machine  # noqa: E402

SHARED_FACES = os.path.join(os.path.dirname(REPO), "shared", "data", "anime_faces_96")
# name[:variant][@image px]: @ overrides data.image_size, as --config.data.image_size would.
CONFIGS = ("vae:cpu", "dcgan", "ddpm", "ddpm:128", "ddpm:128@256", "ddpm:128@1024", "stylegan2", "stylegan2:256")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=SHARED_FACES, help="Image folder (synthetic faces if it does not exist).")
    parser.add_argument("--images", type=int, default=2000, help="Images of the 64 px cache build.")
    parser.add_argument("--large_images", type=int, default=200, help="Images of the 256 and 1024 px builds.")
    parser.add_argument("--num_workers", type=int, default=2, help="Decode threads (config.data.num_workers).")
    parser.add_argument("--wait_idle", type=float, default=120.0, help="Wait up to this many s for a quiet CPU.")
    return parser.parse_args(argv)


def _source_images(folder: str, count: int):
    """`count` image files of `folder`, or synthetic faces written as JPEGs when it does not exist."""
    from animejax.data import sources, synthetic

    if os.path.isdir(folder):
        return sources.list_images(folder)[:count], "real faces, 96 px JPEG"
    out = tempfile.mkdtemp(prefix="animejax-faces-")
    faces = synthetic.SyntheticFaces(count, 96, seed=0)
    paths = []
    for i in range(count):
        paths.append(os.path.join(out, f"{i:06d}.jpg"))
        Image.fromarray(faces.load(i)).save(paths[-1], quality=95)
    return paths, "synthetic faces (no real data found), 96 px JPEG"


def _build(folder: str, paths: list[str], size: int, args) -> tuple[float, float, float]:
    """(wall seconds, this process's CPU seconds, cores other processes kept busy) to build the decode cache of
    `paths` at `size` px, in a fresh cache folder."""
    from animejax.data import cache, sources

    cache_dir = tempfile.mkdtemp(prefix="animejax-cache-")
    try:
        if args.wait_idle:
            wait_idle(args.wait_idle)
        meter, cpu0, start = CpuMeter(), os.times(), time.perf_counter()
        images = cache.cached_images(sources.ImageFolder(folder, size, paths), cache_dir, args.num_workers)
        seconds, cpu1 = time.perf_counter() - start, os.times()
        assert images.shape == (len(paths), size, size, 3)
        return seconds, (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), meter.others_cores()
    finally:
        shutil.rmtree(cache_dir)


def _enlarged(paths: list[str], side: int) -> tuple[str, list[str]]:
    """The images re-encoded as `side` px JPEGs (quality 95) in a temporary folder."""
    folder = tempfile.mkdtemp(prefix=f"animejax-{side}px-")
    out = []
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            big = image.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        out.append(os.path.join(folder, f"{i:06d}.jpg"))
        big.save(out[-1], quality=95)
    return folder, out


def decode_rates(args) -> list[tuple]:
    """(target px, source px, images, images/s, images per CPU-second, others' busy cores) of each cache build."""
    paths, what = _source_images(args.data, args.images)
    print(f"(a) decode-cache build, {args.num_workers} threads; 64 px from {what}")
    builds = [(64, 96, os.path.dirname(paths[0]), paths, None)]
    for size in (256, 1024):
        folder, large = _enlarged(paths[: args.large_images], size * 3 // 2)
        builds.append((size, size * 3 // 2, folder, large, folder))
    rows = []
    for size, side, folder, files, temporary in builds:
        try:
            seconds, cpu_seconds, others = _build(folder, files, size, args)
        finally:
            if temporary:
                shutil.rmtree(temporary)
        rows.append((size, side, len(files), len(files) / seconds, len(files) / cpu_seconds, others))
        print(
            f"    {size:5d} px from {side:4d} px JPEGs: {len(files):5d} images in {seconds:6.2f} s = "
            f"{len(files) / seconds:7.1f} images/s, {len(files) / cpu_seconds:7.1f} per CPU-second "
            f"(other processes kept {others:.1f} cores busy)"
        )
    return rows


def listing_bytes_per_url(count: int = 100_000) -> float:
    """Bytes a Python list of `count` object URLs such as gs://bucket/faces/0012345.jpg takes, per URL."""
    tracemalloc.start()
    urls = [f"gs://my-training-bucket/anime_faces/{i:09d}.jpg" for i in range(count)]
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del urls
    per_url = size / count
    print(f"(b) a bucket listing held by each host: {per_url:.0f} bytes per object URL (Python str in a list)")
    return per_url


def state_sizes() -> list[tuple[str, int, int, int]]:
    """(config, image px, parameter count, train-state bytes) for CONFIGS, from abstract traces."""
    import jax

    from animejax import configs, methods, run_setup

    rows = []
    print("(c) train state (= checkpoint) of packaged configs")
    for spec in CONFIGS:
        name, _, size = spec.partition("@")
        file_path, _, variant = configs.resolve(name).partition(":")
        module_spec = importlib.util.spec_from_file_location("config", file_path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        config = module.get_config(variant) if variant else module.get_config()
        if size:
            config.data.image_size = int(size)
        method = methods.get_method(config)
        state = jax.eval_shape(method.init_state, jax.random.PRNGKey(0), run_setup._example_batch(config, 1))
        total = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))
        params = sum(leaf.size for name in ("params", "g_params", "d_params") for leaf in _field(state, name))
        rows.append((spec, config.data.image_size, params, total))
        print(
            f"    {spec:14s} {config.data.image_size:5d} px  {params / 1e6:7.2f} M parameters  {total / 2**20:8.1f} MiB"
        )
    return rows


def _field(state, name: str):
    import jax

    value = getattr(state, name, None)
    return jax.tree.leaves(value) if value is not None else []


def checkpoint_on_disk() -> tuple[int, int]:
    """(state bytes, bytes on disk) of one real Orbax checkpoint of vae:cpu, written as train.py writes it, with
    every float filled with random values (a trained state's moments do not compress as fresh zeros do)."""
    import jax

    from animejax import checkpoint, methods, run_setup, sharding
    from tests.test_train import load_config

    config = load_config("vae", "cpu")
    config.mesh.num_devices = 1
    workdir = tempfile.mkdtemp(prefix="animejax-ckpt-")
    try:
        method = methods.get_method(config)
        shardings = sharding.make_mesh(1)
        state = jax.jit(method.init_state, out_shardings=shardings.replicated)(
            jax.random.PRNGKey(0), run_setup._example_batch(config, 2)
        )
        noise = np.random.default_rng(0)
        state = jax.tree.map(
            lambda x: noise.standard_normal(x.shape).astype(x.dtype) if np.issubdtype(x.dtype, np.floating) else x,
            state,
        )
        saver = checkpoint.Checkpointer(workdir, config)
        saver.save(0, state, force=True)
        saver.wait()
        saver.close()
        on_disk = sum(
            os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(workdir) for name in names
        )
        total = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))
    finally:
        shutil.rmtree(workdir)
    print(
        f"    vae:cpu checkpoint on disk (random values): {on_disk / 2**20:.1f} MiB for a {total / 2**20:.1f} MiB state"
    )
    return total, on_disk


def main(argv=None) -> None:
    args = parse_args(argv)
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}, {machine()}")
    if args.images:
        decode_rates(args)
    listing_bytes_per_url()
    state_sizes()
    checkpoint_on_disk()


if __name__ == "__main__":
    main()
