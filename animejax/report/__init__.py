"""`--mode=compare`: every run evaluated with the same settings, one report (report.md, report.html, plots).

runs.py finds run folders and reads what they logged (config, checkpoints, TensorBoard events, status);
compare.py evaluates each run's chosen checkpoint; plots.py draws the PNG plots; render.py writes the report.
Nothing here knows a model family: rows, columns and sample grids come from the method contract and the
metric registry, so a new family appears in the report unchanged.
"""

from __future__ import annotations

import logging

import jax
import ml_collections

from animejax import storage


def run(settings: ml_collections.ConfigDict, patterns: str, out: str, which: str = "best") -> dict[str, str]:
    """`--mode=compare`: evaluates the runs `patterns` names with `settings` and writes the report under `out`.

    Returns the written report files (name -> path); only process 0 writes.
    """
    from animejax.errors import UserError
    from animejax.report import compare, render

    if "compare" not in settings:
        raise UserError("--mode=compare takes its own settings: leave --config out (overrides still apply).")
    storage.check_folder(out, "--out")  # Before hours of evaluation, not after.
    comparison = compare.compare(settings, patterns, which)
    if jax.process_index() != 0:
        return {}
    paths = render.write_report(comparison, out)
    for path in paths.values():
        logging.info("Wrote %s", path)
    return paths
