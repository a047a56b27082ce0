"""The training-progress GIF: the fixed-noise preview grids a run saved, in step order, as one animation."""

from __future__ import annotations

import os
import re

from PIL import Image


def grid_paths(workdir: str, name: str = "samples_fixed") -> list[str]:
    """`workdir/samples/<name>_<step>.png` files (as train.write_grids names them), sorted by step."""
    folder = os.path.join(workdir, "samples")
    pattern = re.compile(rf"^{re.escape(name)}_(\d+)\.png$")
    found = []
    for file_name in os.listdir(folder) if os.path.isdir(folder) else []:
        match = pattern.match(file_name)
        if match:
            found.append((int(match.group(1)), os.path.join(folder, file_name)))
    return [path for _, path in sorted(found)]


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
