"""VAE on 64 px faces. `:quick` runs in under a minute on a CPU; `:cpu` is the README job."""

from animejax.config_defaults import autoencoder_config, check_variant


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu"), "configs/vae.py")
    return autoencoder_config("vae", variant, beta=1.0)
