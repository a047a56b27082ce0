"""Several processes in one run: 2 processes x 4 simulated CPU devices on 127.0.0.1 train and evaluate as one
process with 8 does, write logs once, save and resume their checkpoints together, and stop together, quickly
and clearly, when one of them dies.

The one-process references run in this test process (conftest gives it 8 devices) with the data the two
processes see: process p reads every second image from p and draws its own batches of 8 from them (the data
pipeline's shards), so step k's global batch is process 0's k-th local batch followed by process 1's.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from animejax import multihost, sharding, train
from animejax.data import pipeline
from animejax.pretrained import inception as pretrained_inception
from tests import device_equality, multihost_eval
from tests.conftest import REPO, subprocess_env
from tests.test_gan import gan_networks
from tests.test_train import load_config

# Run alone (the README's test command runs these after the parallel part): the silence timeout and exit bounds
# below assume the runs' processes have the cores to themselves, and in one run beside another test worker
# (2026-12-08, 2 cores) process 0 aborted in a gloo collective instead of reporting its stopped peer.
pytestmark = pytest.mark.serial

PROCESSES, DEVICES_PER_PROCESS = 2, 4
LAUNCHER = os.path.join(REPO, "launch", "local", "multiprocess.sh")
RUN_TIMEOUT_S = 300  # A hang fails the test instead of blocking CI.
EXIT_BOUND_S = 60  # How soon the survivor of a SIGKILL must be gone.
TIMEOUT_S = 10  # --distributed_timeout_s of the runs here: how long a silent process may stay silent.

COMMON = {  # Every training run here: tiny, quick to compile, a log line and TensorBoard scalars every step.
    "data.num_images": multihost_eval.NUM_IMAGES,
    "train.batch_size": 16,
    "train.log_every": 1,
    "train.sample_every": 1000,
    "eval.every_steps": 0,
    "sample.grid_size": 2,
    "train.checkpoint_every": 10,
    "checkpoint.max_to_keep": 10,
}
RUNS = {
    # 50 steps, checkpoints every 10: the reference matches the first 10, three interruptions land after them.
    "vae": ("vae", "cpu", {"model.base_channels": 8, "model.max_channels": 16, "model.latent_dim": 8}, 50),
    "dcgan": ("dcgan", "cpu", {"model.g_channels": 8, "model.d_channels": 8, "model.latent_dim": 16}, 10),
}
COMPARED_STEPS = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def overrides(name: str, cache_dir: str, num_steps: int | None = None) -> dict:
    _, _, model, steps = RUNS[name]
    return {**COMMON, **model, "data.cache_dir": cache_dir, "train.num_steps": num_steps or steps}


def run_spec(name: str, workdir, cache_dir: str, *extra: str) -> tuple[str, str, list[str]]:
    """(config, workdir, overrides) of a RUNS entry's training run, as launch/local/multiprocess.sh takes them."""
    config, variant, _, _ = RUNS[name]
    fields = [f"--config.{key}={value}" for key, value in overrides(name, cache_dir).items()]
    return f"configs/{config}.py:{variant}", str(workdir), [*fields, f"--distributed_timeout_s={TIMEOUT_S}", *extra]


def main_args(spec: tuple[str, str, list[str]]) -> list[str]:
    """The `python -m animejax.main` arguments of a run_spec."""
    config, workdir, fields = spec
    return ["-m", "animejax.main", f"--config={config}", f"--workdir={workdir}", *fields]


def env() -> dict:
    """Child environment: the repo importable, this Python for the launcher."""
    return {**subprocess_env(), "PYTHON": sys.executable}


def _finish(process: subprocess.Popen, timeout: float) -> str:
    """The process's output once it ends; past `timeout` its whole process group is killed (no strays)."""
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise


def launch(spec, timeout: float = RUN_TIMEOUT_S) -> tuple[int, str]:
    """launch/local/multiprocess.sh: a run_spec in PROCESSES processes of DEVICES_PER_PROCESS devices; (status,
    output)."""
    config, workdir, fields = spec
    process = subprocess.Popen(
        ["bash", LAUNCHER, str(PROCESSES), config, workdir, *fields],
        cwd=REPO,
        env={**env(), "DEVICES_PER_PROCESS": str(DEVICES_PER_PROCESS)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = _finish(process, timeout)
    return process.returncode, output


def start_process(index: int, port: int, args: list[str], log_path=None) -> subprocess.Popen:
    """Process `index` of a run of PROCESSES on 127.0.0.1:port; its output in log_path (else a pipe)."""
    flags = [f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={PROCESSES}", f"--process_id={index}"]
    child_env = env()
    child_env["XLA_FLAGS"] = f"{child_env['XLA_FLAGS']} --xla_force_host_platform_device_count={DEVICES_PER_PROCESS}"
    output = open(log_path, "w") if log_path else subprocess.PIPE
    try:
        return subprocess.Popen(
            [sys.executable, *args, *flags],
            cwd=REPO,
            env=child_env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    finally:
        if log_path:
            output.close()


def config_of(name: str, cache_dir: str, num_steps: int):
    config_name, variant, _, _ = RUNS[name]
    config = load_config(config_name, variant)
    for key, value in overrides(name, cache_dir, num_steps).items():
        group, field = key.split(".")
        setattr(config[group], field, value)
    return config


def two_process_batches(config):
    """pipeline.batch_dataset for this process standing in for PROCESSES: element k is the concatenation of
    every process's k-th local batch (each drawn from its own shard)."""
    original = pipeline.batch_dataset
    shards = [pipeline.load_images(config.data, p, PROCESSES)[0] for p in range(PROCESSES)]

    def batch_dataset(images, local_batch, seed, random_flip):
        del images  # All of the dataset, in one process.
        parts = [original(shard, local_batch // PROCESSES, seed, random_flip) for shard in shards]
        return grain.MapDataset.range(10**9).map(lambda k: np.concatenate([part[k] for part in parts]))

    return batch_dataset


def scalars(workdir) -> list[dict]:
    """The train/* scalars of each step, from the run's TensorBoard events (one events file: process 0's)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = [name for name in os.listdir(workdir) if name.startswith("events.out.tfevents")]
    assert len(files) == 1, f"one process writes TensorBoard events, found {files}"
    events = EventAccumulator(str(workdir), size_guidance={"scalars": 0})
    events.Reload()
    tags = [tag for tag in events.Tags()["scalars"] if tag.startswith("train/")]
    by_step: dict[int, dict] = {}
    for tag in tags:
        for event in events.Scalars(tag):
            by_step.setdefault(event.step, {})[tag] = event.value
    return [by_step[step] for step in sorted(by_step)]


def assert_same_checkpoints(workdir_a, workdir_b, step: int) -> None:
    """The two runs' checkpoints at `step` hold bit-identical arrays (read onto one device: they were written by
    several processes)."""
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    trees = []
    for workdir in (workdir_a, workdir_b):
        manager = ocp.CheckpointManager(
            os.path.join(workdir, "checkpoints"), item_handlers={"state": ocp.StandardCheckpointHandler()}
        )
        abstract = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
            manager.item_metadata(step)["state"],
        )
        trees.append(manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"])
        manager.close()
    leaves_a, leaves_b = (jax.tree_util.tree_leaves_with_path(tree) for tree in trees)
    assert [path for path, _ in leaves_a] == [path for path, _ in leaves_b] and len(leaves_a) > 3
    for (path, a), (_, b) in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))


def restore_like(workdir, step: int, state):
    """The checkpoint at `step`, restored into `state`'s structure (its types, shapes and shardings)."""
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    manager = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"), item_handlers={"state": ocp.StandardCheckpointHandler()}
    )
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    manager.close()
    return restored["state"]


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory, cache_dir):
    """name -> (workdir, launcher output) of each RUNS entry trained by two processes without interruption."""
    runs = {}
    for name in RUNS:
        workdir = tmp_path_factory.mktemp(f"two_{name}")
        status, output = launch(run_spec(name, workdir, cache_dir))
        assert status == 0, output[-5000:]
        runs[name] = (workdir, output)
    return runs


@pytest.mark.parametrize("name", sorted(RUNS))
def test_two_processes_train_as_one_with_eight_devices(name, two_process_runs, cache_dir, tmp_path, monkeypatch):
    """Losses of every step and the parameters after 10 agree with one process on 8 devices, to
    tests/device_equality.py's tolerances (the all-reduces sum in another order across processes)."""
    assert len(jax.devices()) == PROCESSES * DEVICES_PER_PROCESS, "conftest sets 8 simulated CPU devices"
    workdir, output = two_process_runs[name]
    config = config_of(name, cache_dir, COMPARED_STEPS)
    monkeypatch.setattr(pipeline, "batch_dataset", two_process_batches(config))
    state = train.train_and_evaluate(config, str(tmp_path))

    device_equality.assert_metrics_agree(scalars(tmp_path), scalars(workdir)[:COMPARED_STEPS])
    if name == "vae":
        optim = config.optim
        networks = [
            device_equality.Network("params", "opt_state", optim.learning_rate, optim.b1, optim.b2, "ema_params")
        ]
    else:
        networks = gan_networks(config)
    device_equality.assert_networks_agree(state, restore_like(workdir, COMPARED_STEPS, state), networks, COMPARED_STEPS)

    # Logs come from process 0 only: progress lines, TensorBoard events (one file, checked above), sample grids.
    progress = [line for line in output.splitlines() if line.split("] ", 1)[-1].startswith("step ")]
    assert len(progress) == RUNS[name][3] and all(line.startswith("[0] step ") for line in progress), progress[:3]
    assert sorted(os.listdir(workdir / "checkpoints"), key=int) == [str(s) for s in range(10, RUNS[name][3] + 1, 10)]


def test_evaluation_statistics_are_gathered_across_processes(tmp_path, cache_dir, monkeypatch):
    """FID reference statistics, KID features and SWD of two processes equal one process's, bit for bit: real
    images come back in the dataset's order from both shards."""
    port, out = free_port(), tmp_path / "two.npz"
    args = ["-m", "tests.multihost_eval", str(out), cache_dir, str(tmp_path / "stats_two")]
    processes = [start_process(i, port, args) for i in range(PROCESSES)]
    outputs = [_finish(process, RUN_TIMEOUT_S) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [output[-3000:] for output in outputs]

    monkeypatch.setattr(pretrained_inception, "load_fid_inception", multihost_eval.tiny_inception)
    one = multihost_eval.statistics(cache_dir, str(tmp_path / "stats_one"))
    with np.load(out) as two:
        assert bool(two["process_zero_list_agrees"])  # Process 1 took process 0's view of a listing.
        one["process_zero_list_agrees"] = np.asarray(True)
        assert sorted(two.files) == sorted(one)
        assert "eval/fid32" in two.files and "eval/swd32/mean" in two.files and "eval/kid32_mean" in two.files
        for key, value in one.items():
            np.testing.assert_array_equal(two[key], value, err_msg=key)


def _committed(workdir) -> list[int]:
    folder = workdir / "checkpoints"
    names = os.listdir(folder) if folder.is_dir() else []
    return sorted(int(n) for n in names if n.isdigit() and (folder / n / "commit_success.txt").exists())


def _run_until(processes, workdir, after: int) -> int:
    """Waits until a checkpoint later than `after` is complete (or a process ended); returns the newest step."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while all(p.poll() is None for p in processes) and time.monotonic() < deadline:
        if _committed(workdir) and _committed(workdir)[-1] > after:
            break
        time.sleep(0.01)
    return (_committed(workdir) or [0])[-1]


def test_stop_signal_hang_and_kill_then_exact_resume(two_process_runs, tmp_path, cache_dir):
    """Each interruption lands after a checkpoint of the run, relaunched each time:

    1. SIGTERM to process 1 alone: both stop after the same step, saved together, status 75;
    2. SIGSTOP to process 1 (a hang): process 0 exits after TIMEOUT_S without a sign of life from it;
    3. SIGKILL to process 1: process 0 exits at once.
    Process 0 says what happened and how to go on; the last relaunch ends bit-identical to the uninterrupted run.
    """
    workdir = tmp_path / "run"
    spec, num_steps = run_spec("vae", workdir, cache_dir), RUNS["vae"][3]
    logs = [tmp_path / f"process_{i}.log" for i in range(PROCESSES)]

    def interrupt(sig, after: int) -> tuple[list[int], float, int]:
        """Starts the run, sends `sig` to process 1 once a checkpoint later than `after` is complete; (statuses,
        seconds until process 0 ended, the newest checkpoint when the signal went)."""
        port = free_port()
        processes = [start_process(i, port, main_args(spec), logs[i]) for i in range(PROCESSES)]
        try:
            newest = _run_until(processes, workdir, after)
            processes[1].send_signal(sig)
            sent_at = time.monotonic()
            processes[0].wait(timeout=EXIT_BOUND_S)
            seconds = time.monotonic() - sent_at
            if sig != signal.SIGSTOP:
                processes[1].wait(timeout=EXIT_BOUND_S)
        finally:
            _kill(processes)
        assert after < newest < num_steps and num_steps not in _committed(workdir), "interrupted too late"
        return [process.returncode for process in processes], seconds, newest

    statuses, _, _ = interrupt(signal.SIGTERM, after=0)
    outputs = [log.read_text() for log in logs]
    assert statuses == [train.INTERRUPTED_EXIT_CODE] * PROCESSES, [output[-3000:] for output in outputs]
    stopped = _committed(workdir)[-1]
    assert f"Received SIGTERM: saved a checkpoint at step {stopped}" in outputs[1]
    assert f"Received a stop signal in another process: saved a checkpoint at step {stopped}" in outputs[0]

    for sig, why in ((signal.SIGSTOP, "nothing heard from it for"), (signal.SIGKILL, "it exited or was killed")):
        resume_from = _committed(workdir)[-1]
        statuses, seconds, _ = interrupt(sig, after=resume_from)
        output = logs[0].read_text()
        assert f"from step {resume_from} (resumed)" in output, output[-3000:]
        assert statuses[0] == multihost.LOST_PROCESS_EXIT_CODE, output[-3000:]
        assert f"animejax: error: process 0 lost contact with process 1: {why}" in output, output[-3000:]
        assert "relaunch the job (all 2 processes) to resume from the last checkpoint" in output
        print(f"process 0 exited {seconds:.2f} s after process 1 got {sig.name}")
        if sig == signal.SIGSTOP:  # Its last beat came up to a second before the signal.
            assert TIMEOUT_S - 1.5 < seconds < TIMEOUT_S + 5

    resume_from = _committed(workdir)[-1]
    status, resumed = launch(spec)
    assert status == 0, resumed[-5000:]
    assert f"from step {resume_from} (resumed)" in resumed
    assert_same_checkpoints(two_process_runs["vae"][0], workdir, num_steps)


def _kill(processes) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_unsplittable_batch_fails_every_process_clearly(tmp_path, cache_dir):
    """A global batch the 8 devices of 2 processes cannot split: one clear line, the launcher's status 1."""
    spec = run_spec("vae", tmp_path / "run", cache_dir, "--config.train.batch_size=12")
    status, output = launch(spec, timeout=120)
    assert status == 1, output[-3000:]
    assert "train.batch_size=12 cannot be split over 8 devices in 2 processes; use a multiple of 8" in output
    assert "Traceback" not in output
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "address,count,index,message",
    [
        ("127.0.0.1:1234", 2, None, "--coordinator_address and --num_processes given without --process_id"),
        (None, 2, 0, "--num_processes and --process_id given without --coordinator_address"),
        ("127.0.0.1:1234", None, None, "given without --num_processes and --process_id"),
        ("127.0.0.1", 2, 0, "expected host:port"),
        ("127.0.0.1:1234", 2, 2, "--process_id=2: must be in [0, 1]"),
        ("127.0.0.1:1234", 0, 0, "--num_processes=0: must be at least 1"),
    ],
)
def test_explicit_flags_are_checked_together(address, count, index, message):
    with pytest.raises(multihost.FlagError) as error:
        multihost.check_flags(address, count, index)
    assert message in str(error.value)


def test_launcher_dry_run_prints_each_process_command():
    """Its own device count replaces one in XLA_FLAGS; other XLA flags, the config and overrides pass through."""
    result = subprocess.run(
        ["bash", LAUNCHER, "--dry-run", "2", "configs/vae.py:cpu", "runs/two words", "--config.train.num_steps=5"],
        env={
            **os.environ,
            "PORT": "4321",
            "DEVICES_PER_PROCESS": "3",
            "PYTHON": "python3",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_cpu_enable_fast_math=false",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    flags = r"XLA_FLAGS=--xla_force_host_platform_device_count=3\ --xla_cpu_enable_fast_math=false"
    assert result.stdout.splitlines() == [
        f"env {flags} JAX_PLATFORMS=cpu python3 -m animejax.main --config=configs/vae.py:cpu "
        rf"--workdir=runs/two\ words --coordinator_address=127.0.0.1:4321 --num_processes=2 --process_id={i} "
        "--config.train.num_steps=5"
        for i in range(2)
    ]


def test_flag_errors_are_one_line_from_the_command_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "animejax.main",
            "--config=configs/vae.py:quick",
            f"--workdir={tmp_path}",
            "--coordinator_address=127.0.0.1:1234",
            "--num_processes=2",
        ],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "animejax: error: --coordinator_address and --num_processes given without --process_id" in result.stderr
    assert "Traceback" not in result.stderr


def test_batch_must_split_over_processes_too(monkeypatch):
    """With 3 processes holding 4 devices in all (as a mesh could not, but the check stands alone), 8 splits
    over the devices and not the processes."""
    shardings = sharding.make_mesh(4)
    monkeypatch.setattr(jax, "process_count", lambda: 3)
    with pytest.raises(
        sharding.BatchSizeError,
        match=r"batch_size=8 cannot be split over 4 devices in 3 processes; "
        r"use a multiple of 12 \(e.g. 12\)",
    ):
        sharding.local_batch_size(8, shardings)
    assert sharding.local_batch_size(24, shardings) == 8
