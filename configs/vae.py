"""VAE on 64 px faces. `:quick` runs in under a minute on a CPU; `:cpu` is the README job."""

import ml_collections

from animejax.config_defaults import apply_cpu, apply_quick, base_config, check_variant


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu"), "configs/vae.py")
    config = base_config()
    config.method = "vae"
    config.model = model = ml_collections.ConfigDict()
    model.latent_dim = 128
    model.base_channels = 32
    model.max_channels = 256
    model.upsample = "subpixel"  # subpixel | transpose | nearest
    model.reconstruction = "mse"  # mse | bce
    model.beta = 1.0
    config.optim.learning_rate = 1e-3
    if variant == "quick":
        apply_quick(config)
        model.latent_dim, model.base_channels, model.max_channels = 32, 16, 64
    elif variant == "cpu":
        apply_cpu(config)
        model.latent_dim, model.base_channels, model.max_channels = 64, 32, 128
    return config
