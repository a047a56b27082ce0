"""What the step benchmarks share: CPU pinning, the CPU time of other processes, and the jitted animejax step
exactly as the training loop builds it."""

from __future__ import annotations

import math
import os
import time

from hlo_convolutions import timed_convolutions


def pin_threads(threads: int) -> int:
    """Restricts this process to the first `threads` CPUs (before JAX/torch start); returns the count."""
    cpus = sorted(os.sched_getaffinity(0))
    if threads:
        if threads > len(cpus):
            raise SystemExit(f"--threads={threads} but only {len(cpus)} CPUs are available.")
        cpus = cpus[:threads]
        os.sched_setaffinity(0, cpus)
    return len(cpus)


class CpuMeter:
    """CPU time other processes used during an interval, from /proc/stat minus this process's own time.

    `uptime`'s load average lags by a minute; this measures the timed interval itself.
    """

    def __init__(self):
        self.start = self._snapshot()

    @staticmethod
    def _snapshot():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:8]]
        times = os.times()
        busy = (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")
        return busy, times.user + times.system, time.monotonic()

    def others_cores(self) -> float:
        """Mean number of cores other processes kept busy since construction."""
        busy, own, wall = self._snapshot()
        busy0, own0, wall0 = self.start
        return max(0.0, (busy - busy0) - (own - own0)) / max(wall - wall0, 1e-9)


def wait_idle(timeout: float, threshold: float = 0.2) -> float:
    """Waits (in 1 s windows, up to `timeout` s) until others use < `threshold` cores; returns the last reading."""
    deadline = time.monotonic() + timeout
    while True:
        meter = CpuMeter()
        time.sleep(1.0)
        others = meter.others_cores()
        if others < threshold or time.monotonic() >= deadline:
            return others


def enable_op_tracing() -> None:
    """Names each XLA:CPU thunk in profiler traces (for `profile_ops`); call before JAX's backend starts."""
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()


def profile_ops(jax_step: "JaxStep", run, steps: int, top: int) -> str:
    """Markdown tables of where `jax_step`'s compiled step spends its time: the `top` XLA ops taking the most time
    per step while `run(steps)` runs under jax.profiler (summed over threads), each with its HLO (the convolution
    or dot inside a fusion, with shapes), then the `top` convolutions timed alone.

    XLA:CPU runs a convolution asynchronously on Eigen's thread pool, so the trace holds only its launch:
    `hlo_convolutions.timed_convolutions` times each of the step's convolutions compiled alone instead. Needs
    `enable_op_tracing()` before JAX starts."""
    import collections
    import glob
    import gzip
    import json
    import shutil
    import tempfile

    import jax

    state = run.__self__.state if hasattr(run, "__self__") else None
    if state is None:
        raise ValueError("profile_ops needs a bound runner's run (its .state is the step's input)")
    inputs = (state, jax_step.images, jax.random.PRNGKey(0), jax_step.frozen)
    hlo = jax_step.train_step.lower(*inputs).compile().as_text()
    ops, bodies, current = {}, collections.defaultdict(list), None
    for line in hlo.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            current = line.split()[0].lstrip("%")  # A computation's header.
            continue
        name, sep, rest = line.strip().removeprefix("ROOT ").partition(" = ")
        if sep:
            ops[name.lstrip("%")] = rest.split(", metadata=")[0]
            bodies[current].append(rest.split(", metadata=")[0])

    def describe(op: str) -> str:
        """The op's shape, and for a fusion the convolution or dot it wraps."""
        text = ops[op]
        shape = text.split(" ")[0]
        called = text.split("calls=%")[1].split(",")[0] if "calls=%" in text else ""
        for inner in bodies.get(called, []):
            if " convolution(" in inner or " dot(" in inner:
                kind = "convolution" if " convolution(" in inner else "dot"
                return f"{shape} = {kind}: {inner.split('), ', 1)[1] if '), ' in inner else inner}"
        return text

    wall_ms = run(steps) / steps * 1e3
    folder = tempfile.mkdtemp(prefix="animejax_trace_")
    try:
        meter = CpuMeter()
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            run(steps)
        others = meter.others_cores()
        (path,) = glob.glob(os.path.join(folder, "**", "*.trace.json.gz"), recursive=True)
        with gzip.open(path) as f:
            events = json.load(f)["traceEvents"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    total = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and event.get("name") in ops:
            total[event["name"]] += event["dur"]
    step_ms = sum(total.values()) / 1e3 / steps

    def kind(op: str) -> str:
        text = describe(op)
        if "= convolution" in text or " convolution(" in text:
            return "convolution launches"
        if "= dot" in text or " dot(" in text:
            return "dots (matmuls)"
        if op.startswith(("transpose", "copy")):
            return "layout transposes and copies"
        if "reduce" in op:
            return "reductions"
        return "other fusions (elementwise: norms, activations, optimizer)"

    kinds = collections.Counter()
    for name, micros in total.items():
        kinds[kind(name)] += micros
    shares = ", ".join(f"{k} {v / 1e3 / steps:.0f} ms ({v / sum(total.values()):.0%})" for k, v in kinds.most_common())
    lines = [
        f"# profile: {steps} traced steps (others {others:.2f} cores), {wall_ms:.1f} ms/step untraced; traced XLA ops "
        f"sum to {step_ms:.1f} ms/step over all threads (independent ops run concurrently; a convolution's trace "
        "is only its launch)",
        f"# by kind: {shares}",
        "| ms/step | XLA op | HLO |",
        "|---|---|---|",
    ]
    for name, micros in total.most_common(top):
        lines.append(f"| {micros / 1e3 / steps:.1f} | {name} | `{describe(name)[:140]}` |")
    convolutions = timed_convolutions(hlo)
    conv_ms = sum(count * seconds for _, count, seconds in convolutions) * 1e3
    lines += [
        f"# convolutions timed alone: {conv_ms:.1f} ms/step ({conv_ms / wall_ms:.0%} of the step), "
        f"{sum(count for _, count, _ in convolutions)} convolutions of {len(convolutions)} kinds",
        "| ms/step | count x ms | convolution |",
        "|---|---|---|",
    ]
    for convolution, count, seconds in convolutions[:top]:
        lines.append(f"| {count * seconds * 1e3:.1f} | {count} x {seconds * 1e3:.2f} | `{convolution.describe()}` |")
    return "\n".join(lines)


def profile_torch_ops(run, steps: int, top: int) -> str:
    """A markdown table of the `top` PyTorch ops by self CPU time per step while `run(steps)` runs (torch.profiler),
    the counterpart of `profile_ops` for the reference step."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        run(steps)
    averages = sorted(profiler.key_averages(), key=lambda a: a.self_cpu_time_total, reverse=True)
    total = sum(a.self_cpu_time_total for a in averages)
    lines = [
        f"# torch profile: {steps} steps; ops' self CPU time sums to {total / 1e3 / steps:.1f} ms/step",
        "| ms/step | torch op | calls/step |",
        "|---|---|---|",
    ]
    for average in averages[:top]:
        per_step = average.self_cpu_time_total / 1e3 / steps
        lines.append(f"| {per_step:.1f} | {average.key} | {average.count / steps:.0f} |")
    return "\n".join(lines)


class force_layer_implementation:
    """Makes animejax's layers that choose their computation by backend run as `implementation`: `layer`
    "transposed" (`PhaseConvTranspose`: "phases" or "native") or "strided" (`DownConv4x4`: "space_to_depth" or
    "native"); "auto" keeps the backend's choice (`animejax.models.layers.*_conv_implementation`). Called as a
    statement it holds for the rest of the process; used as `with force_layer_implementation(...):` the previous
    choice comes back after the block. Steps traced meanwhile keep the implementation they were traced with."""

    def __init__(self, layer: str, implementation: str):
        from animejax.models import layers

        self._layers, self._chooser = layers, f"{layer}_conv_implementation"
        self._previous = getattr(layers, self._chooser)
        if implementation != "auto":
            setattr(layers, self._chooser, lambda: implementation)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        setattr(self._layers, self._chooser, self._previous)


def force_transposed_conv(implementation: str) -> force_layer_implementation:
    """`force_layer_implementation` of the transposed convolutions ("phases", "native" or "auto")."""
    return force_layer_implementation("transposed", implementation)


def load_averages() -> str:
    """The 1, 5 and 15-minute load averages from /proc/loadavg ("n/a" where there is none)."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


class JaxStep:
    """A method's state and the loop's jitted step (`make_train_step`) on one device, over one fixed batch.

    Args:
      config: the method's config.
      images_nhwc: uint8 [B, S, S, 3], the batch every step trains on (already on the device).

    Attributes:
      method, state, images (the batch dict on the mesh), train_step (state, batch, rng, frozen),
      step_key (jitted fold_in), frozen (the method's frozen networks on the mesh).
    """

    def __init__(self, config, images_nhwc):
        import jax
        import jax.numpy as jnp

        from animejax import methods, sharding
        from animejax.methods.base import make_train_step, place_frozen

        shardings = sharding.make_mesh(1)
        self.method = methods.get_method(config)
        example = {"image": jnp.zeros(images_nhwc.shape, jnp.float32)}
        init = jax.jit(self.method.init_state, out_shardings=shardings.replicated)
        self.state = init(jax.random.PRNGKey(config.seed), example)
        self.train_step = make_train_step(self.method, shardings)
        self.frozen = place_frozen(self.method, shardings)
        self.step_key = jax.jit(jax.random.fold_in, out_shardings=shardings.replicated)
        self.images = {"image": sharding.global_batch(images_nhwc, shardings)}

    def __call__(self, state, step: int):
        """One step from `state` (donated) with the loop's key for `step`: returns (state, metrics)."""
        return self.train_step(state, self.images, self.step_key(state.rng, step), self.frozen)


def lazy_period(config) -> int:
    """Steps after which a StyleGAN config's lazy-regularisation phases repeat (1 for other families): timed
    windows of whole periods time every phase in its share."""
    style = config.get("stylegan")
    if style is None:
        return 1
    pl_interval = style.get("pl_interval", 0) if style.get("pl_weight", 0) else 0
    intervals = [i for i in (pl_interval, style.r1_interval if style.get("r1_gamma", 0) else 0) if i]
    return math.lcm(*intervals) if intervals else 1


class CompiledSteps:
    """A `JaxStep` compiled ahead of time, run from its initial state: one compilation serves the timed steps and
    XLA's cost analysis (`compiled.cost_analysis()`).

    A method with phases (`Method.phase`: SRGAN's, StyleGAN's lazy regularisation) gets one compiled step per
    phase, each compiled the first time a step of that phase runs; `run` leaves those compilations out of the
    seconds it returns.

    Attributes:
      jax_step, method, state (the latest), step (steps run), metrics (of the last step), compiled (step 0's
      phase), compile_s (all phases compiled so far).
    """

    def __init__(self, config, images_nhwc):
        import jax

        self.jax = jax
        self.jax_step = JaxStep(config, images_nhwc)
        self.method, self.state = self.jax_step.method, self.jax_step.state
        self._compiled, self.compile_s = {}, 0.0
        self.step, self.metrics = 0, None
        self.compiled = self.compiled_for_step(0, self.state)

    def compiled_for_step(self, step: int, state=None):
        """The AOT-compiled step of `step`'s phase, compiled now if it is the phase's first (for the shapes of
        `state`, default the latest)."""
        state = self.state if state is None else state
        js = self.jax_step
        phase = self.method.phase(step)
        if phase not in self._compiled:
            self.jax.block_until_ready(state)  # So the compilation timed below overlaps no device work.
            start = time.perf_counter()
            key = js.step_key(state.rng, step)
            self._compiled[phase] = js.train_step.lower(state, js.images, key, js.frozen, step=step).compile()
            self.compile_s += time.perf_counter() - start
        return self._compiled[phase]

    def run(self, steps: int) -> float:
        """Runs `steps` train steps from the current state; returns their seconds, device work included
        (compilations of phases met for the first time left out)."""
        jax, js = self.jax, self.jax_step
        jax.block_until_ready(self.state)
        compile_before = self.compile_s
        start = time.perf_counter()
        state, metrics = self.state, None
        for _ in range(steps):
            compiled = self.compiled_for_step(self.step, state)
            state, metrics = compiled(state, js.images, js.step_key(state.rng, self.step), js.frozen)
            self.step += 1
        jax.block_until_ready((state, metrics))
        elapsed = time.perf_counter() - start - (self.compile_s - compile_before)
        self.state, self.metrics = state, metrics
        return elapsed

    def peak_bytes(self) -> int | None:
        """The device's peak_bytes_in_use, or None where the backend keeps no memory statistics (CPU)."""
        stats = self.jax.devices()[0].memory_stats()
        return None if stats is None else stats.get("peak_bytes_in_use")
