"""ADA (animejax/methods/ada.py) against numpy implementations of the reference's transforms and heuristic."""

import functools
import math

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animejax import sharding
from animejax.errors import ConfigError
from animejax.methods import ada

SINGLE = {name: ada.AugmentSpec(**{name: 1.0}) for name in ada.TRANSFORMS}


def _images(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(dtype)


@functools.partial(jax.jit, static_argnames="spec")
def _augment(images, key, p, spec):
    """The pipeline's output, and the parameters it drew (from sample_transforms with the same arguments)."""
    params = ada.sample_transforms(key, p, spec, images.shape, images.dtype).params
    return ada.augment(images, key, p, spec), params


def _run(images, key, p, spec):
    out, params = _augment(jnp.asarray(images), key, p, spec)
    return np.asarray(out), {name: np.asarray(value, np.float64) for name, value in params.items()}


def _np_bilinear(image, g_inv):
    """Bilinear sampling of one [H, W, C] float64 image at g_inv @ (centred output pixel), padded by np.pad reflect."""
    height, width, _ = image.shape
    pad = 4 * max(height, width)
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    cx, cy = (width - 1) / 2, (height - 1) / 2
    out = np.zeros_like(image)
    for row in range(height):
        for col in range(width):
            x_in, y_in, _ = g_inv @ np.array([col - cx, row - cy, 1.0])
            x_in, y_in = x_in + cx + pad, y_in + cy + pad
            x0, y0 = int(np.floor(x_in)), int(np.floor(y_in))
            fx, fy = x_in - x0, y_in - y0
            out[row, col] = (
                padded[y0, x0] * (1 - fy) * (1 - fx)
                + padded[y0, x0 + 1] * (1 - fy) * fx
                + padded[y0 + 1, x0] * fy * (1 - fx)
                + padded[y0 + 1, x0 + 1] * fy * fx
            )
    return out


def _np_translate(tx, ty):
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]])


def _np_scale(sx, sy):
    return np.diag([sx, sy, 1.0])


def _np_rotate(theta):
    return np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1.0]])


def test_p0_is_the_identity_bit_for_bit():
    images = _images((8, 16, 16, 3))
    images[:, ::3, ::5] = -0.0  # x * 1 + 0 would turn these into +0.0.
    images = jnp.asarray(images)
    run = jax.jit(ada.augment, static_argnames="spec")
    for key in range(3):
        out = run(images, jax.random.PRNGKey(key), jnp.float32(0.0), "bgc")
        assert np.asarray(out).tobytes() == np.asarray(images).tobytes()
    assert not np.array_equal(run(images, jax.random.PRNGKey(0), jnp.float32(1.0), "bgc"), images)


def test_blit_transforms_match_numpy_exactly():
    """xflip, rotate90 (k quarter turns), integer translation with reflect padding, and the three composed."""
    shape = (32, 16, 16, 3)
    images = _images(shape)
    key = jax.random.PRNGKey(5)
    wide_xint = ada.AugmentSpec(xint=1.0, xint_max=0.5)  # Shifts of up to 8 of 16 pixels: deep reflections.

    def shifted(image, tx, ty):
        padded = np.pad(image, ((16, 16), (16, 16), (0, 0)), mode="reflect")
        return padded[16 - int(ty) : 32 - int(ty), 16 - int(tx) : 32 - int(tx)]

    def flipped(image, i):
        return image[:, ::-1] if i else image

    draws = {}
    for spec in (SINGLE["xflip"], SINGLE["rotate90"], SINGLE["xint"], wide_xint, ada.parse_pipeline("b")):
        out, params = _run(images, key, 1.0, spec)
        draws[spec] = params
        expected = []
        for b, image in enumerate(images):
            image = flipped(image, params["xflip"][b]) if "xflip" in params else image
            image = np.rot90(image, int(params["rotate90"][b]), axes=(0, 1)) if "rotate90" in params else image
            expected.append(shifted(image, *params["xint"][b]) if "xint" in params else image)
        np.testing.assert_array_equal(out, np.stack(expected))
    assert set(draws[SINGLE["xflip"]]["xflip"]) == {0, 1}
    assert set(draws[SINGLE["rotate90"]]["rotate90"]) == {0, 1, 2, 3}
    shifts = draws[wide_xint]["xint"]
    assert shifts.min() < -4 and shifts.max() > 4 and np.all(shifts == np.round(shifts))


def test_geometric_pipeline_matches_numpy_bilinear_resampling_of_the_composed_matrix():
    """'g' at p = 1: scale, pre-rotation, anisotropic scaling, post-rotation, fractional translation, composed as
    the reference composes its inverse matrices, then bilinear sampling with reflection in float64 numpy."""
    shape = (6, 12, 12, 3)
    images = _images(shape, seed=1)
    key = jax.random.PRNGKey(2)
    spec = ada.parse_pipeline("g")
    out, params = _run(images, key, 1.0, spec)
    for b in range(shape[0]):
        s, a = params["scale"][b], params["aniso"][b]
        g_inv = (
            _np_scale(1 / s, 1 / s)
            @ _np_rotate(params["rotate_pre"][b])
            @ _np_scale(1 / a, a)
            @ _np_rotate(params["rotate_post"][b])
            @ _np_translate(-params["xfrac"][b, 0], -params["xfrac"][b, 1])
        )
        np.testing.assert_allclose(out[b], _np_bilinear(images[b].astype(np.float64), g_inv), rtol=0, atol=2e-5)
    assert np.all(params["scale"] != 1) and np.all(np.abs(params["xfrac"]) > 0)


def test_warp_matches_numpy_bilinear_for_known_translations_and_rotations():
    images = _images((4, 10, 14, 3), seed=3)
    matrices = np.stack(
        [
            _np_translate(0.3, -1.7),  # Fractional shift, reading past the top edge.
            _np_rotate(0.4),
            _np_rotate(-2.0) @ _np_translate(4.25, 0.5),
            _np_scale(1.6, 0.7) @ _np_rotate(1.0),  # Zoom out: reflections beyond the image on all sides.
        ]
    )
    out = np.asarray(jax.jit(ada.warp)(jnp.asarray(images), jnp.asarray(matrices, jnp.float32)))
    with jax.enable_x64(True):
        out64 = np.asarray(jax.jit(ada.warp)(jnp.asarray(images, jnp.float64), jnp.asarray(matrices)))
    for b in range(4):
        expected = _np_bilinear(images[b].astype(np.float64), matrices[b])
        np.testing.assert_allclose(out[b], expected, rtol=0, atol=2e-5)
        np.testing.assert_allclose(out64[b], expected, rtol=0, atol=1e-12)
    assert np.abs(out[0] - images[0]).max() > 0.1  # The shifts do move the image.


def _np_color_matrix(params, b):
    """The reference's 4x4 colour matrix of image b, from the drawn parameters, in float64."""
    v = np.array([1, 1, 1, 0]) / np.sqrt(3)
    vv = np.outer(v, v)
    cross = np.array([[0, -v[2], v[1], 0], [v[2], 0, -v[0], 0], [-v[1], v[0], 0, 0], [0, 0, 0, 0]])
    matrix = np.eye(4)
    if "brightness" in params:
        matrix[:3, 3] = params["brightness"][b]
    if "contrast" in params:
        matrix = np.diag([params["contrast"][b]] * 3 + [1.0]) @ matrix
    if "lumaflip" in params:
        matrix = (np.eye(4) - 2 * params["lumaflip"][b] * vv) @ matrix
    if "hue" in params:
        theta = params["hue"][b]
        rotation = np.cos(theta) * (np.eye(4) - vv) + vv + np.sin(theta) * cross  # Rodrigues about the luma axis.
        rotation[3, 3] = 1.0
        matrix = rotation @ matrix
    if "saturation" in params:
        matrix = (vv + (np.eye(4) - vv) * params["saturation"][b]) @ matrix
    return matrix


def test_color_transforms_match_numpy_4x4_matrix_in_float64():
    shape = (16, 6, 6, 3)
    images = _images(shape, seed=4, dtype=np.float64)
    key = jax.random.PRNGKey(7)
    with jax.enable_x64(True):
        out, params = _run(images, key, 1.0, ada.parse_pipeline("c"))
        assert out.dtype == np.float64 and set(params) == set(ada.COLOR)
        for b in range(shape[0]):
            matrix = _np_color_matrix(params, b)
            np.testing.assert_allclose(out[b], images[b] @ matrix[:3, :3].T + matrix[:3, 3], rtol=0, atol=1e-12)
        # Grey images: hue and saturation are skipped, the others act through the mean of the matrix's rows.
        grey = images[..., :1]
        out, params = _run(grey, key, 1.0, ada.parse_pipeline("c"))
        assert set(params) == {"brightness", "contrast", "lumaflip"}
        for b in range(shape[0]):
            rows = _np_color_matrix(params, b)[:3].mean(axis=0)
            np.testing.assert_allclose(out[b], grey[b] * rows[:3].sum() + rows[3], rtol=0, atol=1e-12)
    out, params = _run(images.astype(np.float32), key, 1.0, ada.parse_pipeline("c"))
    assert set(params["lumaflip"]) == {0, 1} and np.all(params["saturation"] != 1) and np.all(params["hue"] != 0)
    for b in range(shape[0]):
        matrix = _np_color_matrix(params, b)
        expected = images[b] @ matrix[:3, :3].T + matrix[:3, 3]
        np.testing.assert_allclose(out[b], expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_drawn_parameters_follow_the_reference_distributions():
    """p = 1, 'bgc', 4096 images of 32 px: ranges and moments of each transform's parameter (5 standard errors)."""
    batch, size = 4096, 32
    sample = jax.jit(ada.sample_transforms, static_argnums=(2, 3))
    transforms = sample(jax.random.PRNGKey(12), 1.0, ada.parse_pipeline("bgc"), (batch, size, size, 3))
    params = {name: np.asarray(value, np.float64) for name, value in transforms.params.items()}
    normal_tolerance = 5 / math.sqrt(batch)

    def standard_normal(x, std):
        assert abs(x.mean() / std) < normal_tolerance and abs(x.std() / std - 1) < normal_tolerance

    assert np.array_equal(np.unique(params["xflip"]), [0, 1]) and np.array_equal(np.unique(params["lumaflip"]), [0, 1])
    assert np.array_equal(np.unique(params["rotate90"]), [0, 1, 2, 3])
    assert np.array_equal(np.unique(params["xint"]), np.arange(-4, 5))  # round(U[-0.125, 0.125] * 32).
    for name in ("rotate_pre", "rotate_post", "hue"):
        assert params[name].min() >= -np.pi and params[name].max() <= np.pi
        assert abs(params[name].std() - np.pi / np.sqrt(3)) < 5 * np.pi / np.sqrt(3) / math.sqrt(batch)
    for name, std in (("scale", 0.2), ("aniso", 0.2), ("contrast", 0.5), ("saturation", 1.0)):
        standard_normal(np.log2(params[name]), std)
    standard_normal(params["brightness"], 0.2)
    standard_normal(params["xfrac"].ravel(), 0.125 * size)


@pytest.mark.parametrize("name", list(ada.TRANSFORMS) + ["bgc"])
def test_every_transform_has_the_finite_difference_gradient(name):
    spec = ada.parse_pipeline(name) if name == "bgc" else SINGLE[name]
    with jax.enable_x64(True):
        images = jnp.asarray(_images((4, 8, 8, 3), seed=5, dtype=np.float64))
        weights = jnp.asarray(np.random.default_rng(6).normal(size=images.shape))
        direction = jnp.asarray(np.random.default_rng(7).normal(size=images.shape))
        key = jax.random.PRNGKey(8)

        def loss(x):
            return jnp.sum(jnp.sin(ada.augment(x, key, 1.0, spec)) * weights)

        value_and_grad = jax.jit(jax.value_and_grad(loss))
        _, grad = value_and_grad(images)
        eps = 1e-5
        finite_difference = (
            value_and_grad(images + eps * direction)[0] - value_and_grad(images - eps * direction)[0]
        ) / (2 * eps)
        assert np.isfinite(np.asarray(grad)).all()
        np.testing.assert_allclose(float(jnp.sum(grad * direction)), float(finite_difference), rtol=1e-7)
        assert abs(float(finite_difference)) > 1e-3


def test_adjust_moves_p_by_the_reference_step_clips_and_resets():
    batch_images, interval, speed_kimg = 64, 4, 500
    step = np.float32(batch_images * interval / (speed_kimg * 1000))  # The reference's float64 step, in float32.

    def adjusted(p, sign_sum, count, target=0.6):
        state = ada.AdaState(jnp.float32(p), jnp.float32(sign_sum), jnp.float32(count))
        new = jax.jit(ada.adjust, static_argnames=("batch_images", "interval"))(
            state, target, batch_images=batch_images, interval=interval, speed_kimg=speed_kimg
        )
        assert float(new.sign_sum) == 0 and float(new.count) == 0
        assert all(leaf.dtype == jnp.float32 and leaf.shape == () for leaf in jax.tree.leaves(new))
        return np.float32(new.p)

    assert adjusted(0.25, 70, 100) == np.float32(0.25) + step  # r_t = 0.7 > 0.6: more augmentation.
    assert adjusted(0.25, 50, 100) == np.float32(0.25) - step  # r_t = 0.5 < 0.6: less.
    assert adjusted(0.25, -100, 100) == np.float32(0.25) - step  # The step does not depend on the distance.
    assert adjusted(0.25, 60, 100, target=0.6) == np.float32(0.25)  # sign(0) = 0.
    assert adjusted(0.25, 0, 0) == np.float32(0.25)  # Nothing accumulated: p stays.
    assert adjusted(0.0001, 0, 10) == 0.0 and adjusted(0.9999, 10, 10) == 1.0  # Clipped to [0, 1].
    assert adjusted(0.0, -10, 10) == 0.0 and adjusted(1.0, 10, 10) == 1.0

    # Accumulation over steps, then the caller's lax.cond every `interval` steps.
    state = ada.AdaState.create(0.5)

    @jax.jit
    def train_step(state, logits, step_index):
        state = ada.accumulate(state, logits)
        return jax.lax.cond(
            step_index % interval == interval - 1,
            lambda s: ada.adjust(s, 0.6, batch_images=batch_images, interval=interval),
            lambda s: s,
            state,
        )

    logits = jnp.asarray([[3.0], [-1.0], [0.0], [2.0]])  # Signs 1, -1, 0, 1.
    for i in range(interval - 1):
        state = train_step(state, logits, i)
        assert float(state.sign_sum) == (i + 1) * 1.0 and float(state.count) == (i + 1) * 4
    state = train_step(state, jnp.ones((4, 1)), interval - 1)  # r_t = (3 + 4) / 16 < 0.6.
    assert np.float32(state.p) == np.float32(0.5) - step and float(state.count) == 0

    restored = flax.serialization.from_bytes(ada.AdaState.create(), flax.serialization.to_bytes(state))
    assert all(
        np.asarray(a).tobytes() == np.asarray(b).tobytes()
        for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state))
    )


def test_half_probability_changes_the_binomial_fraction_of_images():
    """p = 0.5, one transform at a time: the fraction of images changed is P(coin) * P(draw is not the identity)."""
    batch, p = 1024, 0.5
    images = jnp.asarray(_images((batch, 8, 8, 3), seed=9))
    changes = {name: p for name in ada.TRANSFORMS}
    changes.update(xflip=p / 2, lumaflip=p / 2, rotate90=p * 3 / 4)
    changes["xint"] = p * (1 - 1 / 4)  # round(U[-1, 1]) = 0 with probability 1/2 on each axis at 8 px.
    run = jax.jit(ada.augment, static_argnames="spec")
    for name, expected in changes.items():
        out = run(images, jax.random.PRNGKey(10), jnp.float32(p), SINGLE[name])
        changed = np.mean(np.any(np.asarray(out) != np.asarray(images), axis=(1, 2, 3)))
        tolerance = 5 * math.sqrt(expected * (1 - expected) / batch)  # 5 binomial standard deviations.
        assert abs(changed - expected) < tolerance, (name, changed, expected)


def test_jit_with_traced_p_compiles_once():
    traces = []

    @jax.jit
    def run(images, key, p):
        traces.append(1)
        return ada.augment(images, key, p, "bgc")

    images = jnp.asarray(_images((8, 16, 16, 3)))
    outs = [np.asarray(run(images, jax.random.PRNGKey(0), jnp.float32(p))) for p in (0.0, 0.3, 0.7, 1.0)]
    assert len(traces) == 1
    np.testing.assert_array_equal(outs[0], images)
    changed = [np.any(out != np.asarray(images), axis=(1, 2, 3)).sum() for out in outs]
    assert changed[0] == 0 and changed[-1] == 8 and not np.array_equal(outs[1], outs[2])


def test_batch_sharded_over_devices_gives_the_unsharded_result():
    shardings = sharding.make_mesh()
    images = jnp.asarray(_images((16, 16, 16, 3)))
    run = jax.jit(ada.augment, static_argnames="spec")
    key, p = jax.random.PRNGKey(11), jnp.float32(0.6)
    sharded = run(jax.device_put(images, shardings.data), key, p, "bgc")
    np.testing.assert_allclose(np.asarray(sharded), np.asarray(run(images, key, p, "bgc")), rtol=0, atol=1e-6)
    assert shardings.num_devices == 8 and sharded.sharding.is_equivalent_to(shardings.data, 4)


def test_pipeline_names():
    assert ada.parse_pipeline("bgc").enabled() == ada.TRANSFORMS
    assert ada.parse_pipeline("bg").enabled() == ada.GEOMETRIC
    assert ada.parse_pipeline("b").enabled() == ("xflip", "rotate90", "xint")
    assert ada.parse_pipeline("g").enabled() == ("scale", "rotate", "aniso", "xfrac")
    assert ada.parse_pipeline("c").enabled() == ada.COLOR == ada.parse_pipeline("color").enabled()
    assert ada.parse_pipeline("cgb") == ada.parse_pipeline("bgc") and ada.parse_pipeline("").enabled() == ()
    assert ada.parse_pipeline("bgc").scale_std == 0.2 and ada.parse_pipeline("bgc").contrast_std == 0.5
    with pytest.raises(ConfigError, match=r"'f'.*b \(xflip, rotate90, xint\); g \(.*\); c \("):
        ada.parse_pipeline("bgcf")
    with pytest.raises(ConfigError, match="repeats 'b'"):
        ada.parse_pipeline("bb")
