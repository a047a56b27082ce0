"""SRGAN networks: pixel (un)shuffle against numpy and torch, SRResNet and D against PyTorch, shapes, bfloat16."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from animejax.errors import ConfigError
from animejax.models import srgan
from animejax.models.layers import depth_to_space, space_to_depth

# Small enough that every network here compiles and runs in about a second on two cores.
TINY = dict(channels=8, num_blocks=2)
LOW_RES = (2, 6, 5, 3)  # Non-square, so a height/width mix-up fails.
D_IMAGES = (3, 20, 20, 3)  # 20 -> 10 -> 10 -> 5 -> 5 -> 3 -> 3 -> 2: odd sizes under the stride-2 convolutions.


def _numpy_pixel_shuffle(x: np.ndarray, r: int) -> np.ndarray:
    """torch.nn.PixelShuffle in NHWC: out[b, h*r + i, w*r + j, c] = in[b, h, w, c*r*r + i*r + j]."""
    b, h, w, cin = x.shape
    out = np.zeros((b, h * r, w * r, cin // (r * r)), np.float64)
    for c in range(cin // (r * r)):
        for i in range(r):
            for j in range(r):
                out[:, i::r, j::r, c] = x[:, :, :, c * r * r + i * r + j]
    return out


@pytest.mark.parametrize("factor", [2, 3])
def test_depth_to_space_is_pixel_shuffle_and_space_to_depth_its_inverse(factor):
    rng = np.random.default_rng(factor)
    x = rng.normal(size=(2, 3, 4, 2 * factor * factor))
    got = np.asarray(depth_to_space(jnp.asarray(x), factor), np.float64)
    np.testing.assert_allclose(got, _numpy_pixel_shuffle(x, factor), rtol=1e-6)
    x32 = jnp.asarray(x, jnp.float32)
    np.testing.assert_array_equal(space_to_depth(depth_to_space(x32, factor), factor), x32)
    y32 = jnp.asarray(rng.normal(size=(2, 3 * factor, 4 * factor, 5)), jnp.float32)
    assert space_to_depth(y32, factor).shape == (2, 3, 4, 5 * factor * factor)
    np.testing.assert_array_equal(depth_to_space(space_to_depth(y32, factor), factor), y32)
    with pytest.raises(ValueError, match="multiples of"):
        space_to_depth(jnp.zeros((1, 3 * factor + 1, 2 * factor, 1)), factor)


@pytest.mark.parametrize("factor", [2, 3])
def test_pixel_shuffle_and_unshuffle_match_torch(factor):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10 + factor)
    x = rng.normal(size=(2, 3, 4, 3 * factor * factor)).astype(np.float32)
    expected = torch.nn.PixelShuffle(factor)(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    np.testing.assert_array_equal(depth_to_space(jnp.asarray(x), factor), expected.numpy())
    y = rng.normal(size=(2, 2 * factor, 3 * factor, 3)).astype(np.float32)
    expected = torch.nn.PixelUnshuffle(factor)(torch.from_numpy(y).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    np.testing.assert_array_equal(space_to_depth(jnp.asarray(y), factor), expected.numpy())


def random_variables(module, x, seed: int):
    """Variables with `module.init`'s shapes drawn in numpy: every layer does something, running stats included.

    Kernels ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2), norm scales ~ 1 + N(0, 0.1^2), PReLU slopes ~ U(0.1, 0.4),
    running means ~ N(0, 0.1^2), running variances ~ U(0.5, 2).
    """
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), x, train=False))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        if name == "kernel":
            value = rng.normal(size=leaf.shape) / math.sqrt(math.prod(leaf.shape[:-1]))
        elif name == "scale":
            value = 1.0 + 0.1 * rng.normal(size=leaf.shape)
        elif name == "alpha":
            value = rng.uniform(0.1, 0.4, size=leaf.shape)
        elif name == "var":
            value = rng.uniform(0.5, 2.0, size=leaf.shape)
        else:  # bias, mean
            value = 0.1 * rng.normal(size=leaf.shape)
        return jnp.asarray(value, jnp.float32)

    variables = {"params": shapes["params"], "batch_stats": shapes["batch_stats"]}
    variables = jax.tree_util.tree_map_with_path(draw, variables)
    if isinstance(module, srgan.Discriminator):  # Logits of order 1 (not 0.01), so 1e-5 absolute is a tight check.
        logit = variables["params"]["conv_logit"]
        logit["kernel"] = 10.0 * logit["kernel"]
    return variables


def _torch_pair(module, seed):
    """The Flax module, random variables, an input in [-1, 1], and the float64 torch copy with those variables."""
    torch = pytest.importorskip("torch")
    from tests.reference.torch_srgan import TorchDiscriminator, TorchSRResNet, load_flax_variables

    if isinstance(module, srgan.SRResNet):
        reference = TorchSRResNet(module.scale, module.channels, module.num_blocks)
        shape = LOW_RES
    else:
        reference = TorchDiscriminator(module.channels)
        shape = D_IMAGES
    x = jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, size=shape), jnp.float32)
    variables = random_variables(module, x, seed + 1)
    reference = reference.double()
    load_flax_variables(reference, variables)
    x_torch = torch.from_numpy(np.asarray(x, np.float64)).permute(0, 3, 1, 2)
    return x, variables, reference, x_torch


def _to_nhwc_or_logits(t):
    t = t.detach()
    return (t.permute(0, 2, 3, 1) if t.ndim == 4 else t).numpy()


MODULES = {
    "srresnet_x4": srgan.SRResNet(scale=4, **TINY),
    "srresnet_x8": srgan.SRResNet(scale=8, **TINY),
    "discriminator": srgan.Discriminator(channels=8),
}


@pytest.mark.parametrize("name", list(MODULES))
def test_matches_pytorch_in_eval_mode(name):
    torch = pytest.importorskip("torch")
    module = MODULES[name]
    x, variables, reference, x_torch = _torch_pair(module, seed=1)
    got = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, x))
    reference.eval()
    with torch.no_grad():
        expected = _to_nhwc_or_logits(reference(x_torch))
    assert got.dtype == np.float32 and got.shape == expected.shape
    if isinstance(module, srgan.SRResNet):
        assert got.shape == (LOW_RES[0], LOW_RES[1] * module.scale, LOW_RES[2] * module.scale, 3)
        assert np.abs(got).max() < 1 and got.std() > 0.1  # tanh output, not saturated: the check means something.
    else:
        assert got.shape == (D_IMAGES[0],) and np.abs(got).min() > 0.05 and np.ptp(got) > 0.05
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", list(MODULES))
def test_matches_pytorch_in_train_mode_with_running_statistics(name):
    torch = pytest.importorskip("torch")
    module = MODULES[name]
    x, variables, reference, x_torch = _torch_pair(module, seed=2)
    apply = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"]))
    got, updates = apply(variables, x)

    counts = {}  # Values per channel each torch batch norm averaged over: B * H * W.
    for norm_name, norm in reference.named_modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.register_forward_hook(
                lambda m, inputs, out, n=norm_name: counts.update({n: out.numel() // out.shape[1]})
            )
    reference.train()
    with torch.no_grad():
        expected = _to_nhwc_or_logits(reference(x_torch))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-5)

    old = traverse_util.flatten_dict(variables["batch_stats"])
    new = traverse_util.flatten_dict(jax.tree_util.tree_map(np.asarray, updates["batch_stats"]))
    assert set(new) == set(old) and len(counts) == len(new) // 2
    for path in (p[:-1] for p in new if p[-1] == "mean"):
        norm, n = reference.get_submodule(".".join(path)), counts[".".join(path)]
        old_mean, old_var = np.asarray(old[path + ("mean",)]), np.asarray(old[path + ("var",)])
        np.testing.assert_allclose(new[path + ("mean",)], norm.running_mean.numpy(), rtol=0, atol=1e-5)
        assert not np.allclose(new[path + ("mean",)], old_mean)
        # Flax averages the biased batch variance, torch the unbiased one.
        flax_batch_var = (new[path + ("var",)] - 0.9 * old_var) / 0.1
        torch_batch_var = (norm.running_var.numpy() - 0.9 * old_var) / 0.1
        np.testing.assert_allclose(flax_batch_var * n / (n - 1), torch_batch_var, rtol=1e-4, atol=1e-6)


def test_output_shapes_any_input_size_and_parameter_counts():
    torch = pytest.importorskip("torch")
    from tests.reference.torch_srgan import TorchDiscriminator, TorchSRResNet

    def shape(module, input_shape):
        x = jnp.zeros(input_shape)
        return jax.eval_shape(lambda: module.init_with_output(jax.random.PRNGKey(0), x, train=False)[0])

    for scale in (2, 4, 8):
        out = shape(srgan.SRResNet(scale=scale, **TINY), (1, 5, 7, 3))
        assert out.shape == (1, 5 * scale, 7 * scale, 3) and out.dtype == jnp.float32
    for size in ((16, 16), (24, 40), (33, 17)):
        out = shape(srgan.Discriminator(channels=4), (2, *size, 3))
        assert out.shape == (2,) and out.dtype == jnp.float32

    def count(module, input_shape):
        shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros(input_shape), train=False))
        return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes["params"]))

    def torch_count(module):
        return sum(p.numel() for p in module.parameters())

    with torch.device("meta"):  # Shapes only: no memory, no initialisation.
        torch_g, torch_g8, torch_d = TorchSRResNet(), TorchSRResNet(scale=8), TorchDiscriminator()
    assert count(srgan.SRResNet(), (1, 8, 8, 3)) == torch_count(torch_g) == 1_549_462
    assert count(srgan.SRResNet(scale=8), (1, 8, 8, 3)) == torch_count(torch_g8)
    assert count(srgan.Discriminator(), (1, 16, 16, 3)) == torch_count(torch_d)


@pytest.mark.parametrize("scale", [1, 3, 6, 0, -4, 4.0])
def test_scale_must_be_a_power_of_two(scale):
    with pytest.raises(ConfigError, match="power of two >= 2"):
        jax.eval_shape(
            lambda: srgan.SRResNet(scale=scale, **TINY).init(jax.random.PRNGKey(0), jnp.zeros(LOW_RES), False)
        )


def test_num_upsampling_stages():
    assert [srgan.num_upsampling_stages(s) for s in (2, 4, 8, 16)] == [1, 2, 3, 4]


def test_bfloat16_forward_keeps_float32_params_and_outputs():
    for module, shape in ((MODULES["srresnet_x4"], LOW_RES), (MODULES["discriminator"], D_IMAGES)):
        x = jnp.asarray(np.random.default_rng(3).uniform(-1, 1, size=shape), jnp.float32)
        variables = random_variables(module, x, seed=4)
        bf16 = module.clone(dtype=jnp.bfloat16)
        shapes = jax.eval_shape(lambda: bf16.init(jax.random.PRNGKey(0), x, train=False))
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(shapes))
        expected = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, x))
        updates = jax.eval_shape(lambda: bf16.apply(variables, x, train=True, mutable=["batch_stats"]))[1]
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(updates))
        got = np.asarray(jax.jit(lambda v, x: bf16.apply(v, x, train=False))(variables, x))
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0.02, atol=0.03)  # Measured: ~0.007 (G), ~0.5% (D).
