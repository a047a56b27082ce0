"""Residual DCGAN ("RESdcgan") with a spectrally normalized discriminator, 64 px. `:quick` and `:cpu` for CPUs."""

from animejax.config_defaults import apply_cpu, check_variant
from animejax.gan_config_defaults import apply_gan_quick, gan_base_config, resdcgan_model_config


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu"), "configs/resdcgan.py")
    config = gan_base_config("resdcgan")
    config.model = model = resdcgan_model_config()
    if variant == "quick":
        apply_gan_quick(config)
        model.latent_dim, model.g_channels, model.d_channels, model.max_channels = 64, 16, 16, 64
    elif variant == "cpu":
        apply_cpu(config)
        config.sample.num_individual = 256
        model.latent_dim, model.g_channels, model.d_channels, model.max_channels = 128, 32, 32, 128
    return config
