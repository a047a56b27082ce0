"""How each method assembles its objective: one train step against a float64 numpy computation of it.

Each method is built from its config with its networks swapped for linear ones, so the whole objective has a
short numpy form. One jitted `train_step` runs on fixed parameters, batch and noise; then
- its metrics (losses, D outputs, gradient norms) equal the numpy objective's values;
- the gradients it took, read back from Adam's first moment (after one step mu = (1 - b1) * g exactly), equal
  the numpy objective's central finite differences in float64;
- the parameters and EMA equal one numpy Adam step and EMA update from them.

So a term computed but left out of a loss, a wrong reparameterisation or a swapped EMA decay fails here.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from animejax import methods
from animejax.methods.common import ema_update
from animejax.models import GANNetworks
from tests.test_gan import tiny_config as gan_tiny_config
from tests.test_train import load_config

SIZE, LATENT, BATCH = 4, 3, 5  # An odd batch: sums of signs (the L1 cycle gradient) are never exactly 0.
PIXELS = SIZE * SIZE * 3
ADAM_EPS = 1e-8  # optax.adam's default.


# --- linear networks and their numpy twins --------------------------------------------------------------------


class LinearGenerator(nn.Module):
    """G(z) = tanh(z W + b) as [B, S, S, 3]."""

    @nn.compact
    def __call__(self, latents, train=True):
        del train
        return jnp.tanh(nn.Dense(PIXELS, name="dense")(latents)).reshape(-1, SIZE, SIZE, 3)


class LinearCritic(nn.Module):
    """f(x) = flatten(x) w + b: [B]. Its input gradient is w everywhere, so WGAN-GP's penalty is closed form."""

    @nn.compact
    def __call__(self, images, train=True):
        del train
        return nn.Dense(1, name="dense")(images.reshape(images.shape[0], -1))[:, 0]


class LinearEncoder(nn.Module):
    """E(x) = flatten(x) M + c: [B, latent]."""

    @nn.compact
    def __call__(self, images, train=True):
        del train
        return nn.Dense(LATENT, name="dense")(images.reshape(images.shape[0], -1))


class LinearAutoEncoder(nn.Module):
    """The autoencoder interface (`encode`, `decode`, `latent_dim`) with one dense layer each way."""

    latent_dim: int = LATENT
    variational: bool = True

    def setup(self):
        self.encoder = nn.Dense(2 * LATENT if self.variational else LATENT)
        self.decoder = nn.Dense(PIXELS)

    def encode(self, images):
        h = self.encoder(images.reshape(images.shape[0], -1))
        return tuple(jnp.split(h, 2, axis=-1)) if self.variational else h

    def decode(self, latents):
        return self.decoder(latents).reshape(-1, SIZE, SIZE, 3)

    def __call__(self, images):
        code = self.encode(images)
        return self.decode(code[0] if self.variational else code)


def dense(params, x):
    """numpy twin of a flax Dense: x [B, I] -> [B, O], float64."""
    return x @ params["kernel"] + params["bias"]


def softplus(x):
    return np.logaddexp(0.0, x)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def to_numpy(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), jax.device_get(tree))


def finite_difference_grad(loss, params, h=1e-6):
    """Central differences of a float64 numpy loss w.r.t. every element of a params tree (a dict of arrays)."""
    grads = jax.tree.map(np.zeros_like, params)
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        grad = _get(grads, path)
        for index in np.ndindex(leaf.shape):
            original = leaf[index]
            leaf[index] = original + h
            plus = loss(params)
            leaf[index] = original - h
            minus = loss(params)
            leaf[index] = original
            grad[index] = (plus - minus) / (2 * h)
    return grads


def _get(tree, path):
    for key in path:
        tree = tree[key.key]
    return tree


def adam_first_step(params, grads, learning_rate):
    """One Adam step from zero moments: bias-corrected m = g, v = g^2, so p - lr * g / (|g| + eps)."""
    return jax.tree.map(lambda p, g: p - learning_rate * g / (np.abs(g) + ADAM_EPS), params, grads)


def first_moment_gradients(opt_state, b1):
    """The gradients of an Adam state after exactly one update: mu = (1 - b1) * g."""
    return jax.tree.map(lambda m: np.asarray(m, np.float64) / (1.0 - b1), optax.tree.get(opt_state, "mu"))


def assert_trees_close(actual, expected, rtol, atol, what):
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
        np.testing.assert_allclose(
            np.asarray(a), b, rtol=rtol, atol=atol, err_msg=f"{what}{jax.tree_util.keystr(path)}"
        )


def global_norm(tree):
    return float(np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(tree))))


# --- GANs -----------------------------------------------------------------------------------------------------


def gan_method_with_linear_networks(name, cache_dir, latents):
    config = gan_tiny_config(name, cache_dir)
    config.data.image_size = SIZE
    config.model.latent_dim = LATENT
    config.gan.n_critic = 1  # n_critic > 1 repeats the same update; tests/test_gan.py trains with 5.
    config.gan.diffaugment = ""
    for optim in (config.optim, config.optim_d):
        optim.warmup_steps, optim.grad_clip_norm, optim.schedule = 0, 0.0, "constant"
    method = methods.get_method(config)
    method.networks = GANNetworks(LinearGenerator(), LinearCritic(), LinearEncoder() if method.use_encoder else None)
    method.noise = lambda rng, count: latents[:count]  # The step's z, fixed so numpy sees the same.
    return config, method


def numpy_gan_step(config, params, real, latents):
    """The GAN objective of `config` (n_critic = 1) on the linear networks, in float64: metrics, grads, new params."""
    g, d, e = params["g"], params["d"], params["e"]
    wasserstein = config.method == "wgan_gp"

    def generate(g):
        return np.tanh(dense(g["dense"], latents))

    def critic(d, x):
        return dense(d["dense"], x)[:, 0]

    def d_loss(d):
        real_out, fake_out = critic(d, real), critic(d, generate(g))
        if not wasserstein:
            return np.mean(softplus(-real_out) + softplus(fake_out))
        w = d["dense"]["kernel"][:, 0]
        penalty = (np.sqrt(np.sum(w * w) + 1e-12) - 1.0) ** 2  # |grad_x f| = |w| at every interpolate.
        return np.mean(fake_out - real_out) + config.gan.gp_weight * penalty

    d_grads = finite_difference_grad(d_loss, d)
    new_d = adam_first_step(d, d_grads, config.optim_d.learning_rate)

    def g_terms(g, e):
        fake = generate(g)
        out = critic(new_d, fake)
        adversarial = np.mean(-out if wasserstein else softplus(-out))
        cycle = np.mean(np.abs(dense(e["dense"], fake) - latents)) if e else 0.0
        return adversarial, cycle

    def g_loss(g):
        adversarial, cycle = g_terms(g, e)
        return adversarial + config.gan.cycle_lambda * cycle

    g_grads = finite_difference_grad(g_loss, g)
    e_grads = finite_difference_grad(lambda e: config.gan.cycle_lambda * g_terms(g, e)[1], e) if e else {}
    real_out, fake_out = critic(d, real), critic(d, generate(g))
    metrics = {
        "train/loss_d": d_loss(d),
        "train/loss_g": g_loss(g),
        "train/grad_norm_d": global_norm(d_grads),
        "train/grad_norm_g": global_norm(g_grads),
        "train/d_real": np.mean(real_out if wasserstein else sigmoid(real_out)),
        "train/d_fake": np.mean(fake_out if wasserstein else sigmoid(fake_out)),
    }
    if wasserstein:
        metrics["train/wasserstein"] = np.mean(real_out - fake_out)
    if e:
        metrics["train/cycle_latent"] = g_terms(g, e)[1]
        metrics["train/grad_norm_e"] = global_norm(e_grads)
    new_g = adam_first_step(g, g_grads, config.optim.learning_rate)
    new_e = adam_first_step(e, e_grads, config.optim.learning_rate) if e else {}
    grads = {"g": g_grads, "d": d_grads, "e": e_grads}
    return metrics, grads, {"g": new_g, "d": new_d, "e": new_e}


@pytest.mark.parametrize("name", ["dcgan", "resdcgan", "resdcgan_cycle", "wgan_gp"])
def test_gan_step_assembles_the_objective(name, cache_dir):
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(BATCH, LATENT)).astype(np.float32)
    real = rng.uniform(-1, 1, size=(BATCH, SIZE, SIZE, 3)).astype(np.float32)
    config, method = gan_method_with_linear_networks(name, cache_dir, jnp.asarray(latents))
    state = jax.jit(method.init_state)(jax.random.PRNGKey(1), {"image": jnp.asarray(real)})
    params = to_numpy({"g": state.g_params, "d": state.d_params, "e": state.e_params})
    new_state, metrics = jax.jit(method.train_step)(state, {"image": jnp.asarray(real)}, jax.random.PRNGKey(2), {})
    new_state, metrics = jax.device_get((new_state, metrics))

    flat_real = real.reshape(BATCH, -1).astype(np.float64)
    expected, grads, new_params = numpy_gan_step(config, params, flat_real, latents.astype(np.float64))
    for key, value in expected.items():
        np.testing.assert_allclose(metrics[key], value, rtol=2e-5, atol=1e-6, err_msg=key)
    # float32 gradients vs float64 finite differences: rounding of O(1) activations, ~1e-7 of the scale.
    assert_trees_close(first_moment_gradients(new_state.d_opt_state, config.optim_d.b1), grads["d"], 1e-4, 1e-6, "d")
    assert_trees_close(first_moment_gradients(new_state.g_opt_state, config.optim.b1), grads["g"], 1e-4, 1e-6, "g")
    if method.use_encoder:
        e_grads = first_moment_gradients(new_state.e_opt_state, config.optim.b1)
        assert_trees_close(e_grads, grads["e"], 1e-4, 1e-6, "e")
        assert_trees_close(new_state.e_params, new_params["e"], 0, 1e-6, "e_params")
    assert_trees_close(new_state.d_params, new_params["d"], 0, 1e-6, "d_params")
    assert_trees_close(new_state.g_params, new_params["g"], 0, 1e-6, "g_params")
    # EMA with warm-up: decay min(ema.decay, (1 + 0) / (10 + 0)) = 0.1 at step 0.
    decay = min(config.ema.decay, 0.1)
    expected_ema = jax.tree.map(lambda old, new: decay * old + (1 - decay) * new, params["g"], new_params["g"])
    assert_trees_close(new_state.g_ema_params, expected_ema, 0, 1e-6, "g_ema_params")
    assert int(new_state.step) == 1


# --- autoencoder and VAE --------------------------------------------------------------------------------------


def numpy_autoencoder_loss(config, params, images, noise):
    """The (variational) autoencoder objective on the linear networks, float64: (loss, metrics)."""
    flat = images.reshape(images.shape[0], -1)
    code = dense(params["encoder"], flat)
    variational = config.method == "vae"
    if variational:
        mean, log_variance = np.split(code, 2, axis=-1)
        latents = mean + np.exp(0.5 * log_variance) * noise  # std = exp(log_variance / 2).
        kl = 0.5 * np.sum(mean**2 + np.exp(log_variance) - 1.0 - log_variance, axis=-1)
    else:
        latents, kl = code, np.zeros(len(flat))
    raw = dense(params["decoder"], latents)
    if config.model.reconstruction == "mse":
        decoded = np.tanh(raw)
        reconstruction = np.sum((decoded - flat) ** 2, axis=-1)
    else:
        target = (flat + 1.0) / 2.0
        reconstruction = np.sum(np.maximum(raw, 0) - raw * target + np.log1p(np.exp(-np.abs(raw))), axis=-1)
        decoded = 2.0 * sigmoid(raw) - 1.0
    loss = np.mean(reconstruction + config.model.beta * kl)
    metrics = {
        "train/loss": loss,
        "train/reconstruction": np.mean(reconstruction),
        "train/mse_per_pixel": np.mean((decoded - flat) ** 2),
    }
    if variational:
        metrics["train/kl"] = np.mean(kl)
    return loss, metrics


@pytest.mark.parametrize("name,reconstruction", [("autoencoder", "mse"), ("vae", "mse"), ("vae", "bce")])
def test_autoencoder_step_assembles_the_objective(name, reconstruction):
    config = load_config(name, "quick")
    config.data.image_size = SIZE
    config.model.reconstruction = reconstruction
    config.model.beta = 0.7 if name == "vae" else 0.0  # Not 1, so a dropped or doubled factor shows.
    config.optim.warmup_steps, config.optim.grad_clip_norm = 0, 0.0
    method = methods.get_method(config)
    method.model = LinearAutoEncoder(variational=method.variational)
    rng = np.random.default_rng(3)
    images = rng.uniform(-1, 1, size=(BATCH, SIZE, SIZE, 3)).astype(np.float32)
    state = jax.jit(method.init_state)(jax.random.PRNGKey(4), {"image": jnp.asarray(images)})
    params = to_numpy(state.params)
    key = jax.random.PRNGKey(5)
    new_state, metrics = jax.device_get(jax.jit(method.train_step)(state, {"image": jnp.asarray(images)}, key, {}))

    # The step's reparameterisation noise is N(0, I) drawn from its key (methods/autoencoder.py).
    noise = np.asarray(jax.random.normal(key, (BATCH, LATENT)), np.float64)
    images64 = images.astype(np.float64)
    _, expected = numpy_autoencoder_loss(config, params, images64, noise)
    grads = finite_difference_grad(lambda p: numpy_autoencoder_loss(config, p, images64, noise)[0], params)
    expected["train/grad_norm"] = global_norm(grads)
    for key_, value in expected.items():
        np.testing.assert_allclose(metrics[key_], value, rtol=2e-5, atol=1e-6, err_msg=key_)
    assert_trees_close(first_moment_gradients(new_state.opt_state, config.optim.b1), grads, 1e-4, 1e-5, "grads")
    new_params = adam_first_step(params, grads, config.optim.learning_rate)
    assert_trees_close(new_state.params, new_params, 0, 1e-6, "params")
    # No warm-up for these methods: decay is ema.decay from the first step.
    decay = config.ema.decay
    expected_ema = jax.tree.map(lambda old, new: decay * old + (1 - decay) * new, params, new_params)
    assert_trees_close(new_state.ema_params, expected_ema, 0, 1e-7, "ema_params")


# --- EMA ------------------------------------------------------------------------------------------------------


def test_ema_update_is_decay_times_old_plus_one_minus_decay_times_new():
    old = {"a": np.array([1.0, -2.0, 0.5], np.float32), "b": np.array(3.0, np.float32)}
    new = {"a": np.array([0.0, 4.0, 0.5], np.float32), "b": np.array(-1.0, np.float32)}
    out = jax.device_get(ema_update(old, new, 0.9))
    np.testing.assert_allclose(out["a"], [0.9, -1.4, 0.5], rtol=1e-6)
    np.testing.assert_allclose(out["b"], 2.6, rtol=1e-6)
    assert jax.tree.all(jax.tree.map(lambda x, y: np.array_equal(x, y), ema_update(old, new, 1.0), old))


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_decay_schedule(warmup, cache_dir):
    """With warm-up: min(decay, (1 + step) / (10 + step)) (0.1 at step 0, 0.5 at step 8); without: the decay."""
    config = gan_tiny_config("dcgan", cache_dir)
    config.ema.decay, config.ema.warmup = 0.99, warmup
    method = methods.get_method(config)
    for step in (0, 1, 8, 100, 890, 10_000):
        expected = min(0.99, (1 + step) / (10 + step)) if warmup else 0.99
        np.testing.assert_allclose(float(method.ema_decay_at(jnp.asarray(step))), expected, rtol=1e-6, err_msg=step)
