"""StyleGAN3-T and -R against StyleGAN2 in one run: sec/kimg of the full jitted train step and of the synthesis
network alone, and the ratios SG3 / SG2 that NVlabs/stylegan3's docs/configs.md reports for its own code.

Every model is built by its method from its config (config_defaults.stylegan2_config / stylegan3_config at
`--resolution`), with the same overrides applied to all of them: batch, `--channel_base` / `--channel_max` (the
reference's StyleGAN3-R doubles both, as models/stylegan3.stylegan3_r_kwargs does here), dtype and
`--augment`. The discriminator is StyleGAN2's in all three (the same widths, so the same D), and every step
trains on the same fixed batch of random uint8 images.

Train step: `common.CompiledSteps` (the training loop's `make_train_step`, state donated, 1-device mesh),
compiled once ahead of time (compile seconds reported, excluded from the timings), warmed up, then timed over
windows that are whole multiples of the lazy period (lcm of every model's pl_interval and r1_interval, 16 by
default) so each model runs its lazy phases in training proportion. The phases are those of each config:
  SG2    Gmain with style mixing (0.9), Greg (path length every 4 steps), Dmain, Dreg (R1 every 16).
  SG3-T  Gmain, Dmain (the pass that moves the magnitude EMAs), Dreg; no path length, no style mixing.
  SG3-R  as SG3-T, plus the blur of D's inputs (sigma 10 fading over the first images; it is on throughout a
         short benchmark).
`--plain_sg2` (default on) also times "SG2 plain": StyleGAN2 with pl_weight 0 and style_mixing 0, the phases
SG3 runs, the like-for-like line. Its mapping network still has 8 layers (SG3's have 2), a negligible cost.
Windows alternate between the models `--repeats` times so a change in machine load hits all of them; medians.

Synthesis: a jitted ws -> image forward of each generator's synthesis network on a batch (`noise_mode` const
for SG2; SG3 has no noise), timed `--repeats` x `--synth_calls` calls, with XLA's cost analysis of that
forward in GFLOP per image (a machine-independent view of the ratio). `--config_width_flops` (default on) also
counts that forward at the configs' own widths, compiled but not run, for the ratio at sizes a CPU cannot time.

    python benchmarks/stylegan3_step.py --resolution=64 --channel_base=2048 --channel_max=64 --batch_size=8
    python benchmarks/stylegan3_step.py --resolution=256 --channel_base=1024 --channel_max=32 --batch_size=4 \
        --steps=4 --exact_steps                                            # 2 CPU cores, about 6 minutes
    python benchmarks/stylegan3_step.py --resolution=256 --batch_size=32 --json=sg3_256.json   # on a GPU

`--torch` times each StyleGAN3 model of `--models` against its eager-PyTorch twin instead
(benchmarks/stylegan3_torch.py: tests/reference/torch_stylegan3.py's generator and StyleGAN2's torch D from the
same initial weights, the same phases, Adams, blur, w_avg and EMAs), as benchmarks/stylegan2_step.py does for
StyleGAN2: a parity check first (the copied networks, float32), augmentation "none" (torch has no ADA), windows
of whole lazy periods alternating JAX and torch `--repeats` times, medians; it prints JAX img/s, torch img/s, the
speed ratio and JAX step time / torch step time. On CUDA torch runs on the GPU. The SG2 models and the synthesis
timings are left out of this mode (StyleGAN2's twin is stylegan2_step.py).

    python benchmarks/stylegan3_step.py --torch --models=sg3_t,sg3_r --resolution=32 --channel_base=256 \
        --channel_max=16 --z_dim=32 --num_layers=4 --batch_size=4 --steps=16 --repeats=3 --threads=2
                                     # 2 CPU cores: ~4 minutes of CPU, over half of it the two JAX compiles
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CompiledSteps, load_averages, pin_threads  # noqa: E402
from stylegan3_torch import make_torch_runners  # noqa: E402
from vae_step import machine  # noqa: E402

# NVlabs/stylegan3 docs/configs.md, "Configurations used in StyleGAN3 paper" (8 GPUs, batch 32): s/kimg on
# (V100, A100). The only tables there that list StyleGAN2 beside StyleGAN3-T and -R.
PAPER = {
    "FFHQ-U 1024": {"SG2": (17.55, 14.57), "SG3-T": (28.71, 20.01), "SG3-R": (34.12, 23.42)},
    "MetFaces-U 1024": {"SG2": (18.74, 11.80), "SG3-T": (29.84, 21.06), "SG3-R": (35.10, 24.32)},
    "AFHQv2 512": {"SG2": (10.90, 6.60), "SG3-T": (18.47, 12.29), "SG3-R": (20.44, 14.04)},
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=64, help="64 or 256 (the configs' sizes); 32 for tests.")
    parser.add_argument("--batch_size", type=int, default=0, help="Default: the configs' train.batch_size.")
    parser.add_argument("--channel_base", type=int, default=0, help="Override model.channel_base (all models).")
    parser.add_argument("--channel_max", type=int, default=0, help="Override model.channel_max (all models).")
    parser.add_argument("--z_dim", type=int, default=0, help="Override model.z_dim and w_dim (all models).")
    parser.add_argument("--num_layers", type=int, default=0, help="Override SG3's model.num_layers (14).")
    parser.add_argument("--steps", type=int, default=16, help="Timed steps per window; rounded up to the lazy period.")
    parser.add_argument("--exact_steps", action="store_true", help="Time exactly --steps (lazy phases reported).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed steps first (step 0 runs every phase).")
    parser.add_argument("--repeats", type=int, default=1, help="Alternating windows per model; medians reported.")
    parser.add_argument("--synth_calls", type=int, default=3, help="Synthesis forwards per timing.")
    parser.add_argument("--models", default="sg2,sg2_plain,sg3_t,sg3_r", help="Subset of sg2,sg2_plain,sg3_t,sg3_r.")
    parser.add_argument("--plain_sg2", type=int, default=1, help="0 drops sg2_plain from --models.")
    parser.add_argument("--augment", default="", help="stylegan.augment for all (ada, none, ...); default: configs'.")
    parser.add_argument("--dtype", default="float32", help="model.dtype for all (float32, bfloat16).")
    parser.add_argument("--threads", type=int, default=0, help="CPU cores to pin to; 0 for all.")
    parser.add_argument(
        "--config_width_flops",
        type=int,
        default=1,
        help="1: also count the synthesis GFLOP/image at the configs' own widths (compiled, not run).",
    )
    parser.add_argument(
        "--torch", action="store_true", help="Time the SG3 models of --models against their eager-PyTorch twins."
    )
    parser.add_argument("--json", default="", help="Write the results to this JSON file.")
    parser.add_argument("--xla_defaults", type=int, default=1, help="1: animejax's default XLA flags.")
    return parser.parse_args(argv)


LABELS = {"sg2": "SG2", "sg2_plain": "SG2 plain", "sg3_t": "SG3-T", "sg3_r": "SG3-R"}


def load_config(name: str, args: argparse.Namespace):
    """The model's config at args.resolution with the shared overrides."""
    from animejax.config_defaults import stylegan2_config, stylegan3_config

    size = "256" if args.resolution == 256 else ""
    if name.startswith("sg2"):
        config = stylegan2_config(size)
    else:
        config = stylegan3_config(("r_" + size if size else "r") if name == "sg3_r" else (size or "t"))
    model, style = config.model, config.stylegan
    if args.resolution not in (64, 256):
        config.data.image_size = args.resolution
    if args.batch_size:
        config.train.batch_size = args.batch_size
        if style.get("blur_fade_kimg"):
            style.blur_fade_kimg = config.train.batch_size * 200 / 32  # As the config's rule for its batch.
    if args.channel_base:
        model.channel_base = args.channel_base
    if args.channel_max:
        model.channel_max = args.channel_max
    if args.z_dim:
        model.z_dim = model.w_dim = args.z_dim
    if args.num_layers and "num_layers" in model:
        model.num_layers = args.num_layers
    if args.augment:
        style.augment = args.augment
    model.dtype = args.dtype
    if name == "sg2_plain":
        style.pl_weight = 0.0
        style.style_mixing = 0.0
    config.mesh.num_devices = 1
    return config


def lazy_intervals(config) -> list[int]:
    style = config.stylegan
    return [i for i in (style.pl_interval if style.pl_weight else 0, style.r1_interval if style.r1_gamma else 0) if i]


def lazy_counts(config, start: int, steps: int) -> str:
    """ "Greg x/Dreg y" among steps start ... start + steps - 1."""
    style = config.stylegan
    pl = style.pl_interval if style.pl_weight else 0
    r1 = style.r1_interval if style.r1_gamma else 0
    count = lambda i: sum(1 for s in range(start, start + steps) if s % i == 0) if i else 0  # noqa: E731
    return f"Greg {count(pl)}/Dreg {count(r1)}"


class Model:
    """One method's compiled train step and its jitted synthesis forward."""

    def __init__(self, name, config, images):
        import jax
        import jax.numpy as jnp

        self.name, self.config = name, config
        started = time.perf_counter()
        self.runner = CompiledSteps(config, images)
        self.setup_s = time.perf_counter() - started
        method, state = self.runner.method, self.runner.state
        self.method = method
        leaves = jax.tree.leaves
        g = state.g_params
        self.params = {
            "G": sum(x.size for x in leaves(g)),
            "G synthesis": sum(x.size for k, v in g.items() if "mapping" not in k.lower() for x in leaves(v)),
            "D": sum(x.size for x in leaves(state.d_params)),
        }
        batch = config.train.batch_size
        self.ws = jax.device_put(
            jax.random.normal(jax.random.PRNGKey(1), (batch, method.num_ws, method.w_dim), jnp.float32)
        )
        # Copies: the train step donates the state's buffers.
        g_copy = jax.tree.map(jnp.copy, (state.g_params, method.generator_buffers(state)))
        self.synth_args = (*g_copy, self.ws, jax.random.PRNGKey(2))

        def forward(g_params, buffers, ws, rng):
            return method.synthesis(g_params, buffers, ws, rng, noise_mode="const")

        started = time.perf_counter()
        self.synth = jax.jit(forward).lower(*self.synth_args).compile()
        self.synth_compile_s = time.perf_counter() - started
        cost = self.synth.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = (cost or {}).get("flops")
        self.synth_gflop_per_image = flops / batch / 1e9 if flops and flops > 0 else None
        self.step_s, self.synth_s, self.windows, self.loads = [], [], [], []

    def time_steps(self, steps: int) -> float:
        self.windows.append(lazy_counts(self.config, self.runner.step, steps))
        self.loads.append(os.getloadavg()[0])
        seconds = self.runner.run(steps)
        self.step_s.append(seconds / steps)
        return seconds

    def time_synthesis(self, calls: int) -> float:
        import jax

        jax.block_until_ready(self.synth(*self.synth_args))
        start = time.perf_counter()
        out = None
        for _ in range(calls):
            out = self.synth(*self.synth_args)
        jax.block_until_ready(out)
        seconds = (time.perf_counter() - start) / calls
        self.synth_s.append(seconds)
        return seconds

    def result(self) -> dict:
        import jax
        import numpy as np

        batch = self.config.train.batch_size
        step_s, synth_s = statistics.median(self.step_s), statistics.median(self.synth_s)
        metrics = jax.device_get(self.runner.metrics)
        finite = all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(metrics))
        model = self.config.model
        return {
            "label": LABELS[self.name],
            "arch": model.arch,
            "channel_base": model.channel_base,
            "channel_max": model.channel_max,
            "z_dim": model.z_dim,
            "mapping_layers": model.mapping_layers,
            "num_ws": self.method.num_ws,
            "pl_weight": self.config.stylegan.pl_weight,
            "style_mixing": self.config.stylegan.style_mixing,
            "params": self.params,
            "compile_s": self.runner.compile_s,
            "init_and_compile_s": self.setup_s,
            "synth_compile_s": self.synth_compile_s,
            "step_s": step_s,
            "step_s_all": self.step_s,
            "sec_per_kimg": step_s / batch * 1000,
            "synth_s": synth_s,
            "synth_sec_per_kimg": synth_s / batch * 1000,
            "synth_gflop_per_image": self.synth_gflop_per_image,
            "windows": self.windows,
            "loads": self.loads,
            "finite_metrics": bool(finite),
            "loss_g": float(metrics["train/loss_g"]),
            "loss_d": float(metrics["train/loss_d"]),
        }


def synthesis_gflop(config) -> float | None:
    """XLA's cost analysis of the ws -> image synthesis forward of `config`, GFLOP per image (shapes only)."""
    import jax
    import jax.numpy as jnp

    from animejax import methods

    method = methods.get_method(config)
    size, batch = config.data.image_size, config.train.batch_size
    example = {"image": jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)}
    state = jax.eval_shape(method.init_state, jax.random.PRNGKey(0), example)
    ws = jax.ShapeDtypeStruct((batch, method.num_ws, method.w_dim), jnp.float32)

    def forward(g_params, buffers, ws):
        return method.synthesis(g_params, buffers, ws, jax.random.PRNGKey(0), noise_mode="const")

    cost = jax.jit(forward).lower(state.g_params, method.generator_buffers(state), ws).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = (cost or {}).get("flops")
    return flops / batch / 1e9 if flops and flops > 0 else None


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0 or args.synth_calls < 1:
        raise SystemExit("--steps, --repeats and --synth_calls must be >= 1, --warmup >= 0.")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not args.plain_sg2:
        names = [n for n in names if n != "sg2_plain"]
    unknown = [n for n in names if n not in LABELS]
    if unknown or not names:
        raise SystemExit(f"--models: unknown {unknown}; choose from {', '.join(LABELS)}.")
    threads = pin_threads(args.threads)
    sys.path.insert(0, REPO)
    if args.xla_defaults:
        from animejax import xla_flags

        xla_flags.set_defaults()
    if args.torch:
        return torch_main(args, argv, names, threads)
    import jax
    import numpy as np

    configs = {name: load_config(name, args) for name in names}
    first = configs[names[0]]
    size, batch = first.data.image_size, first.train.batch_size
    period = math.lcm(*[i for c in configs.values() for i in lazy_intervals(c)] or [1])
    steps = args.steps if args.exact_steps else -(-args.steps // period) * period
    images = np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    device = jax.devices()[0]
    print(
        f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}, {threads} thread(s); "
        f"jax {jax.__version__} on {device.platform} ({device.device_kind}); "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load {load_averages()}",
        flush=True,
    )
    print(
        f"# {size} px, batch {batch}, {args.dtype}, augment {first.stylegan.augment}; overrides for all models: "
        f"channel_base {args.channel_base or 'config'}, channel_max {args.channel_max or 'config'}, "
        f"z/w {args.z_dim or 'config'}; SG3-R doubles channel_base and channel_max (as the reference)",
        flush=True,
    )
    models = {}
    for name in names:
        config = configs[name]
        model = Model(name, config, images)
        models[name] = model
        m = config.model
        print(
            f"# {LABELS[name]}: {m.arch}, channel_base {m.channel_base}, channel_max {m.channel_max}, z/w "
            f"{m.z_dim}/{m.w_dim}, mapping {m.mapping_layers}, num_ws {model.method.num_ws}, pl_weight "
            f"{config.stylegan.pl_weight}, style_mixing {config.stylegan.style_mixing}; params G "
            f"{model.params['G']:,} (synthesis {model.params['G synthesis']:,}) / D {model.params['D']:,}; "
            f"step compile {model.runner.compile_s:.1f} s (init + compile {model.setup_s:.1f} s), synthesis "
            f"compile {model.synth_compile_s:.1f} s",
            flush=True,
        )
    for model in models.values():
        start = time.perf_counter()
        model.runner.run(args.warmup)
        print(f"# {LABELS[model.name]} warm-up {args.warmup} step(s) {time.perf_counter() - start:.1f} s", flush=True)
    print(f"# timed windows of {steps} steps (lazy period {period}), {args.repeats} alternating repeat(s)", flush=True)
    for repeat in range(args.repeats):
        for model in models.values():
            seconds = model.time_steps(steps)
            model.time_synthesis(args.synth_calls)
            print(
                f"# repeat {repeat + 1} {LABELS[model.name]}: {seconds:.1f} s, {seconds / steps / batch * 1000:.1f} "
                f"sec/kimg ({model.windows[-1]}); synthesis {model.synth_s[-1] * 1000:.1f} ms/batch; "
                f"load {model.loads[-1]:.2f}",
                flush=True,
            )
    results = {name: model.result() for name, model in models.items()}
    bad = [LABELS[n] for n, r in results.items() if not r["finite_metrics"]]
    if bad:
        raise SystemExit(f"non-finite metrics: {bad}")

    base = results.get("sg2")
    header = (
        "| model | params G synthesis / D | step compile s | train sec/kimg | / SG2 | / SG2 plain "
        "| synthesis sec/kimg | / SG2 | synthesis GFLOP/img | / SG2 |"
    )
    rows = [header, "|---|---|---|---|---|---|---|---|---|---|"]

    def ratio(value, name, key):
        ref = results.get(name)
        return f"{value / ref[key]:.2f}" if ref and ref[key] else ""

    for name, r in results.items():
        gflop = r["synth_gflop_per_image"]
        base_gflop = base["synth_gflop_per_image"] if base else None
        gflop_ratio = f"{gflop / base_gflop:.2f}" if gflop and base_gflop else ""
        rows.append(
            f"| {r['label']} | {r['params']['G synthesis']:,} / {r['params']['D']:,} | {r['compile_s']:.1f} "
            f"| {r['sec_per_kimg']:.1f} | {ratio(r['sec_per_kimg'], 'sg2', 'sec_per_kimg')} "
            f"| {ratio(r['sec_per_kimg'], 'sg2_plain', 'sec_per_kimg')} | {r['synth_sec_per_kimg']:.2f} "
            f"| {ratio(r['synth_sec_per_kimg'], 'sg2', 'synth_sec_per_kimg')} "
            f"| {'' if gflop is None else f'{gflop:.2f}'} | {gflop_ratio} |"
        )
    table = "\n".join(rows)
    print(table)
    ratios = {}
    for sg3 in ("sg3_t", "sg3_r"):
        for ref in ("sg2", "sg2_plain"):
            if sg3 in results and ref in results:
                for key in ("sec_per_kimg", "synth_sec_per_kimg"):
                    ratios[f"{LABELS[sg3]}/{LABELS[ref]} {key}"] = results[sg3][key] / results[ref][key]
    paper = {
        f"{data} {sg3}/SG2 {gpu}": times[sg3][i] / times["SG2"][i]
        for data, times in PAPER.items()
        for sg3 in ("SG3-T", "SG3-R")
        for i, gpu in enumerate(("V100", "A100"))
    }
    print("# ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    print("# paper (NVlabs/stylegan3 docs/configs.md, 8 GPUs): " + ", ".join(f"{k} {v:.2f}" for k, v in paper.items()))
    config_flops = {}
    if args.config_width_flops:
        for name in names:
            defaults = {"channel_base": 0, "channel_max": 0, "z_dim": 0, "num_layers": 0}
            wide = argparse.Namespace(**{**vars(args), **defaults})
            config = load_config(name, wide)
            gflop = synthesis_gflop(config)
            config_flops[name] = {
                "channel_base": config.model.channel_base,
                "channel_max": config.model.channel_max,
                "gflop_per_image": gflop,
            }
        sg2 = config_flops.get("sg2", config_flops.get("sg2_plain", {})).get("gflop_per_image")
        print(
            f"# synthesis GFLOP/image at the configs' widths ({size} px; XLA cost analysis, not run): "
            + ", ".join(
                f"{LABELS[n]} {f['gflop_per_image']:.2f} (channel_base {f['channel_base']}, max {f['channel_max']}"
                + (f"; {f['gflop_per_image'] / sg2:.2f}x SG2)" if sg2 and f["gflop_per_image"] else ")")
                for n, f in config_flops.items()
                if f["gflop_per_image"]
            ),
            flush=True,
        )
    print(f"# load averages now {load_averages()}", flush=True)
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/stylegan3_step.py " + " ".join(argv),
        "machine": machine(),
        "device": f"{device.platform} ({device.device_kind})",
        "threads": threads,
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "resolution": size,
        "batch_size": batch,
        "dtype": args.dtype,
        "augment": first.stylegan.augment,
        "steps_per_window": steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "results": results,
        "config_width_synthesis_gflop": config_flops,
        "ratios": ratios,
        "paper_ratios": paper,
        "paper_sec_per_kimg": PAPER,
        "load_end": load_averages(),
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


def torch_main(args: argparse.Namespace, argv: list[str], names: list[str], threads: int) -> dict:
    """--torch: each SG3 model's animejax step against its eager-PyTorch twin (see the module docstring)."""
    import jax
    import numpy as np
    import stylegan2_step
    import torch

    names = [n for n in names if n.startswith("sg3")]
    if not names:
        raise SystemExit("--torch compares the StyleGAN3 models: put sg3_t and/or sg3_r in --models.")
    if args.augment not in ("", "none"):
        raise SystemExit(f"--torch runs without augmentation (the torch side has no ADA), got --augment={args.augment}")
    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_default_device(device)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # As the reference's training loop.
    configs = {}
    for name in names:
        configs[name] = config = load_config(name, args)
        config.stylegan.augment = "none"
    first = configs[names[0]]
    size, batch = first.data.image_size, first.train.batch_size
    period = math.lcm(*[i for c in configs.values() for i in lazy_intervals(c)] or [1])
    steps = args.steps if args.exact_steps else -(-args.steps // period) * period
    images = np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    print(
        f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}, {threads} thread(s); "
        f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} ({device}); "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; load {load_averages()}",
        flush=True,
    )
    runners = {}
    for name in names:
        config, m = configs[name], configs[name].model
        started = time.perf_counter()
        jax_run, torch_run, _ = make_torch_runners(config, images)
        setup_s = time.perf_counter() - started
        runners[name] = (jax_run, torch_run)
        jax_runner, torch_runner = jax_run.__self__, torch_run.__self__
        counts = jax_runner.param_counts()
        print(
            f"# {LABELS[name]}: {m.arch}, {size} px, batch {batch}, channel_base {m.channel_base}, channel_max "
            f"{m.channel_max}, z/w {m.z_dim}/{m.w_dim}, num_layers {m.num_layers}, blur sigma "
            f"{config.stylegan.get('blur_init_sigma', 0.0)}; params G {counts['G']:,} / D {counts['D']:,} (equal in "
            f"both); JAX {args.dtype}; setup {setup_s:.1f} s (JAX compile {jax_runner.compile_s:.1f} s)",
            flush=True,
        )
        print(
            "# parity (float32, copied weights), max |JAX - torch| / max |torch|: "
            + ", ".join(f"{k} {v:.1e}" for k, v in torch_runner.parity.items()),
            flush=True,
        )
    for name, (jax_run, torch_run) in runners.items():
        start = time.perf_counter()
        jax_run(args.warmup)
        jax_s = time.perf_counter() - start
        torch_s = torch_run(args.warmup)
        print(f"# {LABELS[name]} warm-up {args.warmup} step(s): JAX {jax_s:.1f} s, torch {torch_s:.1f} s", flush=True)
    print(
        f"# timed windows of {steps} steps (lazy period {period}; Dreg "
        f"{stylegan2_step.lazy_counts(first, args.warmup, steps)[1]}x in the first), {args.repeats} alternating "
        f"repeat(s), the same step numbers in both frameworks",
        flush=True,
    )
    rates = {name: {"jax": [], "torch": []} for name in names}
    loads = []
    for repeat in range(args.repeats):
        for name, (jax_run, torch_run) in runners.items():
            loads.append(os.getloadavg()[0])
            rates[name]["jax"].append(steps * batch / jax_run(steps))
            rates[name]["torch"].append(steps * batch / torch_run(steps))
            print(
                f"# repeat {repeat + 1} {LABELS[name]}: JAX {rates[name]['jax'][-1]:.2f} img/s, torch "
                f"{rates[name]['torch'][-1]:.2f} img/s; load {loads[-1]:.2f}",
                flush=True,
            )
    total = args.warmup + args.repeats * steps
    header = (
        "| model | px | batch | dtype | params G / D | JAX img/s | torch img/s | JAX / torch speed "
        "| JAX time / torch time | JAX compile s |"
    )
    rows = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    results = {}
    for name, (jax_run, torch_run) in runners.items():
        jax_runner, torch_runner = jax_run.__self__, torch_run.__self__
        greg, dreg = stylegan2_step.lazy_counts(configs[name], 0, total)
        expected = {"Gmain": total, "Greg": greg, "Dmain": total, "Dreg": dreg}
        if torch_runner.phases != expected or jax_runner.step != total:
            raise SystemExit(f"{LABELS[name]}: phase counts differ: torch {torch_runner.phases}, expected {expected}")
        jax_metrics = jax.device_get(jax_runner.metrics)
        torch_metrics = {k: float(v) for k, v in torch_runner.metrics.items()}
        finite = all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(jax_metrics))
        if not finite or not all(np.isfinite(list(torch_metrics.values()))):
            raise SystemExit(f"{LABELS[name]}: non-finite metrics: JAX {jax_metrics}, torch {torch_metrics}")
        jax_ips, torch_ips = statistics.median(rates[name]["jax"]), statistics.median(rates[name]["torch"])
        counts = jax_runner.param_counts()
        results[name] = {
            "label": LABELS[name],
            "arch": configs[name].model.arch,
            "params": counts,
            "parity": torch_runner.parity,
            "compile_s": jax_runner.compile_s,
            "jax_img_per_s": jax_ips,
            "torch_img_per_s": torch_ips,
            "jax_img_per_s_all": rates[name]["jax"],
            "torch_img_per_s_all": rates[name]["torch"],
            "speed_ratio": jax_ips / torch_ips,
            "time_ratio": torch_ips / jax_ips,
            "phases": expected,
            "loss_g": {"jax": float(jax_metrics["train/loss_g"]), "torch": torch_metrics["loss_g"]},
            "loss_d": {"jax": float(jax_metrics["train/loss_d"]), "torch": torch_metrics["loss_d"]},
        }
        rows.append(
            f"| {LABELS[name]} | {size} | {batch} | {args.dtype} | {counts['G']:,} / {counts['D']:,} | {jax_ips:.2f} "
            f"| {torch_ips:.2f} | {jax_ips / torch_ips:.2f} | {torch_ips / jax_ips:.3f} | {jax_runner.compile_s:.1f} |"
        )
        print(
            f"# {LABELS[name]} last step: JAX loss_g {results[name]['loss_g']['jax']:.3f} loss_d "
            f"{results[name]['loss_d']['jax']:.3f}; torch loss_g {torch_metrics['loss_g']:.3f} loss_d "
            f"{torch_metrics['loss_d']:.3f}; phases per framework {expected}",
            flush=True,
        )
    print("\n".join(rows))
    print(f"# 1-min load during timings {min(loads):.2f} to {max(loads):.2f}; load averages now {load_averages()}")
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/stylegan3_step.py " + " ".join(argv),
        "machine": machine(),
        "threads": threads,
        "jax": jax.__version__,
        "torch": f"{torch.__version__} ({device})",
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "resolution": size,
        "batch_size": batch,
        "dtype": args.dtype,
        "augment": "none",
        "steps_per_window": steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "torch_results": results,
        "loads": loads,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
