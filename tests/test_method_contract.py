"""The method contract (animejax/methods/base.py): weighted metric averages, frozen networks, batches, samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animejax import methods, sharding
from animejax.methods.base import Method, Weighted, average_metrics, make_train_step, model_batch, place_frozen
from animejax.methods.common import TrainState
from tests.test_gan import tiny_config as gan_tiny_config
from tests.test_train import init_and_step, load_config


def test_average_weights_a_term_computed_every_kth_step():
    """A lazy term (non-zero weight every 4th step, zeros otherwise) averages over its own steps only."""
    rng = np.random.default_rng(0)
    losses, lazy = rng.normal(size=12), rng.normal(size=12)
    history = [
        {"train/loss": jnp.float32(losses[i]), "train/r1": Weighted(jnp.float32(lazy[i] * (i % 4 == 0)), i % 4 == 0)}
        for i in range(12)
    ]
    averaged = average_metrics(history)
    np.testing.assert_allclose(averaged["train/loss"], losses.mean(), rtol=1e-6)
    np.testing.assert_allclose(averaged["train/r1"], lazy[::4].mean(), rtol=1e-6)
    # An interval in which the term was never computed reports nothing for it, not a 0.
    assert set(average_metrics(history[1:4])) == {"train/loss"}


def test_weighted_counts_average_exactly():
    history = [{"m": Weighted(jnp.float32(2.0), jnp.float32(3.0))}, {"m": Weighted(jnp.float32(6.0), jnp.float32(1.0))}]
    np.testing.assert_allclose(average_metrics(history)["m"], (2 * 3 + 6 * 1) / 4, rtol=1e-7)


def test_model_batch_maps_uint8_images_to_minus_one_one_and_keeps_other_arrays():
    batch = model_batch({"image": jnp.asarray([[0, 255, 128]], jnp.uint8), "label": jnp.asarray([3])})
    np.testing.assert_allclose(batch["image"], [[-1.0, 1.0, 128 / 127.5 - 1.0]], atol=1e-7)  # float32 rounding.
    assert batch["label"].dtype == jnp.int32 and int(batch["label"][0]) == 3


class _FrozenScaleMethod(Method):
    """A toy method whose step adds frozen["scale"] * mean(image) to its one parameter."""

    def __init__(self, config):
        super().__init__(config)
        self.scale = np.float32(2.5)

    def init_state(self, rng, batch):
        return TrainState(jnp.zeros((), jnp.int32), jnp.zeros(()), jnp.zeros(()), {}, rng)

    def train_step(self, state, batch, rng, frozen):
        params = state.params + frozen["scale"] * jnp.mean(batch["image"])
        return state.replace(step=state.step + 1, params=params), {"train/param": params}

    def frozen(self):
        return {"scale": self.scale}


def test_frozen_networks_are_replicated_arguments_not_constants_or_donated(cache_dir):
    config = load_config("vae", "quick")
    shardings = sharding.make_mesh(8)
    method = _FrozenScaleMethod(config)
    frozen = place_frozen(method, shardings)
    assert frozen["scale"].sharding.is_fully_replicated and len(frozen["scale"].devices()) == 8
    step = make_train_step(method, shardings)
    images = np.full((8, 2, 2, 3), 255, np.uint8)  # Model range: all 1.
    batch = {"image": sharding.global_batch(images, shardings)}
    state = method.init_state(jax.random.PRNGKey(0), batch)
    state, metrics = step(state, batch, jax.random.PRNGKey(1), frozen)
    np.testing.assert_allclose(float(metrics["train/param"]), 2.5, rtol=1e-6)
    assert not frozen["scale"].is_deleted()  # The state is donated, the frozen networks are not.
    state, _ = step(state, batch, jax.random.PRNGKey(2), frozen)  # The state now comes from the step itself.
    compiled = step.for_phase(None)._cache_size()
    other = jax.device_put({"scale": np.float32(-1.0)}, shardings.replicated)
    state, metrics = step(state, batch, jax.random.PRNGKey(3), other)
    np.testing.assert_allclose(float(metrics["train/param"]), 2.5 + 2.5 - 1.0, rtol=1e-6)
    # New frozen values reuse the compiled step: inputs, not constants.
    assert step.for_phase(None)._cache_size() == compiled


class _PhasedMethod(_FrozenScaleMethod):
    """Adds 1 to its parameter for 2 steps, then 10: the phase is a Python value in the traced step."""

    def phase(self, step):
        return "small" if step < 2 else "large"

    def train_step(self, state, batch, rng, frozen, phase):
        increment = {"small": 1.0, "large": 10.0}[phase]  # A KeyError if the phase came in traced.
        params = state.params + increment
        return state.replace(step=state.step + 1, params=params), {"train/param": params}


def test_a_method_with_phases_gets_one_compiled_step_per_phase():
    config = load_config("vae", "quick")
    shardings = sharding.make_mesh(1)
    method = _PhasedMethod(config)
    step, frozen = make_train_step(method, shardings), place_frozen(method, shardings)
    batch = {"image": sharding.global_batch(np.zeros((2, 2, 2, 3), np.uint8), shardings)}
    state = method.init_state(jax.random.PRNGKey(0), batch)
    values = []
    for i in range(4):  # Steps 0 and 1 say their step; 2 and 3 leave it to be read from the state.
        state, metrics = step(state, batch, jax.random.PRNGKey(i), frozen, *([i] if i < 2 else []))
        values.append(float(metrics["train/param"]))
    assert values == [1.0, 2.0, 12.0, 22.0]


@pytest.mark.parametrize("name", ["autoencoder", "vae", "dcgan", "wgan_gp"])
def test_every_family_samples_individual_images(name, cache_dir):
    """--mode=sample writes `sample.num_individual` single images for every family, not only the GANs."""
    if name in ("autoencoder", "vae"):
        config = load_config(name, "quick")
        config.data.num_images, config.data.cache_dir, config.mesh.num_devices = 256, cache_dir, 1
        config.train.batch_size, config.sample.latent_stats_images = 16, 16
    else:
        config = gan_tiny_config(name, cache_dir)
    config.sample.num_individual, config.sample.grid_size, config.eval.batch_size = 5, 2, 4
    method, state, _, dataset, _ = init_and_step(config, 1)
    batches = iter([{"image": np.asarray(dataset[i], np.float32) / 127.5 - 1} for i in range(4)])
    samples = method.sample(state, batches, jax.random.PRNGKey(0))
    size = config.data.image_size
    assert samples.individual.shape == (5, size, size, 3)
    assert np.abs(samples.individual).max() <= 1.0 and np.isfinite(samples.individual).all()
    for images, columns in samples.grids.values():
        assert images.ndim == 4 and len(images) % columns == 0


def test_model_arch_is_honoured_by_every_gan_method(cache_dir):
    config = gan_tiny_config("dcgan", cache_dir)
    config.model = gan_tiny_config("resdcgan", cache_dir).model
    method = methods.get_method(config)
    assert type(method.networks.generator).__module__ == "animejax.models.resdcgan"
    config.model.arch = "stylegan9"
    with pytest.raises(ValueError, match="Unknown model.arch 'stylegan9' for GANs; choose one of dcgan, resdcgan"):
        methods.get_method(config)
