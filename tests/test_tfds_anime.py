"""Tests for the `anime_faces` TFDS builder (`tfds_anime`) and the TF-free `tfds_reader.TfdsImages` reader.

Everything here runs without TensorFlow: the builder writes ArrayRecord files
and the reader uses TFDS's ArrayRecord data source (one test repeats a build
and a read in a child process where TensorFlow is hidden even if installed).
The download tests serve a .zip and a .tar.gz from a local `http.server` thread.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.util
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is not installed")

from animejax.data import cache, tfds_anime, tfds_reader  # noqa: E402
from animejax.data.sources import DataError, center_crop_resize, list_images  # noqa: E402

SIZE = 16
TF_INSTALLED = importlib.util.find_spec("tensorflow") is not None
needs_tf_free_download = pytest.mark.skipif(
    tfds_anime._download_needs_tensorflow(),
    reason=f"tensorflow-datasets {tfds.__version__} < 4.9.7 imports TensorFlow to download, and it is not installed",
)


def _make_images(folder) -> dict[str, str]:
    """12 small images (PNG/JPEG, RGB/gray/RGBA, odd shapes), one corrupt file, one text file.

    Returns {relative name: kind} for the decodable images.
    """
    rng = np.random.default_rng(0)
    os.makedirs(folder / "sub" / "deeper", exist_ok=True)
    kinds = {}

    def pixels(height, width, channels=3):
        base = np.linspace(0, 255, height * width * channels).reshape(height, width, channels)
        noise = rng.integers(-20, 20, size=base.shape)
        return np.clip(base + noise, 0, 255).astype(np.uint8)

    for i in range(5):
        name = f"face_{i:02d}.png"
        Image.fromarray(pixels(20 + 3 * i, 28 - 2 * i)).save(folder / name)
        kinds[name] = "png"
    for i in range(4):
        name = f"sub/photo_{i}.jpg"
        Image.fromarray(pixels(24, 18 + 4 * i)).save(folder / name, quality=90)
        kinds[name] = "jpeg"
    Image.fromarray(pixels(22, 22, 1)[..., 0]).save(folder / "sub" / "gray.png")
    kinds["sub/gray.png"] = "png"
    Image.fromarray(pixels(18, 26, 4)).save(folder / "sub" / "deeper" / "alpha.png")
    kinds["sub/deeper/alpha.png"] = "png"
    Image.fromarray(pixels(16, 16)).save(folder / "sub" / "deeper" / "tiny.PNG")
    kinds["sub/deeper/tiny.PNG"] = "png"
    (folder / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return kinds


def _expected(path) -> np.ndarray:
    with Image.open(path) as image:
        return center_crop_resize(image, SIZE)


def _folder_order(built) -> list[str]:
    """Relative names of the decodable test images in `list_images` order."""
    manual = str(built["manual"])
    names = [os.path.relpath(path, manual) for path in list_images(manual)]
    return [name for name in names if name in built["kinds"]]


def _prepare(data_dir, manual_dir=None, config=None):
    builder = tfds_anime.AnimeFaces(data_dir=str(data_dir), config=config)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None)
    )
    return builder


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module", autouse=True)
def _quiet_tfds():
    tfds.disable_progress_bar()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A manual folder of images and the dataset built from it."""
    root = tmp_path_factory.mktemp("tfds_anime")
    manual = root / "manual"
    kinds = _make_images(manual)
    warnings = _Warnings()
    logging.getLogger().addHandler(warnings)
    try:
        builder = _prepare(root / "data", manual)
    finally:
        logging.getLogger().removeHandler(warnings)
    return {
        "root": root,
        "manual": manual,
        "data_dir": str(root / "data"),
        "kinds": kinds,
        "builder": builder,
        "warnings": warnings.messages,
    }


def test_builder_name_version_and_format(built):
    builder = built["builder"]
    assert builder.name == "anime_faces"
    assert str(builder.version) == "1.0.0"
    assert list(builder.info.splits) == ["train"]
    assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
    assert set(builder.info.features) == {"image", "filename"}
    if not TF_INSTALLED:
        assert "tensorflow" not in sys.modules


def test_build_skips_corrupt_and_non_images_in_sorted_order(built):
    source = tfds_reader.TfdsImages("anime_faces", "train", SIZE, built["data_dir"])
    assert len(source) == len(built["kinds"]) == 12
    assert [source.record_name(i) for i in range(len(source))] == _folder_order(built)
    assert any("broken.jpg" in message for message in built["warnings"])
    assert any("skipped 1 unreadable" in message for message in built["warnings"])
    with open(os.path.join(built["builder"].data_dir, "metadata.json")) as f:
        assert json.load(f)["skipped_corrupt"] == ["sub/broken.jpg"]


def test_pixels_match_center_crop_resize_of_originals(built):
    source = tfds_reader.TfdsImages("anime_faces", "train", SIZE, built["data_dir"])
    for i in range(len(source)):
        name = source.record_name(i)
        got = source.load(i)
        assert got.dtype == np.uint8 and got.shape == (SIZE, SIZE, 3)
        want = _expected(built["manual"] / name)
        if built["kinds"][name] == "png":
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:  # JPEG: stored as is, so decoded identically; allow for decoder differences anyway.
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 2, name


def test_rgb_jpeg_and_png_bytes_are_stored_unchanged(built):
    records = built["builder"].as_data_source("train", decoders={"image": tfds.decode.SkipDecoding()})
    for record in records:
        name = record["filename"].decode()
        stored = record["image"]
        original = (built["manual"] / name).read_bytes()
        with Image.open(built["manual"] / name) as image:
            rgb = image.mode == "RGB"
        if rgb:
            assert stored == original, name
        else:  # Gray / RGBA: re-encoded as an RGB PNG.
            with Image.open(io.BytesIO(stored)) as image:
                assert (image.format, image.mode) == ("PNG", "RGB"), name


def test_version_directory_is_accepted(built):
    source = tfds_reader.TfdsImages(built["builder"].data_dir, "train", SIZE, None)
    assert len(source) == 12


def test_shards_partition_the_records(built):
    source = tfds_reader.TfdsImages("anime_faces", "train", SIZE, built["data_dir"])
    count = 3
    shards = [source.shard(i, count) for i in range(count)]
    assert sum(len(s) for s in shards) == len(source)
    assert len({s.fingerprint() for s in shards} | {source.fingerprint()}) == count + 1
    for index, shard in enumerate(shards):
        for j in range(len(shard)):
            assert shard.record_name(j) == source.record_name(index + j * count)
            np.testing.assert_array_equal(shard.load(j), source.load(index + j * count))
    # A shard of a shard is still every count-th record.
    nested = source.shard(1, 2).shard(1, 2)
    assert [nested.record_name(j) for j in range(len(nested))] == [
        source.record_name(k) for k in range(3, len(source), 4)
    ]
    with pytest.raises(ValueError):
        source.shard(3, 3)


def test_fingerprint_is_stable_and_split_slices_work(built):
    a = tfds_reader.TfdsImages("anime_faces", "train", SIZE, built["data_dir"])
    b = tfds_reader.TfdsImages("anime_faces", "train", SIZE, built["data_dir"])
    assert a.fingerprint() == b.fingerprint()
    head = tfds_reader.TfdsImages("anime_faces", "train[:50%]", SIZE, built["data_dir"])
    assert len(head) == 6 and head.fingerprint() != a.fingerprint()
    np.testing.assert_array_equal(head.load(5), a.load(5))


def test_decode_cache_reads_the_source(built, tmp_path):
    source = tfds_reader.TfdsImages("anime_faces", "train", SIZE, built["data_dir"])
    images = cache.cached_images(source, str(tmp_path / "cache"), num_workers=2)
    assert images.shape == (12, SIZE, SIZE, 3)
    np.testing.assert_array_equal(images[7], source.load(7))


def test_missing_dataset_says_where_and_how(tmp_path):
    empty = tmp_path / "nothing_here"
    with pytest.raises(DataError) as error:
        tfds_reader.TfdsImages("anime_faces", "train", SIZE, str(empty))
    message = str(error.value)
    assert str(empty) in message
    assert f"python -m animejax.data.tfds_anime --manual_dir /path/to/images --data_dir {empty}" in message
    with pytest.raises(DataError, match="--config mirror --url URL --sha256 SHA256"):
        tfds_reader.TfdsImages("anime_faces/mirror", "train", SIZE, str(empty))
    with pytest.raises(DataError, match="no dataset_info.json"):
        tfds_reader.TfdsImages(str(tmp_path), "train", SIZE, None)


def test_missing_split(built):
    with pytest.raises(DataError, match="no split 'test'"):
        tfds_reader.TfdsImages("anime_faces", "test", SIZE, built["data_dir"])


def test_tfrecord_dataset_is_rejected_with_advice(built, tmp_path):
    version_dir = tmp_path / "anime_faces" / "1.0.0"
    shutil.copytree(built["builder"].data_dir, version_dir)
    info_path = version_dir / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info["fileFormat"] = "tfrecord"
    info_path.write_text(json.dumps(info))
    with pytest.raises(DataError, match="stored as tfrecord.*array_record"):
        tfds_reader.TfdsImages("anime_faces", "train", SIZE, str(tmp_path))


def test_manual_zip_is_read_without_extracting(built, tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with zipfile.ZipFile(manual / "faces.zip", "w") as archive:
        for name in sorted(built["kinds"]):
            archive.write(built["manual"] / name, f"faces/{name}")
        archive.writestr("__MACOSX/faces/._face_00.png", b"metadata")
        archive.writestr("faces/readme.txt", "text")
    _prepare(tmp_path / "data", manual)
    source = tfds_reader.TfdsImages("anime_faces", "train", SIZE, str(tmp_path / "data"))
    names = [source.record_name(i) for i in range(len(source))]
    assert names == [f"faces.zip/faces/{name}" for name in _folder_order(built)]  # Same order as the folder.
    i = names.index("faces.zip/faces/face_03.png")
    np.testing.assert_array_equal(source.load(i), _expected(built["manual"] / "face_03.png"))


def test_no_input_is_a_clear_error(tmp_path):
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match="no input images.*holds no image or .zip files"):
        _prepare(tmp_path / "data", tmp_path / "manual")
    with pytest.raises(DataError, match="does not exist or is empty"):
        _prepare(tmp_path / "data2")
    with pytest.raises(DataError, match="not prepared"):
        tfds_reader.TfdsImages("anime_faces", "train", SIZE, str(tmp_path / "data"))


def test_config_requires_a_valid_sha256():
    with pytest.raises(ValueError, match="needs its sha256"):
        tfds_anime.AnimeFacesConfig(name="x", url="http://127.0.0.1/x.zip")
    with pytest.raises(ValueError, match="64 hex digits"):
        tfds_anime.AnimeFacesConfig(name="x", url="http://127.0.0.1/x.zip", sha256="abc")
    config = tfds_anime.AnimeFacesConfig(name="x", url="http://127.0.0.1/x.zip", sha256="AB" * 32)
    assert config.sha256 == "ab" * 32


@pytest.mark.skipif(TF_INSTALLED, reason="checks the error raised when TensorFlow is absent")
def test_tfrecord_build_without_tensorflow_is_refused(tmp_path):
    with pytest.raises(ImportError, match="array_record"):
        tfds_anime.AnimeFaces(data_dir=str(tmp_path), file_format="tfrecord")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served_zip(served):
    """(url, sha256) of a .zip of the test images served on 127.0.0.1."""
    return served["faces.zip"]


@pytest.fixture
def served(built, tmp_path, monkeypatch):
    """{file name: (url, sha256)} for a .zip and a .tar.gz of the test images served on 127.0.0.1."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    with zipfile.ZipFile(root / "faces.zip", "w") as archive:
        for name in sorted(built["kinds"]) + ["sub/broken.jpg"]:
            archive.write(built["manual"] / name, f"faces/{name}")
    with tarfile.open(root / "faces.tar.gz", "w:gz") as archive:
        for name in sorted(built["kinds"]):
            archive.add(built["manual"] / name, f"faces/{name}")
    sha256 = {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in ("faces.zip", "faces.tar.gz")}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    server.daemon_threads = True
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        yield {name: (f"{base}/{name}", digest) for name, digest in sha256.items()}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@needs_tf_free_download
def test_download_with_matching_sha256(built, served_zip, tmp_path):
    url, sha256 = served_zip
    config = tfds_anime.AnimeFacesConfig(name="mirror", url=url, sha256=sha256.upper())
    builder = _prepare(tmp_path / "data", tmp_path / "no_manual_dir", config)
    assert builder.data_dir.endswith(os.path.join("anime_faces", "mirror", "1.0.0"))
    source = tfds_reader.TfdsImages("anime_faces/mirror", "train", SIZE, str(tmp_path / "data"))
    names = [source.record_name(i) for i in range(len(source))]
    assert names == [f"faces/{name}" for name in _folder_order(built)]  # broken.jpg skipped
    for i, name in enumerate(names):
        if name.endswith(".png"):
            np.testing.assert_array_equal(source.load(i), _expected(built["manual"] / name[len("faces/") :]))
    # The manual directory, when it holds images, wins over the url.
    manual_builder = _prepare(tmp_path / "data_manual", built["manual"], config)
    assert manual_builder.info.splits["train"].num_examples == 12
    if not TF_INSTALLED:
        assert "tensorflow" not in sys.modules


@needs_tf_free_download
def test_download_with_wrong_sha256_is_rejected(served_zip, tmp_path):
    url, sha256 = served_zip
    wrong = "0" * 64
    config = tfds_anime.AnimeFacesConfig(name="mirror", url=url, sha256=wrong)
    with pytest.raises(tfds_anime.ChecksumMismatchError) as error:
        _prepare(tmp_path / "data", None, config)
    message = str(error.value)
    assert url in message and sha256 in message and wrong in message
    assert isinstance(error.value, tfds.core.download.download_manager.NonMatchingChecksumError)
    # Nothing was prepared, and the bad download is not kept in the cache.
    with pytest.raises(DataError, match="not prepared"):
        tfds_reader.TfdsImages("anime_faces/mirror", "train", SIZE, str(tmp_path / "data"))
    downloads = tmp_path / "data" / "downloads"
    kept = [p for p in downloads.rglob("*") if p.is_file()]
    assert kept == [], kept
    # The right checksum then works from the same download directory.
    good = tfds_anime.AnimeFacesConfig(name="mirror", url=url, sha256=sha256)
    assert _prepare(tmp_path / "data", None, good).info.splits["train"].num_examples == 12


@needs_tf_free_download
def test_download_of_a_tar_gz(built, served, tmp_path):
    url, sha256 = served["faces.tar.gz"]
    config = tfds_anime.AnimeFacesConfig(name="tarball", url=url, sha256=sha256)
    _prepare(tmp_path / "data", None, config)
    source = tfds_reader.TfdsImages("anime_faces/tarball", "train", SIZE, str(tmp_path / "data"))
    names = [source.record_name(i) for i in range(len(source))]
    assert names == [f"faces/{name}" for name in _folder_order(built)]
    i = names.index("faces/sub/gray.png")
    np.testing.assert_array_equal(source.load(i), _expected(built["manual"] / "sub" / "gray.png"))


def test_pipeline_make_source_reads_tfds(built):
    ml_collections = pytest.importorskip("ml_collections")
    from animejax.data import pipeline

    data = ml_collections.ConfigDict(
        {
            "source": "tfds",
            "path": "anime_faces",
            "split": "train",
            "image_size": SIZE,
            "tfds_data_dir": built["data_dir"],
        }
    )
    full = pipeline.make_source(data)
    assert isinstance(full, tfds_reader.TfdsImages) and len(full) == 12
    second = pipeline.make_source(data, process_index=1, process_count=2)
    assert len(second) == 6
    np.testing.assert_array_equal(second.load(2), full.load(5))


def test_build_and_read_with_tensorflow_blocked(built, tmp_path):
    """A fresh process where `import tensorflow` fails (as on the GPU machines) builds and reads."""
    from tests.conftest import subprocess_env

    script = textwrap.dedent(
        f"""
        import importlib.machinery
        import importlib.util
        import sys

        class HideTensorFlow(importlib.machinery.PathFinder):
            # The standard path finder, except that tensorflow is not installed.

            @classmethod
            def find_spec(cls, name, path=None, target=None):
                if name == "tensorflow" or name.startswith("tensorflow."):
                    return None
                return super().find_spec(name, path, target)

        sys.meta_path[:] = [
            HideTensorFlow if finder is importlib.machinery.PathFinder else finder for finder in sys.meta_path
        ]
        assert importlib.util.find_spec("tensorflow") is None
        import tensorflow_datasets as tfds
        from animejax.data import tfds_anime, tfds_reader
        tfds.disable_progress_bar()
        builder = tfds_anime.AnimeFaces(data_dir={str(tmp_path / "data")!r})
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir={str(built["manual"])!r}))
        source = tfds_reader.TfdsImages("anime_faces", "train", {SIZE}, {str(tmp_path / "data")!r})
        image = source.load(len(source) - 1)
        assert "tensorflow" not in sys.modules
        print("OK", len(source), image.shape)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=subprocess_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"OK 12 ({SIZE}, {SIZE}, 3)" in result.stdout
