"""launch/slurm_gpu.sbatch: requeue exactly when animejax exits 75 (stopped by a signal after a checkpoint)."""

import os
import stat
import subprocess

import pytest

from tests.conftest import REPO


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
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}
    result = subprocess.run(
        ["bash", os.path.join(REPO, "launch", "slurm_gpu.sbatch"), "vae", "runs/vae", "--config.train.num_steps=9"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == exit_status, result.stderr
    assert (tmp_path / "srun_args").read_text().split() == [
        "python",
        "-m",
        "animejax.main",
        "--distributed",
        "--config=vae",
        "--workdir=runs/vae",
        "--config.train.num_steps=9",
    ]
    assert (tmp_path / "scontrol_args").exists() == requeued
    if requeued:
        assert (tmp_path / "scontrol_args").read_text().split() == ["requeue", "4242"]
