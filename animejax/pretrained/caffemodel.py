"""Reading Caffe `.caffemodel` files (binary protobuf `NetParameter`) in pure Python: no Caffe, no protobuf package.

A `.caffemodel` is one serialised `caffe.NetParameter` (BVLC Caffe's `src/caffe/proto/caffe.proto`): the layers in
order, each with its name, type, bottom/top blob names, type-specific parameters and learned blobs. This module
decodes the protobuf wire format itself (varints, fixed 32/64-bit and length-delimited fields, packed and unpacked
repeated scalars) for the few messages and fields that the Illustration2Vec networks use, and skips every other
field as protobuf readers do. Both layer encodings are read: `layer` (`LayerParameter`, field 100, string types,
Caffe since 2015) and the older `layers` (`V1LayerParameter`, field 2, enum types). The even older V0 layout is
refused (Caffe's `upgrade_net_proto_binary` converts it).

Layer types are checked against `SUPPORTED_TYPES`: the operations a plain VGG-style network needs
(`COMPUTE_TYPES`) and the data and loss layers of a training net, which carry no weights (`DATA_TYPES`,
`LOSS_TYPES`). Any other type is a `CaffeModelError` naming the layer, so a file with operations this reader
does not know is never silently misread. Float blobs come back as float32 numpy arrays in Caffe's layout
(convolution weights OIHW, inner-product weights [out, in]).
"""

from __future__ import annotations

import dataclasses
import mmap
from typing import Any, Iterator

import numpy as np

from animejax.errors import UserError


class CaffeModelError(UserError, ValueError):
    """A file that is not a readable `.caffemodel`, or that holds a layer type this reader does not support."""


# Operations of a plain convolutional network (what Illustration2Vec's prototxt uses).
COMPUTE_TYPES = ("Convolution", "ReLU", "Pooling", "InnerProduct", "Dropout", "Sigmoid")
# Layers that feed or score a training net: no weights, no effect on features.
DATA_TYPES = ("Input", "Data", "ImageData", "MemoryData", "HDF5Data", "DummyData")
LOSS_TYPES = ("SigmoidCrossEntropyLoss", "EuclideanLoss", "SoftmaxWithLoss", "Accuracy", "Silence")
SUPPORTED_TYPES = COMPUTE_TYPES + DATA_TYPES + LOSS_TYPES

# V1LayerParameter.LayerType values -> the V2 type strings (caffe.proto; only the types above).
_V1_TYPES = {
    4: "Convolution",
    18: "ReLU",
    17: "Pooling",
    14: "InnerProduct",
    6: "Dropout",
    19: "Sigmoid",
    5: "Data",
    12: "ImageData",
    29: "MemoryData",
    9: "HDF5Data",
    32: "DummyData",
    27: "SigmoidCrossEntropyLoss",
    7: "EuclideanLoss",
    21: "SoftmaxWithLoss",
    1: "Accuracy",
    36: "Silence",
}
_POOL_METHODS = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}
_ROUND_MODES = {0: "CEIL", 1: "FLOOR"}

# --- the wire format -------------------------------------------------------------------------------------------

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the base-128 varint at `pos`."""
    value, shift = 0, 0
    while True:
        if pos >= end:
            raise CaffeModelError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise CaffeModelError("varint longer than 10 bytes")


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """Yields (field number, wire type, value) of one message: an int for varints, a (start, end) span of `buf`
    for length-delimited fields, and the raw bytes of fixed-width ones."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
        elif wire == _BYTES:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise CaffeModelError(f"field {number} runs {pos + length - end} bytes past its message")
            value, pos = (pos, pos + length), pos + length
        elif wire == _FIXED32:
            value, pos = bytes(buf[pos : pos + 4]), pos + 4
        elif wire == _FIXED64:
            value, pos = bytes(buf[pos : pos + 8]), pos + 8
        else:  # 3/4 are protobuf groups, unused by caffe.proto; 6/7 do not exist.
            raise CaffeModelError(f"unsupported wire type {wire} (field {number}) at byte {pos}")
        if pos > end:
            raise CaffeModelError(f"field {number} runs past the end of its message")
        yield number, wire, value


def _signed(value: int) -> int:
    """A varint read as int32/int64 (two's complement over 64 bits)."""
    return value - (1 << 64) if value >= 1 << 63 else value


# A message spec: field number -> (name, kind, repeated). Kinds: "string", "int" (int32/int64/uint32/enum),
# "bool", "float", "double", or a nested spec (a dict). Fields not listed are skipped.
_BLOB_SHAPE = {1: ("dim", "int", True)}
_BLOB = {
    7: ("shape", _BLOB_SHAPE, False),
    5: ("data", "float", True),
    8: ("double_data", "double", True),
    1: ("num", "int", False),
    2: ("channels", "int", False),
    3: ("height", "int", False),
    4: ("width", "int", False),
}
_CONVOLUTION = {
    1: ("num_output", "int", False),
    2: ("bias_term", "bool", False),
    3: ("pad", "int", True),
    4: ("kernel_size", "int", True),
    6: ("stride", "int", True),
    18: ("dilation", "int", True),
    9: ("pad_h", "int", False),
    10: ("pad_w", "int", False),
    11: ("kernel_h", "int", False),
    12: ("kernel_w", "int", False),
    13: ("stride_h", "int", False),
    14: ("stride_w", "int", False),
    5: ("group", "int", False),
    16: ("axis", "int", False),
}
_POOLING = {
    1: ("pool", "int", False),
    4: ("pad", "int", False),
    9: ("pad_h", "int", False),
    10: ("pad_w", "int", False),
    2: ("kernel_size", "int", False),
    5: ("kernel_h", "int", False),
    6: ("kernel_w", "int", False),
    3: ("stride", "int", False),
    7: ("stride_h", "int", False),
    8: ("stride_w", "int", False),
    12: ("global_pooling", "bool", False),
    13: ("round_mode", "int", False),
}
_INNER_PRODUCT = {
    1: ("num_output", "int", False),
    2: ("bias_term", "bool", False),
    5: ("axis", "int", False),
    6: ("transpose", "bool", False),
}
_DROPOUT = {1: ("dropout_ratio", "float", False)}
_RELU = {1: ("negative_slope", "float", False)}
_INPUT = {1: ("shape", _BLOB_SHAPE, True)}
_LAYER = {  # LayerParameter
    1: ("name", "string", False),
    2: ("type", "string", False),
    3: ("bottom", "string", True),
    4: ("top", "string", True),
    7: ("blobs", _BLOB, True),
    106: ("convolution_param", _CONVOLUTION, False),
    108: ("dropout_param", _DROPOUT, False),
    117: ("inner_product_param", _INNER_PRODUCT, False),
    121: ("pooling_param", _POOLING, False),
    123: ("relu_param", _RELU, False),
    143: ("input_param", _INPUT, False),
}
_V1_LAYER = {  # V1LayerParameter
    4: ("name", "string", False),
    5: ("type", "int", False),
    2: ("bottom", "string", True),
    3: ("top", "string", True),
    6: ("blobs", _BLOB, True),
    10: ("convolution_param", _CONVOLUTION, False),
    12: ("dropout_param", _DROPOUT, False),
    17: ("inner_product_param", _INNER_PRODUCT, False),
    19: ("pooling_param", _POOLING, False),
    30: ("relu_param", _RELU, False),
    1: ("v0_layer", {}, False),
}
_NET = {  # NetParameter
    1: ("name", "string", False),
    3: ("input", "string", True),
    4: ("input_dim", "int", True),
    8: ("input_shape", _BLOB_SHAPE, True),
    100: ("layer", _LAYER, True),
    2: ("layers", _V1_LAYER, True),
}

_SCALAR_WIRES = {"int": _VARINT, "bool": _VARINT, "float": _FIXED32, "double": _FIXED64}
_PACKED_DTYPES = {"float": "<f4", "double": "<f8"}


def _decode(buf: memoryview, start: int, end: int, spec: dict, where: str) -> dict:
    """One message as a dict of the fields `spec` lists (repeated ones as lists; numeric arrays as numpy)."""
    out: dict[str, Any] = {}
    for number, wire, value in _fields(buf, start, end):
        if number not in spec:
            continue
        name, kind, repeated = spec[number]
        if isinstance(kind, dict):
            if wire != _BYTES:
                raise CaffeModelError(f"{where}: field {name} has wire type {wire}, expected a message")
            item: Any = _decode(buf, value[0], value[1], kind, f"{where}.{name}")
        elif kind == "string":
            if wire != _BYTES:
                raise CaffeModelError(f"{where}: field {name} has wire type {wire}, expected a string")
            item = bytes(buf[value[0] : value[1]]).decode("utf-8", errors="replace")
        elif wire == _BYTES and repeated:  # A packed run of scalars.
            if kind in _PACKED_DTYPES:
                item = np.frombuffer(buf[value[0] : value[1]], _PACKED_DTYPES[kind]).copy()
            else:
                values, pos = [], value[0]
                while pos < value[1]:
                    number_value, pos = _varint(buf, pos, value[1])
                    values.append(_signed(number_value))
                item = values
            out.setdefault(name, []).append(item)
            continue
        elif wire != _SCALAR_WIRES[kind]:
            raise CaffeModelError(f"{where}: field {name} has wire type {wire}, expected {_SCALAR_WIRES[kind]}")
        elif kind == "int":
            item = _signed(value)
        elif kind == "bool":
            item = bool(value)
        else:
            item = np.frombuffer(value, _PACKED_DTYPES[kind])[0]
        if repeated:
            out.setdefault(name, []).append(item)
        else:
            out[name] = item
    return out


def _flat(values: list | None, dtype: Any = None) -> list | np.ndarray:
    """A repeated field's pieces (packed runs and single values) joined in order."""
    if not values:
        return [] if dtype is None else np.zeros(0, dtype)
    if dtype is None:
        return [x for piece in values for x in (piece if isinstance(piece, list) else [piece])]
    if len(values) == 1 and isinstance(values[0], np.ndarray) and values[0].dtype == dtype:
        return values[0]  # One packed run (how Caffe writes blobs): no second copy of a large array.
    return np.concatenate([np.atleast_1d(np.asarray(piece, dtype)) for piece in values])


# --- layers ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CaffeLayer:
    """One decoded layer.

    Attributes:
        name: the layer's name, e.g. "conv1_1".
        type: its V2 type string, e.g. "Convolution" (V1 enum types are translated).
        bottom, top: the names of its input and output blobs.
        params: its type's parameters with Caffe's defaults filled in (see `_layer_params`).
        blobs: its learned arrays, float32, in Caffe's layout and shape.
    """

    name: str
    type: str
    bottom: list[str]
    top: list[str]
    params: dict[str, Any]
    blobs: list[np.ndarray]


@dataclasses.dataclass
class CaffeNet:
    """A decoded `.caffemodel`: the net's name and its layers in file order."""

    name: str
    layers: list[CaffeLayer]

    def layer(self, name: str) -> CaffeLayer:
        """The layer called `name` (CaffeModelError listing the names if there is none)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise CaffeModelError(f"the net has no layer {name!r}; it has {[layer.name for layer in self.layers]}")


def _pair(param: dict, name: str, default: int) -> tuple[int, int]:
    """Caffe's (h, w) of a 2-D setting: `name_h`/`name_w` if set, else the repeated or single `name`."""
    if f"{name}_h" in param or f"{name}_w" in param:
        return int(param.get(f"{name}_h", default)), int(param.get(f"{name}_w", default))
    values = param.get(name)
    values = _flat(values) if isinstance(values, list) else ([] if values is None else [values])
    if not values:
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise CaffeModelError(f"{name} has {len(values)} values; only 2-D layers are supported")


def _layer_params(layer_type: str, raw: dict, where: str) -> dict[str, Any]:
    """The parameters a compute layer runs with, Caffe's defaults filled in."""
    if layer_type == "Convolution":
        p = raw.get("convolution_param", {})
        if "num_output" not in p:
            raise CaffeModelError(f"{where}: convolution_param.num_output is missing")
        return {
            "num_output": int(p["num_output"]),
            "kernel": _pair(p, "kernel", 0) if "kernel_h" in p else _pair(p, "kernel_size", 0),
            "stride": _pair(p, "stride", 1),
            "pad": _pair(p, "pad", 0),
            "dilation": _pair(p, "dilation", 1),
            "group": int(p.get("group", 1)),
            "bias_term": bool(p.get("bias_term", True)),
            "axis": int(p.get("axis", 1)),
        }
    if layer_type == "Pooling":
        p = raw.get("pooling_param", {})
        method = int(p.get("pool", 0))
        if method not in _POOL_METHODS:
            raise CaffeModelError(f"{where}: unknown pooling method {method}")
        return {
            "pool": _POOL_METHODS[method],
            "kernel": _pair(p, "kernel", 0) if "kernel_h" in p else _pair(p, "kernel_size", 0),
            "stride": _pair(p, "stride", 1),
            "pad": _pair(p, "pad", 0),
            "global_pooling": bool(p.get("global_pooling", False)),
            "round_mode": _ROUND_MODES.get(int(p.get("round_mode", 0)), "CEIL"),
        }
    if layer_type == "InnerProduct":
        p = raw.get("inner_product_param", {})
        if "num_output" not in p:
            raise CaffeModelError(f"{where}: inner_product_param.num_output is missing")
        return {
            "num_output": int(p["num_output"]),
            "bias_term": bool(p.get("bias_term", True)),
            "axis": int(p.get("axis", 1)),
            "transpose": bool(p.get("transpose", False)),
        }
    if layer_type == "ReLU":
        return {"negative_slope": float(raw.get("relu_param", {}).get("negative_slope", 0.0))}
    if layer_type == "Dropout":
        return {"dropout_ratio": float(raw.get("dropout_param", {}).get("dropout_ratio", 0.5))}
    if layer_type == "Input":
        shapes = raw.get("input_param", {}).get("shape", [])
        return {"shapes": [[int(d) for d in _flat(shape.get("dim"))] for shape in shapes]}
    return {}


def _blob_array(blob: dict, where: str) -> np.ndarray:
    """A BlobProto's values, float32, in its shape (`shape.dim`, else the legacy num/channels/height/width)."""
    data = _flat(blob.get("data"), np.float32)
    if not data.size:
        data = _flat(blob.get("double_data"), np.float64).astype(np.float32)
    if "shape" in blob:
        shape = tuple(int(d) for d in _flat(blob["shape"].get("dim")))
    else:
        shape = tuple(int(blob.get(key, 0)) for key in ("num", "channels", "height", "width"))
        shape = shape if all(shape) else (data.size,)
    if int(np.prod(shape)) != data.size:
        raise CaffeModelError(f"{where}: blob of shape {shape} holds {data.size} values")
    return data.reshape(shape)


def _layer(raw: dict, v1: bool, index: int) -> CaffeLayer:
    name = raw.get("name", f"<layer {index}>")
    if v1:
        if "v0_layer" in raw:
            raise CaffeModelError(
                f"layer {index} is in Caffe's V0 format; convert the file with Caffe's upgrade_net_proto_binary"
            )
        code = raw.get("type", 0)
        if code not in _V1_TYPES:
            raise CaffeModelError(
                f"layer {name!r} has V1 type code {code}, which is not supported; supported types: "
                f"{', '.join(SUPPORTED_TYPES)}"
            )
        layer_type = _V1_TYPES[code]
    else:
        layer_type = raw.get("type", "")
    if layer_type not in SUPPORTED_TYPES:
        raise CaffeModelError(
            f"layer {name!r} has type {layer_type!r}, which this reader does not support; supported types: "
            f"{', '.join(SUPPORTED_TYPES)}"
        )
    where = f"layer {name!r} ({layer_type})"
    blobs = [_blob_array(blob, f"{where} blob {i}") for i, blob in enumerate(raw.get("blobs", []))]
    return CaffeLayer(
        name=name,
        type=layer_type,
        bottom=list(raw.get("bottom", [])),
        top=list(raw.get("top", [])),
        params=_layer_params(layer_type, raw, where),
        blobs=blobs,
    )


def parse_caffemodel(data: bytes | memoryview) -> CaffeNet:
    """Decodes a serialised `caffe.NetParameter`.

    Raises:
        CaffeModelError: malformed protobuf, no layers, a V0 file, or a layer type outside `SUPPORTED_TYPES`.
    """
    buf = memoryview(data)
    try:
        raw = _decode(buf, 0, len(buf), _NET, "NetParameter")
    except CaffeModelError:
        raise
    except (IndexError, ValueError, UnicodeError) as error:
        raise CaffeModelError(f"not a Caffe NetParameter ({error})") from error
    if raw.get("layer") and raw.get("layers"):
        raise CaffeModelError("the file mixes V1 `layers` and V2 `layer` entries; Caffe refuses such nets too")
    v1 = not raw.get("layer")
    entries = raw.get("layers" if v1 else "layer", [])
    if not entries:
        raise CaffeModelError("the file holds no layers; is it a .caffemodel (binary NetParameter)?")
    return CaffeNet(name=raw.get("name", ""), layers=[_layer(entry, v1, i) for i, entry in enumerate(entries)])


def load_caffemodel(path: str) -> CaffeNet:
    """Reads a `.caffemodel` file (memory-mapped, so a 1 GB file is not copied before decoding).

    Raises:
        CaffeModelError: the file is missing, empty or not a readable Caffe model (the message names it).
    """
    try:
        with open(path, "rb") as f:
            if f.seek(0, 2) == 0:
                raise CaffeModelError(f"{path} is empty; it is not a .caffemodel")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    return parse_caffemodel(view)
                finally:
                    view.release()
    except CaffeModelError as error:
        if str(error).startswith(path):
            raise
        raise CaffeModelError(f"{path}: {error}") from error
    except OSError as error:
        raise CaffeModelError(f"cannot read {path} ({error})") from error
