"""Image sources: where raw images come from, before caching and batching.

A source is a random-access list of images. `load(i)` returns image `i` as a
uint8 [H, W, 3] array already cropped and resized to the source's
`image_size`, or raises `CorruptImageError` for an image that cannot be
decoded (the cache builder skips those with a warning and counts them).
`fingerprint()` changes whenever the content would change, so the decode
cache can be keyed on it.

A folder may be a bucket URL (gs://bucket/faces): it is listed once through etils.epath
and each image is read through it (see `animejax.storage`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
from typing import Protocol, Sequence

import numpy as np
from PIL import Image

from animejax import storage
from animejax.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
_MAX_NAMED_SKIPS = 5


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


def _file_problem(path: str, seen_files: set) -> str | None:
    """Why an image-named entry cannot be used (None when it can): it must be a readable regular file, new."""
    try:
        info = os.stat(path)  # Follows links.
    except OSError as error:
        return "broken link" if os.path.islink(path) else f"cannot be read ({error.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "permission denied"
    if (info.st_dev, info.st_ino) in seen_files:
        return "the same file as one listed before (a link)"
    seen_files.add((info.st_dev, info.st_ino))
    return None


def scan_images(folder: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Image files under `folder`, recursively, each real file once, and the entries skipped with why.

    Order: a folder's files (sorted), then its sub-folders (sorted), depth first. Links are followed, but a
    folder already visited (a link loop such as `self -> .`) is not entered again, and a file reached twice
    through links is listed once. Broken links, unreadable files and special files are skipped.

    Returns:
      (paths, [(path, reason), ...]).
    """
    paths, skipped, seen_dirs, seen_files = [], [], set(), set()

    def visit(directory: str) -> None:
        try:
            info = os.stat(directory)
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as error:
            skipped.append((directory, f"folder cannot be read ({error.strerror})"))
            return
        if (info.st_dev, info.st_ino) in seen_dirs:
            skipped.append((directory, "a link to a folder already visited"))
            return
        seen_dirs.add((info.st_dev, info.st_ino))
        subfolders = []
        for entry in entries:
            try:
                is_folder = entry.is_dir()  # Follows links.
            except OSError:
                is_folder = False
            if is_folder:
                subfolders.append(entry.path)
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                problem = _file_problem(entry.path, seen_files)
                if problem:
                    skipped.append((entry.path, problem))
                else:
                    paths.append(entry.path)
        for subfolder in subfolders:
            visit(subfolder)

    visit(folder)
    return paths, skipped


def _url_sort_key(relative: str) -> list[tuple[int, str]]:
    """Orders a bucket listing as `scan_images` orders a local folder: a folder's files, then its sub-folders."""
    *folders, name = relative.split("/")
    return [(1, folder) for folder in folders] + [(0, name)]


def scan_url_images(folder: str) -> list[str]:
    """The image objects under a bucket folder URL, recursively, as URLs, in `scan_images`' order.

    One listing of the prefix (epath's walk); object stores have no links, special files or permission bits
    per object, so nothing is skipped.
    """
    base = storage.as_path(folder, "data.path")
    text = os.fspath(base).rstrip("/")
    scheme = text.split("://", 1)[0] + "://"
    bare = text[len(scheme) :]
    relative = []
    for root, _, files in base.walk():
        root = os.fspath(root).rstrip("/")
        root = root[len(scheme) :] if root.startswith(scheme) else root  # fsspec backends drop the scheme.
        prefix = root[len(bare) :].lstrip("/")
        relative += [
            f"{prefix}/{name}" if prefix else name for name in files if name.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return [f"{text}/{name}" for name in sorted(relative, key=_url_sort_key)]


def list_images(folder: str) -> list[str]:
    """The usable image files under `folder` (see `scan_images`), in a stable order."""
    return scan_images(folder)[0]


class ImageFolder:
    """Every jpg/png/webp/bmp file under a folder, recursively.

    Args:
      folder: the directory to read: a local path or a bucket URL (gs://bucket/faces).
      image_size: output side; images are centre-cropped then resized.
      paths: an explicit subset of files (e.g. one process's shard); all files
        under `folder` when None.
    """

    def __init__(self, folder: str, image_size: int, paths: Sequence[str] | None = None):
        self.is_url = storage.is_url(folder)
        if self.is_url:
            folder = os.fspath(storage.check_reachable(folder, "data.path")).rstrip("/")
            exists = storage.as_path(folder).is_dir()
        else:
            folder = os.path.expanduser(folder)
            exists = os.path.isdir(folder)
        if not exists:
            raise DataError(
                f"Image folder {folder!r} does not exist. Set --config.data.path to a folder of "
                "jpg/png/webp images, or use --config.data.source=synthetic for the built-in set."
            )
        self.folder = folder
        self.name = f"folder:{folder if self.is_url else os.path.abspath(folder)}"
        self.image_size = image_size
        self.skipped: list[tuple[str, str]] = []
        if paths is None and self.is_url:
            paths = scan_url_images(folder)
        elif paths is None:
            paths, self.skipped = scan_images(folder)
            if self.skipped:
                named = "; ".join(f"{path} ({why})" for path, why in self.skipped[:_MAX_NAMED_SKIPS])
                more = len(self.skipped) - _MAX_NAMED_SKIPS
                logging.warning(
                    "%s: skipped %d entries: %s%s",
                    folder,
                    len(self.skipped),
                    named,
                    f"; {more} more" if more > 0 else "",
                )
        self.paths = list(paths)
        if not self.paths:
            raise DataError(
                f"Image folder {folder!r} holds no images (looked recursively for {', '.join(IMAGE_EXTENSIONS)})."
            )

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        """Local files: names, sizes and mtimes. Bucket objects: names only (one stat per object would cost one
        request each), so an image replaced under the same name needs the cache deleted, or a new name."""
        digest = hashlib.sha256()
        if self.is_url:
            digest.update("\n".join(self.paths).encode())
            return digest.hexdigest()[:16]
        for path in self.paths:
            try:
                info = os.stat(path)
                digest.update(f"{path}|{info.st_size}|{info.st_mtime_ns}\n".encode())
            except OSError:  # Gone since the listing: load() will report it as unreadable.
                digest.update(f"{path}|unreadable\n".encode())
        return digest.hexdigest()[:16]

    def load(self, index: int) -> np.ndarray:
        path = self.paths[index]
        try:
            with Image.open(io.BytesIO(storage.as_path(path).read_bytes()) if self.is_url else path) as image:
                image.load()
                return center_crop_resize(image, self.image_size)
        except Exception as error:  # PIL raises many types for bad files.
            raise CorruptImageError(f"{path}: {error}") from error

    def shard(self, index: int, count: int) -> "ImageFolder":
        """This process's share of the files (every `count`-th from `index`)."""
        return ImageFolder(self.folder, self.image_size, self.paths[index::count])
