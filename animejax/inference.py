"""`--mode=sample` and `--mode=eval`: use a trained run's latest checkpoint."""

from __future__ import annotations

import json
import logging
from typing import Any

import jax
import ml_collections

from animejax import rng, storage, writers
from animejax.data import pipeline
from animejax.errors import UserError
from animejax.evaluation import Evaluator
from animejax.run_setup import (
    RunSetup,
    check_has_checkpoints,
    holdout_batches,
    host_batches,
    make_evaluator,
    no_checkpoint_error,
    setup_run,
)


def _restore(config: ml_collections.ConfigDict, workdir: str) -> RunSetup:
    check_has_checkpoints(workdir)
    run = setup_run(config, workdir)
    if not run.restored:
        raise no_checkpoint_error(workdir)
    return run


def sample(config: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
    """Writes the method's samples under workdir/samples; returns name -> path.

    Each grid becomes one PNG; the individual images (`sample.num_individual`) a folder of single PNGs, for
    external metrics; a method with a `progress_grid` also gets the GIF of that grid over training.
    """
    run = _restore(config, workdir)
    step = int(run.state.step)
    if run.holdout is not None:  # Reconstructions and upscaled images of images the model never trained on.
        data = holdout_batches(run, run.local_batch)
    else:
        data = host_batches(run, rng.stream_seed(config.seed, rng.SAMPLE_DATA))
    samples = run.method.sample(run.state, data, rng.stream_key(config.seed, rng.SAMPLE))
    is_main = jax.process_index() == 0
    paths = {}
    for name, (images, columns) in samples.grids.items():
        paths[name] = storage.join(workdir, "samples", f"sample_{name}_{step:07d}.png")
        if is_main:
            writers.save_png(paths[name], writers.image_grid(pipeline.to_uint8(images), columns))
    if samples.individual is not None:
        paths["individual"] = storage.join(workdir, "samples", f"sample_individual_{step:07d}")
        folder = storage.as_path(paths["individual"])
        if is_main and folder.is_dir():  # An earlier, larger sample must not linger in it.
            for entry in folder.iterdir():
                if entry.name.endswith(".png") and entry.name[:-4].isdigit():
                    entry.unlink()
        for i, image in enumerate(pipeline.to_uint8(samples.individual) if is_main else ()):
            writers.save_png(storage.join(paths["individual"], f"{i:06d}.png"), image)
    for name, frames in samples.animations.items():
        paths[name] = storage.join(workdir, "samples", f"sample_{name}_{step:07d}.gif")
        if is_main:
            rows = [writers.image_grid(pipeline.to_uint8(frame), len(frame)) for frame in frames]
            writers.save_gif(paths[name], rows)
    for path in paths.values():
        logging.info("Wrote %s", path)
    if run.method.progress_grid and is_main:
        try:
            paths["progress_gif"] = writers.progress_gif(workdir, run.method.progress_grid)
            logging.info("Wrote %s", paths["progress_gif"])
        except FileNotFoundError as error:
            logging.warning("No training-progress GIF: %s", error)
    return paths


def method_terms(run: RunSetup, state: Any) -> dict[str, float]:
    """The method's own terms for `state`: on every held-out image when there are some, else on
    `eval.loss_num_images` training images (0: none)."""
    config = run.config
    if run.holdout is not None:
        return run.method.evaluate(state, holdout_batches(run, config.eval.batch_size))
    if not config.eval.loss_num_images:
        return {}
    num_batches = max(1, config.eval.loss_num_images // run.local_batch)
    batches = host_batches(run, rng.stream_seed(config.seed, rng.EVAL_DATA))
    return run.method.evaluate(state, (next(batches) for _ in range(num_batches)))


def sample_metrics(
    run: RunSetup, state: Any, evaluator: Evaluator, metrics: tuple[str, ...], num_images: int, key: jax.Array
) -> dict[str, float]:
    """`metrics` of `num_images` samples of `run.method` drawn with `key`; a conditional method's outputs for
    the held-out images instead (at most `num_images` of them)."""
    config = run.config
    reference_images = config.eval.reference_images or evaluator.num_real_images
    if run.method.conditional:
        if run.holdout is None:
            raise UserError(f"{config.method} is scored on held-out images: set data.holdout_images > 0.")
        inputs = run.holdout[: max(1, num_images // jax.process_count())]
        return evaluator.evaluate_conditional(run.method.translate, state, inputs, metrics, reference_images)
    return evaluator.evaluate(run.method.generate, state, key, metrics, num_images, reference_images)


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Scores the latest checkpoint: `eval.metrics` on `eval.num_images` samples, plus the method's own terms.

    Writes workdir/eval_<step>.json (values and what was computed) and TensorBoard scalars.
    """
    run = _restore(config, workdir)
    step = int(run.state.step)
    results = method_terms(run, run.state)
    evaluator = make_evaluator(run)
    metrics = tuple(name for name in config.eval.metrics if name)  # `--config.eval.metrics=` gives ("",): none.
    if metrics:
        key = rng.stream_key(config.seed, rng.EVAL)
        results.update(sample_metrics(run, run.state, evaluator, metrics, config.eval.num_images, key))
    if jax.process_index() == 0:
        path = storage.join(workdir, f"eval_{step:07d}.json")
        report = {"step": step, "metrics": results, "dataset": run.source.name, "settings": evaluator.describe(metrics)}
        storage.write_text(path, json.dumps(report, indent=2))
        writer = writers.create_writer(workdir, True)
        writer.write_scalars(step, results)
        writer.close()
        for name, value in results.items():
            writers.log_line(f"{name}: {value:.5g}")
        logging.info("Wrote %s", path)
    return results
