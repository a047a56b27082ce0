"""Residual DCGAN with the cycle-consistency constraint (GANime's "CycleGAN constraint"), 64 px.

An encoder E is trained with G on lambda * |E(G(z)) - z|_1 (mean over latent
dims), lambda small (0.1) so outputs are pushed to be similar to, not equal
to, what they came from; `gan.cycle_image_lambda` adds |G(E(x)) - x|_1 on real
images (off by default). E shares G's optimizer settings (`config.optim`).
"""

from animejax.config_defaults import check_variant, gan_config


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu"), "configs/resdcgan_cycle.py")
    config = gan_config("resdcgan_cycle", "resdcgan", variant)
    config.gan.cycle_lambda = 0.1
    return config
