"""The method contract: what every training method gives the loop, and the one jitted train step built from it.

A method owns its networks, objective, optimizers and samplers; `animejax.train`
only calls what `Method` declares. Data reaches a method as a batch: a dict of
arrays, `{"image": float32 [B, S, S, 3] in [-1, 1]}` today (paired low/high
resolution images or labels are further keys). The loop ships uint8 images to
the devices and `make_train_step` maps them to [-1, 1] inside the jitted step,
so a method never sees uint8.

Pretrained networks a step needs but never trains (a VGG content loss, LPIPS)
come from `Method.frozen()`: placed on the mesh once, replicated, passed to
every step as an argument (never baked into the graph as constants), and never
donated or checkpointed with the state.

Metrics are flat names ("train/loss_d") mapped to scalars, or to
`Weighted(value, weight)` for a term computed on some steps only (a lazy
regularizer): `average_metrics` divides by the total weight, so such a term is
not reported diluted by the steps that skipped it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Hashable, Iterable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from animejax.data import pipeline

Batch = Mapping[str, jax.Array]


class Weighted(NamedTuple):
    """A metric with the weight (count) it carries in an average; weight 0 means "not computed this step"."""

    value: jax.Array
    weight: jax.Array


@dataclasses.dataclass
class Samples:
    """What `--mode=sample` writes for a method.

    Attributes:
      grids: name -> (images [N, S, S, 3] in [-1, 1], columns): one PNG grid each.
      individual: [M, S, S, 3] in [-1, 1], one PNG per image (for pytorch-fid, clean-fid and the comparison
        report), or None.
      animations: name -> frames [T, N, S, S, 3] in [-1, 1]: one GIF each, frame t a row of N images.
    """

    grids: dict[str, tuple[np.ndarray, int]]
    individual: np.ndarray | None = None
    animations: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class LoopCallback:
    """Host-side hook the loop calls with the averaged scalars at every log step (e.g. the GAN stall monitor)."""

    def on_log(self, step: int, scalars: Mapping[str, float]) -> None:
        del step, scalars


class Method:
    """Base of every training method. Subclasses implement the first three methods; the rest have defaults.

    The state is a pytree (a flax.struct dataclass) with at least `step` (int32 scalar, optimizer steps taken)
    and `rng` (the run's root key, from which the loop folds each step's key).
    """

    # The `preview` grid that --mode=sample animates over training into a GIF, or None.
    progress_grid: str | None = None
    # State fields `train.init_from` leaves fresh besides step, rng and optimizer states (animejax/transfer.py).
    transfer_exclude: tuple[str, ...] = ()
    # A conditional method (super-resolution) maps inputs to outputs with `translate` instead of drawing
    # samples with `generate`; metrics then score its outputs for the held-out images (data.holdout_images).
    conditional: bool = False
    # Terms of `evaluate` the comparison report shows in its main table (its other terms get their own table).
    report_terms: tuple[str, ...] = ()

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.grid_size = config.sample.grid_size
        self.num_individual = config.sample.get("num_individual", 0)  # Absent from configs saved before it existed.
        self.sample_batch_size = config.eval.batch_size

    # --- required -------------------------------------------------------

    def init_state(self, rng: jax.Array, batch: Batch) -> Any:
        """A fresh state; pure (jitted with replicated outputs). `batch` gives the shapes."""
        raise NotImplementedError

    def train_step(self, state: Any, batch: Batch, rng: jax.Array, frozen: Any) -> tuple[Any, dict[str, Any]]:
        """One optimisation step; pure (jitted once, state donated). Returns (new state, metrics).

        A method with phases takes a further static argument `phase` (see `phase`).
        """
        raise NotImplementedError

    def generate(self, state: Any, rng: jax.Array, batch_size: int) -> jax.Array:
        """Samples that metrics score: [batch_size, S, S, 3] in [-1, 1]; pure, jit-able (batch_size static)."""
        raise NotImplementedError

    # --- optional, with defaults ----------------------------------------

    def phase(self, step: int) -> Hashable:
        """The phase of the objective at `step` (SRGAN: pixel pre-training, then adversarial), or None.

        A method that overrides this gets one compiled step per phase, and `train_step(..., phase=...)` with the
        phase as a Python value: the phases' code is chosen on the host rather than by `lax.cond`, which runs
        XLA:CPU's convolutions several times slower (BENCHMARKS.md, "SRGAN").
        """
        del step
        return None

    def translate(self, state: Any, batch: Batch) -> jax.Array:
        """A conditional method's outputs for a batch of originals, [B, S, S, 3] in [-1, 1]; pure, jit-able."""
        raise NotImplementedError(f"{type(self).__name__} is not conditional")

    def frozen(self) -> Any:
        """Pretrained, untrained networks' variables the step needs (host arrays); {} when none."""
        return {}

    def preview(self, state: Any, batch: Batch, rng: jax.Array) -> dict[str, jax.Array]:
        """Image batches in [-1, 1] logged as grids while training; jitted. The loop passes the same key each time."""
        return {"samples": self.generate(state, rng, self.grid_size * self.grid_size)}

    def sample(self, state: Any, batches: Iterable[Batch], rng: jax.Array) -> Samples:
        """What --mode=sample writes: by default a grid of `generate` and `sample.num_individual` single images."""
        del batches
        grid_rng, individual_rng = jax.random.split(rng)
        grid = np.asarray(jax.jit(self.generate, static_argnums=2)(state, grid_rng, self.grid_size**2))
        return Samples({"samples": (grid, self.grid_size)}, self.individual_images(state, individual_rng))

    def evaluate(self, state: Any, batches: Iterable[Batch]) -> dict[str, float]:
        """The method's own terms (e.g. reconstruction error) for --mode=eval; {} by default.

        `batches` are the held-out images when `data.holdout_images` > 0, else training images.
        """
        del state, batches
        return {}

    def callbacks(self) -> list[LoopCallback]:
        """Host-side hooks called at every log step."""
        return []

    # --- helpers --------------------------------------------------------

    def generate_many(self, state: Any, rng: jax.Array, count: int) -> np.ndarray:
        """`count` images from `generate` in jitted batches of `eval.batch_size`: [count, S, S, 3] in [-1, 1]."""
        generate = jax.jit(self.generate, static_argnums=2)
        out = []
        for begin in range(0, count, self.sample_batch_size):
            size = min(self.sample_batch_size, count - begin)
            out.append(np.asarray(generate(state, jax.random.fold_in(rng, begin), self.sample_batch_size))[:size])
        return np.concatenate(out) if out else np.zeros((0,), np.float32)

    def individual_images(self, state: Any, rng: jax.Array) -> np.ndarray | None:
        """`sample.num_individual` images from `generate`, or None when it is 0."""
        return self.generate_many(state, rng, self.num_individual) if self.num_individual else None


def model_batch(batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """uint8 arrays (images) to float32 in [-1, 1]; other arrays unchanged."""
    return {k: pipeline.to_model_range(v) if v.dtype == jnp.uint8 else v for k, v in batch.items()}


def average_metrics(history: list[Mapping[str, Any]]) -> dict[str, float]:
    """The weighted mean of each metric over the steps in `history` (plain values weigh 1).

    A metric whose weights sum to 0 over the interval (computed on none of its steps) is left out.
    """
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for metrics in jax.device_get(history):
        for name, metric in metrics.items():
            value, weight = (metric.value, metric.weight) if isinstance(metric, Weighted) else (metric, 1.0)
            sums[name] = sums.get(name, 0.0) + float(value) * float(weight)
            weights[name] = weights.get(name, 0.0) + float(weight)
    return {name: sums[name] / weights[name] for name in sums if weights[name] > 0}


class TrainStep:
    """The jitted step every caller uses (the loop, the tests, the benchmarks): one compiled function per phase.

    `step(state, batch, rng, frozen, step=None) -> (state, metrics)`, where `batch` holds uint8 images sharded on
    the batch axis, `state`, `rng` and `frozen` are replicated, and the input state is donated. `step` is the
    state's step counter as the caller knows it on the host; a method with phases (`Method.phase`) reads it from
    the state when it is not given (a device-to-host wait).
    """

    def __init__(self, method: Method, shardings):
        self.method, self.shardings = method, shardings
        self._jitted: dict[Hashable, Any] = {}
        self._phased = type(method).phase is not Method.phase

    def for_phase(self, phase: Hashable):
        """The jitted step of `phase` (None for a method without phases), compiled on first use."""
        if phase not in self._jitted:
            method = self.method

            def step(state, batch, rng, frozen):
                extra = {} if phase is None else {"phase": phase}
                return method.train_step(state, model_batch(batch), rng, frozen, **extra)

            replicated = self.shardings.replicated
            self._jitted[phase] = jax.jit(
                step,
                in_shardings=(replicated, self.shardings.data, replicated, replicated),
                out_shardings=(replicated, replicated),
                donate_argnums=0,
            )
        return self._jitted[phase]

    def _jitted_for(self, state, step: int | None):
        if not self._phased:
            return self.for_phase(None)
        return self.for_phase(self.method.phase(int(state.step) if step is None else step))

    def __call__(self, state, batch, rng, frozen, step: int | None = None):
        return self._jitted_for(state, step)(state, batch, rng, frozen)

    def lower(self, state, batch, rng, frozen, step: int | None = None):
        """The phase's step lowered for these arguments (`.compile()`, cost analysis)."""
        return self._jitted_for(state, step).lower(state, batch, rng, frozen)


def make_train_step(method: Method, shardings) -> TrainStep:
    """The method's `TrainStep` on the mesh of `shardings`."""
    return TrainStep(method, shardings)


def place_frozen(method: Method, shardings) -> Any:
    """The method's frozen networks on the mesh, replicated: done once per run."""
    return jax.device_put(method.frozen(), shardings.replicated)
