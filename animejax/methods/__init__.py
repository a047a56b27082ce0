"""Registry of training methods by config name (`config.method`); the contract is `methods/base.py`."""

from __future__ import annotations

import ml_collections

from animejax.errors import ConfigError
from animejax.methods import autoencoder, diffusion, gan, srgan, stylegan2, stylegan3, wgan_gp
from animejax.methods.base import Method

# DCGAN and the residual DCGAN share one method; `model.arch` picks the networks (configs/dcgan.py, resdcgan.py).
METHODS = {
    "autoencoder": autoencoder.AutoencoderMethod,
    "vae": autoencoder.VAEMethod,
    "dcgan": gan.GANMethod,
    "resdcgan": gan.GANMethod,
    "resdcgan_cycle": gan.CycleGANMethod,
    "wgan_gp": wgan_gp.WGANGPMethod,
    "ddpm": diffusion.DiffusionMethod,
    "stylegan2": stylegan2.StyleGAN2Method,
    "stylegan3": stylegan3.StyleGAN3Method,
    "srgan": srgan.SRGANMethod,
}


def get_method(config: ml_collections.ConfigDict) -> Method:
    """Builds the method named by `config.method`."""
    if config.method not in METHODS:
        raise ConfigError(f"Unknown method {config.method!r}; choose one of {', '.join(sorted(METHODS))}.")
    return METHODS[config.method](config)
