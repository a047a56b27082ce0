"""Sliced Wasserstein distance between two image sets on Laplacian-pyramid patches (Karras et al., 2018).

Follows the Progressive GAN reference (`metrics/sliced_wasserstein.py` in tkarras/progressive_growing_of_gans):

1. Each image is decomposed into a Laplacian pyramid with the 5x5 binomial filter ([1, 4, 6, 4, 1] / 16 per
   axis, mirror borders, as cv2.pyrDown / pyrUp): one level per resolution from the image size down to
   `min_resolution` (64 px: levels 64, 32 and 16; the last level is the low-pass residual).
2. At every level, `patches_per_image` random 7x7x3 patches are taken per image (fully inside the image).
3. Each set's patches are normalised per channel by that set's own mean and std across all its patches.
4. For `dir_repeats` x `dirs_per_repeat` random unit directions the projected patches of both sets are sorted
   and the mean absolute difference of the sorted values is taken (the 1-D Wasserstein-1 distance); it is
   averaged over directions and repeats.

Distances are reported x1e3 as in the paper, one per level (`swd/64`, `swd/32`, `swd/16`) plus `swd/mean`.

Conventions: images are [N, H, W, 3], either uint8 in [0, 255] or floats in [-1, 1]; uint8 is mapped to
[-1, 1]. Because the pyramid is linear and step 3 normalises each set by its own statistics, the result does
not change under a per-channel affine intensity change of one whole set (the value range convention does not
matter, but neither is a global brightness or contrast change detected). Both sets must have the same shape.
Patch positions are drawn once per image index and level and shared by both sets, and the directions are
shared too, so the result is deterministic given `seed`, independent of `batch_size`, exactly 0 for identical
sets and exactly symmetric in its arguments. The pyramid, patch gathering, projections and sorts run in JAX
(on the default device). Levels are processed one at a time; a level's descriptors of both sets are held
on the host (2 x N * patches_per_image * 147 float32 values: 150 MB for 1,000 images, 2.4 GB for 16,384).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32) / 16.0


def _blur(x: jax.Array, gain: float = 1.0) -> jax.Array:
    """Separable 5x5 binomial filter on [B, H, W, C] with mirror (reflect-101) borders, times gain^2."""
    taps = _BINOMIAL * gain
    height, width = x.shape[1], x.shape[2]
    padded = jnp.pad(x, ((0, 0), (2, 2), (0, 0), (0, 0)), mode="reflect")
    x = sum(taps[k] * padded[:, k : k + height] for k in range(5))
    padded = jnp.pad(x, ((0, 0), (0, 0), (2, 2), (0, 0)), mode="reflect")
    return sum(taps[k] * padded[:, :, k : k + width] for k in range(5))


def pyr_down(x: jax.Array) -> jax.Array:
    """Blur and keep every other pixel: [B, H, W, C] -> [B, H/2, W/2, C] (cv2.pyrDown)."""
    return _blur(x)[:, ::2, ::2]


def pyr_up(x: jax.Array) -> jax.Array:
    """Insert zeros between pixels and blur with gain 4: [B, H, W, C] -> [B, 2H, 2W, C] (cv2.pyrUp)."""
    batch, height, width, channels = x.shape
    up = jnp.zeros((batch, 2 * height, 2 * width, channels), x.dtype).at[:, ::2, ::2].set(x)
    return _blur(up, gain=2.0)


def laplacian_pyramid(images: jax.Array, num_levels: int) -> list[jax.Array]:
    """Laplacian pyramid of [B, H, W, C] float images, finest first; the last level is the low-pass residual."""
    levels = [images]
    for _ in range(1, num_levels):
        down = pyr_down(levels[-1])
        levels[-1] = levels[-1] - pyr_up(down)
        levels.append(down)
    return levels


def _to_float(images: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1]; floats are taken as already in [-1, 1]."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 127.5 - 1.0
    return images.astype(np.float32)


@functools.partial(jax.jit, static_argnames=("num_levels", "level", "patch_size"))
def _batch_descriptors(
    images: jax.Array, rows: jax.Array, cols: jax.Array, num_levels: int, level: int, patch_size: int
) -> jax.Array:
    """Patches of one pyramid level: images [B, H, W, 3], rows/cols [B, P] -> [B * P, k * k * 3]."""
    pyramid_level = laplacian_pyramid(images, num_levels)[level]  # XLA drops the unused levels
    offsets = jnp.arange(patch_size) - patch_size // 2
    batch_index = jnp.arange(images.shape[0])[:, None, None, None]
    r = (rows[:, :, None] + offsets)[:, :, :, None]  # [B, P, k, 1]
    c = (cols[:, :, None] + offsets)[:, :, None, :]  # [B, P, 1, k]
    patches = pyramid_level[batch_index, r, c]  # [B, P, k, k, 3]
    return patches.reshape(-1, patch_size * patch_size * pyramid_level.shape[-1])


@functools.partial(jax.jit, static_argnames=("channels",))
def _normalize(desc: jax.Array, channels: int) -> jax.Array:
    """Per-channel standardisation of [P, k * k * C] descriptors over all patches and pixels."""
    per_channel = desc.reshape(desc.shape[0], -1, channels)
    mean = per_channel.mean(axis=(0, 1))
    std = per_channel.std(axis=(0, 1))
    std = jnp.where(std > 0, std, 1.0)  # constant images: all-zero descriptors rather than NaN
    return ((per_channel - mean) / std).reshape(desc.shape)


def _sort_rows(x: jax.Array) -> jax.Array:
    """Sorts each row of a finite float32 [R, P] array ascending.

    The floats are sorted as order-preserving int32 keys with an unstable sort: the same values in the same
    order as `jnp.sort`, but several times faster on XLA:CPU, whose float comparator handles NaN orderings.
    """
    bits = jax.lax.bitcast_convert_type(x, jnp.int32)
    keys = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: flip the magnitude bits so order reverses
    keys = jax.lax.sort(keys, dimension=1, is_stable=False)
    return jax.lax.bitcast_convert_type(keys ^ ((keys >> 31) & 0x7FFFFFFF), jnp.float32)


@functools.partial(jax.jit, static_argnames=("num_dirs",))
def _sliced_wasserstein(desc_a: jax.Array, desc_b: jax.Array, key: jax.Array, num_dirs: int) -> jax.Array:
    """Mean over `num_dirs` random unit directions of the 1-D W1 distance between projected descriptors."""
    dirs = jax.random.normal(key, (desc_a.shape[1], num_dirs), jnp.float32)
    dirs = dirs / jnp.sqrt(jnp.sum(jnp.square(dirs), axis=0, keepdims=True))
    proj_a = _sort_rows((desc_a @ dirs).T)  # [dirs, P]
    proj_b = _sort_rows((desc_b @ dirs).T)
    return jnp.mean(jnp.mean(jnp.abs(proj_a - proj_b), axis=-1))


def _descriptors(
    images: Any,
    rows: np.ndarray,
    cols: np.ndarray,
    num_levels: int,
    level: int,
    patch_size: int,
    batch_size: int,
) -> np.ndarray:
    """One level's descriptors of all images, batch by batch: rows/cols [N, P] -> [N * P, k * k * 3] float32."""
    num_images, per_image = rows.shape
    out = np.empty((num_images * per_image, patch_size * patch_size * images.shape[-1]), np.float32)
    for begin in range(0, num_images, batch_size):
        end = min(begin + batch_size, num_images)
        batch = _to_float(np.asarray(images[begin:end]))
        r, c = rows[begin:end], cols[begin:end]
        pad = batch_size - (end - begin)
        if pad:  # keep one compiled shape; the padding rows are dropped below
            batch = np.concatenate([batch, np.zeros((pad,) + batch.shape[1:], batch.dtype)])
            r = np.concatenate([r, np.full((pad, per_image), patch_size // 2, r.dtype)])
            c = np.concatenate([c, np.full((pad, per_image), patch_size // 2, c.dtype)])
        desc = _batch_descriptors(batch, r, c, num_levels=num_levels, level=level, patch_size=patch_size)
        out[begin * per_image : end * per_image] = np.asarray(desc)[: (end - begin) * per_image]
    return out


def resolutions(image_size: int, min_resolution: int = 16) -> list[int]:
    """The pyramid's level sizes: image_size, image_size / 2, ... while >= min_resolution."""
    sizes = []
    size = image_size
    while size >= min_resolution:
        sizes.append(size)
        if size % 2:
            break
        size //= 2
    return sizes


def swd(
    images_a: Any,
    images_b: Any,
    seed: int = 0,
    patches_per_image: int = 128,
    patch_size: int = 7,
    dir_repeats: int = 4,
    dirs_per_repeat: int = 128,
    min_resolution: int = 16,
    batch_size: int = 250,
) -> dict[str, float]:
    """Multi-scale sliced Wasserstein distance between two image sets (x1e3, per level and mean).

    Args:
        images_a: [N, H, W, 3] uint8 in [0, 255] or float in [-1, 1] (numpy, memmap or JAX), H == W.
        images_b: the other set, same shape.
        seed: seed of the patch positions and projection directions.
        patches_per_image: random patches taken per image and level (128 in the reference).
        patch_size: patch side (7 in the reference).
        dir_repeats: repeats of the random projection (4 in the reference).
        dirs_per_repeat: directions per repeat (128 in the reference).
        min_resolution: the coarsest level's minimum size (16 in the reference).
        batch_size: images per pyramid batch (memory only; the result does not depend on it).

    Returns:
        {"swd/<size>": distance x1e3 for each level size, finest first, ..., "swd/mean": their mean}.

    Raises:
        ValueError: on sets of different shapes, non-square or too small images, or sizes that do not halve
            evenly down to the coarsest level.
    """
    if not hasattr(images_a, "shape") or not hasattr(images_b, "shape"):
        raise ValueError("images must be arrays [N, H, W, 3]")
    shape = tuple(images_a.shape)
    if shape != tuple(images_b.shape):
        raise ValueError(f"both image sets must have the same shape, got {shape} and {tuple(images_b.shape)}")
    if len(shape) != 4 or shape[-1] != 3 or shape[1] != shape[2] or shape[0] < 1:
        raise ValueError(f"images must be [N, S, S, 3], got {shape}")
    for images in (images_a, images_b):
        if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"images must be uint8 in [0, 255] or float in [-1, 1], got dtype {images.dtype}")
    sizes = resolutions(shape[1], min_resolution)
    if not sizes:
        raise ValueError(f"images of {shape[1]} px are smaller than min_resolution={min_resolution}")
    if sizes[-1] * 2 ** (len(sizes) - 1) != shape[1] or sizes[-1] < patch_size:
        raise ValueError(f"image size {shape[1]} must halve evenly to levels >= {max(min_resolution, patch_size)}")
    num_images, num_levels, half = shape[0], len(sizes), patch_size // 2

    key_pos, key_dirs = jax.random.split(jax.random.key(seed))
    result = {}
    for level, size in enumerate(sizes):  # one level at a time: only its descriptors are held
        key_rows, key_cols = jax.random.split(jax.random.fold_in(key_pos, level))
        rows = np.asarray(jax.random.randint(key_rows, (num_images, patches_per_image), half, size - half))
        cols = np.asarray(jax.random.randint(key_cols, (num_images, patches_per_image), half, size - half))
        a, b = (
            _normalize(_descriptors(images, rows, cols, num_levels, level, patch_size, batch_size), channels=shape[-1])
            for images in (images_a, images_b)
        )
        level_key = jax.random.fold_in(key_dirs, level)
        dists = [
            float(_sliced_wasserstein(a, b, jax.random.fold_in(level_key, r), num_dirs=dirs_per_repeat))
            for r in range(dir_repeats)
        ]
        result[f"swd/{size}"] = float(np.mean(dists)) * 1e3
    result["swd/mean"] = float(np.mean([result[f"swd/{size}"] for size in sizes]))
    return result
