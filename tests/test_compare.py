"""--mode=compare: three tiny runs (VAE, autoencoder, DCGAN) trained here, compared in one report whose values
equal a direct `--mode=eval` of each run's chosen checkpoint; run statuses; the HTML rendered by Chromium."""

import json
import math
import os
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

from animejax import inference, saved_config, train
from animejax.errors import UserError
from animejax.metrics import inception
from animejax.pretrained import inception as pretrained_inception
from animejax.report import compare, render, runs, settings
from animejax.writers import TensorBoardWriter
from tests import test_gan, test_train
from tests.conftest import REPO, subprocess_env
from tests.test_detection import CASCADE

METRICS = ("fid", "kid", "swd") + (("detection",) if os.path.isfile(CASCADE) else ())
# The shared evaluation, applied alike to the compare settings and to each direct eval.
EVAL = {
    "metrics": METRICS,
    "num_images": 16,
    "reference_images": 16,
    "batch_size": 16,
    "kid_num_images": 16,
    "kid_subsets": 4,
    "kid_subset_size": 8,
    "swd_num_images": 16,
    "detection_num_images": 16,
    "detector_path": CASCADE if os.path.isfile(CASCADE) else "",
    "loss_num_images": 32,
}
SEED = 7


def _train_config(name, cache_dir, stats_dir):
    """A :quick config shrunk to 32 px, batch 16, 6 steps, with in-training SWD at steps 3 and 6."""
    if name == "dcgan":
        config = test_gan.tiny_config("dcgan", cache_dir)
    else:
        config = test_train.load_config(name, "quick")
        config.data.num_images = 256
        config.data.cache_dir = cache_dir
        config.mesh.num_devices = 1
        config.train.batch_size = 16
        config.model.latent_dim = 16
        config.model.base_channels = 8
        config.sample.grid_size = 4
        config.sample.latent_stats_images = 32
        config.sample.num_interpolations = 2
        config.sample.interpolation_steps = 4
    config.train.num_steps = 6
    config.train.log_every = 2
    config.train.sample_every = 1000
    config.train.checkpoint_every = 3
    config.eval.every_steps = 3
    config.eval.train_num_images = 32
    config.eval.swd_num_images = 32
    config.eval.batch_size = 16
    config.eval.stats_cache_dir = stats_dir
    return config


@pytest.fixture(scope="module")
def random_inception():
    """The FID network with seeded random weights in place of the released file (as tests/test_evaluation.py)."""
    module = inception.FIDInceptionV3()
    variables = jax.jit(lambda key: inception.init_variables(module, key, image_size=75))(jax.random.PRNGKey(0))
    variables = {
        "params": jax.tree_util.tree_map_with_path(
            lambda path, x: x * np.sqrt(2.0) if path[-1].key == "kernel" else x, variables["params"]
        ),
        "batch_stats": variables["batch_stats"],
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pretrained_inception, "load_fid_inception", lambda *args, **kwargs: (module, variables))
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    """runs/{vae,autoencoder,dcgan} trained 6 steps, plus runs/unstarted (a config.json, nothing else)."""
    root = tmp_path_factory.mktemp("compare")
    stats_dir = str(root / "stats")
    for name in ("vae", "autoencoder", "dcgan"):
        train.train_and_evaluate(_train_config(name, cache_dir, stats_dir), str(root / "runs" / name))
    # A run that was meant to train 8 steps and stopped at 6 (its saved config says 8).
    path = root / "runs" / "autoencoder" / "config.json"
    saved = json.loads(path.read_text())
    saved["train"]["num_steps"] = 8
    path.write_text(json.dumps(saved))
    os.makedirs(root / "runs" / "unstarted")
    shutil.copy(root / "runs" / "vae" / "config.json", root / "runs" / "unstarted" / "config.json")
    return root, stats_dir


def _settings(stats_dir):
    config = settings.get_config()
    config.seed = SEED
    config.mesh.num_devices = 1
    config.eval.update(EVAL)
    config.eval.stats_cache_dir = stats_dir
    config.compare.grid_size = 4
    config.compare.timing_batches = 1
    return config


@pytest.fixture(scope="module")
def report(trained, random_inception):
    root, stats_dir = trained
    out = root / "report"
    comparison = compare.compare(_settings(stats_dir), f"{root}/runs/*", "best")
    render.write_report(comparison, str(out))
    return root, stats_dir, out, json.loads((out / "report.json").read_text()), comparison


def _direct_eval(root, stats_dir, name, step, from_best):
    """`--mode=eval` of the run's checkpoint at `step` with the same overrides, in a copy of the run whose only
    checkpoint is that one (so eval's "latest" is the compared checkpoint)."""
    source = root / "runs" / name
    copy = root / "direct" / name
    os.makedirs(copy / "checkpoints")
    shutil.copy(source / "config.json", copy / "config.json")
    shutil.copytree(source / ("best" if from_best else "checkpoints") / str(step), copy / "checkpoints" / str(step))
    config = saved_config.get_config(str(copy))
    config.seed = SEED
    config.mesh.num_devices = 1
    config.eval.update(EVAL)
    config.eval.stats_cache_dir = stats_dir
    return inference.evaluate(config, str(copy))


def test_report_rows_and_values_equal_a_direct_eval(report):
    root, stats_dir, out, data, comparison = report
    rows = {row["run"]: row for row in data["rows"]}
    assert sorted(rows) == ["autoencoder", "dcgan", "unstarted", "vae"]
    metric_columns = [c for c in data["columns"] if c.startswith(("fid", "kid", "swd", "detection"))]
    expected = ["fid16", "kid16_mean", "kid16_std", "swd16/mean"] + (
        ["detection_rate16"] if "detection" in METRICS else []
    )
    assert metric_columns == expected
    for column in ("parameters", "images seen", "train wall-clock", "train img/s", "sampling img/s", "mse_per_pixel"):
        assert column in data["columns"]

    for name in ("vae", "autoencoder", "dcgan"):
        row = rows[name]
        best = json.loads((root / "runs" / name / "best" / "best.json").read_text())
        assert row["step"] == best["step"] and row["checkpoint"].startswith(f"best (step {best['step']}")
        direct = _direct_eval(root, stats_dir, name, best["step"], from_best=True)
        assert row["results"].keys() == direct.keys()
        for key, value in direct.items():
            assert row["results"][key] == pytest.approx(value, rel=1e-5, abs=1e-7), (name, key)
        # The table shows every column with the formatted values.
        for column in expected:
            assert row["table"][column] == f"{direct['eval/' + column]:.4g}"
        assert row["images_seen"] == best["step"] * 16
        assert row["table"]["images seen"] == f"{best['step'] * 16:,}"
        assert row["sampling_images_per_second"] > 0 and row["train_images_per_second"] > 0
        assert 0 < row["train_wall_clock_s"] < 600
        assert sum(row["parameters"].values()) > 1000
    # The methods' own terms: the autoencoders' reconstruction error, absent (shown missing) for the GAN.
    assert rows["vae"]["table"]["mse_per_pixel"] != render.MISSING
    assert rows["dcgan"]["table"]["mse_per_pixel"] == render.MISSING
    # Their other terms are in per-method tables, not in the main one.
    assert "kl" in rows["vae"]["terms"] and "kl" not in rows["autoencoder"]["terms"]
    assert {"d_real", "d_fake"} <= set(rows["dcgan"]["terms"]) and "d_real" not in data["columns"]
    assert set(rows["dcgan"]["parameters"]) == {"g_params", "d_params"}
    assert set(rows["vae"]["parameters"]) == {"params"}
    # Statuses: complete; stopped early with no process; no checkpoint, not evaluated yet still a row.
    assert rows["vae"]["status"] == "complete" and rows["dcgan"]["status"] == "complete"
    assert rows["autoencoder"]["status"].startswith("stopped at step 6 of 8")
    assert rows["unstarted"]["status"] == "no checkpoint" and rows["unstarted"]["results"] == {}
    assert all(rows["unstarted"]["table"][c] == render.MISSING for c in expected)
    assert "Not evaluated: unstarted" in " ".join(data["warnings"])
    # One dataset: one set of reference statistics, named once.
    assert len(data["settings"]["datasets"]) == 1
    assert data["settings"]["weights"]["inception_weights_sha256"] == pretrained_inception.FID_WEIGHTS_SHA256


def test_report_files_hold_the_table_grids_and_plots(report):
    root, _, out, data, _ = report
    markdown = (out / "report.md").read_text()
    header = "| " + " | ".join(data["columns"]) + " |"
    assert header in markdown
    for row in data["rows"]:
        assert "| " + " | ".join(row["table"][c] for c in data["columns"]) + " |" in markdown
        if row["terms"]:  # The method's own table: its header, and its row.
            assert "| run | " + " | ".join(row["terms"]) + " |" in markdown
            assert f"| {row['run']} | " + " | ".join(row["terms"].values()) + " |" in markdown
    # Fixed-seed grids for every model; the autoencoders' N(0, I) and data-latent samplers side by side.
    grids = set(os.listdir(out / "grids"))
    for name in ("vae", "autoencoder", "dcgan"):
        assert f"{name}_fixed_seed.png" in grids
    for name in ("vae", "autoencoder"):
        assert {f"{name}_samples_normal.png", f"{name}_samples_latent_gaussian.png"} <= grids
    with Image.open(out / "grids" / "vae_fixed_seed.png") as image:
        assert image.size == (4 * 34 + 2, 4 * 34 + 2)  # 4x4 images of 32 px with 2 px borders.
    # The logged in-training SWD (steps 3 and 6 of each run) against images seen and wall-clock.
    assert os.listdir(out / "plots") == ["swd.png"]
    with Image.open(out / "plots" / "swd.png") as image:
        assert (
            image.size == (1100, 400) and len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 20
        )
    html = (out / "report.html").read_text()
    assert 'src="grids/' not in html and html.count("data:image/png;base64,") == len(grids) + 1
    for row in data["rows"]:
        assert f"<td>{row['run']}</td>" in html
    assert "Definitions" in markdown and "fid: Fréchet Inception distance" in markdown


def test_logged_series_follow_the_events(report):
    _, _, _, _, comparison = report
    info = next(row.info for row in comparison.rows if row.info.name == "vae")
    series = info.log.scalars["eval/swd32/mean"]
    assert series.steps == [3, 6]
    assert series.seconds[0] < series.seconds[1] <= info.log.wall_clock_s
    assert info.log.scalars["train/loss"].steps == [2, 4, 6] and info.log.sessions == 1


def _screenshot(chromium, html_path, png_path):
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={png_path}",
            "--window-size=1600,3000",
            f"file://{html_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and os.path.isfile(png_path), result.stderr[-2000:]
    with Image.open(png_path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def _coloured(pixels):
    """The screenshot's saturated pixels (text, borders and the page are grey; images and plot lines are not)."""
    saturated = pixels.max(-1) - pixels.min(-1) > 40
    return int(saturated.sum()), len({tuple(p) for p in pixels[saturated][::7]})


def test_html_renders_in_headless_chromium(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium): the browser rendering is not checked")
    _, _, out, _, _ = report
    pixels = _screenshot(chromium, out / "report.html", tmp_path / "page.png")
    count, colours = _coloured(pixels)
    assert (pixels < 200).any(axis=-1).mean() > 0.02  # Text and table drawn, not a blank page.
    assert count > 20_000 and colours > 200, (count, colours)
    # The same page with its images emptied: the colour comes from the inlined images.
    html = (out / "report.html").read_text()
    stripped = tmp_path / "stripped.html"
    stripped.write_text(html.replace("data:image/png;base64,", "data:image/png;base64,x"))
    count_without, _ = _coloured(_screenshot(chromium, stripped, tmp_path / "stripped.png"))
    assert count_without < count / 20, (count_without, count)


# --- without training -------------------------------------------------------------------------------------------


def _config_json(folder, num_steps=10):
    folder.mkdir(parents=True)
    config = test_train.tiny_config("", num_steps=num_steps)
    (folder / "config.json").write_text(config.to_json_best_effort())


def test_resolve_runs_errors(tmp_path):
    with pytest.raises(UserError, match="matches no folder"):
        runs.resolve_runs(f"{tmp_path}/nothing*")
    with pytest.raises(UserError, match="is not a folder"):
        runs.resolve_runs(str(tmp_path / "missing"))
    (tmp_path / "notes").mkdir()
    _config_json(tmp_path / "run_b")
    _config_json(tmp_path / "run_a")
    with pytest.raises(UserError, match=r"no config.json.*notes"):
        runs.resolve_runs(f"{tmp_path}/*")
    assert runs.resolve_runs(f"{tmp_path}/run_*,{tmp_path}/run_a") == [str(tmp_path / "run_a"), str(tmp_path / "run_b")]
    assert runs.run_names(["x/a/run", "y/b/run", "z/c"]) == ["a/run", "b/run", "c"]


def test_diverged_run_is_marked_from_its_events(tmp_path):
    folder = tmp_path / "diverged"
    _config_json(folder)
    writer = TensorBoardWriter(str(folder))
    writer.write_scalars(2, {"train/loss": 1.5, "perf/images_per_second": 100.0})
    writer.write_scalars(4, {"train/loss": float("nan"), "perf/images_per_second": 300.0})
    writer.close()
    info = runs.load_run(str(folder), "diverged")
    assert info.status() == "diverged: non-finite train/loss at step 4; no checkpoint"
    assert info.log.images_per_second == 200.0 and math.isnan(info.log.scalars["train/loss"].values[1])


def test_fid_i2v_sits_beside_fid():
    config = settings.get_config()
    config.eval.metrics = ("swd", "fid_i2v", "kid", "fid")
    config.eval.num_images = 2000
    config.eval.kid_num_images = 1000
    assert compare.metric_columns(config, compare.selected_metrics(config)) == [
        "eval/fid2k",
        "eval/fid_i2v2k",
        "eval/kid1k_mean",
        "eval/kid1k_std",
        "eval/swd2k/mean",
    ]


def test_cli_errors(tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "animejax.main", "--mode=compare", *args],
            cwd=REPO,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )

    result = cli(f"--runs={tmp_path}/none*", f"--out={tmp_path}/out")
    assert result.returncode == 1 and "none*' matches no folder" in result.stderr, result.stderr[-2000:]
    result = cli(f"--runs={tmp_path}")
    assert result.returncode != 0 and "--mode=compare needs --runs" in result.stderr


def test_a_local_training_process_marks_the_run_running(tmp_path):
    folder = tmp_path / "live"
    _config_json(folder)
    assert runs.load_run(str(folder), "live").status() == "no checkpoint"
    # A process whose command line trains this folder (what `animejax --mode=train --workdir=...` shows in /proc).
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "animejax.main", "--mode=train", f"--workdir={folder}"]
    )
    try:
        for _ in range(100):  # Until the new process's command line shows in /proc.
            with open(f"/proc/{process.pid}/cmdline", "rb") as f:
                if f.read():
                    break
            time.sleep(0.1)
        assert runs.load_run(str(folder), "live").status() == "running (step 0 of 10 saved)"
    finally:
        process.kill()
        process.wait()
    assert runs.load_run(str(folder), "live").status() == "no checkpoint"
