"""Registry of training methods by config name (`config.method`)."""

from __future__ import annotations

import ml_collections

from animejax.errors import ConfigError
from animejax.methods import autoencoder, gan, wgan_gp

METHODS = {
    "autoencoder": autoencoder.AutoencoderMethod,
    "vae": autoencoder.VAEMethod,
    "dcgan": gan.DCGANMethod,
    "resdcgan": gan.ResDCGANMethod,
    "resdcgan_cycle": gan.ResDCGANCycleMethod,
    "wgan_gp": wgan_gp.WGANGPMethod,
}


def get_method(config: ml_collections.ConfigDict):
    """Builds the method named by `config.method`."""
    if config.method not in METHODS:
        raise ConfigError(f"Unknown method {config.method!r}; choose one of {', '.join(sorted(METHODS))}.")
    return METHODS[config.method](config)
