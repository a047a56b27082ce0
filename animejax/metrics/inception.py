"""The FID Inception-v3 network in Flax: images in [-1, 1] to 2048-d pool3 features.

An exact port of pytorch-fid's `InceptionV3(use_fid_inception=True)` (itself the
TensorFlow FID graph `inception-2015-12-05` ported to PyTorch) up to the final
average pool. It differs from torchvision's Inception-v3 where pytorch-fid's
`FIDInceptionA/C/E_1/E_2` blocks do: their 3x3 average pools leave the zero
padding out of the mean (`count_include_pad=False`), and the last block
(`Mixed_7c`) max-pools instead of average-pooling.

Layout is NHWC and every layer is named after its PyTorch counterpart
(`Mixed_5b/branch1x1/conv`, `.../bn`), so `animejax.pretrained.inception.convert_to_flax`
maps the released checkpoint one to one. Batch norm always runs in inference
mode with the checkpoint's running statistics (`batch_stats`).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

FEATURE_DIM = 2048
INPUT_SIZE = 299

# PyTorch's BatchNorm2d(eps=0.001) in torchvision's BasicConv2d.
_BN_EPSILON = 1e-3

Padding = tuple[tuple[int, int], tuple[int, int]]


def torch_padding(padding: int | tuple[int, int]) -> Padding:
    """PyTorch's Conv2d/pool `padding=p` or `padding=(ph, pw)` as explicit Flax padding."""
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return ((ph, ph), (pw, pw))


def avg_pool_3x3(x: jax.Array, count_include_pad: bool) -> jax.Array:
    """`F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=...)` on NHWC.

    Args:
        x: [B, H, W, C].
        count_include_pad: True divides every window by 9 (PyTorch's default, used
            by torchvision's blocks); False divides by the number of real pixels
            in the window (pytorch-fid's FID blocks, TensorFlow's behaviour).

    Returns:
        [B, H, W, C].
    """
    window, strides, padding = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, padding)
    if count_include_pad:
        return total / 9.0
    ones = jnp.ones((1, x.shape[1], x.shape[2], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, padding)
    return total / count


def max_pool_3x3(x: jax.Array, stride: int, padding: int = 0) -> jax.Array:
    """`F.max_pool2d(x, kernel_size=3, stride=stride, padding=padding)` (ceil_mode=False) on NHWC.

    Padded positions hold -inf, as in PyTorch, so they never win the max.
    """
    return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=torch_padding(padding))


class BasicConv2d(nn.Module):
    """torchvision's BasicConv2d: conv without bias, BatchNorm(eps=1e-3) in inference mode, ReLU."""

    features: int
    kernel_size: int | tuple[int, int]
    stride: int = 1
    padding: int | tuple[int, int] = 0  # PyTorch convention: pixels added on each side.
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = (self.kernel_size, self.kernel_size) if isinstance(self.kernel_size, int) else self.kernel_size
        x = nn.Conv(
            self.features,
            kernel,
            strides=(self.stride, self.stride),
            padding=torch_padding(self.padding),
            use_bias=False,
            precision=self.precision,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=_BN_EPSILON, name="bn")(x)
        return nn.relu(x)


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d (FIDInceptionA): 1x1, 5x5, double 3x3 and pooled branches."""

    pool_features: int
    count_include_pad: bool = False  # False: pytorch-fid's FIDInceptionA; True: torchvision's.
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv2d, precision=self.precision)
        branch1x1 = conv(64, 1, name="branch1x1")(x)
        branch5x5 = conv(48, 1, name="branch5x5_1")(x)
        branch5x5 = conv(64, 5, padding=2, name="branch5x5_2")(branch5x5)
        branch3x3dbl = conv(64, 1, name="branch3x3dbl_1")(x)
        branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
        branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_3")(branch3x3dbl)
        branch_pool = avg_pool_3x3(x, self.count_include_pad)
        branch_pool = conv(self.pool_features, 1, name="branch_pool")(branch_pool)
        return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
    """Mixed_6a: grid reduction 35 -> 17 (torchvision's InceptionB, unchanged by pytorch-fid)."""

    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv2d, precision=self.precision)
        branch3x3 = conv(384, 3, stride=2, name="branch3x3")(x)
        branch3x3dbl = conv(64, 1, name="branch3x3dbl_1")(x)
        branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
        branch3x3dbl = conv(96, 3, stride=2, name="branch3x3dbl_3")(branch3x3dbl)
        branch_pool = max_pool_3x3(x, stride=2)
        return jnp.concatenate([branch3x3, branch3x3dbl, branch_pool], axis=-1)


class InceptionC(nn.Module):
    """Mixed_6b..6e (FIDInceptionC): factorised 7x7 branches."""

    channels_7x7: int
    count_include_pad: bool = False
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv2d, precision=self.precision)
        c7 = self.channels_7x7
        branch1x1 = conv(192, 1, name="branch1x1")(x)
        branch7x7 = conv(c7, 1, name="branch7x7_1")(x)
        branch7x7 = conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(branch7x7)
        branch7x7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(branch7x7)
        branch7x7dbl = conv(c7, 1, name="branch7x7dbl_1")(x)
        branch7x7dbl = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(branch7x7dbl)
        branch7x7dbl = conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(branch7x7dbl)
        branch7x7dbl = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(branch7x7dbl)
        branch7x7dbl = conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(branch7x7dbl)
        branch_pool = avg_pool_3x3(x, self.count_include_pad)
        branch_pool = conv(192, 1, name="branch_pool")(branch_pool)
        return jnp.concatenate([branch1x1, branch7x7, branch7x7dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
    """Mixed_7a: grid reduction 17 -> 8 (torchvision's InceptionD, unchanged by pytorch-fid)."""

    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv2d, precision=self.precision)
        branch3x3 = conv(192, 1, name="branch3x3_1")(x)
        branch3x3 = conv(320, 3, stride=2, name="branch3x3_2")(branch3x3)
        branch7x7x3 = conv(192, 1, name="branch7x7x3_1")(x)
        branch7x7x3 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(branch7x7x3)
        branch7x7x3 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(branch7x7x3)
        branch7x7x3 = conv(192, 3, stride=2, name="branch7x7x3_4")(branch7x7x3)
        branch_pool = max_pool_3x3(x, stride=2)
        return jnp.concatenate([branch3x3, branch7x7x3, branch_pool], axis=-1)


class InceptionE(nn.Module):
    """Mixed_7b/7c: expanded-filter-bank blocks.

    `pool="avg_exclude_pad"` is pytorch-fid's FIDInceptionE_1 (Mixed_7b), `"max"` its
    FIDInceptionE_2 (Mixed_7c), `"avg_include_pad"` torchvision's InceptionE.
    """

    pool: str = "avg_exclude_pad"
    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv2d, precision=self.precision)
        branch1x1 = conv(320, 1, name="branch1x1")(x)
        branch3x3 = conv(384, 1, name="branch3x3_1")(x)
        branch3x3 = jnp.concatenate(
            [
                conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(branch3x3),
                conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(branch3x3),
            ],
            axis=-1,
        )
        branch3x3dbl = conv(448, 1, name="branch3x3dbl_1")(x)
        branch3x3dbl = conv(384, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
        branch3x3dbl = jnp.concatenate(
            [
                conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(branch3x3dbl),
                conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(branch3x3dbl),
            ],
            axis=-1,
        )
        if self.pool == "max":
            branch_pool = max_pool_3x3(x, stride=1, padding=1)
        elif self.pool in ("avg_exclude_pad", "avg_include_pad"):
            branch_pool = avg_pool_3x3(x, count_include_pad=self.pool == "avg_include_pad")
        else:
            raise ValueError(f"Unknown InceptionE pool {self.pool!r}; use avg_exclude_pad, avg_include_pad or max.")
        branch_pool = conv(192, 1, name="branch_pool")(branch_pool)
        return jnp.concatenate([branch1x1, branch3x3, branch3x3dbl, branch_pool], axis=-1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's FID Inception-v3 up to pool3.

    `precision` is the convolutions' matmul precision. The default, HIGHEST, keeps
    full float32 on every backend (GPUs would otherwise use TF32 and TPUs
    bfloat16 passes), so features match the float32 PyTorch reference; on CPU it
    changes nothing.
    """

    precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """Pool3 features.

        Args:
            images: [B, 299, 299, 3] float32 in [-1, 1] (already resized with
                `resize.resize_for_inception`; pytorch-fid's `normalize_input`
                maps [0, 1] to this range). Other sizes run (the network is fully
                convolutional) but are not what FID statistics assume.

        Returns:
            [B, 2048] float32: the global average of Mixed_7c's output.
        """
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"FIDInceptionV3 expects [B, H, W, 3] images, got shape {images.shape}.")
        p = self.precision
        x = images.astype(jnp.float32)
        x = BasicConv2d(32, 3, stride=2, precision=p, name="Conv2d_1a_3x3")(x)  # 149x149x32
        x = BasicConv2d(32, 3, precision=p, name="Conv2d_2a_3x3")(x)  # 147x147x32
        x = BasicConv2d(64, 3, padding=1, precision=p, name="Conv2d_2b_3x3")(x)  # 147x147x64
        x = max_pool_3x3(x, stride=2)  # 73x73x64
        x = BasicConv2d(80, 1, precision=p, name="Conv2d_3b_1x1")(x)  # 73x73x80
        x = BasicConv2d(192, 3, precision=p, name="Conv2d_4a_3x3")(x)  # 71x71x192
        x = max_pool_3x3(x, stride=2)  # 35x35x192
        x = InceptionA(32, precision=p, name="Mixed_5b")(x)  # 35x35x256
        x = InceptionA(64, precision=p, name="Mixed_5c")(x)  # 35x35x288
        x = InceptionA(64, precision=p, name="Mixed_5d")(x)  # 35x35x288
        x = InceptionB(precision=p, name="Mixed_6a")(x)  # 17x17x768
        for name, channels_7x7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = InceptionC(channels_7x7, precision=p, name=name)(x)  # 17x17x768
        x = InceptionD(precision=p, name="Mixed_7a")(x)  # 8x8x1280
        x = InceptionE(pool="avg_exclude_pad", precision=p, name="Mixed_7b")(x)  # 8x8x2048
        x = InceptionE(pool="max", precision=p, name="Mixed_7c")(x)  # 8x8x2048
        return jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)), flattened.


def init_variables(module: FIDInceptionV3, rng: jax.Array, image_size: int = INPUT_SIZE) -> dict:
    """Randomly initialised `{"params", "batch_stats"}` (for shapes and tests; FID needs the released weights)."""
    return module.init(rng, jnp.zeros((1, image_size, image_size, 3), jnp.float32))


def variable_shapes(module: FIDInceptionV3 | None = None) -> dict:
    """The `{"params", "batch_stats"}` tree of ShapeDtypeStructs, computed without running the network."""
    module = module or FIDInceptionV3()
    return jax.eval_shape(lambda: init_variables(module, jax.random.key(0)))


def pool3_features(module: FIDInceptionV3, variables: dict, images: jax.Array) -> jax.Array:
    """[B, 299, 299, 3] in [-1, 1] -> [B, 2048] pool3 features (jit this, or call it inside a jitted fn)."""
    return module.apply(variables, images)
