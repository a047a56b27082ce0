"""StyleGAN2 training (Karras et al. 2020), with the loss phases of NVlabs/stylegan2-ada-pytorch's training/loss.py.

One jitted step runs the reference's four phases in order, each with its own optimizer update:

1. Gmain: z (and, with probability `style_mixing`, a second z from a random layer on) -> mapping -> ws ->
   synthesis with per-pixel noise -> D(augment(fake)); loss mean softplus(-logits).
2. Greg, on steps where step % pl_interval == 0: the path-length penalty on a batch of B / pl_batch_shrink,
   pl_lengths = sqrt(mean over layers of |J_ws^T y|^2) with y ~ N(0, I) / sqrt(H W), pl_mean moved toward
   their mean by pl_decay, loss pl_weight * mean (pl_lengths - pl_mean)^2 times pl_interval.
3. Dmain: softplus(D(augment(G(z)))) + softplus(-D(augment(real))), with fakes from the updated G; the signs of
   the real logits feed ADA's overfitting estimate.
4. Dreg, on steps where step % r1_interval == 0: R1 = r1_gamma / 2 * |grad_x D(augment(x))|^2 on reals,
   times r1_interval.

Both penalties are losses of an input gradient, differentiated again in the parameters; `penalty_gradient`
picks how (`losses.input_gradient`, all exact): "auto" is forward-over-reverse on the CPU, where
reverse-over-reverse is slow (BENCHMARKS.md, "CPU parity"), and plain autodiff elsewhere.

The lazy phases due at a step are chosen on the host (`phase`): one compiled step per pattern ("main", "greg",
"dreg", "greg+dreg"), since XLA:CPU runs the convolutions inside a `lax.cond` branch without its canonical
layouts, several times slower (BENCHMARKS.md, "CPU parity"). Their metrics are `Weighted` with weight 0 on steps
that skip them, so the logs show true averages. Both Adam optimizers get the reference's lazy-regularisation
correction: with c = interval / (interval + 1), the learning rate is lr * c and the betas are b1^c, b2^c.

With `blur_init_sigma` > 0 (the reference's StyleGAN3-R setting) every image D sees, real or fake, is first
blurred by a Gaussian whose sigma fades linearly from blur_init_sigma to 0 over `blur_fade_kimg` thousand images
(`blur_sigma`, `gaussian_blur`), as the reference's run_D.

Also in the state, as in the reference: the tracked w average (w_avg <- lerp(mean w, w_avg, w_avg_beta); once
per step from the Gmain batch, where the reference moves it at every training call of the mapping), the
path-length mean, the ADA probability and its accumulators (every `ada_interval` steps p moves by
sign(E[sign D(real)] - target) * B * interval / (ada_kimg * 1000)), and the generator EMA whose half-life is
`ema_kimg` thousand images, ramped up as min(ema_kimg * 1000, images seen * ema_rampup).

Sampling (`LatentSampler` over `synthesize`) uses the EMA generator, truncation psi toward w_avg
(`sample.truncation_psi`) and the noise of `sample.noise_mode`; `sample` adds a psi sweep and the
coarse / middle / fine style-mixing grids.
"""

from __future__ import annotations

from typing import Any, Iterable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from animejax import models
from animejax.errors import ConfigError
from animejax.methods import ada, augment, losses
from animejax.methods.base import Batch, Method, Samples, Weighted
from animejax.methods.common import ema_update, optimizer_step
from animejax.methods.latent_sampling import LatentSampler, lerp, slerp
from animejax.models import stylegan2 as networks

AUGMENTATIONS = ("ada", "diffaugment", "none")
TRUNCATION_SWEEP = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)


@flax.struct.dataclass
class StyleGAN2State:
    """Generator, discriminator, their optimizers, the generator EMA and the reference's running values.

    Attributes:
      step: int32 scalar, train steps taken.
      g_params, d_params: the networks' parameters.
      g_noise_const: the generator's fixed noise buffers (noise_mode "const"); never trained.
      g_ema_params: the generator EMA used for samples and metrics.
      w_avg: [w_dim] float32, running mean of the mapping network's output (the truncation centre).
      pl_mean: float32 scalar, running mean of the path lengths.
      ada: the adaptive augmentation probability and its accumulators (`ada.AdaState`).
      g_opt_state, d_opt_state: optax states.
      rng: uint32 [2] root key of the run.
    """

    step: jax.Array
    g_params: Any
    d_params: Any
    g_noise_const: Any
    g_ema_params: Any
    w_avg: jax.Array
    pl_mean: jax.Array
    ada: ada.AdaState
    g_opt_state: optax.OptState
    d_opt_state: optax.OptState
    rng: jax.Array


def lazy_adam(optim: ml_collections.ConfigDict, interval: int) -> optax.GradientTransformation:
    """Adam with the lazy-regularisation correction c = interval / (interval + 1) (1 when interval is 0)."""
    c = interval / (interval + 1) if interval else 1.0
    return optax.adam(optim.learning_rate * c, b1=optim.b1**c, b2=optim.b2**c, eps=optim.get("eps", 1e-8))


def ema_beta(step: jax.Array, batch_size: int, ema_kimg: float, ema_rampup: float) -> jax.Array:
    """The reference's EMA decay after `step` steps of `batch_size`: 0.5 ** (batch / half-life in images)."""
    ema_nimg = jnp.asarray(ema_kimg * 1000.0, jnp.float32)
    if ema_rampup:
        ema_nimg = jnp.minimum(ema_nimg, step.astype(jnp.float32) * batch_size * ema_rampup)
    return 0.5 ** (batch_size / jnp.maximum(ema_nimg, 1e-8))


def mix_styles(w: jax.Array, w_mix: jax.Array, cutoff: jax.Array, num_ws: int) -> jax.Array:
    """ws [B, num_ws, w_dim]: `w` for layers below `cutoff`, `w_mix` from layer `cutoff` on."""
    layer = jnp.arange(num_ws)[None, :, None]
    return jnp.where(layer < cutoff, w[:, None, :], w_mix[:, None, :])


def path_lengths(ws_grads: jax.Array) -> jax.Array:
    """[B, num_ws, w_dim] gradients of sum(img * y) w.r.t. ws -> [B] sqrt(mean over layers of |.|^2)."""
    return jnp.sqrt(jnp.mean(jnp.sum(jnp.square(ws_grads), axis=2), axis=1))


def blur_sigma(step: jax.Array, batch_size: int, init_sigma: float, fade_kimg: float) -> jax.Array:
    """The reference's D-input blur after `step` steps: max(1 - images seen / (fade_kimg * 1000), 0) * init_sigma
    (0 when fade_kimg is 0)."""
    if not fade_kimg:
        return jnp.zeros((), jnp.float32)
    seen = step.astype(jnp.float32) * batch_size
    return jnp.maximum(1.0 - seen / (fade_kimg * 1000.0), 0.0) * init_sigma


def gaussian_blur(images: jax.Array, sigma: jax.Array, max_radius: int) -> jax.Array:
    """The reference's run_D blur of NHWC images, for a traced sigma: taps 2^-(k / sigma)^2 for |k| <= floor(3
    sigma) (at most `max_radius`), normalised, applied along both axes with zero padding ("same" size); the
    identity when floor(3 sigma) is 0.

    Each axis is one product with an [S, S] banded matrix built from sigma, so a sigma that changes every step
    needs no recompilation.
    """
    size = images.shape[1]
    if images.shape[2] != size:
        raise ValueError(f"gaussian_blur expects square images, got {images.shape}")
    radius = jnp.floor(sigma * 3)
    taps = jnp.arange(-max_radius, max_radius + 1, dtype=jnp.float32)
    f = jnp.where(jnp.abs(taps) <= radius, jnp.exp2(-jnp.square(taps / jnp.maximum(sigma, 1e-8))), 0.0)
    f = f / jnp.sum(f)
    offsets = jnp.arange(size)[None, :] - jnp.arange(size)[:, None]  # [out, in]: in - out.
    matrix = jnp.where(jnp.abs(offsets) <= max_radius, f[jnp.clip(offsets + max_radius, 0, 2 * max_radius)], 0.0)
    precision = jax.lax.Precision.HIGHEST
    x = jnp.einsum("ij,bjwc->biwc", matrix, images.astype(jnp.float32), precision=precision)
    return jnp.einsum("ij,bhjc->bhic", matrix, x, precision=precision).astype(images.dtype)


class StyleGAN2Method(Method):
    """StyleGAN2 with lazy R1 and path-length regularisation, style mixing, ADA; see the module docstring.

    Subclasses with another generator (StyleGAN3) override `build_networks`, `state_class`, `initial_buffers`,
    `generator_buffers`, `synthesis` and `fakes_for_d`.
    """

    progress_grid = "samples_fixed"
    transfer_exclude = ("ada", "pl_mean")  # A fine-tuning run adapts its augmentation to its own data.
    state_class = StyleGAN2State

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        model, style = config.model, config.stylegan
        self.generator_net, self.discriminator_net, self.num_ws = self.build_networks(config)
        self.z_dim, self.w_dim = model.z_dim, model.w_dim
        self.batch_size = config.train.batch_size
        self.style = style
        if style.augment not in AUGMENTATIONS:
            raise ConfigError(f"Unknown stylegan.augment {style.augment!r}; choose one of {', '.join(AUGMENTATIONS)}.")
        if style.augment == "ada":
            self.ada_spec = ada.parse_pipeline(style.ada_pipeline)
        elif style.augment == "diffaugment":
            augment.parse_policy(style.diffaugment)
        for name in ("r1_interval", "pl_interval", "ada_interval"):
            if style[name] < 0:
                raise ConfigError(f"stylegan.{name} must be >= 0 (0 disables), got {style[name]}.")
        pl_batch = self.batch_size // style.pl_batch_shrink
        if style.pl_weight and pl_batch < 1:
            raise ConfigError(f"train.batch_size // stylegan.pl_batch_shrink must be >= 1, got {pl_batch}.")
        self.pl_batch = max(pl_batch, 1)
        self.penalty_gradient = losses.resolve_penalty_gradient(
            style.get("penalty_gradient", "auto"), "stylegan.penalty_gradient"
        )
        if style.get("blur_init_sigma", 0) < 0 or style.get("blur_fade_kimg", 0) < 0:
            raise ConfigError("stylegan.blur_init_sigma and stylegan.blur_fade_kimg must be >= 0 (0 disables).")
        self.blur_radius = int(np.floor(style.get("blur_init_sigma", 0.0) * 3)) if style.get("blur_fade_kimg") else 0
        self.tx_g = lazy_adam(config.optim, style.pl_interval if style.pl_weight else 0)
        self.tx_d = lazy_adam(config.optim_d, style.r1_interval if style.r1_gamma else 0)
        self.sample_config = config.sample
        self.sampler = LatentSampler(self.synthesize, (self.z_dim,), config.sample)

    # --- networks -------------------------------------------------------

    def build_networks(self, config: ml_collections.ConfigDict):
        """(generator, discriminator, num_ws) of `config`."""
        generator, discriminator = models.stylegan2_networks(config)
        return generator, discriminator, networks.num_ws(config.data.image_size)

    def initial_buffers(self, g_variables) -> dict[str, Any]:
        """The state fields holding the generator's non-trained variables, from its `init` variables."""
        return {"g_noise_const": g_variables.get("noise_const", {})}

    def generator_buffers(self, state: StyleGAN2State):
        """The generator's non-trained variables in `state`, as `synthesis` takes them."""
        return state.g_noise_const

    def init_state(self, rng: jax.Array, batch: Batch) -> StyleGAN2State:
        """Fresh networks, optimizers, EMA, w_avg = 0, pl_mean = 0 and ADA p = `stylegan.ada_p_init`; pure."""
        images = batch["image"]
        g_rng, d_rng, state_rng = jax.random.split(rng, 3)
        latents = jnp.zeros((images.shape[0], self.z_dim), jnp.float32)
        with jax.threefry_partitionable(False):  # As gan.py: faster to compile, born replicated.
            g_variables = self.generator_net.init(g_rng, latents, noise_mode="const")
            d_params = self.discriminator_net.init(d_rng, images)["params"]
        g_params = g_variables["params"]
        return self.state_class(
            step=jnp.zeros((), jnp.int32),
            g_params=g_params,
            d_params=d_params,
            **self.initial_buffers(g_variables),
            g_ema_params=g_params,
            w_avg=jnp.zeros((self.w_dim,), jnp.float32),
            pl_mean=jnp.zeros((), jnp.float32),
            ada=ada.AdaState.create(p=self.style.ada_p_init),
            g_opt_state=self.tx_g.init(g_params),
            d_opt_state=self.tx_d.init(d_params),
            rng=state_rng,
        )

    def map(self, g_params, z: jax.Array) -> jax.Array:
        """The mapping network: z [B, z_dim] -> w [B, w_dim]."""
        return self.generator_net.apply({"params": g_params}, z, method=networks.Generator.map)

    def synthesis(self, g_params, buffers, ws: jax.Array, rng: jax.Array, noise_mode: str = "random"):
        """The synthesis network: ws [B, num_ws, w_dim] -> images [B, S, S, 3] (noise drawn from `rng`);
        `buffers` are `generator_buffers(state)`."""
        variables = {"params": g_params, "noise_const": buffers}
        return self.generator_net.apply(
            variables, ws, noise_mode, rngs={"noise": rng}, method=networks.Generator.synthesize
        )

    def fakes_for_d(self, g_params, state: StyleGAN2State, rng: jax.Array, count: int):
        """Dmain's fakes (no gradient) and the state with whatever that training pass updates (nothing here)."""
        ws_rng, noise_rng = jax.random.split(rng)
        fake_ws, _ = self.training_ws(g_params, ws_rng, count)
        fake = self.synthesis(g_params, self.generator_buffers(state), fake_ws, noise_rng)
        return jax.lax.stop_gradient(fake), state

    def discriminator(self, d_params, images: jax.Array) -> jax.Array:
        """D(images) -> logits [B]."""
        return self.discriminator_net.apply({"params": d_params}, images)

    def augment(self, images: jax.Array, rng: jax.Array, p: jax.Array, step: jax.Array | None = None) -> jax.Array:
        """D's input pipeline: the fading blur at `step` (when configured), then ADA with probability p,
        DiffAugment, or none."""
        if self.blur_radius and step is not None:
            style = self.style
            sigma = blur_sigma(step, self.batch_size, style.blur_init_sigma, style.blur_fade_kimg)
            images = gaussian_blur(images, sigma, self.blur_radius)
        if self.style.augment == "ada":
            return ada.augment(images, rng, p, self.ada_spec)
        if self.style.augment == "diffaugment" and self.style.diffaugment:
            return augment.diff_augment(images, rng, self.style.diffaugment)
        return images

    def training_ws(self, g_params, rng: jax.Array, count: int) -> tuple[jax.Array, jax.Array]:
        """ws [count, num_ws, w_dim] with style mixing, and the unmixed w [count, w_dim] (for w_avg)."""
        z_rng, mix_z_rng, cutoff_rng, prob_rng = jax.random.split(rng, 4)
        w = self.map(g_params, jax.random.normal(z_rng, (count, self.z_dim)))
        if not self.style.style_mixing:
            return jnp.broadcast_to(w[:, None, :], (count, self.num_ws, self.w_dim)), w
        # One crossover layer for the whole batch, drawn in [1, num_ws), as the reference.
        cutoff = jax.random.randint(cutoff_rng, (), 1, self.num_ws)
        cutoff = jnp.where(jax.random.uniform(prob_rng) < self.style.style_mixing, cutoff, self.num_ws)
        w_mix = self.map(g_params, jax.random.normal(mix_z_rng, (count, self.z_dim)))
        return mix_styles(w, w_mix, cutoff, self.num_ws), w

    # --- the four phases --------------------------------------------------

    def _g_main_loss(self, g_params, state: StyleGAN2State, rng: jax.Array, count: int):
        ws_rng, noise_rng, augment_rng = jax.random.split(rng, 3)
        ws, w = self.training_ws(g_params, ws_rng, count)
        fake = self.synthesis(g_params, self.generator_buffers(state), ws, noise_rng)
        logits = self.discriminator(state.d_params, self.augment(fake, augment_rng, state.ada.p, state.step))
        return jnp.mean(jax.nn.softplus(-logits)), w

    def path_length_penalty(self, g_params, buffers, pl_mean, rng: jax.Array):
        """(loss pl_weight * mean (L - pl_mean')^2, (pl_mean', mean L)) on `pl_batch` fresh samples."""
        ws_rng, noise_rng, y_rng = jax.random.split(rng, 3)
        ws, _ = self.training_ws(g_params, ws_rng, self.pl_batch)
        size = self.config.data.image_size
        y = jax.random.normal(y_rng, (self.pl_batch, size, size, 3)) / size  # N(0, I) / sqrt(H W).
        lengths = self.path_lengths_at(g_params, buffers, ws, noise_rng, y)
        # As the reference: the penalty sees the moved mean with its (pl_decay-scaled) gradient; the state keeps
        # its value.
        new_mean = pl_mean + self.style.pl_decay * (jnp.mean(lengths) - pl_mean)
        penalty = jnp.mean(jnp.square(lengths - new_mean))
        return self.style.pl_weight * penalty, (jax.lax.stop_gradient(new_mean), jnp.mean(lengths), penalty)

    def path_lengths_at(self, g_params, buffers, ws: jax.Array, noise_rng: jax.Array, y: jax.Array):
        """[B] path lengths |J_ws^T y| (mean over layers of the squared norms, then sqrt) at `ws`, for images y."""

        def projected(params, ws):
            return self.synthesis(params, buffers, ws, noise_rng) * y

        return path_lengths(losses.input_gradient(projected, g_params, ws, self.penalty_gradient))

    def _d_main_loss(self, d_params, state: StyleGAN2State, real, fake, rng):
        real_rng, fake_rng = jax.random.split(rng)
        p, step = state.ada.p, state.step
        real_logits = self.discriminator(d_params, self.augment(real, real_rng, p, step))
        fake_logits = self.discriminator(d_params, self.augment(fake, fake_rng, p, step))
        loss = jnp.mean(jax.nn.softplus(fake_logits) + jax.nn.softplus(-real_logits))
        return loss, real_logits

    def r1_penalty(self, d_params, real: jax.Array, rng: jax.Array, p: jax.Array, step=None) -> jax.Array:
        """[B] |grad_x D(augment(x))|^2 per real image (R1 before gamma / 2)."""

        def logits(params, x):
            return self.discriminator(params, self.augment(x, rng, p, step))

        grads = losses.input_gradient(logits, d_params, real, self.penalty_gradient)
        return jnp.sum(jnp.square(grads), axis=(1, 2, 3))

    def phase(self, step: int) -> str:
        """The lazy regularisations due at `step`: "main" (none), "greg", "dreg" or "greg+dreg"."""
        style = self.style
        due = [
            name
            for name, weight, interval in (
                ("greg", style.pl_weight, style.pl_interval),
                ("dreg", style.r1_gamma, style.r1_interval),
            )
            if weight and interval and step % interval == 0
        ]
        return "+".join(due) or "main"

    def train_step(self, state: StyleGAN2State, batch: Batch, rng: jax.Array, frozen: Any, phase: str):
        """Gmain, Greg (in its phases), Dmain, Dreg (in its phases), ADA, w_avg and EMA; see the module docstring."""
        del frozen
        style = self.style
        real = batch["image"]
        count = real.shape[0]
        g_rng, pl_rng, fake_rng, d_rng, r1_rng = jax.random.split(rng, 5)
        metrics = {}

        # Gmain.
        (loss_g, w), g_grads = jax.value_and_grad(self._g_main_loss, has_aux=True)(state.g_params, state, g_rng, count)
        g_params, g_opt_state = optimizer_step(self.tx_g, g_grads, state.g_opt_state, state.g_params)
        metrics["train/loss_g"] = loss_g
        metrics["train/grad_norm_g"] = optax.tree.norm(g_grads)

        # Greg: path length, every pl_interval steps.
        pl_mean = state.pl_mean
        if style.pl_weight and style.pl_interval:
            penalty = length = weight = jnp.zeros(())
            if "greg" in phase:
                grad_fn = jax.value_and_grad(
                    lambda p: self.path_length_penalty(p, self.generator_buffers(state), pl_mean, pl_rng),
                    has_aux=True,
                )
                (_, (pl_mean, length, penalty)), grads = grad_fn(g_params)
                grads = jax.tree.map(lambda g: g * style.pl_interval, grads)
                g_params, g_opt_state = optimizer_step(self.tx_g, grads, g_opt_state, g_params)
                weight = jnp.ones(())
            metrics["train/pl_penalty"] = Weighted(penalty, weight)
            metrics["train/pl_length"] = Weighted(length, weight)
        if style.pl_weight:  # StyleGAN3's configs run no path-length regularisation: nothing to log.
            metrics["train/pl_mean"] = pl_mean

        # Dmain, on fakes of the updated generator.
        fake, state = self.fakes_for_d(g_params, state, fake_rng, count)
        (loss_d, real_logits), d_grads = jax.value_and_grad(self._d_main_loss, has_aux=True)(
            state.d_params, state, real, fake, d_rng
        )
        d_params, d_opt_state = optimizer_step(self.tx_d, d_grads, state.d_opt_state, state.d_params)
        metrics["train/loss_d"] = loss_d
        metrics["train/grad_norm_d"] = optax.tree.norm(d_grads)
        metrics["train/d_real_sign"] = jnp.mean(jnp.sign(real_logits))

        # Dreg: R1, every r1_interval steps.
        if style.r1_gamma and style.r1_interval:
            r1 = weight = jnp.zeros(())
            if "dreg" in phase:

                def loss(p):
                    penalty = jnp.mean(self.r1_penalty(p, real, r1_rng, state.ada.p, state.step))
                    return style.r1_gamma / 2 * penalty * style.r1_interval, penalty

                (_, r1), grads = jax.value_and_grad(loss, has_aux=True)(d_params)
                d_params, d_opt_state = optimizer_step(self.tx_d, grads, d_opt_state, d_params)
                weight = jnp.ones(())
            metrics["train/r1_penalty"] = Weighted(r1, weight)

        # ADA: accumulate the signs of D(real); move p every ada_interval steps.
        ada_state = state.ada
        if style.augment == "ada" and style.ada_target and style.ada_interval:
            ada_state = ada.accumulate(ada_state, real_logits)
            ada_state = jax.lax.cond(
                (state.step + 1) % style.ada_interval == 0,
                lambda s: ada.adjust(
                    s, style.ada_target, batch_images=count, interval=style.ada_interval, speed_kimg=style.ada_kimg
                ),
                lambda s: s,
                ada_state,
            )
        metrics["train/ada_p"] = ada_state.p

        # w_avg and the generator EMA.
        w_avg = state.w_avg + (1.0 - style.w_avg_beta) * (jnp.mean(w, axis=0) - state.w_avg)
        beta = ema_beta(state.step, count, style.ema_kimg, style.ema_rampup)
        g_ema = ema_update(state.g_ema_params, g_params, beta)
        metrics["train/ema_beta"] = beta
        new_state = state.replace(
            step=state.step + 1,
            g_params=g_params,
            d_params=d_params,
            g_ema_params=g_ema,
            w_avg=w_avg,
            pl_mean=pl_mean,
            ada=ada_state,
            g_opt_state=g_opt_state,
            d_opt_state=d_opt_state,
        )
        return new_state, metrics

    # --- sampling -------------------------------------------------------

    def sampling_ws(self, state: StyleGAN2State, latents: jax.Array, psi: float | None = None) -> jax.Array:
        """z [B, z_dim] -> ws [B, num_ws, w_dim] of the EMA mapping, truncated toward w_avg by psi."""
        psi = self.sample_config.truncation_psi if psi is None else psi
        w = networks.truncate(self.map(state.g_ema_params, latents), state.w_avg, psi)
        return jnp.broadcast_to(w[:, None, :], (w.shape[0], self.num_ws, self.w_dim))

    def synthesize_ws(self, state: StyleGAN2State, ws: jax.Array, rng: jax.Array) -> jax.Array:
        """The EMA synthesis of ws with the noise of `sample.noise_mode`, clipped to [-1, 1].

        The generator's output is unbounded (no tanh); the reference clips it the same way when it saves images.
        """
        buffers = self.generator_buffers(state)
        images = self.synthesis(state.g_ema_params, buffers, ws, rng, self.sample_config.noise_mode)
        return jnp.clip(images, -1.0, 1.0)

    def synthesize(self, state: StyleGAN2State, latents: jax.Array, rng: jax.Array) -> jax.Array:
        """Images [B, S, S, 3] of the EMA generator at `sample.truncation_psi`."""
        return self.synthesize_ws(state, self.sampling_ws(state, latents), rng)

    def generate(self, state: StyleGAN2State, rng: jax.Array, batch_size: int) -> jax.Array:
        """What metrics score: EMA samples from z ~ N(0, I) at the configured psi."""
        return self.sampler.generate(state, rng, batch_size)

    def preview(self, state: StyleGAN2State, batch: Batch, rng: jax.Array) -> dict[str, jax.Array]:
        """The fixed-seed grid of the EMA generator, and of the raw one."""
        del batch
        latents, synthesis_rng = self.sampler.latents(rng, self.grid_size * self.grid_size)
        raw_ws = jnp.broadcast_to(
            self.map(state.g_params, latents)[:, None], (latents.shape[0], self.num_ws, self.w_dim)
        )
        return {
            "samples_fixed": self.synthesize(state, latents, synthesis_rng),
            "raw_fixed": jnp.clip(
                self.synthesis(state.g_params, self.generator_buffers(state), raw_ws, synthesis_rng, "const"), -1, 1
            ),
        }

    def truncation_sweep(self, state: StyleGAN2State, rng: jax.Array) -> jax.Array:
        """`grid_size` seeds (rows) at psi = 1, 0.8, ..., 0 (columns): [rows * len(TRUNCATION_SWEEP), S, S, 3]."""
        latents, synthesis_rng = self.sampler.latents(rng, self.grid_size)
        ws = jnp.stack([self.sampling_ws(state, latents, psi) for psi in TRUNCATION_SWEEP], axis=1)
        return self.synthesize_ws(state, ws.reshape(-1, self.num_ws, self.w_dim), synthesis_rng)

    def style_mixing_grid(self, state: StyleGAN2State, rng: jax.Array, layers: tuple[int, int]) -> jax.Array:
        """Rows take the row seed's styles, except layers [lo, hi) from the column seed.

        Returns [(n + 1) * (n + 1), S, S, 3] with n = grid_size: a blank corner, the column sources along the
        top, the row sources down the left, and the mixes.
        """
        n = self.grid_size
        latents, synthesis_rng = self.sampler.latents(rng, 2 * n)
        ws = self.sampling_ws(state, latents)
        rows, columns = ws[:n], ws[n:]
        layer = jnp.arange(self.num_ws)[None, None, :, None]
        in_range = (layer >= layers[0]) & (layer < layers[1])
        mixed = jnp.where(in_range, columns[None, :], rows[:, None]).reshape(n * n, self.num_ws, self.w_dim)
        images = self.synthesize_ws(state, jnp.concatenate([ws, mixed]), synthesis_rng)
        sources_rows, sources_columns, mixes = (
            images[:n],
            images[n : 2 * n],
            images[2 * n :].reshape(n, n, *images.shape[1:]),
        )
        blank = jnp.zeros_like(images[:1])
        top = jnp.concatenate([blank, sources_columns])
        body = jnp.concatenate([sources_rows[:, None], mixes], axis=1).reshape(n * (n + 1), *images.shape[1:])
        return jnp.concatenate([top, body])

    def interpolation_frames(self, state: StyleGAN2State, rng: jax.Array, space: str) -> jax.Array:
        """Frames [T, rows, S, S, 3] walking between random pairs: slerp in z, or lerp in w (mapped, truncated).

        T is `sample.animation_frames`, rows `sample.num_interpolations`; the noise is the same in every frame.
        """
        start_rng, end_rng, synthesis_rng = jax.random.split(rng, 3)
        rows, steps = self.sample_config.num_interpolations, self.sample_config.animation_frames
        weights = jnp.linspace(0.0, 1.0, steps)
        start = self.sampler.noise(start_rng, rows)
        end = self.sampler.noise(end_rng, rows)
        if space == "z":
            ws = self.sampling_ws(state, slerp(start, end, weights).reshape(rows * steps, self.z_dim))
        else:
            w_start, w_end = self.sampling_ws(state, start)[:, 0], self.sampling_ws(state, end)[:, 0]
            w = lerp(w_start, w_end, weights).reshape(rows * steps, self.w_dim)
            ws = jnp.broadcast_to(w[:, None], (rows * steps, self.num_ws, self.w_dim))
        images = self.synthesize_ws(state, ws, synthesis_rng)  # Row-major: [rows, steps].
        return images.reshape(rows, steps, *images.shape[1:]).swapaxes(0, 1)

    def mixing_ranges(self) -> dict[str, tuple[int, int]]:
        """Coarse (4-8 px), middle (16-32 px) and fine (the rest) layer ranges of the ws, as the paper's figure."""
        return {"coarse": (0, 4), "middle": (4, min(8, self.num_ws)), "fine": (min(8, self.num_ws), self.num_ws)}

    def sample(self, state: StyleGAN2State, batches: Iterable[Batch], rng: jax.Array) -> Samples:
        """The grid and z interpolations, the psi sweep, style-mixing grids, individual images, and GIFs of
        interpolations in z and in w."""
        del batches
        grids_rng, sweep_rng, mixing_rng, individual_rng, animation_rng = jax.random.split(rng, 5)
        grids = self.sampler.sample_grids(state, grids_rng)
        grids["truncation_sweep"] = (
            np.asarray(jax.jit(self.truncation_sweep)(state, sweep_rng)),
            len(TRUNCATION_SWEEP),
        )
        for name, layers in self.mixing_ranges().items():
            if layers[0] < layers[1]:
                mix = jax.jit(self.style_mixing_grid, static_argnums=2)(state, mixing_rng, layers)
                grids[f"style_mixing_{name}"] = (np.asarray(mix), self.grid_size + 1)
        frames = jax.jit(self.interpolation_frames, static_argnums=2)
        animations = {f"interpolation_{space}": np.asarray(frames(state, animation_rng, space)) for space in "zw"}
        return Samples(grids, self.individual_images(state, individual_rng), animations)
