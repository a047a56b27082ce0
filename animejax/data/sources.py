"""Image sources: where raw images come from, before caching and batching.

A source is a random-access list of images. `load(i)` returns image `i` as a
uint8 [H, W, 3] array already cropped and resized to the source's
`image_size`, or raises `CorruptImageError` for an image that cannot be
decoded (the cache builder skips those with a warning and counts them).
`fingerprint()` changes whenever the content would change, so the decode
cache can be keyed on it.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol, Sequence

import numpy as np
from PIL import Image

from animejax.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class DataError(UserError, ValueError):
    """A dataset that cannot be used as configured (missing, empty, too small)."""


class CorruptImageError(ValueError):
    """One image that cannot be decoded."""


class ImageSource(Protocol):
    """What the decode cache needs from a dataset."""

    name: str
    image_size: int

    def __len__(self) -> int: ...

    def fingerprint(self) -> str: ...

    def load(self, index: int) -> np.ndarray: ...


def center_crop_resize(image: Image.Image, image_size: int) -> np.ndarray:
    """Centre-crops to a square and resizes with an antialiasing filter.

    Args:
      image: any PIL image.
      image_size: side of the output square.

    Returns:
      uint8 [image_size, image_size, 3].
    """
    image = image.convert("RGB")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != image_size:
        image = image.resize((image_size, image_size), Image.Resampling.LANCZOS, reducing_gap=None)
    return np.asarray(image, dtype=np.uint8)


def list_images(folder: str) -> list[str]:
    """All image files under `folder`, recursively, in a stable sorted order."""
    paths = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(os.path.join(root, name))
    return paths


class ImageFolder:
    """Every jpg/png/webp/bmp file under a folder, recursively.

    Args:
      folder: the directory to read.
      image_size: output side; images are centre-cropped then resized.
      paths: an explicit subset of files (e.g. one process's shard); all files
        under `folder` when None.
    """

    def __init__(self, folder: str, image_size: int, paths: Sequence[str] | None = None):
        folder = os.path.expanduser(folder)
        if not os.path.isdir(folder):
            raise DataError(
                f"Image folder {folder!r} does not exist. Set --config.data.path to a folder of "
                "jpg/png/webp images, or use --config.data.source=synthetic for the built-in set."
            )
        self.folder = folder
        self.name = f"folder:{os.path.abspath(folder)}"
        self.image_size = image_size
        self.paths = list(paths) if paths is not None else list_images(folder)
        if not self.paths:
            raise DataError(
                f"Image folder {folder!r} holds no images (looked recursively for {', '.join(IMAGE_EXTENSIONS)})."
            )

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in self.paths:
            stat = os.stat(path)
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    def load(self, index: int) -> np.ndarray:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image.load()
                return center_crop_resize(image, self.image_size)
        except Exception as error:  # PIL raises many types for bad files.
            raise CorruptImageError(f"{path}: {error}") from error

    def shard(self, index: int, count: int) -> "ImageFolder":
        """This process's share of the files (every `count`-th from `index`)."""
        return ImageFolder(self.folder, self.image_size, self.paths[index::count])
