"""The installed package: a built wheel in a fresh venv runs packaged configs by name from any directory."""

import os
import subprocess
import sys

from tests.conftest import REPO


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env["JAX_PLATFORMS"] = "cpu"
    return env


def test_wheel_install_runs_a_packaged_config_by_name_from_another_directory(tmp_path, cache_dir):
    dist, venv, elsewhere = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), REPO],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = [name for name in os.listdir(dist) if name.endswith(".whl")]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The dependencies come from this interpreter's site-packages (no network): a .pth line adds those folders,
    # and .pth files inside them are not processed, so this checkout's editable animejax stays out of the venv.
    dependencies = [path for path in sys.path if path.endswith("site-packages")]
    with open(os.path.join(site, "animejax_test_dependencies.pth"), "w") as f:
        f.write("\n".join(dependencies) + "\n")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "-q", str(dist / wheel)], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr[-2000:]

    env = _clean_env()
    where = subprocess.run(
        [str(python), "-c", "import animejax; print(animejax.__file__)"], cwd=elsewhere, env=env, capture_output=True
    )
    assert where.stdout.decode().startswith(site), where  # The installed copy, not this checkout.
    help_text = subprocess.run([str(venv / "bin" / "animejax"), "--help"], cwd=elsewhere, env=env, capture_output=True)
    assert help_text.returncode == 0
    for expected in ("--workdir", "--mode", "sample", "eval", "vae ", "ddpm ", "wgan_gp "):
        assert expected in help_text.stdout.decode(), expected
    run = subprocess.run(
        [
            str(venv / "bin" / "animejax"),
            "--config=vae:quick",
            "--workdir=run",
            f"--config.data.cache_dir={cache_dir}",
            "--config.data.num_images=64",
            "--config.train.num_steps=2",
            "--config.train.log_every=1",
            "--config.train.sample_every=2",
            "--config.train.checkpoint_every=2",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "step 2/2" in run.stdout and os.listdir(elsewhere / "run" / "checkpoints") == ["2"]
    unknown = subprocess.run(
        [str(venv / "bin" / "animejax"), "--config=vea", "--workdir=x"], cwd=elsewhere, env=env, capture_output=True
    )
    assert unknown.returncode != 0 and b"Unknown config 'vea'" in unknown.stderr and b"vae" in unknown.stderr
