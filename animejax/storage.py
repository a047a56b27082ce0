"""Paths that may be bucket URLs: a run's files and its images, wherever they live.

`--workdir`, `data.path` (a folder of images) and `data.tfds_data_dir` take a local path or a URL that
etils.epath opens: gs://, s3://, az:// or hf://. epath reads those through fsspec (gcsfs for gs://, s3fs, adlfs,
huggingface_hub: `pip install 'animejax[gcs]'` installs the GCS ones), or through TensorFlow's gfile where
TensorFlow is installed. Orbax writes checkpoints to such a URL directly (TensorStore's own GCS client for the
arrays). `as_path` turns either kind into an `epath.Path`, so the code that reads and writes is the same for
both. Object stores have no append and no atomic rename: files are written whole.
"""

from __future__ import annotations

import os
import posixpath

from etils import epath

from animejax.errors import UserError

# The URL schemes etils.epath registers (etils/epath/gpath.py); any other "scheme://" is rejected by it.
URL_SCHEMES = ("gs", "s3", "az", "hf")
BUCKET_EXTRAS = "pip install 'animejax[gcs]'"


class StorageError(UserError, ValueError):
    """A path or bucket that cannot be used as given."""


def is_url(path: str | os.PathLike) -> bool:
    """Whether `path` is a URL (`scheme://...`) rather than a local path."""
    return "://" in os.fspath(path)


def as_path(path: str | os.PathLike, what: str = "path") -> epath.Path:
    """A URL, or a local path made absolute (`~` expanded), as an epath.Path.

    Raises:
      StorageError: for a URL scheme epath does not open (e.g. memory:// or file://).
    """
    if isinstance(path, epath.Path) and is_url(path):
        return path
    text = os.fspath(path)
    if not is_url(text):
        return epath.Path(os.path.abspath(os.path.expanduser(text)))
    scheme = text.split("://", 1)[0]
    if scheme not in URL_SCHEMES:
        raise StorageError(
            f"{what}={text!r}: {scheme}:// URLs are not supported; use a local path or one of "
            f"{', '.join(s + '://' for s in URL_SCHEMES)}."
        )
    return epath.Path(text)


def bucket_of(path: str | os.PathLike) -> str:
    """`scheme://bucket` of a URL."""
    scheme, _, rest = os.fspath(path).partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def check_reachable(path: str | os.PathLike, what: str) -> epath.Path:
    """`as_path(path)`, after checking that a URL's bucket exists and can be reached from here.

    Local paths are returned unchecked (folders are created as needed).

    Raises:
      StorageError: the bucket does not exist or cannot be reached, or its filesystem package is missing.
    """
    result = as_path(path, what)
    if not is_url(result):
        return result
    bucket = bucket_of(result)
    try:
        exists = epath.Path(bucket).exists()
    except ImportError as error:
        raise StorageError(f"{what}={os.fspath(path)}: {error}. Install the bucket extras: {BUCKET_EXTRAS}.") from None
    except Exception as error:  # Credentials, network: each filesystem raises its own types.
        raise StorageError(f"{what}={os.fspath(path)}: cannot reach {bucket}: {_first_line(error)}") from None
    if not exists:
        raise StorageError(
            f"{what}={os.fspath(path)}: the bucket {bucket} does not exist, or this machine's credentials cannot "
            "see it. Create it first (e.g. `gcloud storage buckets create gs://NAME`) or fix the name."
        )
    return result


def check_folder(path: str | os.PathLike, what: str) -> epath.Path:
    """`check_reachable(path)` for a folder the run writes into (a workdir, a report's folder).

    Raises:
      StorageError: as check_reachable, or a local path that is a file.
    """
    result = check_reachable(path, what)
    if not is_url(result) and result.exists() and not result.is_dir():
        raise StorageError(f"{what}={os.fspath(path)!r} is a file; give a folder (it is made if missing).")
    return result


def join(path: str | os.PathLike, *parts: str) -> str:
    """`path/part/...` as a string, for URLs as well as local paths."""
    return posixpath.join(os.fspath(path), *parts) if is_url(path) else os.path.join(os.fspath(path), *parts)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes a whole file (one object on a bucket), creating its folder."""
    target = as_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_url(target):  # An object is replaced whole, never seen half-written.
        target.write_bytes(data)
        return
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    tmp.write_bytes(data)
    tmp.replace(target)


def write_text(path: str | os.PathLike, text: str) -> None:
    """`write_bytes` of UTF-8 text."""
    write_bytes(path, text.encode("utf-8"))


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__
