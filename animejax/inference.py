"""`--mode=sample` and `--mode=eval`: use a trained run's latest checkpoint."""

from __future__ import annotations

import json
import logging
import os

import jax
import ml_collections

from animejax import progress_gif, train, writers
from animejax.data import pipeline
from animejax.errors import UserError


class NoCheckpointError(UserError, FileNotFoundError):
    """Sampling or evaluating a workdir that holds no checkpoint."""


def _restore(config: ml_collections.ConfigDict, workdir: str) -> train.RunSetup:
    run = train.setup_run(config, workdir)
    if not run.restored:
        raise NoCheckpointError(
            f"No checkpoint under {os.path.join(os.path.abspath(workdir), 'checkpoints')}; "
            "train first with --mode=train and the same --workdir."
        )
    return run


def _data_batches(run: train.RunSetup, seed_offset: int):
    dataset = pipeline.batch_dataset(run.images, run.local_batch, run.config.seed + seed_offset, random_flip=False)
    return pipeline.iterate_batches(dataset, 0, run.config.data.loader_threads, run.config.data.prefetch)


def sample(config: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
    """Writes the method's samples under workdir/samples; returns name -> path.

    Grids become one PNG each; names in the method's `individual_sample_keys` become a folder of single PNGs
    (for external evaluation); a method with a `progress_grid` also gets the GIF of that grid over training.
    """
    run = _restore(config, workdir)
    step = int(run.state.step)
    grids = run.method.sample(run.state, _data_batches(run, seed_offset=1000), jax.random.PRNGKey(config.seed + 2))
    individual = set(getattr(run.method, "individual_sample_keys", ()))
    is_main = jax.process_index() == 0
    paths = {}
    for name, images in grids.items():
        images = pipeline.to_uint8(images)
        if name in individual:
            path = os.path.join(workdir, "samples", f"sample_{name}_{step:07d}")
            for i, image in enumerate(images if is_main else ()):
                writers.save_png(os.path.join(path, f"{i:06d}.png"), image)
        else:
            columns = config.sample.interpolation_steps if name == "interpolations" else config.sample.grid_size
            path = os.path.join(workdir, "samples", f"sample_{name}_{step:07d}.png")
            if is_main:
                writers.save_png(path, writers.image_grid(images, columns))
        paths[name] = path
        logging.info("Wrote %s", path)
    progress_grid = getattr(run.method, "progress_grid", None)
    if progress_grid and is_main:
        try:
            paths["progress_gif"] = progress_gif.progress_gif(workdir, progress_grid)
            logging.info("Wrote %s", paths["progress_gif"])
        except FileNotFoundError as error:
            logging.warning("No training-progress GIF: %s", error)
    return paths


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Scores the latest checkpoint: `eval.metrics` on `eval.num_images` samples, plus the method's own terms.

    Writes workdir/eval_<step>.json (values and what was computed) and TensorBoard scalars.
    """
    run = _restore(config, workdir)
    step = int(run.state.step)
    results = {}
    if config.eval.loss_num_images:  # The method's own terms on training images (e.g. reconstruction error).
        num_batches = max(1, config.eval.loss_num_images // run.local_batch)
        batches = _data_batches(run, seed_offset=2000)
        results.update(run.method.evaluate(run.state, (next(batches) for _ in range(num_batches))))
    evaluator = train.make_evaluator(run)
    metrics = tuple(config.eval.metrics)
    if metrics:
        reference_images = config.eval.reference_images or len(run.images) * jax.process_count()
        results.update(
            evaluator.evaluate(
                run.method.generate,
                run.state,
                jax.random.PRNGKey(config.seed + 4),
                metrics,
                num_images=config.eval.num_images,
                reference_images=reference_images,
            )
        )
    if jax.process_index() == 0:
        path = os.path.join(workdir, f"eval_{step:07d}.json")
        report = {"step": step, "metrics": results, "dataset": run.source.name, "settings": evaluator.describe()}
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
        writer = writers.create_writer(workdir, True)
        writer.write_scalars(step, results)
        writer.close()
        for name, value in results.items():
            writers.log_line(f"{name}: {value:.5g}")
        logging.info("Wrote %s", path)
    return results
