"""Networks by `config.model.arch`: each family's builder takes the config's `model` group and image size.

A method asks the registry of its kind (GAN networks, autoencoders) for the networks its config names; an
unknown arch is an error listing the valid ones.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import ml_collections

from animejax.errors import ConfigError
from animejax.models import autoencoder, dcgan, layers, resdcgan, srgan, stylegan2, stylegan3, unet


@dataclasses.dataclass(frozen=True)
class GANNetworks:
    generator: nn.Module  # (latents [B, D], train) -> images [B, S, S, 3].
    discriminator: nn.Module  # (images, train) -> logits or scores [B].
    encoder: nn.Module | None  # (images, train) -> latents [B, D]; None when the family has none.


def _dtype(model: ml_collections.ConfigDict):
    """The computation dtype of `model.dtype` (float32 for runs saved before the field existed)."""
    return layers.compute_dtype(model.get("dtype", "float32"))


def _dcgan(model: ml_collections.ConfigDict, size: int) -> GANNetworks:
    dtype = _dtype(model)
    return GANNetworks(
        dcgan.Generator(size, model.latent_dim, model.g_channels, model.upsample, dtype),
        dcgan.Discriminator(size, model.d_channels, model.d_normalization, dtype),
        None,
    )


def _resdcgan(model: ml_collections.ConfigDict, size: int) -> GANNetworks:
    dtype = _dtype(model)
    return GANNetworks(
        resdcgan.Generator(size, model.latent_dim, model.g_channels, model.max_channels, model.upsample, dtype),
        resdcgan.Discriminator(
            size, model.d_channels, model.max_channels, model.d_normalization, model.spectral_norm, dtype
        ),
        resdcgan.Encoder(size, model.latent_dim, model.d_channels, model.max_channels, dtype),
    )


def _conv_autoencoder(model: ml_collections.ConfigDict, size: int, variational: bool) -> nn.Module:
    return autoencoder.AutoEncoder(
        image_size=size,
        latent_dim=model.latent_dim,
        base_channels=model.base_channels,
        max_channels=model.max_channels,
        upsample=model.upsample,
        variational=variational,
        dtype=_dtype(model),
    )


def _unet(model: ml_collections.ConfigDict, size: int) -> nn.Module:
    network = unet.UNet(
        base_channels=model.base_channels,
        channel_multipliers=tuple(model.channel_multipliers),
        num_res_blocks=model.num_res_blocks,
        attention_resolutions=tuple(model.attention_resolutions),
        dropout=model.dropout,
        num_groups=model.num_groups,
        num_heads=model.num_heads,
        dtype=_dtype(model),
    )
    try:
        network.check(size, size)
        for multiplier in network.channel_multipliers:
            unet.group_count(network.num_groups, network.base_channels * multiplier)
    except ValueError as error:
        raise ConfigError(f"model (UNet) does not fit data.image_size={size}: {error}.") from None
    return network


GAN_ARCHS: dict[str, Callable[..., GANNetworks]] = {"dcgan": _dcgan, "resdcgan": _resdcgan}
AUTOENCODER_ARCHS: dict[str, Callable[..., nn.Module]] = {"conv": _conv_autoencoder}
DENOISER_ARCHS: dict[str, Callable[..., nn.Module]] = {"unet": _unet}


def _lookup(registry: dict, arch: str, kind: str):
    if arch not in registry:
        raise ConfigError(f"Unknown model.arch {arch!r} for {kind}; choose one of {', '.join(sorted(registry))}.")
    return registry[arch]


def gan_networks(config: ml_collections.ConfigDict) -> GANNetworks:
    """G, D (and E) of the family `config.model.arch`, at `config.data.image_size`."""
    return _lookup(GAN_ARCHS, config.model.arch, "GANs")(config.model, config.data.image_size)


def autoencoder_network(config: ml_collections.ConfigDict, variational: bool) -> nn.Module:
    """The (variational) autoencoder of `config.model.arch` ("conv" for runs saved before the field existed)."""
    arch = config.model.get("arch", "conv")
    return _lookup(AUTOENCODER_ARCHS, arch, "autoencoders")(config.model, config.data.image_size, variational)


def denoiser_network(config: ml_collections.ConfigDict) -> nn.Module:
    """The diffusion denoiser of `config.model.arch`: (x_t, t, train) -> prediction of the configured target."""
    return _lookup(DENOISER_ARCHS, config.model.arch, "diffusion")(config.model, config.data.image_size)


def _stylegan_discriminator(model: ml_collections.ConfigDict, size: int, dtype) -> nn.Module:
    """StyleGAN2's resnet discriminator, which StyleGAN3 trains with too."""
    return stylegan2.Discriminator(
        img_resolution=size,
        channel_base=model.channel_base,
        channel_max=model.channel_max,
        mbstd_group_size=model.mbstd_group_size,
        dtype=dtype,
    )


def stylegan2_networks(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
    """The StyleGAN2 generator and discriminator at `config.data.image_size` (32 to 256 px)."""
    model, size = config.model, config.data.image_size
    try:
        stylegan2.check_resolution(size)
    except ValueError as error:
        raise ConfigError(f"StyleGAN2 does not fit data.image_size={size}: {error}.") from None
    dtype = _dtype(model)
    generator = stylegan2.Generator(
        z_dim=model.z_dim,
        w_dim=model.w_dim,
        img_resolution=size,
        channel_base=model.channel_base,
        channel_max=model.channel_max,
        mapping_layers=model.mapping_layers,
        mapping_lr_multiplier=model.mapping_lr_multiplier,
        dtype=dtype,
    )
    return generator, _stylegan_discriminator(model, size, dtype)


def stylegan3_networks(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
    """The StyleGAN3 generator (`model.arch` stylegan3-t or stylegan3-r) and StyleGAN2's discriminator."""
    model, size = config.model, config.data.image_size
    if model.arch not in ("stylegan3-t", "stylegan3-r"):
        raise ConfigError(f"Unknown model.arch {model.arch!r} for StyleGAN3; choose stylegan3-t or stylegan3-r.")
    try:
        stylegan2.check_resolution(size)  # The discriminator's resolutions.
    except ValueError as error:
        raise ConfigError(f"StyleGAN3 does not fit data.image_size={size}: {error}.") from None
    if not model.magnitude_ema_kimg > 0:
        raise ConfigError(
            f"model.magnitude_ema_kimg must be > 0 (a half-life in thousands of images), got "
            f"{model.magnitude_ema_kimg}."
        )
    widths = dict(channel_base=model.channel_base, channel_max=model.channel_max)
    if model.arch == "stylegan3-r":
        widths = stylegan3.stylegan3_r_kwargs(model.channel_base, model.channel_max)
    dtype = _dtype(model)
    generator = stylegan3.Generator(
        z_dim=model.z_dim,
        w_dim=model.w_dim,
        img_resolution=size,
        mapping_layers=model.mapping_layers,
        mapping_lr_multiplier=model.mapping_lr_multiplier,
        num_layers=model.num_layers,
        num_critical=model.num_critical,
        margin_size=model.margin_size,
        magnitude_ema_beta=0.5 ** (config.train.batch_size / (model.magnitude_ema_kimg * 1000)),
        conv_clamp=model.conv_clamp or None,
        dtype=dtype,
        **widths,
    )
    return generator, _stylegan_discriminator(model, size, dtype)


def srgan_networks(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
    """SRGAN's SRResNet generator (`model.scale`x) and discriminator; `data.image_size` is the high resolution."""
    model, size = config.model, config.data.image_size
    if model.get("arch", "srresnet") != "srresnet":
        raise ConfigError(f"Unknown model.arch {model.arch!r} for SRGAN; choose srresnet.")
    crop = config.srgan.get("crop_size", 0) or size
    for name, side in (("data.image_size", size), ("srgan.crop_size", crop)):
        if side % model.scale:
            raise ConfigError(f"{name}={side} is not divisible by model.scale={model.scale}.")
    if crop > size:
        raise ConfigError(f"srgan.crop_size={crop} is larger than data.image_size={size}.")
    dtype = _dtype(model)
    generator = srgan.SRResNet(model.scale, model.channels, model.num_blocks, dtype)
    return generator, srgan.Discriminator(model.d_channels, dtype)
