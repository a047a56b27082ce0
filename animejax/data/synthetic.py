"""Built-in, procedurally drawn anime faces: a dataset that needs no download.

This module is the dataset (`SyntheticFaces`, an ImageSource) and its entry
point `render_face`. Each face is drawn from its own
`np.random.default_rng([seed, index])`. All random parameters are drawn first,
in resolution-free units (`synthetic_params`), and only then rasterized
(`synthetic_draw`), so a face looks the same at every `image_size`. Shapes are
signed-distance fields evaluated on a supersampled grid (soft one-pixel edges)
and box-downsampled, which gives antialiased images with numpy alone.
"""

from __future__ import annotations

import hashlib

import numpy as np

from animejax.data import synthetic_draw, synthetic_params
from animejax.data.sources import DataError

# Part of every fingerprint and name: bump it whenever the faces drawn change.
RENDERER_VERSION = 1


def render_face(seed: int, index: int, image_size: int) -> np.ndarray:
    """Draws one synthetic anime face.

    Args:
      seed: dataset seed.
      index: image number within the dataset.
      image_size: side of the output square, in pixels.

    Returns:
      uint8 [image_size, image_size, 3]; the same (seed, index) gives the same
      face at every size, and the same pixels on every call.

    Raises:
      ValueError: for a negative seed or index, or a size below 1.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}.")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}.")
    params = synthetic_params.sample_face(np.random.default_rng([seed, index]))
    return synthetic_draw.draw_face(params, image_size)


class SyntheticFaces:
    """A built-in dataset of procedurally drawn anime faces (no download).

    Args:
      num_images: how many faces the full dataset holds.
      image_size: output side in pixels.
      seed: selects a different set of faces.
      indices: the image numbers this source serves (e.g. one process's
        shard); all of range(num_images) when None.
    """

    def __init__(self, num_images: int, image_size: int, seed: int = 0, indices: range | None = None):
        if num_images < 1:
            raise DataError(f"The synthetic dataset needs at least one image, got num_images={num_images}.")
        if image_size < 1:
            raise DataError(f"image_size must be positive, got {image_size}.")
        if seed < 0:
            raise DataError(f"The synthetic dataset's seed must be non-negative, got {seed}.")
        self.num_images = num_images
        self.image_size = image_size
        self.seed = seed
        self.indices = range(num_images) if indices is None else indices
        self.name = f"synthetic:seed={seed}:v{RENDERER_VERSION}"

    def __len__(self) -> int:
        return len(self.indices)

    def fingerprint(self) -> str:
        """Changes with the renderer version, seed, count, size and shard."""
        r = self.indices
        key = f"synthetic|v{RENDERER_VERSION}|{self.seed}|{self.num_images}|{self.image_size}"
        key += f"|{r.start}:{r.stop}:{r.step}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def load(self, index: int) -> np.ndarray:
        """Face `index` of this source, uint8 [image_size, image_size, 3]."""
        return render_face(self.seed, self.indices[index], self.image_size)

    def shard(self, index: int, count: int) -> SyntheticFaces:
        """This process's share of the faces (every `count`-th from `index`)."""
        return SyntheticFaces(self.num_images, self.image_size, self.seed, self.indices[index::count])
