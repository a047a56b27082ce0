"""benchmarks/stylegan3_step.py at the tiniest sizes: both models compile, step and report consistent ratios."""

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, subprocess_env

TINY = [
    "--resolution=32",
    "--channel_base=256",
    "--channel_max=8",
    "--z_dim=16",
    "--num_layers=4",
    "--batch_size=4",
    "--steps=1",
    "--exact_steps",
    "--warmup=0",
    "--synth_calls=1",
    "--augment=none",
    # Two of the four models: each step compiles for tens of seconds on 2 cores even this small.
    "--models=sg2_plain,sg3_t",
    "--config_width_flops=0",
]


def test_tiny_run_reports_sec_per_kimg_and_ratios(tmp_path):
    out_json = tmp_path / "sg3.json"
    command = [sys.executable, os.path.join(REPO, "benchmarks", "stylegan3_step.py"), *TINY, f"--json={out_json}"]
    completed = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    rows = [line for line in completed.stdout.splitlines() if line.startswith("| SG")]
    assert [row.split("|")[1].strip() for row in rows] == ["SG2 plain", "SG3-T"], completed.stdout

    out = json.loads(out_json.read_text())
    results = out["results"]
    assert out["resolution"] == 32 and out["batch_size"] == 4
    for r in results.values():
        assert r["finite_metrics"]
        assert math.isfinite(r["sec_per_kimg"]) and r["sec_per_kimg"] > 0
        assert math.isfinite(r["synth_sec_per_kimg"]) and r["synth_sec_per_kimg"] > 0
        assert r["compile_s"] > 0
        assert r["channel_base"] == 256 and r["channel_max"] == 8
        assert r["params"]["D"] == results["sg2_plain"]["params"]["D"]  # The same discriminator.
    assert results["sg3_t"]["style_mixing"] == 0 and results["sg2_plain"]["pl_weight"] == 0
    ratio = out["ratios"]["SG3-T/SG2 plain sec_per_kimg"]
    assert ratio == pytest.approx(results["sg3_t"]["sec_per_kimg"] / results["sg2_plain"]["sec_per_kimg"])
    # docs/configs.md, FFHQ-U 1024 on V100: 28.71 / 17.55.
    assert out["paper_ratios"]["FFHQ-U 1024 SG3-T/SG2 V100"] == pytest.approx(1.636, abs=1e-3)


def test_torch_twin_matches_the_jax_step():
    """benchmarks/stylegan3_torch.make_torch_runners at the tiniest StyleGAN3-R (blur of D's inputs, radial
    filters): equal parameter counts, the copied networks compute the same functions, and one step from the same
    latents gives the JAX step's losses; then a step on each side's own noise stays finite, with the same phases.
    ~45 s of CPU, most of it the JAX step's compilation (86 s wall seen on 2 cores shared at load 10)."""
    torch = pytest.importorskip("torch")
    import jax
    import numpy as np

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import stylegan3_torch

    from animejax.configs import stylegan3

    config = stylegan3.get_config("r_quick")
    model = config.model
    model.channel_base, model.channel_max, model.z_dim, model.w_dim, model.num_layers = 256, 8, 16, 16, 4
    config.train.batch_size = batch = 4
    config.stylegan.augment = "none"
    config.mesh.num_devices = 1
    assert config.stylegan.blur_init_sigma > 0 and config.stylegan.r1_interval > 1
    images = np.random.default_rng(0).integers(0, 256, size=(batch, 32, 32, 3), dtype=np.uint8)
    jax_run, torch_run, jax_step = stylegan3_torch.make_torch_runners(config, images)
    jax_runner, torch_runner = jax_run.__self__, torch_run.__self__

    counts = jax_runner.param_counts()
    assert counts == torch_runner.param_counts() and min(counts.values()) > 0
    checks = torch_runner.parity
    # float32 on both sides: ~1e-6 of the largest value seen. The EMA step, (1 - beta) (|x|^2 - ema) with
    # 1 - beta ~ 1e-4, keeps ~5e-4 of float32's rounding of the EMA itself.
    assert set(checks) == {"G(z)", "G(z) moving the EMAs", "magnitude EMA steps", "D(real)", "R1 per image"}
    assert all(v < 3e-5 for k, v in checks.items() if k != "magnitude EMA steps"), checks
    assert checks["magnitude EMA steps"] < 1e-2, checks

    # Step 0 from the latents the JAX step draws (StyleGAN2Method.train_step's key splits: Gmain's z from
    # g_rng -> ws_rng -> z_rng, Dmain's from fake_rng -> z_rng): the same G, D, blur and reals on both sides.
    g_rng, _, fake_rng, _, _ = jax.random.split(jax_step.step_key(jax_runner.state.rng, 0), 5)
    draws = [
        jax.random.normal(jax.random.split(jax.random.split(g_rng, 3)[0], 4)[0], (batch, model.z_dim)),
        jax.random.normal(jax.random.split(fake_rng, 4)[0], (batch, model.z_dim)),
    ]
    torch_runner.latents = lambda count: torch.from_numpy(np.array(draws.pop(0), np.float32))
    jax_run(1)
    torch_run(1)
    assert not draws
    ours = {k.removeprefix("train/"): v for k, v in jax.device_get(jax_runner.metrics).items()}
    theirs = {k: float(v) for k, v in torch_runner.metrics.items()}
    # Gmain: the same function of the same inputs (agreement to ~1e-7 seen).
    assert float(ours["loss_g"]) == pytest.approx(theirs["loss_g"], rel=1e-5)
    assert float(ours["grad_norm_g"]) == pytest.approx(theirs["grad_norm_g"], rel=1e-5)
    # Dmain and Dreg: G and D after one Adam step each (~lr sign(grad) per weight: a rounding-level gradient
    # could take either sign, though ~1e-6 agreement is seen), the same reals and blur.
    assert float(ours["d_real_sign"]) == theirs["d_real_sign"]
    assert float(ours["loss_d"]) == pytest.approx(theirs["loss_d"], rel=1e-4)
    assert float(ours["grad_norm_d"]) == pytest.approx(theirs["grad_norm_d"], rel=1e-4)
    assert float(ours["r1_penalty"].weight) == 1.0
    assert float(ours["r1_penalty"].value) == pytest.approx(theirs["r1_penalty"], rel=1e-4)
    # What the step moved besides the weights: w_avg (from Gmain's w) and the EMAs (by Dmain's fakes).
    state = jax.device_get(jax_runner.state)
    np.testing.assert_allclose(state.w_avg, torch_runner.w_avg.numpy(), rtol=1e-5, atol=1e-7)
    synthesis = torch_runner.g.synthesis
    emas = state.g_buffers["magnitude_ema"]["synthesis"]
    moved = {n: (float(emas[n]["magnitude_ema"]), float(getattr(synthesis, n).magnitude_ema)) for n in emas}
    assert sorted(moved) == sorted(synthesis.layer_names)
    # Each moved from 1 by (1 - beta) (|x|^2 - 1); the steps agree to ~1e-3 (float32 rounding of the EMA).
    assert all(abs(ours - theirs) < 1e-2 * abs(theirs - 1.0) for ours, theirs in moved.values()), moved
    # G_ema holds G's buffers (the reference copies them after every step).
    ema_synthesis = torch_runner.g_ema.synthesis
    assert all(float(getattr(ema_synthesis, n).magnitude_ema) == moved[n][1] for n in moved)

    del torch_runner.latents  # Back to torch.randn: from here the two runs draw their own noise.
    jax_run(1)
    torch_run(1)
    ours = jax.device_get(jax_runner.metrics)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(ours)), ours
    assert all(np.isfinite(float(v)) for v in torch_runner.metrics.values()), torch_runner.metrics
    assert jax_runner.step == torch_runner.step == 2
    assert torch_runner.phases == {"Gmain": 2, "Greg": 0, "Dmain": 2, "Dreg": 1}
