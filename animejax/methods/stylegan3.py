"""StyleGAN3 training (Karras et al. 2021): StyleGAN2's training stack (methods/stylegan2.py) with the alias-free
generator of models/stylegan3.py, as NVlabs/stylegan3 trains it with the same StyleGAN2Loss.

What differs from StyleGAN2, all by network or config (config_defaults.stylegan3_config):
- The generator: Fourier-feature input and filtered layers; no noise inputs; 2 mapping layers.
- Its buffers live in the state (`g_buffers`): the input's frequencies and phases (fixed at init) and each
  layer's `magnitude_ema`, moved by the training pass whose fakes D sees (Dmain's, as the reference's
  update_emas=True call). The EMA generator uses the same buffers, as the reference copies G's buffers into G_ema.
- No path-length regularisation and no style mixing (the reference's StyleGAN3 configs), so G has no lazy
  phase; StyleGAN3-R blurs D's inputs for the first images (`stylegan.blur_init_sigma`, `blur_fade_kimg`).

Sampling adds what the paper shows: `--mode=sample` writes a GIF of each sample under a slow continuous
translation of the input (StyleGAN3-R: also a rotation), where detail moves with the face instead of sticking to
the pixel grid (`transformed_frames`).
"""

from __future__ import annotations

from typing import Any, Iterable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from animejax import models
from animejax.methods.base import Batch, Samples
from animejax.methods.stylegan2 import StyleGAN2Method, StyleGAN2State
from animejax.models import stylegan3 as networks


@flax.struct.dataclass
class StyleGAN3State(StyleGAN2State):
    """StyleGAN2's state (`g_noise_const` is empty) plus the generator's buffers.

    Attributes:
      g_buffers: {"buffers": the input's freqs and phases, "magnitude_ema": each layer's input magnitude}.
    """

    g_buffers: Any


def translation_transform(dx: jax.Array, dy: jax.Array, angle: jax.Array | float = 0.0) -> jax.Array:
    """The generator input's inverse transform [..., 3, 3] for an image translated by (dx, dy) (in image widths)
    and then rotated by `angle` radians, in the convention of the reference's equivariance metric (M[:2, 2] = -t
    for a translation, rotation_matrix(-angle) for a rotation)."""
    dx, dy, angle = jnp.broadcast_arrays(jnp.asarray(dx, jnp.float32), jnp.asarray(dy, jnp.float32), angle)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    zero, one = jnp.zeros_like(dx), jnp.ones_like(dx)
    rotation = jnp.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], axis=-1).reshape(dx.shape + (3, 3))
    translation = jnp.stack([one, zero, -dx, zero, one, -dy, zero, zero, one], axis=-1).reshape(dx.shape + (3, 3))
    return rotation @ translation


class StyleGAN3Method(StyleGAN2Method):
    """StyleGAN3-T or -R on the StyleGAN2 losses, lazy R1, ADA and EMA; see the module docstring."""

    state_class = StyleGAN3State

    @property
    def rotation_equivariant(self) -> bool:
        """StyleGAN3-R (model.arch stylegan3-r)."""
        return self.config.model.arch == "stylegan3-r"

    def build_networks(self, config: ml_collections.ConfigDict):
        generator, discriminator = models.stylegan3_networks(config)
        return generator, discriminator, generator.num_ws

    def initial_buffers(self, g_variables) -> dict[str, Any]:
        return {
            "g_noise_const": {},
            "g_buffers": {"buffers": g_variables["buffers"], "magnitude_ema": g_variables["magnitude_ema"]},
        }

    def generator_buffers(self, state: StyleGAN3State):
        return state.g_buffers

    def synthesis(self, g_params, buffers, ws, rng, noise_mode: str = "const", transform=None):
        """ws [B, num_ws, w_dim] -> images [B, S, S, 3]; `transform` is the input's inverse image transform
        ([3, 3] or [B, 3, 3], None for the identity). No noise: `rng` and `noise_mode` are unused."""
        del rng, noise_mode
        variables = {"params": g_params, **buffers}
        return self.generator_net.apply(variables, ws, transform=transform, method=networks.Generator.synthesize)

    def fakes_for_d(self, g_params, state: StyleGAN3State, rng: jax.Array, count: int):
        """Dmain's fakes, from the pass that moves the layers' magnitude EMAs (the reference's update_emas)."""
        ws, _ = self.training_ws(g_params, rng, count)
        variables = {"params": g_params, **state.g_buffers}
        fake, updates = self.generator_net.apply(
            variables, ws, update_emas=True, method=networks.Generator.synthesize, mutable=["magnitude_ema"]
        )
        buffers = {**state.g_buffers, "magnitude_ema": updates["magnitude_ema"]}
        return jax.lax.stop_gradient(fake), state.replace(g_buffers=buffers)

    # --- sampling -------------------------------------------------------

    def transformed_frames(self, state: StyleGAN3State, rng: jax.Array) -> jax.Array:
        """Frames [T, rows, S, S, 3]: fixed latents while the input moves once around a circle of radius 1/8 image
        width (StyleGAN3-R: while also turning through a full rotation); T = `sample.animation_frames`."""
        latents, _ = self.sampler.latents(rng, self.sample_config.num_interpolations)
        rows, steps = latents.shape[0], self.sample_config.animation_frames
        phase = jnp.arange(steps, dtype=jnp.float32) * (2 * np.pi / steps)
        angle = phase if self.rotation_equivariant else jnp.zeros_like(phase)
        transforms = translation_transform(0.125 * jnp.cos(phase), 0.125 * jnp.sin(phase), angle)  # [T, 3, 3]
        ws = self.sampling_ws(state, latents)
        ws = jnp.broadcast_to(ws[None], (steps,) + ws.shape).reshape(steps * rows, *ws.shape[1:])
        transforms = jnp.repeat(transforms, rows, axis=0)
        images = self.synthesis(state.g_ema_params, state.g_buffers, ws, None, transform=transforms)
        return jnp.clip(images, -1.0, 1.0).reshape(steps, rows, *images.shape[1:])

    def sample(self, state: StyleGAN3State, batches: Iterable[Batch], rng: jax.Array) -> Samples:
        """StyleGAN2's grids and GIFs, plus the translation (and rotation) GIF of `transformed_frames`."""
        samples = super().sample(state, batches, rng)
        motion = "translation_rotation" if self.rotation_equivariant else "translation"
        frames = jax.jit(self.transformed_frames)(state, jax.random.fold_in(rng, 3))
        samples.animations[motion] = np.asarray(frames)
        return samples
