"""The generic training loop: wires config to data, method, state and writers.

One run: mesh -> this process's decoded images -> method -> state born
replicated (or restored from the latest checkpoint) -> one jitted step with the
state donated -> periodic scalars, grids and checkpoints. SIGTERM/SIGINT save
a checkpoint and stop; a non-finite loss stops the run before anything bad is
saved.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from animejax import checkpoint, evaluation, methods, sharding, writers
from animejax.data import pipeline
from animejax.errors import UserError


class NonFiniteLossError(UserError, RuntimeError):
    """A loss or metric became NaN or infinite."""


@dataclasses.dataclass
class RunSetup:
    """What train, sample and eval share: mesh, data, method, state."""

    config: ml_collections.ConfigDict
    shardings: sharding.MeshShardings
    images: np.ndarray  # This process's decoded images, uint8 [N, S, S, 3].
    source: Any  # The ImageSource they came from (name and fingerprint key metric caches).
    local_batch: int
    method: Any
    checkpointer: checkpoint.Checkpointer
    state: Any
    restored: bool


def setup_run(config: ml_collections.ConfigDict, workdir: str) -> RunSetup:
    """Builds the mesh, loads data, and creates or restores the train state."""
    shardings = sharding.make_mesh(config.mesh.num_devices)
    local_batch = sharding.local_batch_size(config.train.batch_size, shardings)
    images, source = pipeline.load_images(config.data, jax.process_index(), jax.process_count())
    pipeline.check_enough_images(images, local_batch, _data_description(config.data))
    method = methods.get_method(config)
    checkpointer = checkpoint.Checkpointer(workdir, config)

    root_key = jax.random.PRNGKey(config.seed)
    example = jnp.zeros((local_batch, *images.shape[1:]), jnp.float32)
    abstract_state = jax.eval_shape(method.init_state, root_key, example)
    abstract_state = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=shardings.replicated), abstract_state
    )
    state = checkpointer.restore_latest(abstract_state)
    restored = state is not None
    if not restored:
        init = jax.jit(method.init_state, out_shardings=shardings.replicated)
        state = init(root_key, example)
    return RunSetup(config, shardings, images, source, local_batch, method, checkpointer, state, restored)


def make_evaluator(run: RunSetup) -> evaluation.Evaluator:
    """The sample-quality evaluator for this run's data and mesh."""
    return evaluation.Evaluator(run.config.eval, run.shardings, run.images, run.source.name, run.source.fingerprint())


def _data_description(data: ml_collections.ConfigDict) -> str:
    return f"data.source={data.source}" + (f" at {data.path!r}" if data.path else "")


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step."""

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        self.signal_name = signal.Signals(signum).name
        # A second signal falls through to the previous handler.
        signal.signal(signum, self._previous[signum])

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _check_finite(step: int, metrics: dict[str, float]) -> None:
    bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
    if bad:
        raise NonFiniteLossError(
            f"Non-finite values at step {step}: {bad}. The run stopped without saving this state; "
            "the last good checkpoint is kept. Try a lower optim.learning_rate (and optim_d.learning_rate for GANs) "
            "or set optim.grad_clip_norm."
        )


def _mean_metrics(history: list[dict[str, jax.Array]]) -> dict[str, float]:
    fetched = jax.device_get(history)
    return {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


def write_grids(writer, workdir: str, step: int, grids: dict[str, Any], columns: int) -> None:
    """Logs image batches in [-1, 1] as TensorBoard images and PNG grids under workdir/samples."""
    if jax.process_index() != 0:
        return
    tiled = {name: writers.image_grid(pipeline.to_uint8(images), columns) for name, images in grids.items()}
    writer.write_images(step, {f"samples/{k}": v[None] for k, v in tiled.items()})
    for name, grid in tiled.items():
        writers.save_png(os.path.join(workdir, "samples", f"{name}_{step:07d}.png"), grid)


class _InTrainingEval:
    """Every `eval.every_steps`: sample metrics logged, and the best state kept under workdir/best."""

    def __init__(self, run: RunSetup, workdir: str, writer):
        self.config = run.config.eval
        self.metrics = tuple(self.config.train_metrics)
        self.method = run.method
        self.writer = writer
        self.evaluator = make_evaluator(run)
        self.evaluator.prepare(self.metrics)  # A missing weights file fails now, not hours into training.
        if self.config.best_metric not in self.metrics:
            raise evaluation.ConfigError(
                f"eval.best_metric={self.config.best_metric!r} is not among eval.train_metrics={self.metrics}."
            )
        self.best = checkpoint.BestCheckpointer(workdir, run.config)
        self.rng = jax.random.PRNGKey(run.config.seed + 3)

    def __call__(self, step: int, state) -> None:
        results = self.evaluator.evaluate(
            self.method.generate,
            state,
            self.rng,
            self.metrics,
            num_images=self.config.train_num_images,
            reference_images=self.config.reference_images or len(self.evaluator.real_images),
        )
        self.writer.write_scalars(step, results)
        writers.log_line(f"eval at step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in results.items()))
        name, value, lower_is_better = evaluation.headline(results, self.config.best_metric)
        if self.best.is_better(value, lower_is_better):
            self.best.save(step, state, name, value)

    def close(self) -> None:
        self.best.close()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Any:
    """Trains `config.method` until `config.train.num_steps`, resuming from `workdir`.

    Returns:
      The final train state.
    """
    run = setup_run(config, workdir)
    is_main = jax.process_index() == 0
    writer = writers.create_writer(workdir, is_main)
    if not run.restored:
        run.checkpointer.write_config()
        writer.write_hparams(run.checkpointer.config_dict)
    state, method, train = run.state, run.method, config.train
    start_step = int(state.step)
    logging.info(
        "Training %s on %d device(s), global batch %d, from step %d%s",
        config.method,
        run.shardings.num_devices,
        train.batch_size,
        start_step,
        " (resumed)" if run.restored else "",
    )

    replicated, data_sharding = run.shardings.replicated, run.shardings.data

    def step_fn(state, images_uint8, rng):
        return method.train_step(state, pipeline.to_model_range(images_uint8), rng)

    train_step = jax.jit(
        step_fn,
        in_shardings=(replicated, data_sharding, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    preview = jax.jit(
        lambda state, images_uint8, rng: method.preview(state, pipeline.to_model_range(images_uint8), rng),
        out_shardings=replicated,
    )
    step_key = jax.jit(jax.random.fold_in, out_shardings=replicated)

    dataset = pipeline.batch_dataset(run.images, run.local_batch, config.seed, config.data.random_flip)
    batches = pipeline.iterate_batches(dataset, start_step, config.data.loader_threads, config.data.prefetch)
    preview_images = sharding.global_batch(np.asarray(dataset[0]), run.shardings)
    preview_rng = jax.random.PRNGKey(config.seed + 1)

    in_training_eval = _InTrainingEval(run, workdir, writer) if config.eval.every_steps else None
    progress = writers.ProgressLine(train.num_steps, start_step)
    history, interval_start, interval_steps = [], time.monotonic(), 0
    step = start_step
    with _StopRequest() as stop:
        while step < train.num_steps:
            images = sharding.global_batch(next(batches), run.shardings)
            state, metrics = train_step(state, images, step_key(state.rng, step))
            step += 1
            history.append(metrics)
            interval_steps += 1
            due_log = step % train.log_every == 0 or step == train.num_steps
            due_checkpoint = step % train.checkpoint_every == 0 or step == train.num_steps
            if due_log or due_checkpoint or stop.signal_name:
                scalars = _mean_metrics(history)
                _check_finite(step, scalars)  # Before any save: a bad state is never written.
                history = []
            if due_log:
                seconds = time.monotonic() - interval_start
                scalars["perf/images_per_second"] = interval_steps * train.batch_size / seconds
                scalars["perf/step_seconds"] = seconds / interval_steps
                writer.write_scalars(step, scalars)
                if hasattr(method, "on_log"):  # Optional hook, e.g. to warn about a stalled GAN.
                    method.on_log(step, scalars)
                writers.log_line(progress.line(step, scalars, scalars["perf/images_per_second"]))
                interval_start, interval_steps = time.monotonic(), 0
            side_work_start = time.monotonic()  # Grids and evals below do not count in images/s.
            if step % train.sample_every == 0 or step == train.num_steps:
                write_grids(writer, workdir, step, preview(state, preview_images, preview_rng), config.sample.grid_size)
            if in_training_eval and (step % config.eval.every_steps == 0 or step == train.num_steps):
                in_training_eval(step, state)
            interval_start += time.monotonic() - side_work_start
            if due_checkpoint or stop.signal_name:
                run.checkpointer.save(step, state, force=True)
            if stop.signal_name:
                logging.warning(
                    "Received %s: saved a checkpoint at step %d; rerun the same command to resume.",
                    stop.signal_name,
                    step,
                )
                break
    run.checkpointer.wait()
    run.checkpointer.close()
    if in_training_eval:
        in_training_eval.close()
    writer.flush()
    writer.close()
    return state
