"""`--mode=upscale`: super-resolve images with a trained SRGAN run in --workdir.

Inputs are `upscale.input` (an image file, or every image under a folder) or `upscale.num_images` samples drawn
from another trained run (`upscale.from_run`: any GAN, the VAE or the diffusion model), first sampled and then
upscaled. The SRResNet is fully convolutional, so inputs of any size are upscaled by `model.scale` as they
are; with `upscale.downscale_first` each input is taken as an original, downscaled as in training, upscaled
and compared with itself.

For each input `<name>` the output folder gets `<name>.png` (the super-resolved image) and
`<name>_compare.png`: low resolution (enlarged) | bicubic | SRGAN | original (with `downscale_first`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from animejax import rng, saved_config, storage, writers
from animejax.data import pipeline, sources
from animejax.errors import UserError
from animejax.methods.srgan import VIEW_ORDER
from animejax.run_setup import restore_trained


class UpscaleError(UserError, ValueError):
    """Upscaling inputs that cannot be used as configured."""


def upscale(config: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
    """Writes the super-resolved images and their comparison strips; returns input name -> output path."""
    not_srgan = UpscaleError(
        f"--mode=upscale needs a trained SRGAN run in --workdir; {workdir} holds a {config.method} run."
    )
    if "upscale" not in config:  # Only SRGAN's configs have the upscale fields.
        raise not_srgan
    options = config.upscale
    if bool(options.input) == bool(options.from_run):
        raise UpscaleError(
            "Set one of --config.upscale.input=IMAGE_OR_FOLDER (images to upscale) or "
            "--config.upscale.from_run=WORKDIR (a trained generator whose samples to upscale)."
        )
    method, state = restore_trained(config, workdir)
    if not method.conditional:
        raise not_srgan
    output_dir = str(storage.as_path(options.output_dir or storage.join(workdir, "upscaled"), "upscale.output_dir"))
    if options.from_run:
        inputs = _samples_of(options.from_run, options.num_images, config.seed)
    else:
        inputs = _read_images(options.input, options.max_input_side)
    downscale_first = options.downscale_first and not options.from_run
    views = jax.jit(method.comparisons if downscale_first else method.views)
    paths, start, done = {}, time.monotonic(), 0
    for names, images in _same_size_batches(inputs, options.batch_size, method.scale if downscale_first else 1):
        batch = {k: np.asarray(v) for k, v in views(state, jnp.asarray(pipeline.to_model_range(images))).items()}
        for i, name in enumerate(names):
            strip = np.stack([pipeline.to_uint8(batch[name][i]) for name in VIEW_ORDER if name in batch])
            paths[name] = storage.join(output_dir, f"{name}.png")
            if jax.process_index() == 0:
                writers.save_png(paths[name], pipeline.to_uint8(batch["srgan"][i]))
                writers.save_png(storage.join(output_dir, f"{name}_compare.png"), writers.image_grid(strip, len(strip)))
        done += len(names)
        logging.info("Upscaled %d images (%.1f images/s)", done, done / (time.monotonic() - start))
    if not paths:
        raise UpscaleError(f"No image could be upscaled from {options.input or options.from_run}.")
    logging.info("Wrote %d upscaled images and their comparisons to %s", len(paths), output_dir)
    return paths


def _samples_of(run_dir: str, count: int, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """`count` samples of the trained generator in `run_dir`, as uint8 images named sample_000000, ..."""
    source_config = saved_config.get_config(run_dir)
    method, state = restore_trained(source_config, run_dir)
    if method.conditional:
        raise UpscaleError(f"upscale.from_run={run_dir} is a {source_config.method} run, which draws no samples.")
    logging.info("Sampling %d images from the %s run in %s", count, source_config.method, run_dir)
    images = pipeline.to_uint8(method.generate_many(state, rng.stream_key(seed, rng.UPSCALE), count))
    for i, image in enumerate(images):
        yield f"sample_{i:06d}", image


def _read_images(path: str, max_side: int) -> Iterator[tuple[str, np.ndarray]]:
    """The image at `path`, or every image under the folder `path` (named by their paths in it, without the
    extension); unreadable or oversized images in a folder are skipped with a warning."""
    path = os.path.expanduser(path)
    if os.path.isfile(path):
        yield os.path.splitext(os.path.basename(path))[0], _load(path, max_side)
        return
    if not os.path.isdir(path):
        raise UpscaleError(f"upscale.input={path!r} is neither an image file nor a folder.")
    paths, skipped = sources.scan_images(path)
    for entry, why in skipped:
        logging.warning("Skipping %s: %s", entry, why)
    if not paths:
        raise UpscaleError(f"The folder {path!r} holds no images ({', '.join(sources.IMAGE_EXTENSIONS)}).")
    for file_path in paths:
        try:
            image = _load(file_path, max_side)
        except UpscaleError as error:
            logging.warning("Skipping %s", error)
            continue
        yield os.path.splitext(os.path.relpath(file_path, path))[0], image


def _load(path: str, max_side: int) -> np.ndarray:
    """An image file as uint8 RGB [H, W, 3]; UpscaleError when it cannot be decoded or is too large."""
    try:
        with Image.open(path) as image:
            image = np.asarray(image.convert("RGB"), np.uint8)
    except Exception as error:  # PIL raises many types for bad files.
        raise UpscaleError(f"{path}: not a readable image ({error}).") from error
    if max(image.shape[:2]) > max_side:
        raise UpscaleError(
            f"{path}: {image.shape[1]}x{image.shape[0]} px is larger than upscale.max_input_side={max_side} "
            "(its upscaled activations may not fit in memory); resize it or raise the limit."
        )
    return image


def _same_size_batches(inputs, batch_size: int, multiple: int) -> Iterator[tuple[list[str], np.ndarray]]:
    """Consecutive inputs of one size grouped into batches of up to `batch_size`; each image first cropped at
    its centre to a multiple of `multiple` pixels."""
    names, images = [], []
    for name, image in inputs:
        height, width = (side - side % multiple for side in image.shape[:2])
        if not height or not width:
            logging.warning("Skipping %s: smaller than %d px", name, multiple)
            continue
        top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
        image = image[top : top + height, left : left + width]
        if images and (image.shape != images[0].shape or len(images) == batch_size):
            yield names, np.stack(images)
            names, images = [], []
        names.append(name)
        images.append(image)
    if images:
        yield names, np.stack(images)
