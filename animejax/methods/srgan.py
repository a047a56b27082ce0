"""SRGAN (Ledig et al. 2017): super-resolution by an SRResNet, pre-trained on pixel MSE, then trained adversarially.

A batch holds high-resolution images (`{"image": [B, S, S, 3]}`, optionally cropped to `srgan.crop_size` at a
random place per example); the low-resolution inputs are made from them on device by antialiased bicubic
downsampling by `model.scale` (`data/degrade.py`), rounded to 8-bit levels as a saved image would be.

The two phases are compiled as two steps (`Method.phase`) and the loop runs the one the step counter is in,
so a run resumed on either side of the switch (`srgan.pretrain_steps`) continues exactly:

1. Pixel phase (SRResNet): G minimises the MSE between G(lr) and the original.
2. Adversarial phase: D takes one non-saturating step on (original, G(lr)); then G, against the updated D,
   minimises `pixel_weight * MSE + content_weight * VGG feature MSE + adversarial_weight * softplus(-D(G(lr)))
   + tv_weight * total variation`. G's forward pass is computed once with `jax.vjp` and reused by D's step.

The adversarial phase's terms are averaged over its own steps only when a log interval spans the switch
(`base.average_metrics`). The VGG19 features (`srgan.content_loss = "vgg"`) come from torchvision's
released weights through `pretrained/vgg.py`, handed to the step in the frozen slot; `"pixel"` needs no file.

SRGAN is conditional: `upscale(state, low_res)` and `translate(state, batch)` (outputs for a batch of
originals) replace unconditional `generate`. `evaluate` reports PSNR and SSIM of the upscaled held-out images
against their originals beside plain bicubic upscaling's, on RGB and on luma with a `scale`-pixel border cut.
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
from animejax.data import degrade, pipeline
from animejax.errors import ConfigError
from animejax.methods import losses
from animejax.methods.base import Batch, Method, Samples
from animejax.methods.common import apply_module, optimizer_step, split_variables
from animejax.methods.optim import make_optimizer
from animejax.metrics import image_quality
from animejax.models import layers, vgg

CONTENT_LOSSES = ("vgg", "pixel")
# The order of the images in comparison grids and strips (`views`, `comparisons`).
VIEW_ORDER = ("low_resolution", "bicubic", "srgan", "original")


@flax.struct.dataclass
class SRGANState:
    """SRResNet generator and SRGAN discriminator with their optimizers.

    Attributes:
      step: int32 scalar, steps taken (pixel and adversarial).
      g_params, g_batch_stats: the generator's parameters and batch-norm running statistics.
      d_params, d_batch_stats: the discriminator's.
      g_opt_state, d_opt_state: optax states (D's moves in the adversarial phase only).
      rng: uint32 [2] root PRNG key of the run; step keys are folded from it.
    """

    step: jax.Array
    g_params: Any
    g_batch_stats: Any
    d_params: Any
    d_batch_stats: Any
    g_opt_state: optax.OptState
    d_opt_state: optax.OptState
    rng: jax.Array


def total_variation(images: jax.Array) -> jax.Array:
    """Mean squared difference of vertically and horizontally adjacent pixels, summed over the two directions."""
    down = jnp.mean(jnp.square(images[:, 1:] - images[:, :-1]))
    right = jnp.mean(jnp.square(images[:, :, 1:] - images[:, :, :-1]))
    return down + right


def random_crops(images: jax.Array, size: int, rng: jax.Array) -> jax.Array:
    """A `size` x `size` crop of each image at a uniformly random place: [B, S, S, C] -> [B, size, size, C]."""
    batch, side = images.shape[0], images.shape[1]
    if size in (0, side):
        return images
    offsets = jax.random.randint(rng, (batch, 2), 0, side - size + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (size, size, image.shape[-1]))

    return jax.vmap(crop)(images, offsets)


def nearest_upsample(images: jax.Array, factor: int) -> jax.Array:
    """Each pixel repeated `factor` x `factor` (how a low-resolution input is shown beside the outputs)."""
    return jnp.repeat(jnp.repeat(images, factor, axis=1), factor, axis=2)


class SRGANMethod(Method):
    """SRResNet / SRGAN super-resolution by `model.scale`; see the module docstring."""

    progress_grid = "comparison"
    conditional = True
    report_terms = ("psnr", "ssim")  # On the held-out images.

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        srgan = config.srgan
        self.scale = config.model.scale
        self.generator_net, self.discriminator_net = models.srgan_networks(config)
        if srgan.content_loss not in CONTENT_LOSSES:
            raise ConfigError(f"Unknown srgan.content_loss {srgan.content_loss!r}; choose one of vgg, pixel.")
        self.use_vgg = srgan.content_loss == "vgg"
        dtype = layers.compute_dtype(config.model.dtype)
        self.vgg = vgg.VGG19Features(srgan.vgg_layer, dtype) if self.use_vgg else None
        self.pretrain_steps = srgan.pretrain_steps
        self.crop_size = srgan.crop_size
        self.weights = {
            "pixel": srgan.pixel_weight,
            "content": srgan.content_weight if self.use_vgg else 0.0,
            "adversarial": srgan.adversarial_weight,
            "tv": srgan.tv_weight,
        }
        num_steps = config.train.num_steps
        self.tx_g = make_optimizer(config.optim, num_steps)
        self.tx_d = make_optimizer(config.optim_d, max(num_steps - self.pretrain_steps, 1))

    # --- networks -------------------------------------------------------

    def init_state(self, rng: jax.Array, batch: Batch) -> SRGANState:
        """Fresh networks and optimizers; pure (see GANMethod.init_state for the classic threefry)."""
        with jax.threefry_partitionable(False):
            g_rng, d_rng, state_rng = jax.random.split(rng, 3)
            high = batch["image"]
            side = self.crop_size or high.shape[1]
            high = jnp.zeros((high.shape[0], side, side, 3), high.dtype)
            low = jnp.zeros((high.shape[0], side // self.scale, side // self.scale, 3), high.dtype)
            g_params, g_stats = split_variables(self.generator_net.init(g_rng, low, train=False))
            d_params, d_stats = split_variables(self.discriminator_net.init(d_rng, high, train=False))
            return SRGANState(
                step=jnp.zeros((), jnp.int32),
                g_params=g_params,
                g_batch_stats=g_stats,
                d_params=d_params,
                d_batch_stats=d_stats,
                g_opt_state=self.tx_g.init(g_params),
                d_opt_state=self.tx_d.init(d_params),
                rng=state_rng,
            )

    def frozen(self) -> dict[str, Any]:
        """The VGG19 variables of the content loss ({} for pixel loss); a missing weights file fails here."""
        if not self.use_vgg:
            return {}
        from animejax.pretrained import vgg as pretrained_vgg

        srgan, evaluation = self.config.srgan, self.config.eval
        _, variables = pretrained_vgg.load_vgg19(
            srgan.vgg_path or None, evaluation.weights_cache_dir or None, srgan.vgg_layer
        )
        return {"vgg": variables}

    def generator(self, params, stats, low: jax.Array, train: bool):
        """G(low) -> (upscaled images [B, s*h, s*w, 3] in (-1, 1), stats)."""
        return apply_module(self.generator_net, params, stats, low, train)

    def discriminator(self, params, stats, images: jax.Array, train: bool):
        """D(images) -> (logits [B], stats)."""
        return apply_module(self.discriminator_net, params, stats, images, train)

    def low_resolution(self, high: jax.Array) -> jax.Array:
        """The network's input for originals `high`: antialiased bicubic downsampling, rounded to 8-bit levels."""
        return pipeline.quantize(degrade.downsample(high, self.scale))

    def upscale(self, state: SRGANState, low: jax.Array) -> jax.Array:
        """Super-resolved images of low-resolution inputs in [-1, 1] (running statistics); pure, jit-able."""
        return self.generator(state.g_params, state.g_batch_stats, low, False)[0]

    def translate(self, state: SRGANState, batch: Batch) -> jax.Array:
        """The upscaled low-resolution versions of a batch of originals: what metrics compare with them."""
        return self.upscale(state, self.low_resolution(batch["image"]))

    def generate(self, state, rng, batch_size):
        raise ConfigError(
            "SRGAN upscales given images and draws none of its own: use --mode=upscale, or the held-out metrics."
        )

    # --- the step ---------------------------------------------------------

    def phase(self, step: int) -> str:
        """ "pixel" for the first `srgan.pretrain_steps` steps, then "adversarial"."""
        return "pixel" if step < self.pretrain_steps else "adversarial"

    def train_step(self, state: SRGANState, batch: Batch, rng: jax.Array, frozen: Any, phase: str):
        crop_rng, step_rng = jax.random.split(rng)
        high = random_crops(batch["image"], self.crop_size, crop_rng)
        low = self.low_resolution(high)
        phase_step = self._pixel_step if phase == "pixel" else self._adversarial_step
        return phase_step(state, low, high, frozen, step_rng)

    def _pixel_step(self, state: SRGANState, low, high, frozen, rng):
        """SRResNet's step: G on pixel MSE; D untouched."""
        del frozen, rng

        def loss_fn(g_params):
            upscaled, g_stats = self.generator(g_params, state.g_batch_stats, low, True)
            mse = jnp.mean(jnp.square(upscaled - high))
            return mse, (g_stats, mse)

        (_, (g_stats, mse)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g_params)
        g_params, g_opt_state = optimizer_step(self.tx_g, grads, state.g_opt_state, state.g_params)
        metrics = {
            "train/loss_g": mse,
            "train/loss_pixel": mse,
            "train/psnr": _psnr_of_mse(mse),
            "train/grad_norm_g": optax.tree.norm(grads),
        }
        new_state = state.replace(
            step=state.step + 1, g_params=g_params, g_batch_stats=g_stats, g_opt_state=g_opt_state
        )
        return new_state, metrics

    def _content_loss(self, frozen, upscaled, high) -> jax.Array:
        """Mean squared difference of the VGG19 features of the upscaled images and the originals."""
        features = self.vgg.apply(frozen["vgg"], jnp.concatenate([upscaled, high]))
        upscaled_features, high_features = jnp.split(features, 2)
        return jnp.mean(jnp.square(upscaled_features - jax.lax.stop_gradient(high_features)))

    def _adversarial_step(self, state: SRGANState, low, high, frozen, rng):
        """One D step on (originals, G(low)), then G's step against the updated D."""
        del rng

        def forward(g_params):
            return self.generator(g_params, state.g_batch_stats, low, True)

        upscaled, g_vjp, g_stats = jax.vjp(forward, state.g_params, has_aux=True)

        def d_loss_fn(d_params):
            real_logits, d_stats = self.discriminator(d_params, state.d_batch_stats, high, True)
            fake_logits, d_stats = self.discriminator(d_params, d_stats, jax.lax.stop_gradient(upscaled), True)
            loss = jnp.mean(losses.ns_discriminator_loss(real_logits, fake_logits))
            return loss, (d_stats, real_logits, fake_logits)

        (loss_d, (d_stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
            state.d_params
        )
        d_params, d_opt_state = optimizer_step(self.tx_d, d_grads, state.d_opt_state, state.d_params)

        def g_loss_fn(upscaled):
            logits, new_d_stats = self.discriminator(d_params, d_stats, upscaled, True)
            terms = {
                "pixel": jnp.mean(jnp.square(upscaled - high)),
                "adversarial": jnp.mean(losses.ns_generator_loss(logits)),
            }
            if self.use_vgg:
                terms["content"] = self._content_loss(frozen, upscaled, high)
            if self.weights["tv"]:
                terms["tv"] = total_variation(upscaled)
            loss = sum(self.weights[name] * value for name, value in terms.items())
            return loss, (new_d_stats, terms)

        (loss_g, (d_stats, terms)), upscaled_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(upscaled)
        (g_grads,) = g_vjp(upscaled_grads)
        g_params, g_opt_state = optimizer_step(self.tx_g, g_grads, state.g_opt_state, state.g_params)
        metrics = {
            "train/loss_g": loss_g,
            "train/loss_pixel": terms["pixel"],
            "train/psnr": _psnr_of_mse(terms["pixel"]),
            "train/grad_norm_g": optax.tree.norm(g_grads),
            "train/loss_d": loss_d,
            "train/d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
            "train/d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
            "train/grad_norm_d": optax.tree.norm(d_grads),
            "train/loss_g_adversarial": terms["adversarial"],
            **{f"train/loss_{name}": terms[name] for name in ("content", "tv") if name in terms},
        }
        new_state = state.replace(
            step=state.step + 1,
            g_params=g_params,
            g_batch_stats=g_stats,
            g_opt_state=g_opt_state,
            d_params=d_params,
            d_batch_stats=d_stats,
            d_opt_state=d_opt_state,
        )
        return new_state, metrics

    # --- outputs ----------------------------------------------------------

    def views(self, state: SRGANState, low: jax.Array) -> dict[str, jax.Array]:
        """For inputs `low`: the input (enlarged, each pixel repeated), bicubic upscaling and SRGAN's."""
        return {
            "low_resolution": nearest_upsample(low, self.scale),
            "bicubic": jnp.clip(degrade.upsample_bicubic(low, self.scale), -1.0, 1.0),
            "srgan": self.upscale(state, low),
        }

    def comparisons(self, state: SRGANState, high: jax.Array) -> dict[str, jax.Array]:
        """`views` of the low-resolution versions of originals `high`, and the originals: each [B, S, S, 3]."""
        return self.views(state, self.low_resolution(high)) | {"original": high}

    def preview(self, state: SRGANState, batch: Batch, rng: jax.Array) -> dict[str, jax.Array]:
        """The comparison grid of the first `grid_size` training images: rows input, bicubic, SRGAN, original."""
        del rng
        high = batch["image"][: self.grid_size]
        views = self.comparisons(state, high)
        return {"comparison": jnp.concatenate([views[name] for name in VIEW_ORDER])}

    def sample(self, state: SRGANState, batches: Iterable[Batch], rng: jax.Array) -> Samples:
        """The comparison grid of held-out images (one row each: input | bicubic | SRGAN | original), and the
        upscaled images alone for external metrics (`sample.num_individual`)."""
        del rng
        compare, translate = jax.jit(self.comparisons), jax.jit(self.translate)
        rows, individual, count = [], [], 0
        for batch in batches:
            if len(rows) < self.grid_size:
                views = compare(state, jnp.asarray(batch["image"][: self.grid_size - len(rows)]))
                rows.extend(np.stack([np.asarray(views[name]) for name in VIEW_ORDER], axis=1))
            if count < self.num_individual:
                individual.append(np.asarray(translate(state, {"image": jnp.asarray(batch["image"])})))
                count += len(individual[-1])
            if len(rows) >= self.grid_size and count >= self.num_individual:
                break
        grid = np.concatenate(rows) if rows else np.zeros((0, 1, 1, 3), np.float32)
        images = np.concatenate(individual)[: self.num_individual] if individual else None
        return Samples({"comparison": (grid, 4)}, images)

    def evaluate(self, state: SRGANState, batches: Iterable[Batch]) -> dict[str, float]:
        """Mean PSNR and SSIM (dB; RGB, and luma with a `scale`-pixel border cut) of SRGAN's and bicubic's
        upscaling of the batches' low-resolution versions against the originals."""
        quality = jax.jit(self._quality)
        totals, count = {}, 0
        for batch in batches:
            for name, values in quality(state, jnp.asarray(batch["image"])).items():
                totals[name] = totals.get(name, 0.0) + float(np.sum(np.asarray(values, np.float64)))
            count += len(batch["image"])
        if not count:
            raise ConfigError("SRGAN's evaluation needs held-out images: set data.holdout_images > 0.")
        return {name: total / count for name, total in totals.items()} | {"eval/holdout_images": float(count)}

    def _quality(self, state: SRGANState, high: jax.Array) -> dict[str, jax.Array]:
        """Per-image PSNR and SSIM of the 8-bit SRGAN and bicubic outputs against `high`."""
        views = self.comparisons(state, high)
        out = {}
        for name in ("srgan", "bicubic"):
            upscaled = pipeline.quantize(views[name])
            prefix = "eval/" if name == "srgan" else "eval/bicubic_"
            out[prefix + "psnr"] = image_quality.psnr(upscaled, high)
            out[prefix + "ssim"] = image_quality.ssim(upscaled, high)
            luma, high_luma = (
                image_quality.crop_border(image_quality.rgb_to_y(x), self.scale) for x in (upscaled, high)
            )
            out[prefix + "psnr_y"] = image_quality.psnr(luma, high_luma)
            out[prefix + "ssim_y"] = image_quality.ssim(luma, high_luma)
        return out


def _psnr_of_mse(mse: jax.Array) -> jax.Array:
    """PSNR (dB) of images in [-1, 1] (peak-to-peak 2) with mean squared error `mse`."""
    return 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-12))
