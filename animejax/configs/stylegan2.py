"""StyleGAN2 (Karras et al. 2020) with lazy R1 and path-length regularisation, style mixing and ADA, at 64 px.

`:256` is the 256 px model. `:quick` and `:cpu` are narrow networks at 32 px for CPUs. The losses, lazy
intervals, EMA and ADA follow NVlabs/stylegan2-ada-pytorch (methods/stylegan2.py).
"""

from animejax.config_defaults import check_variant, stylegan2_config


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu", "256"), "configs/stylegan2.py")
    return stylegan2_config(variant)
