"""Metric writers: TensorBoard scalars and images, PNG grids, console lines, the training-progress GIF.

When clu's metric writers can be imported (they need TensorFlow) they are used
as they are. Otherwise, as on machines without TensorFlow, an equivalent
writer with clu's interface (`write_scalars`, `write_images`,
`write_hparams`, `flush`, `close`) writes the same TensorBoard event files
through the `tensorboard` package alone. Only process 0 writes files.
"""

from __future__ import annotations

import io
import os
import re
import time
from typing import Any, Mapping

import numpy as np
from PIL import Image


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class TensorBoardWriter:
    """clu-style MetricWriter writing TensorBoard event files without TensorFlow."""

    def __init__(self, logdir: str):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        os.makedirs(logdir, exist_ok=True)
        self._writer = EventFileWriter(logdir)

    def _add(self, step: int, values: list) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=values)
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

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

    def close(self) -> None:
        self._writer.close()


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
    """clu's default writer when available, else the TensorBoardWriter above."""
    if not is_main_process:
        return NullWriter()
    try:
        from clu import metric_writers
    except ImportError:
        return TensorBoardWriter(logdir)
    return metric_writers.create_default_writer(logdir, asynchronous=False)


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
    """Writes uint8 [H, W, 3] to `path`, creating its folder."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray(image).save(path)


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
    folder = os.path.join(workdir, "samples")
    pattern = re.compile(rf"^{re.escape(name)}_(\d+)\.png$")
    found = []
    for file_name in os.listdir(folder) if os.path.isdir(folder) else []:
        match = pattern.match(file_name)
        if match:
            found.append((int(match.group(1)), os.path.join(folder, file_name)))
    return [path for _, path in sorted(found)]


def save_gif(path: str, frames: list[np.ndarray], frame_ms: int = 80) -> None:
    """Writes uint8 [H, W, 3] frames as a looping GIF (atomically: a temporary file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    images = [Image.fromarray(frame) for frame in frames]
    tmp = path + ".tmp.gif"
    images[0].save(tmp, save_all=True, append_images=images[1:], duration=frame_ms, loop=0, optimize=False)
    os.replace(tmp, path)


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
            f"No {name}_<step>.png grids under {os.path.join(workdir, 'samples')}; "
            "they are written every train.sample_every steps."
        )
    frames = [Image.open(path).convert("RGB") for path in paths]
    durations = [frame_ms] * (len(frames) - 1) + [last_frame_ms]
    out = os.path.join(workdir, "samples", f"progress_{name}.gif")
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=False)
    return out
