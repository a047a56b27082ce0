"""The DDPM UNet: attention against float64 numpy, the whole network against PyTorch, shapes, dropout, bf16."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animejax.models.unet import AttentionBlock, UNet, timestep_embedding

# 16 px, three levels (16, 8, 4), attention at 8x8, two heads: every kind of block at a few ms per call.
TINY = dict(
    base_channels=16,
    channel_multipliers=(1, 2, 2),
    num_res_blocks=2,
    attention_resolutions=(8,),
    num_groups=8,
    num_heads=2,
    dropout=0.0,
)


def random_params(module, *inputs, seed: int = 0):
    """Params with the shapes `module.init` gives, drawn in numpy (jitted Flax init costs ~20 s to compile here).

    Kernels ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2), norm scales ~ 1 + N(0, 0.1^2): every layer does something,
    unlike Ho et al.'s zero-initialised output convolutions.
    """
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *inputs))["params"]
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        if name == "kernel":
            fan_in = math.prod(leaf.shape[:-1])
            return jnp.asarray(rng.normal(size=leaf.shape) / math.sqrt(fan_in), jnp.float32)
        if name == "scale":
            return jnp.asarray(1.0 + 0.1 * rng.normal(size=leaf.shape), jnp.float32)
        return jnp.asarray(0.1 * rng.normal(size=leaf.shape), jnp.float32)

    return {"params": jax.tree_util.tree_map_with_path(draw, shapes)}


def test_timestep_embedding_matches_ho_et_al_formula():
    t = np.array([0, 1, 17, 999])
    for dim in (8, 9):
        half = dim // 2
        freqs = np.exp(-np.log(10000.0) * np.arange(half) / (half - 1))
        expected = np.concatenate([np.sin(t[:, None] * freqs), np.cos(t[:, None] * freqs)], axis=1)
        if dim % 2:
            expected = np.pad(expected, ((0, 0), (0, 1)))
        got = np.asarray(timestep_embedding(jnp.asarray(t, jnp.int32), dim))
        assert got.shape == (4, dim) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=2e-4)  # float32 arguments up to 999 rad.
    with pytest.raises(ValueError, match=">= 4"):
        timestep_embedding(jnp.zeros((2,)), 3)


def _numpy_group_norm(x, groups, scale, bias, eps=1e-6):
    b, h, w, c = x.shape
    g = x.reshape(b, h * w, groups, c // groups)
    mean = g.mean(axis=(1, 3), keepdims=True)
    var = g.var(axis=(1, 3), keepdims=True)
    return ((g - mean) / np.sqrt(var + eps)).reshape(b, h, w, c) * scale + bias


@pytest.mark.parametrize("num_heads", [1, 2])
def test_attention_block_matches_float64_numpy(num_heads):
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 16))
    block = AttentionBlock(num_heads=num_heads, num_groups=4, zero_init=False)
    variables = random_params(block, jnp.zeros((2, 4, 4, 16)), seed=2)
    got = np.asarray(block.apply(variables, jnp.asarray(x, jnp.float32)))

    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables["params"])
    h = _numpy_group_norm(x, 4, p["norm"]["scale"], p["norm"]["bias"])

    def project(name, y):  # A 1x1 convolution: kernel [1, 1, C, C].
        return y @ p[name]["kernel"][0, 0] + p[name]["bias"]

    d = 16 // num_heads
    q, k, v = (project(n, h).reshape(2, 16, num_heads, d) for n in ("q", "k", "v"))
    out = np.zeros((2, 16, num_heads, d))
    for b in range(2):
        for head in range(num_heads):
            logits = q[b, :, head] @ k[b, :, head].T / np.sqrt(d)
            weights = np.exp(logits - logits.max(axis=1, keepdims=True))
            weights /= weights.sum(axis=1, keepdims=True)
            out[b, :, head] = weights @ v[b, :, head]
    expected = x + project("proj_out", out.reshape(2, 4, 4, 16))
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max())


def test_unet_output_shapes_and_parameter_count():
    def shape(module, height, width, channels=3):
        x, t = jnp.zeros((2, height, width, channels)), jnp.zeros((2,), jnp.int32)
        return jax.eval_shape(lambda: module.init_with_output(jax.random.PRNGKey(0), x, t)[0]).shape

    assert shape(UNet(**TINY), 16, 16) == (2, 16, 16, 3)
    assert shape(UNet(**{**TINY, "channel_multipliers": (1, 2, 2, 2), "out_channels": 6}), 32, 16, 1) == (2, 32, 16, 6)
    # Ho et al. 2020 (Appendix B): their CIFAR-10 model, which these defaults reproduce, has 35.7M parameters.
    x, t = jnp.zeros((1, 32, 32, 3)), jnp.zeros((1,), jnp.int32)
    shapes = jax.eval_shape(lambda: UNet().init(jax.random.PRNGKey(0), x, t))
    assert round(sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(shapes)) / 1e6, 1) == 35.7


@pytest.fixture(scope="module")
def tiny():
    """The TINY UNet, random params, an input batch and one jitted eval-mode apply shared by the tests."""
    model = UNet(**TINY)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
    t = jnp.array([3, 871], jnp.int32)
    variables = random_params(model, x, t, seed=3)
    apply = jax.jit(lambda v, images, steps: model.apply(v, images, steps))
    return model, variables, x, t, apply


def test_unet_depends_on_the_timestep_and_is_deterministic_in_eval(tiny):
    model, variables, x, _, apply = tiny
    out_a = np.asarray(apply(variables, x, jnp.array([5, 5], jnp.int32)))
    np.testing.assert_array_equal(out_a, np.asarray(apply(variables, x, jnp.array([5, 5], jnp.int32))))
    # The same image with a different timestep differs; the other example, at the same timestep, does not.
    out_b = np.asarray(apply(variables, x, jnp.array([600, 5], jnp.int32)))
    scale = out_a.std()
    assert np.abs(out_b[0] - out_a[0]).mean() > 0.05 * scale
    np.testing.assert_allclose(out_b[1], out_a[1], atol=1e-5 * scale)
    # Float timesteps embed identically to the integers.
    np.testing.assert_allclose(np.asarray(apply(variables, x, jnp.array([600.0, 5.0]))), out_b, atol=1e-5 * scale)


def test_dropout_only_in_train_mode():
    config = dict(base_channels=8, channel_multipliers=(1, 2), num_res_blocks=1, attention_resolutions=(4,))
    model = UNet(**config, num_groups=4, dropout=0.3)
    x, t = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3)), jnp.array([10, 500], jnp.int32)
    variables = random_params(model, x, t)

    @jax.jit
    def train_apply(rng):
        return model.apply(variables, x, t, train=True, rngs={"dropout": rng})

    eval_out, explicit_eval = jax.jit(
        lambda: (model.apply(variables, x, t), model.apply(variables, x, t, train=False))
    )()
    eval_out = np.asarray(eval_out)
    np.testing.assert_array_equal(eval_out, np.asarray(explicit_eval))  # train defaults to False.
    train_a, train_b = np.asarray(train_apply(jax.random.PRNGKey(1))), np.asarray(train_apply(jax.random.PRNGKey(2)))
    scale = eval_out.std()
    assert np.abs(train_a - train_b).mean() > 0.01 * scale
    assert np.abs(train_a - eval_out).mean() > 0.01 * scale
    np.testing.assert_array_equal(train_a, np.asarray(train_apply(jax.random.PRNGKey(1))))
    # With rate 0 training mode is the same function: dropout is the only train/eval difference.
    no_dropout = UNet(**config, num_groups=4, dropout=0.0)
    train_out = jax.jit(
        lambda: no_dropout.apply(variables, x, t, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    )()
    np.testing.assert_allclose(np.asarray(train_out), eval_out, atol=1e-5 * scale)


def test_unet_matches_pytorch_reference(tiny):
    torch = pytest.importorskip("torch")
    from tests.reference.torch_unet import load_flax_params, torch_unet_like

    model, variables, x, t, apply = tiny
    got = np.asarray(apply(variables, x, t))
    reference = torch_unet_like(model, x.shape[1])
    load_flax_params(reference, variables["params"])
    reference.eval()
    with torch.no_grad():
        x_torch = torch.from_numpy(np.array(x, np.float64)).permute(0, 3, 1, 2)
        expected = reference(x_torch, torch.from_numpy(np.array(t))).permute(0, 2, 3, 1).numpy()
    # float32 against float64: ~3e-6 of the output scale seen; 1e-4 leaves room for other CPUs' kernels.
    np.testing.assert_allclose(got, expected, atol=1e-4 * expected.std())


def test_bfloat16_computation_keeps_float32_params_and_output(tiny):
    model, variables, x, t, apply = tiny
    bf16_model = UNet(**{**TINY, "dtype": jnp.bfloat16})
    shapes = jax.eval_shape(lambda: bf16_model.init(jax.random.PRNGKey(0), x, t))
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(shapes)} == {jnp.dtype(jnp.float32)}
    reference = np.asarray(apply(variables, x, t))
    got = jax.jit(lambda v: bf16_model.apply(v, x, t))(variables)
    assert got.dtype == jnp.float32
    # Every convolution runs on bf16 operands.
    jaxpr = jax.make_jaxpr(lambda v: bf16_model.apply(v, x, t))(variables)
    conv_dtypes = {
        tuple(str(var.aval.dtype) for var in eqn.invars)
        for eqn in jaxpr.jaxpr.eqns
        if eqn.primitive.name == "conv_general_dilated"
    }
    assert conv_dtypes == {("bfloat16", "bfloat16")}
    # bf16 keeps 8 significant bits (relative rounding 2^-9); through ~40 convolutions the error seen is ~1% of the
    # output scale on average and ~6% at the worst element: bounds at 2.5-3 times that.
    error = np.abs(np.asarray(got) - reference) / reference.std()
    assert error.mean() < 0.03 and error.max() < 0.15, (error.mean(), error.max())


def test_zero_init_zeroes_the_last_layer_of_every_residual_branch():
    model = UNet(
        base_channels=8, channel_multipliers=(1, 2), num_res_blocks=1, attention_resolutions=(4,), num_groups=4
    )
    x, t = jnp.zeros((1, 8, 8, 3)), jnp.array([7], jnp.int32)
    with jax.threefry_partitionable(False):  # The classic threefry compiles the initialisers ~4x faster on CPU.
        params = jax.jit(lambda: model.init(jax.random.PRNGKey(1), x, t))()["params"]
    # Ho et al.'s init_scale=0 layers: the output conv, each ResBlock's conv2, each attention's proj_out. With
    # those zero (and zero biases) every block is the identity on its shortcut and the network outputs 0.
    zero = {"conv_out", "conv2", "proj_out"}
    for path, kernel in jax.tree_util.tree_flatten_with_path(params)[0]:
        names = [str(getattr(key, "key", key)) for key in path]
        if names[-1] == "kernel":
            assert (np.abs(np.asarray(kernel)).max() == 0) == bool(zero & set(names)), names
    assert np.abs(np.asarray(params["conv_out"]["bias"])).max() == 0


def test_clear_errors_for_bad_sizes_and_group_counts():
    x, t = jnp.zeros((1, 16, 16, 3)), jnp.zeros((1,), jnp.int32)

    def init(module, images=x):
        jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), images, t))

    with pytest.raises(ValueError, match="divisible by 4, got 18x18"):
        init(UNet(**TINY), jnp.zeros((1, 18, 18, 3)))
    with pytest.raises(ValueError, match="16 groups for 24 channels"):
        init(UNet(**{**TINY, "base_channels": 24, "num_groups": 16}))
    with pytest.raises(ValueError, match="num_heads=3"):
        init(UNet(**{**TINY, "num_heads": 3}))
