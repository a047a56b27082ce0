"""StyleGAN3 (Karras et al. 2021), the alias-free generator on StyleGAN2's training stack, at 64 px.

`:t` (the default) is StyleGAN3-T, translation-equivariant; `:r` is StyleGAN3-R, rotation-equivariant (1x1
convolutions, radial filters, twice the channels, D's inputs blurred at first). `:256` / `:r_256` are 256 px;
`:quick`, `:cpu` (`:r_quick`, `:r_cpu`) narrow networks at 32 px for CPUs. As NVlabs/stylegan3's configs
(methods/stylegan3.py).
"""

from animejax.config_defaults import STYLEGAN3_VARIANTS, check_variant, stylegan3_config


def get_config(variant: str = ""):
    check_variant(variant, STYLEGAN3_VARIANTS, "configs/stylegan3.py")
    return stylegan3_config(variant)
