"""Train-step throughput: the jitted animejax VAE step against the same network in PyTorch.

The JAX step is built exactly as `animejax/train.py` builds it: `jax.jit` of
`method.train_step` (uint8 images mapped to [-1, 1] inside the step) with the
state donated, replicated/data shardings on a 1-device mesh, and the per-step
key from a jitted `fold_in`; one fixed batch already on the device (the input
pipeline is measured by input_pipeline.py). The PyTorch step is the same
network written with torch.nn (NCHW, torch's native layout): 4x4 stride-2 convs
with padding 1, LeakyReLU 0.2, Dense layers, the chosen up-sampling, a final
3x3 conv, tanh output; the same loss (summed squared error + beta * KL, batch
mean), Adam with the same learning rate and betas, the same EMA update and the
same metrics (reconstruction, KL, per-pixel MSE, gradient norm). Parameter
counts must match, and animejax's initial parameters loaded into the torch
modules must give the same encoder and decoder outputs (printed max abs diff).

Both run in one process on the same cores: `--threads N` pins the process to
N CPUs with `sched_setaffinity` before JAX and torch are imported (XLA:CPU
sizes its thread pools from the affinity mask) and calls
`torch.set_num_threads(N)`; 0 (default) means every CPU the process may use.
Timings alternate JAX and torch `--repeats` times and report medians, with the
1-minute load average before each repeat and the cores other processes kept
busy during each timing (from /proc/stat). On a shared machine use
`--wait_idle=120 --max_others=0.2`: wait for a quiet moment before each
repeat and redo repeats that other processes disturbed.

  python benchmarks/vae_step.py                          # configs/vae.py: 64 px, batch 64, subpixel
  python benchmarks/vae_step.py --variant=cpu            # configs/vae.py:cpu model at 32 px
  python benchmarks/vae_step.py --upsample=transpose [--transposed_conv=native]
  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution python benchmarks/vae_step.py
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    CpuMeter,
    JaxStep,
    enable_op_tracing,
    force_transposed_conv,
    pin_threads,
    profile_ops,
    wait_idle,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="", help="configs/vae.py variant for the model and sizes: '' or cpu.")
    parser.add_argument("--image_size", type=int, default=None, help="Default: the config's (64; 32 for :cpu).")
    parser.add_argument("--batch_size", type=int, default=None, help="Default: the config's (64).")
    parser.add_argument("--upsample", choices=("subpixel", "transpose", "nearest"), default=None)
    parser.add_argument("--steps", type=int, default=10, help="Timed steps per repeat.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed steps first (JAX compile included).")
    parser.add_argument("--repeats", type=int, default=3, help="Alternating JAX/torch timings; medians reported.")
    parser.add_argument("--threads", type=int, default=0, help="CPU cores for both frameworks; 0 for all.")
    parser.add_argument("--torch_compile", action="store_true", help="Also time torch.compile of the torch step.")
    parser.add_argument(
        "--torch_adam", choices=("default", "foreach", "fused"), default="default", help="torch.optim.Adam variant."
    )
    parser.add_argument("--no_check", action="store_true", help="Skip the forward equivalence check.")
    parser.add_argument(
        "--profile_top", type=int, default=0, help="After timing, trace JAX steps and print the N slowest XLA ops."
    )
    parser.add_argument(
        "--transposed_conv",
        choices=("auto", "phases", "native"),
        default="auto",
        help="How --upsample=transpose runs in JAX (animejax.models.layers.PhaseConvTranspose); auto: the backend's.",
    )
    parser.add_argument(
        "--max_others",
        type=float,
        default=0.0,
        help="Discard and redo a repeat during which other processes used more cores than this (0: keep all).",
    )
    parser.add_argument("--max_discarded", type=int, default=20, help="Give up discarding after this many.")
    parser.add_argument(
        "--wait_idle",
        type=float,
        default=0.0,
        help="Before each timing, wait up to this many seconds for other processes to use < 0.2 cores.",
    )
    return parser.parse_args(argv)


def machine() -> str:
    """CPU model, CPU count and memory, from /proc (Linux)."""
    model, memory = "unknown CPU", 0
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
        with open("/proc/meminfo") as f:
            memory = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, {memory / 2**20:.1f} GiB"


def load_config(variant: str, args: argparse.Namespace):
    spec = importlib.util.spec_from_file_location("_vae_config", os.path.join(REPO, "configs", "vae.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant)
    if args.image_size:
        config.data.image_size = args.image_size
    if args.batch_size:
        config.train.batch_size = args.batch_size
    if args.upsample:
        config.model.upsample = args.upsample
    return config


# --- JAX: the step as train.py builds it ------------------------------------


class JaxRunner:
    def __init__(self, config, images_nhwc):
        import jax

        self.jax = jax
        self.jax_step = JaxStep(config, images_nhwc)
        self.method, self.state = self.jax_step.method, self.jax_step.state
        self.step = 0

    def run(self, steps: int) -> float:
        jax = self.jax
        jax.block_until_ready(self.state)
        start = time.perf_counter()
        state, metrics = self.state, None
        for _ in range(steps):
            state, metrics = self.jax_step(state, self.step)
            self.step += 1
        jax.block_until_ready((state, metrics))
        elapsed = time.perf_counter() - start
        self.state, self.metrics = state, metrics
        return elapsed

    def param_count(self) -> int:
        return sum(x.size for x in self.jax.tree.leaves(self.state.params))


# --- PyTorch: the same network ---------------------------------------------


def build_torch_model(config):
    import torch
    from torch import nn

    from animejax.models.autoencoder import level_channels

    model, size = config.model, config.data.image_size
    channels = level_channels(size, model.base_channels, model.max_channels)
    variational = config.method == "vae"  # configs/autoencoder.py: a plain encoder to the latent.
    variational_out = (2 if variational else 1) * model.latent_dim

    def act():
        return nn.LeakyReLU(0.2)

    enc, in_ch = [], 3
    for ch in channels:
        enc += [nn.Conv2d(in_ch, ch, 4, stride=2, padding=1), act()]
        in_ch = ch
    # Flattens channels-first (C, 4, 4); JAX flattens (4, 4, C): the same network up to a row permutation
    # of this Dense's weight (handled by copy_jax_params).
    enc += [nn.Flatten(), nn.Linear(4 * 4 * in_ch, variational_out)]

    def upsample(cin, cout):
        if model.upsample == "subpixel":
            return [nn.Conv2d(cin, 4 * cout, 3, padding=1), nn.PixelShuffle(2)]
        if model.upsample == "transpose":
            return [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)]
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1)]

    rev = channels[::-1]
    dec = [nn.Linear(model.latent_dim, 4 * 4 * rev[0]), nn.Unflatten(1, (rev[0], 4, 4)), act()]
    in_ch = rev[0]
    for out_ch in rev[1:] + [model.base_channels]:
        dec += upsample(in_ch, out_ch) + [act()]
        in_ch = out_ch
    dec += [nn.Conv2d(in_ch, 3, 3, padding=1)]
    return nn.Sequential(*enc), nn.Sequential(*dec), torch


def copy_jax_params(jax_params, encoder, decoder, upsample: str) -> None:
    """Loads animejax's parameters into the torch modules (layout conversion only)."""
    import numpy as np
    import torch

    def convs(module_params):
        names = sorted((k for k in module_params if k.startswith(("Conv_", "Upsample2x_"))), key=_layer_order)
        return [module_params[n] for n in names]

    def dense(kernel, rows_hwc=None, cols_hwc=None):
        kernel = np.asarray(kernel)
        if rows_hwc is not None:  # Input flattened (H, W, C) in JAX, (C, H, W) in torch.
            h, w, c = rows_hwc
            kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
        if cols_hwc is not None:  # Output reshaped to (H, W, C) in JAX, (C, H, W) in torch.
            h, w, c = cols_hwc
            kernel = kernel.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(-1, h * w * c)
        return torch.from_numpy(np.ascontiguousarray(kernel.T))

    def bias_chw(bias, hwc):
        h, w, c = hwc
        return torch.from_numpy(np.ascontiguousarray(np.asarray(bias).reshape(h, w, c).transpose(2, 0, 1).ravel()))

    enc_p, dec_p = jax_params["encoder"], jax_params["decoder"]
    enc_convs = [m for m in encoder if isinstance(m, torch.nn.Conv2d)]
    enc_linear = [m for m in encoder if isinstance(m, torch.nn.Linear)][0]
    with torch.no_grad():
        for module, p in zip(enc_convs, convs(enc_p)):
            module.weight.copy_(torch.from_numpy(np.asarray(p["kernel"]).transpose(3, 2, 0, 1).copy()))
            module.bias.copy_(torch.tensor(np.asarray(p["bias"])))
        last = enc_convs[-1].out_channels
        enc_linear.weight.copy_(dense(enc_p["Dense_0"]["kernel"], rows_hwc=(4, 4, last)))
        enc_linear.bias.copy_(torch.tensor(np.asarray(enc_p["Dense_0"]["bias"])))

        dec_linear = [m for m in decoder if isinstance(m, torch.nn.Linear)][0]
        first = dec_linear.out_features // 16
        dec_linear.weight.copy_(dense(dec_p["Dense_0"]["kernel"], cols_hwc=(4, 4, first)))
        dec_linear.bias.copy_(bias_chw(dec_p["Dense_0"]["bias"], (4, 4, first)))
        dec_layers = [m for m in decoder if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        ups = [dec_p[k] for k in sorted((k for k in dec_p if k.startswith("Upsample2x_")), key=_layer_order)]
        for module, p in zip(dec_layers[:-1], ups):
            inner = next(iter(p.values()))
            kernel = np.asarray(inner["kernel"])  # [kh, kw, in, out]
            if upsample == "transpose":
                # flax ConvTranspose (transpose_kernel=False) does not flip the kernel; torch's does.
                weight = kernel[::-1, ::-1].transpose(2, 3, 0, 1)  # [in, out, kh, kw]
            else:
                weight = kernel.transpose(3, 2, 0, 1)
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
            module.bias.copy_(torch.tensor(np.asarray(inner["bias"])))
        final = dec_p["Conv_0"]
        dec_layers[-1].weight.copy_(torch.from_numpy(np.asarray(final["kernel"]).transpose(3, 2, 0, 1).copy()))
        dec_layers[-1].bias.copy_(torch.tensor(np.asarray(final["bias"])))


def _layer_order(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


class TorchRunner:
    def __init__(self, config, images_nchw, adam: str, compile_step: bool):
        import torch

        self.torch = torch
        torch.manual_seed(config.seed)
        self.encoder, self.decoder, _ = build_torch_model(config)
        self.params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        optim = config.optim
        kwargs = {"foreach": True} if adam == "foreach" else {"fused": True} if adam == "fused" else {}
        self.opt = torch.optim.Adam(self.params, lr=optim.learning_rate, betas=(optim.b1, optim.b2), eps=1e-8, **kwargs)
        self.ema = [p.detach().clone() for p in self.params]
        self.ema_decay = config.ema.decay
        self.beta = config.model.beta
        self.variational = config.method == "vae"
        self.images = torch.from_numpy(images_nchw)
        self.forward = torch.compile(self._forward) if compile_step else self._forward

    def _forward(self, images_uint8):
        torch = self.torch
        x = images_uint8.float() / 127.5 - 1.0
        if self.variational:
            mean, log_variance = self.encoder(x).chunk(2, dim=1)
            latents = mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean)
            kl = 0.5 * (mean.square() + log_variance.exp() - 1.0 - log_variance).sum(dim=1)
        else:
            latents, kl = self.encoder(x), torch.zeros(x.shape[0])
        decoded = torch.tanh(self.decoder(latents))
        squared = (decoded - x).square()
        reconstruction = squared.flatten(1).sum(dim=1)
        loss = (reconstruction + self.beta * kl).mean()
        return loss, reconstruction.detach().mean(), kl.detach().mean(), squared.detach().mean()

    def train_step(self):
        torch = self.torch
        loss, reconstruction, kl, mse = self.forward(self.images)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm([p.grad for p in self.params])))
        self.opt.step()
        with torch.no_grad():
            torch._foreach_mul_(self.ema, self.ema_decay)
            torch._foreach_add_(self.ema, self.params, alpha=1.0 - self.ema_decay)
        return {"loss": loss.detach(), "reconstruction": reconstruction, "kl": kl, "mse": mse, "grad_norm": grad_norm}

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            metrics = self.train_step()
        float(metrics["loss"])  # CPU eager is synchronous; this only makes the end explicit.
        return time.perf_counter() - start

    def param_count(self) -> int:
        return sum(p.numel() for p in self.params)


def check_equivalence(jax_runner: JaxRunner, torch_runner: TorchRunner, config, images_nhwc) -> tuple[float, float]:
    """Max abs differences of the encoder and decoder outputs with animejax's initial parameters loaded into torch."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from animejax.data.pipeline import to_model_range
    from animejax.models.autoencoder import AutoEncoder

    method = jax_runner.method
    params = jax.tree.map(np.asarray, jax_runner.state.params)
    enc, dec, _ = build_torch_model(config)
    copy_jax_params(params, enc, dec, config.model.upsample)
    x = to_model_range(images_nhwc[:8])
    code = method.model.apply({"params": params}, jnp.asarray(x), method=AutoEncoder.encode)
    mean = code[0] if method.variational else code
    raw = method.model.apply({"params": params}, mean, method=AutoEncoder.decode)
    with torch.no_grad():
        t_mean = enc(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
        t_mean = t_mean.chunk(2, dim=1)[0] if method.variational else t_mean
        t_raw = dec(torch.from_numpy(np.array(mean))).permute(0, 2, 3, 1)
    return float(np.abs(np.asarray(mean) - t_mean.numpy()).max()), float(np.abs(np.asarray(raw) - t_raw.numpy()).max())


def main(argv=None) -> None:
    args = parse_args(argv)
    threads = pin_threads(args.threads)
    if args.profile_top:  # Names each XLA:CPU thunk in the profiler trace; must precede the backend's start.
        enable_op_tracing()
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    import flax
    import jax
    import jaxlib

    sys.path.insert(0, REPO)
    config = load_config(args.variant, args)
    size, batch, model = config.data.image_size, config.train.batch_size, config.model
    rng = np.random.default_rng(0)
    images_nhwc = rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    images_nchw = np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2))

    print(
        f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} {machine()}, "
        f"{threads} thread(s); jax {jax.__version__}, jaxlib {jaxlib.__version__}, flax {flax.__version__}, "
        f"torch {torch.__version__}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    print(
        f"# model: configs/vae.py{':' + args.variant if args.variant else ''} latent {model.latent_dim}, "
        f"base {model.base_channels}, max {model.max_channels}, {model.upsample}; {size} px, batch {batch}, "
        f"lr {config.optim.learning_rate}; torch Adam {args.torch_adam}"
        + (f"; JAX transposed conv: {args.transposed_conv}" if model.upsample == "transpose" else "")
    )

    force_transposed_conv(args.transposed_conv)
    jax_runner = JaxRunner(config, images_nhwc)
    runners = {"animejax": jax_runner, "torch eager": TorchRunner(config, images_nchw, args.torch_adam, False)}
    if args.torch_compile:
        runners["torch.compile"] = TorchRunner(config, images_nchw, args.torch_adam, True)
    counts = {name: r.param_count() for name, r in runners.items()}
    print(f"# parameters: {counts}")
    if len(set(counts.values())) != 1:
        raise SystemExit(f"Parameter counts differ: {counts}")
    if not args.no_check:
        enc, dec = check_equivalence(jax_runner, runners["torch eager"], config, images_nhwc)
        print(f"# forward check, animejax params loaded into torch: max abs diff encoder {enc:.1e}, decoder {dec:.1e}")

    for name, runner in runners.items():
        start = time.perf_counter()
        runner.run(args.warmup)
        print(f"# warm-up {name}: {args.warmup} steps in {time.perf_counter() - start:.1f} s")

    results = {name: [] for name in runners}
    loads, others, discarded = [], [], 0
    while len(results["animejax"]) < args.repeats:
        if args.wait_idle:
            wait_idle(args.wait_idle)
        load = os.getloadavg()[0]
        rates, busy = {}, {}
        for name, runner in runners.items():
            meter = CpuMeter()
            rates[name] = args.steps * batch / runner.run(args.steps)
            busy[name] = meter.others_cores()
        line = ", ".join(f"{name} {rates[name]:.1f} img/s (others {busy[name]:.2f} cores)" for name in runners)
        if args.max_others and max(busy.values()) > args.max_others and discarded < args.max_discarded:
            discarded += 1
            print(f"# discarded (other processes busy): load {load:.2f}; {line}")
            continue
        loads.append(load)
        others.extend(busy.values())
        for name in runners:
            results[name].append(rates[name])
        print(f"# repeat {len(results['animejax'])}: load {load:.2f}; {line}")
    medians = {name: statistics.median(v) for name, v in results.items()}
    ratio = medians["animejax"] / medians["torch eager"]
    per_repeat = statistics.median(a / t for a, t in zip(results["animejax"], results["torch eager"]))

    header = "| model | px | batch | upsample | params | threads | animejax img/s | torch eager img/s | ratio |"
    row = (
        f"| vae{':' + args.variant if args.variant else ''} | {size} | {batch} | {model.upsample} | "
        f"{counts['animejax']:,} | {threads} | {medians['animejax']:.1f} | {medians['torch eager']:.1f} | "
        f"{ratio:.2f} |"
    )
    if "torch.compile" in medians:
        header += " torch.compile img/s |"
        row += f" {medians['torch.compile']:.1f} |"
    header += " load (1 min) | others' CPU (cores) |"
    row += f" {min(loads):.2f}-{max(loads):.2f} | {min(others):.2f}-{max(others):.2f} |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    print(row)
    print(
        f"# animejax/torch eager: {ratio:.2f} (median of per-repeat ratios {per_repeat:.2f}); "
        f"{args.repeats} repeats x {args.steps} steps; {discarded} repeats discarded as contended"
    )
    if args.profile_top:
        profile_jax(jax_runner, args)


def profile_jax(runner: JaxRunner, args: argparse.Namespace) -> None:
    """Prints the `--profile_top` XLA ops taking the most time per JAX step, from a jax.profiler trace."""
    if args.wait_idle:
        wait_idle(args.wait_idle)
    print(profile_ops(runner.jax_step, runner.run, args.steps, args.profile_top))


if __name__ == "__main__":
    main()
