"""Every accelerator figure animejax promises, from one command: train steps against PyTorch, FLOP utilisation,
FID features against pytorch-fid, a 50k-sample FID end to end, the Fréchet distance, and sampling throughput.

Each entry runs animejax and, where one exists, the PyTorch version of the same network (the benchmarks'
references: benchmarks/vae_step.py, gan_step.py, diffusion_step.py; torch on CUDA when present) in the same
process, in float32 and bfloat16 (`model.dtype`; torch under `torch.autocast(bfloat16)`). The model FLOP
utilisation (MFU) is XLA's cost analysis of the compiled train step (FLOPs per step) over the measured step
time, against the GPU's dense peak (bf16 tensor cores for bfloat16, TF32 for float32). Results go to
`<out>/gpu_suite.json` and `<out>/gpu_suite.md`, a table ready for BENCHMARKS.md with the machine and date.

The whole suite stops starting entries after `--budget_s` (default 270 s, so a run fits in 5 minutes with
the last entry and the start-up); entries left out are listed as skipped. The order puts the figures with
targets first. `--dry_run` runs the same code paths on a CPU with tiny models, every family once in float32
and DCGAN in bfloat16 as well (XLA:CPU compiles bf16 graphs slowly), and the test suite runs it. A dry run
is mostly compiling, so it runs its entries in two processes side by side where there are two cores
(`--workers`); a GPU run keeps one, as its timings need the machine alone.

On the GPU machine (Python 3.12, jax with CUDA, flax, optax, orbax, chex, torch; no network) the missing
pure-Python packages travel as wheels next to the code; see BENCHMARKS.md, "GPU suite", for the download
command. Then:

  python benchmarks/gpu_suite.py --out=/tmp/suite          # on the GPU
  python benchmarks/gpu_suite.py --dry_run --out=/tmp/dry  # on a CPU
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

FAMILIES = ("ddpm", "stylegan2", "dcgan", "resdcgan", "wgan_gp", "vae", "srgan", "stylegan3")
DTYPES = ("bfloat16", "float32")
# Dense peak FLOP/s by device kind (NVIDIA data sheets, SXM parts): (bf16 tensor core, TF32 tensor core).
# A dry run's figures mean nothing, so it compiles with LLVM's optimisations off and XLA:CPU's older elemental
# fusion emitters instead of its MLIR ones: StyleGAN2's step compiles in 38 -> 25 s on 2 CPU cores with the
# first two flags, then 14.9 -> 10.7 s (its dry-run size) with the third.
DRY_RUN_XLA_FLAGS = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true --xla_cpu_use_fusion_emitters=false"
)
PEAK_FLOPS = {"H100": (989e12, 494e12), "H200": (989e12, 494e12), "A100": (312e12, 156e12), "V100": (125e12, 15.7e12)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "animejax_gpu_suite"))
    parser.add_argument("--dry_run", action="store_true", help="Tiny sizes on the CPU: checks every code path.")
    parser.add_argument("--budget_s", type=float, default=None, help="Start no entry after this many seconds.")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--fid_images", type=int, default=50_000, help="Generated images of the end-to-end FID.")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Processes running entries side by side: dry runs only (timings on a GPU need it alone); "
        "default one per core, at most 2.",
    )
    args = parser.parse_args(argv)
    if args.workers is None:
        args.workers = min(2, os.cpu_count() or 1) if args.dry_run else 1
    if args.workers < 1 or (args.workers > 1 and not args.dry_run):
        parser.error(f"--workers={args.workers}: give 1, or more with --dry_run only (timed entries run alone)")
    return args


class Sizes:
    """Step counts and image counts of a full run (GPU) or a dry run (CPU)."""

    def __init__(self, dry_run: bool, fid_images: int):
        self.variant = "quick" if dry_run else ""  # Configs' :quick (32 px, small) or their default (64 px).
        self.batch = 8 if dry_run else 64
        self.warmup, self.steps, self.repeats = (1, 1, 1) if dry_run else (3, 10, 3)
        self.sample_images = 8 if dry_run else 1_000  # DDIM-50 target: 1,000 64 px images in under 60 s.
        self.sample_batch = 8 if dry_run else 250
        self.ddim_steps = 4 if dry_run else 50
        # A dry run's Inception runs LLVM-unoptimised code (DRY_RUN_XLA_FLAGS): one batch of 8 images each time.
        self.feature_images, self.feature_batch = (8, 8) if dry_run else (10_000, 250)
        self.fid_images = 8 if dry_run else fid_images
        self.fid_reference_images = 8 if dry_run else 10_000
        self.frechet_dim = 64 if dry_run else 2048


# --- helpers ------------------------------------------------------------------------------------------------


def load_config(family: str, sizes: Sizes, dtype: str):
    import importlib

    config = importlib.import_module(f"animejax.configs.{family}").get_config(sizes.variant)
    config.model.dtype = dtype
    config.train.batch_size = sizes.batch
    config.mesh.num_devices = 1
    if family == "ddpm":
        config.model.dropout = 0.0  # Equal work in both frameworks.
        if sizes.variant == "quick":  # The dry run: two levels, attention on the lower one, still every layer.
            config.model.channel_multipliers, config.model.attention_resolutions = (1, 2), (16,)
    if family == "srgan":  # Pixel content loss (no VGG file), the paper's batch of 16 (64 -> 256 px on a GPU).
        config.srgan.content_loss = "pixel"
        config.train.batch_size = min(sizes.batch, 16)
        if sizes.variant == "quick":
            config.data.image_size = 32
            config.model.channels, config.model.num_blocks, config.model.d_channels = 8, 1, 8
    if family in ("stylegan2", "stylegan3"):
        config.stylegan.augment = "none"  # The torch versions have no ADA (benchmarks/stylegan2_step.py).
        if sizes.variant == "quick":  # The dry run: the narrowest networks that exercise every layer.
            config.model.z_dim = config.model.w_dim = 8
            config.model.channel_base, config.model.channel_max = 256, 16
            if family == "stylegan3":
                config.model.num_layers = 4
            # Regularisers on every step: one phase to compile (both regularisers), which holds the plain one.
            config.stylegan.r1_interval = config.stylegan.pl_interval = 1
    return config


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_autocast(dtype: str):
    """bf16 autocast for the torch side of a bfloat16 entry; nothing for float32."""
    import torch

    if dtype != "bfloat16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch_device(), dtype=torch.bfloat16)


def step_flops(compiled) -> float | None:
    """FLOPs of one compiled train step, from XLA's cost analysis (None when the backend gives none)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def mean_step_flops(runner, period: int) -> float | None:
    """Mean FLOPs of a `common.CompiledSteps` step over `period` steps, each counted in its phase's compiled step
    (StyleGAN's lazy regularisation runs only on some steps)."""
    flops = [step_flops(runner.compiled_for_step(step)) for step in range(period)]
    return None if None in flops else statistics.mean(flops)


def peak_flops(dtype: str) -> float | None:
    import jax

    kind = jax.devices()[0].device_kind
    for name, (bf16, tf32) in PEAK_FLOPS.items():
        if name in kind:
            return bf16 if dtype == "bfloat16" else tf32
    return None


def median_rate(run, count: int, repeats: int) -> float:
    """Median items/s of `run()` (returns seconds) doing `count` items, over `repeats` calls."""
    return statistics.median(count / run() for _ in range(repeats))


# --- entries ------------------------------------------------------------------------------------------------


class TrainPair:
    """A family's animejax step (as the loop builds it) and its PyTorch reference on the same batch."""

    def __init__(self, family: str, config, images):
        import diffusion_step
        import gan_step
        import jax
        import numpy as np
        import vae_step
        from common import CompiledSteps

        device = torch_device()  # Also torch's default device (set in `main`), which the runners rely on.
        images_nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        if family in ("stylegan2", "stylegan3", "srgan"):  # Their benchmarks pair the steps (and compile JAX's).
            import srgan_step
            import stylegan2_step
            import stylegan3_torch

            if family == "stylegan2":
                jax_run, self.torch_run, self.jax_step = stylegan2_step.make_runners(config, images)
            elif family == "stylegan3":
                jax_run, self.torch_run, self.jax_step = stylegan3_torch.make_torch_runners(config, images)
            else:  # The adversarial phase: D's step, then G's.
                jax_run, self.torch_run, self.jax_step = srgan_step.make_runners(config, images, "adversarial")
            self.runner, self.jax_run = jax_run.__self__, jax_run
            return
        compiled_steps = CompiledSteps(config, images)
        self.jax_step, self.runner, self.jax_run = compiled_steps.jax_step, compiled_steps, compiled_steps.run
        if family == "ddpm":
            reference = diffusion_step.TorchDiffusion(config, jax.device_get(compiled_steps.state.params), device)
            self.torch_run = lambda steps: reference.train(images_nchw, steps)
            return
        if family == "vae":
            runner = vae_step.TorchRunner(config, images_nchw, "default", False)
        else:
            runner = gan_step.TorchRunner(config, images_nchw)
        runner.images = runner.images.to(device)  # torch.from_numpy made them on the CPU.
        self.torch_run = runner.run


def train_entry(family: str, dtype: str, sizes: Sizes) -> dict:
    import numpy as np
    from common import lazy_period

    config = load_config(family, sizes, dtype)
    size, batch = config.data.image_size, config.train.batch_size
    images = np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    start = time.perf_counter()
    pair = TrainPair(family, config, images)
    pair.jax_run(sizes.warmup)
    flops = mean_step_flops(pair.runner, lazy_period(config))
    compile_s = time.perf_counter() - start
    with torch_autocast(dtype):
        pair.torch_run(sizes.warmup)
    jax_rates, torch_rates = [], []
    for _ in range(sizes.repeats):  # Alternating, medians reported.
        jax_rates.append(sizes.steps * batch / pair.jax_run(sizes.steps))
        with torch_autocast(dtype):
            torch_rates.append(sizes.steps * batch / pair.torch_run(sizes.steps))
    jax_ips, torch_ips = statistics.median(jax_rates), statistics.median(torch_rates)
    result = {
        "entry": f"train {family}",
        "dtype": dtype,
        "shape": f"{size} px, batch {batch}",
        "animejax": jax_ips,
        "reference": torch_ips,
        "unit": "img/s",
        "ratio": jax_ips / torch_ips,
        "compile_s": compile_s,
    }
    peak = peak_flops(dtype)
    if flops:
        result["tflops_per_step"] = flops / 1e12
        achieved = flops * jax_ips / batch
        result["achieved_tflops"] = achieved / 1e12
        result["mfu"] = achieved / peak if peak else None
    return result


def upscale_entry(dtype: str, sizes: Sizes) -> dict:
    """SRGAN's 4x upscaling (eval-mode SRResNet) against the same network in torch (benchmarks/srgan_step.py)."""
    import numpy as np
    import srgan_step

    config = load_config("srgan", sizes, dtype)
    size, batch = config.data.image_size, config.train.batch_size
    images = np.random.default_rng(0).integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    jax_run, torch_run, _ = srgan_step.make_runners(config, images, "upscale")
    jax_run(sizes.warmup)
    torch_run(sizes.warmup)
    jax_ips = median_rate(lambda: jax_run(sizes.steps), sizes.steps * batch, sizes.repeats)
    torch_ips = median_rate(lambda: torch_run(sizes.steps), sizes.steps * batch, sizes.repeats)
    return {
        "entry": "upscale srgan 4x",
        "dtype": dtype,
        "shape": f"{size // config.model.scale} -> {size} px, batch {batch}",
        "animejax": jax_ips,
        "reference": torch_ips,
        "unit": "img/s",
        "ratio": jax_ips / torch_ips,
    }


def sampling_entry(family: str, dtype: str, sizes: Sizes) -> dict:
    """method.generate's images/s (the eval sampler for diffusion, forced to DDIM-50) from a fresh state."""
    import jax

    if family == "srgan":  # Conditional: it upscales instead of sampling.
        return upscale_entry(dtype, sizes)

    from animejax import methods

    config = load_config(family, sizes, dtype)
    if family == "ddpm":
        config.eval.sampler, config.eval.sampler_steps = "ddim", sizes.ddim_steps
    method = methods.get_method(config)
    size = config.data.image_size
    example = {"image": jax.numpy.zeros((sizes.batch, size, size, 3))}
    state = jax.jit(method.init_state)(jax.random.PRNGKey(0), example)
    generate = jax.jit(lambda state, key: method.generate(state, key, sizes.sample_batch))
    start = time.perf_counter()
    jax.block_until_ready(generate(state, jax.random.PRNGKey(1)))
    compile_s = time.perf_counter() - start

    def run() -> float:
        begin = time.perf_counter()
        out = None
        for index in range(0, sizes.sample_images, sizes.sample_batch):
            out = generate(state, jax.random.PRNGKey(index))
        jax.block_until_ready(out)
        return time.perf_counter() - begin

    seconds = run()
    what = f"DDIM-{sizes.ddim_steps}" if family == "ddpm" else "generate"
    return {
        "entry": f"sample {family} ({what})",
        "dtype": dtype,
        "shape": f"{sizes.sample_images} images of {size} px, batch {sizes.sample_batch}",
        "animejax": sizes.sample_images / seconds,
        "unit": "img/s",
        "seconds": seconds,
        "compile_s": compile_s,
    }


# What each layer choice times: the network that uses the layer, animejax's CPU choice against XLA's native op.
LAYER_CHOICES = {
    "transposed": ("DCGAN G fwd+bwd: phase-split vs native transposed conv", "phases"),
    "strided": ("DCGAN D fwd+bwd: space-to-depth vs native strided conv", "space_to_depth"),
}


def layer_choice_entry(layer: str, dtype: str, sizes: Sizes) -> dict:
    """The paper DCGAN's generator (`layer` "transposed": its transposed convolutions as four phase convolutions)
    or discriminator ("strided": its 4x4 stride-2 convolutions as 2x2 ones on the space-to-depth input), forward
    and backward, in animejax's CPU formulation against XLA's native op (the GPU/TPU choice): the measurement
    `animejax.models.layers.<layer>_conv_implementation` is to follow on this backend."""
    import jax
    import jax.numpy as jnp
    from common import force_layer_implementation

    from animejax.models import dcgan, layers

    config = load_config("dcgan", sizes, dtype)
    size, compute_dtype = config.data.image_size, jnp.dtype(dtype)
    if layer == "transposed":
        model = dcgan.Generator(size, config.model.latent_dim, config.model.g_channels, "transpose", compute_dtype)
        inputs = jax.random.normal(jax.random.PRNGKey(0), (sizes.batch, config.model.latent_dim))
    else:
        model = dcgan.Discriminator(size, config.model.d_channels, config.model.d_normalization, compute_dtype)
        inputs = jax.random.uniform(jax.random.PRNGKey(0), (sizes.batch, size, size, 3), minval=-1, maxval=1)
    variables = model.init(jax.random.PRNGKey(1), inputs)
    name, cpu_choice = LAYER_CHOICES[layer]

    def timed(implementation: str):
        with force_layer_implementation(layer, implementation):

            @jax.jit
            def step(params, inputs):
                def loss(params):
                    outputs, _ = model.apply({**variables, "params": params}, inputs, mutable=["batch_stats"])
                    return jnp.mean(jnp.square(outputs.astype(jnp.float32)))

                return jax.grad(loss)(params)

            compiled = step.lower(variables["params"], inputs).compile()

        def run(count: int) -> float:
            begin = time.perf_counter()
            for _ in range(count):
                grads = compiled(variables["params"], inputs)
            jax.block_until_ready(grads)
            return time.perf_counter() - begin

        run(sizes.warmup)
        return run

    ours, native = timed(cpu_choice), timed("native")
    our_rates, native_rates = [], []
    for _ in range(sizes.repeats):  # Alternating, medians reported.
        our_rates.append(sizes.steps * sizes.batch / ours(sizes.steps))
        native_rates.append(sizes.steps * sizes.batch / native(sizes.steps))
    our_ips, native_ips = statistics.median(our_rates), statistics.median(native_rates)
    return {
        "entry": name,
        "dtype": dtype,
        "shape": f"{size} px, batch {sizes.batch}",
        "animejax": our_ips,
        "reference": native_ips,
        "unit": "img/s",
        "ratio": our_ips / native_ips,
        "uses": getattr(layers, f"{layer}_conv_implementation")(),  # What animejax runs on this backend now.
    }


def fid_features_entry(sizes: Sizes) -> dict:
    """animejax's jitted FID Inception against pytorch-fid, same random weights (benchmarks/fid_features.py)."""
    import fid_features
    import numpy as np

    device = torch_device()
    images, where = fid_features.load_images(sizes.feature_images, 64)
    model, state_dict = fid_features.torch_network(device)
    torch_rate, torch_first = fid_features.time_torch(model, images, sizes.feature_batch, device)
    jax_rate, jax_first = fid_features.time_jax(state_dict, images, sizes.feature_batch)
    return {
        "entry": "FID Inception features vs pytorch-fid",
        "dtype": "float32",
        "shape": f"{sizes.feature_images} images of 64 px ({where}), batch {sizes.feature_batch}",
        "animejax": jax_rate,
        "reference": torch_rate,
        "unit": "img/s",
        "ratio": jax_rate / torch_rate,
        "max_rel_diff": float(np.abs(jax_first - torch_first).max() / np.abs(torch_first).max()),
    }


def fid_end_to_end_entry(sizes: Sizes) -> dict:
    """A DCGAN's FID through the evaluator: sampling, Inception features, statistics and distance, timed."""
    import fid_features
    import jax
    import numpy as np
    import torch

    from animejax import methods, sharding
    from animejax.evaluation import Evaluator
    from animejax.pretrained import inception as pretrained_inception

    config = load_config("dcgan", sizes, "float32")
    _, state_dict = fid_features.torch_network("cpu")  # Random weights in the released file's layout.
    weights = os.path.join(tempfile.mkdtemp(), pretrained_inception.FID_WEIGHTS_FILENAME)
    torch.save({name: torch.from_numpy(array) for name, array in state_dict.items()}, weights)
    config.eval.inception_path = weights
    config.eval.batch_size = sizes.sample_batch
    config.eval.weights_cache_dir = os.path.dirname(weights)
    size = config.data.image_size
    reals = np.random.default_rng(1).integers(0, 256, (sizes.fid_reference_images, size, size, 3), np.uint8)
    evaluator = Evaluator(config.eval, sharding.make_mesh(1), reals, "suite_random", "suite")
    start = time.perf_counter()
    evaluator.reference(sizes.fid_reference_images)
    reference_s = time.perf_counter() - start
    method = methods.get_method(config)
    state = jax.jit(method.init_state)(jax.random.PRNGKey(0), {"image": jax.numpy.zeros((8, size, size, 3))})
    evaluator.evaluate(  # Compiles.
        method.generate, state, jax.random.PRNGKey(2), ("fid",), sizes.sample_batch, sizes.fid_reference_images
    )
    start = time.perf_counter()
    results = evaluator.evaluate(
        method.generate, state, jax.random.PRNGKey(3), ("fid",), sizes.fid_images, sizes.fid_reference_images
    )
    seconds = time.perf_counter() - start
    return {
        "entry": f"FID of a DCGAN end to end ({sizes.fid_images} samples)",
        "dtype": "float32",
        "shape": f"{size} px, eval batch {sizes.sample_batch}; reference stats of {sizes.fid_reference_images} "
        f"images took {reference_s:.1f} s",
        "animejax": seconds,
        "unit": "s",
        "value": float(next(iter(results.values()))),
    }


def frechet_entry(sizes: Sizes) -> dict:
    import frechet_distance

    result = frechet_distance.main([f"--dim={sizes.frechet_dim}", "--num=5000", "--repeats=1"])
    return {
        "entry": f"Fréchet distance, D={sizes.frechet_dim}",
        "dtype": "float64",
        "shape": f"backend {result['backend']}",
        "animejax": result["animejax_s"],
        "reference": result.get("pytorch_fid_s"),
        "unit": "s",
        "ratio": result.get("speedup"),
        "rel_diff": result.get("rel_diff"),
    }


def plan(args: argparse.Namespace, sizes: Sizes) -> list[tuple[str, object]]:
    """(name, thunk) in priority order: the figures with targets first."""
    families = [f for f in args.families.split(",") if f]
    dtypes = [d for d in args.dtypes.split(",") if d]
    unknown = sorted(set(families) - set(FAMILIES)) + sorted(set(dtypes) - set(DTYPES))
    if unknown:
        raise SystemExit(f"Unknown families or dtypes {unknown}; choose from {FAMILIES} and {DTYPES}.")
    if args.dry_run:  # Every family once in float32, DCGAN in bfloat16 too: each code path, tiny and quick.
        pairs = [(family, "float32") for family in families] + [("dcgan", "bfloat16")] * ("dcgan" in families)
    else:
        pairs = [(family, dtype) for family in families for dtype in dtypes]
    entries = []
    for family, dtype in pairs[:1]:
        entries.append((f"train {family} {dtype}", lambda f=family, d=dtype: train_entry(f, d, sizes)))
    if "ddpm" in families:
        entries.append(("sample ddpm", lambda d=pairs[0][1]: sampling_entry("ddpm", d, sizes)))
    entries.append(("fid features", lambda: fid_features_entry(sizes)))
    entries.append(("fid end to end", lambda: fid_end_to_end_entry(sizes)))
    entries.append(("frechet", lambda: frechet_entry(sizes)))
    for family, dtype in pairs[1:]:
        entries.append((f"train {family} {dtype}", lambda f=family, d=dtype: train_entry(f, d, sizes)))
    for family in families:
        if family != "ddpm":
            entries.append((f"sample {family}", lambda f=family: sampling_entry(f, pairs[0][1], sizes)))
    if "dcgan" in families:
        for layer in LAYER_CHOICES:
            entries.append((f"{layer} conv", lambda d=pairs[0][1], k=layer: layer_choice_entry(k, d, sizes)))
    return entries


# --- report -------------------------------------------------------------------------------------------------


def machine_line() -> str:
    import jax
    import torch
    from vae_step import machine

    device = jax.devices()[0]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA"
    return (
        f"{device.device_kind} ({device.platform}); host {machine()}; torch device {gpu}; Python "
        f"{platform.python_version()}, jax {jax.__version__}, torch {torch.__version__}"
    )


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def markdown(report: dict) -> str:
    dry = bool(report["dry_run"])
    lines = [
        f"### GPU suite, {report['date']}",
        "",
        f"`{report['command']}`; {report['machine']}; {report['wall_s']:.0f} s in all.",
        "",
        *(["**Dry run**: tiny models on a CPU, to check the code paths; its figures mean nothing.", ""] * dry),
        "| entry | dtype | shape | animejax | reference | unit | animejax / reference | MFU | compile s | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        notes = []
        for key in ("max_rel_diff", "rel_diff", "value", "uses", "tflops_per_step", "error"):
            if r.get(key) is not None:
                notes.append(f"{key} {_fmt(r[key])}")
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") else ""
        lines.append(
            f"| {r['entry']} | {r.get('dtype', '')} | {r.get('shape', '')} | {_fmt(r.get('animejax'))} "
            f"| {_fmt(r.get('reference'))} | {r.get('unit', '')} | {_fmt(r.get('ratio'))} | {mfu} "
            f"| {_fmt(r.get('compile_s'))} | {'; '.join(notes)} |"
        )
    if report["skipped"]:
        lines += ["", f"Skipped (budget of {report['budget_s']:.0f} s reached): {', '.join(report['skipped'])}."]
    return "\n".join(lines) + "\n"


def _setup(dry_run: bool) -> None:
    """XLA flags and torch's device, before this process's first JAX or torch computation."""
    from animejax import xla_flags

    if dry_run:
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {DRY_RUN_XLA_FLAGS}".strip()
    xla_flags.set_defaults()
    import torch

    torch.set_default_device(torch_device())  # The reference runners make their noise with plain torch.randn.


def _run_entry(name: str, thunk) -> dict:
    """One entry's result, its wall time added; an entry that raises gives its error instead of figures."""
    entry_start = time.monotonic()
    try:
        result = thunk()
    except Exception as error:  # One broken entry must not cost the others' figures.
        traceback.print_exc()
        result = {"entry": name, "error": f"{type(error).__name__}: {error}"[:300]}
    result["wall_s"] = time.monotonic() - entry_start
    print(json.dumps(result), flush=True)
    return result


def _worker_entry(argv: list[str], name: str, deadline: float) -> dict | None:
    """Runs the entry called `name` of the plan in a worker process (thunks are closures: they do not pickle).

    None if the budget's `deadline` (time.monotonic(), the same clock in every process) has passed.
    """
    if time.monotonic() > deadline:
        return None
    args = parse_args(argv)
    thunk = dict(plan(args, Sizes(args.dry_run, args.fid_images)))[name]
    return _run_entry(name, thunk)


def _run_side_by_side(
    args: argparse.Namespace, argv: list[str], names: list[str], deadline: float
) -> list[dict | None]:
    """The entries in `args.workers` processes, each taking the next one as it finishes; results in plan order.

    A dry run is mostly XLA compiling, which keeps one process at about 1.35 of 2 cores: two processes cut its
    wall time by about 30% (BENCHMARKS.md, "GPU suite").
    """
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # A fresh interpreter: no JAX or torch threads forked.
    with concurrent.futures.ProcessPoolExecutor(
        args.workers, context, initializer=_setup, initargs=(args.dry_run,)
    ) as pool:
        futures = [pool.submit(_worker_entry, argv, name, deadline) for name in names]
        return [future.result() for future in futures]


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.budget_s is None:  # On a GPU, so that the whole run fits in 5 minutes; a dry run does everything.
        args.budget_s = 1e9 if args.dry_run else 270.0
    started = time.monotonic()
    sizes = Sizes(args.dry_run, args.fid_images)
    entries = plan(args, sizes)
    if args.workers > 1:
        names = [name for name, _ in entries]
        outcomes = _run_side_by_side(args, argv, names, started + args.budget_s)
        results = [result for result in outcomes if result is not None]
        skipped = [name for name, result in zip(names, outcomes) if result is None]
        _setup(args.dry_run)  # For machine_line's JAX and torch.
    else:
        _setup(args.dry_run)
        results, skipped = [], []
        for name, thunk in entries:
            if time.monotonic() - started > args.budget_s:
                skipped.append(name)
                continue
            results.append(_run_entry(name, thunk))
    report = {
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/gpu_suite.py " + " ".join(argv),
        "machine": machine_line(),
        "budget_s": args.budget_s,
        "dry_run": args.dry_run,
        "wall_s": time.monotonic() - started,
        "results": results,
        "skipped": skipped,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu_suite.json"), "w") as f:
        json.dump(report, f, indent=1)
    table = markdown(report)
    with open(os.path.join(args.out, "gpu_suite.md"), "w") as f:
        f.write(table)
    print(table)
    return report


if __name__ == "__main__":
    main()
