"""PNG plots of the runs' logged evaluations: each metric against training images seen and wall-clock.

The points are the training loop's in-training evaluations (`eval.every_steps`), read from the runs'
TensorBoard events; one line per run. Runs whose budgets differ (eval/fid1k against eval/fid10k) share their
metric's plot, the logged name in the legend.
"""

from __future__ import annotations

import io
import re

import numpy as np

from animejax.metrics import registry


def plot_groups(logs: dict[str, dict]) -> dict[str, list[tuple[str, str, object]]]:
    """Which logged tags go in which plot: {plot name: [(run name, tag, Series)]}.

    Args:
      logs: run name -> its logged scalars {tag: runs.Series}.

    A metric's headline tags (any budget) share a plot named after the metric; other eval/* tags (a method's
    own held-out terms, such as SRGAN's PSNR) get one each; KID's std and SWD's per-level values get none.
    """
    groups: dict[str, list] = {}
    for run, scalars in logs.items():
        for tag, series in sorted(scalars.items()):
            if not tag.startswith("eval/"):
                continue
            metric = next((m.name for m in registry.REGISTRY.values() if m.is_headline(tag)), None)
            if metric is None and (tag.endswith("_std") or re.search(r"/swd\d+k?/", tag)):
                continue
            groups.setdefault(metric or tag[len("eval/") :], []).append((run, tag, series))
    return groups


def metric_plot(name: str, lines: list[tuple[str, str, object]], batch_sizes: dict[str, int]) -> bytes:
    """One PNG: `name` against images seen (left) and training wall-clock (right), one line per run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg, whatever backend pyplot uses.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4), dpi=100)
    FigureCanvasAgg(figure)
    by_images, by_time = figure.subplots(1, 2)
    for run, tag, series in lines:
        label = run if len({t for _, t, _ in lines}) == 1 else f"{run} ({tag})"  # Budgets differ: name each.
        images = np.asarray(series.steps) * batch_sizes[run]
        by_images.plot(images, series.values, marker="o", label=label)
        by_time.plot(np.asarray(series.seconds) / 60.0, series.values, marker="o", label=label)
    by_images.set_xlabel("training images seen")
    by_time.set_xlabel("training wall-clock (minutes)")
    tags = sorted({tag for _, tag, _ in lines})
    for axes in (by_images, by_time):
        axes.set_ylabel(tags[0] if len(tags) == 1 else name)
        axes.grid(alpha=0.3)
    by_time.legend(fontsize="small", loc="best")
    figure.suptitle(f"{name} during training")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
