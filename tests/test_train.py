"""The training loop end to end: resume, sharding, bad input, learning on real faces."""

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from animejax import checkpoint, methods, sharding, train
from animejax.data import pipeline
from animejax.methods.base import make_train_step, place_frozen
from tests import device_equality
from tests.conftest import REPO, subprocess_env


def load_config(name: str, variant: str = ""):
    spec = importlib.util.spec_from_file_location(f"config_{name}", os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def tiny_config(cache_dir: str, **train_fields):
    """A VAE small enough for a few CPU steps a second, on 1 device."""
    config = load_config("vae", "quick")
    config.data.num_images = 256
    config.data.cache_dir = cache_dir
    config.mesh.num_devices = 1
    config.train.batch_size = 16
    config.train.num_steps = 6
    config.train.log_every = 2
    config.train.sample_every = 1000
    config.train.checkpoint_every = 2
    for key, value in train_fields.items():
        setattr(config.train, key, value)
    return config


def restore_params(workdir: str, step: int):
    manager = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"), item_handlers={"state": ocp.StandardCheckpointHandler()}
    )
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return restored["state"]


def assert_same_checkpoint(workdir_a, workdir_b, step: int) -> None:
    """The two runs' checkpoints at `step` are bit-identical: every array of the state (parameters, EMA,
    optimizer, key, step and any method's running values)."""
    a, b = restore_params(str(workdir_a), step), restore_params(str(workdir_b), step)
    leaves_a, leaves_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [path for path, _ in leaves_a] == [path for path, _ in leaves_b]
    assert len(leaves_a) > 3
    for (path, x), (_, y) in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def start_cli(args) -> subprocess.Popen:
    """The command line started in the background, its output discarded (for runs a test kills)."""
    return subprocess.Popen(
        [sys.executable, "-m", "animejax.main", *args],
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_cli(args, timeout=600, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "animejax.main", *args],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def test_readme_main_command_quick_form(tmp_path, cache_dir):
    workdir = tmp_path / "run"
    overrides = [
        f"--config.data.cache_dir={cache_dir}",
        "--config.train.num_steps=40",
        "--config.train.log_every=20",
        "--config.train.sample_every=20",
        "--config.train.checkpoint_every=20",
    ]
    result = run_cli(["--config=configs/vae.py:quick", f"--workdir={workdir}", *overrides])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step 40/40" in result.stdout and "img/s" in result.stdout and "ETA" in result.stdout
    assert sorted(os.listdir(workdir / "checkpoints")) == ["20", "40"]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(workdir))
    samples = os.listdir(workdir / "samples")
    assert "reconstructions_0000040.png" in samples and "samples_normal_0000040.png" in samples
    assert json.loads((workdir / "config.json").read_text())["method"] == "vae"

    result = run_cli([f"--workdir={workdir}", "--mode=sample"])
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("samples_normal", "samples_latent_gaussian", "interpolations"):
        assert f"sample_{name}_0000040.png" in os.listdir(workdir / "samples")

    # No --config: the saved config, with overrides on top of it.
    result = run_cli([f"--workdir={workdir}", "--mode=eval", "--config.eval.swd_num_images=128"])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((workdir / "eval_0000040.json").read_text())
    assert report["step"] == 40 and np.isfinite(report["metrics"]["eval/mse_per_pixel"])
    assert report["metrics"]["eval/swd128/mean"] > 0
    # Only SWD ran: the report names no Inception weights, resize or detector.
    assert not {"resize", "inception_weights", "detector"} & set(report["settings"]), report["settings"]


def test_tensorboard_events_hold_scalars_and_images(tmp_path, cache_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config(cache_dir, sample_every=6)
    train.train_and_evaluate(config, str(tmp_path))
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("train/loss", "train/kl", "train/learning_rate", "perf/images_per_second", "perf/step_seconds"):
        assert tag in tags["scalars"], tags
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6]
    assert "samples/reconstructions" in tags["images"]


RESUME_CASES = {
    # Big enough that 10 steps take seconds, so the kill lands between checkpoint 10 and the end.
    "vae": ["--config=configs/vae.py:quick", "--config.data.image_size=64", "--config.train.batch_size=32"],
    "ddpm": [
        "--config=configs/ddpm.py:quick",
        "--config.train.batch_size=16",
        "--config.model.dropout=0.1",  # Dropout masks must resume exactly too.
        "--config.model.base_channels=16",
        "--config.model.num_groups=4",
        "--config.sample.grid_size=2",  # The last step's preview runs the sampler.
    ],
    # R1 and path length on steps 0, 8 and 16 (two compiled phases, not three), ADA moving p: its state and pl_mean
    # must resume too.
    "stylegan2": [
        "--config=configs/stylegan2.py:quick",
        "--config.train.batch_size=8",
        "--config.stylegan.ada_kimg=1",
        "--config.stylegan.r1_interval=8",
        "--config.stylegan.pl_interval=8",
        "--config.sample.grid_size=2",
    ],
    "stylegan3": [  # StyleGAN3-R: the magnitude averages, the fading D blur (over the kill) and ADA's p resume.
        "--config=configs/stylegan3.py:r_quick",
        "--config.train.batch_size=8",
        "--config.model.channel_base=256",
        "--config.model.channel_max=16",
        "--config.model.num_layers=4",
        "--config.stylegan.blur_fade_kimg=0.12",
        "--config.stylegan.ada_kimg=1",
        "--config.stylegan.r1_interval=8",
        "--config.sample.grid_size=2",
    ],
    "srgan": [  # Pixel phase to step 15, then adversarial: the kill at 10 resumes before the switch.
        "--config=configs/srgan.py:quick",
        "--config.data.image_size=64",
        "--config.data.holdout_images=16",
        "--config.srgan.pretrain_steps=15",
        "--config.train.batch_size=8",
        "--config.sample.grid_size=2",
    ],
}


@pytest.mark.parametrize("name", sorted(RESUME_CASES))
def test_exact_resume_after_sigkill(name, tmp_path, cache_dir):
    args = [
        *RESUME_CASES[name],
        f"--config.data.cache_dir={cache_dir}",
        "--config.data.num_images=512",
        "--config.train.num_steps=20",
        "--config.train.checkpoint_every=10",
        "--config.train.log_every=5",
        "--config.train.sample_every=1000",
    ]
    straight = tmp_path / "straight"
    assert run_cli([*args, f"--workdir={straight}"]).returncode == 0

    killed = tmp_path / "killed"
    process = start_cli([*args, f"--workdir={killed}"])
    marker = killed / "checkpoints" / "10" / "commit_success.txt"
    deadline = time.monotonic() + 300
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert marker.exists(), "the run never wrote checkpoint 10"
    assert not (killed / "checkpoints" / "20").exists(), "the run finished before it could be killed"

    resumed = run_cli([*args, f"--workdir={killed}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "from step 10 (resumed)" in resumed.stderr
    # Its train step came from the compilation cache the first two processes filled (tests/conftest.py).
    assert "Loaded a compiled program from the compilation cache" in resumed.stderr
    assert_same_checkpoint(straight, killed, 20)


def _latest_committed(workdir) -> int:
    """The newest step whose checkpoint is complete on disk (0 when none)."""
    folder = workdir / "checkpoints"
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    return max((int(n) for n in names if n.isdigit() and (folder / n / "commit_success.txt").exists()), default=0)


def test_random_sigkills_and_a_damaged_checkpoint_still_end_bit_identical(tmp_path, cache_dir):
    """Five SIGKILLs at random moments of a run saving every step (so several land during saves), then the newest
    checkpoint damaged: the finished run equals the uninterrupted one bit for bit."""
    args = [
        "--config=configs/vae.py:quick",
        f"--config.data.cache_dir={cache_dir}",
        "--config.data.num_images=256",
        "--config.train.batch_size=16",
        "--config.train.num_steps=40",
        "--config.train.checkpoint_every=1",
        "--config.train.log_every=10",
        "--config.train.sample_every=1000",
    ]
    straight = tmp_path / "straight"
    assert run_cli([*args, f"--workdir={straight}"]).returncode == 0
    killed, rng, kills = tmp_path / "killed", np.random.default_rng(0), 0
    while kills < 5:
        before = _latest_committed(killed)
        process = start_cli([*args, f"--workdir={killed}"])
        deadline = time.monotonic() + 300
        while _latest_committed(killed) <= before and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.25))  # Saves run every step: many of these moments fall inside one.
        if process.poll() is not None:
            break  # It finished before this kill: the run is too fast for more.
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
    assert kills == 5, f"only {kills} kills before the run finished"
    newest = _latest_committed(killed)
    assert 0 < newest < 40
    _damage(killed / "checkpoints" / str(newest), "truncated_data")
    finished = run_cli([*args, f"--workdir={killed}"])
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"Checkpoint step {newest} is damaged" in finished.stderr
    assert_same_checkpoint(straight, killed, 40)


def test_sigterm_saves_a_checkpoint_and_stops(tmp_path, cache_dir):
    args = [
        "--config=configs/vae.py:quick",
        f"--config.data.cache_dir={cache_dir}",
        "--config.data.num_images=512",
        "--config.train.num_steps=100000",
        "--config.train.checkpoint_every=100000",
        "--config.train.log_every=5",
        f"--workdir={tmp_path}",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "animejax.main", *args],
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:  # Wait until training is under way.
        if line.startswith("step 10/"):
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == train.INTERRUPTED_EXIT_CODE == 75, stderr[-3000:]  # Resumable, not finished.
    assert "Received SIGTERM" in stderr
    steps = os.listdir(tmp_path / "checkpoints")
    assert len(steps) == 1 and int(steps[0]) >= 10


def test_checkpoint_from_another_config_names_the_field(tmp_path, cache_dir):
    train.train_and_evaluate(tiny_config(cache_dir, num_steps=2), str(tmp_path))
    changed = tiny_config(cache_dir, num_steps=4)
    changed.model.latent_dim = 8
    with pytest.raises(checkpoint.CheckpointMismatchError, match=r"model\.latent_dim: 32 -> 8") as error:
        train.train_and_evaluate(changed, str(tmp_path))
    assert "params/encoder/Dense_0/kernel" in str(error.value)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]  # Nothing overwritten.


def _damage(step_dir, kind: str) -> None:
    state = step_dir / "state"
    if kind == "truncated_data":
        files = [p for p in state.rglob("*") if p.is_file() and "/d/" in str(p)]
        largest = max(files, key=lambda p: p.stat().st_size)
        largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])
    elif kind == "empty_metadata":
        (state / "_METADATA").write_bytes(b"")
    else:
        (state / "_METADATA").unlink()


@pytest.fixture(scope="module")
def straight_six_steps(tmp_path_factory, cache_dir):
    """A VAE run straight to step 6 (checkpoints every 2 steps), the reference for resumed runs."""
    workdir = tmp_path_factory.mktemp("straight_six")
    train.train_and_evaluate(tiny_config(cache_dir, num_steps=6), str(workdir))
    return restore_params(str(workdir), 6)


@pytest.mark.parametrize("kind", ["truncated_data", "empty_metadata", "deleted_metadata"])
def test_damaged_latest_checkpoint_resumes_from_the_previous_one(kind, tmp_path, cache_dir, caplog, straight_six_steps):
    train.train_and_evaluate(tiny_config(cache_dir, num_steps=4), str(tmp_path))
    _damage(tmp_path / "checkpoints" / "4", kind)
    with caplog.at_level(logging.WARNING):
        state = train.train_and_evaluate(tiny_config(cache_dir, num_steps=6), str(tmp_path))
    assert "Checkpoint step 4 is damaged" in caplog.text and "resuming from step 2 instead" in caplog.text
    assert "does not fit this config" not in caplog.text
    (aside,) = os.listdir(tmp_path / "checkpoints_damaged")  # Moved aside, not deleted.
    assert aside.startswith("4-") and (tmp_path / "checkpoints_damaged" / aside / "state").is_dir()
    assert int(state.step) == 6
    resumed = restore_params(str(tmp_path), 6)
    for x, y in zip(jax.tree.leaves(straight_six_steps["params"]), jax.tree.leaves(resumed["params"])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_every_checkpoint_damaged_is_one_clear_error(tmp_path, cache_dir):
    train.train_and_evaluate(tiny_config(cache_dir, num_steps=4), str(tmp_path))
    for step in ("2", "4"):
        _damage(tmp_path / "checkpoints" / step, "empty_metadata")
    with pytest.raises(checkpoint.DamagedCheckpointsError, match="can be read.*step 4: unreadable metadata"):
        train.train_and_evaluate(tiny_config(cache_dir, num_steps=6), str(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]  # Nothing moved or deleted.


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, cache_dir):
    exploding = tiny_config(cache_dir, num_steps=10, log_every=1)
    exploding.optim.learning_rate = 1e30
    with pytest.raises(train.NonFiniteLossError, match="no checkpoint had been written yet"):
        train.train_and_evaluate(exploding, str(tmp_path / "fresh"))
    train.train_and_evaluate(tiny_config(cache_dir, num_steps=4), str(tmp_path))
    with pytest.raises(train.NonFiniteLossError, match=r"the last good checkpoint \(step 4\) is kept"):
        train.train_and_evaluate(exploding, str(tmp_path))
    assert checkpoint.Checkpointer(str(tmp_path), exploding).latest_step() == 4
    state = restore_params(str(tmp_path), 4)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state["params"]))


def test_batch_that_devices_cannot_split(tmp_path, cache_dir):
    config = tiny_config(cache_dir)
    config.mesh.num_devices = 8
    config.train.batch_size = 12
    with pytest.raises(sharding.BatchSizeError, match="batch_size=12 cannot be split over 8 devices.*8 or 16"):
        train.train_and_evaluate(config, str(tmp_path))


def test_cli_reports_bad_input_without_traceback(tmp_path):
    result = run_cli(["--config=configs/vae.py:quick", f"--workdir={tmp_path}", "--config.train.bogus=1"])
    assert result.returncode != 0 and "has no field 'bogus' in train" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli(
        [
            "--config=configs/vae.py:quick",
            f"--workdir={tmp_path}",
            "--config.data.source=folder",
            f"--config.data.path={tmp_path / 'missing'}",
        ]
    )
    assert result.returncode != 0 and "missing' does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli([f"--workdir={tmp_path / 'fresh'}", "--mode=sample", "--config=configs/vae.py:quick"])
    assert result.returncode != 0 and "No checkpoint under" in result.stderr
    assert not (tmp_path / "fresh").exists()  # Sampling a missing run creates nothing.
    assert result.stderr.count("No checkpoint under") == 1  # A user error is printed once.


def test_bad_command_lines_are_one_clear_line(tmp_path):
    """An unknown variant, a missing config file, a --workdir that is a file, upscaling with a VAE: one line each."""
    (tmp_path / "a_file").write_text("not a folder")
    cases = [
        (["--config=configs/vae.py:slow"], "animejax: error: Unknown variant 'slow' for configs/vae.py; choose one of"),
        (["--config=configs/vea.py"], "animejax: error: No config file 'configs/vea.py': pass a config file path"),
        (["--config=vae:quick", f"--workdir={tmp_path / 'a_file'}"], "a_file' is a file; give a folder"),
        (["--config=vae:quick", "--mode=upscale"], "--mode=upscale needs a trained SRGAN run in --workdir;"),
    ]
    for args, message in cases:
        args = args if any(a.startswith("--workdir") for a in args) else [*args, f"--workdir={tmp_path / 'run'}"]
        result = run_cli(args)
        assert result.returncode == 1 and message in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr and result.stderr.count(message) == 1
    assert not (tmp_path / "run").exists() and (tmp_path / "a_file").read_text() == "not a folder"


def test_a_bug_in_a_users_config_file_keeps_its_traceback(tmp_path):
    """Only the config's own ConfigError is shortened: a user's broken config file shows where it broke."""
    config_file = tmp_path / "mine.py"
    config_file.write_text("def get_config():\n    raise RuntimeError('typo in my config')\n")
    result = run_cli([f"--config={config_file}", f"--workdir={tmp_path / 'run'}"])
    assert result.returncode == 1 and "Traceback" in result.stderr and "typo in my config" in result.stderr


BAD_VALUES = [
    ("vae", "--config.train.batch_size=abc", "--config.train.batch_size=abc: invalid literal for int()"),
    ("vae", "--config.train.batch_size=0", "train.batch_size=0: must be at least 1"),
    ("vae", "--config.train.batch_size=-4", "train.batch_size=-4: must be at least 1"),
    ("vae", "--config.data.image_size=7", "data.image_size=7: must be at least 8"),
    ("vae", "--config.mesh.num_devices=4", "mesh.num_devices=4: only 1 device(s) are visible"),
    ("vae", "--config.ema.decay=1.5", "ema.decay=1.5: must be a number in [0.0, 1.0)"),
    ("vae", "--config.train.time_budget_s=-60", "train.time_budget_s=-60.0: must be a number in [0.0, inf)"),
    ("dcgan", "--config.data.image_size=48", "data.image_size=48 with model"),
    ("vae", "--config.eval.metrics=swd,fd", "eval.metrics=swd,fd: Unknown metric(s) ['fd']; choose from fid, fid_i2v"),
    ("vae", "--config.eval.swd_num_images=0", "eval.swd_num_images=0: must be at least 1"),
    ("vae", "--config.eval.kid_subset_size=1", "eval.kid_subset_size=1: must be at least 2"),
    ("vae", "--config.data.source=tfds", "data.source=tfds needs data.path: a TFDS dataset name"),
]


@pytest.mark.parametrize("model,override,message", BAD_VALUES)
def test_bad_values_are_one_clear_line_and_touch_nothing(model, override, message, tmp_path):
    workdir = tmp_path / "run"
    result = run_cli([f"--config=configs/{model}.py:quick", f"--workdir={workdir}", override])
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and result.stderr.count(message) == 1
    assert not (workdir / "checkpoints").exists()


def init_and_step(config, num_devices: int):
    """(method, initial state, step, batches, shardings) on `num_devices` devices, as the loop builds them.

    `step(state, uint8 images, rng)` is the loop's `make_train_step` with the images as the batch's "image" and
    the method's frozen networks placed once.
    """
    shardings = sharding.make_mesh(num_devices)
    method = methods.get_method(config)
    images, _ = pipeline.load_images(config.data)
    dataset = pipeline.batch_dataset(images, config.train.batch_size, config.seed, config.data.random_flip)
    state = jax.jit(method.init_state, out_shardings=shardings.replicated)(
        jax.random.PRNGKey(0), {"image": pipeline.to_model_range(dataset[0])}
    )
    train_step, frozen = make_train_step(method, shardings), place_frozen(method, shardings)

    def step(state, images, rng):
        return train_step(state, {"image": images}, rng, frozen)

    return method, state, step, dataset, shardings


def test_eight_devices_match_one_device(cache_dir):
    """Three steps on 8 devices equal three on 1: metrics, gradients, parameters; see tests/device_equality.py."""
    assert len(jax.devices()) == 8, "conftest sets 8 simulated CPU devices"
    config = tiny_config(cache_dir)
    optim = config.optim
    network = device_equality.Network("params", "opt_state", optim.learning_rate, optim.b1, optim.b2, "ema_params")
    runs = device_equality.run_on_one_and_eight(init_and_step, config, steps=3)
    device_equality.assert_runs_agree(runs, [network])


def test_vae_learns_on_real_faces(shared_faces, cache_dir, tmp_path):
    config = load_config("vae", "quick")
    config.data.source, config.data.path, config.data.cache_dir = "folder", shared_faces, cache_dir
    config.mesh.num_devices = 1
    config.sample.use_ema = False
    config.train.num_steps = 300
    config.train.checkpoint_every = 300
    config.train.sample_every = 300
    run = train.setup_run(config, str(tmp_path / "untrained"))
    some_faces = [
        {"image": pipeline.to_model_range(run.images[i : i + 64])}
        for i in range(len(run.images) - 512, len(run.images), 64)
    ]
    before = run.method.evaluate(run.state, some_faces)["eval/mse_per_pixel"]
    state = train.train_and_evaluate(config, str(tmp_path / "trained"))
    after = run.method.evaluate(state, some_faces)["eval/mse_per_pixel"]
    assert after < 0.4 * before, (before, after)


def test_time_budget_ends_the_run_complete_and_resumes_bit_exact(tmp_path, cache_dir, straight_six_steps):
    from animejax import training_clock
    from animejax.report import runs as runs_lib

    state = train.train_and_evaluate(tiny_config(cache_dir, num_steps=6, time_budget_s=1e-6), str(tmp_path))
    assert int(state.step) == 1  # The first step's compilation alone spends the budget.
    assert checkpoint.Checkpointer(str(tmp_path), tiny_config(cache_dir)).latest_step() == 1
    record = training_clock.read_record(str(tmp_path))
    assert record["budget_spent_at_step"] == 1 and record["seconds_at_step"]["1"] > 0
    assert runs_lib.load_run(str(tmp_path), "budget").status() == "complete (time budget spent at step 1 of 6)"

    again = train.train_and_evaluate(tiny_config(cache_dir, num_steps=6, time_budget_s=1e-6), str(tmp_path))
    assert int(again.step) == 1  # Spent: the rerun trains nothing.

    # A raised budget (here none) trains on to num_steps, exactly as a run that never stopped.
    state = train.train_and_evaluate(tiny_config(cache_dir, num_steps=6), str(tmp_path))
    assert int(state.step) == 6
    record = training_clock.read_record(str(tmp_path))
    assert record["budget_spent_at_step"] is None
    seconds = [record["seconds_at_step"][str(step)] for step in (1, 2, 4, 6)]
    assert seconds == sorted(seconds)
    assert runs_lib.load_run(str(tmp_path), "budget").status() == "complete"
    resumed = restore_params(str(tmp_path), 6)
    for x, y in zip(jax.tree.leaves(straight_six_steps["params"]), jax.tree.leaves(resumed["params"])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_training_clock_counts_over_sessions_without_side_work(tmp_path, monkeypatch):
    from animejax import training_clock

    now = [100.0]
    monkeypatch.setattr(training_clock.time, "monotonic", lambda: now[0])
    first = training_clock.TrainingClock(str(tmp_path), 0, budget_s=8.0)
    now[0] += 5.0
    first.save(2)
    second = training_clock.TrainingClock(str(tmp_path), 2, budget_s=8.0)  # Resumed from step 2: 5 s spent.
    now[0] += 2.0
    assert second.seconds() == pytest.approx(7.0) and not second.budget_spent()
    now[0] += 10.0
    second.pause(10.0)  # An evaluation: not training time.
    assert not second.budget_spent()
    now[0] += 1.5
    assert second.seconds() == pytest.approx(8.5) and second.budget_spent()
    assert not training_clock.TrainingClock(str(tmp_path), 2, budget_s=0.0).budget_spent()  # 0: no budget.


def test_comma_separated_list_overrides_become_tuples():
    from absl import flags
    from ml_collections import config_flags

    from animejax.main import split_comma_lists

    argv = ["x", f"--config={REPO}/configs/vae.py:quick", "--config.eval.metrics=swd, detection"]
    argv += ["--config.eval.train_metrics=swd", "--config.data.path=a,b"]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=values, sys_argv=argv)
    values(argv)
    assert values.config.eval.metrics == ("swd, detection",)  # What ml_collections alone makes of it.
    config = split_comma_lists(values.config)
    assert config.eval.metrics == ("swd", "detection") and config.eval.train_metrics == ("swd",)
    assert config.data.path == "a,b"  # Strings stay strings.
