"""Residual DCGAN ("RESdcgan") with a spectrally normalized discriminator, 64 px. `:quick` and `:cpu` for CPUs."""

from animejax.config_defaults import check_variant, gan_config


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu"), "configs/resdcgan.py")
    return gan_config("resdcgan", "resdcgan", variant)
