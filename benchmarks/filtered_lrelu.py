"""StyleGAN3's filtered leaky ReLU: animejax's fused `filtered_lrelu` against the plain unfused composition.

Both are animejax/models/alias_free.py, same arguments, same function: `filtered_lrelu` (polyphase separable
slice sums from upfirdn.py, the bias and activation fused into them, a custom VJP whose backward is again slice
sums, boolean masks as the only residuals) and `filtered_lrelu_unfused` (explicit zero insertion, dense 2-D
depthwise `conv_general_dilated`s at the up-sampled resolution, activation, strided slice; JAX autodiff).
Timed per call, jitted and compiled ahead of time: the forward pass, and forward + backward (the gradients
with respect to the input and the bias of sum(y * w) for a fixed random w), medians of `--repeats` alternating
repeats of `--iters` calls each. Before timing, each case checks the two against each other (forward and
gradients, max |fused - unfused| / max |unfused|; it fails above 1e-4, 2e-2 in bfloat16).

Cases (`--cases`, comma-separated):
  layer  [batch, 36, 36, channels] at 2x up / 2x down with 12-tap filters (the first StyleGAN3-T layer's,
         cutoff 2, half-width 6, 32 samples per unit; padding (11, 10) so that the output is 36 x 36 again).
  t64, t256  every distinct filtered_lrelu of the StyleGAN3-T synthesis network at 64 / 256 px
         (`layer_schedule`: input in_size + 2 after the 3x3 convolution, the layer's filters, factors and
         padding; channels min(the layer's, --channels)); ToRGB (no filtering) left out. The "network" rows
         add each shape's time times the number of layers that have it.
  r64, r256  the StyleGAN3-R layers with radial (non-separable 12 x 12) down-sampling filters, also timing
         `filtered_lrelu`'s other formulations for them (nonseparable="svd", "conv"; see alias_free.py).
The unfused version is skipped (marked "skipped") where its dense convolutions exceed --unfused_max_gflop per
forward pass, which at 256 px would take minutes per call on a CPU.

    python benchmarks/filtered_lrelu.py --threads=2 --cases=layer,t64           # a CPU
    python benchmarks/filtered_lrelu.py --cases=layer,t64,t256,r256 --append=BENCHMARKS.md   # on a GPU
    python benchmarks/filtered_lrelu.py --smoke                                 # seconds: tiny shapes
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import pin_threads  # noqa: E402

PARITY_LIMIT = 1e-4  # float32; bfloat16 results (rounded from float32 insides) get 2e-2.
CASES = ("layer", "t64", "t256", "r64", "r256")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="layer,t64,t256", help=f"Comma-separated, from {', '.join(CASES)}.")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=128, help="Channels of `layer`; the cap for the others.")
    parser.add_argument("--dtype", default="float32", help="float32 or bfloat16 (computed in float32 inside).")
    parser.add_argument("--iters", type=int, default=3, help="Calls per timing.")
    parser.add_argument("--repeats", type=int, default=3, help="Alternating timings of the variants; medians.")
    parser.add_argument("--threads", type=int, default=0, help="CPU cores (sched_setaffinity before JAX); 0: all.")
    parser.add_argument(
        "--wait_idle",
        type=float,
        default=0.0,
        help="Before each timing, wait up to this many seconds for other processes to use < 0.2 cores.",
    )
    parser.add_argument("--unfused_max_gflop", type=float, default=20.0, help="Skip the unfused version above this.")
    parser.add_argument("--append", default="", help="Markdown file to append the results section to.")
    parser.add_argument("--smoke", action="store_true", help="Batch 1, 4 channels, cases layer,t64,r64, 1 repeat.")
    parser.add_argument(
        "--xla_defaults", type=int, default=1, help="1: animejax's default XLA flags, as the command line sets them."
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.channels, args.iters, args.repeats = 1, 4, 1, 1
        if args.cases == parser.get_default("cases"):
            args.cases = "layer,t64,r64"
    args.cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown or args.batch < 1 or args.channels < 1 or args.iters < 1 or args.repeats < 1:
        raise SystemExit(f"unknown cases {unknown} or a non-positive size/count")
    return args


@dataclasses.dataclass
class Case:
    """One filtered_lrelu call: [batch, size, size, channels] -> [batch, out_size, out_size, channels]."""

    group: str
    label: str
    size: int
    out_size: int
    channels: int
    up: int
    down: int
    up_filter: object
    down_filter: object
    padding: tuple
    count: int = 1  # Layers of the network with this shape.
    impls: tuple = ("fused", "unfused")

    @property
    def taps(self) -> str:
        def size(f):
            return "1" if f is None else "x".join(map(str, f.shape))

        return f"{size(self.up_filter)} / {size(self.down_filter)}"

    def unfused_gflop(self, batch: int) -> float:
        """Multiply-adds x 2 of the two dense depthwise convolutions, both at the up-sampled resolution."""
        up_len = self.size * self.up + self.padding[0] + self.padding[1]
        total = 0.0
        for f in (self.up_filter, self.down_filter):
            taps = 1 if f is None else (f.shape[0] ** 2 if f.ndim == 1 else f.size)
            total += 2 * batch * up_len**2 * self.channels * taps
        return total / 1e9


def make_cases(names, channels: int) -> list[Case]:
    from animejax.models import alias_free as af

    cases = []
    for name in names:
        if name == "layer":
            spec = af.layer_schedule(64)[0]
            fu, fd = spec.filters()
            cases.append(Case("layer", "2x/2x, 12 taps", 36, 36, channels, 2, 2, fu, fd, (11, 10, 11, 10)))
            continue
        res = int(name[1:])
        radial = name.startswith("r")
        kw = dict(conv_kernel=1, channel_base=65536, channel_max=1024, use_radial_filters=True) if radial else {}
        groups = {}
        for spec in af.layer_schedule(res, **kw):
            if spec.is_torgb or (radial and not spec.down_radial):
                continue
            n = spec.in_size + spec.conv_kernel - 1
            c = min(spec.out_channels, channels)
            key = (n, spec.out_size, c, spec.up_factor, spec.down_factor, spec.up_taps, spec.down_taps, spec.padding)
            if key in groups:
                groups[key].count += 1
                groups[key].label += f",{spec.index}"
                continue
            fu, fd = spec.filters()
            impls = ("fused", "fused-svd", "fused-conv", "unfused") if radial else ("fused", "unfused")
            shape = dict(size=n, out_size=spec.out_size, channels=c, up=spec.up_factor, down=spec.down_factor)
            groups[key] = Case(
                name, f"L{spec.index}", up_filter=fu, down_filter=fd, padding=spec.padding, impls=impls, **shape
            )
        cases.extend(groups.values())
    return cases


def build(case: Case, impl: str, dtype):
    """(forward, forward + backward) as functions of (x, bias, weights)."""
    import jax
    import jax.numpy as jnp

    from animejax.models import alias_free as af

    kw = dict(up=case.up, down=case.down, padding=case.padding, clamp=256.0)
    if impl == "unfused":
        fn = lambda x, b: af.filtered_lrelu_unfused(x, case.up_filter, case.down_filter, b, **kw)  # noqa: E731
    else:
        nonseparable = impl.split("-")[1] if "-" in impl else "slices"
        fn = lambda x, b: af.filtered_lrelu(  # noqa: E731
            x, case.up_filter, case.down_filter, b, nonseparable=nonseparable, **kw
        )

    def loss(x, b, w):
        return jnp.sum(fn(x, b).astype(jnp.float32) * w)

    return jax.jit(lambda x, b, w: fn(x, b)), jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def parity_limit(dtype) -> float:
    import jax.numpy as jnp

    return PARITY_LIMIT if dtype == jnp.float32 else 2e-2


def time_calls(fn, inputs, iters: int) -> float:
    import jax

    jax.block_until_ready(fn(*inputs))
    start = time.perf_counter()
    for _ in range(iters):
        out = fn(*inputs)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / iters


def _relative(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def run_case(case: Case, args, dtype, wait_idle) -> tuple[list[dict], dict]:
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(args.batch, case.size, case.size, case.channels)), dtype)
    b = jnp.asarray(rng.normal(size=(case.channels,)) * 0.1, dtype)
    w = jnp.asarray(rng.normal(size=(args.batch, case.out_size, case.out_size, case.channels)), jnp.float32)
    inputs = (x, b, w)
    gflop = case.unfused_gflop(args.batch)
    impls = [i for i in case.impls if i != "unfused" or gflop <= args.unfused_max_gflop]
    compiled, results = {}, {}
    for impl in impls:
        fwd, grad = build(case, impl, dtype)
        start = time.perf_counter()
        fwd_c, grad_c = fwd.lower(*inputs).compile(), grad.lower(*inputs).compile()
        memory = grad_c.memory_analysis()
        compiled[impl] = (fwd_c, grad_c)
        results[impl] = {
            "compile_s": time.perf_counter() - start,
            "temp_mib": None if memory is None else memory.temp_size_in_bytes / 2**20,
            "fwd": [],
            "grad": [],
        }
    # Parity against the unfused version (or, where it is skipped, among the fused formulations).
    base = "unfused" if "unfused" in compiled else impls[0]
    ref_y = compiled[base][0](*inputs)
    ref_loss, ref_grads = compiled[base][1](*inputs)
    parity = {}
    for impl in impls:
        if impl == base:
            continue
        y = compiled[impl][0](*inputs)
        _, grads = compiled[impl][1](*inputs)
        if y.shape != (args.batch, case.out_size, case.out_size, case.channels):
            raise SystemExit(f"{case.group} {case.label} {impl}: output shape {y.shape}")
        parity[impl] = max(_relative(y, ref_y), *(_relative(g, r) for g, r in zip(grads, ref_grads)))
    bad = {k: v for k, v in parity.items() if not v <= parity_limit(dtype)}
    if bad:
        raise SystemExit(f"{case.group} {case.label}: fused vs {base} differ: {bad}")
    for _ in range(args.repeats):
        for impl in impls:
            for kind, index in (("fwd", 0), ("grad", 1)):
                if args.wait_idle:
                    wait_idle(args.wait_idle)
                results[impl][kind].append(time_calls(compiled[impl][index], inputs, args.iters))
    rows = []
    for impl in case.impls:
        row = dict(case=case, impl=impl, gflop=gflop, parity=parity.get(impl), base=base)
        if impl in results:
            r = results[impl]
            row.update(
                fwd_ms=1e3 * statistics.median(r["fwd"]),
                grad_ms=1e3 * statistics.median(r["grad"]),
                compile_s=r["compile_s"],
                temp_mib=r["temp_mib"],
            )
        rows.append(row)
    return rows, parity


def _fmt(value, spec: str, missing: str = "skipped") -> str:
    return missing if value is None else format(value, spec)


def table(rows: list[dict], batch: int) -> str:
    header = (
        "| case | layers | input -> output | C | up / down | taps up / down | impl | fwd ms | fwd+bwd ms "
        "| unfused / this, fwd | unfused / this, fwd+bwd | XLA temp MiB (fwd+bwd) | compile s |"
    )
    lines = [header, "|" + "---|" * 13]
    by_case = {}
    for row in rows:
        by_case.setdefault(id(row["case"]), {})[row["impl"]] = row
    for row in rows:
        case, impl = row["case"], row["impl"]
        unfused = by_case[id(case)].get("unfused", {})
        ratio_f = ratio_g = "n/a"
        if row.get("fwd_ms") and unfused.get("fwd_ms") and impl != "unfused":
            ratio_f = f"{unfused['fwd_ms'] / row['fwd_ms']:.1f}"
            ratio_g = f"{unfused['grad_ms'] / row['grad_ms']:.1f}"
        lines.append(
            f"| {case.group} | {case.label} | [{batch}, {case.size}, {case.size}] -> {case.out_size} | {case.channels} "
            f"| {case.up} / {case.down} | {case.taps} | {impl} | {_fmt(row.get('fwd_ms'), '.2f')} "
            f"| {_fmt(row.get('grad_ms'), '.2f')} | {ratio_f} | {ratio_g} | {_fmt(row.get('temp_mib'), '.1f', 'n/a')} "
            f"| {_fmt(row.get('compile_s'), '.1f', '-')} |"
        )
    # Whole-network totals for the schedule cases: each shape's time times its layer count.
    for group in dict.fromkeys(row["case"].group for row in rows):
        if group == "layer":
            continue
        group_rows = [row for row in rows if row["case"].group == group]
        for impl in dict.fromkeys(row["impl"] for row in group_rows):
            mine = [row for row in group_rows if row["impl"] == impl]
            if any(row.get("fwd_ms") is None for row in mine):
                continue
            fwd = sum(row["fwd_ms"] * row["case"].count for row in mine)
            grad = sum(row["grad_ms"] * row["case"].count for row in mine)
            layers = sum(row["case"].count for row in mine)
            lines.append(f"| {group} network | {layers} layers | | | | | {impl} | {fwd:.2f} | {grad:.2f} | | | | |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    threads = pin_threads(args.threads)
    sys.path.insert(0, REPO)
    if args.xla_defaults:
        from animejax import xla_flags

        xla_flags.set_defaults()
    import jax
    import jax.numpy as jnp
    from vae_step import machine, wait_idle

    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[args.dtype]
    print(
        f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} {machine()}, {threads} thread(s); "
        f"jax {jax.__version__} ({jax.devices()[0].platform}); XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; "
        f"batch {args.batch}, channels <= {args.channels}, {args.dtype}, clamp 256; "
        f"{args.repeats} x {args.iters} calls; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    rows, loads = [], []
    for case in make_cases(args.cases, args.channels):
        loads.append(os.getloadavg()[0])
        case_rows, parity = run_case(case, args, dtype, wait_idle)
        rows.extend(case_rows)
        times = ", ".join(
            f"{r['impl']} {_fmt(r.get('fwd_ms'), '.2f')} / {_fmt(r.get('grad_ms'), '.2f')} ms" for r in case_rows
        )
        base = case_rows[0]["base"]
        checks = ", ".join(f"{k} {v:.1e}" for k, v in parity.items())
        print(
            f"# {case.group} {case.label} [{args.batch}, {case.size}, {case.size}, {case.channels}] -> {case.out_size}"
            f" {case.up}x/{case.down}x: fwd / fwd+bwd {times}; parity vs {base}: {checks or '-'}",
            flush=True,
        )
    text = table(rows, args.batch)
    print(text)
    print(f"# 1-min load during the cases {min(loads):.2f} to {max(loads):.2f}")
    if args.append:
        command = "python benchmarks/filtered_lrelu.py " + " ".join(argv)
        with open(args.append, "a") as f:
            f.write(
                f"\n### StyleGAN3 filtered_lrelu, fused vs unfused, {datetime.date.today()}\n\n`{command}`; "
                f"{machine()}, {threads} thread(s), jax {jax.__version__} ({jax.devices()[0].platform}), "
                f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; 1-min load {min(loads):.2f} to {max(loads):.2f}. "
                f"{args.dtype}, clamp 256; medians of {args.repeats} alternating repeats of {args.iters} calls; "
                f"fwd+bwd is the value and the gradients with respect to the input and the bias. Every fused "
                f"result matched the unfused one to {parity_limit(dtype):g} (forward and gradients).\n\n{text}\n"
            )
    return rows


if __name__ == "__main__":
    main()
