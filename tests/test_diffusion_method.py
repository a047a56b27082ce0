"""The diffusion method: loss assembly against float64 numpy, bf16, devices, learning, and --mode=sample's strips."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animejax import methods, sharding
from animejax.methods.common import ema_decay
from tests import device_equality
from tests.test_objectives import (
    adam_first_step,
    assert_trees_close,
    finite_difference_grad,
    first_moment_gradients,
    global_norm,
    to_numpy,
)
from tests.test_train import init_and_step, load_config

SIZE, BATCH, T = 4, 5, 1000
PIXELS = SIZE * SIZE * 3


class LinearDenoiser(nn.Module):
    """prediction = flatten(x_t) W + (t / T) u + b: linear in its parameters, with a short numpy twin."""

    @nn.compact
    def __call__(self, x, t, train=False):
        del train
        flat = x.reshape(x.shape[0], -1)
        time = nn.Dense(PIXELS, use_bias=False, name="time")(jnp.asarray(t, jnp.float32)[:, None] / T)
        return (nn.Dense(PIXELS, name="dense")(flat) + time).reshape(x.shape)


def tiny_config(cache_dir: str):
    config = load_config("ddpm", "quick")
    config.data.num_images, config.data.cache_dir, config.mesh.num_devices = 256, cache_dir, 1
    config.train.batch_size = 8
    config.model.base_channels, config.model.num_groups = 16, 4
    config.sample.grid_size, config.sample.num_individual, config.eval.batch_size = 2, 3, 4
    config.sample.sampler_steps, config.eval.sampler_steps = 4, 3
    config.sample.sampler_rows = "ddim:4,dpm_solver++:3"
    config.sample.strip_rows, config.sample.strip_columns = 2, 4
    return config


def numpy_diffusion_loss(params, x0, t, noise, target, gamma):
    """Ho et al.'s objective in float64 from the linear schedule's definition (betas 1e-4 to 0.02, T = 1000)."""
    abar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))[t][:, None]
    flat_x0, flat_noise = x0.reshape(len(x0), -1), noise.reshape(len(x0), -1)
    x_t = np.sqrt(abar) * flat_x0 + np.sqrt(1.0 - abar) * flat_noise
    prediction = x_t @ params["dense"]["kernel"] + params["dense"]["bias"]
    prediction = prediction + (t[:, None] / T) @ params["time"]["kernel"]
    wanted = {
        "epsilon": flat_noise,
        "v": np.sqrt(abar) * flat_noise - np.sqrt(1.0 - abar) * flat_x0,
        "x0": flat_x0,
    }[target]
    mse = np.mean((prediction - wanted) ** 2, axis=-1)
    snr = (abar / (1.0 - abar))[:, 0]
    if gamma:
        weight = {
            "epsilon": np.minimum(snr, gamma) / snr,
            "v": np.minimum(snr, gamma) / (snr + 1),
            "x0": np.minimum(snr, gamma),
        }[target]
    else:
        weight = np.ones_like(snr)
    return np.mean(weight * mse), np.mean(mse)


@pytest.mark.parametrize("target,gamma", [("epsilon", 0.0), ("v", 0.0), ("x0", 0.0), ("epsilon", 5.0), ("v", 5.0)])
def test_diffusion_step_assembles_the_objective(target, gamma, cache_dir):
    config = tiny_config(cache_dir)
    config.data.image_size = SIZE
    config.diffusion.target, config.diffusion.min_snr_gamma = target, gamma
    config.optim.warmup_steps, config.optim.grad_clip_norm = 0, 0.0
    method = methods.get_method(config)
    method.network = LinearDenoiser()
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(BATCH, SIZE, SIZE, 3)).astype(np.float32)
    state = jax.jit(method.init_state)(jax.random.PRNGKey(1), {"image": jnp.asarray(images)})
    params = to_numpy(state.params)
    key = jax.random.PRNGKey(2)
    new_state, metrics = jax.device_get(jax.jit(method.train_step)(state, {"image": jnp.asarray(images)}, key, {}))

    # The step's draws (methods/diffusion.py): t ~ U{0..T-1} and eps ~ N(0, I) from the first two of 3 keys.
    t_key, noise_key, _ = jax.random.split(key, 3)
    t = np.asarray(jax.random.randint(t_key, (BATCH,), 0, T))
    noise = np.asarray(jax.random.normal(noise_key, images.shape), np.float64)
    images64 = images.astype(np.float64)
    loss, mse = numpy_diffusion_loss(params, images64, t, noise, target, gamma)
    grads = finite_difference_grad(lambda p: numpy_diffusion_loss(p, images64, t, noise, target, gamma)[0], params)
    np.testing.assert_allclose(metrics["train/loss"], loss, rtol=2e-5)
    np.testing.assert_allclose(metrics["train/mse"], mse, rtol=2e-5)
    np.testing.assert_allclose(metrics["train/grad_norm"], global_norm(grads), rtol=2e-5)
    assert_trees_close(first_moment_gradients(new_state.opt_state, config.optim.b1), grads, 1e-4, 1e-6, "grads")
    new_params = adam_first_step(params, grads, config.optim.learning_rate)
    assert_trees_close(new_state.params, new_params, 0, 1e-6, "params")
    decay = min(config.ema.decay, 1 / 10)  # Warm-up at step 0.
    np.testing.assert_allclose(float(ema_decay(jnp.asarray(0), config.ema.decay, True)), decay, rtol=1e-6)
    expected_ema = jax.tree.map(lambda old, new: decay * old + (1 - decay) * new, params, new_params)
    assert_trees_close(new_state.ema_params, expected_ema, 0, 1e-6, "ema_params")


def test_bf16_loss_agrees_with_float32(cache_dir):
    """Same parameters, batch and key: the bf16 UNet's loss is within 2% of the float32 one (bf16 keeps 8
    mantissa bits; measured 0.2-0.5%), and its parameters stay float32."""
    config = tiny_config(cache_dir)
    method32 = methods.get_method(config)
    config.model.dtype = "bfloat16"
    method16 = methods.get_method(config)
    images = jax.random.uniform(jax.random.PRNGKey(0), (8, 32, 32, 3), minval=-1, maxval=1)
    state = jax.jit(method32.init_state)(jax.random.PRNGKey(1), {"image": images})
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(2), p.shape), state.params)
    losses = [float(jax.jit(m.loss)(params, images, jax.random.PRNGKey(3))[0]) for m in (method32, method16)]
    np.testing.assert_allclose(losses[1], losses[0], rtol=2e-2)
    state16 = jax.eval_shape(method16.init_state, jax.random.PRNGKey(1), {"image": images})
    assert {leaf.dtype for leaf in jax.tree.leaves(state16.params)} == {jnp.dtype(jnp.float32)}


def test_eight_devices_match_one_device(cache_dir):
    """Two steps on 8 devices equal two on 1: metrics, gradients, parameters; see tests/device_equality.py."""
    config = tiny_config(cache_dir)
    config.model.dropout = 0.1  # Dropout masks must not depend on the device count either.
    optim = config.optim
    network = device_equality.Network("params", "opt_state", optim.learning_rate, optim.b1, optim.b2, "ema_params")
    runs = device_equality.run_on_one_and_eight(init_and_step, config, steps=2)
    device_equality.assert_runs_agree(runs, [network])


def test_short_run_on_the_built_in_faces_lowers_the_loss(cache_dir):
    """150 steps of the small UNet: the epsilon MSE (1.0 for a network that predicts 0) falls well below it."""
    config = tiny_config(cache_dir)
    config.train.batch_size = 16
    method, state, step, dataset, shardings = init_and_step(config, 1)
    losses = []
    for i in range(150):
        state, metrics = step(state, sharding.global_batch(dataset[i], shardings), jax.random.PRNGKey(i))
        losses.append(metrics["train/mse"])
    losses = np.asarray(jax.device_get(losses))
    assert losses[:5].mean() > 0.8, losses[:5]
    assert losses[-20:].mean() < 0.5 * losses[:5].mean(), (losses[:5], losses[-20:])


def test_sample_writes_grid_strips_sampler_rows_and_individual_images(cache_dir):
    config = tiny_config(cache_dir)
    method, state, _, dataset, _ = init_and_step(config, 1)
    batches = iter([{"image": np.asarray(dataset[0], np.float32) / 127.5 - 1}])
    samples = method.sample(state, batches, jax.random.PRNGKey(0))
    grids = {name: (images.shape, columns) for name, (images, columns) in samples.grids.items()}
    assert grids["samples"] == ((4, 32, 32, 3), 2)
    assert grids["noising"] == ((2 * 4, 32, 32, 3), 4)
    # Sampler steps 4, 4 columns: x0_hat at steps 0, 1, 2, 3 and the final image.
    assert grids["denoising"] == ((2 * 5, 32, 32, 3), 5)
    assert grids["samplers"] == ((2 * 2, 32, 32, 3), 2)  # One row per sample.sampler_rows entry.
    assert samples.individual.shape == (3, 32, 32, 3)
    noising = samples.grids["noising"][0].reshape(2, 4, -1)
    real = np.asarray(dataset[0][:2], np.float32).reshape(2, -1) / 127.5 - 1
    abar_0 = 1 - 1e-4
    np.testing.assert_allclose(noising[:, 0], np.clip(np.sqrt(abar_0) * real, -1, 1), atol=0.05)  # t = 0: ~x_0.
    assert abs(noising[:, -1].std() - 0.8) < 0.25  # t = T - 1: nearly N(0, 1), clipped to [-1, 1].
    for images, _ in samples.grids.values():
        assert np.isfinite(images).all() and np.abs(images).max() <= 1.0


def test_bad_sampler_settings_are_clear_errors(cache_dir):
    config = tiny_config(cache_dir)
    config.eval.sampler = "euler"
    with pytest.raises(ValueError, match="eval.sampler: unknown sampler 'euler'; choose one of ddpm, ddim"):
        methods.get_method(config)
    config = tiny_config(cache_dir)
    config.sample.sampler_rows = "ddpm:50"
    with pytest.raises(ValueError, match="ddpm runs all 1000 steps; got 50"):
        methods.get_method(config)
    config = tiny_config(cache_dir)
    config.data.image_size = 30
    with pytest.raises(ValueError, match="does not fit data.image_size=30"):
        methods.get_method(config)
