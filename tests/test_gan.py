"""GAN networks, augmentation and methods: PyTorch parity, training, devices, sampling, real-face quality."""

import importlib.util
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from animejax import methods, sharding
from animejax.data import augment, pipeline, sources
from animejax.data import cache as decode_cache
from animejax.methods import gan
from animejax.models import dcgan, resdcgan
from animejax.progress_gif import progress_gif
from tests import device_equality
from tests.conftest import REPO
from tests.test_train import init_and_step

GAN_METHODS = ("dcgan", "resdcgan", "resdcgan_cycle", "wgan_gp")


def load_config(name: str, variant: str = ""):
    spec = importlib.util.spec_from_file_location(f"config_{name}", os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


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


# --- PyTorch parity of the DCGAN networks ---------------------------------------------------------------------


def _torch_dcgan(image_size, latent_dim, g_channels, d_channels, upsample):
    """The PyTorch DCGAN example's networks (NCHW), with a configurable up-sampling layer and conv biases."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    levels = dcgan.num_levels(image_size)
    channels = [g_channels * 2 ** (levels - 1 - i) for i in range(levels)]
    g_layers = [
        nn.ConvTranspose2d(latent_dim, channels[0], 4, 1, 0, bias=False),
        nn.BatchNorm2d(channels[0]),
        nn.ReLU(),
    ]
    for c_in, c_out in zip(channels, channels[1:] + [3]):
        if upsample == "transpose":
            g_layers.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1))
        else:
            g_layers += [nn.Conv2d(c_in, 4 * c_out, 3, 1, 1), nn.PixelShuffle(2)]
        if c_out != 3:
            g_layers += [nn.BatchNorm2d(c_out), nn.ReLU()]
    g_layers.append(nn.Tanh())
    d_layers, c_in = [], 3
    for level in range(levels):
        c_out = d_channels * 2**level
        d_layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=level == 0))
        if level > 0:
            d_layers.append(nn.BatchNorm2d(c_out))
        d_layers.append(nn.LeakyReLU(0.2))
        c_in = c_out
    d_layers.append(nn.Conv2d(c_in, 1, 4, 1, 0))
    return nn.Sequential(*g_layers).double(), nn.Sequential(*d_layers).double()


def _copy_to_torch(torch_net, params, stats):
    """Copies Flax variables into the torch Sequential, layer by layer in order.

    Kernel layouts: flax Conv HWIO -> torch Conv2d OIHW. flax `nn.ConvTranspose` (transpose_kernel=False) is a
    convolution of the dilated input with the kernel as stored; torch's ConvTranspose2d is the gradient of a
    convolution, i.e. that convolution with the kernel spatially flipped and in/out swapped: torch [I, O, H, W] =
    flax [H, W, I, O] flipped on H and W. The bias-free projection's kernel [z, 4*4*C] is torch's first
    ConvTranspose2d(z, C, 4, 1, 0) weight [z, C, 4, 4] (on a 1x1 input no flip arises).
    """
    import torch

    def tensor(x):
        return torch.from_numpy(np.asarray(x, np.float64).copy())

    convs = [(name, p) for name, p in params.items() if not name.startswith("BatchNorm")]
    convs.sort(key=lambda item: (item[0] != "project", item[0] == "logit", item[0]))
    norms = sorted((name for name in params if name.startswith("BatchNorm")), key=lambda n: int(n.split("_")[1]))
    conv_modules = [m for m in torch_net if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    norm_modules = [m for m in torch_net if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == len(conv_modules) and len(norms) == len(norm_modules)
    with torch.no_grad():
        for (name, p), module in zip(convs, conv_modules):
            if name == "project":
                z, c = p["kernel"].shape[0], module.weight.shape[1]
                module.weight.copy_(tensor(np.asarray(p["kernel"]).reshape(z, 4, 4, c).transpose(0, 3, 1, 2)))
                continue
            inner = p if "kernel" in p else next(iter(p.values()))  # Upsample2x_k/{ConvTranspose_0|Conv_0}.
            kernel = np.asarray(inner["kernel"])
            if isinstance(module, torch.nn.ConvTranspose2d):
                module.weight.copy_(tensor(kernel[::-1, ::-1].transpose(2, 3, 0, 1)))
            else:
                module.weight.copy_(tensor(kernel.transpose(3, 2, 0, 1)))
            if module.bias is not None:
                module.bias.copy_(tensor(inner["bias"]))
        for name, module in zip(norms, norm_modules):
            module.weight.copy_(tensor(params[name]["scale"]))
            module.bias.copy_(tensor(params[name]["bias"]))
            module.running_mean.copy_(tensor(stats[name]["mean"]))
            module.running_var.copy_(tensor(stats[name]["var"]))


def _random_stats(stats, seed):
    rng = np.random.default_rng(seed)
    return {
        name: {"mean": rng.normal(size=s["mean"].shape) * 0.1, "var": rng.uniform(0.5, 2.0, size=s["var"].shape)}
        for name, s in stats.items()
    }


@pytest.mark.parametrize("upsample", ["transpose", "subpixel"])
def test_dcgan_matches_pytorch_in_eval_and_train_mode(upsample):
    torch = pytest.importorskip("torch")
    size, latent, batch = 64, 100, 4
    generator = dcgan.Generator(size, latent, base_channels=8, upsample=upsample)
    discriminator = dcgan.Discriminator(size, base_channels=8)
    z = jax.random.normal(jax.random.PRNGKey(0), (batch, latent))
    images = jax.random.uniform(jax.random.PRNGKey(1), (batch, size, size, 3), minval=-1, maxval=1)
    g_vars = jax.jit(lambda: generator.init(jax.random.PRNGKey(2), z, train=False))()
    d_vars = jax.jit(lambda: discriminator.init(jax.random.PRNGKey(3), images, train=False))()
    g_vars = {"params": g_vars["params"], "batch_stats": _random_stats(g_vars["batch_stats"], 4)}
    d_vars = {"params": d_vars["params"], "batch_stats": _random_stats(d_vars["batch_stats"], 5)}
    torch_g, torch_d = _torch_dcgan(size, latent, 8, 8, upsample)
    _copy_to_torch(torch_g, g_vars["params"], g_vars["batch_stats"])
    _copy_to_torch(torch_d, d_vars["params"], d_vars["batch_stats"])
    z_torch = torch.from_numpy(np.asarray(z, np.float64))[:, :, None, None]
    images_torch = torch.from_numpy(np.asarray(images, np.float64)).permute(0, 3, 1, 2)

    def nhwc(t):
        return t.detach().permute(0, 2, 3, 1).numpy()

    # Eval mode: running statistics.
    torch_g.eval(), torch_d.eval()
    g_eval = jax.jit(lambda v, x: generator.apply(v, x, train=False))
    d_eval = jax.jit(lambda v, x: discriminator.apply(v, x, train=False))
    np.testing.assert_allclose(np.asarray(g_eval(g_vars, z)), nhwc(torch_g(z_torch)), atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(d_eval(d_vars, images)), torch_d(images_torch)[:, 0, 0, 0].detach(), atol=1e-5
    )

    # Train mode: batch statistics, and the running averages each framework updates.
    torch_g.train(), torch_d.train()
    for module, variables, inputs, torch_net, torch_in in (
        (generator, g_vars, z, torch_g, z_torch),
        (discriminator, d_vars, images, torch_d, images_torch),
    ):
        apply = jax.jit(lambda v, x, module=module: module.apply(v, x, train=True, mutable=["batch_stats"]))
        out, updates = apply(variables, inputs)
        expected = torch_net(torch_in)
        expected = nhwc(expected) if expected.shape[-1] == size else expected[:, 0, 0, 0].detach().numpy()
        np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)
        norms = [m for m in torch_net if isinstance(m, torch.nn.BatchNorm2d)]
        names = sorted(variables["batch_stats"], key=lambda n: int(n.split("_")[1]))
        for name, norm in zip(names, norms):
            new, old = updates["batch_stats"][name], variables["batch_stats"][name]
            np.testing.assert_allclose(np.asarray(new["mean"]), norm.running_mean.numpy(), atol=1e-5)
            # Flax averages the biased batch variance, torch the unbiased one (n = B*H*W values per channel).
            n = inputs.shape[0] * _bn_positions(module, name, size)
            flax_batch_var = (np.asarray(new["var"]) - 0.9 * old["var"]) / 0.1
            torch_batch_var = (norm.running_var.numpy() - 0.9 * old["var"]) / 0.1
            np.testing.assert_allclose(flax_batch_var * n / (n - 1), torch_batch_var, rtol=1e-4, atol=1e-6)


def _bn_positions(module, name, size):
    """H*W at the batch norm `BatchNorm_k`: G's k-th is at 4 * 2^k, D's k-th (after level k+1) at size / 2^(k+2)."""
    k = int(name.split("_")[1])
    side = 4 * 2**k if isinstance(module, dcgan.Generator) else size // 2 ** (k + 2)
    return side * side


def _output_shape(module, *inputs):
    """The output shape of init-then-apply, traced abstractly (no compilation)."""
    return jax.eval_shape(lambda: module.init_with_output(jax.random.PRNGKey(0), *inputs, train=False)[0]).shape


def test_dcgan_shapes_and_sizes():
    for size in (16, 32, 128):
        assert _output_shape(dcgan.Generator(size, 10, 4, "subpixel"), jnp.zeros((2, 10))) == (2, size, size, 3)
        assert _output_shape(dcgan.Discriminator(size, 4, "none"), jnp.zeros((2, size, size, 3))) == (2,)
    with pytest.raises(ValueError, match="4 times a power of two"):
        dcgan.num_levels(48)


def test_resdcgan_spectral_norm_converges_to_the_top_singular_value():
    d = resdcgan.Discriminator(16, 4, 16, "none", spectral_norm=True)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
    variables = jax.jit(lambda: d.init(jax.random.PRNGKey(1), x, train=False))()
    stats = variables["batch_stats"]
    apply = jax.jit(lambda s: d.apply({"params": variables["params"], "batch_stats": s}, x, mutable=["batch_stats"]))
    for _ in range(200):  # One power iteration per training forward pass.
        _, updates = apply(stats)
        stats = updates["batch_stats"]
    kernel = np.asarray(variables["params"]["ResBlockDown_1"]["_Linear_0"]["conv"]["kernel"])
    top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    sigma = stats["ResBlockDown_1"]["_Linear_0"]["SpectralNorm_0"]["conv/kernel/sigma"]
    np.testing.assert_allclose(float(sigma), top, rtol=1e-3)
    assert d.apply({"params": variables["params"], "batch_stats": stats}, x, train=False).shape == (2,)


def test_resdcgan_encoder_and_generator_shapes():
    for upsample in ("nearest", "subpixel", "transpose"):
        assert _output_shape(resdcgan.Generator(32, 12, 4, 16, upsample), jnp.zeros((2, 12))) == (2, 32, 32, 3)
    assert _output_shape(resdcgan.Encoder(32, 12, 4, 16), jnp.zeros((2, 32, 32, 3))) == (2, 12)
    for normalization in ("batch", "layer", "none"):
        d = resdcgan.Discriminator(32, 4, 16, normalization, spectral_norm=normalization == "none")
        assert _output_shape(d, jnp.zeros((2, 32, 32, 3))) == (2,)


# --- DiffAugment ----------------------------------------------------------------------------------------------


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
    results = []
    for devices in (1, 8):
        config = tiny_config(name, cache_dir)
        method, state, step, dataset, shardings = init_and_step(config, devices)
        history, states = [], []
        for i in range(2):  # Two steps: Adam's second update depends on gradient magnitudes, not only signs.
            state, metrics = step(state, sharding.global_batch(dataset[i], shardings), jax.random.PRNGKey(7 + i))
            history.append(metrics)
            states.append(jax.device_get(state))
        results.append((jax.device_get(history), states))
    (history_1, states_1), (history_8, states_8) = results
    device_equality.assert_metrics_agree(history_1, history_8)
    for step, (state_1, state_8) in enumerate(zip(states_1, states_8), start=1):
        device_equality.assert_networks_agree(state_1, state_8, gan_networks(config), step)
    # Batch statistics after one step, from the same parameters. After the second they include the biases
    # that a downstream batch norm cancels, whose values differ by what Adam made of rounding noise (above).
    for field in ("g_batch_stats", "d_batch_stats"):
        for a, b in zip(jax.tree.leaves(getattr(states_1[0], field)), jax.tree.leaves(getattr(states_8[0], field))):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=field)


def test_slerp_and_lerp_endpoints():
    start = jax.random.normal(jax.random.PRNGKey(0), (3, 8))
    end = jax.random.normal(jax.random.PRNGKey(1), (3, 8))
    weights = jnp.linspace(0, 1, 5)
    for fn in (gan.slerp, gan.lerp):
        path = np.asarray(fn(start, end, weights))
        assert path.shape == (3, 5, 8)
        np.testing.assert_allclose(path[:, 0], start, atol=1e-5)
        np.testing.assert_allclose(path[:, -1], end, atol=1e-5)
    # Between unit vectors slerp stays on the sphere; lerp cuts through it.
    unit_start, unit_end = (
        start / jnp.linalg.norm(start, axis=-1, keepdims=True),
        end / jnp.linalg.norm(end, axis=-1, keepdims=True),
    )
    np.testing.assert_allclose(np.linalg.norm(gan.slerp(unit_start, unit_end, weights), axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gan.slerp(start, start, weights)), np.repeat(start[:, None], 5, 1), atol=1e-5)


def test_stall_warning_after_patience_logs(cache_dir, caplog):
    config = tiny_config("dcgan", cache_dir)
    config.gan.stall_patience = 3
    method = methods.get_method(config)
    won = {"train/d_real": 0.99, "train/d_fake": 0.01}
    with caplog.at_level(logging.WARNING):
        method.on_log(100, won)
        method.on_log(200, won)
        method.on_log(300, {"train/d_real": 0.7, "train/d_fake": 0.3})  # Resets the count.
        for step in (400, 500):
            method.on_log(step, won)
        assert "GAN stall" not in caplog.text
        method.on_log(600, won)
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
    assert {"samples", "interpolations", "individual"} <= set(paths)  # "individual": a grid now, a folder later.
    assert all(os.path.exists(path) for path in paths.values())
    results = inference.evaluate(config, workdir)
    for key in ("eval/d_real", "eval/d_fake", "eval/pixel_mean_gap", "eval/pixel_std_gap"):
        assert np.isfinite(results[key]), key


def test_checkpoint_round_trip_of_a_state_with_empty_subtrees(tmp_path, cache_dir):
    # wgan_gp's layer-norm critic has no batch_stats and there is no encoder: {} subtrees must survive Orbax.
    from animejax import checkpoint

    config = tiny_config("wgan_gp", cache_dir)
    method = methods.get_method(config)
    abstract = jax.eval_shape(method.init_state, jax.random.PRNGKey(0), jnp.zeros((16, 32, 32, 3)))
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
    assert out["samples"].shape == (16, 32, 32, 3)
    assert out["interpolations"].shape == (
        config.sample.num_interpolations * config.sample.interpolation_steps,
        32,
        32,
        3,
    )
    assert out["individual"].shape == (5, 32, 32, 3) and method.individual_sample_keys == ("individual",)
    assert np.abs(out["samples"]).max() <= 1.0
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
    state = jax.jit(method.init_state)(jax.random.PRNGKey(0), pipeline.to_model_range(dataset[0]))
    step = jax.jit(lambda s, b, r: method.train_step(s, pipeline.to_model_range(b), r), donate_argnums=0)

    def distance(state):
        fake = method.generate_many(state, jax.random.PRNGKey(123), len(held_out))
        return swd.swd(held_out, fake, seed=0, patches_per_image=32, dir_repeats=2, dirs_per_repeat=64)["swd/mean"]

    before = distance(state)
    for i in range(config.train.num_steps):
        state, _ = step(state, jnp.asarray(dataset[i]), jax.random.PRNGKey(i))
    after = distance(state)
    assert after < 0.6 * before, (before, after)
