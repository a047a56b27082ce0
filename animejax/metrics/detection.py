"""Anime-face detection rate: the fraction of images in which nagadomi's lbpcascade_animeface finds a face.

`detector_path` finds the cascade file (a given path, the cache, or a checked download, through
`animejax.pretrained.download`) and `detection_rate` runs OpenCV's `CascadeClassifier` on equalised grey
images. The cascade needs opencv-python(-headless) < 5: OpenCV 5 removed the cascade classifiers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from animejax.errors import UserError
from animejax.pretrained import download

RAW_URL = "https://raw.githubusercontent.com/nagadomi/lbpcascade_animeface/master/lbpcascade_animeface.xml"
SHA256 = "9376d30ac38db6bda2a68b88b3b76bbd7e6aa33af47f7f5c76bc88ca75f1ce30"
FILE_NAME = "lbpcascade_animeface.xml"
# A small file: a local copy must be the released one, and a damaged cached copy is simply fetched again.
DETECTOR_FILE = download.WeightsFile(
    description="anime-face detector",
    file_name=FILE_NAME,
    url=RAW_URL,
    sha256=SHA256,
    how_to_get=(
        "download {url} yourself and either put it at {cache_path} or pass its path with "
        "--config.eval.detector_path=/path/to/{file_name}."
    ),
    strict_local=True,
    refetch_corrupt_cache=True,
)


class DetectorError(UserError):
    """The face detector cannot be found, fetched, verified or loaded."""


def detector_path(
    local_path: str | None = None,
    cache_dir: str | None = None,
    url: str = RAW_URL,
    sha256: str | None = SHA256,
) -> str:
    """Returns the path of a verified lbpcascade_animeface.xml, downloading it into the cache if needed.

    Order: `local_path` if given (it must exist and have the checksum; nothing is downloaded); else
    `<cache_dir>/lbpcascade_animeface.xml` if it is present with the right checksum (a wrong one is deleted);
    else the file is downloaded from `url` into a temporary file in `cache_dir`, checked, and renamed into
    place (so the cache never holds a partial or wrong file). See `download.resolve`.

    Args:
        local_path: a cascade file the user already has.
        cache_dir: the download cache (default `download.default_cache_dir()`).
        url: where to download from (nagadomi/lbpcascade_animeface on GitHub).
        sha256: the expected checksum of the file; None skips the check (e.g. for another cascade).

    Returns:
        The path of the cascade file.

    Raises:
        DetectorError: a missing local file, a failed download (e.g. offline) or a checksum mismatch; the
            message says where to put the file by hand.
    """
    try:
        return download.resolve(dataclasses.replace(DETECTOR_FILE, sha256=sha256), local_path, cache_dir, url=url)
    except download.WeightsError as error:  # One error type for everything the detection rate needs.
        raise DetectorError(str(error)) from error


def _import_cv2() -> Any:
    """Imports OpenCV, with a clear error when it is missing or has no cascade classifier."""
    hint = "install it with: pip install 'opencv-python-headless<5'"
    try:
        import cv2
    except ImportError as error:
        raise DetectorError(f"the face detection rate needs OpenCV; {hint}") from error
    if not hasattr(cv2, "CascadeClassifier"):
        raise DetectorError(f"OpenCV {cv2.__version__} has no CascadeClassifier (removed in OpenCV 5); {hint}")
    return cv2


def detection_rate(
    images_uint8: Any,
    detector_path: str,
    scale_factor: float = 1.1,
    min_neighbors: int = 3,
    min_size: int = 24,
    upscale_to: int | None = None,
) -> dict[str, Any]:
    """Fraction of images in which the cascade finds at least one face.

    Each image is optionally resized to `upscale_to` x `upscale_to` (bicubic), converted to grey, histogram
    equalised, and passed to `detectMultiScale(scaleFactor, minNeighbors, minSize=(min_size, min_size))`.

    Args:
        images_uint8: [N, H, W, 3] uint8 RGB images (numpy or memmap).
        detector_path: the cascade XML file, e.g. from `detector_path()`.
        scale_factor: the detector's image-pyramid step.
        min_neighbors: overlapping candidate windows required for a detection.
        min_size: the smallest face side searched, in pixels (of the possibly resized image).
        upscale_to: side to resize images to before detection; None keeps their size.

    Returns:
        A dict: `rate` (detected / images), `num_images`, `num_detected` (images with >= 1 face),
        `num_faces` (all detections), and the settings used: `image_size` (the side detection ran at),
        `scale_factor`, `min_neighbors`, `min_size`, `upscale_to`.

    Raises:
        DetectorError: OpenCV missing or without cascades, or a cascade file it cannot load.
        ValueError: images that are not [N, H, W, 3] uint8.
    """
    images = np.asarray(images_uint8)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [N, H, W, 3] RGB, got {images.dtype} {images.shape}")
    cv2 = _import_cv2()
    classifier = cv2.CascadeClassifier(detector_path)
    if classifier.empty():
        raise DetectorError(f"OpenCV cannot load the face detector {detector_path}; delete it and fetch it again")

    num_detected = num_faces = 0
    size = (images.shape[2], images.shape[1])
    for image in images:
        image = np.ascontiguousarray(image)
        if upscale_to is not None and size != (upscale_to, upscale_to):
            image = cv2.resize(image, (upscale_to, upscale_to), interpolation=cv2.INTER_CUBIC)
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        faces = classifier.detectMultiScale(
            grey, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_size, min_size)
        )
        num_faces += len(faces)
        num_detected += len(faces) > 0
    num_images = images.shape[0]
    return {
        "rate": num_detected / num_images if num_images else float("nan"),
        "num_images": int(num_images),
        "num_detected": int(num_detected),
        "num_faces": int(num_faces),
        "image_size": int(upscale_to if upscale_to is not None else images.shape[1]),
        "scale_factor": float(scale_factor),
        "min_neighbors": int(min_neighbors),
        "min_size": int(min_size),
        "upscale_to": upscale_to,
    }
