"""train.init_from: a run starts from another run's weights with a fresh optimizer, or fails clearly."""

import jax
import numpy as np
import pytest

from animejax import checkpoint, run_setup, train, transfer
from tests.test_train import tiny_config


def _loss(run, state):
    batch = run.images[:16].astype(np.float32) / 127.5 - 1
    return float(jax.jit(run.method.loss)(state.params, batch, jax.random.PRNGKey(0))[0])


def test_fine_tuning_starts_at_the_source_runs_loss(tmp_path, cache_dir):
    source = tmp_path / "source"
    train.train_and_evaluate(tiny_config(cache_dir, num_steps=30, checkpoint_every=30), str(source))

    config = tiny_config(cache_dir)
    fresh = run_setup.setup_run(config, str(tmp_path / "fresh"))
    config.train.init_from = str(source)
    tuned = run_setup.setup_run(config, str(tmp_path / "tuned"))
    trained = run_setup.setup_run(tiny_config(cache_dir, num_steps=30), str(source))  # Resumes the source.
    assert trained.restored and not tuned.restored and int(trained.state.step) == 30

    # Weights and EMA from the source; step, key and Adam's state fresh.
    for field in ("params", "ema_params"):
        for a, b in zip(jax.tree.leaves(getattr(tuned.state, field)), jax.tree.leaves(getattr(trained.state, field))):
            np.testing.assert_array_equal(a, b)
    assert int(tuned.state.step) == 0
    np.testing.assert_array_equal(tuned.state.rng, fresh.state.rng)
    for a, b in zip(jax.tree.leaves(tuned.state.opt_state), jax.tree.leaves(fresh.state.opt_state)):
        np.testing.assert_array_equal(a, b)
    # So the fine-tuning run's loss is the source's, well below a fresh network's.
    loss_tuned, loss_source, loss_fresh = (
        _loss(tuned, tuned.state),
        _loss(trained, trained.state),
        _loss(fresh, fresh.state),
    )
    np.testing.assert_allclose(loss_tuned, loss_source, rtol=1e-6)
    assert loss_tuned < 0.8 * loss_fresh, (loss_tuned, loss_fresh)

    # A checkpoint folder works too; once the new run has its own checkpoint, it resumes from that.
    config.train.init_from = str(source / "checkpoints" / "30")
    assert not run_setup.setup_run(config, str(tmp_path / "tuned2")).restored


def test_init_from_errors_name_the_problem(tmp_path, cache_dir):
    source = tmp_path / "source"
    train.train_and_evaluate(tiny_config(cache_dir, num_steps=2, checkpoint_every=2), str(source))
    config = tiny_config(cache_dir)
    config.model.base_channels = 8  # Another width: every kernel's shape differs.
    config.train.init_from = str(source)
    with pytest.raises(checkpoint.CheckpointMismatchError, match=r"init_from.*Tensors that differ.*params/"):
        run_setup.setup_run(config, str(tmp_path / "other"))
    config = tiny_config(cache_dir)
    config.train.init_from = str(tmp_path / "nothing_here")
    with pytest.raises(transfer.InitFromError, match="neither a run's workdir"):
        run_setup.setup_run(config, str(tmp_path / "other2"))
    assert not (tmp_path / "other").exists() and not (tmp_path / "other2").exists()  # Refused before writing.
