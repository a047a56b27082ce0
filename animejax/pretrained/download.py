"""Finding a released weights file: a path the user gives, the cache, or a download checked against its sha256.

A `WeightsFile` names one released file (name, URL, sha256 or its prefix, how to get it by hand) and `resolve` returns a
path to it. Downloads go to a temporary file in the cache directory and are renamed into place only once
their sha256 matches, so the cache never holds a partial or wrong file. Every error is a `WeightsError` (a
`UserError`) whose message says how to fetch the file by hand and where to put it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import logging
import os
import re
import tempfile
import urllib.request

from animejax.errors import UserError

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60

log = logging.getLogger(__name__)


class WeightsError(UserError):
    """A weights file that cannot be found, fetched or verified."""


class MissingWeightsError(WeightsError, FileNotFoundError):
    """The weights file is not there: a given path that does not exist, or a download that failed."""


class DownloadError(MissingWeightsError):
    """The URL could not be reached, or the transfer ended before the whole file came."""


class WeightsChecksumError(WeightsError, ValueError):
    """A file whose sha256 is not the released file's."""


class CorruptCacheError(WeightsChecksumError):
    """A file in the cache whose sha256 is not the released file's (truncated, or replaced by hand)."""


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """One released file and how to get it.

    Attributes:
        description: what the file is, for messages, e.g. "FID Inception weights".
        file_name: its name in the cache directory.
        url: where it is published. Messages name this URL even when `resolve` downloads from another one.
        sha256: the hex sha256 of the released file, or None to accept any content. Fewer than 64 hex digits
            (at least 8) are a prefix that the file's digest must start with, as torch.hub's `check_hash`
            checks the 8 digits that torchvision and others put in their file names ("vgg19-dcbb9e9d.pth");
            messages then say "sha256 starting with ...".
        how_to_get: how to fetch the file by hand: a clause starting lowercase, with the placeholders {url},
            {sha256}, {file_name} and {cache_path} (the file's path in the cache directory in use).
        strict_local: a local file with another sha256 is an error (True) or used with a warning (False, so a
            re-saved copy of the same weights still loads).
        refetch_corrupt_cache: a cached file with another sha256 is deleted and downloaded again (True) or
            reported as a `CorruptCacheError` (False, so a large download is never repeated silently).
    """

    description: str
    file_name: str
    url: str
    sha256: str | None
    how_to_get: str = "download {url} on a machine with internet access and put it at {cache_path}."
    strict_local: bool = False
    refetch_corrupt_cache: bool = False

    def __post_init__(self):
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{8,64}", self.sha256):
            raise ValueError(f"WeightsFile.sha256 must be 8 to 64 hex digits or None, got {self.sha256!r}.")

    def sha256_matches(self, digest: str | None) -> bool:
        """Whether a file's hex sha256 is the released file's (equal to `sha256`, or starting with a prefix)."""
        return self.sha256 is None or (digest is not None and digest.lower().startswith(self.sha256.lower()))

    def expected_sha256(self) -> str | None:
        """The expected digest for messages: the full digest, or "sha256 starting with <prefix>"."""
        return self.sha256 if self.sha256 is None or len(self.sha256) == 64 else f"sha256 starting with {self.sha256}"

    def instructions(self, cache_path: str) -> str:
        """`how_to_get` with its placeholders filled in."""
        return self.how_to_get.format(url=self.url, sha256=self.sha256, file_name=self.file_name, cache_path=cache_path)


def default_cache_dir() -> str:
    """`$XDG_CACHE_HOME/animejax/weights`, or `~/.cache/animejax/weights` when XDG_CACHE_HOME is unset or empty."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "animejax", "weights")


def file_sha256(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve(
    weights_file: WeightsFile, local_path: str | None = None, cache_dir: str | None = None, url: str | None = None
) -> str:
    """The path of `weights_file`, downloading it into the cache if needed.

    Order: `local_path` if given (it must exist; its sha256 is checked as `strict_local` says; nothing is
    downloaded); else `<cache_dir>/<file_name>` if present (its sha256 is checked); else a download from
    `url` to a temporary file in `cache_dir`, checked against the sha256 and only then renamed into place.

    Args:
        weights_file: the file to find.
        local_path: a copy the user already has, or None (or empty).
        cache_dir: where downloads go; None (or empty) means `default_cache_dir()`.
        url: where to download from instead of `weights_file.url` (a mirror, or a test server).

    Returns:
        The absolute path of the file.

    Raises:
        MissingWeightsError: `local_path` does not exist.
        DownloadError: the download failed or was cut short.
        WeightsChecksumError: a strict local file or the downloaded file has the wrong sha256.
        CorruptCacheError: the cached file has the wrong sha256 (unless `refetch_corrupt_cache`).
    """
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
    cache_path = os.path.join(cache_dir, weights_file.file_name)
    if local_path:
        return _check_local(weights_file, os.path.abspath(os.path.expanduser(local_path)), cache_path)
    expected = weights_file.sha256
    if os.path.isfile(cache_path):
        digest = file_sha256(cache_path) if expected is not None else None
        if weights_file.sha256_matches(digest):
            return cache_path
        if not weights_file.refetch_corrupt_cache:
            raise CorruptCacheError(
                f"The cached {weights_file.description} file {cache_path} has sha256 {digest}, "
                f"expected {weights_file.expected_sha256()}. "
                f"Delete the file to download it again, or {weights_file.instructions(cache_path)}"
            )
        log.warning(
            "The cached %s file %s has the wrong sha256; downloading it again.", weights_file.description, cache_path
        )
        os.remove(cache_path)
    _download(weights_file, url or weights_file.url, cache_path)
    return cache_path


def _check_local(weights_file: WeightsFile, path: str, cache_path: str) -> str:
    """`path` if it is a file whose sha256 passes `weights_file.strict_local`."""
    if not os.path.isfile(path):
        raise MissingWeightsError(
            f"The {weights_file.description} file {path} was not found (it does not exist or is not a file). "
            f"To get it, {weights_file.instructions(cache_path)}"
        )
    expected = weights_file.sha256
    if expected is not None and not weights_file.sha256_matches(digest := file_sha256(path)):
        if weights_file.strict_local:
            raise WeightsChecksumError(
                f"The {weights_file.description} file {path} has sha256 {digest}, "
                f"expected {weights_file.expected_sha256()}. "
                f"To get the released file, {weights_file.instructions(cache_path)}"
            )
        log.warning(
            "The %s file %s has sha256 %s, not the released file's; using it as given.",
            weights_file.description,
            path,
            digest,
        )
    return path


def _download(weights_file: WeightsFile, url: str, destination: str) -> None:
    """Downloads `url` to a temp file beside `destination`, checks its sha256, renames it into place."""
    what, how = weights_file.description, weights_file.instructions(destination)
    log.info("Downloading the %s from %s to %s", what, url, destination)
    temp_path = None
    try:
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        handle, temp_path = tempfile.mkstemp(
            prefix=f".{weights_file.file_name}.", suffix=".part", dir=os.path.dirname(destination)
        )
        with os.fdopen(handle, "wb") as out:
            done, total, digest = _fetch(url, out)
        if total and done != total:
            raise DownloadError(
                f"The download of the {what} from {url} stopped after {done} of {total} bytes; nothing was "
                f"written to the cache. If this machine cannot download files, {how}"
            )
        if not weights_file.sha256_matches(digest):
            raise WeightsChecksumError(
                f"The file downloaded from {url} has sha256 {digest}, expected {weights_file.expected_sha256()}; "
                f"nothing was written to the cache. To get the released file, {how}"
            )
        os.replace(temp_path, destination)
        log.info("Saved the %s (%d bytes) to %s", what, done, destination)
    except WeightsError:
        raise
    except (OSError, ValueError, http.client.HTTPException) as error:  # URLError is an OSError.
        raise DownloadError(
            f"Could not download the {what} from {url} ({error}); nothing was written to the cache. "
            f"If this machine cannot download files, {how}"
        ) from error
    finally:
        if temp_path and os.path.exists(temp_path):
            os.remove(temp_path)


def _fetch(url: str, out) -> tuple[int, int, str]:
    """Streams `url` into the open file `out`: (bytes read, Content-Length or 0, hex sha256 of the bytes)."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0)
        done, next_report = 0, 0.1
        for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if total and done / total >= next_report:
                log.info("  %3.0f%% of %.1f MB", 100 * done / total, total / 1e6)
                next_report += 0.1
    return done, total, digest.hexdigest()
