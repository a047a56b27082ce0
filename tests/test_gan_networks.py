"""The GAN networks: DCGAN against PyTorch's DCGAN with the same weights, shapes, spectral norm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animejax.models import dcgan, resdcgan


def _torch_dcgan(image_size, latent_dim, g_channels, d_channels, upsample):
    """The PyTorch DCGAN example's networks (NCHW), with a configurable up-sampling layer and conv biases."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    levels = dcgan.num_levels(image_size)
    channels = [g_channels * 2 ** (levels - 1 - i) for i in range(levels)]
    g_layers = [
        nn.ConvTranspose2d(latent_dim, channels[0], 4, 1, 0, bias=False),
        nn.BatchNorm2d(channels[0]),
        nn.ReLU(),
    ]
    for c_in, c_out in zip(channels, channels[1:] + [3]):
        if upsample == "transpose":
            g_layers.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1))
        else:
            g_layers += [nn.Conv2d(c_in, 4 * c_out, 3, 1, 1), nn.PixelShuffle(2)]
        if c_out != 3:
            g_layers += [nn.BatchNorm2d(c_out), nn.ReLU()]
    g_layers.append(nn.Tanh())
    d_layers, c_in = [], 3
    for level in range(levels):
        c_out = d_channels * 2**level
        d_layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=level == 0))
        if level > 0:
            d_layers.append(nn.BatchNorm2d(c_out))
        d_layers.append(nn.LeakyReLU(0.2))
        c_in = c_out
    d_layers.append(nn.Conv2d(c_in, 1, 4, 1, 0))
    return nn.Sequential(*g_layers).double(), nn.Sequential(*d_layers).double()


def _copy_to_torch(torch_net, params, stats):
    """Copies Flax variables into the torch Sequential, layer by layer in order.

    Kernel layouts: flax Conv HWIO -> torch Conv2d OIHW. flax `nn.ConvTranspose` (transpose_kernel=False) is a
    convolution of the dilated input with the kernel as stored; torch's ConvTranspose2d is the gradient of a
    convolution, i.e. that convolution with the kernel spatially flipped and in/out swapped: torch [I, O, H, W] =
    flax [H, W, I, O] flipped on H and W. The bias-free projection's kernel [z, 4*4*C] is torch's first
    ConvTranspose2d(z, C, 4, 1, 0) weight [z, C, 4, 4] (on a 1x1 input no flip arises).
    """
    import torch

    def tensor(x):
        return torch.from_numpy(np.asarray(x, np.float64).copy())

    convs = [(name, p) for name, p in params.items() if not name.startswith("BatchNorm")]
    convs.sort(key=lambda item: (item[0] != "project", item[0] == "logit", item[0]))
    norms = sorted((name for name in params if name.startswith("BatchNorm")), key=lambda n: int(n.split("_")[1]))
    conv_modules = [m for m in torch_net if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    norm_modules = [m for m in torch_net if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == len(conv_modules) and len(norms) == len(norm_modules)
    with torch.no_grad():
        for (name, p), module in zip(convs, conv_modules):
            if name == "project":
                z, c = p["kernel"].shape[0], module.weight.shape[1]
                module.weight.copy_(tensor(np.asarray(p["kernel"]).reshape(z, 4, 4, c).transpose(0, 3, 1, 2)))
                continue
            inner = p if "kernel" in p else next(iter(p.values()))  # Upsample2x_k/{ConvTranspose_0|Conv_0}.
            kernel = np.asarray(inner["kernel"])
            if isinstance(module, torch.nn.ConvTranspose2d):
                module.weight.copy_(tensor(kernel[::-1, ::-1].transpose(2, 3, 0, 1)))
            else:
                module.weight.copy_(tensor(kernel.transpose(3, 2, 0, 1)))
            if module.bias is not None:
                module.bias.copy_(tensor(inner["bias"]))
        for name, module in zip(norms, norm_modules):
            module.weight.copy_(tensor(params[name]["scale"]))
            module.bias.copy_(tensor(params[name]["bias"]))
            module.running_mean.copy_(tensor(stats[name]["mean"]))
            module.running_var.copy_(tensor(stats[name]["var"]))


def _random_stats(stats, seed):
    rng = np.random.default_rng(seed)
    return {
        name: {"mean": rng.normal(size=s["mean"].shape) * 0.1, "var": rng.uniform(0.5, 2.0, size=s["var"].shape)}
        for name, s in stats.items()
    }


@pytest.mark.parametrize("upsample", ["transpose", "subpixel"])
def test_dcgan_matches_pytorch_in_eval_and_train_mode(upsample):
    torch = pytest.importorskip("torch")
    size, latent, batch = 64, 100, 4
    generator = dcgan.Generator(size, latent, base_channels=8, upsample=upsample)
    discriminator = dcgan.Discriminator(size, base_channels=8)
    z = jax.random.normal(jax.random.PRNGKey(0), (batch, latent))
    images = jax.random.uniform(jax.random.PRNGKey(1), (batch, size, size, 3), minval=-1, maxval=1)
    g_vars = jax.jit(lambda: generator.init(jax.random.PRNGKey(2), z, train=False))()
    d_vars = jax.jit(lambda: discriminator.init(jax.random.PRNGKey(3), images, train=False))()
    g_vars = {"params": g_vars["params"], "batch_stats": _random_stats(g_vars["batch_stats"], 4)}
    d_vars = {"params": d_vars["params"], "batch_stats": _random_stats(d_vars["batch_stats"], 5)}
    torch_g, torch_d = _torch_dcgan(size, latent, 8, 8, upsample)
    _copy_to_torch(torch_g, g_vars["params"], g_vars["batch_stats"])
    _copy_to_torch(torch_d, d_vars["params"], d_vars["batch_stats"])
    z_torch = torch.from_numpy(np.asarray(z, np.float64))[:, :, None, None]
    images_torch = torch.from_numpy(np.asarray(images, np.float64)).permute(0, 3, 1, 2)

    def nhwc(t):
        return t.detach().permute(0, 2, 3, 1).numpy()

    # Eval mode: running statistics.
    torch_g.eval(), torch_d.eval()
    g_eval = jax.jit(lambda v, x: generator.apply(v, x, train=False))
    d_eval = jax.jit(lambda v, x: discriminator.apply(v, x, train=False))
    np.testing.assert_allclose(np.asarray(g_eval(g_vars, z)), nhwc(torch_g(z_torch)), atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(d_eval(d_vars, images)), torch_d(images_torch)[:, 0, 0, 0].detach(), atol=1e-5
    )

    # Train mode: batch statistics, and the running averages each framework updates.
    torch_g.train(), torch_d.train()
    for module, variables, inputs, torch_net, torch_in in (
        (generator, g_vars, z, torch_g, z_torch),
        (discriminator, d_vars, images, torch_d, images_torch),
    ):
        apply = jax.jit(lambda v, x, module=module: module.apply(v, x, train=True, mutable=["batch_stats"]))
        out, updates = apply(variables, inputs)
        expected = torch_net(torch_in)
        expected = nhwc(expected) if expected.shape[-1] == size else expected[:, 0, 0, 0].detach().numpy()
        np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)
        norms = [m for m in torch_net if isinstance(m, torch.nn.BatchNorm2d)]
        names = sorted(variables["batch_stats"], key=lambda n: int(n.split("_")[1]))
        for name, norm in zip(names, norms):
            new, old = updates["batch_stats"][name], variables["batch_stats"][name]
            np.testing.assert_allclose(np.asarray(new["mean"]), norm.running_mean.numpy(), atol=1e-5)
            # Flax averages the biased batch variance, torch the unbiased one (n = B*H*W values per channel).
            n = inputs.shape[0] * _bn_positions(module, name, size)
            flax_batch_var = (np.asarray(new["var"]) - 0.9 * old["var"]) / 0.1
            torch_batch_var = (norm.running_var.numpy() - 0.9 * old["var"]) / 0.1
            np.testing.assert_allclose(flax_batch_var * n / (n - 1), torch_batch_var, rtol=1e-4, atol=1e-6)


def _bn_positions(module, name, size):
    """H*W at the batch norm `BatchNorm_k`: G's k-th is at 4 * 2^k, D's k-th (after level k+1) at size / 2^(k+2)."""
    k = int(name.split("_")[1])
    side = 4 * 2**k if isinstance(module, dcgan.Generator) else size // 2 ** (k + 2)
    return side * side


def _output_shape(module, *inputs):
    """The output shape of init-then-apply, traced abstractly (no compilation)."""
    return jax.eval_shape(lambda: module.init_with_output(jax.random.PRNGKey(0), *inputs, train=False)[0]).shape


def test_dcgan_shapes_and_sizes():
    for size in (16, 32, 128):
        assert _output_shape(dcgan.Generator(size, 10, 4, "subpixel"), jnp.zeros((2, 10))) == (2, size, size, 3)
        assert _output_shape(dcgan.Discriminator(size, 4, "none"), jnp.zeros((2, size, size, 3))) == (2,)
    with pytest.raises(ValueError, match="4 times a power of two"):
        dcgan.num_levels(48)


def test_resdcgan_spectral_norm_converges_to_the_top_singular_value():
    d = resdcgan.Discriminator(16, 4, 16, "none", spectral_norm=True)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
    variables = jax.jit(lambda: d.init(jax.random.PRNGKey(1), x, train=False))()
    stats = variables["batch_stats"]
    apply = jax.jit(lambda s: d.apply({"params": variables["params"], "batch_stats": s}, x, mutable=["batch_stats"]))
    for _ in range(200):  # One power iteration per training forward pass.
        _, updates = apply(stats)
        stats = updates["batch_stats"]
    kernel = np.asarray(variables["params"]["ResBlockDown_1"]["_Linear_0"]["conv"]["kernel"])
    top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    sigma = stats["ResBlockDown_1"]["_Linear_0"]["SpectralNorm_0"]["conv/kernel/sigma"]
    np.testing.assert_allclose(float(sigma), top, rtol=1e-3)
    assert d.apply({"params": variables["params"], "batch_stats": stats}, x, train=False).shape == (2,)


def test_resdcgan_encoder_and_generator_shapes():
    for upsample in ("nearest", "subpixel", "transpose"):
        assert _output_shape(resdcgan.Generator(32, 12, 4, 16, upsample), jnp.zeros((2, 12))) == (2, 32, 32, 3)
    assert _output_shape(resdcgan.Encoder(32, 12, 4, 16), jnp.zeros((2, 32, 32, 3))) == (2, 12)
    for normalization in ("batch", "layer", "none"):
        d = resdcgan.Discriminator(32, 4, 16, normalization, spectral_norm=normalization == "none")
        assert _output_shape(d, jnp.zeros((2, 32, 32, 3))) == (2,)
