"""DCGAN (Radford et al.) on 64 px faces. `:quick` and `:cpu` for CPUs.

`config.optim` is the generator's optimizer and `config.optim_d` the
discriminator's (both Adam 2e-4, b1 0.5). `:cpu` switches to sub-pixel
up-sampling, much faster to train on XLA:CPU (BENCHMARKS.md, "GAN train steps").
"""

from animejax.config_defaults import check_variant, gan_config


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu"), "configs/dcgan.py")
    return gan_config("dcgan", "dcgan", variant)
