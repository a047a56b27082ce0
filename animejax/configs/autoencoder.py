"""Deterministic autoencoder on 64 px faces (the VAE's networks, no KL term). `:quick` and `:cpu` for CPUs."""

from animejax.config_defaults import autoencoder_config, check_variant


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu"), "configs/autoencoder.py")
    return autoencoder_config("autoencoder", variant, beta=0.0)
