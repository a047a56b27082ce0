"""The `anime_faces` TensorFlow Datasets (TFDS) builder and its command line, which need no TensorFlow.

`AnimeFaces` is a TFDS builder named `anime_faces` (version 1.0.0). It stores
every image of a folder of images, or of a .zip of images, as its encoded
JPEG/PNG bytes plus the file's relative name, in one `train` split (the input
files are listed and checked by `animejax.data.tfds_inputs`). Its input is, in
this order of preference, the manual directory (see
`MANUAL_DOWNLOAD_INSTRUCTIONS`) or an archive downloaded from the `url` of an
`AnimeFacesConfig` and checked against that config's `sha256`. The prepared
dataset is read by `animejax.data.tfds_reader.TfdsImages`.

The builder needs no TensorFlow: it writes ArrayRecord files (its default
`file_format`). Only the TFRecord format and TFDS's own `tfds build` command
line import TensorFlow, and so does TFDS's download manager before
tensorflow-datasets 4.9.7 (the `url` input then raises a clear ImportError;
the manual directory and the reader work without TensorFlow from 4.9.6).
Prepare the data with this module's command line instead of `tfds build`:

    python -m animejax.data.tfds_anime --manual_dir ~/anime_faces_raw --data_dir ~/tensorflow_datasets

or, from an archive on the web, with its sha256 (`sha256sum archive.zip`):

    python -m animejax.data.tfds_anime --config mirror --url https://example.org/faces.zip \\
        --sha256 <64 hex digits> --data_dir ~/tensorflow_datasets

and train with `--config.data.source=tfds --config.data.path=anime_faces`
(`anime_faces/mirror` for a named config) and `--config.data.tfds_data_dir`.

Checksums: TFDS only verifies downloads whose (size, sha256) is registered
in a `checksums.tsv` next to the builder's code, which is fixed per class and
needs the size. A config's `url` has neither, so `_split_generators` downloads
with `dl_manager.download(url)`, hashes the downloaded file, and raises
`ChecksumMismatchError` (a `NonMatchingChecksumError`) on any difference,
deleting the bad file so a retry downloads it again. Nothing is extracted or
read before the checksum matches; a url without a sha256 is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import os
import re
import sys
import tarfile
import zipfile

import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils
from tensorflow_datasets.core.download import download_manager as tfds_download_manager
from tensorflow_datasets.core.download import resource as tfds_resource

from animejax.data import tfds_inputs
from animejax.data.sources import DataError

NAME = "anime_faces"
_MAX_LOGGED_CORRUPT = 5
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Put the images in the manual directory (`--manual_dir`, by default
`<download_dir>/manual`, i.e. ~/tensorflow_datasets/downloads/manual), either

* as a folder of image files (jpg, jpeg, png, webp, bmp; sub-folders are read
  recursively), e.g. the extracted Kaggle "animefacedataset"
  (https://www.kaggle.com/datasets/splcher/animefacedataset), or the images
  of one of the Hugging Face anime face datasets saved as files; or
* as one or more .zip files of such images (e.g. the Kaggle download
  `archive.zip`), read without extracting.

When the folder holds image files, any .zip next to them is ignored (so an
archive left beside its extracted copy is not read twice). Non-image files
are skipped, and images that cannot be decoded are skipped with a warning.
"""


class ChecksumMismatchError(tfds_download_manager.NonMatchingChecksumError):
    """A downloaded archive whose sha256 differs from the configured one."""


@dataclasses.dataclass(eq=False)
class AnimeFacesConfig(tfds.core.BuilderConfig):
    """A named `anime_faces` variant that can download its images.

    Attributes:
      url: http(s) address of a .zip (or a tar/tar.gz) of images; used only
        when the manual directory holds no images.
      sha256: hex sha256 of the file at `url`; required with `url`. The
        download is rejected when it differs.
    """

    url: str | None = None
    sha256: str | None = None

    def __post_init__(self):
        if self.sha256 is not None:
            if not _SHA256_RE.match(self.sha256):
                raise ValueError(f"AnimeFacesConfig {self.name!r}: sha256 must be 64 hex digits, got {self.sha256!r}.")
            self.sha256 = self.sha256.lower()
        if self.url and not self.sha256:
            raise ValueError(
                f"AnimeFacesConfig {self.name!r}: a url needs its sha256 (run `sha256sum` on the archive); "
                "unverified downloads are refused."
            )


def _tensorflow_installed() -> bool:
    """Whether `import tensorflow` would find a module (without importing it)."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # Imports of tensorflow are blocked.
        return False


def _tfds_version() -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", tfds.__version__)[:3])


def _download_needs_tensorflow() -> bool:
    """TFDS's download manager imports TensorFlow before tensorflow-datasets 4.9.7."""
    return _tfds_version() < (4, 9, 7) and not _tensorflow_installed()


class _LocalDatasetInfo(tfds.core.DatasetInfo):
    """DatasetInfo that never looks for pre-computed info on TFDS's GCS bucket.

    `anime_faces` is not there, and tensorflow-datasets < 4.9.8 probes `gs://` on
    every builder construction, which needs TensorFlow (or gcsfs) and the network.
    """

    def initialize_from_bucket(self) -> None:
        pass


class AnimeFaces(tfds.core.GeneratorBasedBuilder, skip_registration=__name__ == "__main__"):
    """Anime face images from a manual folder/zip or a checksummed download.

    Writes ArrayRecord files unless another `file_format` is asked for (TFRecord
    needs TensorFlow). Examples are written in sorted file order (shuffling is
    disabled), so record `i` is the same image on every build of the same input.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS: list[AnimeFacesConfig] = []

    @tfds_utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """The path of this file.

        Replaces TFDS's lookup, which imports the `importlib_resources` backport
        that TFDS does not install on Python >= 3.9.
        """
        return epath.Path(__file__)

    def __init__(self, *, file_format: str | tfds.core.FileFormat | None = None, **kwargs):
        file_format = tfds.core.FileFormat(file_format or tfds.core.FileFormat.ARRAY_RECORD)
        if file_format == tfds.core.FileFormat.TFRECORD and not _tensorflow_installed():
            raise ImportError(
                "anime_faces: file_format='tfrecord' needs TensorFlow, which is not installed; "
                "use file_format='array_record' (the default), which needs no TensorFlow."
            )
        super().__init__(file_format=file_format, **kwargs)

    def download_and_prepare(self, *, download_config: tfds.download.DownloadConfig | None = None, **kwargs):
        """TFDS's `download_and_prepare`, never looking for a prepared copy on TFDS's GCS bucket.

        (`anime_faces` is not there; tensorflow-datasets < 4.9.8 would probe `gs://`, which needs TensorFlow.)
        """
        download_config = dataclasses.replace(download_config or tfds.download.DownloadConfig(), try_download_gcs=False)
        return super().download_and_prepare(download_config=download_config, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return _LocalDatasetInfo(
            builder=self,
            description=(
                "Anime face images, stored as their encoded JPEG/PNG bytes (RGB), with the source "
                "file's relative name. Built from a manual folder/zip of images or a checksummed archive."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "filename": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
            disable_shuffling=True,
            homepage="https://www.kaggle.com/datasets/splcher/animefacedataset",
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        try:
            manual_dir = os.fspath(dl_manager.manual_dir)
        except AssertionError as error:  # Missing or empty manual directory.
            manual_dir, manual_problem = None, str(error).splitlines()[0].split(" Create it")[0]
        else:
            if tfds_inputs.has_inputs(manual_dir):
                return {"train": self._generate_examples(manual_dir, kind="folder")}
            manual_problem = f"Manual directory {manual_dir} holds no image or .zip files."
        config = self.builder_config
        url = getattr(config, "url", None)
        if url:
            path = self._download_verified(dl_manager, url, config.sha256)
            if zipfile.is_zipfile(path):
                return {"train": self._generate_examples(path, kind="zip")}
            if tarfile.is_tarfile(path):
                return {"train": self._generate_examples(tfds_inputs.extract_tar(path), kind="folder")}
            raise DataError(f"anime_faces: the download of {url} ({path}) is neither a .zip nor a tar archive.")
        raise DataError(
            f"anime_faces: no input images. {manual_problem} The config has no url.\n"
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS}\n"
            "Or give a config with url= and sha256= (AnimeFacesConfig; --url/--sha256 on this module's command line)."
        )

    def _download_verified(self, dl_manager: tfds.download.DownloadManager, url: str, sha256: str) -> str:
        """Downloads `url` (or reuses TFDS's cached copy) and checks its sha256.

        Raises:
          ChecksumMismatchError: when the file's sha256 is not `sha256`; the
            file is deleted from the download cache first.
        """
        if _download_needs_tensorflow():
            raise ImportError(
                f"anime_faces: downloading {url} with tensorflow-datasets {tfds.__version__} needs TensorFlow "
                "(its download manager imports it before 4.9.7). Upgrade to tensorflow-datasets>=4.9.7, or "
                "download the archive yourself, check its sha256, and put it in the manual directory."
            )
        path = os.fspath(dl_manager.download(url))
        actual, size = tfds_inputs.sha256_file(path)
        if actual != sha256.lower():
            for stale in (path, os.fspath(tfds_resource.get_info_path(epath.Path(path)))):
                if os.path.exists(stale):
                    os.remove(stale)
            raise ChecksumMismatchError(
                f"anime_faces: the download of {url} ({size} bytes) has sha256 {actual}, but the config "
                f"expects {sha256.lower()}. Nothing was extracted; the file was removed from the download "
                "cache. Fix the sha256 (or the url) and run again."
            )
        logging.info("anime_faces: %s matches sha256 %s", url, actual)
        return path

    def _generate_examples(self, path: str, kind: str):
        # A downloaded zip's members are named as in the archive (the cached file's name varies).
        entries = tfds_inputs.folder_entries(path) if kind == "folder" else tfds_inputs.zip_entries(path)
        corrupt = []
        # Integer keys in input order: with shuffling disabled, TFDS writes records in key order.
        for key, (name, data) in enumerate(entries):
            try:
                data = tfds_inputs.checked_image_bytes(data)
            except Exception as error:  # PIL raises many types for bad files.
                if len(corrupt) < _MAX_LOGGED_CORRUPT:
                    logging.warning("anime_faces: skipping unreadable image %s: %s", name, error)
                corrupt.append(name)
                continue
            yield key, {"image": data, "filename": name}
        if corrupt:
            logging.warning("anime_faces: skipped %d unreadable image(s) in %s.", len(corrupt), path)
        self.info.metadata["skipped_corrupt"] = corrupt


def main(argv: list[str] | None = None) -> int:
    """Command line: prepares `anime_faces` (ArrayRecord) without TensorFlow."""
    parser = argparse.ArgumentParser(
        prog="python -m animejax.data.tfds_anime",
        description="Prepare the anime_faces TFDS dataset (ArrayRecord files, no TensorFlow needed).",
        epilog=MANUAL_DOWNLOAD_INSTRUCTIONS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data_dir", default=None, help="TFDS data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets)."
    )
    parser.add_argument("--manual_dir", default=None, help="Folder of images or of .zip files of images.")
    parser.add_argument(
        "--download_dir", default=None, help="Where downloads are cached (default <data_dir>/downloads)."
    )
    parser.add_argument("--url", default=None, help="Archive to download when the manual dir has no images.")
    parser.add_argument("--sha256", default=None, help="sha256 of the archive at --url (required with --url).")
    parser.add_argument(
        "--config",
        default=None,
        help="Config name; the data goes to anime_faces/<config>/1.0.0 (default 'download' with --url).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = None
    if args.url or args.sha256 or args.config:
        try:
            config = AnimeFacesConfig(
                name=args.config or "download", url=args.url, sha256=args.sha256, description="Command-line config."
            )
        except ValueError as error:
            parser.error(str(error))
    builder = AnimeFaces(data_dir=args.data_dir, config=config)
    try:
        builder.download_and_prepare(
            download_dir=args.download_dir,
            download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir),
        )
    except (DataError, ChecksumMismatchError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    count = builder.info.splits["train"].num_examples
    name = f"{NAME}/{config.name}" if config else NAME
    print(f"Prepared {count} images in {builder.data_dir}.")
    print(f"Read them with TfdsImages({name!r}, 'train', image_size, {args.data_dir!r}).")
    return 0


if __name__ == "__main__":
    # Run the importable copy of this module (this `__main__` copy did not register
    # its builder), so the dataset's metadata names `animejax.data.tfds_anime`.
    from animejax.data import tfds_anime

    sys.exit(tfds_anime.main())
