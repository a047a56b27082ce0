"""benchmarks/gpu_faces.sh and gpu_real_run.sh, the GPU lease's real training run, run here on the CPU with a tiny
budget: the faces travel in name order with the detector, and the run leaves metrics, logs and grids (no
checkpoints) in $OUT."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, subprocess_env

CASCADE = os.path.join(os.path.dirname(REPO), "shared", "data", "lbpcascade_animeface.xml")


def _bash(script: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    command = ["bash", os.path.join(REPO, "benchmarks", script), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def faces_folder(tmp_path):
    """40 random 32 px JPEGs named face_00.jpg ... and a text file that must not travel."""
    folder = tmp_path / "source"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(40):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"face_{index:02d}.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_faces_then_a_real_run_leave_metrics_and_grids(faces_folder, tmp_path, cache_dir):
    if not os.path.isfile(CASCADE):
        pytest.skip(f"the anime-face detector is not at {CASCADE} (only present on the project's machines)")
    faces, out, workdir = tmp_path / "faces", tmp_path / "out", tmp_path / "run"
    env = {**subprocess_env(), "FACES": str(faces)}
    prepared = _bash("gpu_faces.sh", str(faces_folder), "24", CASCADE, env=env)
    assert prepared.returncode == 0, prepared.stderr
    assert sorted(os.listdir(faces / "images")) == [f"face_{index:02d}.jpg" for index in range(24)]
    with open(CASCADE, "rb") as detector:
        assert (faces / "lbpcascade_animeface.xml").read_bytes() == detector.read()

    # WHEELS: the GPU machine's Python 3.12 wheels that a developer's .whl/ may hold are not for this interpreter.
    env.update(
        OUT=str(out), WORKDIR=str(workdir), PYTHON=sys.executable, EVAL_IMAGES="16", WHEELS=str(tmp_path / "none")
    )
    flags = ["--config.train.batch_size=8", "--config.sample.grid_size=2", f"--config.data.cache_dir={cache_dir}"]
    run = _bash("gpu_real_run.sh", "vae:quick", "2", *flags, env=env)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    evaluation = json.loads(next(out.glob("eval_*.json")).read_text())
    assert {"eval/swd16/mean", "eval/detection_rate16"} <= set(evaluation["metrics"])
    assert evaluation["dataset"] == f"folder:{faces / 'images'}"
    assert json.loads((out / "training_time.json").read_text())["budget_s"] == 2.0
    assert list(out.glob("samples/sample_samples_normal_*.png")) and list(out.glob("events.out.tfevents*"))
    assert not list(out.rglob("checkpoints")) and (workdir / "checkpoints").is_dir()


def test_faces_refuses_a_folder_without_images(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    detector = tmp_path / "detector.xml"
    detector.write_text("<opencv_storage/>")
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "kept.txt").write_text("an earlier preparation")
    result = _bash("gpu_faces.sh", str(empty), "10", str(detector), env={**os.environ, "FACES": str(faces)})
    assert result.returncode == 1 and "no JPEG or PNG images" in result.stderr
    assert (faces / "kept.txt").exists()  # Nothing was deleted before the error.
