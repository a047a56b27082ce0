"""The TF-free reader of prepared TFDS image datasets: `TfdsImages`, an ImageSource (see `animejax.data.sources`).

`TfdsImages` opens a prepared dataset (by name under a TFDS data dir, or by
its version directory) with TFDS's read-only builder, reads records by index
through `builder.as_data_source` (ArrayRecord random access) and decodes the
stored image bytes with PIL, centre-cropped and resized. None of this imports
TensorFlow (from tensorflow-datasets 4.9.6). It reads any prepared image
dataset stored as ArrayRecord; `animejax.data.tfds_anime` builds `anime_faces`,
and a missing dataset's error names the command that prepares it.

The data dir (or a version directory) may be a bucket URL: TFDS opens it through etils.epath, and the
ArrayRecord reader reads gs:// files itself.
"""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.core import read_only_builder
from tensorflow_datasets.core.utils import file_utils as tfds_file_utils

from animejax import storage
from animejax.data.sources import CorruptImageError, DataError, center_crop_resize
from animejax.data.tfds_anime import NAME


def _prepare_command(name: str, data_dir: str | None) -> str:
    """The command that prepares dataset `name`: `tfds_anime`'s command line for `anime_faces`, else `tfds build`."""
    data_dir_flag = f" --data_dir {data_dir}" if data_dir else ""
    builder, _, rest = name.partition("/")
    if builder != NAME:
        return (
            f"tfds build {name}{data_dir_flag} --file_format array_record (TFDS's command line needs TensorFlow; "
            "builder.download_and_prepare(file_format='array_record') may not)"
        )
    config = rest.partition(":")[0]
    if config:
        return f"python -m animejax.data.tfds_anime --config {config} --url URL --sha256 SHA256{data_dir_flag}"
    return f"python -m animejax.data.tfds_anime --manual_dir /path/to/images{data_dir_flag}"


def _file_formats(info: tfds.core.DatasetInfo) -> set[tfds.core.FileFormat]:
    """The formats a prepared dataset is stored in."""
    if hasattr(info, "available_file_formats"):
        return set(info.available_file_formats())
    return {info.file_format} if info.file_format else set()


def _open_builder(name_or_dir: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """The prepared dataset's read-only builder, or a DataError saying how to prepare it."""
    if storage.is_url(name_or_dir):
        directory = storage.check_reachable(name_or_dir, "data.path")
        expanded = os.fspath(directory)
        is_dir = directory.is_dir()
    else:
        expanded = os.path.expanduser(name_or_dir)
        is_dir = os.path.isdir(expanded)
    if is_dir:
        if not storage.as_path(storage.join(expanded, "dataset_info.json")).exists():
            raise DataError(
                f"{expanded!r} is not a prepared TFDS dataset directory (no dataset_info.json); pass the "
                "version directory (e.g. ~/tensorflow_datasets/anime_faces/1.0.0) or a dataset name."
            )
        return tfds.builder_from_directory(expanded)
    searched = [os.fspath(d) for d in tfds_file_utils.list_data_dirs(data_dir)]
    try:
        return read_only_builder.builder_from_files(name_or_dir, data_dir=data_dir)
    except Exception as error:  # DatasetNotFoundError, or a malformed name.
        raise DataError(
            f"TFDS dataset {name_or_dir!r} is not prepared: looked for "
            f"<data_dir>/{name_or_dir.split(':')[0]}/<version>/dataset_info.json in data dir(s) {', '.join(searched)}. "
            f"Prepare it with: {_prepare_command(name_or_dir, data_dir)}"
        ) from error


class TfdsImages:
    """A prepared TFDS image dataset (ArrayRecord format) as an ImageSource.

    Reads records by index with `builder.as_data_source` (no TensorFlow) and
    decodes the stored image bytes with PIL.

    Args:
      name_or_dir: a dataset name such as "anime_faces" or
        "anime_faces/mirror:1.0.0", looked up under `data_dir`; or the path of
        a prepared version directory (the one holding dataset_info.json).
      split: a TFDS split, slices allowed ("train", "train[:90%]").
      image_size: output side; images are centre-cropped then resized.
      data_dir: TFDS data directory; None means $TFDS_DATA_DIR or
        ~/tensorflow_datasets (and any registered data dirs).
      image_key: the feature holding the encoded image.

    Raises:
      DataError: the dataset is not prepared, lacks the split, is not stored
        as ArrayRecord, or is empty.
    """

    def __init__(
        self, name_or_dir: str, split: str, image_size: int, data_dir: str | None = None, image_key: str = "image"
    ):
        if data_dir:
            data_dir = os.fspath(storage.check_reachable(data_dir, "data.tfds_data_dir"))
        builder = _open_builder(name_or_dir, data_dir)
        info = builder.info
        formats = _file_formats(info)
        if tfds.core.FileFormat.ARRAY_RECORD not in formats:
            stored = ", ".join(sorted(f.value for f in formats)) or "an unknown format"
            raise DataError(
                f"TFDS dataset {info.full_name} in {builder.data_dir} is stored as {stored}, "
                "but reading without TensorFlow needs random access to ArrayRecord files. Rebuild it with "
                f"file_format='array_record' ({_prepare_command(name_or_dir, data_dir)})."
            )
        if image_key not in info.features:
            raise DataError(
                f"TFDS dataset {info.full_name} has no {image_key!r} feature (it has {', '.join(info.features)})."
            )
        try:
            info.splits[split]
        except (KeyError, ValueError) as error:
            raise DataError(
                f"TFDS dataset {info.full_name} has no split {split!r} (it has {', '.join(info.splits)}): {error}"
            ) from error
        decoders = {
            key: tfds.decode.SkipDecoding()
            for key in info.features
            if isinstance(info.features[key], tfds.features.Image)
        }
        # Names ArrayRecord only where it is an alternative format (older TFDS lacks the argument).
        kwargs = {} if info.file_format == tfds.core.FileFormat.ARRAY_RECORD else {"file_format": "array_record"}
        self._records = builder.as_data_source(split, decoders=decoders, **kwargs)
        self._indices = range(len(self._records))
        if not self._indices:
            raise DataError(f"TFDS dataset {info.full_name} split {split!r} in {builder.data_dir} holds no images.")
        self._image_key = image_key
        self._has_filename = "filename" in info.features
        self._files = [
            (os.fspath(instruction.filename), instruction.skip, instruction.take)
            for instruction in info.splits[split].file_instructions  # After as_data_source fixed the format.
        ]
        self.data_dir = os.fspath(storage.as_path(builder.data_dir))
        self.split = split
        self.name = f"tfds:{info.full_name}[{split}]"
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self._indices)

    def fingerprint(self) -> str:
        """Changes with the data files (names, sizes, mtimes), the split and the shard."""
        digest = hashlib.sha256(f"{self.data_dir}|{self.split}|{self._indices!r}\n".encode())
        for filename, skip, take in self._files:
            if storage.is_url(filename):  # A bucket object: its size and modification time (seconds).
                info = storage.as_path(filename).stat()
                size, mtime = info.length, info.mtime
            else:
                info = os.stat(filename)
                size, mtime = info.st_size, info.st_mtime_ns
            digest.update(f"{os.path.basename(filename)}|{skip}|{take}|{size}|{mtime}\n".encode())
        return digest.hexdigest()[:16]

    def record_name(self, index: int) -> str:
        """The stored file name of image `index` (its record number when none is stored)."""
        record = self._indices[index]
        if self._has_filename:
            name = self._records[record]["filename"]
            return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        return f"record {record}"

    def load(self, index: int) -> np.ndarray:
        record = self._indices[index]
        example = self._records[record]
        data = example[self._image_key]
        try:
            with Image.open(io.BytesIO(bytes(data))) as image:
                image.load()
                return center_crop_resize(image, self.image_size)
        except Exception as error:  # PIL raises many types for bad data.
            name = example.get("filename", b"")
            name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
            raise CorruptImageError(f"{self.name} record {record} {name}: {error}") from error

    def shard(self, index: int, count: int) -> "TfdsImages":
        """This process's share of the records (every `count`-th from `index`)."""
        if not 0 <= index < count:
            raise ValueError(f"shard index {index} is not in [0, {count}).")
        shard = object.__new__(TfdsImages)
        shard.__dict__.update(self.__dict__)
        shard._indices = self._indices[index::count]
        return shard
