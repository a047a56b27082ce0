"""CPU parity: every family's train step against the same networks and losses in PyTorch eager, at 32 and 64 px.

One entry per (model, size). Each pairs the animejax step exactly as the training loop runs it (`jax.jit` of
`method.train_step` via `make_train_step`, state donated, 1-device mesh) with the PyTorch reference that the
family's own benchmark already checks (same parameter counts, weights copied where the script does so):

  vae, autoencoder                    benchmarks/vae_step.py (TorchRunner)
  dcgan (transpose, subpixel),
  resdcgan, resdcgan_cycle, wgan_gp   benchmarks/gan_step.py (TorchRunner)
  ddpm                                benchmarks/diffusion_step.py (TorchDiffusion)
  stylegan2                           benchmarks/stylegan2_step.py (make_runners; augment none)
  stylegan3                           benchmarks/stylegan3_torch.py (make_torch_runners; augment none)
  srgan (adversarial step)            benchmarks/srgan_step.py (make_runners; pixel content loss)

Sizes: "32" is each config's `:cpu` variant (SRGAN `:quick`, 24 -> 96 px; StyleGAN `:quick` widths); "64" is
each config's default model at 64 px, except where the default is too big for a 2-core CPU: DDPM (the `:cpu`
UNet at 64 px), StyleGAN2/3 (channel_base 2048, channel_max 64) and SRGAN (the `:cpu` widths, 64 -> 256 px);
the table says which. Timing: after a warm-up, each repeat times `steps` animejax steps then `steps` torch steps
(windows of about `--window_s` seconds, whole multiples of StyleGAN's lazy-regularisation period), medians of
`--repeats`. With `--max_others` a repeat during which other processes kept more than that many cores busy is
discarded and redone (at most `--max_discarded` times per entry), and `--wait_idle` waits for a quiet moment
before each repeat: figures taken on a busy machine are not comparable (BENCHMARKS.md, "Foundation").

  python benchmarks/cpu_parity.py --sizes=32,64 --json=/tmp/cpu_parity.json --markdown=/tmp/cpu_parity.md
  python benchmarks/cpu_parity.py --entries=dcgan_transpose,wgan_gp --sizes=64 --repeats=5
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    CpuMeter,
    enable_op_tracing,
    lazy_period,
    pin_threads,
    profile_ops,
    profile_torch_ops,
    wait_idle,
)

MODELS = (
    "vae",
    "autoencoder",
    "dcgan_transpose",
    "dcgan_subpixel",
    "resdcgan",
    "resdcgan_cycle",
    "wgan_gp",
    "ddpm",
    "stylegan2",
    "stylegan3",
    "srgan",
)


@dataclasses.dataclass
class Pair:
    """An animejax step and its PyTorch twin: `run(steps) -> seconds` each, on one fixed batch."""

    jax_run: object
    torch_run: object
    batch: int
    params: str  # Parameter counts, as the family's benchmark reports them.
    jax_step: object  # common.JaxStep of jax_run, for --profile_top.
    period: int = 1  # Timed windows are multiples of this many steps (lazy regularisation).


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", default=",".join(MODELS), help=f"Comma-separated subset of {MODELS}.")
    parser.add_argument("--sizes", default="32,64", help="32 (the :cpu variants) and/or 64 (defaults at 64 px).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window_s", type=float, default=3.0, help="Target seconds of one timed window.")
    parser.add_argument("--threads", type=int, default=0, help="CPU cores for both frameworks; 0 for all.")
    parser.add_argument("--wait_idle", type=float, default=0.0, help="Wait up to this many s for a quiet CPU.")
    parser.add_argument("--max_others", type=float, default=0.0, help="Redo repeats others disturbed (0: keep).")
    parser.add_argument("--max_discarded", type=int, default=6)
    parser.add_argument("--profile_top", type=int, default=0, help="Also list each entry's N slowest XLA ops.")
    parser.add_argument("--json", default="", help="Write the results here.")
    parser.add_argument("--markdown", default="", help="Write the markdown table here.")
    return parser.parse_args(argv)


# --- the pairs ----------------------------------------------------------------------------------------------


def _config(family: str, variant: str):
    import importlib

    return importlib.import_module(f"animejax.configs.{family}").get_config(variant)


def _images(config):
    import numpy as np

    size, batch = config.data.image_size, config.train.batch_size
    return np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)


def _nchw(images):
    import numpy as np

    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def autoencoder_pair(family: str, size: int) -> tuple[Pair, str]:
    import vae_step

    config = _config(family, "cpu" if size == 32 else "")
    images = _images(config)
    jax_runner = vae_step.JaxRunner(config, images)
    torch_runner = vae_step.TorchRunner(config, _nchw(images), "default", False)
    counts = jax_runner.param_count(), torch_runner.param_count()
    if counts[0] != counts[1]:
        raise ValueError(f"{family}: parameter counts differ, JAX {counts[0]} vs torch {counts[1]}")
    label = f"configs/{family}.py" + (":cpu" * (size == 32))
    return Pair(jax_runner.run, torch_runner.run, len(images), f"{counts[0]:,}", jax_runner.jax_step), label


def gan_pair(model: str, size: int) -> tuple[Pair, str]:
    import gan_step

    case = {"dcgan_transpose": "dcgan:transpose", "dcgan_subpixel": "dcgan:subpixel"}.get(model, model)
    variant = "cpu" if size == 32 else ""
    config = gan_step.load_config(case, variant, None)
    images = _images(config)
    jax_runner = gan_step.JaxRunner(config, images)
    torch_runner = gan_step.TorchRunner(config, _nchw(images))
    counts = jax_runner.param_counts(), torch_runner.param_counts()
    if counts[0] != counts[1]:
        raise ValueError(f"{model}: parameter counts differ, JAX {counts[0]} vs torch {counts[1]}")
    params = " / ".join(f"{counts[0][k]:,}" for k in ("G", "D", "E") if counts[0][k])
    method, _, upsample = case.partition(":")
    label = f"configs/{method}.py" + (":cpu" * (size == 32)) + (f", upsample={upsample}" if upsample else "")
    return Pair(jax_runner.run, torch_runner.run, len(images), params, jax_runner.jax_step), label


def ddpm_pair(size: int) -> tuple[Pair, str]:
    import diffusion_step
    import jax
    from common import CompiledSteps

    config = _config("ddpm", "cpu")
    config.data.image_size = size
    config.model.dropout = 0.0  # Equal work in both frameworks (diffusion_step.py does the same).
    if size == 64:
        config.train.batch_size = 16
    images = _images(config)
    steps = CompiledSteps(config, images)
    reference = diffusion_step.TorchDiffusion(config, jax.device_get(steps.state.params), "cpu")
    nchw = _nchw(images)
    count = sum(x.size for x in jax.tree.leaves(steps.state.params))
    torch_count = sum(p.numel() for p in reference.net.parameters())
    if count != torch_count:
        raise ValueError(f"ddpm: parameter counts differ, JAX {count} vs torch {torch_count}")
    label = "configs/ddpm.py:cpu" + (" UNet at 64 px" if size == 64 else "") + ", dropout 0"
    return Pair(steps.run, lambda n: reference.train(nchw, n), len(images), f"{count:,}", steps.jax_step), label


def _stylegan_config(family: str, size: int):
    config = _config(family, "quick")
    config.stylegan.augment = "none"  # The torch steps have no ADA.
    config.train.batch_size = 8
    config.mesh.num_devices = 1
    if size == 64:
        config.data.image_size = 64
        config.model.channel_base, config.model.channel_max = 2048, 64
    return config


def stylegan_pair(family: str, size: int) -> tuple[Pair, str]:
    config = _stylegan_config(family, size)
    images = _images(config)
    if family == "stylegan2":
        import stylegan2_step

        jax_run, torch_run, jax_step = stylegan2_step.make_runners(config, images)
    else:
        import stylegan3_torch

        jax_run, torch_run, jax_step = stylegan3_torch.make_torch_runners(config, images)
    counts = jax_run.__self__.param_counts()
    period = lazy_period(config)
    label = f"configs/{family}.py:quick" + (", 64 px, channel_base 2048, max 64" if size == 64 else "")
    return Pair(jax_run, torch_run, len(images), f"{counts['G']:,} / {counts['D']:,}", jax_step, period), label


def srgan_pair(size: int) -> tuple[Pair, str]:
    import srgan_step

    config = _config("srgan", "quick" if size == 32 else "cpu")
    if size == 64:
        config.data.image_size = 256  # 64 -> 256 px.
    config.srgan.content_loss = "pixel"  # The torch side has no VGG19.
    config.srgan.crop_size = 0
    config.mesh.num_devices = 1
    images = _images(config)
    jax_run, torch_run, jax_step = srgan_step.make_runners(config, images, "adversarial")
    counts = jax_run.__self__.param_counts()
    low = config.data.image_size // config.model.scale
    label = f"configs/srgan.py:{'quick' if size == 32 else 'cpu'}, {low} -> {config.data.image_size} px, pixel loss"
    return Pair(jax_run, torch_run, len(images), f"{counts['G']:,} / {counts['D']:,}", jax_step), label


def make_pair(model: str, size: int) -> tuple[Pair, str]:
    """(the pair, a label saying which config and sizes) for `model` at `size` (32 or 64)."""
    if model in ("vae", "autoencoder"):
        return autoencoder_pair(model, size)
    if model == "ddpm":
        return ddpm_pair(size)
    if model in ("stylegan2", "stylegan3"):
        return stylegan_pair(model, size)
    if model == "srgan":
        return srgan_pair(size)
    return gan_pair(model, size)


# --- timing -------------------------------------------------------------------------------------------------


def measure(model: str, size: int, args: argparse.Namespace) -> dict:
    """One entry: build, warm up, then alternate timed windows; medians of img/s."""
    started = time.perf_counter()
    pair, label = make_pair(model, size)
    build_s = time.perf_counter() - started
    warm_jax = pair.jax_run(pair.period) / pair.period  # Compiles (unless compiled ahead) and warms up.
    warm_jax = pair.jax_run(pair.period) / pair.period
    warm_torch = pair.torch_run(pair.period) / pair.period
    slowest = max(warm_jax, warm_torch)
    steps = max(pair.period, pair.period * round(args.window_s / slowest / pair.period))
    batch = pair.batch
    rates = {"animejax": [], "torch": []}
    others, discarded = [], 0
    while len(rates["animejax"]) < args.repeats:
        if args.wait_idle:
            wait_idle(args.wait_idle)
        busy = []
        for name, run in (("animejax", pair.jax_run), ("torch", pair.torch_run)):
            meter = CpuMeter()
            rate = steps * batch / run(steps)
            busy.append(meter.others_cores())
            rates[name].append(rate)
        if args.max_others and max(busy) > args.max_others and discarded < args.max_discarded:
            discarded += 1
            for name in rates:
                rates[name].pop()
            print(f"# {model} {size}: repeat discarded, others used {max(busy):.2f} cores", flush=True)
            continue
        others.extend(busy)
    jax_ips, torch_ips = statistics.median(rates["animejax"]), statistics.median(rates["torch"])
    result = {
        "model": model,
        "size": size,
        "config": label,
        "batch": batch,
        "params": pair.params,
        "steps_per_window": steps,
        "animejax_ips": jax_ips,
        "torch_ips": torch_ips,
        "speed_ratio": jax_ips / torch_ips,
        "others_max": max(others) if others else None,
        "discarded": discarded,
        "build_s": build_s,
    }
    if args.profile_top:
        if args.wait_idle:
            wait_idle(args.wait_idle)
        result["profile"] = profile_ops(pair.jax_step, pair.jax_run, pair.period, args.profile_top)
        result["torch_profile"] = profile_torch_ops(pair.torch_run, pair.period, args.profile_top)
        print(result["profile"] + "\n" + result["torch_profile"], flush=True)
    print(json.dumps(result), flush=True)
    return result


# --- report -------------------------------------------------------------------------------------------------


def machine_line(threads: int) -> str:
    import jax
    import torch

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return (
        f"{model}, {threads} CPU(s) used; Python {platform.python_version()}, jax {jax.__version__}, "
        f"torch {torch.__version__}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )


def markdown(report: dict) -> str:
    lines = [
        f"`{report['command']}`; {report['machine']}; {report['wall_s'] / 60:.0f} min in all.",
        "",
        "| model (config) | px | batch | params (G / D / E) | animejax img/s | torch img/s | animejax / torch speed "
        "| others' CPU (max cores) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['size']} | | | | | error: {r['error']} | |")
            continue
        lines.append(
            f"| {r['model']} ({r['config']}) | {r['size']} | {r['batch']} | {r['params']} | {r['animejax_ips']:.1f} "
            f"| {r['torch_ips']:.1f} | **{r['speed_ratio']:.2f}** | {r['others_max']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    threads = pin_threads(args.threads)
    if args.profile_top:
        enable_op_tracing()
    from animejax import xla_flags

    xla_flags.set_defaults()  # The CLI's defaults (animejax/xla_flags.py), before JAX starts.
    import torch

    torch.set_num_threads(threads)
    models = [m for m in args.entries.split(",") if m]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    unknown = [m for m in models if m not in MODELS] + [s for s in sizes if s not in (32, 64)]
    if unknown:
        raise SystemExit(f"Unknown entries or sizes {unknown}; choose from {MODELS} and 32, 64.")
    started = time.monotonic()
    results = []
    for size in sizes:
        for model in models:
            try:
                results.append(measure(model, size, args))
            except Exception as error:  # One broken entry must not cost the others' figures.
                import traceback

                traceback.print_exc()
                results.append({"model": model, "size": size, "error": f"{type(error).__name__}: {error}"[:200]})
    report = {
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/cpu_parity.py " + " ".join(argv),
        "machine": machine_line(threads),
        "wall_s": time.monotonic() - started,
        "results": results,
    }
    table = markdown(report)
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    return report


if __name__ == "__main__":
    main()
