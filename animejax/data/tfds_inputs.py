"""The `anime_faces` builder's input files: images of a folder, a .zip or a tar, in a stable order.

`folder_entries` and `zip_entries` yield (relative name, encoded bytes) for
every image file, in `animejax.data.sources.list_images` order (a folder's
files, then its sub-folders), skipping non-images and macOS metadata;
`checked_image_bytes` decodes each one fully and keeps RGB JPEG/PNG bytes as
they are (anything else becomes an RGB PNG). `extract_tar` and `sha256_file`
serve the checksummed download. Nothing here imports TensorFlow or TFDS.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
import zipfile
from typing import Iterator

from PIL import Image

from animejax.data.sources import IMAGE_EXTENSIONS, DataError, list_images


def checked_image_bytes(data: bytes) -> bytes:
    """Decodes `data` fully; returns it as is when RGB JPEG/PNG, else as RGB PNG.

    Raises whatever PIL raises for undecodable data.
    """
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.format in ("JPEG", "PNG") and image.mode == "RGB":
            return data
        # Grayscale, alpha, palette, CMYK, webp, bmp: stored as the RGB image
        # `center_crop_resize` would see, so `Image(shape=(None, None, 3))` holds.
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        return buffer.getvalue()


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _walk_order(name: str) -> tuple:
    """Sort key putting archive member names in `list_images`'s order (a folder's files, then its sub-folders)."""
    *folders, file = name.split("/")
    return tuple((1, folder) for folder in folders) + ((0, file),)


def _zip_members(path: str) -> list[str]:
    """Image members of a zip, in `list_images` order, without folders and macOS metadata."""
    with zipfile.ZipFile(path) as archive:
        names = [
            info.filename
            for info in archive.infolist()
            if not info.is_dir()
            and _is_image_name(info.filename)
            and not info.filename.startswith("__MACOSX/")
            and not os.path.basename(info.filename).startswith("._")
        ]
    return sorted(names, key=_walk_order)


def _list_zips(folder: str) -> list[str]:
    """All .zip files under `folder`, recursively, in a stable sorted order."""
    paths = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        paths.extend(os.path.join(root, name) for name in sorted(files) if name.lower().endswith(".zip"))
    return paths


def folder_entries(folder: str) -> Iterator[tuple[str, bytes]]:
    """(relative name, bytes) of the folder's images, or else of its zips' images."""
    images = list_images(folder)
    zips = _list_zips(folder)
    if images:
        if zips:
            logging.warning(
                "%s: reading its %d image files; ignoring %d .zip file(s) there.", folder, len(images), len(zips)
            )
        for path in images:
            with open(path, "rb") as f:
                yield os.path.relpath(path, folder), f.read()
        return
    for zip_path in zips:
        yield from zip_entries(zip_path, os.path.relpath(zip_path, folder))


def zip_entries(zip_path: str, prefix: str = "") -> Iterator[tuple[str, bytes]]:
    """(`prefix`/member, or member when no prefix, bytes) of a zip's images, sorted."""
    members = _zip_members(zip_path)
    with zipfile.ZipFile(zip_path) as archive:
        for member in members:
            yield (f"{prefix}/{member}" if prefix else member), archive.read(member)


def has_inputs(folder: str) -> bool:
    """Whether `folder` holds any image file or .zip file (recursively)."""
    return bool(list_images(folder) or _list_zips(folder))


def extract_tar(path: str) -> str:
    """Extracts a (compressed) tar next to itself, once; returns the folder.

    (TFDS's `dl_manager.extract` would import TensorFlow.)
    """
    target = path + ".extracted"
    if not os.path.isdir(target):
        tmp = f"{target}.tmp{os.getpid()}"
        with tarfile.open(path) as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extractall(tmp, filter="data")
            else:  # Python < 3.10.12 / 3.11.4: refuse members that would escape `tmp`.
                for member in archive.getmembers():
                    if member.issym() or member.islnk() or os.path.isabs(member.name) or ".." in member.name.split("/"):
                        raise DataError(f"anime_faces: unsafe member {member.name!r} in {path}.")
                archive.extractall(tmp)
        os.replace(tmp, target)
    return target


def sha256_file(path: str) -> tuple[str, int]:
    """The hex sha256 and the size in bytes of the file at `path`, read in 1 MiB blocks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size
