"""Writes a `Comparison` as report.md, a self-contained report.html (images inlined as base64), report.json,
and the PNGs beside them (plots/, grids/).

Columns come from the comparison (the metrics' names and whatever the methods' own `evaluate` returned) and
grids from what each method drew, so the code has no list of model families or of their terms.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import platform
import re

import jax
import numpy as np
from PIL import Image

from animejax import storage
from animejax.metrics import registry
from animejax.report import plots
from animejax.report.compare import PREFIX, Comparison, Row

MISSING = "missing"
FIXED_COLUMNS = (
    ("run", "the run folder"),
    ("model", "config.method (config.model.arch)"),
    (
        "status",
        "complete; running (a local training process names the folder); stopped before train.num_steps "
        "with no process (crashed or killed); diverged (non-finite logged train/* values); no checkpoint",
    ),
    ("checkpoint", "the evaluated checkpoint: best (workdir/best, by the run's eval.best_metric) or latest"),
    ("parameters", "trainable parameters of the restored state: its *params fields, EMA copies left out"),
    ("images seen", "the evaluated checkpoint's step x train.batch_size"),
    (
        "train wall-clock",
        "the training sessions' spans in the TensorBoard events (first event to last scalar, "
        "summed over sessions; pauses between sessions left out)",
    ),
    ("train img/s", "median of the logged perf/images_per_second (preview grids and evaluations excluded)"),
    (
        "sampling img/s",
        "method.generate (conditional methods: translate of held-out images) in batches of "
        "eval.batch_size on this machine's devices, measured here after one compiling call",
    ),
)


def _name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _count(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _rate(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _parameters(counts: dict[str, int]) -> str:
    if not counts:
        return MISSING
    total = _count(sum(counts.values()))
    if len(counts) == 1:
        return total
    parts = ", ".join(
        f"{name.removesuffix('_params').removesuffix('params') or 'params'} {_count(n)}" for name, n in counts.items()
    )
    return f"{total} ({parts})"


def _value(row: Row, column: str) -> str:
    if column not in row.results:
        return MISSING
    return f"{row.results[column]:.4g}"


def table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """(header, one list of cells per row): the fixed columns, then each result name without "eval/"."""
    header = [name for name, _ in FIXED_COLUMNS] + [c.removeprefix(PREFIX) for c in comparison.columns]
    body = []
    for row in comparison.rows:
        status = row.status + (f"; {row.error}" if row.error and row.error not in row.status else "")
        cells = [
            row.info.name,
            row.info.model,
            status,
            row.checkpoint or MISSING,
            _parameters(row.parameters),
            MISSING if row.images_seen is None else f"{row.images_seen:,}",
            _duration(row.info.log.wall_clock_s),
            _rate(row.info.log.images_per_second),
            _rate(row.sampling_images_per_second),
        ]
        body.append(cells + [_value(row, column) for column in comparison.columns])
    return header, body


def term_tables(comparison: Comparison) -> list[tuple[list[str], list[list[str]]]]:
    """The methods' other terms (`Comparison.term_columns`): one table per set of terms, rows that share it."""
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in comparison.rows:
        terms = tuple(column for column in comparison.term_columns if column in row.results)
        if terms:
            groups.setdefault(terms, []).append(row)
    tables = []
    for terms, rows in groups.items():
        header = ["run"] + [term.removeprefix(PREFIX) for term in terms]
        tables.append((header, [[row.info.name] + [_value(row, term) for term in terms] for row in rows]))
    return tables


TERMS_TEXT = (
    "Each method's own evaluation terms (`Method.evaluate`: held-out images where the run keeps some, else "
    "eval.loss_num_images training images), one table per set of terms; Method.report_terms are in the main table."
)


def definitions(comparison: Comparison) -> dict[str, str]:
    """Column name -> what it is (the metrics' from their registry docstrings, with their budgets)."""
    out = dict(FIXED_COLUMNS)
    for column in comparison.columns:
        short = column.removeprefix(PREFIX)
        metric = next((m for m in registry.REGISTRY.values() if m.is_headline(column)), None)
        if metric is None and short.endswith("_std"):
            metric = next((m for m in registry.REGISTRY.values() if m.is_headline(column[:-4] + "_mean")), None)
        if metric is not None:
            direction = "lower is better" if metric.lower_is_better else "higher is better"
            out[short] = f"{metric.name}: {metric.__doc__.strip().splitlines()[0]} ({direction})"
        else:
            out[short] = "the method's own evaluation term (held-out images, else eval.loss_num_images training images)"
    return out


def settings_summary(comparison: Comparison) -> dict:
    """What every row shares: seeds, checkpoint choice, the evaluation fields, what the metrics used, versions."""
    evaluation = comparison.settings.eval.to_dict()
    shared = {
        k: v
        for k, v in evaluation.items()
        if k not in ("every_steps", "train_metrics", "train_num_images", "best_metric")
    }
    return {
        "checkpoint": comparison.which,
        "seed": comparison.settings.seed,
        "metrics": list(comparison.metrics),
        "evaluation": shared,
        "metric_settings": comparison.metric_settings,
        "weights": comparison.weights,
        "datasets": comparison.datasets,
        "versions": {
            "jax": jax.__version__,
            "python": platform.python_version(),
            "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
        },
    }


def warnings(comparison: Comparison) -> list[str]:
    """Things a reader must know before comparing rows."""
    out = []
    if len(comparison.datasets) > 1:
        out.append(
            f"The runs were trained on {len(comparison.datasets)} different datasets; each is scored against its "
            "own dataset's reference statistics, so rows of different datasets are not comparable: "
            + "; ".join(comparison.datasets)
        )
    missing = [row.info.name for row in comparison.rows if row.error]
    if missing:
        out.append(f"Not evaluated: {', '.join(missing)} (see their status).")
    return out


@dataclasses.dataclass
class _Context:
    """What report.md, report.html and report.json are written from."""

    comparison: Comparison
    header: list[str]
    body: list[list[str]]
    terms: list[tuple[list[str], list[list[str]]]]
    definitions: dict[str, str]
    settings: dict
    warnings: list[str]
    grid_order: list[str]
    grid_files: dict[str, dict[str, str]]
    plot_files: dict[str, str]
    runs_without_logs: list[str]


def write_report(comparison: Comparison, out: str) -> dict[str, str]:
    """Writes the report files under `out` (a folder or a bucket URL); returns name -> path."""
    grid_files: dict[str, dict[str, str]] = {}  # grid name -> run -> relative path
    images: dict[str, bytes] = {}  # relative path -> PNG
    for row in comparison.rows:
        for grid_name, grid in row.grids.items():
            path = f"grids/{_name(row.info.name)}_{_name(grid_name)}.png"
            images[path] = _png(grid)
            grid_files.setdefault(grid_name, {})[row.info.name] = path
    grid_order = sorted(grid_files, key=lambda name: (name != "fixed_seed", name))
    groups = plots.plot_groups({row.info.name: row.info.log.scalars for row in comparison.rows})
    batch_sizes = {row.info.name: int(row.info.config.train.batch_size) for row in comparison.rows}
    plot_files = {}
    for name, lines in sorted(groups.items()):
        plot_files[name] = f"plots/{_name(name)}.png"
        images[plot_files[name]] = plots.metric_plot(name, lines, batch_sizes)
    for path, data in images.items():
        storage.write_bytes(storage.join(out, *path.split("/")), data)

    header, body = table(comparison)
    context = _Context(
        comparison=comparison,
        header=header,
        body=body,
        terms=term_tables(comparison),
        definitions=definitions(comparison),
        settings=settings_summary(comparison),
        warnings=warnings(comparison),
        grid_order=grid_order,
        grid_files=grid_files,
        plot_files=plot_files,
        runs_without_logs=[
            r.info.name for r in comparison.rows if not any(t.startswith("eval/") for t in r.info.log.scalars)
        ],
    )
    paths = {name: storage.join(out, name) for name in ("report.md", "report.html", "report.json")}
    storage.write_text(paths["report.md"], _markdown(context))
    storage.write_text(paths["report.html"], _html(context, images))
    storage.write_text(paths["report.json"], json.dumps(_json(context), indent=2, default=str))
    return paths


def _json(context: _Context) -> dict:
    comparison, rows = context.comparison, []
    for row, cells in zip(comparison.rows, context.body):
        rows.append(
            {
                "run": row.info.name,
                "workdir": row.info.workdir,
                "model": row.info.model,
                "status": row.status,
                "error": row.error,
                "checkpoint": row.checkpoint,
                "step": row.step,
                "train_num_steps": int(row.info.config.train.num_steps),
                "parameters": row.parameters,
                "images_seen": row.images_seen,
                "train_wall_clock_s": row.info.log.wall_clock_s,
                "train_images_per_second": row.info.log.images_per_second,
                "sampling_images_per_second": row.sampling_images_per_second,
                "dataset": row.dataset,
                "results": row.results,
                "table": dict(zip(context.header, cells)),
                "terms": {t.removeprefix(PREFIX): _value(row, t) for t in comparison.term_columns if t in row.results},
            }
        )
    return {
        "columns": context.header,
        "definitions": context.definitions,
        "settings": context.settings,
        "warnings": context.warnings,
        "rows": rows,
    }


def _markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(cells) for cells in body)]


def _markdown(ctx: _Context) -> str:
    lines = [f"# Model comparison ({len(ctx.comparison.rows)} runs)", ""]
    lines += [f"> **Note:** {w}" for w in ctx.warnings] + ([""] if ctx.warnings else [])
    lines += _markdown_table(ctx.header, ctx.body) + [""]
    if ctx.terms:
        lines += ["## Each method's own terms", "", TERMS_TEXT, ""]
        for term_header, term_body in ctx.terms:
            lines += _markdown_table(term_header, term_body) + [""]
    lines += ["## Definitions", ""]
    lines += [f"- **{name}**: {text}" for name, text in ctx.definitions.items()]
    lines += [
        "",
        "## Settings shared by every row",
        "",
        "```json",
        json.dumps(ctx.settings, indent=2, default=str),
        "```",
        "",
        "## Sample grids",
        "",
    ]
    names = [row.info.name for row in ctx.comparison.rows]
    for grid in ctx.grid_order:
        lines += [f"### {grid}", ""]
        files = ctx.grid_files[grid]
        cells = [f"![{name} {grid}]({files[name]})" if name in files else "(none)" for name in names]
        lines += _markdown_table(names, [cells]) + [""]
    lines += ["## Logged evaluations during training", ""]
    if ctx.runs_without_logs:
        lines += [f"No in-training evaluations logged (eval.every_steps = 0?): {', '.join(ctx.runs_without_logs)}.", ""]
    lines += [f"![{name}]({path})\n" for name, path in ctx.plot_files.items()]
    return "\n".join(lines) + "\n"


def _html(ctx: _Context, images: dict[str, bytes]) -> str:
    esc = html.escape

    def img(path: str, alt: str, css: str) -> str:
        data = base64.b64encode(images[path]).decode("ascii")
        return f'<img class="{css}" alt="{esc(alt)}" src="data:image/png;base64,{data}">'

    def html_table(table_header: list[str], table_body: list[list[str]]) -> list[str]:
        out = ["<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in table_header) + "</tr></thead><tbody>"]
        for cells in table_body:
            out.append(
                "<tr>"
                + "".join(f'<td class="missing">{esc(c)}</td>' if c == MISSING else f"<td>{esc(c)}</td>" for c in cells)
                + "</tr>"
            )
        return out + ["</tbody></table>"]

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Model comparison ({len(ctx.comparison.rows)} runs)</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #bbb;padding:3px 6px;text-align:right}td:nth-child(-n+4),th{text-align:left}"
        ".missing{color:#888;font-style:italic}.note{background:#eee;padding:.5em;border-left:4px solid #555}"
        ".grids{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}"
        "img.grid{width:300px;image-rendering:pixelated}img.plot{max-width:100%}pre{background:#f4f4f4;padding:.6em}"
        "</style></head><body>",
        f"<h1>Model comparison ({len(ctx.comparison.rows)} runs)</h1>",
        *(f'<p class="note">{esc(w)}</p>' for w in ctx.warnings),
        *html_table(ctx.header, ctx.body),
    ]
    if ctx.terms:
        parts += ["<h2>Each method's own terms</h2>", f"<p>{esc(TERMS_TEXT)}</p>"]
        for term_header, term_body in ctx.terms:
            parts += html_table(term_header, term_body) + ["<p></p>"]
    parts += ["<h2>Definitions</h2>", "<dl>"]
    parts += [f"<dt><b>{esc(name)}</b></dt><dd>{esc(text)}</dd>" for name, text in ctx.definitions.items()]
    parts += [
        "</dl>",
        "<h2>Settings shared by every row</h2>",
        f"<pre>{esc(json.dumps(ctx.settings, indent=2, default=str))}</pre>",
        "<h2>Sample grids</h2>",
    ]
    names = [row.info.name for row in ctx.comparison.rows]
    for grid in ctx.grid_order:
        parts += [f"<h3>{esc(grid)}</h3>", '<div class="grids">']
        files = ctx.grid_files[grid]
        for name in names:
            inner = img(files[name], f"{name} {grid}", "grid") if name in files else "(none)"
            parts.append(f"<figure>{inner}<figcaption>{esc(name)}</figcaption></figure>")
        parts.append("</div>")
    parts.append("<h2>Logged evaluations during training</h2>")
    if ctx.runs_without_logs:
        parts.append(f"<p>No in-training evaluations logged: {esc(', '.join(ctx.runs_without_logs))}.</p>")
    parts += [f"<p>{img(path, name, 'plot')}</p>" for name, path in ctx.plot_files.items()]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
