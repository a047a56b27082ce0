"""The generic training loop: wires config to data, method, state and writers.

One run: mesh -> this process's decoded images -> method -> state born
replicated (or restored from the latest checkpoint) -> one jitted step with the
state donated -> periodic scalars, grids and checkpoints. SIGTERM/SIGINT save
a checkpoint and stop (every process of a multi-process run after the same
step); a non-finite loss stops the run before anything bad is saved. Only
process 0 writes logs, grids and TensorBoard events.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from animejax import checkpoint, evaluation, inference, rng, sharding, storage, training_clock, writers
from animejax.data import pipeline
from animejax.errors import UserError
from animejax.methods.base import average_metrics, make_train_step, model_batch, place_frozen
from animejax.run_setup import RunSetup, make_evaluator, setup_run

# The exit status of a run stopped by SIGTERM or SIGINT after saving a checkpoint: EX_TEMPFAIL of sysexits.h,
# "try again later". Schedulers requeue on it (launch/slurm/train.sbatch); a finished run exits 0.
INTERRUPTED_EXIT_CODE = 75


class NonFiniteLossError(UserError, RuntimeError):
    """A loss or metric became NaN or infinite."""


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint at `step`; rerunning resumes from it."""

    def __init__(self, signal_name: str, step: int):
        super().__init__(f"Received {signal_name}: saved a checkpoint at step {step}; rerun the same command to resume")
        self.signal_name, self.step = signal_name, step


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


class _AgreedStop:
    """Whether to stop after this step: the same answer in every process.

    A signal reaches each process at its own moment, perhaps steps apart, and a process stopping alone would
    save while the others wait for its next step. With several processes each step's requests are combined on
    the devices (any of them) and read one step later, so all stop after the same step, and the host never
    waits for the step it just started.
    """

    def __init__(self, shardings: sharding.MeshShardings):
        self.shardings = shardings
        self.local_devices = shardings.num_devices // jax.process_count()
        self.combine = jax.jit(jnp.any, out_shardings=shardings.replicated) if jax.process_count() > 1 else None
        self.pending = None

    def __call__(self, requested: bool) -> bool:
        if self.combine is None:
            return requested
        flags = np.full((self.local_devices,), requested)
        previous, self.pending = self.pending, self.combine(sharding.global_batch(flags, self.shardings))
        return previous is not None and bool(previous)


def _check_finite(step: int, metrics: dict[str, float], last_checkpoint: int | None) -> None:
    bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
    if bad:
        kept = (
            f"the last good checkpoint (step {last_checkpoint}) is kept"
            if last_checkpoint is not None
            else "no checkpoint had been written yet"
        )
        raise NonFiniteLossError(
            f"Non-finite values at step {step}: {bad}. The run stopped without saving this state; {kept}. "
            "Try a lower optim.learning_rate (and optim_d.learning_rate for GANs) or set optim.grad_clip_norm."
        )


def write_grids(writer, workdir: str, step: int, grids: dict[str, Any], columns: int) -> None:
    """Logs image batches in [-1, 1] as TensorBoard images and PNG grids under workdir/samples."""
    if jax.process_index() != 0:
        return
    tiled = {name: writers.image_grid(pipeline.to_uint8(images), columns) for name, images in grids.items()}
    writer.write_images(step, {f"samples/{k}": v[None] for k, v in tiled.items()})
    for name, grid in tiled.items():
        writers.save_png(storage.join(workdir, "samples", f"{name}_{step:07d}.png"), grid)


class _InTrainingEval:
    """Every `eval.every_steps`: sample metrics logged, and the best state kept under workdir/best."""

    def __init__(self, run: RunSetup, workdir: str, writer):
        self.run = run
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
        self.rng = rng.stream_key(run.config.seed, rng.TRAINING_EVAL)

    def __call__(self, step: int, state) -> None:
        results = inference.sample_metrics(
            self.run, state, self.evaluator, self.metrics, self.config.train_num_images, self.rng
        )
        if self.run.holdout is not None:  # The method's own terms on held-out images (SRGAN's PSNR and SSIM).
            results.update(inference.method_terms(self.run, state))
        self.writer.write_scalars(step, results)
        if jax.process_index() == 0:
            writers.log_line(f"eval at step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in results.items()))
        name, value, lower_is_better = evaluation.headline(results, self.config.best_metric)
        if self.best.is_better(value, lower_is_better):
            self.best.save(step, state, name, value)

    def close(self) -> None:
        self.best.close()


class _Throughput:
    """Steps and seconds since the last log, with side work (grids, evals) left out, so images/s stays honest."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.reset()

    def reset(self) -> None:
        self.start, self.steps = time.monotonic(), 0

    def pause(self, seconds: float) -> None:
        self.start += seconds

    def scalars(self) -> dict[str, float]:
        seconds = time.monotonic() - self.start
        return {
            "perf/images_per_second": self.steps * self.batch_size / seconds,
            "perf/step_seconds": seconds / self.steps,
        }


class _Loop:
    """One training run's compiled functions, data, writers and cadences; `run()` trains to the end."""

    def __init__(self, run: RunSetup, workdir: str):
        self.run, self.workdir, self.config = run, workdir, run.config
        method, shardings, config = run.method, run.shardings, run.config
        self.frozen = place_frozen(method, shardings)  # First: a missing weights file fails before anything is written.
        self.writer = writers.create_writer(workdir, jax.process_index() == 0)
        # The latest session's config (a resumed run may go on to more steps), which sample, eval and reports read.
        run.checkpointer.write_config()
        if not run.restored:
            self.writer.write_hparams(run.checkpointer.config_dict)
        self.train_step = make_train_step(method, shardings)
        self.preview = jax.jit(
            lambda state, batch, key: method.preview(state, model_batch(batch), key), out_shardings=shardings.replicated
        )
        self.step_key = jax.jit(jax.random.fold_in, out_shardings=shardings.replicated)
        self.dataset = pipeline.batch_dataset(run.images, run.local_batch, config.seed, config.data.random_flip)
        self.preview_batch = {"image": sharding.global_batch(np.asarray(self.dataset[0]), shardings)}
        self.preview_rng = rng.stream_key(config.seed, rng.PREVIEW)
        self.callbacks = method.callbacks()
        self.in_training_eval = _InTrainingEval(run, workdir, self.writer) if config.eval.every_steps else None
        self.throughput = _Throughput(config.train.batch_size)

    def _due(self, step: int, every: int) -> bool:
        return step % every == 0 or step == self.config.train.num_steps

    def _log(self, step: int, scalars: dict[str, float], progress: writers.ProgressLine) -> None:
        scalars.update(self.throughput.scalars())
        self.writer.write_scalars(step, scalars)
        for callback in self.callbacks:
            callback.on_log(step, scalars)
        if jax.process_index() == 0:
            writers.log_line(progress.line(step, scalars, scalars["perf/images_per_second"]))
        self.throughput.reset()

    def _side_work(self, step: int, state, clock: training_clock.TrainingClock) -> None:
        """Preview grids and in-training evaluations, which count neither in images/s nor in training time."""
        start = time.monotonic()
        if self._due(step, self.config.train.sample_every):
            grids = self.preview(state, self.preview_batch, self.preview_rng)
            write_grids(self.writer, self.workdir, step, grids, self.config.sample.grid_size)
        if self.in_training_eval and self._due(step, self.config.eval.every_steps):
            self.in_training_eval(step, state)
        seconds = time.monotonic() - start
        self.throughput.pause(seconds)
        clock.pause(seconds)

    def run_to_end(self) -> Any:
        """Steps until `train.num_steps` or `train.time_budget_s` and returns the final state.

        Raises:
          Interrupted: after a stop signal, once the current step is saved.
        """
        run, train = self.run, self.config.train
        state, step = run.state, int(run.state.step)
        clock = training_clock.TrainingClock(self.workdir, step, train.get("time_budget_s", 0.0))  # Older runs lack it.
        if step < train.num_steps and 0 < clock.budget_s <= clock.spent_before:
            logging.info("The time budget (%.0f s) was spent at step %d: nothing to train.", clock.budget_s, step)
            return state
        batches = pipeline.iterate_batches(
            self.dataset, step, self.config.data.loader_threads, self.config.data.prefetch
        )
        progress, history = writers.ProgressLine(train.num_steps, step), []
        agreed_stop = _AgreedStop(run.shardings)
        with _StopRequest() as stop:
            while step < train.num_steps:
                batch = {"image": sharding.global_batch(next(batches), run.shardings)}
                state, metrics = self.train_step(state, batch, self.step_key(state.rng, step), self.frozen, step)
                step += 1
                history.append(metrics)
                self.throughput.steps += 1
                stopping = agreed_stop(stop.signal_name is not None or clock.budget_spent())
                due_log, due_checkpoint = self._due(step, train.log_every), self._due(step, train.checkpoint_every)
                if due_log or due_checkpoint or stopping:
                    scalars = average_metrics(history)
                    # Before any save: a bad state is never written.
                    _check_finite(step, scalars, run.checkpointer.latest_step())
                    history = []
                if due_log:
                    self._log(step, scalars, progress)
                self._side_work(step, state, clock)
                budget_stop = stopping and stop.signal_name is None and clock.budget_spent()
                if due_checkpoint or stopping:
                    run.checkpointer.save(step, state, force=True)
                    clock.save(step, budget_stop)
                if budget_stop:
                    logging.info(
                        "Time budget of %.0f s spent at step %d of %d: saved; the run is complete.",
                        clock.budget_s,
                        step,
                        train.num_steps,
                    )
                    break
                if stopping:
                    raise Interrupted(stop.signal_name or "a stop signal in another process", step)
        return state

    def close(self) -> None:
        self.run.checkpointer.wait()
        self.run.checkpointer.close()
        if self.in_training_eval:
            self.in_training_eval.close()
        self.writer.flush()
        self.writer.close()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Any:
    """Trains `config.method` until `config.train.num_steps`, resuming from `workdir`.

    Returns:
      The final train state.

    Raises:
      Interrupted: on SIGTERM or SIGINT, once the checkpoint of the current step is saved.
    """
    run = setup_run(config, workdir)
    logging.info(
        "Training %s on %d device(s), global batch %d, from step %d%s",
        config.method,
        run.shardings.num_devices,
        config.train.batch_size,
        int(run.state.step),
        " (resumed)" if run.restored else "",
    )
    loop = _Loop(run, workdir)
    try:
        return loop.run_to_end()
    finally:
        loop.close()
