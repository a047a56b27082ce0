"""StyleGAN2 networks: upfirdn2d and modulated convolution against float64 numpy/scipy, the mapping network,
generator and discriminator against an independent PyTorch implementation with the same weights, equalised lr,
minibatch stddev, bf16 against float32, shapes and errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
import torch

from animejax.models import stylegan2 as sg2
from animejax.models.upfirdn import downsample2d, setup_filter, upfirdn2d, upsample2d
from tests.reference import torch_stylegan2 as ref

# Small but complete: 32 px has blocks 4..32 (4 up-sampling layers, 3 discriminator blocks); channels 16-32.
SMALL = dict(channel_base=512, channel_max=32)
G32 = sg2.Generator(z_dim=24, w_dim=20, img_resolution=32, mapping_layers=3, **SMALL)
D32 = sg2.Discriminator(img_resolution=32, **SMALL)
BATCH = 4


def random_variables(module, *inputs, seed: int = 0):
    """Variables with the shapes `module.init` gives, drawn in numpy (a jitted Flax init costs ~15 s here).

    Stored values as the equalised-lr init would draw them (kernels N(0, 1) / lr_multiplier), but with non-zero
    biases and noise strengths so that every parameter changes the output: biases N(0, 0.2^2) / lr_multiplier
    (affine biases 1 + that), noise strengths N(0, 0.5^2), constants and noise buffers N(0, 1).
    """
    shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *inputs))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        names = [str(getattr(key, "key", key)) for key in path]
        lr = G32.mapping_lr_multiplier if "mapping" in names else 1.0
        if names[-1] == "kernel":
            value = rng.normal(size=leaf.shape) / lr
        elif names[-1] == "bias":
            value = (1.0 if names[-2] == "affine" else 0.0) + 0.2 * rng.normal(size=leaf.shape) / lr
        elif names[-1] == "noise_strength":
            value = 0.5 * rng.normal(size=leaf.shape)
        else:
            value = rng.normal(size=leaf.shape)
        return jnp.asarray(value, jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


# ---------------------------------------------------------------------------------------------- upfirdn2d


def _numpy_upfirdn2d(x, f2d, up, down, padding, gain):
    """The reference's definition in float64: zero insertion, pad/crop (x0, x1, y0, y1), convolution, decimation."""
    x0, x1, y0, y1 = padding
    b, h, w, c = x.shape
    u = np.zeros((b, h * up, w * up, c))
    u[:, ::up, ::up] = x
    u = np.pad(u, ((0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0)), (0, 0)))
    u = u[:, max(-y0, 0) : u.shape[1] - max(-y1, 0), max(-x0, 0) : u.shape[2] - max(-x1, 0)]
    out = np.stack(
        [np.stack([scipy.signal.convolve2d(u[i, :, :, j], f2d, mode="valid") for j in range(c)], -1) for i in range(b)]
    )
    return out[:, ::down, ::down] * gain


def test_setup_filter_is_the_normalised_outer_product():
    f = setup_filter((1, 3, 3, 1))
    expected = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0
    assert f.shape == (4, 4) and f.dtype == np.float32
    np.testing.assert_array_equal(f, expected)  # Multiples of 1/64: exact.
    np.testing.assert_allclose(setup_filter((1, 2, 1), gain=4.0), 4 * np.outer([1, 2, 1], [1, 2, 1]) / 16.0)
    np.testing.assert_allclose(setup_filter((1, 2), normalize=False), [[1, 2], [2, 4]])


@pytest.mark.parametrize(
    "up, down, padding, gain",
    [
        (1, 1, (0, 0, 0, 0), 1.0),
        (2, 1, (2, 1, 2, 1), 4.0),  # upsample2d's padding and gain.
        (1, 2, (1, 1, 1, 1), 1.0),  # downsample2d's.
        (2, 1, (-1, 3, 0, 2), 2.5),  # Cropping on one side, unequal x and y padding.
        (1, 2, (2, -1, 3, 0), 0.5),
        (3, 1, (1, 2, 3, 0), 1.0),
        (1, 3, (0, 1, 2, 2), 1.0),
        (2, 3, (1, 1, 1, 1), -1.5),
    ],
)
def test_upfirdn2d_matches_float64_scipy(up, down, padding, gain):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 9, 3))
    filters = [setup_filter((1, 3, 3, 1)), np.array([1.0, 2.0, 5.0]), np.outer([1.0, 2.0, 3.0], [1.0, -1.0, 4.0, 2.0])]
    with jax.enable_x64(True):
        for f in filters:
            f2d = np.asarray(f, np.float64) if np.ndim(f) == 2 else np.outer(f, f)
            expected = _numpy_upfirdn2d(x, f2d, up, down, padding, gain)
            run = jax.jit(lambda x, f=f: upfirdn2d(x, f, up=up, down=down, padding=padding, gain=gain))
            got = np.asarray(run(jnp.asarray(x)))
            assert got.shape == expected.shape and got.dtype == np.float64
            np.testing.assert_allclose(got, expected, atol=1e-12 * np.abs(expected).max())


def test_upsample2d_and_downsample2d_use_the_reference_padding_and_gain():
    f = setup_filter()
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 2))
    with jax.enable_x64(True):
        up, down = (np.asarray(a) for a in jax.jit(lambda x: (upsample2d(x, f), downsample2d(x, f)))(jnp.asarray(x)))
    f64 = np.asarray(f, np.float64)
    np.testing.assert_allclose(up, _numpy_upfirdn2d(x, f64, 2, 1, (2, 1, 2, 1), 4.0), atol=1e-12)
    np.testing.assert_allclose(down, _numpy_upfirdn2d(x, f64, 1, 2, (1, 1, 1, 1), 1.0), atol=1e-12)
    assert up.shape == (2, 12, 12, 2) and down.shape == (2, 3, 3, 2)
    # The gain up**2 keeps a constant image constant away from the zero-padded border.
    ones = np.asarray(jax.jit(lambda x: upsample2d(x, f))(jnp.ones((1, 8, 8, 1))))[0, 2:-2, 2:-2, 0]
    np.testing.assert_allclose(ones, 1.0, rtol=1e-6)
    # bfloat16 stays bfloat16.
    assert jax.eval_shape(lambda: upsample2d(jnp.ones((1, 4, 4, 1), jnp.bfloat16), f)).dtype == jnp.bfloat16


def test_upfirdn2d_rejects_non_separable_filters():
    with pytest.raises(ValueError, match="separable"):
        upfirdn2d(jnp.ones((1, 8, 8, 1)), np.array([[1.0, 0.0], [0.0, 1.0]]))


# ----------------------------------------------------------------------------------- modulated convolution


def _numpy_modulated_conv2d(x, weight, styles, demodulate, up):
    """float64, per sample: kernel weight * styles (* d), then correlation with "same" padding (up = 1) or, for
    up = 2, the reference's definition: FIR up-sampling (zero insertion, padding (3, 2), gain 4) then a valid
    true convolution with the 3x3 kernel."""
    b, _, _, i = x.shape
    kh, kw, _, o = weight.shape
    out = []
    for n in range(b):
        w = weight * styles[n][None, None, :, None]
        if demodulate:
            w = w / np.sqrt((w**2).sum(axis=(0, 1, 2)) + 1e-8)
        if up == 1:
            xn = np.pad(x[n], ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
        else:
            f = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0
            xn = _numpy_upfirdn2d(x[n : n + 1], f, 2, 1, (3, 2, 3, 2), 4.0)[0]
            w = w[::-1, ::-1]
        patches = np.lib.stride_tricks.sliding_window_view(xn, (kh, kw), axis=(0, 1))  # [H', W', I, kh, kw]
        out.append(np.einsum("yxiab,abio->yxo", patches, w))
    return np.stack(out)


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("fused", [False, True])
def test_modulated_conv2d_matches_float64_numpy(demodulate, up, fused):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 6, 6, 4))
    weight = rng.normal(size=(3, 3, 4, 5))
    styles = 1.0 + 0.5 * rng.normal(size=(3, 4))
    run = jax.jit(lambda *a: sg2.modulated_conv2d(*a, demodulate=demodulate, up=up, fused=fused))
    got = run(*(jnp.asarray(a, jnp.float32) for a in (x, weight, styles)))
    expected = _numpy_modulated_conv2d(x, weight, styles, demodulate, up)
    assert got.shape == expected.shape == (3, 6 * up, 6 * up, 5)
    # float32 against float64 over 36 products: ~2e-7 of the largest output seen.
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5 * np.abs(expected).max())


def test_demodulation_gives_unit_output_std():
    """With unit-variance iid inputs, each demodulated output pixel away from the border has variance 1."""
    rng = np.random.default_rng(3)
    batch, size, cin, cout = 8, 50, 16, 6
    x = rng.normal(size=(batch, size, size, cin))
    weight = rng.normal(size=(3, 3, cin, cout)) * rng.uniform(0.2, 3.0, size=(1, 1, cin, cout))
    styles = rng.uniform(0.1, 5.0, size=(batch, cin))
    run = jax.jit(lambda *a: (sg2.modulated_conv2d(*a), sg2.modulated_conv2d(*a, demodulate=False)))
    y, plain = (np.asarray(a) for a in run(*(jnp.asarray(a, jnp.float32) for a in (x, weight, styles))))
    # Pixels 3 apart have disjoint 3x3 windows, so for one channel they are independent N(0, 1) samples: n of them
    # estimate the std with standard error 1 / sqrt(2 n). Allow 5 standard errors.
    samples = y[:, 1:-1:3, 1:-1:3, :].reshape(-1, cout)
    n = samples.shape[0]
    tolerance = 5.0 / math.sqrt(2 * n)
    np.testing.assert_allclose(samples.std(axis=0), 1.0, atol=tolerance)
    # Without demodulation the same styles and weights give a scale far from 1: the check can tell.
    assert np.all(np.abs(plain[:, 1:-1:3, 1:-1:3].reshape(-1, cout).std(axis=0) - 1.0) > 10 * tolerance)


# ------------------------------------------------------------------------------------------- equalised lr


def test_equalized_lr_effective_weight_scale():
    rng = np.random.default_rng(4)
    dense = sg2.EqualizedDense(64, lr_multiplier=0.01, bias_init=0.5)
    conv = sg2.EqualizedConv2d(8, 3, lr_multiplier=0.5)
    x = rng.normal(size=(256, 128)).astype(np.float32)
    images = rng.normal(size=(2, 6, 6, 5)).astype(np.float32)

    @jax.jit
    def init_and_apply(key):
        params = dense.init(key, x)["params"]
        cparams = conv.init(jax.random.fold_in(key, 1), images)["params"]
        return params, cparams, dense.apply({"params": params}, x), conv.apply({"params": cparams}, images)

    with jax.threefry_partitionable(False):  # The classic threefry compiles the initialisers faster on CPU.
        params, cparams, got, cgot = init_and_apply(jax.random.PRNGKey(0))
    kernel = np.asarray(params["kernel"])
    # Stored N(0, 1) / lr_multiplier: std 100 over 8192 draws (standard error ~0.8%).
    assert abs(kernel.std() / 100.0 - 1.0) < 0.05
    np.testing.assert_array_equal(np.asarray(params["bias"]), 0.5)
    expected = x @ (kernel * 0.01 / math.sqrt(128)) + 0.5 * 0.01
    got = np.asarray(got)
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())
    # Unit-variance inputs give unit-variance outputs (64 x 256 correlated values: a loose bound).
    assert abs(got.std() - 1.0) < 0.1

    ckernel = np.asarray(cparams["kernel"], np.float64)
    assert abs(ckernel.std() / 2.0 - 1.0) < 0.2  # N(0, 1) / 0.5 over 360 draws (standard error ~4%).
    np.testing.assert_array_equal(np.asarray(cparams["bias"]), 0.0)
    got = np.asarray(cgot)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))  # [B, 6, 6, I, 3, 3]
    expected = np.einsum("nyxicd,cdio->nyxo", patches, ckernel * 0.5 / math.sqrt(5 * 9))
    np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())


# ------------------------------------------------------------------------------------------ minibatch stddev


@pytest.mark.parametrize("group_size, num_channels", [(4, 1), (2, 2), (None, 1), (16, 3)])
def test_minibatch_stddev_matches_numpy(group_size, num_channels):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 3, 5, 6)) * rng.uniform(0.5, 2.0, size=(8, 1, 1, 1))
    run = jax.jit(lambda x: sg2.minibatch_stddev(x, group_size, num_channels))
    got = np.asarray(run(jnp.asarray(x, jnp.float32)))
    groups = 8 if group_size is None else min(group_size, 8)
    n = 8 // groups
    c = 6 // num_channels
    expected = np.zeros((8, 3, 5, num_channels))
    for i in range(n):
        members = [i + g * n for g in range(groups)]  # Sample b belongs to group b mod n.
        for k in range(num_channels):
            values = x[members][..., k * c : (k + 1) * c]
            std = np.sqrt(values.var(axis=0) + 1e-8).mean()
            expected[members, :, :, k] = std
    assert got.shape == (8, 3, 5, 6 + num_channels)
    np.testing.assert_array_equal(got[..., :6], x.astype(np.float32))
    np.testing.assert_allclose(got[..., 6:], expected, rtol=1e-5)


# --------------------------------------------------------------------------------- parity with PyTorch


def _to_torch(a):
    return torch.from_numpy(np.asarray(a, np.float64))


@pytest.fixture(scope="module")
def generator():
    """G32 with random variables, latents and the jitted applies shared by the tests (each compile costs seconds)."""
    z = jax.random.normal(jax.random.PRNGKey(1), (BATCH, G32.z_dim))
    variables = random_variables(G32, z, seed=6)
    return dict(
        variables=variables,
        z=z,
        map=jax.jit(lambda v, z: G32.apply(v, z, method=sg2.Generator.map)),
        call_none=jax.jit(lambda v, z: G32.apply(v, z, "none")),
        synthesize_const=jax.jit(lambda v, ws: G32.apply(v, ws, "const", method=sg2.Generator.synthesize)),
    )


def _torch_generator(variables):
    reference = ref.torch_generator_like(G32)
    ref.load_flax_params(reference, variables["params"], variables["noise_const"])
    return reference


def test_mapping_network_matches_pytorch(generator):
    variables, z = generator["variables"], generator["z"]
    with torch.no_grad():
        expected = _torch_generator(variables).mapping(_to_torch(z)).numpy()
    got = np.asarray(generator["map"](variables, z))
    assert got.shape == (BATCH, G32.w_dim) and got.dtype == np.float32
    # float32 against float64: ~1e-6 of the scale seen.
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).std())


def test_generator_synthesis_with_const_noise_matches_pytorch(generator):
    variables = generator["variables"]
    # A different w for every layer (as with style mixing) checks which w each layer reads.
    ws = jax.random.normal(jax.random.PRNGKey(2), (BATCH, G32.num_ws, G32.w_dim))
    got = np.asarray(generator["synthesize_const"](variables, ws))
    with torch.no_grad():
        expected = _torch_generator(variables).synthesis(_to_torch(ws), "const").permute(0, 2, 3, 1).numpy()
    assert got.shape == (BATCH, 32, 32, 3) and got.dtype == np.float32
    # float32 against float64 through 9 modulated convolutions: ~2e-6 of the output std seen.
    np.testing.assert_allclose(got, expected, atol=1e-4 * expected.std())


def test_generator_call_without_noise_matches_pytorch(generator):
    variables, z = generator["variables"], generator["z"]
    got = np.asarray(generator["call_none"](variables, z))
    with torch.no_grad():
        expected = _torch_generator(variables)(_to_torch(z), "none").permute(0, 2, 3, 1).numpy()
    assert got.shape == (BATCH, 32, 32, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4 * expected.std())


def test_noise_modes(generator):
    variables, z = generator["variables"], generator["z"]
    ws = jnp.broadcast_to(generator["map"](variables, z)[:, None], (BATCH, G32.num_ws, G32.w_dim))
    none = np.asarray(generator["call_none"](variables, z))
    const = np.asarray(generator["synthesize_const"](variables, ws))
    with jax.threefry_partitionable(False):  # The classic threefry compiles the 7 noise draws ~2x faster on CPU.
        random = jax.jit(
            lambda v, ws, key: G32.apply(v, ws, "random", method=sg2.Generator.synthesize, rngs={"noise": key})
        )
        a, b, again = (np.asarray(random(variables, ws, jax.random.PRNGKey(k))) for k in (4, 5, 4))
        quiet = jax.tree_util.tree_map_with_path(
            lambda path, p: p * 0 if str(getattr(path[-1], "key", "")) == "noise_strength" else p, variables
        )
        silent = np.asarray(random(quiet, ws, jax.random.PRNGKey(4)))
    scale = none.std()
    for noisy in (const, a, b):
        assert np.abs(noisy - none).mean() > 0.01 * scale
    assert np.abs(a - b).mean() > 0.01 * scale
    np.testing.assert_array_equal(a, again)
    # Zero noise strengths (their init) make every mode the same function.
    np.testing.assert_allclose(silent, none, atol=1e-5 * scale)
    # Init stores one [r, r] buffer per synthesis layer, drawn N(0, 1).
    init = jax.eval_shape(lambda: G32.init(jax.random.PRNGKey(0), z))["noise_const"]["synthesis"]
    shapes = {(block, layer): init[block][layer]["noise_const"].shape for block in init for layer in init[block]}
    expected = {("b4", "conv1"): (4, 4)}
    expected.update({(f"b{r}", layer): (r, r) for r in (8, 16, 32) for layer in ("conv0", "conv1")})
    assert shapes == expected


@pytest.mark.parametrize("resolution", [32, 64])
def test_discriminator_matches_pytorch(resolution):
    disc = D32 if resolution == 32 else sg2.Discriminator(img_resolution=64, channel_base=1024, channel_max=32)
    images = jax.random.normal(jax.random.PRNGKey(7), (8, resolution, resolution, 3))
    variables = random_variables(disc, images, seed=8)
    got = np.asarray(jax.jit(disc.apply)(variables, images))
    reference = ref.torch_discriminator_like(disc)
    ref.load_flax_params(reference, variables["params"])
    with torch.no_grad():
        expected = reference(_to_torch(images).permute(0, 3, 1, 2)).numpy()
    assert got.shape == (8,) and got.dtype == np.float32
    # float32 against float64: ~2e-6 of the logits' root mean square seen (~5e-5 of their spread over the batch).
    np.testing.assert_allclose(got, expected, atol=1e-4 * np.sqrt(np.mean(expected**2)))


def test_truncate():
    w = jnp.asarray(np.random.default_rng(9).normal(size=(3, 5)), jnp.float32)
    w_avg = jnp.arange(5, dtype=jnp.float32)
    np.testing.assert_allclose(np.asarray(sg2.truncate(w, w_avg, 0.7)), w_avg + 0.7 * (w - w_avg), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(sg2.truncate(w, w_avg, 1.0)), np.asarray(w), atol=1e-6)
    np.testing.assert_allclose(np.asarray(sg2.truncate(w, w_avg, 0.0)), np.broadcast_to(w_avg, (3, 5)))


# ------------------------------------------------------------------------------------------ mixed precision


def test_bfloat16_computation_keeps_float32_params_styles_and_outputs(generator):
    variables, z = generator["variables"], generator["z"]
    ws = jax.random.normal(jax.random.PRNGKey(10), (BATCH, G32.num_ws, G32.w_dim))
    g16 = sg2.Generator(**{**_fields(G32), "dtype": jnp.bfloat16})
    shapes = jax.eval_shape(lambda: g16.init(jax.random.PRNGKey(0), z))
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(shapes)} == {jnp.dtype(jnp.float32)}

    def synthesize16(v, ws):
        return g16.apply(v, ws, "const", method=sg2.Generator.synthesize)

    got = jax.jit(synthesize16)(variables, ws)
    assert got.dtype == jnp.float32
    # Every convolution runs on bf16 operands; every dense layer (affine -> styles) on float32 ones.
    jaxpr = jax.make_jaxpr(synthesize16)(variables, ws)
    eqns = list(_all_eqns(jaxpr.jaxpr))
    conv = {tuple(str(v.aval.dtype) for v in e.invars) for e in eqns if e.primitive.name == "conv_general_dilated"}
    dots = {tuple(str(v.aval.dtype) for v in e.invars) for e in eqns if e.primitive.name == "dot_general"}
    assert conv == {("bfloat16", "bfloat16")} and dots == {("float32", "float32")}, (conv, dots)
    # bf16 rounds to 2^-9 relative; through 9 modulated convolutions the error seen is ~0.5% of the image std on
    # average and ~4% at the worst pixel: bounds at 3% and 15%.
    reference = np.asarray(generator["synthesize_const"](variables, ws))
    error = np.abs(np.asarray(got) - reference) / reference.std()
    assert error.mean() < 0.03 and error.max() < 0.15, (error.mean(), error.max())

    images = jax.random.normal(jax.random.PRNGKey(11), (8, 32, 32, 3))
    d_vars = random_variables(D32, images, seed=12)
    d16 = sg2.Discriminator(img_resolution=32, dtype=jnp.bfloat16, **SMALL)
    logits32 = np.asarray(jax.jit(D32.apply)(d_vars, images))
    logits16 = jax.jit(d16.apply)(d_vars, images)
    assert logits16.dtype == jnp.float32
    # ~1.2% of the logits' root mean square seen at the worst of the 8; bound at 4%.
    rms = np.sqrt(np.mean(logits32**2))
    assert np.abs(np.asarray(logits16) - logits32).max() < 0.04 * rms, (logits16, logits32)


def _fields(module):
    return {name: getattr(module, name) for name in module.__dataclass_fields__ if name not in ("parent", "name")}


def _all_eqns(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else (param,):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    yield from _all_eqns(getattr(inner, "jaxpr", inner))


# ------------------------------------------------------------------------------------------ shapes and errors


def test_output_shapes_and_num_ws():
    assert [sg2.num_ws(r) for r in (32, 64, 128, 256)] == [8, 10, 12, 14]
    for resolution, channel_base in ((32, 512), (64, 1024)):
        g = sg2.Generator(z_dim=16, w_dim=8, img_resolution=resolution, channel_base=channel_base, channel_max=16)
        d = sg2.Discriminator(img_resolution=resolution, channel_base=channel_base, channel_max=16)
        z = jnp.zeros((2, 16))
        variables = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), z))
        assert g.num_ws == sg2.num_ws(resolution)
        assert jax.eval_shape(lambda v: g.apply(v, z, "const"), variables).shape == (2, resolution, resolution, 3)
        w = jax.eval_shape(lambda v: g.apply(v, z, method=sg2.Generator.map), variables)
        assert w.shape == (2, 8)
        ws = jnp.zeros((2, g.num_ws, 8))
        images = jax.eval_shape(lambda v: g.apply(v, ws, "none", method=sg2.Generator.synthesize), variables)
        assert images.shape == (2, resolution, resolution, 3) and images.dtype == jnp.float32
        x = jnp.zeros((4, resolution, resolution, 3))
        logits = jax.eval_shape(lambda: d.init_with_output(jax.random.PRNGKey(0), x)[0])
        assert logits.shape == (4,) and logits.dtype == jnp.float32
        # Channels per resolution: min(channel_base // r, channel_max).
        d_shapes = jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), x))["params"]
        top = d_shapes[f"b{resolution}"]["fromrgb"]["kernel"].shape
        assert top == (1, 1, 3, min(channel_base // resolution, 16))
        synthesis = variables["params"]["synthesis"]
        assert synthesis["b4"]["const"].shape == (4, 4, 16)
        assert synthesis[f"b{resolution}"]["conv1"]["kernel"].shape[-1] == min(channel_base // resolution, 16)


def test_clear_errors():
    for resolution in (16, 48, 512):
        with pytest.raises(ValueError, match="support image resolutions 32, 64, 128, 256, got"):
            sg2.num_ws(resolution)
        g = sg2.Generator(z_dim=8, w_dim=8, img_resolution=resolution, **SMALL)
        with pytest.raises(ValueError, match=f"got {resolution}"):
            jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((2, 8))))
        d = sg2.Discriminator(img_resolution=resolution, **SMALL)
        with pytest.raises(ValueError, match=f"got {resolution}"):
            jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), jnp.zeros((2, resolution, resolution, 3))))
    # A batch of 6 does not split into groups of min(4, 6) = 4.
    with pytest.raises(ValueError, match="batch of 6 is not divisible by the group size 4"):
        jax.eval_shape(lambda: D32.init(jax.random.PRNGKey(0), jnp.zeros((6, 32, 32, 3))))
    # Batches below the group size use the whole batch as one group.
    jax.eval_shape(lambda: D32.init(jax.random.PRNGKey(0), jnp.zeros((3, 32, 32, 3))))
    z = jnp.zeros((2, G32.z_dim))
    variables = jax.eval_shape(lambda: G32.init(jax.random.PRNGKey(0), z))
    with pytest.raises(ValueError, match=r"ws of shape \[B, 8, 20\]"):
        jax.eval_shape(
            lambda v: G32.apply(v, jnp.zeros((2, 7, 20)), "none", method=sg2.Generator.synthesize), variables
        )
    with pytest.raises(ValueError, match="unknown noise_mode 'fixed'"):
        jax.eval_shape(lambda v: G32.apply(v, z, "fixed"), variables)
    with pytest.raises(ValueError, match=r"z of shape \[B, 24\]"):
        jax.eval_shape(lambda v: G32.apply(v, jnp.zeros((2, 5)), "none"), variables)
