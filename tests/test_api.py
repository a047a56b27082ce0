"""The Python API (animejax/api.py): configs and overrides checked as the command line checks them, `fit` equal to
`python -m animejax.main` bit for bit, resuming, and sample / evaluate / compare on the trained run."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import animejax
from animejax import api
from animejax.errors import ConfigError, UserError
from tests import test_train
from tests.conftest import REPO, subprocess_env

# autoencoder:quick at 4 steps of batch 16 on 64 images: checkpoints at 2 and 4, a grid at 4.
TINY = {
    "data.num_images": 64,
    "mesh.num_devices": 1,
    "train.batch_size": 16,
    "train.num_steps": 4,
    "train.checkpoint_every": 2,
    "train.sample_every": 4,
    "train.log_every": 2,
}
# A small shared evaluation (SWD needs no downloaded weights).
EVAL = {
    "eval.metrics": ("swd",),
    "eval.num_images": 32,
    "eval.swd_num_images": 32,
    "eval.loss_num_images": 32,
    "eval.batch_size": 16,
}


def test_import_is_light_and_the_api_loads_on_first_use():
    code = (
        "import sys, animejax\n"
        "assert 'jax' not in sys.modules and 'animejax.api' not in sys.modules\n"
        "config = animejax.load_config('vae:quick')\n"
        "assert 'jax' not in sys.modules, 'load_config imported jax'\n"
        "print(config.method, sorted(set(animejax.__all__) & set(dir(animejax))) == sorted(animejax.__all__))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["vae", "True"]


def test_fit_is_not_shadowed_by_the_train_module():
    import animejax.train  # noqa: F401  (the submodule becomes the attribute `animejax.train`)

    assert animejax.fit is api.fit and animejax.compare is api.compare
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        animejax.nothing  # noqa: B018


def test_load_config_by_name_or_path_with_overrides():
    by_name = animejax.load_config("vae:quick", {"train.num_steps": 50, "eval": {"metrics": ["swd", "fid"]}})
    assert by_name.train.num_steps == 50
    assert by_name.eval.metrics == ("swd", "fid")  # A list becomes the field's tuple, as ml_collections casts.
    assert by_name.data.image_size == 32  # The :quick variant.
    by_path = animejax.load_config(os.path.join(REPO, "configs", "vae.py") + ":quick", {"train.num_steps": 50})
    assert by_path.to_dict() == animejax.load_config("vae:quick", {"train.num_steps": 50}).to_dict()
    assert animejax.load_config("dcgan").data.image_size == 64  # No variant.


def test_load_config_errors_are_clear():
    with pytest.raises(ConfigError, match=r"train\.num_stepz: vae:quick has no field 'num_stepz' in train; .*steps"):
        animejax.load_config("vae:quick", {"train.num_stepz": 50})
    with pytest.raises(ConfigError, match=r"no field 'modle' in the top level; valid fields there: .*model"):
        animejax.load_config("vae:quick", {"modle.latent_dim": 8})
    with pytest.raises(ConfigError, match=r"train\.num_steps='50': .*cannot be casted"):
        animejax.load_config("vae:quick", {"train.num_steps": "50"})
    with pytest.raises(ConfigError, match="train is a group of fields"):
        animejax.load_config("vae:quick", {"train": 3})
    with pytest.raises(ConfigError, match="seed is a value"):
        animejax.load_config("vae:quick", {"seed.x": 3})
    with pytest.raises(ConfigError, match="Unknown config 'vea'"):
        animejax.load_config("vea:quick")
    with pytest.raises(ConfigError, match="Unknown variant 'slow'"):
        animejax.load_config("vae:slow")
    config = animejax.load_config("vae:quick")
    with pytest.raises(AttributeError):  # Locked as --config is: a typo cannot add a field.
        config.train.num_stepz = 5
    with pytest.raises(TypeError):
        config.train.num_steps = "5"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir):
    """The same tiny run trained by the API and by the command line, each in its own process (so both start
    JAX with the command line's XLA flags), at the same time."""
    root = tmp_path_factory.mktemp("api")
    overrides = {**TINY, "data.cache_dir": cache_dir}
    processes = {
        "api": subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import json, sys, animejax; animejax.fit('autoencoder:quick', sys.argv[1], json.loads(sys.argv[2]))",
                str(root / "api"),
                json.dumps(overrides),
            ],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ),
        "cli": subprocess.Popen(
            [
                sys.executable,
                "-m",
                "animejax.main",
                "--config=autoencoder:quick",
                f"--workdir={root / 'cli'}",
                *(f"--config.{key}={value}" for key, value in overrides.items()),
            ],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ),
    }
    for name, process in processes.items():
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, f"{name}:\n{output[-3000:]}"
    return root


def test_fit_equals_the_command_line(runs):
    for name in ("api", "cli"):
        assert sorted(os.listdir(runs / name / "checkpoints"), key=int) == ["2", "4"], name
    for step in (2, 4):
        test_train.assert_same_checkpoint(runs / "api", runs / "cli", step)
    assert animejax.run_config(runs / "api").to_dict() == animejax.run_config(runs / "cli").to_dict()


def test_fit_resumes_a_finished_run_without_training(runs, cache_dir):
    state = animejax.fit("autoencoder:quick", runs / "api", {**TINY, "data.cache_dir": cache_dir})
    assert int(state.step) == 4
    assert sorted(os.listdir(runs / "api" / "checkpoints"), key=int) == ["2", "4"]
    restored = test_train.restore_params(str(runs / "api"), 4)
    returned = jax.tree_util.tree_leaves(jax.device_get(state.params))
    saved = jax.tree_util.tree_leaves(restored["params"])
    assert len(returned) > 3
    for x, y in zip(returned, saved, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_sample_evaluate_and_compare(runs, tmp_path):
    workdir = runs / "api"
    paths = animejax.sample(workdir, {"sample.num_individual": 3})
    assert paths and all(os.path.exists(path) for path in paths.values())
    assert any(path.endswith(".png") for path in paths.values())
    assert len(os.listdir(paths["individual"])) == 3

    stats = str(tmp_path / "stats")
    results = animejax.evaluate(workdir, {**EVAL, "eval.stats_cache_dir": stats})
    assert "eval/swd32/mean" in results, results
    assert np.isfinite(results["eval/mse_per_pixel"])
    assert os.path.exists(workdir / "eval_0000004.json")

    report = animejax.compare(
        [workdir], tmp_path / "report", overrides={**EVAL, "eval.stats_cache_dir": stats, "compare.timing_batches": 1}
    )
    assert set(report) == {"report.md", "report.html", "report.json"}
    text = open(report["report.md"]).read()
    assert "| api | autoencoder" in text
    with pytest.raises(ConfigError, match="which="):
        animejax.compare([workdir], tmp_path / "other", which="newest")
    with pytest.raises(UserError, match="No saved config"):
        animejax.sample(tmp_path / "not_a_run")
