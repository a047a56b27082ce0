"""WGAN-GP (Gulrajani et al.) with DCGAN-family networks and a critic without batch norm, 64 px.

n_critic = 5 critic updates per generator update, inside one train step, all
on that step's real batch (fresh noise, interpolates and augmentations each
time; see animejax/methods/gan.py); gradient penalty weight 10; Adam(1e-4,
b1=0, b2=0.9) for both `config.optim` (G) and `config.optim_d` (critic).
Set `model.arch=resdcgan` (and its model fields) for residual networks.
"""

from animejax.config_defaults import apply_cpu, check_variant
from animejax.gan_config_defaults import apply_gan_quick, dcgan_model_config, gan_base_config


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu"), "configs/wgan_gp.py")
    config = gan_base_config("wgan_gp")
    config.model = model = dcgan_model_config()
    model.d_normalization = "layer"  # The paper's suggested replacement for batch norm in the critic.
    config.gan.n_critic = 5
    config.gan.gp_weight = 10.0
    config.gan.stall_patience = 0  # Critic scores are not probabilities.
    for optim in (config.optim, config.optim_d):
        optim.learning_rate, optim.b1, optim.b2 = 1e-4, 0.0, 0.9
    if variant == "quick":
        apply_gan_quick(config)
        model.g_channels, model.d_channels = 16, 16
    elif variant == "cpu":
        apply_cpu(config)
        config.sample.num_individual = 256
        model.g_channels, model.d_channels = 32, 32
        model.upsample = "subpixel"
    return config
