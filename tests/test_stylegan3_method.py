"""The StyleGAN3 method: D's fading blur against the reference's formula in float64, the input transforms, the
magnitude averages a train step moves, devices, a short run on the built-in faces and --mode=sample's GIFs."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from animejax import methods
from animejax.errors import ConfigError
from animejax.methods import stylegan2, stylegan3
from tests import device_equality
from tests.test_train import init_and_step, load_config


def tiny_config(cache_dir: str, variant: str = "quick", **stylegan):
    """configs/stylegan3.py:quick (or :r_quick) narrowed: 32 px, batch 8, 16-channel networks, 4 layers."""
    config = load_config("stylegan3", variant)
    config.data.num_images = 256
    config.data.cache_dir = cache_dir
    config.mesh.num_devices = 1
    config.train.batch_size = 8
    config.model.z_dim = config.model.w_dim = 8
    config.model.channel_base, config.model.channel_max = 256, 16
    config.model.num_layers = 4
    config.sample.grid_size = 2
    config.sample.num_individual, config.eval.batch_size = 3, 4
    config.sample.num_interpolations, config.sample.animation_frames = 2, 6
    for key, value in stylegan.items():
        config.stylegan[key] = value
    return config


def _numpy_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """NVlabs/stylegan3 loss.run_D's blur in float64: taps 2^-(k/sigma)^2, |k| <= floor(3 sigma), normalised,
    filter2d along both axes with zero padding (the same size out)."""
    radius = int(np.floor(sigma * 3))
    if radius <= 0:
        return images.astype(np.float64)
    taps = np.exp2(-np.square(np.arange(-radius, radius + 1) / sigma))
    taps /= taps.sum()
    x = images.astype(np.float64)
    for axis in (1, 2):
        padded = np.pad(x, [(radius, radius) if a == axis else (0, 0) for a in range(4)])
        size = x.shape[axis]
        x = sum(taps[k] * np.take(padded, np.arange(k, k + size), axis=axis) for k in range(2 * radius + 1))
    return x


@pytest.mark.parametrize("sigma", [0.0, 0.3, 1.0, 2.5, 10.0])
def test_blur_matches_the_reference_formula(sigma):
    images = np.random.default_rng(0).normal(size=(2, 24, 24, 3)).astype(np.float32)
    got = jax.jit(stylegan2.gaussian_blur, static_argnums=2)(jnp.asarray(images), jnp.asarray(sigma), 30)
    np.testing.assert_allclose(got, _numpy_blur(images, sigma), rtol=1e-5, atol=1e-6)


def test_blur_sigma_fades_linearly_to_zero():
    for step, expected in ((0, 10.0), (250, 5.0), (500, 0.0), (900, 0.0)):
        got = stylegan2.blur_sigma(jnp.asarray(step), 32, init_sigma=10.0, fade_kimg=16.0)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert float(stylegan2.blur_sigma(jnp.asarray(0), 32, 10.0, 0.0)) == 0.0


def test_translation_transform_follows_the_reference_convention():
    """M[:2, 2] = -t for a translation and rotation_matrix(-angle) for a rotation, as the equivariance metric."""
    m = np.asarray(stylegan3.translation_transform(0.25, -0.125))
    np.testing.assert_allclose(m, [[1, 0, -0.25], [0, 1, 0.125], [0, 0, 1]], atol=1e-7)
    angle = 0.3
    rotation_of_minus = np.array([[np.cos(-angle), np.sin(-angle), 0], [-np.sin(-angle), np.cos(-angle), 0], [0, 0, 1]])
    np.testing.assert_allclose(stylegan3.translation_transform(0.0, 0.0, angle), rotation_of_minus, atol=1e-6)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    config = tiny_config(str(tmp_path_factory.mktemp("cache")))
    method = methods.get_method(config)
    images = jax.random.uniform(jax.random.PRNGKey(0), (8, 32, 32, 3), minval=-1, maxval=1)
    state = jax.jit(method.init_state)(jax.random.PRNGKey(1), {"image": images})
    return method, state, images


def test_config_is_the_reference_stylegan3_loss(tiny):
    """No path length, no style mixing, no G lazy phase: G's Adam has no lazy correction; no noise buffers."""
    method, state, _ = tiny
    assert method.style.pl_weight == 0 and method.style.style_mixing == 0
    assert state.g_noise_const == {}
    assert set(state.g_buffers) == {"buffers", "magnitude_ema"}
    assert method.num_ws == method.config.model.num_layers + 2


def test_train_step_moves_every_magnitude_average_and_keeps_the_fourier_buffers(tiny):
    method, state, images = tiny
    step = jax.jit(method.train_step, static_argnames="phase")
    new_state, metrics = step(state, {"image": images}, jax.random.PRNGKey(3), {}, phase=method.phase(0))
    assert all(np.isfinite(float(np.asarray(v[0] if isinstance(v, tuple) else v))) for v in metrics.values())
    beta = method.generator_net.magnitude_ema_beta
    before = jax.tree.leaves(state.g_buffers["magnitude_ema"])
    after = jax.tree.leaves(new_state.g_buffers["magnitude_ema"])
    assert len(after) == method.config.model.num_layers + 1
    for old, new in zip(before, after):
        # new = m + beta (old - m) for the batch's mean square m > 0, from the initial 1.
        magnitude = (float(new) - beta * float(old)) / (1 - beta)
        assert float(old) == 1.0 and magnitude > 0 and float(new) != 1.0
    for old, new in zip(jax.tree.leaves(state.g_buffers["buffers"]), jax.tree.leaves(new_state.g_buffers["buffers"])):
        np.testing.assert_array_equal(old, new)
    ema_change = optax.tree.norm(jax.tree.map(jnp.subtract, new_state.g_ema_params, state.g_ema_params))
    assert float(ema_change) > 0


def test_magnitude_average_is_the_mean_square_of_each_layer_input(tiny):
    """One update_emas pass: each layer's new average is lerp(mean x^2 of its input, old, beta), with the
    inputs captured from the same pass and the mean taken in float64."""
    method, state, _ = tiny
    ws = jax.random.normal(jax.random.PRNGKey(4), (4, method.num_ws, method.w_dim))
    variables = {"params": state.g_params, **state.g_buffers}
    net = method.generator_net
    _, updates = net.apply(
        variables,
        ws,
        update_emas=True,
        method=type(net).synthesize,
        mutable=["magnitude_ema", "intermediates"],
        capture_intermediates=True,
    )
    outputs = updates["intermediates"]["synthesis"]
    beta = net.magnitude_ema_beta
    names = list(updates["magnitude_ema"]["synthesis"])
    inputs = ["input"] + names[:-1]
    for name, source in zip(names, inputs):
        x = np.asarray(outputs[source]["__call__"][0], np.float64)
        expected = np.mean(x**2) + beta * (1.0 - np.mean(x**2))
        got = updates["magnitude_ema"]["synthesis"][name]["magnitude_ema"]
        np.testing.assert_allclose(got, expected, rtol=1e-5, err_msg=name)


def test_r_variant_blurs_d_inputs_at_first():
    config = tiny_config("", "r_quick")
    method = methods.get_method(config)
    assert method.rotation_equivariant and method.blur_radius == 30
    images = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3), minval=-1, maxval=1)
    seen = method.augment(images, jax.random.PRNGKey(1), jnp.zeros(()), jnp.asarray(0))
    np.testing.assert_allclose(seen, _numpy_blur(np.asarray(images), 10.0), rtol=1e-5, atol=1e-6)
    fade_steps = int(config.stylegan.blur_fade_kimg * 1000 / config.train.batch_size)
    late = method.augment(images, jax.random.PRNGKey(1), jnp.zeros(()), jnp.asarray(fade_steps))
    np.testing.assert_allclose(late, images, atol=1e-6)


def test_config_errors():
    config = load_config("stylegan3", "quick")
    config.model.arch = "stylegan3-x"
    with pytest.raises(ConfigError, match="choose stylegan3-t or stylegan3-r"):
        methods.get_method(config)
    config = load_config("stylegan3", "quick")
    config.data.image_size = 48
    with pytest.raises(ConfigError, match="StyleGAN3 does not fit data.image_size=48"):
        methods.get_method(config)
    config = load_config("stylegan3", "quick")
    config.model.magnitude_ema_kimg = 0.0
    with pytest.raises(ConfigError, match="model.magnitude_ema_kimg must be > 0"):
        methods.get_method(config)
    with pytest.raises(ConfigError, match="Unknown variant 'x' for configs/stylegan3.py"):
        load_config("stylegan3", "x")


def test_eight_devices_match_one_device(cache_dir):
    """Two steps (the first with lazy R1) on 8 devices equal two on 1, magnitude averages included."""
    config = tiny_config(cache_dir)
    config.train.batch_size = 16  # Two images per device; mbstd groups of 4 span devices.
    d_c = 16 / 17
    optim = config.optim
    networks = [
        device_equality.Network("g_params", "g_opt_state", optim.learning_rate, 0.0, optim.b2, "g_ema_params"),
        device_equality.Network("d_params", "d_opt_state", optim.learning_rate * d_c, 0.0, optim.b2**d_c),
    ]
    runs = device_equality.run_on_one_and_eight(init_and_step, config, steps=2, seed=3)
    device_equality.assert_runs_agree(runs, networks)
    (_, states_1), (_, states_8) = runs
    np.testing.assert_allclose(states_8[-1].w_avg, states_1[-1].w_avg, rtol=1e-5, atol=1e-6)
    for got, expected in zip(jax.tree.leaves(states_8[-1].g_buffers), jax.tree.leaves(states_1[-1].g_buffers)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_loop_trains_and_sample_writes_the_translation_gif(tmp_path, cache_dir):
    """The loop on the built-in faces (it stops on a non-finite loss), then --mode=sample's grids and GIFs, the
    translation GIF's frames moving with the input."""
    from animejax import inference, train

    config = tiny_config(cache_dir)
    config.train.num_steps, config.train.log_every = 4, 2
    config.train.sample_every, config.train.checkpoint_every = 2, 4
    train.train_and_evaluate(config, str(tmp_path))
    paths = inference.sample(config, str(tmp_path))
    for name in ("samples", "truncation_sweep", "style_mixing_coarse", "interpolation_z", "translation"):
        assert os.path.getsize(paths[name]) > 0, name
    with Image.open(paths["translation"]) as gif:
        assert gif.n_frames == config.sample.animation_frames
        first = np.asarray(gif.convert("RGB"), np.float32)
        gif.seek(gif.n_frames // 2)
        half = np.asarray(gif.convert("RGB"), np.float32)
    assert np.abs(first - half).mean() > 1.0  # Half a turn around the circle: the faces moved.
