"""DCGAN (Radford et al.) on 64 px faces, as the seed project. `:quick` and `:cpu` for CPUs.

`config.optim` is the generator's optimizer and `config.optim_d` the
discriminator's (both Adam 2e-4, b1 0.5). `:cpu` switches to sub-pixel
up-sampling, much faster to train on XLA:CPU (GUIDE section 6).
"""

from animejax.config_defaults import apply_cpu, check_variant
from animejax.gan_config_defaults import apply_gan_quick, dcgan_model_config, gan_base_config


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu"), "configs/dcgan.py")
    config = gan_base_config("dcgan")
    config.model = model = dcgan_model_config()
    if variant == "quick":
        apply_gan_quick(config)
        model.g_channels, model.d_channels = 16, 16
    elif variant == "cpu":
        apply_cpu(config)
        config.sample.num_individual = 256
        model.g_channels, model.d_channels = 32, 32
        model.upsample = "subpixel"
    return config
