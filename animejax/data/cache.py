"""Decode cache: a source's images decoded once into a uint8 memmap on disk.

After the first pass no epoch decodes a JPEG again: batches are gathered from
the memmap. The cache is keyed by the source's name and fingerprint and the
image size, written to a temporary file and renamed when complete, so an
interrupted build is never mistaken for a finished one. Temporary files of
builds whose process died (on this host) are removed by the next build.

In a multi-host run each host builds its own cache, on its own local disk, from
its own shard of the source only (`pipeline.load_images`); the shard's
fingerprint is part of the key, and so is the source's name, which for a
bucket folder is its URL.
"""

from __future__ import annotations

import concurrent.futures
import glob
import hashlib
import json
import logging
import os
import socket
import time

import numpy as np

from animejax.data.sources import CorruptImageError, DataError, ImageSource

CACHE_VERSION = 1
_MAX_LOGGED_CORRUPT = 5


def cache_key(source: ImageSource) -> str:
    """A file-name-safe key naming this source's decoded content."""
    text = f"v{CACHE_VERSION}|{source.name}|{source.fingerprint()}|{source.image_size}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _decode_all(source: ImageSource, out: np.ndarray, num_workers: int) -> tuple[int, list[str]]:
    """Decodes every image into `out` (compacted); returns (count, corrupt messages)."""
    count, corrupt = 0, []
    last_report = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max(1, num_workers)) as pool:
        chunk = 256
        for begin in range(0, len(source), chunk):
            indices = range(begin, min(begin + chunk, len(source)))
            futures = [pool.submit(source.load, i) for i in indices]
            for future in futures:
                try:
                    image = future.result()
                except CorruptImageError as error:
                    if len(corrupt) < _MAX_LOGGED_CORRUPT:
                        logging.warning("Skipping unreadable image %s", error)
                    corrupt.append(str(error))
                    continue
                out[count] = image
                count += 1
            if time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                logging.info("Decoding %s: %d/%d images", source.name, indices[-1] + 1, len(source))
    return count, corrupt


def _temporary_path(data_path: str, pid: int) -> str:
    return f"{data_path}.tmp-{socket.gethostname()}-{pid}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Someone else's live process.
        return True
    return True


def remove_stale_temporaries(data_path: str) -> list[str]:
    """Deletes the partial cache files of builds on this host whose process is gone; returns their paths.

    Another host's temporaries (a shared filesystem) are left alone: their processes cannot be checked here.
    """
    prefix = _temporary_path(data_path, 0)[: -len("0")]
    removed = []
    for path in glob.glob(glob.escape(prefix) + "*"):
        pid = path[len(prefix) :]
        if pid.isdigit() and not _process_alive(int(pid)):
            os.remove(path)
            removed.append(path)
            logging.warning("Removed %s, the partial decode cache of a build that did not finish", path)
    return removed


def cached_images(source: ImageSource, cache_dir: str, num_workers: int = 4) -> np.ndarray:
    """Returns the source's images as a read-only uint8 [N, S, S, 3] memmap.

    Builds the cache on first use. Corrupt images are skipped with a warning
    and counted (the count is logged and kept in the cache's metadata).

    Args:
      source: the images to decode.
      cache_dir: directory for `<key>.u8` and `<key>.json` files.
      num_workers: decoding threads.

    Raises:
      DataError: when not one image of the source can be decoded.
    """
    os.makedirs(cache_dir, exist_ok=True)
    key = cache_key(source)
    data_path = os.path.join(cache_dir, key + ".u8")
    meta_path = os.path.join(cache_dir, key + ".json")
    size = source.image_size
    if not os.path.exists(meta_path):
        start = time.monotonic()
        logging.info(
            "Building decode cache for %s (%d images at %d px) in %s", source.name, len(source), size, cache_dir
        )
        remove_stale_temporaries(data_path)
        tmp_path = _temporary_path(data_path, os.getpid())
        out = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=np.uint8, shape=(len(source), size, size, 3))
        count, corrupt = _decode_all(source, out, num_workers)
        out.flush()
        del out
        if count == 0:
            os.remove(tmp_path)
            raise DataError(f"None of the {len(source)} images of {source.name} could be decoded.")
        os.replace(tmp_path, data_path)
        meta = {"source": source.name, "count": count, "image_size": size, "corrupt": corrupt}
        with open(meta_path + ".tmp", "w") as f:
            json.dump(meta, f, indent=1)
        os.replace(meta_path + ".tmp", meta_path)
        logging.info("Decoded %d images in %.1f s", count, time.monotonic() - start)
    with open(meta_path) as f:
        meta = json.load(f)
    if meta["corrupt"]:
        logging.warning(
            "%s: %d unreadable images were skipped (listed in %s)", source.name, len(meta["corrupt"]), meta_path
        )
    images = np.load(data_path, mmap_mode="r")
    return images[: meta["count"]]


def corrupt_count(source: ImageSource, cache_dir: str) -> int:
    """How many images of a cached source were skipped as unreadable."""
    with open(os.path.join(cache_dir, cache_key(source) + ".json")) as f:
        return len(json.load(f)["corrupt"])
