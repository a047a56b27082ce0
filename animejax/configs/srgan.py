"""SRGAN (Ledig et al. 2017): 4x super-resolution of faces, 64 -> 256 px; `:8x` is 64 -> 512 px.

`:quick` and `:cpu` upscale 24 -> 96 px with a narrow SRResNet on pixel loss (no weights file), for CPUs. Train
on any folder of faces (`--config.data.source=folder --config.data.path=DIR`), then `--mode=upscale` with
`--config.upscale.input=DIR_OR_IMAGE` or `--config.upscale.from_run=runs/dcgan` (methods/srgan.py).
"""

from animejax.config_defaults import check_variant, srgan_config


def get_config(variant: str = ""):
    check_variant(variant, ("quick", "cpu", "8x"), "configs/srgan.py")
    return srgan_config(variant)
