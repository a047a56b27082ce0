"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) in pure JAX.

The same random transforms are applied to every image the discriminator sees,
real and generated, and the generator's gradient flows through them, so D
cannot overfit a small set without G learning the augmentations. A policy is
a comma-separated list of:

- "color": brightness (add U[-0.5, 0.5)), saturation (scale the deviation from
  the per-pixel channel mean by U[0, 2)), contrast (scale the deviation from
  the per-image mean by U[0.5, 1.5)), each drawn per image;
- "translation": shift by a whole number of pixels in [-S/8, S/8] on each axis
  per image, filling with zeros;
- "cutout": zero one square of side S/2 at a random centre per image.

Images are float [B, H, W, C] in [-1, 1], as the model sees them; the
transforms are those of the authors' PyTorch code (DiffAugment_pytorch.py),
where the zero fill is mid-grey.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from animejax.errors import ConfigError

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _per_image(rng: jax.Array, images: jax.Array, low: float, high: float) -> jax.Array:
    return jax.random.uniform(rng, (images.shape[0], 1, 1, 1), images.dtype, low, high)


def color(images: jax.Array, rng: jax.Array) -> jax.Array:
    """Random brightness, then saturation, then contrast, per image. [B, H, W, C] -> same."""
    brightness_rng, saturation_rng, contrast_rng = jax.random.split(rng, 3)
    x = images + _per_image(brightness_rng, images, -0.5, 0.5)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    x = (x - mean) * _per_image(saturation_rng, images, 0.0, 2.0) + mean
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    return (x - mean) * _per_image(contrast_rng, images, 0.5, 1.5) + mean


def translation(images: jax.Array, rng: jax.Array, ratio: float = TRANSLATION_RATIO) -> jax.Array:
    """Shifts each image by integers in [-round(ratio * size), +round(ratio * size)], zero-filled.

    Args:
      images: [B, H, W, C].
      rng: PRNG key.
      ratio: the largest shift as a fraction of the side.

    Returns:
      [B, H, W, C]: out[b, y, x] = images[b, y - dy_b, x - dx_b], or 0 outside the image.
    """
    batch, height, width, _ = images.shape
    shift_y, shift_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    y_rng, x_rng = jax.random.split(rng)
    dy = jax.random.randint(y_rng, (batch,), -shift_y, shift_y + 1)
    dx = jax.random.randint(x_rng, (batch,), -shift_x, shift_x + 1)
    padded = jnp.pad(images, ((0, 0), (shift_y, shift_y), (shift_x, shift_x), (0, 0)))

    def crop(image, oy, ox):
        return jax.lax.dynamic_slice(image, (shift_y - oy, shift_x - ox, 0), (height, width, image.shape[-1]))

    return jax.vmap(crop)(padded, dy, dx)


def cutout(images: jax.Array, rng: jax.Array, ratio: float = CUTOUT_RATIO) -> jax.Array:
    """Zeroes one square of side round(ratio * size) per image, centred uniformly (it may be clipped).

    Args:
      images: [B, H, W, C].
      rng: PRNG key.
      ratio: the square's side as a fraction of the image side.

    Returns:
      [B, H, W, C].
    """
    batch, height, width, _ = images.shape
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    y_rng, x_rng = jax.random.split(rng)
    top = jax.random.randint(y_rng, (batch, 1, 1), 0, height + (1 - size_y % 2)) - size_y // 2
    left = jax.random.randint(x_rng, (batch, 1, 1), 0, width + (1 - size_x % 2)) - size_x // 2
    rows = jnp.arange(height)[None, :, None]
    cols = jnp.arange(width)[None, None, :]
    inside = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)
    return images * (1.0 - inside[..., None].astype(images.dtype))


AUGMENTATIONS = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation,cutout' -> ('color', 'translation', 'cutout'); '' -> (); raises ConfigError on unknowns."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ConfigError(
            f"Unknown DiffAugment transform(s) {', '.join(unknown)} in {policy!r}; "
            f"use a comma-separated subset of {', '.join(AUGMENTATIONS)}."
        )
    return names


def diff_augment(images: jax.Array, rng: jax.Array, policy: str, probability: float | jax.Array = 1.0) -> jax.Array:
    """Applies the policy's transforms in order, each with its own key, each to an image with `probability`.

    Args:
      images: [B, H, W, C] float in [-1, 1].
      rng: PRNG key.
      policy: comma-separated names (see the module docstring); '' returns `images` unchanged.
      probability: chance that a transform is applied to an image, drawn per image and transform (adaptive
        schemes such as ADA raise it during training); 1 applies every transform to every image.

    Returns:
      [B, H, W, C], differentiable in `images`.
    """
    names = parse_policy(policy)
    always = isinstance(probability, (int, float)) and probability >= 1.0
    for name, key in zip(names, jax.random.split(rng, max(len(names), 1))):
        augmented = AUGMENTATIONS[name](images, key)
        if always:
            images = augmented
        else:  # A separate key for the coin, so p = 1 draws exactly what the transform alone draws.
            coin = jax.random.uniform(jax.random.fold_in(key, 1), (images.shape[0], 1, 1, 1)) < probability
            images = jnp.where(coin, augmented, images)
    return images
