"""StyleGAN2 train-step throughput: animejax's method against the same networks and losses in eager PyTorch.

JAX: the jitted step of animejax/methods/stylegan2.py built as the training loop builds it (`common.JaxStep`:
`make_train_step`, state donated, replicated/data shardings on a 1-device mesh, the per-step key from a jitted
`fold_in`), compiled once ahead of time (the compile time is reported) and then called step after step.

PyTorch: the generator and discriminator of tests/reference/torch_stylegan2.py (NCHW, float32, eager, the
reference's non-fused modulated convolutions as in training), started from the JAX initial weights
(`load_flax_params`), running the same four phases per step with the same batch:
  Gmain  z (and with probability style_mixing a second z from a random layer [1, num_ws) on) -> mapping -> ws ->
         synthesis with random per-pixel noise -> D(fake); mean softplus(-logits); Adam step (D frozen).
  Greg   on steps with step % pl_interval == 0: batch // pl_batch_shrink fresh samples, y ~ N(0, I) / sqrt(H W),
         autograd.grad(sum(img * y), ws, create_graph=True), L = sqrt(mean over layers of |.|^2), pl_mean lerped
         by pl_decay (its gradient kept in the penalty, as in the JAX step and the reference), loss
         pl_weight * mean (L - pl_mean)^2 * pl_interval; Adam step.
  Dmain  fresh no-grad fakes of the updated G; mean softplus(D(fake)) + softplus(-D(real)); Adam step.
  Dreg   on steps with step % r1_interval == 0: R1 = |autograd.grad(sum D(x), x, create_graph=True)|^2 on reals,
         times r1_gamma / 2 * r1_interval; Adam step.
  then   w_avg lerped toward the Gmain batch's mean w by 1 - w_avg_beta; the EMA of G's parameters with the
         method's beta = 0.5 ** (batch / min(ema_kimg * 1000, images seen * ema_rampup)); gradient norms and the
         sign of D(real) as metrics (device tensors, no host syncs inside the step).
Both Adams carry the lazy-regularisation correction c = interval / (interval + 1): lr * c, betas ** c, eps 1e-8.
Every image D sees first passes `d_input`, the method's fading blur where the config has one
(stylegan.blur_init_sigma / blur_fade_kimg: StyleGAN3-R's, none in the StyleGAN2 configs).
`stylegan.augment` is set to "none" for both frameworks: the PyTorch side has no ADA.

The timed window holds the lazy phases in their training proportion: `--steps` is rounded up to a multiple of the
lazy period (the lcm of pl_interval and r1_interval, 16 by default) unless `--exact_steps`; either way the output
states how many Greg and Dreg phases each window held, the same step numbers for both frameworks. Before timing,
a parity check runs the copied networks in float32 on both sides: G(z) with const noise (initial and perturbed
weights), D(real), path lengths and R1 penalties, printed as max |JAX - torch| / max |torch|; the parameter
counts must be equal.

`--dtype=bfloat16` sets the JAX model.dtype (bf16 convolutions, float32 mapping, styles and D epilogue) and runs
the torch side under torch.autocast(bfloat16), which casts every convolution and matmul, the mapping included.
Timings alternate JAX and torch `--repeats` times; medians. On CUDA, torch runs on the GPU
(torch.set_default_device) and peak memory is torch.cuda.max_memory_allocated and the JAX device's
peak_bytes_in_use (the process's peak, JAX preallocation left as configured).

    python benchmarks/stylegan2_step.py --variant=quick --batch_size=8 --threads=2
    python benchmarks/stylegan2_step.py --variant=quick --image_size=64 --channel_base=2048 --channel_max=64
    python benchmarks/stylegan2_step.py --variant= --batch_size=64 --append=BENCHMARKS.md   # 64 px, on a GPU

For another script: `make_runners(config, images_nhwc)` -> (jax_run, torch_run, jax_step) where
jax_run(steps) and torch_run(steps) return seconds; see its docstring.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import math
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CompiledSteps, load_averages, pin_threads  # noqa: E402
from vae_step import machine  # noqa: E402

PARITY_LIMIT = 0.05  # A relative difference above this is a bug, not rounding (TF32 on GPUs stays ~1e-3).


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="quick", help="configs/stylegan2.py variant: quick, cpu, '' (64 px), 256.")
    parser.add_argument("--image_size", type=int, default=0, help="Override data.image_size (32 to 256).")
    parser.add_argument("--channel_base", type=int, default=0, help="Override model.channel_base.")
    parser.add_argument("--channel_max", type=int, default=0, help="Override model.channel_max.")
    parser.add_argument("--batch_size", type=int, default=0, help="Default: the config's.")
    parser.add_argument(
        "--steps",
        type=int,
        default=8,
        help="Timed steps per repeat; rounded up to the lazy period (see --exact_steps).",
    )
    parser.add_argument("--exact_steps", action="store_true", help="Time exactly --steps (lazy phases reported).")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps first; step 0 runs all four phases.")
    parser.add_argument("--repeats", type=int, default=3, help="Alternating JAX/torch timings; medians reported.")
    parser.add_argument("--threads", type=int, default=0, help="CPU cores for both frameworks; 0 for all.")
    parser.add_argument("--dtype", default="float32", help="JAX model.dtype (float32, bfloat16); torch autocast.")
    parser.add_argument("--append", default="", help="Markdown file to append the results section to.")
    parser.add_argument(
        "--xla_defaults", type=int, default=1, help="1: animejax's default XLA flags, as the command line sets them."
    )
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace):
    """configs/stylegan2.py's variant with the size overrides, augment "none" and the JAX dtype."""
    from animejax.configs import stylegan2

    config = stylegan2.get_config(args.variant)
    if args.image_size:
        config.data.image_size = args.image_size
    if args.channel_base:
        config.model.channel_base = args.channel_base
    if args.channel_max:
        config.model.channel_max = args.channel_max
    if args.batch_size:
        config.train.batch_size = args.batch_size
    config.model.dtype = args.dtype
    config.stylegan.augment = "none"  # The PyTorch side has no ADA.
    config.mesh.num_devices = 1
    return config


def lazy_intervals(config) -> tuple[int, int]:
    """(pl_interval, r1_interval) of the phases that run, 0 for one that never does."""
    style = config.stylegan
    pl = style.pl_interval if style.pl_weight else 0
    r1 = style.r1_interval if style.r1_gamma else 0
    return pl, r1


def lazy_period(config) -> int:
    """Steps after which the lazy-phase pattern repeats: the lcm of the active intervals (1 when none)."""
    return math.lcm(*[i for i in lazy_intervals(config) if i] or [1])


def lazy_counts(config, start: int, steps: int) -> tuple[int, int]:
    """(Greg, Dreg) phases among steps start ... start + steps - 1 (the same rule in both frameworks)."""
    return tuple(sum(1 for s in range(start, start + steps) if s % i == 0) if i else 0 for i in lazy_intervals(config))


# --- JAX: the step as the training loop builds it -------------------------------------------------------------


class JaxRunner(CompiledSteps):
    """JaxStep's jitted step, compiled ahead of time (`compile_s`), run from its initial state."""

    def param_counts(self) -> dict[str, int]:
        leaves = self.jax.tree.leaves
        return {
            "G": sum(x.size for x in leaves(self.state.g_params)),
            "D": sum(x.size for x in leaves(self.state.d_params)),
        }


# --- PyTorch: the same networks and phases ------------------------------------------------------------------


class TorchRunner:
    """The StyleGAN2 step of animejax.methods.stylegan2 in eager PyTorch (see the module docstring).

    Networks, noise and every other tensor are made with plain torch factory calls, so they land on torch's
    default device; `images` is made with torch.from_numpy (on the CPU) and a caller on a GPU moves it.

    Another generator (benchmarks/stylegan3_torch.py) overrides `build_generator`, `map`, `synthesis`,
    `fakes_for_d` and `update_ema`; the phases, optimizers, D and its input pipeline (`d_input`) are shared.
    """

    def __init__(self, config, images_nchw, method, jax_state):
        import jax
        import torch

        from tests.reference import torch_stylegan2

        self.torch = torch
        torch.manual_seed(config.seed)
        style, model = config.stylegan, config.model
        self.g = self.build_generator(method, jax_state)
        self.d = torch_stylegan2.torch_discriminator_like(method.discriminator_net).float()
        torch_stylegan2.load_flax_params(self.d, jax.device_get(jax_state.d_params))
        self.g_ema = copy.deepcopy(self.g).requires_grad_(False)
        self.g_params, self.d_params = list(self.g.parameters()), list(self.d.parameters())
        self.ema_params = list(self.g_ema.parameters())
        self.z_dim, self.num_ws, self.batch_size = model.z_dim, self.g.num_ws, config.train.batch_size
        self.style = style
        self.pl_interval, self.r1_interval = lazy_intervals(config)
        self.pl_batch = max(self.batch_size // style.pl_batch_shrink, 1)
        self.bf16 = model.dtype == "bfloat16"
        # The fading blur of D's inputs (method.augment, the reference's run_D): StyleGAN3-R's configs.
        self.blur_sigma0 = style.get("blur_init_sigma", 0.0) if style.get("blur_fade_kimg") else 0.0
        if self.blur_sigma0:
            from tests.reference import torch_stylegan3

            self._upfirdn2d = torch_stylegan3.upfirdn2d  # The reference's `_upfirdn2d_ref`: 1-D taps, two passes.

        def lazy_adam(params, optim, interval):  # animejax.methods.stylegan2.lazy_adam.
            c = interval / (interval + 1) if interval else 1.0
            betas = (optim.b1**c, optim.b2**c)
            return torch.optim.Adam(params, lr=optim.learning_rate * c, betas=betas, eps=optim.get("eps", 1e-8))

        self.opt_g = lazy_adam(self.g_params, config.optim, self.pl_interval)
        self.opt_d = lazy_adam(self.d_params, config.optim_d, self.r1_interval)
        self.w_avg = torch.zeros(model.w_dim)
        self.pl_mean = torch.zeros(())
        self.images = torch.from_numpy(images_nchw)
        self.step = 0
        self.phases = {"Gmain": 0, "Greg": 0, "Dmain": 0, "Dreg": 0}
        self.metrics = {}

    # --- the generator (overridden for StyleGAN3) ----------------------------

    def build_generator(self, method, jax_state):
        """The float32 torch generator of `method.generator_net` holding the JAX state's weights and buffers."""
        import jax

        from tests.reference import torch_stylegan2

        g = torch_stylegan2.torch_generator_like(method.generator_net).float()
        g_params, noise_const = jax.device_get((jax_state.g_params, jax_state.g_noise_const))
        torch_stylegan2.load_flax_params(g, g_params, noise_const)
        return g

    def map(self, z):
        """The mapping network: z [B, z_dim] -> w [B, w_dim]."""
        return self.g.mapping(z)

    def synthesis(self, ws):
        """ws [B, num_ws, w_dim] -> images [B, 3, S, S], as the training passes run it."""
        return self.g.synthesis(ws, "random", False)  # Non-fused modulated convolutions, as in training.

    def fakes_for_d(self, count: int):
        """Dmain's fakes (the caller holds torch.no_grad) from fresh ws; StyleGAN3's pass also moves its EMAs."""
        return self.synthesis(self.training_ws(count)[0])

    def update_ema(self, beta: float) -> None:
        """G_ema's parameters lerped toward G's by 1 - beta (under torch.no_grad)."""
        self.torch._foreach_lerp_(self.ema_params, self.g_params, 1.0 - beta)

    # --- pieces -----------------------------------------------------------

    def latents(self, count: int):
        """z ~ N(0, I) [count, z_dim], every draw of the step's latents (a test may substitute its own)."""
        return self.torch.randn(count, self.z_dim)

    def training_ws(self, count: int):
        """ws [count, num_ws, w_dim] with style mixing (no host sync), and the unmixed w."""
        torch = self.torch
        w = self.map(self.latents(count))
        if not self.style.style_mixing:
            return w.unsqueeze(1).expand(-1, self.num_ws, -1), w
        cutoff = torch.randint(1, self.num_ws, ())
        cutoff = torch.where(torch.rand(()) < self.style.style_mixing, cutoff, torch.full_like(cutoff, self.num_ws))
        w_mix = self.map(self.latents(count))
        layer = torch.arange(self.num_ws).reshape(1, -1, 1)
        return torch.where(layer < cutoff, w.unsqueeze(1), w_mix.unsqueeze(1)), w

    def d_input(self, images):
        """D's input pipeline, as method.augment with augment "none": the reference's run_D blur, sigma fading
        from blur_init_sigma to 0 over blur_fade_kimg thousand images (taps 2^-(k / sigma)^2, |k| <= floor(3
        sigma), normalised, zero padding), when configured; otherwise the images as they are."""
        if not self.blur_sigma0:
            return images
        sigma = max(1.0 - self.step * self.batch_size / (self.style.blur_fade_kimg * 1000.0), 0.0) * self.blur_sigma0
        radius = int(math.floor(sigma * 3))
        if radius <= 0:
            return images
        torch = self.torch
        taps = torch.arange(-radius, radius + 1, dtype=torch.float32).div(sigma).square().neg().exp2()
        return self._upfirdn2d(images, taps / taps.sum(), padding=radius)

    def _norm(self, params):
        torch = self.torch
        return torch.linalg.vector_norm(
            torch.stack(torch._foreach_norm([p.grad for p in params if p.grad is not None]))
        )

    def ema_beta(self) -> float:
        """animejax.methods.stylegan2.ema_beta at this step."""
        style = self.style
        ema_nimg = style.ema_kimg * 1000.0
        if style.ema_rampup:
            ema_nimg = min(ema_nimg, self.step * self.batch_size * style.ema_rampup)
        return 0.5 ** (self.batch_size / max(ema_nimg, 1e-8))

    # --- the step ---------------------------------------------------------

    def train_step(self) -> dict:
        torch = self.torch
        softplus = torch.nn.functional.softplus
        style, metrics = self.style, {}
        real = self.images.float() / 127.5 - 1.0
        batch = real.shape[0]

        # Gmain (D's parameters frozen, as the reference's phase.module.requires_grad_).
        self.d.requires_grad_(False)
        ws, w = self.training_ws(batch)
        loss_g = softplus(-self.d(self.d_input(self.synthesis(ws))).float()).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        metrics["grad_norm_g"] = self._norm(self.g_params)
        self.opt_g.step()
        self.d.requires_grad_(True)
        metrics["loss_g"] = loss_g.detach()
        self.phases["Gmain"] += 1

        # Greg: path length.
        if self.pl_interval and self.step % self.pl_interval == 0:
            pl_ws, _ = self.training_ws(self.pl_batch)
            img = self.synthesis(pl_ws)
            y = torch.randn(img.shape) / math.sqrt(img.shape[2] * img.shape[3])
            (grads,) = torch.autograd.grad((img * y).sum(), pl_ws, create_graph=True)
            lengths = grads.float().square().sum(2).mean(1).sqrt()
            new_mean = self.pl_mean.lerp(lengths.mean(), style.pl_decay)
            penalty = (lengths - new_mean).square().mean()
            self.opt_g.zero_grad(set_to_none=True)
            (penalty * style.pl_weight * self.pl_interval).backward()
            self.opt_g.step()
            self.pl_mean.copy_(new_mean.detach())
            metrics["pl_penalty"], metrics["pl_length"] = penalty.detach(), lengths.detach().mean()
            self.phases["Greg"] += 1

        # Dmain, on fakes of the updated generator.
        with torch.no_grad():
            fake = self.fakes_for_d(batch)
        real_logits = self.d(self.d_input(real)).float()
        fake_logits = self.d(self.d_input(fake)).float()
        loss_d = (softplus(fake_logits) + softplus(-real_logits)).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        metrics["grad_norm_d"] = self._norm(self.d_params)
        self.opt_d.step()
        metrics["loss_d"], metrics["d_real_sign"] = loss_d.detach(), real_logits.detach().sign().mean()
        self.phases["Dmain"] += 1

        # Dreg: R1 on reals.
        if self.r1_interval and self.step % self.r1_interval == 0:
            x = real.detach().requires_grad_(True)
            (grads,) = torch.autograd.grad(self.d(self.d_input(x)).sum(), x, create_graph=True)
            r1 = grads.float().square().sum(dim=(1, 2, 3)).mean()
            self.opt_d.zero_grad(set_to_none=True)
            (r1 * (style.r1_gamma / 2) * self.r1_interval).backward()
            self.opt_d.step()
            metrics["r1_penalty"] = r1.detach()
            self.phases["Dreg"] += 1

        # w_avg and the generator EMA.
        with torch.no_grad():
            self.w_avg.lerp_(w.detach().float().mean(0), 1.0 - style.w_avg_beta)
            beta = self.ema_beta()
            self.update_ema(beta)
        metrics["pl_mean"], metrics["ema_beta"] = self.pl_mean, beta
        self.step += 1
        return metrics

    def run(self, steps: int) -> float:
        """`steps` steps (under bf16 autocast for a bfloat16 config); returns seconds, device work included."""
        torch = self.torch
        device = self.images.device
        autocast = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        )
        start = time.perf_counter()
        with autocast:
            for _ in range(steps):
                self.metrics = self.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        float(self.metrics["loss_d"])
        return time.perf_counter() - start

    def param_counts(self) -> dict[str, int]:
        return {"G": sum(p.numel() for p in self.g_params), "D": sum(p.numel() for p in self.d_params)}

    def peak_bytes(self) -> int | None:
        torch = self.torch
        return torch.cuda.max_memory_allocated(self.images.device) if self.images.device.type == "cuda" else None


def make_runners(config, images_nhwc, runner_class=None):
    """The animejax StyleGAN2 step and its PyTorch twin from the same initial weights, for other scripts.

    Args:
      config: a stylegan2 config (set `stylegan.augment = "none"`: the torch side has no ADA; `model.dtype`
        "bfloat16" makes torch_run use torch.autocast(bfloat16) by itself).
      images_nhwc: uint8 numpy [B, S, S, 3], the batch every step of both frameworks trains on.
      runner_class: the torch side, `TorchRunner` (None) or a subclass with another generator
        (stylegan3_torch.TorchRunner3 for a stylegan3 config).

    Returns:
      (jax_run, torch_run, jax_step): jax_run(steps) and torch_run(steps) run that many train steps and return
      seconds (device work included); jax_step is the `common.JaxStep`. The runners are the bound `run` of a
      `JaxRunner` and a `TorchRunner` (`jax_run.__self__`, `torch_run.__self__`): `.compiled` (the AOT-compiled
      step, for cost analysis), `.compile_s`, `.param_counts()`, `.peak_bytes()` (JAX: the device's
      peak_bytes_in_use; torch: torch.cuda.max_memory_allocated since the last reset; None where unavailable),
      `.metrics` (of the last step). The JAX step is
      compiled here. Torch builds on its default device; the images are moved there. Torch's global settings
      (TF32, cudnn.benchmark) are left as they are.

    Raises:
      ValueError: augment is not "none", or the frameworks' parameter counts differ.
    """
    import numpy as np
    import torch

    if config.stylegan.augment != "none":
        raise ValueError(
            f"stylegan.augment must be 'none' (the torch side has no ADA), got {config.stylegan.augment!r}"
        )
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    jax_runner = JaxRunner(config, images_nhwc)
    images_nchw = np.ascontiguousarray(np.asarray(images_nhwc).transpose(0, 3, 1, 2))
    torch_runner = (runner_class or TorchRunner)(config, images_nchw, jax_runner.method, jax_runner.state)
    torch_runner.images = torch_runner.images.to(torch.get_default_device())
    counts = jax_runner.param_counts(), torch_runner.param_counts()
    if counts[0] != counts[1]:
        raise ValueError(f"parameter counts differ: JAX {counts[0]} vs torch {counts[1]}")
    return jax_runner.run, torch_runner.run, jax_runner.jax_step


# --- parity -----------------------------------------------------------------------------------------------------


def parity(config, jax_runner: JaxRunner, torch_runner: TorchRunner) -> dict[str, float]:
    """max |JAX - torch| / max |torch| in float32 on both sides, from the initial (copied) weights.

    G(z) with const noise at the initial weights and at weights + N(0, 0.1^2) (so the zero-initialised noise
    strengths and biases count), D(real), the path lengths at the same ws and y, and the per-image R1 penalties.
    Must run before the first step (the JAX state is donated).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from animejax import methods
    from tests.reference import torch_stylegan2

    config32 = copy.deepcopy(config)
    config32.model.dtype = "float32"
    method = methods.get_method(config32)
    state = jax.device_get(jax_runner.state)
    g, d = torch_runner.g, torch_runner.d
    device = next(g.parameters()).device
    size = config.data.image_size
    count = min(4, config.train.batch_size)
    rng = np.random.default_rng(1)

    def to_torch(x):
        return torch.from_numpy(np.array(x, np.float32)).to(device)  # A writable C-ordered copy.

    def nchw(x):
        return to_torch(np.asarray(x).transpose(0, 3, 1, 2))

    def difference(ours, theirs):
        ours, theirs = np.asarray(ours, np.float64), theirs.detach().cpu().double().numpy()
        if ours.ndim == 4:
            theirs = theirs.transpose(0, 2, 3, 1)
        return float(np.abs(ours - theirs).max() / np.abs(theirs).max())

    z = rng.normal(size=(count, config.model.z_dim)).astype(np.float32)
    real = jax.device_get(jax_runner.jax_step.images["image"])[:count].astype(np.float32) / 127.5 - 1.0
    y = (rng.normal(size=(count, size, size, 3)) / size).astype(np.float32)
    g_vars = {"params": state.g_params, "noise_const": state.g_noise_const}
    leaves, treedef = jax.tree.flatten(g_vars)
    noisy = jax.tree.unflatten(treedef, [x + 0.1 * rng.normal(size=x.shape).astype(np.float32) for x in leaves])

    @jax.jit  # One compilation: the eager op-by-op gradients take minutes on a CPU.
    def jax_side(g_vars, noisy, d_params, z, real, y):
        key = jax.random.PRNGKey(0)
        w = method.map(g_vars["params"], z)
        ws = jnp.broadcast_to(w[:, None], (z.shape[0], method.num_ws, method.w_dim))
        return {
            "G": method.generator_net.apply(g_vars, z, noise_mode="const"),
            "D": method.discriminator(d_params, real),
            "G noisy": method.generator_net.apply(noisy, z, noise_mode="const"),
            "ws": ws,
            # Noise strengths are 0 at init, so "random" noise is exact on both sides.
            "lengths": method.path_lengths_at(g_vars["params"], g_vars["noise_const"], ws, key, y),
            "r1": method.r1_penalty(d_params, real, key, jnp.zeros(())),
        }

    ours = jax.device_get(jax_side(g_vars, noisy, state.d_params, z, real, y))
    out = {}
    with torch.no_grad():
        out["G(z), const noise"] = difference(ours["G"], g(to_torch(z), "const", False))
        out["D(real)"] = difference(ours["D"], d(nchw(real)))
        g_noisy = copy.deepcopy(g)
        torch_stylegan2.load_flax_params(g_noisy, noisy["params"], noisy["noise_const"])
        out["G(z), perturbed weights"] = difference(ours["G noisy"], g_noisy(to_torch(z), "const", False))
        del g_noisy
    ws_t = to_torch(ours["ws"]).requires_grad_(True)
    (grads,) = torch.autograd.grad((g.synthesis(ws_t, "random", False) * nchw(y)).sum(), ws_t)
    out["path lengths"] = difference(ours["lengths"], grads.square().sum(2).mean(1).sqrt())
    x = nchw(real).requires_grad_(True)
    (grads,) = torch.autograd.grad(d(x).sum(), x)
    out["R1 per image"] = difference(ours["r1"], grads.square().sum(dim=(1, 2, 3)))
    for p in list(g.parameters()) + list(d.parameters()):
        p.grad = None
    return out


# --- the run -----------------------------------------------------------------------------------------------------


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.0f} MiB"


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0:
        raise SystemExit("--steps and --repeats must be >= 1, --warmup >= 0.")
    threads = pin_threads(args.threads)
    sys.path.insert(0, REPO)
    if args.xla_defaults:
        from animejax import xla_flags

        xla_flags.set_defaults()
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_default_device(device)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # As stylegan2-ada-pytorch's training loop.
    import jax

    config = load_config(args)
    size, batch = config.data.image_size, config.train.batch_size
    period = lazy_period(config)
    steps = args.steps if args.exact_steps else -(-args.steps // period) * period
    images = np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)

    print(
        f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} {machine()}, {threads} thread(s); "
        f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} ({device}); "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    started = time.perf_counter()
    jax_run, torch_run, _ = make_runners(config, images)
    jax_runner, torch_runner = jax_run.__self__, torch_run.__self__
    setup_s = time.perf_counter() - started
    counts = jax_runner.param_counts()
    model = config.model
    print(
        f"# configs/stylegan2.py:{args.variant} {size} px, batch {batch}, channel_base {model.channel_base}, "
        f"channel_max {model.channel_max}, z/w {model.z_dim}/{model.w_dim}, mapping {model.mapping_layers}; "
        f"params G {counts['G']:,} / D {counts['D']:,} (equal in both); JAX {args.dtype}; augment none; "
        f"JAX init + compile {setup_s:.1f} s (compile {jax_runner.compile_s:.1f} s)",
        flush=True,
    )
    start = time.perf_counter()
    checks = parity(config, jax_runner, torch_runner)
    parity_s = time.perf_counter() - start
    print(
        "# parity (float32, copied weights), max |JAX - torch| / max |torch|: "
        + ", ".join(f"{k} {v:.1e}" for k, v in checks.items())
        + f" ({parity_s:.1f} s)",
        flush=True,
    )
    bad = {k: v for k, v in checks.items() if not v <= PARITY_LIMIT}
    if bad:
        raise SystemExit(f"parity check failed (limit {PARITY_LIMIT}): {bad}")

    start = time.perf_counter()
    jax_run(args.warmup)
    warmup_s = time.perf_counter() - start
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    torch_run(args.warmup)
    window_start = args.warmup
    greg, dreg = lazy_counts(config, window_start, steps)
    pl, r1 = lazy_intervals(config)
    print(
        f"# JAX warm-up {args.warmup} steps {warmup_s:.1f} s; timed windows of {steps} steps "
        f"(lazy period {period}{', --exact_steps' if args.exact_steps else ''}): "
        f"Greg (pl_interval {pl}) {greg}x and Dreg (r1_interval {r1}) {dreg}x in the first window, "
        f"the same steps in both frameworks",
        flush=True,
    )
    rates = {"jax": [], "torch": []}
    windows, loads = [], []
    for repeat in range(args.repeats):
        windows.append(lazy_counts(config, window_start, steps))
        window_start += steps
        loads.append(os.getloadavg()[0])
        rates["jax"].append(steps * batch / jax_run(steps))
        rates["torch"].append(steps * batch / torch_run(steps))
        print(
            f"# repeat {repeat + 1}: JAX {rates['jax'][-1]:.2f} img/s, torch {rates['torch'][-1]:.2f} img/s; "
            f"Greg/Dreg {windows[-1][0]}/{windows[-1][1]}; load {loads[-1]:.2f}",
            flush=True,
        )
    total = args.warmup + args.repeats * steps
    total_greg, total_dreg = lazy_counts(config, 0, total)
    expected = {"Gmain": total, "Greg": total_greg, "Dmain": total, "Dreg": total_dreg}
    if torch_runner.phases != expected or jax_runner.step != total:
        raise SystemExit(f"phase counts differ: torch {torch_runner.phases}, expected {expected}")
    jax_metrics = jax.device_get(jax_runner.metrics)
    torch_metrics = {k: float(v) for k, v in torch_runner.metrics.items()}
    finite = all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(jax_metrics))
    if not finite or not all(np.isfinite(list(torch_metrics.values()))):
        raise SystemExit(f"non-finite metrics: JAX {jax_metrics}, torch {torch_metrics}")
    print(
        f"# last step: JAX loss_g {float(jax_metrics['train/loss_g']):.3f} loss_d "
        f"{float(jax_metrics['train/loss_d']):.3f}; torch loss_g {torch_metrics['loss_g']:.3f} loss_d "
        f"{torch_metrics['loss_d']:.3f}; phases per framework {expected}",
        flush=True,
    )

    jax_ips, torch_ips = statistics.median(rates["jax"]), statistics.median(rates["torch"])
    memory = f"{_mib(jax_runner.peak_bytes())} / {_mib(torch_runner.peak_bytes())}"
    header = (
        "| variant | px | batch | dtype | params G / D | JAX img/s | JAX sec/kimg | torch img/s | torch sec/kimg "
        "| JAX / torch speed | JAX compile s | peak memory JAX / torch |"
    )
    row = (
        f"| stylegan2:{args.variant} | {size} | {batch} | {args.dtype} | {counts['G']:,} / {counts['D']:,} "
        f"| {jax_ips:.2f} | {1000 / jax_ips:.1f} | {torch_ips:.2f} | {1000 / torch_ips:.1f} "
        f"| {jax_ips / torch_ips:.2f} | {jax_runner.compile_s:.1f} | {memory} |"
    )
    table = f"{header}\n|---|---|---|---|---|---|---|---|---|---|---|---|\n{row}"
    print(table)
    print(f"# 1-min load during timings {min(loads):.2f} to {max(loads):.2f}; load averages now {load_averages()}")
    if args.append:
        command = "python benchmarks/stylegan2_step.py " + " ".join(argv)
        with open(args.append, "a") as f:
            f.write(
                f"\n### StyleGAN2 train step, {datetime.date.today()}\n\n`{command}`; {machine()}, {threads} "
                f"thread(s), jax {jax.__version__}, torch {torch.__version__} ({device}), "
                f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; 1-min load {min(loads):.2f} to {max(loads):.2f}. "
                f"Augmentation off in both (torch has no ADA); timed windows of {steps} steps held Greg/Dreg "
                f"{', '.join(f'{a}/{b}' for a, b in windows)} times, the same steps in both frameworks; medians of "
                f"{args.repeats} alternating repeats. "
                f"Parity (float32, copied weights): "
                + ", ".join(f"{k} {v:.1e}" for k, v in checks.items())
                + f".\n\n{table}\n"
            )


if __name__ == "__main__":
    main()
