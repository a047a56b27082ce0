"""Deterministic autoencoder on 64 px faces. `:quick` and `:cpu` for CPUs."""

import ml_collections

from animejax.config_defaults import apply_cpu, apply_quick, base_config, check_variant


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu"), "configs/autoencoder.py")
    config = base_config()
    config.method = "autoencoder"
    config.model = model = ml_collections.ConfigDict()
    model.latent_dim = 128
    model.base_channels = 32
    model.max_channels = 256
    model.upsample = "subpixel"  # subpixel | transpose | nearest
    model.reconstruction = "mse"  # mse | bce
    model.beta = 0.0  # No KL term for the plain autoencoder.
    config.optim.learning_rate = 1e-3
    if variant == "quick":
        apply_quick(config)
        model.latent_dim, model.base_channels, model.max_channels = 32, 16, 64
    elif variant == "cpu":
        apply_cpu(config)
        model.latent_dim, model.base_channels, model.max_channels = 64, 32, 128
    return config
