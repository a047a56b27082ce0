"""launch/compare_all.sh (animejax.report.train_all): one budget for every model, then one report.

Two tiny runs trained through the script on the built-in data hold the budget's steps and appear in the report;
a rerun skips them; budgets convert to each config's own steps."""

import json
import math
import os
import subprocess
import sys

import pytest

from animejax.errors import UserError
from animejax.report import train_all
from tests.conftest import REPO, subprocess_env

# Shrinks the :quick autoencoders to a few CPU seconds a run.
TINY = (
    "data.num_images=256",
    "model.latent_dim=16",
    "model.base_channels=8",
    "sample.grid_size=4",
    "sample.latent_stats_images=32",
    "sample.num_interpolations=2",
    "eval.train_num_images=32",
    "eval.loss_num_images=32",
    "eval.batch_size=16",
)


@pytest.mark.parametrize(
    "text,images,minutes",
    [("quick", train_all.QUICK_IMAGES, 0.0), ("images:640", 640, 0.0), ("minutes:2.5", 0, 2.5)],
)
def test_budgets_parse(text, images, minutes):
    assert train_all.Budget.parse(text) == train_all.Budget(images=images, minutes=minutes)


@pytest.mark.parametrize("text", ["", "images", "images:0", "images:-5", "minutes:x", "hours:2", "quick:3"])
def test_bad_budget_is_one_clear_error(text):
    with pytest.raises(train_all.BudgetError, match="use quick, images:N"):
        train_all.Budget.parse(text)


def test_an_images_budget_is_each_configs_own_steps():
    budget = train_all.Budget(images=1000)
    vae = train_all.load_config("vae", "quick", {})
    ddpm = train_all.load_config("ddpm", "quick", {"train.batch_size": "20"})  # --set applies before the budget.
    assert train_all.budget_overrides(vae, budget)["train.num_steps"] == math.ceil(1000 / 32) == 32
    ddpm_steps = train_all.budget_overrides(ddpm, budget)
    assert ddpm_steps["train.num_steps"] == 50 and ddpm_steps["eval.every_steps"] == 12  # Four curve points.
    srgan = train_all.load_config("srgan", "quick", {})
    srgan_steps = train_all.budget_overrides(srgan, budget)  # Its SRResNet phase keeps 40 of 60 steps' fraction.
    assert srgan_steps["train.num_steps"] == 63 and srgan_steps["srgan.pretrain_steps"] == 42


def test_a_minutes_budget_is_a_time_budget_with_curves():
    config = train_all.load_config("dcgan", "quick", {})
    overrides = train_all.budget_overrides(config, train_all.Budget(minutes=1.5))
    assert overrides == {"train.time_budget_s": 90.0, "eval.every_steps": config.train.checkpoint_every}


def test_bad_set_override_names_the_model():
    with pytest.raises(UserError, match="vae: bad --set override"):
        train_all.load_config("vae", "quick", {"train.no_such_field": "1"})


def _train_all(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "animejax.report.train_all", *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_unknown_model_and_missing_data_are_clear_errors(tmp_path):
    result = _train_all("--root", str(tmp_path), "--models=vae,nope", cwd=tmp_path)
    assert result.returncode == 1 and "--models: unknown nope" in result.stderr
    result = _train_all("--root", str(tmp_path), "--data", str(tmp_path / "missing"), cwd=tmp_path)
    assert result.returncode == 1 and "is not a folder of images" in result.stderr
    assert os.listdir(tmp_path) == []  # Nothing written.


def test_two_models_train_with_one_budget_into_one_report_and_a_rerun_skips_them(tmp_path, cache_dir):
    root = tmp_path / "runs"
    sets = [f"--set={item}" for item in TINY + (f"data.cache_dir={cache_dir}",)]
    args = ["--root", str(root), "--models=vae,autoencoder", "--budget=images:64", "--eval_images=32", *sets]
    result = _train_all(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Training 2 models (vae, autoencoder) with 64 training images each" in result.stdout
    report = json.loads((root / "report" / "report.json").read_text())
    rows = {row["run"]: row for row in report["rows"]}
    assert set(rows) == {"vae", "autoencoder"}
    for name, row in rows.items():
        assert row["status"] == "complete", row
        assert row["train_num_steps"] == 2  # 64 images in steps of 32: the budget.
        assert row["images_seen"] == 32 * row["step"]  # The best checkpoint's (the in-training evaluations').
        assert row["results"]["eval/swd32/mean"] > 0
        assert (root / name / "train.log").read_text().count("step 2/2") == 1
        evaluations = json.loads((root / name / "best" / "best.json").read_text())
        assert evaluations["metric"] == "eval/swd32/mean"  # The in-training evaluations kept a best.
    assert (root / "report" / "report.html").is_file()

    again = _train_all(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "vae: already trained with this budget, skipped" in again.stdout
    assert "autoencoder: already trained with this budget" in again.stdout

    # A larger budget trains the same runs on from their checkpoints.
    larger = _train_all(*[a.replace("images:64", "images:96") for a in args], "--models=vae", cwd=tmp_path)
    assert larger.returncode == 0, larger.stderr[-3000:]
    log = (root / "vae" / "train.log").read_text()
    assert "from step 2 (resumed)" in log and "step 3/3" in log
    rows = {row["run"]: row for row in json.loads((root / "report" / "report.json").read_text())["rows"]}
    assert rows["vae"]["train_num_steps"] == 3 and rows["vae"]["status"] == "complete"


def test_dry_run_prints_every_command_and_runs_nothing(tmp_path):
    script = os.path.join(REPO, "launch", "compare_all.sh")
    result = subprocess.run(
        [script, "--dry-run", str(tmp_path / "cmp"), "--models=vae,ddpm", "--budget=images:320"],
        env={**subprocess_env(), "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert len(lines) == 3
    assert "--config=vae:quick" in lines[0] and "--config.train.num_steps=10" in lines[0]
    assert "--config=ddpm:quick" in lines[1] and "--config.train.num_steps=20" in lines[1]
    assert "--mode=compare" in lines[2] and f"--runs={tmp_path}/cmp/vae,{tmp_path}/cmp/ddpm" in lines[2]
    assert not (tmp_path / "cmp").exists()
