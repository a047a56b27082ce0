"""DiffAugment (animejax/methods/augment.py) against numpy formulas with the same random draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animejax.methods import augment


def test_diffaugment_translation_and_cutout_follow_the_reference_formulas():
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.uniform(-1, 1, size=(6, 16, 16, 3)), jnp.float32)
    key = jax.random.PRNGKey(3)
    out = np.asarray(augment.translation(images, key))
    y_key, x_key = jax.random.split(key)
    dy = np.asarray(jax.random.randint(y_key, (6,), -2, 3))
    dx = np.asarray(jax.random.randint(x_key, (6,), -2, 3))
    expected = np.zeros_like(out)
    for b in range(6):
        for y in range(16):
            for x in range(16):
                sy, sx = y - dy[b], x - dx[b]
                if 0 <= sy < 16 and 0 <= sx < 16:
                    expected[b, y, x] = images[b, sy, sx]
    np.testing.assert_array_equal(out, expected)

    cut = np.asarray(augment.cutout(jnp.ones((64, 16, 16, 3)), jax.random.PRNGKey(4)))
    zeroed = (cut == 0).all(-1).reshape(64, -1).sum(-1)
    assert zeroed.max() == 64 and zeroed.min() >= 16  # An 8x8 square, clipped at the borders.


def test_diffaugment_cutout_follows_the_reference_formula():
    """An 8x8 zero square per 16 px image, its centre (top + 4, left + 4) drawn uniformly in [0, 16]: numpy mask."""
    images = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, size=(32, 16, 16, 3)), jnp.float32)
    key = jax.random.PRNGKey(4)
    out = np.asarray(augment.cutout(images, key))
    y_key, x_key = jax.random.split(key)
    top = np.asarray(jax.random.randint(y_key, (32, 1, 1), 0, 17))[:, 0, 0] - 4
    left = np.asarray(jax.random.randint(x_key, (32, 1, 1), 0, 17))[:, 0, 0] - 4
    expected = np.asarray(images).copy()
    for b in range(32):
        expected[b, max(top[b], 0) : max(top[b] + 8, 0), max(left[b], 0) : max(left[b] + 8, 0)] = 0.0
    np.testing.assert_array_equal(out, expected)


def test_diffaugment_color_follows_the_reference_formula():
    """Brightness + U[-0.5, 0.5), saturation x U[0, 2) about the pixel's channel mean, contrast x U[0.5, 1.5)
    about the image mean, one draw per image each, in float64 numpy."""
    images = np.random.default_rng(2).uniform(-1, 1, size=(5, 8, 8, 3)).astype(np.float32)
    key = jax.random.PRNGKey(6)
    out = np.asarray(augment.color(jnp.asarray(images), key))
    keys = jax.random.split(key, 3)
    draws = [
        np.asarray(jax.random.uniform(k, (5, 1, 1, 1), jnp.float32, low, high), np.float64)
        for k, (low, high) in zip(keys, ((-0.5, 0.5), (0.0, 2.0), (0.5, 1.5)))
    ]
    brightness, saturation, contrast = draws
    assert brightness.min() >= -0.5 and brightness.max() < 0.5
    x = images.astype(np.float64) + brightness
    pixel_mean = x.mean(axis=-1, keepdims=True)
    x = (x - pixel_mean) * saturation + pixel_mean
    image_mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - image_mean) * contrast + image_mean
    np.testing.assert_allclose(out, x, rtol=0, atol=1e-6)
    assert len(np.unique(np.round(saturation, 6))) == 5  # One draw per image, not one per batch.


def test_diffaugment_policy_is_differentiable_and_validated():
    images = jax.random.uniform(jax.random.PRNGKey(0), (4, 16, 16, 3), minval=-1, maxval=1)
    policy = "color,translation,cutout"
    out = augment.diff_augment(images, jax.random.PRNGKey(1), policy)
    assert out.shape == images.shape and not np.allclose(out, images)
    grad = jax.grad(lambda x: jnp.sum(augment.diff_augment(x, jax.random.PRNGKey(1), policy)))(images)
    assert np.isfinite(np.asarray(grad)).all() and float(jnp.abs(grad).sum()) > 0
    assert augment.diff_augment(images, jax.random.PRNGKey(1), "") is images
    with pytest.raises(ValueError, match="Unknown DiffAugment transform"):
        augment.parse_policy("color,zoom")


def test_diffaugment_probability_applies_each_transform_to_some_images_whole():
    images = jax.random.uniform(jax.random.PRNGKey(0), (64, 8, 8, 3), minval=-1, maxval=1)
    key = jax.random.PRNGKey(1)
    always = augment.diff_augment(images, key, "color")
    np.testing.assert_array_equal(augment.diff_augment(images, key, "color", 0.0), images)
    (color_key,) = jax.random.split(key, 1)  # One key per transform of the policy.
    np.testing.assert_array_equal(augment.diff_augment(images, key, "color", 1.0), augment.color(images, color_key))
    half = np.asarray(augment.diff_augment(images, key, "color", jnp.float32(0.5)))
    augmented = np.all(np.isclose(half, np.asarray(always)), axis=(1, 2, 3))
    untouched = np.all(half == np.asarray(images), axis=(1, 2, 3))
    assert np.all(augmented ^ untouched)  # Each image is either transformed whole or left as it was.
    assert 16 <= augmented.sum() <= 48  # About half of 64 (binomial: 5.3 standard deviations either side).
