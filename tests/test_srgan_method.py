"""The SRGAN method: its phases against independent computations, crops, held-out metrics, devices, the
commands (train, sample, eval, upscale) and a short run on real faces that must beat bicubic upscaling."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from animejax import methods, run_setup
from animejax.data import degrade, pipeline
from animejax.errors import ConfigError, UserError
from animejax.methods import srgan
from tests import device_equality
from tests.test_train import init_and_step, load_config, run_cli


def tiny_config(cache_dir: str = "", **fields):
    """configs/srgan.py:quick at 32 px (8 px inputs), 8-channel networks, batch 8, pixel loss."""
    config = load_config("srgan", "quick")
    config.data.image_size = 32
    config.data.num_images = 96
    config.data.holdout_images = 16
    config.data.cache_dir = cache_dir
    config.mesh.num_devices = 1
    config.train.batch_size = 8
    config.model.channels, config.model.num_blocks, config.model.d_channels = 8, 1, 8
    config.srgan.pretrain_steps = 2
    config.sample.grid_size, config.sample.num_individual, config.eval.batch_size = 2, 3, 8
    for key, value in fields.items():
        group, name = key.split("__")
        config[group][name] = value
    return config


def _images(seed: int, count: int = 8, size: int = 32) -> jax.Array:
    return jax.random.uniform(jax.random.PRNGKey(seed), (count, size, size, 3), minval=-1, maxval=1)


@pytest.fixture(scope="module")
def tiny():
    method = methods.get_method(tiny_config())
    state = jax.jit(method.init_state)(jax.random.PRNGKey(1), {"image": _images(0)})
    return method, state


def test_phase_switches_at_pretrain_steps(tiny):
    method, _ = tiny
    assert [method.phase(step) for step in range(4)] == ["pixel", "pixel", "adversarial", "adversarial"]


def test_pixel_step_descends_pixel_mse_and_leaves_d_alone(tiny):
    method, state = tiny
    high = _images(2)
    low = method.low_resolution(high)
    new_state, metrics = jax.jit(method._pixel_step)(state, low, high, {}, jax.random.PRNGKey(0))
    upscaled, _ = method.generator(state.g_params, state.g_batch_stats, low, True)
    mse = float(np.mean((np.asarray(upscaled, np.float64) - np.asarray(high, np.float64)) ** 2))
    np.testing.assert_allclose(float(metrics["train/loss_pixel"]), mse, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["train/psnr"]), 10 * np.log10(4 / mse), rtol=1e-5)
    assert "train/loss_d" not in metrics
    for a, b in zip(jax.tree.leaves(new_state.d_params), jax.tree.leaves(state.d_params)):
        np.testing.assert_array_equal(a, b)
    after, _ = method.generator(new_state.g_params, state.g_batch_stats, low, True)
    assert float(jnp.mean(jnp.square(after - high))) < mse


def test_adversarial_step_with_only_pixel_weight_is_the_pixel_step(tiny):
    """G's gradient through the reused forward pass (jax.vjp) equals the direct gradient of the same loss."""
    method = methods.get_method(tiny_config(srgan__adversarial_weight=0.0))
    _, state = tiny
    high = _images(3)
    low = method.low_resolution(high)
    key = jax.random.PRNGKey(0)
    pixel_state, _ = jax.jit(method._pixel_step)(state, low, high, {}, key)
    adversarial_state, metrics = jax.jit(method._adversarial_step)(state, low, high, {}, key)
    for a, b in zip(jax.tree.leaves(adversarial_state.g_params), jax.tree.leaves(pixel_state.g_params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    changed = [not np.array_equal(a, b) for a, b in zip(*map(jax.tree.leaves, (adversarial_state, state)))]
    assert any(changed)
    assert set(metrics) >= {"train/loss_d", "train/d_real", "train/d_fake", "train/loss_g_adversarial"}


def test_adversarial_loss_moves_g_towards_what_d_calls_real(tiny):
    """With the pixel term off and a small step, G's update lowers its adversarial loss against the updated D."""
    method = methods.get_method(
        tiny_config(srgan__pixel_weight=0.0, srgan__adversarial_weight=1.0, optim__learning_rate=1e-5)
    )
    _, state = tiny
    high = _images(4)
    low = method.low_resolution(high)
    new_state, _ = jax.jit(method._adversarial_step)(state, low, high, {}, jax.random.PRNGKey(0))

    def adversarial_loss(g_params):  # As in the step: G and D with batch statistics.
        upscaled, _ = method.generator(g_params, state.g_batch_stats, low, True)
        logits, _ = method.discriminator(new_state.d_params, new_state.d_batch_stats, upscaled, True)
        return float(jnp.mean(jax.nn.softplus(-logits)))

    assert adversarial_loss(new_state.g_params) < adversarial_loss(state.g_params)


def test_total_variation_and_random_crops_against_numpy():
    images = np.asarray(_images(5, count=3, size=12), np.float64)
    expected = np.mean(np.diff(images, axis=1) ** 2) + np.mean(np.diff(images, axis=2) ** 2)
    np.testing.assert_allclose(float(srgan.total_variation(jnp.asarray(images))), expected, rtol=1e-5)
    crops = np.asarray(srgan.random_crops(jnp.asarray(images, jnp.float32), 5, jax.random.PRNGKey(0)))
    assert crops.shape == (3, 5, 5, 3)
    offsets = []
    for image, crop in zip(images.astype(np.float32), crops):
        found = [(i, j) for i in range(8) for j in range(8) if np.array_equal(image[i : i + 5, j : j + 5], crop)]
        assert len(found) == 1
        offsets.append(found[0])
    assert len(set(offsets)) > 1, "every image got the same crop"
    assert srgan.random_crops(jnp.asarray(images), 0, jax.random.PRNGKey(0)) is not None


def test_low_resolution_is_the_8_bit_antialiased_bicubic_downsample(tiny):
    method, _ = tiny
    high = _images(6)
    low = np.asarray(method.low_resolution(high))
    assert low.shape == (8, 8, 8, 3)
    expected = np.asarray(degrade.downsample(high, 4))
    levels = (low + 1) * 127.5
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # On the 256 levels of an 8-bit image.
    np.testing.assert_allclose(low, np.clip(expected, -1, 1), atol=1 / 127.5)


def test_evaluate_reports_psnr_and_ssim_beside_bicubic(tiny):
    method, state = tiny
    high = np.asarray(pipeline.quantize(_images(7)))
    results = method.evaluate(state, [{"image": high[:5]}, {"image": high[5:]}])
    assert results["eval/holdout_images"] == 8
    low = method.low_resolution(jnp.asarray(high))
    bicubic = np.asarray(pipeline.quantize(jnp.clip(degrade.upsample_bicubic(low, 4), -1, 1)), np.float64)
    mse = np.mean((bicubic - high) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(results["eval/bicubic_psnr"], np.mean(10 * np.log10(4 / mse)), rtol=1e-5)
    names = {f"eval/{p}{m}" for p in ("", "bicubic_") for m in ("psnr", "ssim", "psnr_y", "ssim_y")}
    assert names <= set(results)
    assert all(-1 <= results[n] <= 1 for n in names if "ssim" in n)
    with pytest.raises(ConfigError, match="holdout_images"):
        method.evaluate(state, [])


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="not divisible by model.scale"):
        methods.get_method(tiny_config(data__image_size=30))
    with pytest.raises(ConfigError, match="content_loss"):
        methods.get_method(tiny_config(srgan__content_loss="lpips"))
    with pytest.raises(ConfigError, match="larger than data.image_size"):
        methods.get_method(tiny_config(srgan__crop_size=64))
    with pytest.raises(ConfigError, match="power of two"):
        methods.get_method(tiny_config(model__scale=3, data__image_size=33)).init_state(
            jax.random.PRNGKey(0), {"image": _images(0, size=33)}
        )


def test_holdout_is_the_last_images_and_cannot_take_them_all():
    images = np.arange(10)
    train, held = run_setup.split_holdout(images, 4, process_count=2)
    np.testing.assert_array_equal(train, np.arange(8))
    np.testing.assert_array_equal(held, [8, 9])
    assert run_setup.split_holdout(images, 0)[1] is None
    with pytest.raises(UserError, match="holdout_images=10"):
        run_setup.split_holdout(images, 10)


def test_eight_devices_match_one_device(cache_dir):
    """Two pixel steps then two adversarial ones on 8 devices equal them on 1 (batch norm over the global
    batch); see tests/device_equality.py."""
    config = tiny_config(cache_dir)
    config.train.batch_size = 16
    # SRGAN's own learning rate: Adam's first steps move every element by about lr, also where the gradient is
    # rounding noise, so the :quick variant's 3e-3 would let the later steps' metrics drift apart by more than
    # the 1e-5 they are held to (tests/device_equality.py).
    config.optim.learning_rate = config.optim_d.learning_rate = 1e-4
    optim, optim_d = config.optim, config.optim_d
    networks = [
        device_equality.Network("g_params", "g_opt_state", optim.learning_rate, optim.b1, optim.b2),
        device_equality.Network("d_params", "d_opt_state", optim_d.learning_rate, optim_d.b1, optim_d.b2),
    ]
    runs = device_equality.run_on_one_and_eight(init_and_step, config, steps=4, seed=3)
    device_equality.assert_runs_agree(runs, networks)
    (_, states_1), (_, states_8) = runs
    # Running means carry the bias of the convolution before each batch norm, whose gradient is rounding noise
    # (the norm cancels it), so Adam moves it by up to ADAM_STEP_CAP * lr a step in either run.
    atol = device_equality.ADAM_STEP_CAP * optim.learning_rate * 4
    for a, b in zip(jax.tree.leaves(states_1[-1].g_batch_stats), jax.tree.leaves(states_8[-1].g_batch_stats)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=atol)


def _vgg_file(path: str) -> str:
    """A torchvision-format VGG19 state dict with random weights for the layers up to relu1_2."""
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    state = {
        "features.0.weight": torch.randn(64, 3, 3, 3, generator=generator) * 0.1,
        "features.0.bias": torch.zeros(64),
        "features.2.weight": torch.randn(64, 64, 3, 3, generator=generator) * 0.05,
        "features.2.bias": torch.zeros(64),
    }
    torch.save(state, path)
    return path


def test_vgg_content_loss_is_the_feature_mse(tmp_path):
    from animejax.pretrained import vgg as pretrained_vgg

    path = _vgg_file(str(tmp_path / "vgg19-dcbb9e9d.pth"))
    config = tiny_config(srgan__content_loss="vgg", srgan__vgg_layer="relu1_2", srgan__vgg_path=path)
    method = methods.get_method(config)
    frozen = method.frozen()
    state = jax.jit(method.init_state)(jax.random.PRNGKey(1), {"image": _images(0)})
    high = _images(8)
    low = method.low_resolution(high)
    _, metrics = jax.jit(method._adversarial_step)(state, low, high, frozen, jax.random.PRNGKey(0))
    module, variables = pretrained_vgg.load_vgg19(path, None, "relu1_2")
    upscaled, _ = method.generator(state.g_params, state.g_batch_stats, low, True)
    features = [np.asarray(module.apply(variables, x), np.float64) for x in (upscaled, high)]
    np.testing.assert_allclose(
        float(metrics["train/loss_content"]), np.mean((features[0] - features[1]) ** 2), rtol=1e-4
    )
    expected_g = sum(
        config.srgan[f"{name}_weight"] * float(metrics[f"train/loss_{key}"])
        for name, key in (("pixel", "pixel"), ("content", "content"), ("adversarial", "g_adversarial"))
    )
    np.testing.assert_allclose(float(metrics["train/loss_g"]), expected_g, rtol=1e-5)


def _cli(*args, timeout=600):
    return run_cli(list(args), timeout=timeout)


def _tiny_args(cache_dir: str) -> list[str]:
    return [
        "--config=configs/srgan.py:quick",
        f"--config.data.cache_dir={cache_dir}",
        "--config.data.image_size=32",
        "--config.data.num_images=96",
        "--config.data.holdout_images=16",
        "--config.model.channels=8",
        "--config.model.num_blocks=1",
        "--config.model.d_channels=8",
        "--config.train.batch_size=8",
        "--config.train.num_steps=4",
        "--config.srgan.pretrain_steps=2",
        "--config.train.log_every=2",
        "--config.train.sample_every=4",
        "--config.train.checkpoint_every=4",
        "--config.sample.grid_size=2",
        "--config.sample.num_individual=3",
        "--config.eval.batch_size=8",
        "--config.eval.num_images=16",
        "--config.eval.swd_num_images=16",
    ]


def test_missing_vgg_weights_fail_before_the_first_step(tmp_path, cache_dir):
    workdir = tmp_path / "run"
    missing = tmp_path / "nowhere" / "vgg19-dcbb9e9d.pth"
    result = _cli(
        *_tiny_args(cache_dir),
        f"--workdir={workdir}",
        "--config.srgan.content_loss=vgg",
        f"--config.srgan.vgg_path={missing}",
    )
    assert result.returncode != 0
    assert "animejax: error:" in result.stderr and str(missing) in result.stderr
    assert "vgg_path" in result.stderr and "download.pytorch.org" in result.stderr
    assert not (workdir / "checkpoints").exists() or not os.listdir(workdir / "checkpoints")


def test_train_sample_eval_and_upscale_commands(tmp_path, cache_dir):
    workdir, vae = tmp_path / "sr", tmp_path / "vae"
    assert _cli(*_tiny_args(cache_dir), f"--workdir={workdir}").returncode == 0
    sample = _cli("--mode=sample", f"--workdir={workdir}")
    assert sample.returncode == 0, sample.stderr[-2000:]
    grid = Image.open(workdir / "samples" / "sample_comparison_0000004.png")
    assert grid.size == (4 * 32 + 5 * 2, 2 * 32 + 3 * 2) or grid.size[0] > grid.size[1]
    assert len(os.listdir(workdir / "samples" / "sample_individual_0000004")) == 3

    evaluation = _cli("--mode=eval", f"--workdir={workdir}", "--config.eval.metrics=swd")
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]
    report = json.loads((workdir / "eval_0000004.json").read_text())["metrics"]
    assert report["eval/holdout_images"] == 16
    assert {"eval/psnr", "eval/bicubic_psnr", "eval/ssim", "eval/bicubic_ssim", "eval/swd16/mean"} <= set(report)

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 12, 3), np.uint8)).save(inputs / "wide.png")
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(inputs / "small.png")
    (inputs / "broken.png").write_bytes(b"not an image")
    upscaled = _cli("--mode=upscale", f"--workdir={workdir}", f"--config.upscale.input={inputs}")
    assert upscaled.returncode == 0, upscaled.stderr[-2000:]
    assert "broken.png" in upscaled.stderr  # Skipped with a warning; the others are written.
    assert Image.open(workdir / "upscaled" / "wide.png").size == (48, 80)
    assert Image.open(workdir / "upscaled" / "small.png").size == (32, 32)
    assert Image.open(workdir / "upscaled" / "small_compare.png").size[0] > 3 * 32

    # Samples of another trained run (a VAE at 8 px, so 32 px after 4x), upscaled.
    vae_args = ["--config=configs/vae.py:quick", f"--config.data.cache_dir={cache_dir}", "--config.data.image_size=8"]
    vae_args += ["--config.data.num_images=64", "--config.train.num_steps=2", "--config.train.batch_size=8"]
    assert _cli(*vae_args, f"--workdir={vae}").returncode == 0
    from_run = _cli(
        "--mode=upscale",
        f"--workdir={workdir}",
        f"--config.upscale.from_run={vae}",
        "--config.upscale.num_images=5",
        f"--config.upscale.output_dir={tmp_path / 'from_vae'}",
    )
    assert from_run.returncode == 0, from_run.stderr[-2000:]
    written = sorted(name for name in os.listdir(tmp_path / "from_vae") if not name.endswith("_compare.png"))
    assert written == [f"sample_{i:06d}.png" for i in range(5)]
    assert Image.open(tmp_path / "from_vae" / "sample_000000.png").size == (32, 32)

    neither = _cli("--mode=upscale", f"--workdir={workdir}")
    assert neither.returncode != 0 and "upscale.input" in neither.stderr
    not_sr = _cli("--mode=upscale", f"--workdir={vae}", f"--config.upscale.input={inputs}")
    assert not_sr.returncode != 0 and "no field 'upscale'" in not_sr.stderr  # A VAE run has no upscale group.


def test_pixel_phase_beats_bicubic_on_held_out_real_faces(shared_faces, tmp_path, cache_dir):
    """24 -> 96 px at 4x on the real faces: after a short pixel phase, SRResNet's held-out PSNR is above
    bicubic upscaling's (on the same 8-bit inputs)."""
    faces = tmp_path / "faces"  # The first 1,088 faces: 1,024 to train on, the last 64 held out.
    faces.mkdir()
    for name in sorted(os.listdir(shared_faces))[:1088]:
        os.symlink(os.path.join(shared_faces, name), faces / name)
    config = load_config("srgan", "quick")
    config.data.source, config.data.path, config.data.cache_dir = "folder", str(faces), cache_dir
    config.data.holdout_images = 64
    config.mesh.num_devices = 1
    config.train.num_steps = config.srgan.pretrain_steps = 500
    config.train.log_every, config.train.sample_every, config.train.checkpoint_every = 100, 1000, 1000
    from animejax import inference, train

    train.train_and_evaluate(config, str(tmp_path / "run"))
    run = run_setup.setup_run(config, str(tmp_path / "run"))
    results = inference.method_terms(run, run.state)
    assert results["eval/holdout_images"] == 64
    assert results["eval/psnr"] > results["eval/bicubic_psnr"], results
