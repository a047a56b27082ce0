"""TF-free input pipeline: per-process shard, decode cache, deterministic batches.

Each process reads only its own shard of the source (every P-th image from its
process index), decoded once into the cache. Batch `k` of a process is a pure
function of (seed, k): grain shuffles the index stream with a seed mixed with
the epoch, so a run resumed at step `k` sees exactly the batch it would have
seen. Batches are gathered and flipped in grain's background threads ahead of
the device.
"""

from __future__ import annotations

import os
from typing import Iterator

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from animejax import storage
from animejax.data import cache, sources, synthetic
from animejax.errors import ConfigError

SOURCES = ("synthetic", "folder", "tfds")


def make_source(data: ml_collections.ConfigDict, process_index: int = 0, process_count: int = 1):
    """The configured image source, restricted to this process's shard.

    Args:
      data: the `config.data` group.
      process_index: this process's index (jax.process_index()).
      process_count: number of processes (jax.process_count()).
    """
    if data.source == "synthetic":
        source = synthetic.SyntheticFaces(data.num_images, data.image_size, seed=data.synthetic_seed)
    elif data.source == "folder":
        source = sources.ImageFolder(data.path, data.image_size)
    elif data.source == "tfds":
        from animejax.data import tfds_reader  # Imports tensorflow_datasets only when asked for.

        source = tfds_reader.TfdsImages(data.path, data.split, data.image_size, data.tfds_data_dir or None)
    else:
        raise ConfigError(f"Unknown data.source {data.source!r}; choose one of {', '.join(SOURCES)}.")
    if process_count > 1:
        source = source.shard(process_index, process_count)
    return source


def default_cache_dir() -> str:
    """Where decoded images are cached when `config.data.cache_dir` is empty."""
    root = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    return os.path.join(root, "animejax", "decoded")


def local_cache_dir(data: ml_collections.ConfigDict) -> str:
    """`data.cache_dir` or the default: a folder on this host's disk (the cache is a memmap), never a URL."""
    if data.cache_dir and storage.is_url(data.cache_dir):
        raise ConfigError(
            f"data.cache_dir={data.cache_dir!r} is a URL, but the decode cache is a memory-mapped file on each "
            "host's local disk: give a local folder (or leave it empty for ~/.cache/animejax/decoded). "
            "data.path may be a bucket URL."
        )
    return os.path.expanduser(data.cache_dir) if data.cache_dir else default_cache_dir()


def load_images(data: ml_collections.ConfigDict, process_index: int = 0, process_count: int = 1):
    """This process's decoded images and their source.

    Each host decodes only its own shard (`make_source`) into its own local cache, keyed by the source's name
    (a local path or a bucket URL), the shard's fingerprint and the image size.

    Returns:
      (uint8 [N, S, S, 3] memmap, the ImageSource they were decoded from).
    """
    cache_dir = local_cache_dir(data)
    source = make_source(data, process_index, process_count)
    return cache.cached_images(source, cache_dir, data.num_workers), source


def check_enough_images(images: np.ndarray, local_batch: int, where: str) -> None:
    """Raises a DataError when one local batch cannot be filled."""
    if len(images) < local_batch:
        raise sources.DataError(
            f"{where} has {len(images)} usable images for this process, fewer than one batch "
            f"({local_batch} per process). Lower --config.train.batch_size or add images."
        )


class _GatherAndFlip:
    """Gathers a batch of indices from the image array, randomly flipping each."""

    def __init__(self, images: np.ndarray, random_flip: bool):
        self.images = images
        self.random_flip = random_flip

    def __call__(self, indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        batch = self.images[np.asarray(indices)]
        if self.random_flip:
            flip = rng.random(len(indices)) < 0.5
            batch[flip] = batch[flip, :, ::-1]
        return batch


def batch_dataset(images: np.ndarray, local_batch: int, seed: int, random_flip: bool) -> grain.MapDataset:
    """An infinite random-access dataset: element k is this process's k-th batch.

    Returns uint8 [local_batch, S, S, 3] arrays; shuffled per epoch from `seed`.
    """
    indices = grain.MapDataset.range(len(images)).shuffle(seed=seed).repeat()
    batches = indices.batch(local_batch, drop_remainder=True)
    return batches.random_map(_GatherAndFlip(images, random_flip), seed=seed + 1)


def iterate_batches(
    dataset: grain.MapDataset, start: int, num_threads: int = 2, prefetch: int = 4
) -> Iterator[np.ndarray]:
    """Yields batches `start, start + 1, ...`, prepared in background threads."""
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    return iter(dataset[start:].to_iter_dataset(options))


def to_model_range(images):
    """uint8 [..., 3] in [0, 255] -> float32 in [-1, 1] (works on numpy and jax arrays)."""
    return images.astype("float32") / 127.5 - 1.0


def quantize(images: jax.Array) -> jax.Array:
    """Rounds images in [-1, 1] to the 256 levels a saved PNG would hold."""
    return jnp.round((jnp.clip(images, -1.0, 1.0) + 1.0) * 127.5) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
    """float in [-1, 1] -> uint8 in [0, 255], clipped; returns numpy."""
    images = np.asarray(images, dtype=np.float32)
    return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
