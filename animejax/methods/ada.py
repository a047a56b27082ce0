"""Adaptive discriminator augmentation (ADA, Karras et al. 2020) in pure JAX.

The augmentation pipeline of "Training Generative Adversarial Networks with
Limited Data" (NVlabs/stylegan2-ada-pytorch, training/augment.py), with its
default strengths, for float images [B, H, W, C] in [-1, 1]. Each transform is
applied to each image with probability `p` (times the transform's multiplier
in `AugmentSpec`); `p` may be traced, so one compiled function serves every
value, and p = 0 returns the input bit for bit. The pipelines are named by
letters as in the reference's train.py: "b" (blit: xflip, rotate90, xint),
"g" (geom: scale, rotate, aniso, xfrac), "c" (color: brightness, contrast,
lumaflip, hue, saturation), combined as "bg", "bgc", ...

As in the reference, the geometric transforms of an image compose into one
inverse 3x3 affine matrix (output pixel -> input pixel, in pixel coordinates
centred on the image) and the colour transforms into one 4x4 matrix acting on
(r, g, b, 1); the image is resampled once, then recoloured.

Resampling here is bilinear, reading the image as padded by reflection
(numpy's / torch's 'reflect', the edge pixel not repeated) as far as needed,
where the reference upsamples 2x with a Symlet-6 wavelet, samples bilinearly
and downsamples back. The reasons: with JAX's static shapes the reference's
padding (sized from the whole batch at run time) must be its maximum, W - 1
a side, and it samples a 2(W + 6) grid: for 64 px images that is 140 px, and
our bilinear warp's gradient at 140 px takes ~9x its time at 64 px on
XLA:CPU, before the reference's filtering. And Symlet-6 is not symmetric,
so its round trip does not commute with flips: xflip and rotate90 would be
approximate, where here the blit transforms are exact (their matrices are
exact integers, so they sample at whole pixels). The cost is more blur at fractional shifts and some aliasing
when zooming out (scale std 0.2 in log2, so rarely beyond 1.5x), alike for
real and generated images. Beyond the reference's largest padding this
reflects on instead of filling with zeros.

`AdaState` with `accumulate` and `adjust` is the reference's heuristic for p
(training_loop.py): r_t = E[sign(D(real))] over an interval, p moved by
sign(r_t - target) * images per interval / (speed_kimg * 1000).
"""

from __future__ import annotations

import dataclasses
import math

import flax.struct
import jax
import jax.numpy as jnp

from animejax.errors import ConfigError

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
TRANSFORMS = GEOMETRIC + COLOR
PIPELINE_LETTERS = {
    "b": ("xflip", "rotate90", "xint"),
    "g": ("scale", "rotate", "aniso", "xfrac"),
    "c": COLOR,
}
_PIPELINE_NAMES = {"blit": "b", "geom": "g", "color": "c"}  # The reference's names of the single groups.
# A batch's random numbers are one uniform draw [B, 28] of fixed layout: a transform's columns do not depend on which
# others are enabled, and XLA compiles one generator, not 26. The normals are its last columns through erfinv.
_COINS = ("xflip", "rotate90", "xint", "scale", "rotate_pre", "aniso", "rotate_post", "xfrac") + COLOR
_UNIFORMS = ("xflip", "rotate90", "xint_x", "xint_y", "rotate_pre", "rotate_post", "lumaflip", "hue")
_NORMALS = ("scale", "aniso", "xfrac_x", "xfrac_y", "brightness", "contrast", "saturation")


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
    """Per-transform probability multipliers (0 = off, 1 = with probability p) and strengths.

    The strengths are the reference's defaults: xint_max and xfrac_std are fractions of the image size,
    scale_std, aniso_std, contrast_std and saturation_std are standard deviations in log2, rotate_max and
    hue_max fractions of a half turn either way (1 = any angle), brightness_std an offset in the [-1, 1] range.
    Hashable, so it can be a static argument of `jax.jit`.
    """

    xflip: float = 0.0
    rotate90: float = 0.0
    xint: float = 0.0
    scale: float = 0.0
    rotate: float = 0.0
    aniso: float = 0.0
    xfrac: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    lumaflip: float = 0.0
    hue: float = 0.0
    saturation: float = 0.0
    xint_max: float = 0.125
    scale_std: float = 0.2
    rotate_max: float = 1.0
    aniso_std: float = 0.2
    xfrac_std: float = 0.125
    brightness_std: float = 0.2
    contrast_std: float = 0.5
    hue_max: float = 1.0
    saturation_std: float = 1.0

    def enabled(self, names: tuple[str, ...] = TRANSFORMS) -> tuple[str, ...]:
        """The transforms of `names` with a positive multiplier, in pipeline order."""
        return tuple(name for name in names if getattr(self, name) > 0)


def parse_pipeline(spec: str) -> AugmentSpec:
    """'bgc' -> AugmentSpec with those groups' transforms at multiplier 1.

    Args:
      spec: letters from b (blit), g (geom), c (color), each at most once and in any order ('bgc', 'bg',
        'c', ...), or one of the reference's names 'blit', 'geom', 'color'; '' enables nothing.

    Raises:
      ConfigError: an unknown or repeated letter.
    """
    letters = _PIPELINE_NAMES.get(spec.strip(), spec.strip())
    unknown = sorted({letter for letter in letters if letter not in PIPELINE_LETTERS})
    if unknown:
        valid = "; ".join(f"{letter} ({', '.join(names)})" for letter, names in PIPELINE_LETTERS.items())
        raise ConfigError(
            f"Unknown ADA pipeline letter(s) {', '.join(map(repr, unknown))} in {spec!r}; "
            f"combine the letters {valid}, e.g. 'bgc'."
        )
    repeated = sorted({letter for letter in letters if letters.count(letter) > 1})
    if repeated:
        raise ConfigError(f"ADA pipeline {spec!r} repeats {', '.join(map(repr, repeated))}; name each letter once.")
    return AugmentSpec(**{name: 1.0 for letter in letters for name in PIPELINE_LETTERS[letter]})


@flax.struct.dataclass
class Transforms:
    """The transforms drawn for one batch.

    Attributes:
      geometric: [B, 3, 3] inverse affine matrices, output pixel -> input pixel, in pixel coordinates whose
        origin is the image centre ((W - 1) / 2, (H - 1) / 2), x along the width and y along the height.
      geometric_active: [B] bool, whether any geometric transform was drawn for the image.
      color: [B, 4, 4] matrices acting on (r, g, b, 1) after resampling.
      color_active: [B] bool, whether any colour transform was drawn for the image.
      params: per enabled transform, its drawn value per image, the identity's where it was not applied:
        'xflip' and 'lumaflip' [B] in {0, 1}; 'rotate90' [B] quarter turns in {0, 1, 2, 3}; 'xint' and
        'xfrac' [B, 2] (x, y) shifts in pixels; 'scale', 'aniso', 'contrast', 'saturation' [B] factors;
        'rotate_pre', 'rotate_post', 'hue' [B] angles in radians; 'brightness' [B] offsets.
    """

    geometric: jax.Array
    geometric_active: jax.Array
    color: jax.Array
    color_active: jax.Array
    params: dict[str, jax.Array]


def _stack(rows: list[list[jax.Array | float]], like: jax.Array) -> jax.Array:
    """Per-image matrices [B, R, C] from rows of [B] arrays or constants."""
    return jnp.stack(
        [jnp.stack([jnp.broadcast_to(jnp.asarray(x, like.dtype), like.shape) for x in row], -1) for row in rows], -2
    )


def _translate2d(tx, ty):
    return _stack([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def _scale2d(sx, sy):
    return _stack([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def _rotate2d(cos, sin):
    return _stack([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], cos)


def _translate3d(t):
    return _stack([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], t)


def _scale3d(s):
    return _stack([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], s)


def _rotate3d(v, theta):
    """Rotation by theta about the unit axis v (3 components), per image: [B, 4, 4]."""
    vx, vy, vz = v[0], v[1], v[2]
    s, c = jnp.sin(theta), jnp.cos(theta)
    cc = 1 - c
    return _stack(
        [
            [vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
            [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
            [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
            [0, 0, 0, 1],
        ],
        theta,
    )


def sample_transforms(
    rng: jax.Array,
    p: float | jax.Array,
    spec: AugmentSpec,
    shape: tuple[int, ...],
    dtype: jnp.dtype = jnp.float32,
) -> Transforms:
    """Draws each enabled transform per image with probability multiplier * p, as the reference does.

    Args:
      rng: PRNG key.
      p: the overall probability, a float or a traced scalar in [0, 1].
      spec: which transforms, and their strengths.
      shape: the images' shape (B, H, W, C).
      dtype: of the matrices and parameters (the draws themselves are float32 whatever it is).

    Returns:
      The batch's `Transforms`.
    """
    batch, height, width, channels = shape
    p = jnp.asarray(p, jnp.float32)
    params, applied = {}, {"geometric": [], "color": []}
    draws = jax.random.uniform(rng, (batch, len(_COINS) + len(_UNIFORMS) + len(_NORMALS)), jnp.float32)
    coins, uniforms, normals = jnp.split(draws, [len(_COINS), len(_COINS) + len(_UNIFORMS)], axis=1)
    # N(0, 1) as jax.random.normal makes it, from U(-1, 1) without the -1.
    normals = math.sqrt(2) * jax.lax.erf_inv(jnp.maximum(2 * normals - 1, jnp.nextafter(jnp.float32(-1), 0)))
    uniforms, normals = uniforms.astype(dtype), normals.astype(dtype)

    def columns(draws, layout, names):
        """[B] for one name, [B, len(names)] for several."""
        picked = draws[:, [layout.index(name) for name in names]]
        return picked[:, 0] if len(names) == 1 else picked

    def uniform(*names):
        return columns(uniforms, _UNIFORMS, names)

    def normal(*names):
        return columns(normals, _NORMALS, names)

    def maybe(name, value, identity, probability):
        """`value` for the images whose coin for `name` falls below `probability`, `identity` for the others."""
        hit = coins[:, _COINS.index(name)] < probability
        applied["color" if name in COLOR else "geometric"].append(hit)
        return jnp.where(hit.reshape((batch,) + (1,) * (value.ndim - 1)), value, identity)

    # Pixel blitting. These matrices are exact integers, so these transforms alone sample at whole pixels.
    g_inv = jnp.broadcast_to(jnp.eye(3, dtype=dtype), (batch, 3, 3))
    if spec.xflip > 0:
        i = params["xflip"] = maybe("xflip", jnp.floor(uniform("xflip") * 2), 0, spec.xflip * p)
        g_inv = g_inv @ _scale2d(1 - 2 * i, jnp.ones_like(i))
    if spec.rotate90 > 0:
        i = params["rotate90"] = maybe("rotate90", jnp.floor(uniform("rotate90") * 4), 0, spec.rotate90 * p)
        quarter = jnp.clip(i.astype(jnp.int32), 0, 3)  # cos and sin of pi/2 * i without rounding error.
        cos, sin = jnp.asarray([1, 0, -1, 0], dtype)[quarter], jnp.asarray([0, 1, 0, -1], dtype)[quarter]
        g_inv = g_inv @ _rotate2d(cos, sin)
    if spec.xint > 0:
        t = maybe("xint", (uniform("xint_x", "xint_y") * 2 - 1) * spec.xint_max, 0, spec.xint * p)
        t = params["xint"] = jnp.round(t * jnp.asarray([width, height], dtype))
        g_inv = g_inv @ _translate2d(-t[:, 0], -t[:, 1])

    # General geometric transforms. The matrices are the inverses of the reference's *_inv ones.
    if spec.scale > 0:
        s = params["scale"] = maybe("scale", jnp.exp2(normal("scale") * spec.scale_std), 1, spec.scale * p)
        g_inv = g_inv @ _scale2d(1 / s, 1 / s)
    # Rotations before and after the anisotropic scaling, each with p_rot, so that P(pre or post) = p.
    p_rot = 1 - jnp.sqrt(jnp.clip(1 - spec.rotate * p, 0, 1))
    if spec.rotate > 0:
        theta = (uniform("rotate_pre") * 2 - 1) * math.pi * spec.rotate_max
        theta = params["rotate_pre"] = maybe("rotate_pre", theta, 0, p_rot)
        g_inv = g_inv @ _rotate2d(jnp.cos(theta), jnp.sin(theta))
    if spec.aniso > 0:
        s = params["aniso"] = maybe("aniso", jnp.exp2(normal("aniso") * spec.aniso_std), 1, spec.aniso * p)
        g_inv = g_inv @ _scale2d(1 / s, s)
    if spec.rotate > 0:
        theta = (uniform("rotate_post") * 2 - 1) * math.pi * spec.rotate_max
        theta = params["rotate_post"] = maybe("rotate_post", theta, 0, p_rot)
        g_inv = g_inv @ _rotate2d(jnp.cos(theta), jnp.sin(theta))
    if spec.xfrac > 0:
        t = maybe("xfrac", normal("xfrac_x", "xfrac_y") * spec.xfrac_std, 0, spec.xfrac * p)
        t = params["xfrac"] = t * jnp.asarray([width, height], dtype)
        g_inv = g_inv @ _translate2d(-t[:, 0], -t[:, 1])

    # Colour: each matrix multiplies C on the left, C acting on (r, g, b, 1).
    eye4 = jnp.eye(4, dtype=dtype)
    color = jnp.broadcast_to(eye4, (batch, 4, 4))
    luma = jnp.asarray([1, 1, 1, 0], dtype) / math.sqrt(3)
    luma_outer = jnp.outer(luma, luma)
    if spec.brightness > 0:
        b = maybe("brightness", normal("brightness") * spec.brightness_std, 0, spec.brightness * p)
        params["brightness"] = b
        color = _translate3d(b) @ color
    if spec.contrast > 0:
        c = maybe("contrast", jnp.exp2(normal("contrast") * spec.contrast_std), 1, spec.contrast * p)
        params["contrast"] = c
        color = _scale3d(c) @ color
    if spec.lumaflip > 0:
        i = params["lumaflip"] = maybe("lumaflip", jnp.floor(uniform("lumaflip") * 2), 0, spec.lumaflip * p)
        color = (eye4 - 2 * luma_outer * i[:, None, None]) @ color  # Householder reflection of the luma axis.
    if spec.hue > 0 and channels > 1:
        theta = params["hue"] = maybe("hue", (uniform("hue") * 2 - 1) * math.pi * spec.hue_max, 0, spec.hue * p)
        color = _rotate3d(luma, theta) @ color
    if spec.saturation > 0 and channels > 1:
        s = maybe("saturation", jnp.exp2(normal("saturation") * spec.saturation_std), 1, spec.saturation * p)
        params["saturation"] = s
        color = (luma_outer + (eye4 - luma_outer) * s[:, None, None]) @ color

    def any_of(flags):
        return jnp.any(jnp.stack(flags), axis=0) if flags else jnp.zeros((batch,), bool)

    return Transforms(g_inv, any_of(applied["geometric"]), color, any_of(applied["color"]), params)


def _reflect(index: jax.Array, size: int) -> jax.Array:
    """Integer indices into a line of `size` pixels padded by reflection without end, edge not repeated."""
    if size == 1:
        return jnp.zeros_like(index)
    period = 2 * (size - 1)
    index = jnp.mod(index, period)
    return jnp.where(index >= size, period - index, index)


def warp(images: jax.Array, g_inv: jax.Array) -> jax.Array:
    """Resamples each image bilinearly at g_inv @ (output pixel), reading outside the image by reflection.

    Args:
      images: [B, H, W, C].
      g_inv: [B, 3, 3] affine matrices (last row 0, 0, 1), output pixel -> input pixel, in coordinates centred
        on the image: pixel (row y, column x) is at (x - (W - 1) / 2, y - (H - 1) / 2).

    Returns:
      [B, H, W, C], linear (so differentiable) in `images`.
    """
    batch, height, width, channels = images.shape
    dtype = jnp.promote_types(images.dtype, jnp.float32)
    g_inv = g_inv.astype(dtype)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    y, x = jnp.meshgrid(jnp.arange(height, dtype=dtype) - cy, jnp.arange(width, dtype=dtype) - cx, indexing="ij")

    def entry(row, col):
        return g_inv[:, row, col, None, None]

    x_in = entry(0, 0) * x + entry(0, 1) * y + entry(0, 2) + cx
    y_in = entry(1, 0) * x + entry(1, 1) * y + entry(1, 2) + cy
    x0, y0 = jnp.floor(x_in), jnp.floor(y_in)
    fx, fy = (x_in - x0)[..., None], (y_in - y0)[..., None]
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    cols = _reflect(x0, width), _reflect(x0 + 1, width)
    rows = _reflect(y0, height), _reflect(y0 + 1, height)
    flat = images.astype(dtype).reshape(batch, height * width, channels)
    # Per-image gathers of whole pixels (C values each), batched by vmap so a batch-sharded input stays sharded.
    take = jax.vmap(lambda image, index: image[index.reshape(-1)].reshape(height, width, channels))

    def tap(row, col):
        return take(flat, row * width + col)

    top = tap(rows[0], cols[0]) * (1 - fx) + tap(rows[0], cols[1]) * fx
    bottom = tap(rows[1], cols[0]) * (1 - fx) + tap(rows[1], cols[1]) * fx
    return (top * (1 - fy) + bottom * fy).astype(images.dtype)


def recolor(images: jax.Array, color: jax.Array) -> jax.Array:
    """Applies [B, 4, 4] colour matrices to RGB images as (r, g, b, 1), or their row mean to grey ones.

    Args:
      images: [B, H, W, C], C = 3 or 1.
      color: [B, 4, 4].

    Returns:
      [B, H, W, C].
    """
    channels = images.shape[-1]
    dtype = jnp.promote_types(images.dtype, jnp.float32)
    color, x = color.astype(dtype), images.astype(dtype)
    if channels == 3:
        # Written out per input channel: XLA:CPU fuses this into one loop, ~10x faster than a batched 3x3 dot.
        m = color[:, None, None, :3, :]
        out = x[..., 0:1] * m[..., 0] + x[..., 1:2] * m[..., 1] + x[..., 2:3] * m[..., 2] + m[..., 3]
    elif channels == 1:
        grey = jnp.mean(color[:, :3, :], axis=1)  # [B, 4]: the reference's mean of the three output rows.
        out = x * jnp.sum(grey[:, :3], axis=-1)[:, None, None, None] + grey[:, None, None, 3:]
    else:
        raise ValueError(f"ADA colour transforms need RGB (3 channels) or grey (1 channel) images, got {channels}.")
    return out.astype(images.dtype)


def apply_transforms(images: jax.Array, transforms: Transforms) -> jax.Array:
    """Resamples, then recolours, each image; an image with no transform drawn in a stage passes it unchanged.

    Args:
      images: [B, H, W, C].
      transforms: from `sample_transforms` for this shape.

    Returns:
      [B, H, W, C], differentiable in `images`.
    """
    if transforms.params.keys() - set(COLOR):
        warped = warp(images, transforms.geometric)
        images = jnp.where(transforms.geometric_active[:, None, None, None], warped, images)
    if transforms.params.keys() & set(COLOR):
        recolored = recolor(images, transforms.color)
        images = jnp.where(transforms.color_active[:, None, None, None], recolored, images)
    return images


def augment(images: jax.Array, rng: jax.Array, p: float | jax.Array, spec: AugmentSpec | str) -> jax.Array:
    """The ADA pipeline: each enabled transform applied to each image with probability multiplier * p.

    Args:
      images: [B, H, W, C] float in [-1, 1], C = 3 or 1 (with C = 1 hue and saturation are skipped).
      rng: PRNG key.
      p: augmentation probability, a float or traced scalar in [0, 1]; 0 returns `images` bit for bit.
      spec: an `AugmentSpec`, or a pipeline name for `parse_pipeline` ('bgc', ...); static under jit.

    Returns:
      [B, H, W, C], differentiable in `images`.
    """
    if isinstance(spec, str):
        spec = parse_pipeline(spec)
    transforms = sample_transforms(rng, p, spec, images.shape, jnp.promote_types(images.dtype, jnp.float32))
    return apply_transforms(images, transforms)


@flax.struct.dataclass
class AdaState:
    """The augmentation probability and the real-logit sign statistics accumulated since the last adjustment.

    Attributes:
      p: float32 scalar, the current augmentation probability.
      sign_sum: float32 scalar, the sum of sign(D(real)) over the logits accumulated.
      count: float32 scalar, how many real logits were accumulated.
    """

    p: jax.Array
    sign_sum: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, p: float = 0.0) -> AdaState:
        """A state at probability p with empty accumulators."""
        return cls(jnp.float32(p), jnp.float32(0), jnp.float32(0))


def accumulate(ada_state: AdaState, real_logits: jax.Array) -> AdaState:
    """Adds sign(D(real)) of a batch of real logits (any shape) to the accumulators."""
    signs = jnp.sign(real_logits.astype(jnp.float32))
    return ada_state.replace(
        sign_sum=ada_state.sign_sum + jnp.sum(signs), count=ada_state.count + jnp.float32(real_logits.size)
    )


def adjust(
    ada_state: AdaState,
    target: float = 0.6,
    *,
    batch_images: int | jax.Array,
    interval: int | jax.Array,
    speed_kimg: float = 500.0,
) -> AdaState:
    """The reference's ADA step: p += sign(r_t - target) * batch_images * interval / (speed_kimg * 1000).

    r_t = sign_sum / count, the mean sign of the real logits accumulated since the last call; the accumulators
    are then reset. p is clipped to [0, 1] (the reference clips at 0 only; above 1 it would only change how long
    p takes to come back down). With nothing accumulated p is left as it is. Pure and jit-able.

    Args:
      ada_state: the current state.
      target: the r_t that p is steered to.
      batch_images: images per step (the global batch).
      interval: steps since the last adjustment, the steps the accumulators cover.
      speed_kimg: thousands of images for p to move by 1.

    Returns:
      The adjusted state, its accumulators zero.
    """
    r_t = ada_state.sign_sum / jnp.maximum(ada_state.count, 1)
    step = jnp.asarray(batch_images, jnp.float32) * jnp.asarray(interval, jnp.float32) / jnp.float32(speed_kimg * 1000)
    step = jnp.where(ada_state.count > 0, jnp.sign(r_t - jnp.float32(target)) * step, 0)
    p = jnp.clip(ada_state.p + step, 0, 1).astype(jnp.float32)
    return AdaState(p, jnp.zeros_like(ada_state.sign_sum), jnp.zeros_like(ada_state.count))
