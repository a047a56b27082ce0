"""The FID Inception's released weights: find or download, verify, read without torch, convert to Flax.

The weights are pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, the
TensorFlow FID graph `inception-2015-12-05` ported to PyTorch. The file is a
PyTorch checkpoint (a pickled state dict); it is read here with `zipfile`,
`pickle` and numpy only, through an unpickler that builds nothing but
dictionaries and arrays, so neither torch nor arbitrary pickled code runs.

Both PyTorch serialisation formats are read: the zip archive of PyTorch >= 1.6
and the older "legacy" stream (magic number, pickled objects, then the raw
storages), which files saved with PyTorch < 1.6 use.
"""

from __future__ import annotations

import collections
import hashlib
import http.client
import logging
import os
import pickle
import tempfile
import urllib.request
import zipfile
from typing import Any, BinaryIO

import jax
import jax.numpy as jnp
import numpy as np

from animejax.errors import UserError
from animejax.metrics.inception import FIDInceptionV3, variable_shapes

FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
# Full sha256 of the released file (95,628,359 bytes). pytorch-fid publishes only the
# torch.hub-style prefix in the file name ("6726825d") and does not check it itself.
# The full digest is the one several unrelated public projects pin in their asset
# checks (found with code search for "pt_inception-2015-12-05-6726825d" and
# "6726825d0af5f729"), both for this file and for torch-fidelity's re-host of the
# same 95,628,359 bytes (`weights-inception-2015-12-05-6726825d.pth`, release
# v0.2.0); another project's notes give this file as 95,628,359 bytes with sha256
# prefix 6726825d. It starts with the published prefix, so a file that passes this
# check also passes torch.hub's. Not checked here against a download (no internet).
FID_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "animejax", "weights")

_CHUNK_BYTES = 1 << 20
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

log = logging.getLogger(__name__)


class InceptionWeightsError(UserError, FileNotFoundError):
    """The Inception weights file is missing and could not be downloaded."""


class WeightsChecksumError(UserError, ValueError):
    """A weights file whose sha256 is not the released file's."""


class CheckpointFormatError(UserError, ValueError):
    """A weights file that is not a readable PyTorch state dict for the FID Inception."""


def _how_to_get(cache_path: str) -> str:
    return (
        f"Download {FID_WEIGHTS_URL} (sha256 {FID_WEIGHTS_SHA256}) on a machine with internet access and "
        f"either put it at {cache_path} or pass its path with --config.eval.inception_path=/path/to/"
        f"{FID_WEIGHTS_FILENAME}."
    )


def file_sha256(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_path(local_path: str | None = None, cache_dir: str | None = None, url: str = FID_WEIGHTS_URL) -> str:
    """Path of the FID Inception weights, downloading them into the cache if needed.

    Order: `local_path` if given (it must exist; a file that is not byte for byte
    the released one is used anyway, with a warning, so re-saved copies work);
    else `<cache_dir>/pt_inception-2015-12-05-6726825d.pth` if present (its
    sha256 is checked); else a download from `url` to a temporary file in the
    cache dir, checked against FID_WEIGHTS_SHA256 (the full digest; its first 8
    hex digits are the `6726825d` torch.hub would check) and only then renamed
    into place, so the cache never holds a partial or wrong file.

    Args:
        local_path: a weights file the user already has, or None.
        cache_dir: where downloads go; None means ~/.cache/animejax/weights.
        url: where to download from (the pytorch-fid release by default).

    Returns:
        The path of a weights file.

    Raises:
        InceptionWeightsError: `local_path` does not exist, or the download failed.
        WeightsChecksumError: the cached or downloaded file has the wrong sha256.
    """
    expected = FID_WEIGHTS_SHA256  # Read at call time, so tests can patch it.
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir or DEFAULT_CACHE_DIR))
    cache_path = os.path.join(cache_dir, FID_WEIGHTS_FILENAME)
    if local_path:
        path = os.path.abspath(os.path.expanduser(local_path))
        if not os.path.isfile(path):
            raise InceptionWeightsError(
                f"Inception weights file {path} does not exist (or is not a file). {_how_to_get(cache_path)}"
            )
        digest = file_sha256(path)
        if digest != expected:
            log.warning("Inception weights %s have sha256 %s, not the released one; using them as given.", path, digest)
        return path
    if os.path.isfile(cache_path):
        digest = file_sha256(cache_path)
        if digest != expected:
            raise WeightsChecksumError(
                f"Cached Inception weights {cache_path} have sha256 {digest}, expected {expected}. "
                f"Delete the file to download it again. {_how_to_get(cache_path)}"
            )
        return cache_path
    _download(url, cache_path, expected)
    return cache_path


def _download(url: str, destination: str, expected_sha256: str) -> None:
    """Downloads `url` to a temp file beside `destination`, checks its sha256, renames it into place."""
    directory = os.path.dirname(destination)
    log.info("Downloading the FID Inception weights from %s to %s", url, destination)
    temp_path = None
    try:
        os.makedirs(directory, exist_ok=True)
        handle, temp_path = tempfile.mkstemp(prefix=f".{FID_WEIGHTS_FILENAME}.", suffix=".part", dir=directory)
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done, next_report = 0, 0.1
            for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if total and done / total >= next_report:
                    log.info("  %3.0f%% of %.1f MB", 100 * done / total, total / 1e6)
                    next_report += 0.1
        if total and done != total:
            raise InceptionWeightsError(
                f"The download from {url} stopped after {done} of {total} bytes. {_how_to_get(destination)}"
            )
        if digest.hexdigest() != expected_sha256:
            raise WeightsChecksumError(
                f"The file downloaded from {url} has sha256 {digest.hexdigest()}, expected {expected_sha256}; "
                f"nothing was written to the cache. {_how_to_get(destination)}"
            )
        os.replace(temp_path, destination)
        log.info("Saved the FID Inception weights (%d bytes) to %s", done, destination)
    except UserError:
        raise
    except (OSError, ValueError, http.client.HTTPException) as error:  # URLError is an OSError.
        raise InceptionWeightsError(
            f"Could not download the FID Inception weights from {url}: {error}. {_how_to_get(destination)}"
        ) from error
    finally:
        if temp_path and os.path.exists(temp_path):
            os.remove(temp_path)


# ---------------------------------------------------------------------------
# Reading PyTorch checkpoints without torch.
# ---------------------------------------------------------------------------

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    """Stands in for `torch.FloatStorage` and friends: only the element dtype matters."""

    def __init__(self, name: str):
        if name == "BFloat16Storage":
            import ml_dtypes  # A jax dependency.

            self.dtype = np.dtype(ml_dtypes.bfloat16)
        else:
            self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A flat typed buffer; `data` is filled at once (zip) or after unpickling (legacy)."""

    def __init__(self, dtype: np.dtype, numel: int, data: np.ndarray | None = None):
        self.dtype, self.numel, self.data = dtype, numel, data


class _TensorRef:
    """A tensor recorded while unpickling, materialised once its storage has data."""

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise CheckpointFormatError("A tensor's storage was never read from the checkpoint.")
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, data.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.offset < 0 or min(self.stride, default=0) < 0 or last >= data.size:
            raise CheckpointFormatError(
                f"Tensor of size {self.size}, stride {self.stride} at offset {self.offset} overruns its "
                f"storage of {data.size} elements."
            )
        strides = tuple(s * data.itemsize for s in self.stride)
        view = np.lib.stride_tricks.as_strided(data[self.offset :], shape=self.size, strides=strides, writeable=False)
        return np.array(view)  # A contiguous copy that owns its memory.


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """torch._utils._rebuild_tensor(_v2): (storage, offset, size, stride, requires_grad, hooks, metadata)."""
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    """torch._utils._rebuild_parameter(_with_state): an nn.Parameter is its data here."""
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    """Unpickles a state dict, allowing only dicts, tensors and storage types (never arbitrary code)."""

    def __init__(self, file: BinaryIO, load_storage):
        super().__init__(file, encoding="utf-8")
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and (name in _STORAGE_DTYPES or name == "BFloat16Storage"):
            return _StorageType(name)
        raise CheckpointFormatError(
            f"The checkpoint pickles {module}.{name}, which a plain state dict does not contain; "
            "re-save it with torch.save(model.state_dict(), path)."
        )

    def persistent_load(self, saved_id: Any) -> Any:
        if not (isinstance(saved_id, tuple) and saved_id and _ascii(saved_id[0]) == "storage"):
            raise CheckpointFormatError(f"Unsupported persistent id in the checkpoint: {saved_id!r:.80}")
        return self._load_storage(*saved_id[1:])


def _no_storage(*saved_id: Any) -> Any:
    raise CheckpointFormatError("Unexpected storage reference in a checkpoint header.")


def _safe_load(f: BinaryIO) -> Any:
    """One pickle from `f` through the restricted unpickler (headers and key lists of legacy files)."""
    return _Unpickler(f, _no_storage).load()


def _ascii(value: Any) -> Any:
    return value.decode("ascii") if isinstance(value, bytes) else value


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _TensorRef):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return type(obj)((key, _materialize(value)) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(value) for value in obj)
    return obj


def _load_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        if len(pickles) != 1:
            raise CheckpointFormatError(f"{path} is a zip file but not a PyTorch checkpoint (no single data.pkl).")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in archive.namelist():
            byteorder = archive.read(f"{prefix}byteorder").decode("ascii").strip()
        storages: dict[str, _Storage] = {}

        def load_storage(storage_type, key, location, numel, *_view):
            key = str(_ascii(key))
            if key not in storages:
                dtype = storage_type.dtype.newbyteorder("<" if byteorder == "little" else ">")
                raw = archive.read(f"{prefix}data/{key}")
                data = np.frombuffer(raw, dtype=dtype).astype(storage_type.dtype)
                storages[key] = _Storage(storage_type.dtype, data.size, data)
            return storages[key]

        with archive.open(pickles[0]) as f:
            return _Unpickler(f, load_storage).load()


def _load_legacy(path: str) -> Any:
    with open(path, "rb") as f:
        try:
            magic = _safe_load(f)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError) as error:
            raise CheckpointFormatError(f"{path} is not a PyTorch checkpoint: {error}") from error
        if magic != _LEGACY_MAGIC_NUMBER:
            raise CheckpointFormatError(
                f"{path} is neither a zip nor a legacy-format PyTorch checkpoint (older formats, such as the "
                "pre-1.0 tar format, are not read here); re-save it with torch.save(torch.load(path), path)."
            )
        if _safe_load(f) != _LEGACY_PROTOCOL_VERSION:
            raise CheckpointFormatError(f"{path} uses an unknown legacy PyTorch protocol version.")
        sys_info = _safe_load(f)
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
            raise CheckpointFormatError(f"{path} was saved on a big-endian machine; re-save it on a little-endian one.")
        roots: dict[str, _Storage] = {}
        views: list[tuple[_Storage, _Storage, int]] = []

        def load_storage(storage_type, root_key, location, numel, view_metadata=None):
            root_key = str(_ascii(root_key))
            if root_key not in roots:
                roots[root_key] = _Storage(storage_type.dtype, int(numel))
            if view_metadata is None:
                return roots[root_key]
            _view_key, offset, view_numel = view_metadata  # Offsets and sizes in elements.
            view = _Storage(storage_type.dtype, int(view_numel))
            views.append((view, roots[root_key], int(offset)))
            return view

        result = _Unpickler(f, load_storage).load()
        keys = [str(_ascii(key)) for key in _safe_load(f)]
        for key in keys:
            if key not in roots:
                raise CheckpointFormatError(f"{path}: storage {key} is listed but never used.")
            storage = roots[key]
            header = f.read(8)
            numel = int.from_bytes(header, "little", signed=True) if len(header) == 8 else -1
            raw = f.read(numel * storage.dtype.itemsize) if numel >= 0 else b""
            if numel < 0 or len(raw) != numel * storage.dtype.itemsize:
                raise CheckpointFormatError(f"{path} is truncated (storage {key}).")
            storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<")).astype(storage.dtype)
        for view, root, offset in views:
            view.data = root.data[offset : offset + view.numel]
        return result


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
    """Reads a PyTorch state-dict checkpoint (`torch.save(model.state_dict(), path)`) without torch.

    Args:
        path: a `.pth` file in the zip format (PyTorch >= 1.6) or the legacy
            pickle-stream format.

    Returns:
        Parameter and buffer names mapped to numpy arrays (contiguous copies;
        0-d arrays for scalars such as `num_batches_tracked`).

    Raises:
        CheckpointFormatError: the file is not such a checkpoint, is truncated, or
            pickles anything but dicts, tensors and parameters.
    """
    try:
        loaded = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except CheckpointFormatError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        KeyError,
        IndexError,
        ValueError,
        TypeError,
        zipfile.BadZipFile,
    ) as error:
        raise CheckpointFormatError(f"Could not read the PyTorch checkpoint {path}: {error}") from error
    state = _materialize(loaded)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise CheckpointFormatError(f"{path} does not hold a flat state dict of tensors.")
    return dict(state)


# ---------------------------------------------------------------------------
# PyTorch names <-> the Flax module's variables.
# ---------------------------------------------------------------------------

_TORCH_TO_FLAX = {  # PyTorch suffix -> (collection, Flax leaf path suffix)
    "conv.weight": ("params", ("conv", "kernel")),
    "bn.weight": ("params", ("bn", "scale")),
    "bn.bias": ("params", ("bn", "bias")),
    "bn.running_mean": ("batch_stats", ("bn", "mean")),
    "bn.running_var": ("batch_stats", ("bn", "var")),
}
# Unused for pool3 features in inference: the 1008-way classifier and BN's step counters.
_IGNORED_SUFFIXES = ("num_batches_tracked",)
_IGNORED_PREFIXES = ("fc.",)


def _flatten(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, prefix + (key,)))
        else:
            flat[prefix + (key,)] = value
    return flat


def _unflatten(flat: dict[tuple[str, ...], Any]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def convert_to_flax(state_dict: dict[str, np.ndarray]) -> dict[str, dict]:
    """pytorch-fid's Inception state dict -> `{"params", "batch_stats"}` for `FIDInceptionV3`.

    Conv weights go from OIHW to HWIO; BatchNorm weight/bias/running_mean/
    running_var become scale/bias/mean/var. `fc.*` and `*.num_batches_tracked`
    are dropped (not used for pool3 features in inference). The result is checked
    against the module's variable shapes.

    Args:
        state_dict: names as in `fid_inception_v3().state_dict()`, e.g.
            "Mixed_5b.branch1x1.conv.weight", arrays as numpy.

    Returns:
        Nested dicts of float32 numpy arrays.

    Raises:
        CheckpointFormatError: names or shapes do not fit the FID Inception.
    """
    flat: dict[tuple[str, ...], np.ndarray] = {}
    unexpected = []
    for name, value in state_dict.items():
        if name.endswith(_IGNORED_SUFFIXES) or name.startswith(_IGNORED_PREFIXES):
            continue
        parts = name.split(".")
        suffix = ".".join(parts[-2:])
        if suffix not in _TORCH_TO_FLAX:
            unexpected.append(name)
            continue
        collection, leaf = _TORCH_TO_FLAX[suffix]
        array = np.asarray(value, np.float32)
        if suffix == "conv.weight":
            array = array.transpose(2, 3, 1, 0) if array.ndim == 4 else array  # OIHW -> HWIO.
        flat[(collection, *parts[:-2], *leaf)] = array
    expected = {path: leaf.shape for path, leaf in _flatten(variable_shapes()).items()}
    missing = sorted(".".join(path) for path in expected.keys() - flat.keys())
    unexpected += sorted(".".join(path) for path in flat.keys() - expected.keys())
    wrong = [
        f"{'.'.join(path)}: {flat[path].shape} (want {expected[path]})"
        for path in sorted(expected.keys() & flat.keys())
        if flat[path].shape != expected[path]
    ]
    if missing or unexpected or wrong:
        details = "; ".join(
            f"{label} ({len(items)}): {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if items
        )
        raise CheckpointFormatError(f"The weights do not fit pytorch-fid's FID Inception: {details}.")
    return _unflatten(flat)


def flax_to_torch_state_dict(variables: dict) -> dict[str, np.ndarray]:
    """The inverse of `convert_to_flax`: PyTorch names and layouts (without `fc.*` and step counters)."""
    flax_to_torch = {(collection, leaf): suffix for suffix, (collection, leaf) in _TORCH_TO_FLAX.items()}
    state = {}
    for (collection, *path), value in _flatten(jax.device_get(variables)).items():
        module, leaf = tuple(path[:-2]), tuple(path[-2:])
        suffix = flax_to_torch[(collection, leaf)]
        array = np.asarray(value)
        if suffix == "conv.weight":
            array = array.transpose(3, 2, 0, 1)  # HWIO -> OIHW.
        state[".".join(module + (suffix,))] = array
    return state


def load_fid_inception(local_path: str | None = None, cache_dir: str | None = None):
    """The FID Inception module and its released weights, ready for `module.apply(variables, images)`.

    Args:
        local_path: a weights file the user has (e.g. `config.eval.inception_path`), or None.
        cache_dir: the download cache; None means ~/.cache/animejax/weights.

    Returns:
        (FIDInceptionV3(), {"params", "batch_stats"} of jax arrays).
    """
    path = weights_path(local_path, cache_dir)
    variables = convert_to_flax(load_torch_state_dict(path))
    return FIDInceptionV3(), jax.tree.map(jnp.asarray, variables)
