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


def _mlp_penalty64(theta, points):
    """Mean WGAN-GP penalty of the critic f(x) = v . tanh(A x + c), in float64: grad_x f = A diag(1 - t^2) v."""
    a, c, v = theta
    t = np.tanh(points @ a + c)
    grads = ((1.0 - t * t) * v) @ a.T
    return np.mean((np.linalg.norm(grads, axis=-1) - 1.0) ** 2)


@pytest.mark.parametrize("formulation", gan_losses.PENALTY_GRADIENTS)
def test_penalty_parameter_gradient_matches_float64_finite_differences(formulation):
    # The penalty's gradient in the critic's parameters, by central differences of the closed-form penalty.
    rng = np.random.default_rng(4)
    dim, hidden = 5, 4
    theta = [rng.normal(size=(dim, hidden)) * 0.7, rng.normal(size=hidden), rng.normal(size=hidden)]
    points = rng.normal(size=(3, dim))
    expected = []
    for index, leaf in enumerate(theta):
        grad = np.zeros_like(leaf)
        for position in np.ndindex(leaf.shape):
            shifted = [p.copy() for p in theta]
            shifted[index][position] += 1e-6
            up = _mlp_penalty64(shifted, points)
            shifted[index][position] -= 2e-6
            grad[position] = (up - _mlp_penalty64(shifted, points)) / 2e-6
        expected.append(grad)

    def critic(params, x):
        a, c, v = params
        return jnp.tanh(x @ a + c) @ v

    def loss(params, x):
        return jnp.mean(gan_losses.parameter_gradient_penalty(critic, params, x, formulation=formulation)[0])

    params32 = [jnp.asarray(p, jnp.float32) for p in theta]
    value, grads = jax.jit(jax.value_and_grad(loss))(params32, jnp.asarray(points, jnp.float32))
    np.testing.assert_allclose(float(value), _mlp_penalty64(theta, points), rtol=1e-5)
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(np.asarray(got), want, rtol=2e-4, atol=2e-5)


def test_penalty_formulations_agree_on_a_conv_critic_in_parameters_and_points():
    critic_net = dcgan.Discriminator(image_size=16, base_channels=4, normalization="layer")
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 16, 3))
    params = jax.jit(critic_net.init)(jax.random.PRNGKey(1), x)["params"]

    def critic(p, images):
        return critic_net.apply({"params": p}, images)

    def loss(p, images, formulation):
        penalty, norms = gan_losses.parameter_gradient_penalty(critic, p, images, formulation=formulation)
        return jnp.mean(penalty) + 0.3 * jnp.mean(norms)  # A cotangent on the norms output too.

    grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
    reference = grad_fn(params, x, "reverse_over_reverse")
    scale = max(float(jnp.abs(leaf).max()) for leaf in jax.tree.leaves(reference))
    for formulation in gan_losses.PENALTY_GRADIENTS[1:]:
        grads = grad_fn(params, x, formulation)
        for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(reference)):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5 * scale)
    with pytest.raises(ValueError, match="formulation"):
        gan_losses.parameter_gradient_penalty(critic, params, x, formulation="finite_differences")


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
