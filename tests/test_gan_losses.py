"""GAN loss primitives against closed forms, float64 numpy formulas and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animejax.methods import losses as gan_losses
from animejax.models import dcgan

LOGITS = np.array([-30.0, -8.0, -1.5, -1e-3, 0.0, 0.7, 4.0, 12.0, 30.0])


def _neg_log_sigmoid64(x):
    """-log(sigmoid(x)) = log(1 + exp(-x)) in float64 (log1p keeps it exact where exp(-x) is tiny)."""
    return np.log1p(np.exp(-np.asarray(x, np.float64)))


def test_non_saturating_losses_match_float64_formulas():
    real, fake = LOGITS, LOGITS[::-1].copy()
    # -log(1 - sigmoid(f)) = -log(sigmoid(-f)).
    expected_d = _neg_log_sigmoid64(real) + _neg_log_sigmoid64(-fake)
    expected_g = _neg_log_sigmoid64(fake)
    d = np.asarray(gan_losses.ns_discriminator_loss(jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32)))
    g = np.asarray(gan_losses.ns_generator_loss(jnp.asarray(fake, jnp.float32)))
    assert d.shape == g.shape == (len(LOGITS),) and np.isfinite(d).all()
    np.testing.assert_allclose(d, expected_d, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(g, expected_g, rtol=1e-5, atol=1e-12)


def test_wasserstein_losses_match_float64_formulas():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=7) * 5, rng.normal(size=7) * 5
    critic = gan_losses.wasserstein_critic_loss(jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32))
    generator = gan_losses.wasserstein_generator_loss(jnp.asarray(fake, jnp.float32))
    np.testing.assert_allclose(np.asarray(critic), fake - real, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(generator), -fake, rtol=1e-6)
    # The batch mean of -critic loss is the W1 estimate: mean f(real) - mean f(fake).
    np.testing.assert_allclose(-np.mean(np.asarray(critic)), real.mean() - fake.mean(), rtol=1e-5)


@pytest.mark.parametrize("norm", [0.25, 1.0, 3.0])
def test_gradient_penalty_of_a_linear_critic_is_closed_form(norm):
    # f(x) = <w, x> + b has gradient w everywhere, so the penalty is (|w| - 1)^2 at every point.
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 4, 3))
    w = w * norm / np.linalg.norm(w)
    w32 = jnp.asarray(w, jnp.float32)

    def critic(x):
        return jnp.sum(x * w32, axis=(1, 2, 3)) + 0.3

    points = jnp.asarray(rng.normal(size=(5, 4, 4, 3)), jnp.float32)
    penalty, norms = gan_losses.gradient_penalty(critic, points)
    assert penalty.shape == norms.shape == (5,)
    np.testing.assert_allclose(np.asarray(norms), np.full(5, norm), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(penalty), np.full(5, (norm - 1.0) ** 2), rtol=1e-4, atol=1e-9)


def test_gradient_penalty_matches_finite_differences_of_a_nonlinear_critic():
    # f(x) = v . tanh(A x + c) + 0.1 |x|^2, per example; its gradient by central differences in float64.
    rng = np.random.default_rng(2)
    dim, hidden = 6, 5
    a, c, v = rng.normal(size=(dim, hidden)), rng.normal(size=hidden), rng.normal(size=hidden)
    points = rng.normal(size=(4, dim))

    def critic_np(x):
        return np.tanh(x @ a + c) @ v + 0.1 * np.sum(x * x, axis=-1)

    def critic_jax(x):
        return jnp.tanh(x @ a.astype(np.float32) + c.astype(np.float32)) @ v.astype(np.float32) + 0.1 * jnp.sum(
            x * x, axis=-1
        )

    step = 1e-6
    grads = np.zeros_like(points)
    for i in range(dim):
        offset = np.zeros(dim)
        offset[i] = step
        grads[:, i] = (critic_np(points + offset) - critic_np(points - offset)) / (2 * step)
    expected_norms = np.linalg.norm(grads, axis=-1)
    penalty, norms = gan_losses.gradient_penalty(critic_jax, jnp.asarray(points, jnp.float32))
    np.testing.assert_allclose(np.asarray(norms), expected_norms, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(penalty), (expected_norms - 1.0) ** 2, rtol=1e-4, atol=1e-7)


def test_gradient_penalty_per_example_on_a_conv_critic_and_second_order_grad():
    # Without batch norm the gradient of the batch sum splits into each example's own input gradient.
    critic = dcgan.Discriminator(image_size=16, base_channels=4, normalization="layer")
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 16, 16, 3))
    params = jax.jit(critic.init)(jax.random.PRNGKey(1), x)["params"]

    def apply(p, images):
        return critic.apply({"params": p}, images)

    _, norms = jax.jit(lambda p, images: gan_losses.gradient_penalty(lambda y: apply(p, y), images))(params, x)
    single = jax.jit(jax.vmap(jax.grad(lambda image: apply(params, image[None])[0])))(x)  # One example at a time.
    np.testing.assert_allclose(np.asarray(norms), np.linalg.norm(np.asarray(single).reshape(3, -1), axis=-1), rtol=1e-5)
    penalty_fn = jax.jit(jax.grad(lambda p: jnp.mean(gan_losses.gradient_penalty(lambda im: apply(p, im), x)[0])))
    grads = penalty_fn(params)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(grads))
    assert any(float(jnp.abs(leaf).max()) > 0 for leaf in jax.tree.leaves(grads))


def test_random_interpolates_lie_on_the_segments():
    rng = np.random.default_rng(3)
    real = jnp.asarray(rng.normal(size=(6, 4, 4, 3)), jnp.float32)
    fake = jnp.asarray(rng.normal(size=(6, 4, 4, 3)), jnp.float32)
    points = gan_losses.random_interpolates(real, fake, jax.random.PRNGKey(0))
    eps = np.asarray((points - fake) / (real - fake))
    per_example = eps.reshape(6, -1)
    np.testing.assert_allclose(per_example, per_example[:, :1] * np.ones_like(per_example), rtol=1e-3, atol=1e-3)
    assert (per_example >= -1e-4).all() and (per_example <= 1 + 1e-4).all()
    assert np.ptp(per_example[:, 0]) > 0.05  # Drawn per example, not once.


def test_mean_absolute_error_is_per_example_mean():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(3, 5, 2)), rng.normal(size=(3, 5, 2))
    out = gan_losses.mean_absolute_error(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
    np.testing.assert_allclose(np.asarray(out), np.abs(a - b).reshape(3, -1).mean(-1), rtol=1e-6)
