"""Evaluates every run's chosen checkpoint with one shared evaluation, and gathers the report's rows.

Each run keeps its own config except the shared part (`settings.py`): the seed, the devices and the
evaluation fields. Runs trained on the same data share one `Evaluator`, so its reference statistics and
feature networks are computed or loaded once; runs on other data get their own, and the report says so.
A run's values are what `--mode=eval` gives on the same checkpoint with the same overrides
(`eval_config` shows them).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from animejax import inference, rng, storage, writers
from animejax.data import pipeline
from animejax.metrics import detection, registry
from animejax.pretrained import download
from animejax.pretrained import inception as pretrained_inception
from animejax.report import runs as runs_lib
from animejax.run_setup import holdout_batches, host_batches, make_evaluator, setup_run

CHECKPOINT_CHOICES = ("best", "latest")
PREFIX = "eval/"
GRID_STREAM = "compare_grid"  # The fixed-seed grid's key: rng.stream_key(settings.seed, GRID_STREAM), every run.
TIMING_STREAM = "compare_timing"


@dataclasses.dataclass
class Row:
    """One run in the report: its facts, the evaluated checkpoint and what the evaluation gave.

    `error` says why a run has no values (no checkpoint, or the evaluation failed); such rows stay in the report.
    """

    info: runs_lib.RunInfo
    status: str
    checkpoint: str = ""
    step: int | None = None
    parameters: dict[str, int] = dataclasses.field(default_factory=dict)
    sampling_images_per_second: float | None = None
    results: dict[str, float] = dataclasses.field(default_factory=dict)
    grids: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    dataset: str = ""
    error: str | None = None
    report_terms: tuple[str, ...] = ()  # The method's terms shown in the main table (Method.report_terms).

    @property
    def images_seen(self) -> int | None:
        """Training images behind the evaluated checkpoint: step x train.batch_size."""
        return None if self.step is None else self.step * int(self.info.config.train.batch_size)


@dataclasses.dataclass
class Comparison:
    """Everything the report states: rows, the shared settings, what the metrics used, the datasets."""

    rows: list[Row]
    settings: ml_collections.ConfigDict
    metrics: tuple[str, ...]
    which: str
    metric_settings: dict[str, Any]
    weights: dict[str, str]
    datasets: list[str]
    columns: list[str]  # Result names in the main table: the metrics' (known before any run), then report_terms.
    term_columns: list[str]  # The methods' other terms, each shown in its method's own table.


def eval_config(info: runs_lib.RunInfo, settings: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The run's saved config with the shared part of `settings` on top (seed, devices, evaluation fields).

    The same as `--mode=eval --workdir=RUN --config.seed=S --config.mesh.num_devices=D --config.eval.F=V...`
    for every shared eval field F.
    """
    config = ml_collections.ConfigDict(info.config.to_dict())
    config.seed = settings.seed
    config.mesh.num_devices = settings.mesh.num_devices
    for field, value in settings.eval.items():
        if field not in runs_lib.PER_RUN_EVAL_FIELDS:
            config.eval[field] = value
    config.sample.num_individual = 0  # `method.sample` draws only its grids here.
    config.train.init_from = ""  # Restored from its own checkpoint: another run's weights are never read.
    return config


def selected_metrics(settings: ml_collections.ConfigDict) -> tuple[str, ...]:
    """settings.eval.metrics without empty names (`--config.eval.metrics=` gives ("",): none); checked names."""
    metrics = tuple(name for name in settings.eval.metrics if name)
    registry.lookup(metrics)  # ConfigError listing the valid names.
    return metrics


def metric_columns(settings: ml_collections.ConfigDict, metrics: tuple[str, ...]) -> list[str]:
    """The table's result names for `metrics`, in registry order, from their budgets (so a run that lacks one
    shows it missing): each headline, plus KID's std beside its mean. SWD's per-level values go to report.json.
    """
    columns = []
    for metric_class in registry.lookup(metrics):
        name = metric_class(settings.eval, settings.eval.num_images).result_name(PREFIX)
        columns.append(name)
        if name.endswith("_mean") and metric_class.name.startswith("kid"):
            columns.append(name[: -len("_mean")] + "_std")
    return columns


def count_parameters(state: Any) -> dict[str, int]:
    """Trainable parameters per state field: the fields named `*params`, EMA copies left out."""
    fields = [f.name for f in dataclasses.fields(state)] if dataclasses.is_dataclass(state) else list(state)
    counts = {}
    for name in fields:
        if name.endswith("params") and "ema" not in name:
            value = getattr(state, name) if dataclasses.is_dataclass(state) else state[name]
            leaves = jax.tree.leaves(value)
            if leaves:
                counts[name] = int(sum(np.size(leaf) for leaf in leaves))
    return counts


def compare(settings: ml_collections.ConfigDict, patterns: str, which: str = "best") -> Comparison:
    """Evaluates every run `patterns` names (see `runs.resolve_runs`) with `settings`.

    Args:
      settings: the compare config (settings.py) with the user's overrides.
      patterns: comma-separated run folders or globs.
      which: "best" (workdir/best where the run kept one, else the latest, said so) or "latest".
    """
    if which not in CHECKPOINT_CHOICES:
        raise ValueError(f"which={which!r}; expected one of {CHECKPOINT_CHOICES}.")
    metrics = selected_metrics(settings)
    workdirs = runs_lib.resolve_runs(patterns)
    infos = [runs_lib.load_run(w, n) for w, n in zip(workdirs, runs_lib.run_names(workdirs))]
    evaluators: dict[tuple, Any] = {}
    datasets: dict[tuple, str] = {}
    rows = []
    for info in infos:
        logging.info("Comparing %s (%s)", info.name, info.workdir)
        rows.append(_evaluate_run(info, settings, metrics, which, evaluators, datasets))
    evaluator = next(iter(evaluators.values()), None)
    method_terms = sorted({name for row in rows for name in row.results} - set(metric_columns(settings, metrics)))
    method_terms = [name for name in method_terms if not _is_detail(name, settings, metrics)]
    headline = {PREFIX + term for row in rows for term in row.report_terms}
    return Comparison(
        rows=rows,
        settings=settings,
        metrics=metrics,
        which=which,
        metric_settings=evaluator.describe(metrics) if evaluator and metrics else {},
        weights=weights_versions(settings.eval, metrics, evaluator),
        datasets=list(datasets.values()),
        columns=metric_columns(settings, metrics) + [name for name in method_terms if name in headline],
        term_columns=[name for name in method_terms if name not in headline],
    )


def _is_detail(name: str, settings: ml_collections.ConfigDict, metrics: tuple[str, ...]) -> bool:
    """SWD's per-level values (kept in report.json, not in the table)."""
    if "swd" not in metrics:
        return False
    swd_name = registry.get("swd")(settings.eval, settings.eval.num_images).result_name(PREFIX, "swd{budget}")
    return name.startswith(swd_name + "/")


def _evaluate_run(info, settings, metrics, which, evaluators, datasets) -> Row:
    row = Row(info=info, status=info.status())
    if not info.checkpoints:
        row.error = "no checkpoint"
        return row
    try:
        config = eval_config(info, settings)
        run = setup_run(config, info.workdir)
        try:
            state, row.checkpoint, row.step = _chosen_state(run, info, which)
            key = (run.source.name, run.source.fingerprint(), int(config.data.image_size))
            if key not in evaluators:
                evaluators[key] = make_evaluator(run)
                datasets[key] = (
                    f"{run.source.name}: {config.data.image_size} px, {evaluators[key].num_real_images} images "
                    f"(fingerprint {run.source.fingerprint()[:16]})"
                )
            row.dataset = datasets[key]
            row.parameters = count_parameters(state)
            row.report_terms = tuple(run.method.report_terms)
            row.results = inference.method_terms(run, state)
            if metrics:
                eval_key = rng.stream_key(config.seed, rng.EVAL)
                row.results.update(
                    inference.sample_metrics(run, state, evaluators[key], metrics, config.eval.num_images, eval_key)
                )
            row.sampling_images_per_second = _sampling_speed(run, state, settings)
            row.grids = _grids(run, state, settings)
        finally:
            run.checkpointer.close()
    except Exception as error:  # One failing run must not lose the others' rows: it is reported with why.
        logging.exception("Evaluating %s failed", info.workdir)
        lines = str(error).strip().splitlines()
        row.error = f"evaluation failed: {type(error).__name__}: {lines[0][:300] if lines else ''}"
    bad = [name for name, value in row.results.items() if not np.isfinite(value)]
    if bad:
        row.status += f"; non-finite evaluation: {', '.join(bad)}"
    return row


def _chosen_state(run, info: runs_lib.RunInfo, which: str) -> tuple[Any, str, int]:
    """(state, how the report names it, step): the best checkpoint or the latest."""
    latest = int(run.state.step)
    if which == "latest":
        return run.state, f"latest (step {latest})", latest
    if info.best is None:
        return run.state, f"latest (step {latest}): no best checkpoint", latest
    best_step = int(info.best["step"])
    label = f"best (step {best_step}, by {info.best['metric']} = {info.best['value']:.4g})"
    if best_step == latest:
        return run.state, label, latest
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), run.state)
    manager = ocp.CheckpointManager(
        storage.as_path(storage.join(info.workdir, "best")),
        options=ocp.CheckpointManagerOptions(read_only=True),
        item_handlers={"state": ocp.StandardCheckpointHandler()},
    )
    try:
        state = manager.restore(best_step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
    finally:
        manager.close()
    return state, label, best_step


def _sampling_speed(run, state, settings: ml_collections.ConfigDict) -> float | None:
    """Images/s of `generate` (a conditional method: `translate` of held-out images) in batches of
    eval.batch_size split over the mesh, as the evaluator draws them; the first call (compilation) not timed."""
    method, batch = run.method, run.config.eval.batch_size
    key = rng.stream_key(settings.seed, TIMING_STREAM)
    if method.conditional:
        if run.holdout is None:
            return None
        rows = np.resize(np.asarray(run.holdout), (batch, *run.holdout.shape[1:]))  # Repeats up to a batch.
        inputs = pipeline.to_model_range(rows)
        call = jax.jit(lambda s, k: method.translate(s, {"image": inputs}), out_shardings=run.shardings.data)
    else:
        call = jax.jit(lambda s, k: method.generate(s, k, batch), out_shardings=run.shardings.data)
    jax.block_until_ready(call(state, key))
    repeats = max(1, int(settings.compare.timing_batches))
    start = time.perf_counter()
    for i in range(repeats):
        jax.block_until_ready(call(state, jax.random.fold_in(key, i + 1)))
    return repeats * batch / (time.perf_counter() - start)


def _grids(run, state, settings: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """uint8 grids: "fixed_seed" (`generate` with the same key for every run) and the method's `sample` grids."""
    grids = {}
    size = int(settings.compare.grid_size)
    if not run.method.conditional and size:
        images = jax.jit(lambda s, k: run.method.generate(s, k, size * size))(
            state, rng.stream_key(settings.seed, GRID_STREAM)
        )
        grids["fixed_seed"] = writers.image_grid(pipeline.to_uint8(np.asarray(images)), size)
    if settings.compare.method_grids:
        config = run.config
        if run.holdout is not None:
            data = holdout_batches(run, run.local_batch)
        else:
            data = host_batches(run, rng.stream_seed(config.seed, rng.SAMPLE_DATA))
        samples = run.method.sample(state, data, rng.stream_key(config.seed, rng.SAMPLE))
        for name, (images, columns) in samples.grids.items():
            grids[name] = writers.image_grid(pipeline.to_uint8(np.asarray(images)), columns)
    return grids


def weights_versions(eval_config: ml_collections.ConfigDict, metrics: tuple[str, ...], evaluator) -> dict[str, str]:
    """The sha256 of each file the metrics used: a given file's own, else the pinned one downloads are checked
    against (Illustration2Vec's as loaded)."""
    selected = registry.lookup(metrics)
    out = {}
    if registry.uses(selected, registry.INCEPTION):
        path = eval_config.inception_path
        out["inception_weights_sha256"] = (
            download.file_sha256(path) if path else pretrained_inception.FID_WEIGHTS_SHA256
        )
    if registry.uses(selected, registry.ILLUST2VEC) and evaluator is not None:
        described = evaluator.describe(metrics)
        if "i2v_weights_sha256" in described:
            out["i2v_weights_sha256"] = described["i2v_weights_sha256"]
    if registry.uses(selected, registry.DETECTOR):
        path = eval_config.detector_path
        out["detector_sha256"] = download.file_sha256(path) if path else detection.SHA256
    return out
