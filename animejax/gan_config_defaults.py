"""The config groups every GAN file under `configs/` shares, on top of `config_defaults.base_config()`.

Adds:
- `config.gan`: the adversarial objective's settings (critic steps, gradient
  penalty, cycle-consistency weights, DiffAugment policy, sampling mode of
  batch norm, stall detection);
- `config.optim_d`: the discriminator's (critic's) optimizer, with the same
  fields as `config.optim`, which is the generator's (and the encoder's);
- `config.ema.warmup`, `config.sample.num_individual`, `config.sample.interpolation`;
and the two network families' `config.model` groups. Model files pick one and
override what differs.
"""

import ml_collections

from animejax.config_defaults import apply_quick, base_config


def gan_base_config(method: str) -> ml_collections.ConfigDict:
    """Base config plus the GAN groups, with DCGAN's optimizer (Adam 2e-4, b1 0.5) for G and D."""
    config = base_config()
    config.method = method

    config.gan = gan = ml_collections.ConfigDict()
    gan.n_critic = 1  # Discriminator updates per generator update, all inside one train step.
    gan.gp_weight = 0.0  # WGAN-GP's lambda (10 in Gulrajani et al.); used by wgan_gp.
    gan.cycle_lambda = 0.0  # Weight of |E(G(z)) - z|_1 (mean over latent dims) in G's and E's loss.
    gan.cycle_image_lambda = 0.0  # Weight of |G(E(x)) - x|_1 (mean over pixels) on real images.
    gan.diffaugment = ""  # DiffAugment policy for D's inputs, e.g. "color,translation,cutout"; "" disables.
    gan.sample_batch_statistics = False  # Sample with batch statistics (PyTorch DCGAN's train-mode G) or EMA'd running.
    gan.stall_d_real_above = 0.95  # Stall warning: mean D(real) above this...
    gan.stall_d_fake_below = 0.05  # ...and mean D(fake) below this...
    gan.stall_patience = 10  # ...for this many consecutive log steps (0 disables).

    config.optim.learning_rate = 2e-4
    config.optim.b1 = 0.5
    config.optim.b2 = 0.999
    config.optim_d = ml_collections.ConfigDict(config.optim.to_dict())

    config.ema.decay = 0.999
    config.ema.warmup = True  # Decay min(decay, (1 + step) / (10 + step)): the EMA follows G early on.

    config.sample.num_individual = 1_000  # Single images written by --mode=sample, for external metrics.
    config.sample.interpolation = "slerp"  # slerp | lerp between latent pairs.
    return config


def apply_gan_quick(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The shared `:quick` part (32 px, few steps) plus fewer individual samples."""
    apply_quick(config)
    config.sample.num_individual = 64
    return config


def dcgan_model_config() -> ml_collections.ConfigDict:
    """`config.model` of the DCGAN family at the paper's 64 px sizes (models/dcgan.py)."""
    model = ml_collections.ConfigDict()
    model.arch = "dcgan"  # Network family; read by wgan_gp (the other methods fix theirs).
    model.latent_dim = 100
    model.g_channels = 64  # G's channels at S/2 (ngf); doubled per lower level.
    model.d_channels = 64  # D's channels at S/2 (ndf); doubled per lower level.
    model.upsample = "transpose"  # transpose (the paper) | subpixel (fast on XLA:CPU) | nearest.
    model.d_normalization = "batch"  # batch | layer | none (never on D's first level).
    model.init_std = 0.02  # Kernels ~ N(0, std), norm scales ~ N(1, std); 0 keeps Flax's initialisers.
    return model


def resdcgan_model_config() -> ml_collections.ConfigDict:
    """`config.model` of the residual family (models/resdcgan.py)."""
    model = ml_collections.ConfigDict()
    model.arch = "resdcgan"
    model.latent_dim = 128
    model.g_channels = 64  # G's channels at full resolution; doubled per lower level up to max_channels.
    model.d_channels = 64  # D's and E's channels at S/2; doubled per lower level up to max_channels.
    model.max_channels = 512
    model.upsample = "nearest"  # Up-sampling in G's residual main path: nearest | subpixel | transpose.
    model.d_normalization = "none"  # batch | layer | none.
    model.spectral_norm = True  # Spectral norm on every D convolution and its logit layer.
    model.init_std = 0.0  # Flax's initialisers.
    return model
