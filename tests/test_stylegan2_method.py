"""The StyleGAN2 method: regularisers against independent computations, truncation and mixing, the lazy phases,
ADA's probability, devices, a short run and --mode=sample's grids."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from animejax import methods
from animejax.methods import stylegan2
from tests import device_equality
from tests.test_train import init_and_step, load_config


def tiny_config(cache_dir: str, **stylegan):
    """configs/stylegan2.py:quick narrowed to milliseconds per layer: 32 px, batch 8, 16-channel networks."""
    config = load_config("stylegan2", "quick")
    config.data.num_images = 256
    config.data.cache_dir = cache_dir
    config.mesh.num_devices = 1
    config.train.batch_size = 8
    config.model.z_dim = config.model.w_dim = 8
    config.model.mapping_layers = 2
    config.model.channel_base, config.model.channel_max = 256, 16
    config.sample.grid_size = 2
    config.sample.num_individual, config.eval.batch_size = 3, 4
    config.sample.num_interpolations, config.sample.animation_frames = 2, 6
    for key, value in stylegan.items():
        config.stylegan[key] = value
    return config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    config = tiny_config(str(tmp_path_factory.mktemp("cache")))
    method = methods.get_method(config)
    images = jax.random.uniform(jax.random.PRNGKey(0), (8, 32, 32, 3), minval=-1, maxval=1)
    state = jax.jit(method.init_state)(jax.random.PRNGKey(1), {"image": images})
    # Trained-looking weights: init leaves the noise strengths at 0 and the D output layer tiny.
    leaves, treedef = jax.tree.flatten(state.g_params)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    g_params = jax.tree.unflatten(treedef, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    return method, state.replace(g_params=g_params, g_ema_params=g_params), images


def test_r1_gradient_matches_directional_finite_differences(tiny):
    """|grad_x D(x)|^2: the gradient's projections on random directions equal central differences of D."""
    method, state, images = tiny
    real = images[:1]
    p = jnp.zeros(())
    grads = jax.grad(lambda x: jnp.sum(method.discriminator(state.d_params, x)))(real)
    penalty = method.r1_penalty(state.d_params, real, jax.random.PRNGKey(0), p)
    np.testing.assert_allclose(penalty, np.sum(np.square(np.asarray(grads, np.float64))), rtol=1e-5)
    rng = np.random.default_rng(0)
    h = 1e-2
    for _ in range(4):
        v = rng.normal(size=real.shape).astype(np.float32)
        v /= np.linalg.norm(v)
        plus = float(method.discriminator(state.d_params, real + h * v)[0])
        minus = float(method.discriminator(state.d_params, real - h * v)[0])
        # float32 differences of O(1) logits over 2h = 0.02: ~1e-5 noise; leaky ReLU kinks: O(h) curvature.
        np.testing.assert_allclose(np.sum(np.asarray(grads) * v), (plus - minus) / (2 * h), rtol=2e-2, atol=1e-4)


def test_path_lengths_match_a_float64_jacobian(tiny):
    """L = sqrt(mean over layers of |J^T y|^2), with J the synthesis' full Jacobian w.r.t. ws, in float64."""
    method, state, _ = tiny
    ws = jax.random.normal(jax.random.PRNGKey(3), (2, method.num_ws, method.w_dim))
    y = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32) / 32
    noise_rng = jax.random.PRNGKey(4)
    got = method.path_lengths_at(state.g_params, state.g_noise_const, ws, noise_rng, jnp.asarray(y))

    def synthesis_of_one(flat_ws, index):
        batch_ws = ws.at[index].set(flat_ws.reshape(method.num_ws, method.w_dim))
        return method.synthesis(state.g_params, state.g_noise_const, batch_ws, noise_rng)[index].reshape(-1)

    expected = []
    for i in range(2):
        jacobian = np.asarray(jax.jacfwd(synthesis_of_one)(ws[i].reshape(-1), i), np.float64)  # [pixels, ws]
        projection = (jacobian.T @ y[i].reshape(-1).astype(np.float64)).reshape(method.num_ws, method.w_dim)
        expected.append(np.sqrt(np.mean(np.sum(projection**2, axis=1))))
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_penalty_gradient_formulations_give_the_same_r1_and_path_length_gradients(tiny):
    """stylegan.penalty_gradient changes how the second-order gradients are taken, not their values."""
    method, state, images = tiny
    ws = jax.random.normal(jax.random.PRNGKey(3), (2, method.num_ws, method.w_dim))
    y = jax.random.normal(jax.random.PRNGKey(5), (2, 32, 32, 3)) / 32
    configured = method.penalty_gradient

    def gradients(formulation):
        method.penalty_gradient = formulation

        def r1(d_params):
            return jnp.mean(method.r1_penalty(d_params, images[:2], jax.random.PRNGKey(0), jnp.zeros(())))

        def lengths(g_params):
            return jnp.mean(method.path_lengths_at(g_params, state.g_noise_const, ws, jax.random.PRNGKey(4), y))

        return jax.jit(jax.grad(r1))(state.d_params), jax.jit(jax.grad(lengths))(state.g_params)

    try:
        reference = gradients("reverse_over_reverse")
        # float32 sums: each difference is measured against the largest gradient of its network.
        scales = [max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(tree)) for tree in reference]
        for formulation in ("forward_over_reverse", "reverse_over_forward"):
            for got_tree, want_tree, scale in zip(gradients(formulation), reference, scales):
                for got, want in zip(jax.tree.leaves(got_tree), jax.tree.leaves(want_tree)):
                    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5 * scale)
    finally:
        method.penalty_gradient = configured


def test_path_length_penalty_moves_the_mean_by_pl_decay(tiny):
    method, state, _ = tiny
    pl_mean = jnp.asarray(0.3)
    loss, (new_mean, length, penalty) = method.path_length_penalty(
        state.g_params, state.g_noise_const, pl_mean, jax.random.PRNGKey(5)
    )
    decay = method.style.pl_decay
    np.testing.assert_allclose(new_mean, 0.3 + decay * (float(length) - 0.3), rtol=1e-6)
    np.testing.assert_allclose(loss, method.style.pl_weight * penalty, rtol=1e-6)
    assert float(penalty) > 0


def test_truncation_psi_zero_gives_w_avg_and_one_the_mapping(tiny):
    method, state, _ = tiny
    state = state.replace(w_avg=jnp.linspace(-1.0, 1.0, method.w_dim))
    z = jax.random.normal(jax.random.PRNGKey(6), (3, method.z_dim))
    at_zero = method.sampling_ws(state, z, psi=0.0)
    np.testing.assert_allclose(at_zero, np.broadcast_to(state.w_avg, at_zero.shape), rtol=1e-6)
    w = method.map(state.g_ema_params, z)
    np.testing.assert_allclose(method.sampling_ws(state, z, psi=1.0)[:, 0], w, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(method.sampling_ws(state, z, psi=0.5)[:, 3], (w + state.w_avg) / 2, rtol=1e-5, atol=1e-6)


def test_style_mixing_crossover_takes_the_second_w_from_layer_k():
    w, w_mix = jnp.ones((2, 4)), -jnp.ones((2, 4))
    for k in range(1, 6):
        ws = np.asarray(stylegan2.mix_styles(w, w_mix, jnp.asarray(k), 6))
        assert (ws[:, :k] == 1).all() and (ws[:, k:] == -1).all()


def test_training_ws_mix_at_one_cutoff_with_probability(tiny):
    method, state, _ = tiny
    mixed = 0
    for seed in range(20):
        ws, w = method.training_ws(state.g_params, jax.random.PRNGKey(seed), 4)
        ws, w = np.asarray(ws), np.asarray(w)
        np.testing.assert_array_equal(ws[:, 0], w)  # Layer 0 always has the first w.
        differs = ~np.all(np.isclose(ws, w[:, None]), axis=(0, 2))
        if differs.any():
            cutoff = int(np.argmax(differs))
            assert differs[cutoff:].all() and 1 <= cutoff < method.num_ws
            mixed += 1
    assert 13 <= mixed <= 20  # Probability 0.9 of 20: binomial mean 18, sd 1.3.


def test_lazy_phases_run_on_their_steps_and_ada_moves_p(tmp_path):
    """Step 0 runs R1 and path length (weight 1), step 1 neither (weight 0); Adam counts its updates; p moves
    by exactly B * interval / (ada_kimg * 1000) per step toward the side the target says."""
    config = tiny_config(str(tmp_path), r1_interval=2, pl_interval=2, ada_interval=1, ada_kimg=1.0)
    config.stylegan.ada_p_init = 0.5
    # E[sign D(real)] lies in [-1, 1]: above a target of -1.5, so p rises (ada.adjust's tests cover both ways).
    for target, direction in ((-1.5, 1),):
        config.stylegan.ada_target = target
        method = methods.get_method(config)
        images = jax.random.uniform(jax.random.PRNGKey(0), (8, 32, 32, 3), minval=-1, maxval=1)
        state = jax.jit(method.init_state)(jax.random.PRNGKey(1), {"image": images})
        step = jax.jit(method.train_step, static_argnames="phase")
        assert [method.phase(i) for i in range(2)] == ["greg+dreg", "main"]
        weights = []
        for i in range(2):
            state, metrics = step(state, {"image": images}, jax.random.PRNGKey(10 + i), {}, phase=method.phase(i))
            weights.append((float(metrics["train/r1_penalty"].weight), float(metrics["train/pl_penalty"].weight)))
            assert all(np.isfinite(float(np.asarray(v[0] if isinstance(v, tuple) else v))) for v in metrics.values())
        assert weights == [(1.0, 1.0), (0.0, 0.0)]
        initial = method.init_state(jax.random.PRNGKey(1), {"image": images})
        ema_change = optax.tree.norm(jax.tree.map(jnp.subtract, state.g_ema_params, initial.g_ema_params))
        assert float(ema_change) > 0  # The EMA follows G (its half-life ramps up from 0 images).
        assert int(state.g_opt_state[0].count) == 3 and int(state.d_opt_state[0].count) == 3  # 2 main + 1 lazy.
        expected = 0.5 + direction * 2 * 8 / 1000
        np.testing.assert_allclose(float(state.ada.p), expected, rtol=1e-6)


def test_phases_name_the_lazy_regularisations_due(tmp_path):
    method = methods.get_method(tiny_config(str(tmp_path), r1_interval=4, pl_interval=2))
    assert [method.phase(i) for i in range(6)] == ["greg+dreg", "main", "greg", "main", "greg+dreg", "main"]
    method = methods.get_method(tiny_config(str(tmp_path), r1_interval=3, pl_interval=0))
    assert [method.phase(i) for i in range(4)] == ["dreg", "main", "main", "dreg"]


def test_ema_half_life_and_ramp_up():
    step = jnp.asarray(100)
    beta = stylegan2.ema_beta(step, 32, ema_kimg=10.0, ema_rampup=0.05)
    np.testing.assert_allclose(beta, 0.5 ** (32 / min(10_000, 100 * 32 * 0.05)), rtol=1e-6)
    np.testing.assert_allclose(stylegan2.ema_beta(step, 32, 10.0, 0.0), 0.5 ** (32 / 10_000), rtol=1e-6)
    assert float(stylegan2.ema_beta(jnp.asarray(0), 32, 10.0, 0.05)) == 0.0  # The EMA starts as G.


def test_lazy_adam_correction():
    config = load_config("stylegan2")
    tx = stylegan2.lazy_adam(config.optim, 4)
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.asarray([1.0, -2.0, 0.5])}
    updates, _ = tx.update(grads, tx.init(params), params)
    # First Adam step: -lr_c * g / (|g| + eps) with lr_c = lr * 4/5 (b1^c = 0: m = g; v bias-corrected to g^2).
    np.testing.assert_allclose(updates["w"], -0.0025 * 0.8 * np.sign(grads["w"]), rtol=1e-5)


def test_eight_devices_match_one_device(cache_dir):
    """Two steps with both regularisers on 8 devices equal two on 1; see tests/device_equality.py.

    Intervals of 1 make every step the "greg+dreg" phase, whose program holds the plain phase's losses: one
    program to compile per device count instead of two.
    """
    config = tiny_config(cache_dir, r1_interval=1, pl_interval=1)
    config.train.batch_size = 16  # Two images per device; mbstd groups of 4 span devices.
    g_c = d_c = 1 / 2  # The lazy-regularisation correction interval / (interval + 1).
    optim = config.optim
    networks = [
        device_equality.Network(
            "g_params", "g_opt_state", optim.learning_rate * g_c, 0.0, optim.b2**g_c, "g_ema_params"
        ),
        device_equality.Network("d_params", "d_opt_state", optim.learning_rate * d_c, 0.0, optim.b2**d_c),
    ]
    runs = device_equality.run_on_one_and_eight(init_and_step, config, steps=2, seed=3)
    device_equality.assert_runs_agree(runs, networks)
    (_, states_1), (_, states_8) = runs
    for field in ("w_avg", "pl_mean"):
        np.testing.assert_allclose(getattr(states_8[-1], field), getattr(states_1[-1], field), rtol=1e-5, atol=1e-6)


def test_sample_writes_sweep_and_style_mixing_grids(tiny):
    method, state, _ = tiny
    samples = method.sample(state, [], jax.random.PRNGKey(0))
    n = method.grid_size
    images, columns = samples.grids["truncation_sweep"]
    assert columns == len(stylegan2.TRUNCATION_SWEEP) and images.shape == (n * columns, 32, 32, 3)
    # psi = 0 is w_avg for every seed: the last column's images are all the same.
    last = images.reshape(n, columns, 32, 32, 3)[:, -1]
    np.testing.assert_allclose(last[0], last[1], atol=1e-5)
    for name in ("coarse", "middle"):  # 32 px has 8 ws: coarse 0-4, middle 4-8, no fine layers.
        grid, grid_columns = samples.grids[f"style_mixing_{name}"]
        assert grid_columns == n + 1 and grid.shape == ((n + 1) ** 2, 32, 32, 3)
    assert "style_mixing_fine" not in samples.grids
    assert np.isfinite(samples.grids["samples"][0]).all()
    assert samples.individual.shape == (3, 32, 32, 3) and np.abs(samples.individual).max() <= 1.0
    rows, frames = method.sample_config.num_interpolations, method.sample_config.animation_frames
    for space in "zw":
        animation = samples.animations[f"interpolation_{space}"]
        assert animation.shape == (frames, rows, 32, 32, 3)
        assert not np.allclose(animation[0], animation[-1])  # The walk moves.
        assert np.abs(animation[1] - animation[0]).mean() < np.abs(animation[-1] - animation[0]).mean()


def test_loop_trains_and_sample_writes_grids_gifs_and_progress(tmp_path, cache_dir):
    """The loop on the built-in faces: finite logged losses, then --mode=sample's PNGs and GIFs."""
    from animejax import inference, train

    config = tiny_config(cache_dir)
    config.train.num_steps, config.train.log_every = 4, 2
    config.train.sample_every, config.train.checkpoint_every = 2, 4
    train.train_and_evaluate(config, str(tmp_path))
    paths = inference.sample(config, str(tmp_path))
    for name in ("samples", "truncation_sweep", "style_mixing_coarse", "interpolation_z", "interpolation_w"):
        assert os.path.getsize(paths[name]) > 0, name
    with Image.open(paths["interpolation_w"]) as gif:
        assert gif.n_frames == config.sample.animation_frames
    with Image.open(paths["progress_gif"]) as gif:
        assert gif.n_frames == 2  # The fixed-seed grids of steps 2 and 4.
