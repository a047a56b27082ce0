"""Train-step throughput of the GAN methods: the jitted animejax steps against the same networks and losses in PyTorch.

The JAX step is built as `animejax/train.py` builds it: `jax.jit` of
`method.train_step` (uint8 images mapped to [-1, 1] inside the step) with the
state donated and replicated/data shardings on a 1-device mesh, the per-step
key from a jitted `fold_in`. The PyTorch step (NCHW, torch's native layout,
eager) runs the same algorithm on the same networks: z ~ N(0, I), fake = G(z)
once; n_critic - 1 extra critic updates on fresh no-grad fakes, then one on
fake.detach(); the generator (and encoder) update through D(fake) reusing that
forward pass (as the PyTorch DCGAN example); the same losses (softplus
non-saturating; Wasserstein + gradient penalty on random interpolates via
autograd.grad(create_graph=True); cycle L1 |E(G(z)) - z|), Adam with the
config's hyperparameters for G, D (and E), an EMA of G's parameters and
buffers, and the same metrics (D(real), D(fake), gradient norms). Networks:
DCGAN (ConvTranspose2d(4, 2, 1) or Conv2d + PixelShuffle; BatchNorm2d; a
critic's layer norm is GroupNorm(1, C), the same normalization), residual
DCGAN (torch.nn.utils.parametrizations.spectral_norm in D). The printed
parameter counts of both frameworks must agree.

Both run in one process on the same cores: `--threads N` pins the process to
N CPUs before JAX and torch are imported. Timings alternate JAX and torch
`--repeats` times and report medians, with the 1-minute load average.

  python benchmarks/gan_step.py --variant=cpu                       # all methods, configs' :cpu (32 px, batch 64)
  python benchmarks/gan_step.py --cases=dcgan:transpose,dcgan:subpixel   # DCGAN at 64 px, batch 64
  python benchmarks/gan_step.py --variant=cpu --append=BENCHMARKS.md      # also appends the markdown section
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import math
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import JaxStep, force_transposed_conv, pin_threads  # noqa: E402

CASES = ("dcgan:transpose", "dcgan:subpixel", "resdcgan", "resdcgan_cycle", "wgan_gp")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"Comma-separated subset of {', '.join(CASES)}.")
    parser.add_argument("--variant", default="", help="Config variant for sizes and widths: '' (64 px) or cpu.")
    parser.add_argument("--batch_size", type=int, default=None, help="Default: the config's (64).")
    parser.add_argument("--steps", type=int, default=5, help="Timed steps per repeat.")
    parser.add_argument(
        "--warmup", type=int, default=3, help="Untimed steps first (JAX compile; torch's first steps are slow too)."
    )
    parser.add_argument("--repeats", type=int, default=3, help="Alternating JAX/torch timings; medians reported.")
    parser.add_argument("--threads", type=int, default=0, help="CPU cores for both frameworks; 0 for all.")
    parser.add_argument("--append", default="", help="Markdown file to append the results section to.")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="Config override for the JAX and torch steps alike, e.g. --set=gan.gp_gradient=reverse_over_reverse.",
    )
    parser.add_argument(
        "--transposed_conv",
        choices=("auto", "phases", "native"),
        default="auto",
        help="How dcgan:transpose runs in JAX (animejax.models.layers.PhaseConvTranspose); auto: the backend's.",
    )
    return parser.parse_args(argv)


def apply_overrides(config, overrides: list[str]) -> None:
    """`FIELD=VALUE` settings (dotted field names; VALUE a Python literal, else a string) applied to `config`."""
    import ast

    for override in overrides:
        field, sep, text = override.partition("=")
        if not sep:
            raise SystemExit(f"--set wants FIELD=VALUE, got {override!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        *groups, name = field.split(".")
        target = config
        for group in groups:
            target = target[group]
        if name not in target:
            raise SystemExit(f"--set {field}: no such config field")
        target[name] = value


def load_config(case: str, variant: str, batch_size: int | None):
    method, _, upsample = case.partition(":")
    spec = importlib.util.spec_from_file_location(f"_{method}_config", os.path.join(REPO, "configs", f"{method}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant)
    if upsample:
        config.model.upsample = upsample
    if batch_size:
        config.train.batch_size = batch_size
    return config


# --- JAX: the step as train.py builds it ------------------------------------


class JaxRunner:
    def __init__(self, config, images_nhwc):
        import jax

        self.jax = jax
        self.jax_step = JaxStep(config, images_nhwc)
        self.method, self.state = self.jax_step.method, self.jax_step.state
        self.step, self.metrics = 0, None

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

    def param_counts(self) -> dict[str, int]:
        leaves = self.jax.tree.leaves
        counts = {"G": sum(x.size for x in leaves(self.state.g_params))}
        counts["D"] = sum(x.size for x in leaves(self.state.d_params))
        counts["E"] = sum(x.size for x in leaves(self.state.e_params))
        return counts


# --- PyTorch: the same networks ----------------------------------------------


def torch_networks(config):
    """(G, D, E or None) as torch.nn modules mirroring animejax.models.{dcgan, resdcgan}."""
    from torch import nn

    from animejax.models.dcgan import num_levels

    model, size = config.model, config.data.image_size
    arch = model.arch
    levels = num_levels(size)

    def norm(kind, channels):
        if kind == "batch":
            return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)
        if kind == "layer":  # Per example over (C, H, W), per-channel affine: flax LayerNorm((-3, -2, -1)).
            return nn.GroupNorm(1, channels, eps=1e-5)
        return nn.Identity()

    def upsample(c_in, c_out, mode):
        if mode == "subpixel":
            return [nn.Conv2d(c_in, 4 * c_out, 3, padding=1), nn.PixelShuffle(2)]
        if mode == "transpose":
            return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1)]

    if arch == "dcgan":
        channels = [model.g_channels * 2 ** (levels - 1 - i) for i in range(levels)]
        g = [nn.Unflatten(1, (model.latent_dim, 1, 1))]
        g += [nn.ConvTranspose2d(model.latent_dim, channels[0], 4, 1, 0, bias=False), norm("batch", channels[0])]
        g.append(nn.ReLU())
        for c_in, c_out in zip(channels, channels[1:] + [3]):
            g += upsample(c_in, c_out, model.upsample)
            if c_out != 3:
                g += [norm("batch", c_out), nn.ReLU()]
        g.append(nn.Tanh())
        d, c_in = [], 3
        for level in range(levels):
            c_out = model.d_channels * 2**level
            normalized = level > 0 and model.d_normalization != "none"
            bias = not (normalized and model.d_normalization == "batch")
            d.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=bias))
            if normalized:
                d.append(norm(model.d_normalization, c_out))
            d.append(nn.LeakyReLU(0.2))
            c_in = c_out
        d += [nn.Conv2d(c_in, 1, 4, 1, 0), nn.Flatten(0)]
        return nn.Sequential(*g), nn.Sequential(*d), None

    sn = nn.utils.parametrizations.spectral_norm
    down_channels = [min(model.d_channels * 2**i, model.max_channels) for i in range(levels)]
    g_channels = [min(model.g_channels * 2**i, model.max_channels) for i in range(levels)][::-1]

    class UpBlock(nn.Module):
        def __init__(self, c_in, c_out):
            super().__init__()
            self.main = nn.Sequential(
                norm("batch", c_in),
                nn.ReLU(),
                *upsample(c_in, c_out, model.upsample),
                norm("batch", c_out),
                nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1),
            )
            self.skip = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 1))

        def forward(self, x):
            return self.main(x) + self.skip(x)

    class DownBlock(nn.Module):
        def __init__(self, c_in, c_out, first, normalization, spectral):
            super().__init__()
            wrap = sn if spectral else (lambda m: m)
            pre = [] if first else [norm(normalization, c_in), nn.LeakyReLU(0.2)]
            self.main = nn.Sequential(
                *pre,
                wrap(nn.Conv2d(c_in, c_out, 3, padding=1)),
                norm(normalization, c_out),
                nn.LeakyReLU(0.2),
                wrap(nn.Conv2d(c_out, c_out, 3, padding=1)),
                nn.AvgPool2d(2),
            )
            self.skip = nn.Sequential(wrap(nn.Conv2d(c_in, c_out, 1)), nn.AvgPool2d(2))

        def forward(self, x):
            return self.main(x) + self.skip(x)

    def trunk(normalization, spectral):
        blocks, c_in = [], 3
        for i, c_out in enumerate(down_channels):
            blocks.append(DownBlock(c_in, c_out, i == 0, normalization, spectral))
            c_in = c_out
        return blocks

    g = [nn.Linear(model.latent_dim, 16 * g_channels[0]), nn.Unflatten(1, (g_channels[0], 4, 4))]
    for c_in, c_out in zip(g_channels, g_channels[1:] + [model.g_channels]):
        g.append(UpBlock(c_in, c_out))
    g += [norm("batch", model.g_channels), nn.ReLU(), nn.Conv2d(model.g_channels, 3, 3, padding=1), nn.Tanh()]
    wrap = sn if model.spectral_norm else (lambda m: m)
    d = trunk(model.d_normalization, model.spectral_norm)
    d += [nn.LeakyReLU(0.2), _sum_pool(), wrap(nn.Linear(down_channels[-1], 1)), nn.Flatten(0)]
    e = trunk("none", False) + [nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(16 * down_channels[-1], model.latent_dim)]
    return nn.Sequential(*g), nn.Sequential(*d), nn.Sequential(*e)


def _sum_pool():
    import torch

    class SumPool(torch.nn.Module):
        def forward(self, x):
            return x.sum(dim=(2, 3))

    return SumPool()


class TorchRunner:
    """The GAN step of animejax.methods.gan / wgan_gp, in eager PyTorch."""

    def __init__(self, config, images_nchw):
        import copy

        import torch

        self.torch = torch
        torch.manual_seed(config.seed)
        self.g, self.d, encoder = torch_networks(config)
        gan = config.gan
        self.wgan = config.method == "wgan_gp"
        self.n_critic, self.gp_weight, self.cycle_lambda = gan.n_critic, gan.gp_weight, gan.cycle_lambda
        # wgan_gp's approximate options (off by default): penalise a leading fraction / every k-th step only.
        self.gp_batch_fraction, self.gp_interval = gan.get("gp_batch_fraction", 1.0), gan.get("gp_interval", 1)
        self.e = encoder if self.cycle_lambda else None
        self.latent_dim = config.model.latent_dim
        self.g_ema = copy.deepcopy(self.g).requires_grad_(False)
        self.ema_decay = config.ema.decay

        def adam(params, optim):
            return torch.optim.Adam(params, lr=optim.learning_rate, betas=(optim.b1, optim.b2), eps=1e-8)

        self.opt_g, self.opt_d = adam(self.g.parameters(), config.optim), adam(self.d.parameters(), config.optim_d)
        self.opt_e = adam(self.e.parameters(), config.optim) if self.e is not None else None
        self.images = torch.from_numpy(images_nchw)
        self.step = 0

    def _norm(self, params):
        torch = self.torch
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm([p.grad for p in params])))

    def _critic_update(self, real, fake):
        torch = self.torch
        real_out, fake_out = self.d(real), self.d(fake)
        if self.wgan:
            loss = fake_out.mean() - real_out.mean()
            if self.step % self.gp_interval == 0:
                count = max(1, math.ceil(self.gp_batch_fraction * real.shape[0]))
                alpha = torch.rand(count, 1, 1, 1)
                points = (alpha * real[:count] + (1 - alpha) * fake[:count]).requires_grad_(True)
                (grads,) = torch.autograd.grad(self.d(points).sum(), points, create_graph=True)
                gp = (grads.flatten(1).square().sum(1).add(1e-12).sqrt() - 1).square().mean()
                loss = loss + self.gp_interval * self.gp_weight * gp
            probs = real_out.detach().mean(), fake_out.detach().mean()
        else:
            loss = (torch.nn.functional.softplus(-real_out) + torch.nn.functional.softplus(fake_out)).mean()
            probs = torch.sigmoid(real_out.detach()).mean(), torch.sigmoid(fake_out.detach()).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        norm = self._norm(self.d.parameters())
        self.opt_d.step()
        return loss.detach(), probs, norm

    def train_step(self):
        torch = self.torch
        real = self.images.float() / 127.5 - 1.0
        batch = real.shape[0]
        z = torch.randn(batch, self.latent_dim)
        fake = self.g(z)
        for _ in range(self.n_critic - 1):
            with torch.no_grad():
                other = self.g(torch.randn(batch, self.latent_dim))
            self._critic_update(real, other)
        loss_d, (d_real, d_fake), norm_d = self._critic_update(real, fake.detach())

        out = self.d(fake)
        loss_g = -out.mean() if self.wgan else torch.nn.functional.softplus(-out).mean()
        if self.e is not None:
            loss_g = loss_g + self.cycle_lambda * (self.e(fake) - z).abs().mean()
            self.opt_e.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        norm_g = self._norm(self.g.parameters())
        self.opt_g.step()
        if self.e is not None:
            self.opt_e.step()
        with torch.no_grad():
            decay = min(self.ema_decay, (1 + self.step) / (10 + self.step))
            ema = list(self.g_ema.parameters()) + [b for b in self.g_ema.buffers() if b.is_floating_point()]
            new = list(self.g.parameters()) + [b for b in self.g.buffers() if b.is_floating_point()]
            torch._foreach_lerp_(ema, new, 1.0 - decay)
        self.step += 1
        return {
            "loss_d": loss_d,
            "loss_g": loss_g.detach(),
            "d_real": d_real,
            "d_fake": d_fake,
            "norms": (norm_d, norm_g),
        }

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            metrics = self.train_step()
        float(metrics["loss_g"])
        return time.perf_counter() - start

    def param_counts(self) -> dict[str, int]:
        def count(module):
            return sum(p.numel() for p in module.parameters()) if module is not None else 0

        return {"G": count(self.g), "D": count(self.d), "E": count(self.e)}


# --- the run -------------------------------------------------------------------------


def _shell(command: str) -> str:
    try:
        return subprocess.run(command, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def run_case(case: str, args: argparse.Namespace) -> dict:
    import numpy as np

    config = load_config(case, args.variant, args.batch_size)
    apply_overrides(config, args.set)
    size, batch = config.data.image_size, config.train.batch_size
    images_nhwc = np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    images_nchw = np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2))
    started = time.perf_counter()
    jax_runner = JaxRunner(config, images_nhwc)
    jax_runner.run(args.warmup)
    compile_and_warmup = time.perf_counter() - started
    torch_runner = TorchRunner(config, images_nchw)
    torch_runner.run(args.warmup)
    counts = jax_runner.param_counts(), torch_runner.param_counts()
    if counts[0] != counts[1]:
        raise SystemExit(f"{case}: parameter counts differ, JAX {counts[0]} vs torch {counts[1]}")
    jax_times, torch_times, loads = [], [], []
    for _ in range(args.repeats):
        loads.append(os.getloadavg()[0])
        jax_times.append(jax_runner.run(args.steps) / args.steps)
        torch_times.append(torch_runner.run(args.steps) / args.steps)
    metrics = {k: float(v) for k, v in jax_runner.jax.device_get(jax_runner.metrics).items()}
    if not all(np.isfinite(list(metrics.values()))):
        raise SystemExit(f"{case}: non-finite JAX metrics {metrics}")
    jax_step, torch_step = statistics.median(jax_times), statistics.median(torch_times)
    result = {
        "case": case,
        "size": size,
        "batch": batch,
        "widths": f"G {config.model.g_channels} / D {config.model.d_channels}",
        "n_critic": config.gan.n_critic,
        "params": counts[0],
        "jax_ips": batch / jax_step,
        "torch_ips": batch / torch_step,
        "jax_step": jax_step,
        "torch_step": torch_step,
        "compile_s": compile_and_warmup,
        "load": statistics.median(loads),
    }
    print(
        f"{case:16s} {size}px b{batch}: JAX {result['jax_ips']:7.1f} img/s ({jax_step:.3f} s/step), "
        f"torch {result['torch_ips']:7.1f} img/s ({torch_step:.3f} s/step), ratio {jax_step / torch_step:.2f}, "
        f"JAX compile+warmup {compile_and_warmup:.0f} s, load {result['load']:.1f}",
        flush=True,
    )
    return result


def markdown(results: list[dict], args: argparse.Namespace, argv: list[str], threads: int) -> str:
    import flax
    import jax
    import numpy as np
    import optax
    import torch

    model = _shell("lscpu | sed -n 's/^Model name:[[:space:]]*//p'") or platform.processor()
    lines = [
        "",
        f"## GAN train steps: animejax (JAX) vs PyTorch eager, {datetime.date.today().isoformat()}",
        "",
        f"Command: `python benchmarks/gan_step.py {' '.join(argv)}`".rstrip(),
        "",
        f"Machine: {model}, {threads} CPU(s) used; shared with other jobs: 1-min load "
        f"{min(r['load'] for r in results):.1f} to {max(r['load'] for r in results):.1f} during timings, "
        f"`uptime` at the end: {_shell('uptime').strip()}.",
        f"Versions: Python {platform.python_version()}, jax {jax.__version__}, flax {flax.__version__}, "
        f"optax {optax.__version__}, torch {torch.__version__}, numpy {np.__version__}.",
        f"Timing: {args.warmup} warm-up steps (JAX compile included), then {args.repeats} alternating repeats of "
        f"{args.steps} steps per framework; medians. One step = D update(s) + G update (+ E), EMA, metrics.",
        "",
        "| method | px | batch | widths | n_critic | params G / D / E | JAX img/s | torch img/s | JAX / torch time"
        " | JAX compile + warm-up s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        params = f"{r['params']['G']:,} / {r['params']['D']:,} / {r['params']['E']:,}"
        lines.append(
            f"| {r['case']} | {r['size']} | {r['batch']} | {r['widths']} | {r['n_critic']} | {params} "
            f"| {r['jax_ips']:.1f} | {r['torch_ips']:.1f} | {r['jax_step'] / r['torch_step']:.2f} "
            f"| {r['compile_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    threads = pin_threads(args.threads)
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, REPO)
    force_transposed_conv(args.transposed_conv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"Unknown case(s) {unknown}; choose from {', '.join(CASES)}.")
    results = [run_case(case, args) for case in cases]
    section = markdown(results, args, argv, threads)
    print(section)
    if args.append:
        with open(args.append, "a") as f:
            f.write(section)


if __name__ == "__main__":
    main()
