"""Independent references for the Illustration2Vec port: a `.caffemodel` writer and a float64 numpy forward pass.

The writer serialises with the `protobuf` package's own encoder, from message classes built at run time out of
the published `caffe.proto` (BVLC Caffe, `src/caffe/proto/caffe.proto`): the messages and fields below are
that file's, with its field numbers, labels, types and defaults, for the parts an Illustration2Vec net uses.
(chainer's `CaffeFunction`, the other reference the task allows, does not install here: its sdist imports
`pkg_resources`, which current setuptools no longer ships.) The network written has the Illustration2Vec
layout of the original prototxt (conv1_1 .. conv6_3 with ReLUs and pools, dropout, encode1, encode1neuron,
the tag head encode2 and a loss, after a data layer), with seeded random weights and any widths.

`forward_float64` runs that network in float64 numpy from the decoded protobuf messages (im2col convolutions,
Caffe's ceil-rounded max pool, inner products over the (C, H, W) flattening), after `preprocess_like_i2v`: the
original `i2v/chainer_i2v.py` preprocessing, written with skimage as it is there.
"""

from __future__ import annotations

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_TYPES = {
    "string": _F.TYPE_STRING,
    "float": _F.TYPE_FLOAT,
    "double": _F.TYPE_DOUBLE,
    "int64": _F.TYPE_INT64,
    "int32": _F.TYPE_INT32,
    "uint32": _F.TYPE_UINT32,
    "bool": _F.TYPE_BOOL,
}
# caffe.proto, abridged: message -> [(name, number, label, type or ".caffe.Message"/enum, default, packed)].
_MESSAGES = {
    "BlobShape": [("dim", 1, _REP, "int64", None, True)],
    "BlobProto": [
        ("shape", 7, _OPT, ".caffe.BlobShape", None, False),
        ("data", 5, _REP, "float", None, True),
        ("diff", 6, _REP, "float", None, True),
        ("double_data", 8, _REP, "double", None, True),
        ("double_diff", 9, _REP, "double", None, True),
        ("num", 1, _OPT, "int64", "0", False),
        ("channels", 2, _OPT, "int64", "0", False),
        ("height", 3, _OPT, "int64", "0", False),
        ("width", 4, _OPT, "int64", "0", False),
    ],
    "ConvolutionParameter": [
        ("num_output", 1, _OPT, "uint32", None, False),
        ("bias_term", 2, _OPT, "bool", "true", False),
        ("pad", 3, _REP, "uint32", None, False),
        ("kernel_size", 4, _REP, "uint32", None, False),
        ("stride", 6, _REP, "uint32", None, False),
        ("dilation", 18, _REP, "uint32", None, False),
        ("pad_h", 9, _OPT, "uint32", "0", False),
        ("pad_w", 10, _OPT, "uint32", "0", False),
        ("kernel_h", 11, _OPT, "uint32", None, False),
        ("kernel_w", 12, _OPT, "uint32", None, False),
        ("stride_h", 13, _OPT, "uint32", None, False),
        ("stride_w", 14, _OPT, "uint32", None, False),
        ("group", 5, _OPT, "uint32", "1", False),
        ("axis", 16, _OPT, "int32", "1", False),
    ],
    "PoolingParameter": [
        ("pool", 1, _OPT, ".caffe.PoolingParameter.PoolMethod", "MAX", False),
        ("pad", 4, _OPT, "uint32", "0", False),
        ("kernel_size", 2, _OPT, "uint32", None, False),
        ("stride", 3, _OPT, "uint32", "1", False),
        ("global_pooling", 12, _OPT, "bool", "false", False),
    ],
    "InnerProductParameter": [
        ("num_output", 1, _OPT, "uint32", None, False),
        ("bias_term", 2, _OPT, "bool", "true", False),
        ("axis", 5, _OPT, "int32", "1", False),
        ("transpose", 6, _OPT, "bool", "false", False),
    ],
    "ReLUParameter": [("negative_slope", 1, _OPT, "float", "0", False)],
    "DropoutParameter": [("dropout_ratio", 1, _OPT, "float", "0.5", False)],
    "InputParameter": [("shape", 1, _REP, ".caffe.BlobShape", None, False)],
    "LRNParameter": [("local_size", 1, _OPT, "uint32", "5", False)],
    "LayerParameter": [
        ("name", 1, _OPT, "string", None, False),
        ("type", 2, _OPT, "string", None, False),
        ("bottom", 3, _REP, "string", None, False),
        ("top", 4, _REP, "string", None, False),
        ("loss_weight", 5, _REP, "float", None, False),
        ("blobs", 7, _REP, ".caffe.BlobProto", None, False),
        ("convolution_param", 106, _OPT, ".caffe.ConvolutionParameter", None, False),
        ("dropout_param", 108, _OPT, ".caffe.DropoutParameter", None, False),
        ("inner_product_param", 117, _OPT, ".caffe.InnerProductParameter", None, False),
        ("lrn_param", 118, _OPT, ".caffe.LRNParameter", None, False),
        ("pooling_param", 121, _OPT, ".caffe.PoolingParameter", None, False),
        ("relu_param", 123, _OPT, ".caffe.ReLUParameter", None, False),
        ("input_param", 143, _OPT, ".caffe.InputParameter", None, False),
    ],
    "V1LayerParameter": [
        ("bottom", 2, _REP, "string", None, False),
        ("top", 3, _REP, "string", None, False),
        ("name", 4, _OPT, "string", None, False),
        ("type", 5, _OPT, ".caffe.V1LayerParameter.LayerType", None, False),
        ("blobs", 6, _REP, ".caffe.BlobProto", None, False),
        ("blobs_lr", 7, _REP, "float", None, False),
        ("convolution_param", 10, _OPT, ".caffe.ConvolutionParameter", None, False),
        ("dropout_param", 12, _OPT, ".caffe.DropoutParameter", None, False),
        ("inner_product_param", 17, _OPT, ".caffe.InnerProductParameter", None, False),
        ("lrn_param", 18, _OPT, ".caffe.LRNParameter", None, False),
        ("pooling_param", 19, _OPT, ".caffe.PoolingParameter", None, False),
        ("relu_param", 30, _OPT, ".caffe.ReLUParameter", None, False),
    ],
    "NetParameter": [
        ("name", 1, _OPT, "string", None, False),
        ("input", 3, _REP, "string", None, False),
        ("input_dim", 4, _REP, "int64", None, False),
        ("layer", 100, _REP, ".caffe.LayerParameter", None, False),
        ("layers", 2, _REP, ".caffe.V1LayerParameter", None, False),
    ],
}
_ENUMS = {
    "PoolingParameter": ("PoolMethod", {"MAX": 0, "AVE": 1, "STOCHASTIC": 2}),
    "V1LayerParameter": (
        "LayerType",
        {
            "NONE": 0,
            "CONVOLUTION": 4,
            "DATA": 5,
            "DROPOUT": 6,
            "INNER_PRODUCT": 14,
            "LRN": 15,
            "POOLING": 17,
            "RELU": 18,
            "SIGMOID": 19,
            "SIGMOID_CROSS_ENTROPY_LOSS": 27,
        },
    ),
}
_V1_CODES = {
    "Convolution": "CONVOLUTION",
    "Data": "DATA",
    "Dropout": "DROPOUT",
    "InnerProduct": "INNER_PRODUCT",
    "LRN": "LRN",
    "Pooling": "POOLING",
    "ReLU": "RELU",
    "Sigmoid": "SIGMOID",
    "SigmoidCrossEntropyLoss": "SIGMOID_CROSS_ENTROPY_LOSS",
}


def caffe_messages() -> dict:
    """The abridged caffe.proto messages as protobuf classes: {"NetParameter": class, ...}."""
    file_proto = descriptor_pb2.FileDescriptorProto(name="caffe_abridged.proto", package="caffe", syntax="proto2")
    for message_name, fields in _MESSAGES.items():
        message = file_proto.message_type.add(name=message_name)
        if message_name in _ENUMS:
            enum_name, values = _ENUMS[message_name]
            enum = message.enum_type.add(name=enum_name)
            for value_name, number in values.items():
                enum.value.add(name=value_name, number=number)
        for name, number, label, kind, default, packed in fields:
            field = message.field.add(name=name, number=number, label=label)
            if kind in _TYPES:
                field.type = _TYPES[kind]
            else:
                field.type_name = kind
                field.type = _F.TYPE_ENUM if kind.split(".")[-1] in {"PoolMethod", "LayerType"} else _F.TYPE_MESSAGE
            if default is not None:
                field.default_value = default
            if packed:
                field.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}")) for name in _MESSAGES}


def illust2vec_layers(channels, encode_dim: int, input_size: int, tags: int, seed: int) -> list[dict]:
    """The Illustration2Vec feature net's layers (original prototxt layout) with seeded He-scaled random weights.

    Returns dicts: name, type, bottom, top, params (the `*_param` message fields) and blobs (numpy, Caffe layout).
    """
    rng = np.random.default_rng(seed)
    layers = [{"name": "data", "type": "Data", "bottom": [], "top": ["data"], "params": {}, "blobs": []}]
    conv_names = [
        "conv1_1",
        "conv2_1",
        "conv3_1",
        "conv3_2",
        "conv4_1",
        "conv4_2",
        "conv5_1",
        "conv5_2",
        "conv6_1",
        "conv6_2",
        "conv6_3",
    ]
    pools = {"conv1_1": "pool1", "conv2_1": "pool2", "conv3_2": "pool3", "conv4_2": "pool4", "conv5_2": "pool5"}
    blob, width = "data", 3
    for name, out in zip(conv_names, channels):
        weight = rng.normal(size=(out, width, 3, 3)) * np.sqrt(2.0 / (9 * width))
        bias = rng.normal(size=out) * 0.1
        conv = {"num_output": out, "pad": [1], "kernel_size": [3], "stride": [1]}
        layers.append(
            {
                "name": name,
                "type": "Convolution",
                "bottom": [blob],
                "top": [name],
                "params": {"convolution_param": conv},
                "blobs": [weight, bias],
            }
        )
        blob, width = name, out
        layers.append(
            {"name": "relu" + name[4:], "type": "ReLU", "bottom": [blob], "top": [blob], "params": {}, "blobs": []}
        )
        if name in pools:
            pool = {"pool": "MAX", "kernel_size": 2, "stride": 2}
            layers.append(
                {
                    "name": pools[name],
                    "type": "Pooling",
                    "bottom": [blob],
                    "top": [pools[name]],
                    "params": {"pooling_param": pool},
                    "blobs": [],
                }
            )
            blob = pools[name]
    layers.append(
        {
            "name": "drop6_3",
            "type": "Dropout",
            "bottom": [blob],
            "top": [blob],
            "params": {"dropout_param": {"dropout_ratio": 0.5}},
            "blobs": [],
        }
    )
    fan_in = width * (input_size // 32) ** 2
    for name, out, inputs in (("encode1", encode_dim, fan_in), ("encode2", tags, encode_dim)):
        weight = rng.normal(size=(out, inputs)) * np.sqrt(1.0 / inputs)
        layers.append(
            {
                "name": name,
                "type": "InnerProduct",
                "bottom": [blob],
                "top": [name],
                "params": {"inner_product_param": {"num_output": out}},
                "blobs": [weight, rng.normal(size=out) * 0.1],
            }
        )
        blob = name
        if name == "encode1":
            layers.append(
                {
                    "name": "encode1neuron",
                    "type": "Sigmoid",
                    "bottom": ["encode1"],
                    "top": ["encode1neuron"],
                    "params": {},
                    "blobs": [],
                }
            )
            blob = "encode1neuron"
    layers.append(
        {
            "name": "loss",
            "type": "SigmoidCrossEntropyLoss",
            "bottom": ["encode2", "label"],
            "top": ["loss"],
            "params": {},
            "blobs": [],
        }
    )
    return layers


def serialize(layers: list[dict], v1: bool = False, legacy_shapes: bool = False, name: str = "illust2vec") -> bytes:
    """`layers` as a serialised NetParameter: V2 `layer` entries, or V1 `layers` (enum types) with `v1`.

    `legacy_shapes` writes blob shapes as the deprecated num/channels/height/width (as old Caffe did).
    """
    messages = caffe_messages()
    net = messages["NetParameter"](name=name)
    for spec in layers:
        if v1:
            layer = net.layers.add(name=spec["name"], type=_V1_CODES[spec["type"]])
        else:
            layer = net.layer.add(name=spec["name"], type=spec["type"])
        layer.bottom.extend(spec["bottom"])
        layer.top.extend(spec["top"])
        for field, values in spec["params"].items():
            getattr(layer, field).CopyFrom(messages[_param_message(field)](**values))
        for array in spec["blobs"]:
            blob = layer.blobs.add()
            array = np.asarray(array, np.float32)
            if legacy_shapes:
                dims = (1,) * (4 - array.ndim) + array.shape
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.dim.extend(array.shape)
            blob.data.extend(array.reshape(-1).tolist())
    return net.SerializeToString()


def _param_message(field: str) -> str:
    return {
        "convolution_param": "ConvolutionParameter",
        "pooling_param": "PoolingParameter",
        "inner_product_param": "InnerProductParameter",
        "dropout_param": "DropoutParameter",
        "relu_param": "ReLUParameter",
        "lrn_param": "LRNParameter",
        "input_param": "InputParameter",
    }[field]


def parse(data: bytes):
    """A serialised NetParameter decoded by protobuf's own parser (what the independent forward pass runs)."""
    net = caffe_messages()["NetParameter"]()
    net.ParseFromString(data)
    return net


# --- the float64 forward pass -----------------------------------------------------------------------------------


def preprocess_like_i2v(image: np.ndarray, size: int = 224) -> np.ndarray:
    """`i2v/chainer_i2v.py`: uint8 RGB [H, W, 3] -> float64 [3, size, size] BGR minus the mean pixel.

    Its `resize_image` (caffe.io's: min-max scale to [0, 1], skimage `resize(order=1, mode="constant")`, scale
    back), then `[:, :, ::-1]` and the mean (164.76, 167.48, 181.14) subtracted, then CHW.
    """
    from skimage.transform import resize

    im = image.astype(np.float32)
    low, high = im.min(), im.max()
    if high > low:
        scaled = resize((im - low) / (high - low), (size, size, 3), order=1, mode="constant")
        im = scaled * (high - low) + low
    else:
        im = np.full((size, size, 3), low)
    im = im.astype(np.float64)[:, :, ::-1] - np.array([164.76139251, 167.47864617, 181.13838569])
    return im.transpose(2, 0, 1)


def _blob(blob) -> np.ndarray:
    dims = list(blob.shape.dim) or [d for d in (blob.num, blob.channels, blob.height, blob.width)]
    return np.asarray(blob.data, np.float64).reshape(dims)


def _conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, pad: int) -> np.ndarray:
    """Caffe convolution (cross-correlation), NCHW, stride 1, square kernel."""
    out, _, k, _ = weight.shape
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    height, width = x.shape[2] - k + 1, x.shape[3] - k + 1
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))  # [N, C, H, W, k, k]
    return (
        np.einsum("nchwij,ocij->nohw", windows[:, :, :height, :width], weight, optimize=True)
        + bias[None, :, None, None]
    )


def _max_pool(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """Caffe max pooling with ceil rounding, no padding."""
    height = -(-(x.shape[2] - kernel) // stride) + 1
    width = -(-(x.shape[3] - kernel) // stride) + 1
    out = np.full(x.shape[:2] + (height, width), -np.inf)
    for i in range(height):
        for j in range(width):
            window = x[:, :, i * stride : i * stride + kernel, j * stride : j * stride + kernel]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out


def forward_float64(net, images: np.ndarray, output: str = "encode1") -> np.ndarray:
    """Runs the decoded NetParameter's layers in file order on float64 NCHW `images` up to the `output` blob.

    Supports the layer types the Illustration2Vec net uses; data and loss layers are skipped.
    """
    blobs = {"data": images}
    for layer in net.layer:
        if layer.type in ("Data", "Input", "SigmoidCrossEntropyLoss"):
            continue
        x = blobs[layer.bottom[0]]
        if layer.type == "Convolution":
            p = layer.convolution_param
            assert list(p.kernel_size) == [3] and list(p.stride) == [1]
            y = _conv(x, _blob(layer.blobs[0]), _blob(layer.blobs[1]).reshape(-1), p.pad[0])
        elif layer.type == "ReLU":
            y = np.maximum(x, 0) + layer.relu_param.negative_slope * np.minimum(x, 0)
        elif layer.type == "Pooling":
            assert layer.pooling_param.pool == 0  # MAX
            y = _max_pool(x, layer.pooling_param.kernel_size, layer.pooling_param.stride)
        elif layer.type == "Dropout":
            y = x  # Inference.
        elif layer.type == "InnerProduct":
            weight = _blob(layer.blobs[0])
            weight = weight.reshape(layer.inner_product_param.num_output, -1)
            y = x.reshape(x.shape[0], -1) @ weight.T + _blob(layer.blobs[1]).reshape(-1)
        elif layer.type == "Sigmoid":
            y = 1.0 / (1.0 + np.exp(-x))
        else:
            raise NotImplementedError(layer.type)
        blobs[layer.top[0]] = y
        if layer.top[0] == output:
            return y
    raise KeyError(output)
