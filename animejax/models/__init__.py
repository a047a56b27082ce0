"""Networks by `config.model.arch`: each family's builder takes the config's `model` group and image size.

A method asks the registry of its kind (GAN networks, autoencoders) for the networks its config names; an
unknown arch is an error listing the valid ones.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from animejax.errors import ConfigError
from animejax.models import autoencoder, dcgan, resdcgan, unet


@dataclasses.dataclass(frozen=True)
class GANNetworks:
    generator: nn.Module  # (latents [B, D], train) -> images [B, S, S, 3].
    discriminator: nn.Module  # (images, train) -> logits or scores [B].
    encoder: nn.Module | None  # (images, train) -> latents [B, D]; None when the family has none.


def _dcgan(model: ml_collections.ConfigDict, size: int) -> GANNetworks:
    return GANNetworks(
        dcgan.Generator(size, model.latent_dim, model.g_channels, model.upsample),
        dcgan.Discriminator(size, model.d_channels, model.d_normalization),
        None,
    )


def _resdcgan(model: ml_collections.ConfigDict, size: int) -> GANNetworks:
    return GANNetworks(
        resdcgan.Generator(size, model.latent_dim, model.g_channels, model.max_channels, model.upsample),
        resdcgan.Discriminator(size, model.d_channels, model.max_channels, model.d_normalization, model.spectral_norm),
        resdcgan.Encoder(size, model.latent_dim, model.d_channels, model.max_channels),
    )


def _conv_autoencoder(model: ml_collections.ConfigDict, size: int, variational: bool) -> nn.Module:
    return autoencoder.AutoEncoder(
        image_size=size,
        latent_dim=model.latent_dim,
        base_channels=model.base_channels,
        max_channels=model.max_channels,
        upsample=model.upsample,
        variational=variational,
    )


def _unet(model: ml_collections.ConfigDict, size: int) -> nn.Module:
    dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
    if model.dtype not in dtypes:
        raise ConfigError(f"Unknown model.dtype {model.dtype!r}; choose one of {', '.join(dtypes)}.")
    network = unet.UNet(
        base_channels=model.base_channels,
        channel_multipliers=tuple(model.channel_multipliers),
        num_res_blocks=model.num_res_blocks,
        attention_resolutions=tuple(model.attention_resolutions),
        dropout=model.dropout,
        num_groups=model.num_groups,
        num_heads=model.num_heads,
        dtype=dtypes[model.dtype],
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
