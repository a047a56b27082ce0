"""Residual DCGAN with the cycle-consistency constraint (GANime's "CycleGAN constraint"), 64 px.

An encoder E is trained with G on lambda * |E(G(z)) - z|_1 (mean over latent
dims), lambda small (0.1) so outputs are pushed to be similar to, not equal
to, what they came from; `gan.cycle_image_lambda` adds |G(E(x)) - x|_1 on real
images (off by default). E shares G's optimizer settings (`config.optim`).
"""

from animejax.config_defaults import apply_cpu, check_variant
from animejax.gan_config_defaults import apply_gan_quick, gan_base_config, resdcgan_model_config


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu"), "configs/resdcgan_cycle.py")
    config = gan_base_config("resdcgan_cycle")
    config.model = model = resdcgan_model_config()
    config.gan.cycle_lambda = 0.1
    config.gan.cycle_image_lambda = 0.0
    if variant == "quick":
        apply_gan_quick(config)
        model.latent_dim, model.g_channels, model.d_channels, model.max_channels = 64, 16, 16, 64
    elif variant == "cpu":
        apply_cpu(config)
        config.sample.num_individual = 256
        model.latent_dim, model.g_channels, model.d_channels, model.max_channels = 128, 32, 32, 128
    return config
