"""Reading PyTorch state-dict checkpoints (`.pth`) with `zipfile`, `pickle` and numpy only, never running pickled code.

A released checkpoint is a pickled state dict. It is read through an unpickler that builds nothing but
dictionaries, tensors and parameters (see `_ALLOWED_GLOBALS`), so neither torch nor arbitrary pickled code
runs. Both PyTorch serialisation formats are read: the zip archive of PyTorch >= 1.6 and the older "legacy"
stream (magic number, pickled objects, then the raw storages) of files saved with PyTorch < 1.6.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from typing import Any, BinaryIO

import numpy as np

from animejax.errors import UserError

_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001


class CheckpointFormatError(UserError, ValueError):
    """A weights file that is not a readable PyTorch state dict, or whose tensors do not fit the network."""


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
