"""The GAN methods: training, devices, sampling, the stall monitor, the loop end to end, real-face quality."""

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from animejax import methods, sharding
from animejax.data import cache as decode_cache
from animejax.data import pipeline, sources
from animejax.methods import latent_sampling
from animejax.methods.base import make_train_step
from animejax.writers import progress_gif
from tests import device_equality
from tests.test_train import init_and_step, load_config

GAN_METHODS = ("dcgan", "resdcgan", "resdcgan_cycle", "wgan_gp")


def tiny_config(name: str, cache_dir: str):
    """The method's :quick config shrunk to a few milliseconds per step: 32 px, batch 16, 8 channels, 1 device."""
    config = load_config(name, "quick")
    config.data.num_images = 256
    config.data.cache_dir = cache_dir
    config.mesh.num_devices = 1
    config.train.batch_size = 16
    config.train.num_steps = 100
    config.train.log_every = 50
    config.train.sample_every = 1000
    config.train.checkpoint_every = 1000
    config.model.latent_dim = 16
    config.model.g_channels = config.model.d_channels = 8
    if "max_channels" in config.model:
        config.model.max_channels = 32
    config.sample.grid_size = 4
    config.sample.num_individual = 5
    config.eval.batch_size = 16
    return config


# --- methods --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GAN_METHODS)
def test_each_method_trains_100_steps(name, cache_dir):
    config = tiny_config(name, cache_dir)
    method, state, step, dataset, shardings = init_and_step(config, 1)
    before = jax.device_get(state)
    history = []
    for i in range(config.train.num_steps):
        state, metrics = step(state, sharding.global_batch(dataset[i], shardings), jax.random.PRNGKey(i))
        history.append(metrics)
    history = jax.device_get(history)
    for metrics in history:
        for key, value in metrics.items():
            assert np.isfinite(value), (key, value)
    last = history[-1]
    for key in ("train/loss_d", "train/loss_g", "train/d_real", "train/d_fake", "train/grad_norm_g"):
        assert key in last, sorted(last)
    if name == "wgan_gp":
        assert "train/gp" in last and "train/wasserstein" in last
    if name == "resdcgan_cycle":
        assert "train/cycle_latent" in last and "train/grad_norm_e" in last
        # The cycle loss pulls E(G(z)) towards z: it falls from its start.
        assert np.mean([m["train/cycle_latent"] for m in history[-10:]]) < history[0]["train/cycle_latent"]
    after = jax.device_get(state)
    assert int(after.step) == config.train.num_steps
    for field in ("g_params", "d_params", "g_ema_params", "e_params"):
        old, new = jax.tree.leaves(getattr(before, field)), jax.tree.leaves(getattr(after, field))
        assert len(old) == len(new)
        if old:
            assert any(not np.allclose(a, b) for a, b in zip(old, new)), field
            assert all(np.isfinite(b).all() for b in new), field


def gan_networks(config) -> list[device_equality.Network]:
    """G (with its EMA), D and the optional encoder, as they sit in a GANState."""
    optim, optim_d = config.optim, config.optim_d
    return [
        device_equality.Network("g_params", "g_opt_state", optim.learning_rate, optim.b1, optim.b2, "g_ema_params"),
        device_equality.Network("d_params", "d_opt_state", optim_d.learning_rate, optim_d.b1, optim_d.b2),
        device_equality.Network("e_params", "e_opt_state", optim.learning_rate, optim.b1, optim.b2),
    ]


@pytest.mark.parametrize("name", GAN_METHODS)
def test_eight_devices_match_one_device(name, cache_dir):
    """Two steps on 8 devices equal two on 1: metrics, gradients, parameters; see tests/device_equality.py."""
    assert len(jax.devices()) == 8, "conftest sets 8 simulated CPU devices"
    config = tiny_config(name, cache_dir)
    # Two steps: Adam's second update depends on gradient magnitudes, not only signs.
    runs = device_equality.run_on_one_and_eight(init_and_step, config, steps=2, seed=7)
    device_equality.assert_runs_agree(runs, gan_networks(config))
    (_, states_1), (_, states_8) = runs
    # Batch statistics after one step, from the same parameters. After the second they include the biases
    # that a downstream batch norm cancels, whose values differ by what Adam made of rounding noise (above).
    for field in ("g_batch_stats", "d_batch_stats"):
        for a, b in zip(jax.tree.leaves(getattr(states_1[0], field)), jax.tree.leaves(getattr(states_8[0], field))):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=field)


def test_slerp_and_lerp_endpoints():
    start = jax.random.normal(jax.random.PRNGKey(0), (3, 8))
    end = jax.random.normal(jax.random.PRNGKey(1), (3, 8))
    weights = jnp.linspace(0, 1, 5)
    for fn in (latent_sampling.slerp, latent_sampling.lerp):
        path = np.asarray(fn(start, end, weights))
        assert path.shape == (3, 5, 8)
        np.testing.assert_allclose(path[:, 0], start, atol=1e-5)
        np.testing.assert_allclose(path[:, -1], end, atol=1e-5)
    # Between unit vectors slerp stays on the sphere; lerp cuts through it.
    unit_start, unit_end = (
        start / jnp.linalg.norm(start, axis=-1, keepdims=True),
        end / jnp.linalg.norm(end, axis=-1, keepdims=True),
    )
    np.testing.assert_allclose(
        np.linalg.norm(latent_sampling.slerp(unit_start, unit_end, weights), axis=-1), 1.0, rtol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(latent_sampling.slerp(start, start, weights)), np.repeat(start[:, None], 5, 1), atol=1e-5
    )


def test_stall_warning_after_patience_logs(cache_dir, caplog):
    config = tiny_config("dcgan", cache_dir)
    config.gan.stall_patience = 3
    method = methods.get_method(config)
    won = {"train/d_real": 0.99, "train/d_fake": 0.01}
    with caplog.at_level(logging.WARNING):
        (monitor,) = method.callbacks()
        monitor.on_log(100, won)
        monitor.on_log(200, won)
        monitor.on_log(300, {"train/d_real": 0.7, "train/d_fake": 0.3})  # Resets the count.
        for step in (400, 500):
            monitor.on_log(step, won)
        assert "GAN stall" not in caplog.text
        monitor.on_log(600, won)
    assert "GAN stall" in caplog.text and "since step 400" in caplog.text


def test_bad_gan_configs_raise_clear_errors(cache_dir):
    config = tiny_config("wgan_gp", cache_dir)
    config.model.d_normalization = "batch"
    with pytest.raises(ValueError, match="cannot use batch norm"):
        methods.get_method(config)
    config = tiny_config("resdcgan_cycle", cache_dir)
    config.gan.cycle_lambda = 0.0
    with pytest.raises(ValueError, match="cycle_lambda"):
        methods.get_method(config)
    config = tiny_config("dcgan", cache_dir)
    config.gan.diffaugment = "color,flip"
    with pytest.raises(ValueError, match="flip"):
        methods.get_method(config)


def test_wgan_gp_lazy_penalty_and_batch_fraction(cache_dir):
    config = tiny_config("wgan_gp", cache_dir)
    config.gan.n_critic = 1
    config.gan.gp_interval = 2
    config.gan.gp_batch_fraction = 0.25
    method, state, step, dataset, shardings = init_and_step(config, 1)
    assert [method.phase(s) for s in range(4)] == ["penalty", "no_penalty", "penalty", "no_penalty"]
    metrics = []
    for i in range(2):
        state, step_metrics = step(state, sharding.global_batch(dataset[i], shardings), jax.random.PRNGKey(i))
        metrics.append(jax.device_get(step_metrics))
    penalised, plain = metrics
    # Lazy: the penalty only on even steps, with weight gp_interval * gp_weight.
    expected = -penalised["train/wasserstein"] + 2 * config.gan.gp_weight * penalised["train/gp"]
    np.testing.assert_allclose(penalised["train/loss_d"], expected, rtol=1e-5)
    assert "train/gp" not in plain and "train/gp_grad_norm" not in plain
    np.testing.assert_allclose(plain["train/loss_d"], -plain["train/wasserstein"], rtol=1e-6)
    # The leading quarter of the batch (at least one example): the same interpolates as on those rows alone.
    real = jax.random.normal(jax.random.PRNGKey(0), (16, 4, 4, 3))
    fake = jax.random.normal(jax.random.PRNGKey(1), (16, 4, 4, 3))
    points = method.penalty_points(real, fake, jax.random.PRNGKey(2))
    from animejax.methods import losses

    np.testing.assert_array_equal(points, losses.random_interpolates(real[:4], fake[:4], jax.random.PRNGKey(2)))


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("gp_gradient", "numeric", "gp_gradient"),
        ("gp_interval", 0, "gp_interval"),
        ("gp_batch_fraction", 0.0, r"in \(0, 1\]"),
    ],
)
def test_bad_wgan_gp_penalty_options_raise_clear_errors(field, value, message, cache_dir):
    config = tiny_config("wgan_gp", cache_dir)
    config.gan[field] = value
    with pytest.raises(ValueError, match=message):
        methods.get_method(config)


def test_loop_previews_resume_gif_sample_and_eval(tmp_path, cache_dir, caplog):
    from animejax import inference, train

    config = tiny_config("resdcgan_cycle", cache_dir)
    config.gan.diffaugment = "color,translation,cutout"
    config.gan.cycle_image_lambda = 0.1
    config.train.num_steps, config.train.log_every = 4, 2
    config.train.sample_every, config.train.checkpoint_every = 2, 2
    if "metrics" in config.eval:  # Only the method's own evaluate(); the metrics module has its own tests.
        config.eval.metrics = ()
    workdir = str(tmp_path)
    config.train.num_steps = 2
    train.train_and_evaluate(config, workdir)
    config.train.num_steps = 4
    with caplog.at_level(logging.INFO):
        state = train.train_and_evaluate(config, workdir)  # Resumes at step 2 from the GANState checkpoint.
    assert "from step 2 (resumed)" in caplog.text
    assert int(state.step) == 4
    samples = sorted(os.listdir(os.path.join(workdir, "samples")))
    assert "samples_fixed_0000002.png" in samples and "samples_fixed_0000004.png" in samples
    assert "raw_fixed_0000004.png" in samples
    gif = progress_gif(workdir)
    with Image.open(gif) as animation:
        assert animation.n_frames == 2

    paths = inference.sample(config, workdir)
    assert {"samples", "interpolations", "individual"} <= set(paths)
    assert len(os.listdir(paths["individual"])) == config.sample.num_individual
    config.sample.num_individual = 2  # Sampling again with fewer: the folder holds exactly those.
    assert len(os.listdir(inference.sample(config, workdir)["individual"])) == 2
    assert all(os.path.exists(path) for path in paths.values())
    results = inference.evaluate(config, workdir)
    for key in ("eval/d_real", "eval/d_fake", "eval/pixel_mean_gap", "eval/pixel_std_gap"):
        assert np.isfinite(results[key]), key


def test_checkpoint_round_trip_of_a_state_with_empty_subtrees(tmp_path, cache_dir):
    # wgan_gp's layer-norm critic has no batch_stats and there is no encoder: {} subtrees must survive Orbax.
    from animejax import checkpoint

    config = tiny_config("wgan_gp", cache_dir)
    method = methods.get_method(config)
    abstract = jax.eval_shape(method.init_state, jax.random.PRNGKey(0), {"image": jnp.zeros((16, 32, 32, 3))})
    assert abstract.d_batch_stats == {} and abstract.e_params == {} and abstract.e_opt_state == {}
    leaves, treedef = jax.tree.flatten(abstract)
    state = jax.tree.unflatten(treedef, [jnp.full(x.shape, i % 7, x.dtype) for i, x in enumerate(leaves)])
    saver = checkpoint.Checkpointer(str(tmp_path), config)
    saver.save(3, state, force=True)
    saver.wait()
    saver.close()
    replicated = sharding.make_mesh(1).replicated
    restored = checkpoint.Checkpointer(str(tmp_path), config).restore_latest(
        jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract)
    )
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sample_returns_grid_strip_and_individual_images(cache_dir):
    config = tiny_config("dcgan", cache_dir)
    config.sample.interpolation = "lerp"
    method, state, _, _, _ = init_and_step(config, 1)
    out = method.sample(state, iter([]), jax.random.PRNGKey(0))
    grid, grid_columns = out.grids["samples"]
    strip, strip_columns = out.grids["interpolations"]
    assert grid.shape == (16, 32, 32, 3) and grid_columns == 4
    assert strip.shape == (config.sample.num_interpolations * config.sample.interpolation_steps, 32, 32, 3)
    assert strip_columns == config.sample.interpolation_steps
    assert out.individual.shape == (5, 32, 32, 3)
    assert np.abs(grid).max() <= 1.0
    preview = jax.jit(method.preview)(state, None, jax.random.PRNGKey(5))
    again = jax.jit(method.preview)(state, None, jax.random.PRNGKey(5))
    np.testing.assert_array_equal(np.asarray(preview["samples_fixed"]), np.asarray(again["samples_fixed"]))


# --- learning on real faces -----------------------------------------------------------------------------------


def test_dcgan_improves_sliced_wasserstein_on_real_faces(shared_faces, cache_dir):
    """The EMA generator's SWD (animejax.metrics.swd: Laplacian-pyramid 7x7 patches, 32 and 16 px levels) to 256
    held-out real faces falls well below its value at initialisation after 300 steps on 1,536 faces."""
    from animejax.metrics import swd

    paths = sources.list_images(shared_faces)[:1792]
    faces = decode_cache.cached_images(sources.ImageFolder(shared_faces, 32, paths=paths), cache_dir, 2)
    train_faces, held_out = faces[:1536], np.asarray(faces[1536:])
    config = load_config("dcgan", "quick")
    config.train.num_steps = 300
    config.mesh.num_devices = 1
    method = methods.get_method(config)
    dataset = pipeline.batch_dataset(train_faces, config.train.batch_size, 0, random_flip=True)
    state = jax.jit(method.init_state)(jax.random.PRNGKey(0), {"image": pipeline.to_model_range(dataset[0])})
    train_step = make_train_step(method, sharding.make_mesh(1))

    def distance(state):
        fake = method.generate_many(state, jax.random.PRNGKey(123), len(held_out))
        return swd.swd(held_out, fake, seed=0, patches_per_image=32, dir_repeats=2, dirs_per_repeat=64)["swd/mean"]

    before = distance(state)
    for i in range(config.train.num_steps):
        state, _ = train_step(state, {"image": jnp.asarray(dataset[i])}, jax.random.PRNGKey(i), {})
    after = distance(state)
    assert after < 0.6 * before, (before, after)
