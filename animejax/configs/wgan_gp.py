"""WGAN-GP (Gulrajani et al.) with DCGAN-family networks and a critic without batch norm, 64 px.

n_critic = 5 critic updates per generator update, inside one train step, all
on that step's real batch (fresh noise, interpolates and augmentations each
time; see animejax/methods/gan.py); gradient penalty weight 10; Adam(1e-4,
b1=0, b2=0.9) for both `config.optim` (G) and `config.optim_d` (critic).
Set `model.arch=resdcgan` (and its model fields) for residual networks.
"""

from animejax.config_defaults import check_variant, gan_config


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu"), "configs/wgan_gp.py")
    config = gan_config("wgan_gp", "dcgan", variant)
    config.model.d_normalization = "layer"  # The paper's suggested replacement for batch norm in the critic.
    config.gan.n_critic = 5
    config.gan.gp_weight = 10.0
    config.gan.stall_patience = 0  # Critic scores are not probabilities.
    for optim in (config.optim, config.optim_d):
        optim.learning_rate, optim.b1, optim.b2 = 1e-4, 0.0, 0.9
    return config
