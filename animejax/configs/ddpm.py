"""DDPM (Ho et al. 2020) with a self-attention UNet on 64 px faces: the flagship command.

`:128` is the 128 px model (one more level, attention at 16 and 8). `:quick`
and `:cpu` are small UNets at 32 px for CPUs. Sampling: DDIM for previews and
--mode=sample, DPM-Solver++ (25 steps) for the images metrics score.
"""

from animejax.config_defaults import check_variant, diffusion_config


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu", "128"), "configs/ddpm.py")
    return diffusion_config(variant)
