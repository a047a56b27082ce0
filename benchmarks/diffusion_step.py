"""Diffusion throughput: the animejax DDPM train step and DDIM sampling against the same UNet in PyTorch.

JAX: `make_train_step` of configs/ddpm.py's method, as the training loop runs
it, and `DiffusionMethod.run_sampler("ddim", S)` jitted (one `lax.scan`).
PyTorch: the UNet of the same definition (tests/reference/torch_unet.py, the
parity reference, float32 NCHW), eager: the same epsilon-MSE step with Adam,
and DDIM as a Python loop of S network calls with the same timesteps and
update. Both start from the same weights (checked by a forward comparison).
Timings alternate JAX and torch; medians of the repeats are reported.

    python benchmarks/diffusion_step.py --variant=cpu --threads=2 --append BENCHMARKS.md
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
from common import JaxStep, pin_threads  # noqa: E402
from vae_step import machine  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="cpu", help="configs/ddpm.py variant: cpu, quick, '' (64 px) or 128.")
    parser.add_argument("--batch_size", type=int, default=None, help="Train batch; default the config's.")
    parser.add_argument("--sample_batch", type=int, default=16, help="Images per DDIM sampling call.")
    parser.add_argument("--ddim_steps", type=int, default=50)
    parser.add_argument("--dtype", default="float32", help="JAX model.dtype: float32 or bfloat16.")
    parser.add_argument("--steps", type=int, default=5, help="Timed train steps per repeat.")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="CPU cores for both frameworks; 0 for all.")
    parser.add_argument("--append", default="", help="Markdown file to append the results section to.")
    parser.add_argument(
        "--xla_defaults", type=int, default=1, help="1: animejax's default XLA flags, as the command line sets them."
    )
    return parser.parse_args(argv)


def load_config(args):
    spec = importlib.util.spec_from_file_location("_ddpm_config", os.path.join(REPO, "configs", "ddpm.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(args.variant)
    config.model.dropout = 0.0  # Equal work in both frameworks (and no RNG cost difference).
    config.model.dtype = args.dtype
    if args.batch_size:
        config.train.batch_size = args.batch_size
    return config


class TorchDiffusion:
    """The same UNet, objective and DDIM sampler in eager PyTorch."""

    def __init__(self, config, jax_params, device: str):
        import numpy as np
        import torch

        from animejax import models
        from animejax.diffusion import samplers, schedules
        from tests.reference import torch_unet

        self.torch, self.device = torch, device
        network = models.denoiser_network(config)
        self.net = torch_unet.torch_unet_like(network, config.data.image_size).float().to(device)
        torch_unet.load_flax_params(self.net, jax_params)
        schedule = schedules.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
        self.abar = torch.tensor(np.asarray(schedule.alphas_cumprod), dtype=torch.float32, device=device)
        self.num_timesteps = config.diffusion.num_timesteps
        self.timesteps = samplers.timesteps
        optim = config.optim
        self.opt = torch.optim.Adam(self.net.parameters(), lr=optim.learning_rate, betas=(optim.b1, optim.b2))
        self.clip = optim.grad_clip_norm

    def train(self, images_nchw, steps: int) -> float:
        torch = self.torch
        x0 = torch.as_tensor(images_nchw, device=self.device).float() / 127.5 - 1.0
        start = time.perf_counter()
        for _ in range(steps):
            t = torch.randint(0, self.num_timesteps, (x0.shape[0],), device=self.device)
            noise = torch.randn_like(x0)
            a = self.abar[t][:, None, None, None]
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
            loss = torch.mean((self.net(x_t, t) - noise) ** 2)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.clip:
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
            self.opt.step()
        loss.item()
        return time.perf_counter() - start

    def ddim(self, batch: int, size: int, steps: int) -> float:
        torch = self.torch
        ts = [int(t) for t in self.timesteps(self.num_timesteps, steps)]
        start = time.perf_counter()
        with torch.no_grad():
            x = torch.randn(batch, 3, size, size, device=self.device)
            for i, t in enumerate(ts):
                a = self.abar[t]
                eps = self.net(x, torch.full((batch,), t, device=self.device))
                x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
                eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
                a_next = self.abar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
                x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        float(x.sum())
        return time.perf_counter() - start


def forward_difference(method, params, config) -> float:
    """max |UNet_jax - UNet_torch| / max |UNet_torch| with the same perturbed weights on 2 noisy images.

    The weights are the initial ones plus N(0, 0.02^2) noise: the zero-initialised output layers would
    otherwise make both networks output 0.
    """
    import jax
    import numpy as np
    import torch

    from tests.reference import torch_unet

    leaves, treedef = jax.tree.flatten(jax.device_get(params))
    rng = np.random.default_rng(2)
    leaves = [np.asarray(x) + 0.02 * rng.normal(size=x.shape).astype(np.float32) for x in leaves]
    perturbed = jax.tree.unflatten(treedef, leaves)
    size = config.data.image_size
    net = torch_unet.torch_unet_like(method.network, size).float()
    torch_unet.load_flax_params(net, perturbed)
    x = rng.normal(size=(2, size, size, 3)).astype(np.float32)
    t = np.asarray([10, 500], np.int32)
    ours = np.asarray(method.network.apply({"params": perturbed}, x, t, train=False))
    with torch.no_grad():
        theirs = net(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(t)).numpy().transpose(0, 2, 3, 1)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def main(argv=None) -> None:
    args = parse_args(argv)
    threads = pin_threads(args.threads)
    sys.path.insert(0, REPO)
    if args.xla_defaults:
        from animejax import xla_flags

        xla_flags.set_defaults()
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    import jax

    sys.path.insert(0, REPO)
    config = load_config(args)
    size, batch = config.data.image_size, config.train.batch_size
    images = np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    jax_step = JaxStep(config, images)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reference = TorchDiffusion(config, jax.device_get(jax_step.state.params), device)
    method = jax_step.method
    sample = jax.jit(lambda params, key: method.run_sampler(params, key, args.sample_batch, "ddim", args.ddim_steps)[0])
    count = sum(p.numel() for p in reference.net.parameters())
    print(
        f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} {machine()}, {threads} thread(s); "
        f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} ({device}); "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    print(f"# configs/ddpm.py:{args.variant} {size} px, batch {batch}, {count:,} parameters, JAX {args.dtype}")

    state, step = jax_step.state, 0

    def jax_train(steps):
        nonlocal state, step
        jax.block_until_ready(state)
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = jax_step(state, step)
            step += 1
        jax.block_until_ready((state, metrics))
        return time.perf_counter() - start

    def jax_sample():
        start = time.perf_counter()
        jax.block_until_ready(sample(state.ema_params, jax.random.PRNGKey(step)))
        return time.perf_counter() - start

    difference = forward_difference(method, state.params, config)
    print(f"# forward check, same weights: max |JAX - torch| / max |torch| = {difference:.1e}")
    images_nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    start = time.perf_counter()
    jax_train(args.warmup), jax_sample()
    print(f"# JAX compile + warm-up: {time.perf_counter() - start:.1f} s")
    reference.train(images_nchw, args.warmup)
    reference.ddim(args.sample_batch, size, 2)
    rates = {key: [] for key in ("jax_train", "torch_train", "jax_ddim", "torch_ddim")}
    for repeat in range(args.repeats):
        rates["jax_train"].append(args.steps * batch / jax_train(args.steps))
        rates["torch_train"].append(args.steps * batch / reference.train(images_nchw, args.steps))
        rates["jax_ddim"].append(args.sample_batch / jax_sample())
        rates["torch_ddim"].append(args.sample_batch / reference.ddim(args.sample_batch, size, args.ddim_steps))
        print(f"# repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.2f} img/s" for k, v in rates.items()))
    medians = {k: statistics.median(v) for k, v in rates.items()}
    header = (
        "| variant | px | batch | params | JAX dtype | train img/s JAX / torch | ratio "
        f"| DDIM-{args.ddim_steps} img/s JAX / torch | ratio |"
    )
    train_ratio, ddim_ratio = medians["jax_train"] / medians["torch_train"], medians["jax_ddim"] / medians["torch_ddim"]
    row = (
        f"| ddpm:{args.variant} | {size} | {batch} | {count:,} | {args.dtype} | "
        f"{medians['jax_train']:.2f} / {medians['torch_train']:.2f} | {train_ratio:.2f} | "
        f"{medians['jax_ddim']:.2f} / {medians['torch_ddim']:.2f} | {ddim_ratio:.2f} |"
    )
    table = f"{header}\n|---|---|---|---|---|---|---|---|---|\n{row}"
    print(table)
    if args.append:
        command = "python benchmarks/diffusion_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
        with open(args.append, "a") as f:
            f.write(
                f"\n### Diffusion step and DDIM sampling, {datetime.date.today()}\n\n`{command}`; {machine()}, "
                f"{threads} thread(s), jax {jax.__version__}, torch {torch.__version__} ({device}), "
                f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}.\n\n{table}\n"
            )


if __name__ == "__main__":
    main()
