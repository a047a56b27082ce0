"""Metric writers: TensorBoard scalars and images, PNG grids, console lines, the training-progress GIF.

When clu's metric writers can be imported (they need TensorFlow) they are used
as they are. Otherwise, as on machines without TensorFlow, an equivalent
writer with clu's interface (`write_scalars`, `write_images`,
`write_hparams`, `flush`, `close`) writes the same TensorBoard event files
through the `tensorboard` package alone. Only process 0 writes files.

The workdir may be a bucket URL (gs://...): PNGs and GIFs are written whole through `storage`, and event files,
which TensorBoard appends to (objects cannot be appended to), are written to a local staging folder and copied
to the bucket whole on `flush`, `close` and every `sync_seconds`.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import time
from typing import Any, Mapping

import numpy as np
from PIL import Image

from animejax import storage


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class TensorBoardWriter:
    """clu-style MetricWriter writing TensorBoard event files without TensorFlow.

    Args:
      logdir: a local folder, or a bucket URL (events staged locally, then copied whole; see the module docstring).
      sync_seconds: for a URL, the longest time between two copies while scalars and images are written.
    """

    def __init__(self, logdir: str, sync_seconds: float = 60.0):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._remote = storage.as_path(logdir) if storage.is_url(logdir) else None
        if self._remote is not None:
            self._local = tempfile.mkdtemp(prefix="animejax-events-")
        else:
            self._local = logdir
            os.makedirs(logdir, exist_ok=True)
        self._writer = EventFileWriter(self._local)
        self._sync_seconds, self._last_sync = sync_seconds, time.monotonic()

    def _add(self, step: int, values: list) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=values)
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
        if self._remote is not None and time.monotonic() - self._last_sync > self._sync_seconds:
            self.flush()

    def _sync(self) -> None:
        """Copies the staged event file(s) to the bucket, each whole."""
        for name in os.listdir(self._local):
            with open(os.path.join(self._local, name), "rb") as f:
                storage.write_bytes(self._remote / name, f.read())
        self._last_sync = time.monotonic()

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        from tensorboard.compat.proto import summary_pb2

        self._add(step, [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()])

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """images: name -> uint8 [H, W, 3] (or [N, H, W, 3]; the first is written)."""
        from tensorboard.compat.proto import summary_pb2

        values = []
        for tag, image in images.items():
            image = np.asarray(image)
            image = image[0] if image.ndim == 4 else image
            encoded = summary_pb2.Summary.Image(
                height=image.shape[0],
                width=image.shape[1],
                colorspace=image.shape[2],
                encoded_image_string=_png_bytes(image),
            )
            values.append(summary_pb2.Summary.Value(tag=tag, image=encoded))
        self._add(step, values)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        del hparams  # The full config is saved as config.json beside the events.

    def flush(self) -> None:
        self._writer.flush()
        if self._remote is not None:
            self._sync()

    def close(self) -> None:
        self._writer.close()
        if self._remote is not None:
            self._sync()
            shutil.rmtree(self._local, ignore_errors=True)


class NullWriter:
    """What processes other than 0 write: nothing."""

    def write_scalars(self, step, scalars):
        pass

    def write_images(self, step, images):
        pass

    def write_hparams(self, hparams):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def create_writer(logdir: str, is_main_process: bool):
    """clu's default writer when available (TensorFlow's summaries write gs:// themselves), else the
    TensorBoardWriter above."""
    if not is_main_process:
        return NullWriter()
    try:
        from clu import metric_writers
    except ImportError:
        return TensorBoardWriter(os.fspath(logdir))
    return metric_writers.create_default_writer(os.fspath(logdir), asynchronous=False)


def image_grid(images: np.ndarray, columns: int) -> np.ndarray:
    """uint8 [N, H, W, 3] -> one uint8 grid image with a 2 px border."""
    count, height, width, channels = images.shape
    rows = -(-count // columns)
    pad = 2
    grid = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, channels), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        grid[top : top + height, left : left + width] = image
    return grid


def save_png(path: str, image: np.ndarray) -> None:
    """Writes uint8 [H, W, 3] to `path` (a local path or a bucket URL), creating its folder."""
    storage.write_bytes(path, _png_bytes(image))


class ProgressLine:
    """Console progress: step, loss, images/s and ETA, one line per log interval."""

    def __init__(self, total_steps: int, start_step: int):
        self.total_steps = total_steps
        self.start_step = start_step
        self.start_time = time.monotonic()

    def line(self, step: int, scalars: Mapping[str, float], images_per_second: float) -> str:
        elapsed = time.monotonic() - self.start_time
        done = max(step - self.start_step, 1)
        remaining = elapsed / done * (self.total_steps - step)
        shown = " ".join(f"{k.split('/')[-1]} {v:.4g}" for k, v in scalars.items() if k.startswith("train/"))
        return f"step {step}/{self.total_steps} | {shown} | {images_per_second:.1f} img/s | ETA {_duration(remaining)}"


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def log_line(text: str) -> None:
    """Prints a progress line to the console (stdout)."""
    print(text, flush=True)


def grid_paths(workdir: str, name: str = "samples_fixed") -> list[str]:
    """`workdir/samples/<name>_<step>.png` files (as `write_grids` names them), sorted by step."""
    folder = storage.as_path(storage.join(workdir, "samples"))
    pattern = re.compile(rf"^{re.escape(name)}_(\d+)\.png$")
    found = []
    for entry in folder.iterdir() if folder.is_dir() else []:
        match = pattern.match(entry.name)
        if match:
            found.append((int(match.group(1)), storage.join(workdir, "samples", entry.name)))
    return [path for _, path in sorted(found)]


def _gif_bytes(frames: list[Image.Image], durations) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(
        buffer, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=False
    )
    return buffer.getvalue()


def save_gif(path: str, frames: list[np.ndarray], frame_ms: int = 80) -> None:
    """Writes uint8 [H, W, 3] frames as a looping GIF, whole (never seen half-written)."""
    storage.write_bytes(path, _gif_bytes([Image.fromarray(frame) for frame in frames], frame_ms))


def progress_gif(workdir: str, name: str = "samples_fixed", frame_ms: int = 200, last_frame_ms: int = 2000) -> str:
    """Writes `workdir/samples/progress_<name>.gif` from the saved grids; returns its path.

    Args:
      workdir: a run's folder.
      name: the preview grid's name (GAN methods save the fixed-noise grid as "samples_fixed").
      frame_ms: how long each step's grid is shown.
      last_frame_ms: how long the last grid is shown before the animation loops.

    Raises:
      FileNotFoundError: when the run saved no such grid yet.
    """
    paths = grid_paths(workdir, name)
    if not paths:
        raise FileNotFoundError(
            f"No {name}_<step>.png grids under {storage.join(workdir, 'samples')}; "
            "they are written every train.sample_every steps."
        )
    frames = []
    for path in paths:
        with Image.open(io.BytesIO(storage.as_path(path).read_bytes())) as image:
            frames.append(image.convert("RGB"))
    durations = [frame_ms] * (len(frames) - 1) + [last_frame_ms]
    out = storage.join(workdir, "samples", f"progress_{name}.gif")
    storage.write_bytes(out, _gif_bytes(frames, durations))
    return out
