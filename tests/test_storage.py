"""Bucket URLs for data.path and --workdir: a run trains from and checkpoints to gs://, and resumes from there.

The bucket is `tests/fake_gcs.py`: real `gs://` URLs through etils.epath's fsspec backend, Orbax's GCS path
handling and TensorStore's GCS driver, with only the transports local. epath refuses memory:// and file:// URLs
(it registers gs://, s3://, az://, hf:// only), and Orbax treats gs:// differently from every other path
(commit_success.txt instead of an atomic rename, TensorStore's gcs kvstore, bucket queries), so a stand-in on
another scheme would not run the code a cluster runs.
"""

import importlib.util
import io
import json
import logging
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath
from PIL import Image

from animejax import checkpoint, inference, main, saved_config, storage, train, writers
from animejax.data import cache, pipeline, sources, synthetic
from animejax.errors import ConfigError
from tests.fake_gcs import FakeGcs
from tests.test_train import load_config

BUCKET = "gs://animejax-test-bucket"
NUM_IMAGES = 48


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """The fake bucket, installed for this process (gs:// URLs then reach it)."""
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("with TensorFlow installed epath reads gs:// through tf.io.gfile, which the fake does not replace")
    pytest.importorskip("google.cloud.storage", reason="Orbax needs google-cloud-storage for gs:// (the test extra)")
    fake = FakeGcs(str(tmp_path_factory.mktemp("gcs")))
    saved = dict(os.environ)
    fake.install(os.environ)
    os.makedirs(fake.local_path(BUCKET))  # The bucket exists; anything under it is written through gs:// URLs.
    yield fake
    fake.close()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def bucket_faces(gcs) -> str:
    """NUM_IMAGES synthetic faces uploaded as PNGs to a bucket folder (half of them in a sub-folder)."""
    folder = f"{BUCKET}/faces"
    faces = synthetic.SyntheticFaces(NUM_IMAGES, 64, seed=3)
    for i in range(NUM_IMAGES):
        buffer = io.BytesIO()
        Image.fromarray(faces.load(i)).save(buffer, format="PNG")
        epath.Path(f"{folder}/{'more/' if i % 2 else ''}{i:03d}.png").write_bytes(buffer.getvalue())
    epath.Path(f"{folder}/notes.txt").write_text("not an image")
    return folder


def bucket_config(data_path: str, cache_dir: str, num_steps: int):
    """The VAE (`configs/vae.py:cpu` sizes) on 32 px images from `data_path`: a few steps on one CPU device."""
    config = load_config("vae", "cpu")
    config.data.source = "folder"
    config.data.path = data_path
    config.data.image_size = 32
    config.data.cache_dir = cache_dir
    config.mesh.num_devices = 1
    config.train.batch_size = 8
    config.train.num_steps = num_steps
    config.train.log_every = 2
    config.train.sample_every = 2
    config.train.checkpoint_every = 2
    config.checkpoint.max_to_keep = 3
    config.eval.every_steps = 0  # No in-training evaluation (its SWD wants more images than these).
    return config


def _leaves(state) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


def test_vae_trains_from_a_bucket_checkpoints_there_and_resumes(gcs, bucket_faces, tmp_path, caplog):
    workdir = f"{BUCKET}/runs/vae"
    cache_dir = str(tmp_path / "decoded")
    first = train.train_and_evaluate(bucket_config(bucket_faces, cache_dir, num_steps=2), workdir)

    local = gcs.local_path(workdir)  # What the bucket holds, seen from its backing folder.
    assert os.path.exists(os.path.join(local, "checkpoints", "2", "commit_success.txt"))  # Orbax's GCS commit.
    assert json.loads(open(os.path.join(local, "config.json")).read())["data"]["path"] == bucket_faces
    assert "reconstructions_0000002.png" in os.listdir(os.path.join(local, "samples"))
    # The decode cache is on local disk, keyed by the URL, holding every image of the folder (not notes.txt).
    (meta,) = [name for name in os.listdir(cache_dir) if name.endswith(".json")]
    meta = json.loads(open(os.path.join(cache_dir, meta)).read())
    assert meta["source"] == f"folder:{bucket_faces}" and meta["count"] == NUM_IMAGES

    # The checkpoint read back from the bucket is the state the run ended with.
    manager = ocp.CheckpointManager(epath.Path(workdir) / "checkpoints")
    saved = manager.restore(2, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    manager.close()
    for x, y in zip(_leaves(first.params), _leaves(saved["params"])):
        np.testing.assert_array_equal(x, y)

    with caplog.at_level(logging.INFO):
        resumed = train.train_and_evaluate(bucket_config(bucket_faces, cache_dir, num_steps=4), workdir)
    assert f"Restored checkpoint at step 2 from {workdir}/checkpoints" in caplog.text
    assert "Building decode cache" not in caplog.text  # The second run reads this host's cache.
    assert int(resumed.step) == 4
    assert sorted(os.listdir(os.path.join(local, "checkpoints"))) == ["2", "4"]

    # TensorBoard events reached the bucket whole: both runs' scalars (the fake bucket refuses appends).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(local, size_guidance={"scalars": 0})
    events.Reload()
    assert sorted(e.step for e in events.Scalars("train/loss")) == [2, 4]

    # Sampling from the bucket workdir with its saved config, as `--mode=sample` without --config does.
    argv = main._with_saved_config(["animejax", f"--workdir={workdir}", "--mode=sample"])
    assert argv[1] == f"--config={saved_config.__file__}:{workdir}"
    paths = inference.sample(saved_config.get_config(workdir), workdir)
    assert paths["samples_normal"] == f"{workdir}/samples/sample_samples_normal_0000004.png"
    with Image.open(os.path.join(local, "samples", "sample_samples_normal_0000004.png")) as grid:
        assert grid.size[0] > 32


def test_bucket_folder_lists_in_local_order_and_shards(gcs, bucket_faces):
    folder = sources.ImageFolder(bucket_faces, 32)
    names = [path.removeprefix(bucket_faces + "/") for path in folder.paths]
    assert names == [f"{i:03d}.png" for i in range(0, NUM_IMAGES, 2)] + [
        f"more/{i:03d}.png" for i in range(1, NUM_IMAGES, 2)
    ]  # A folder's files, then its sub-folders: as a local folder is scanned.
    shard = folder.shard(1, 2)
    assert shard.paths == folder.paths[1::2] and shard.fingerprint() != folder.fingerprint()
    assert cache.cache_key(shard) != cache.cache_key(folder)  # Each host decodes and caches its own shard.
    assert folder.load(0).shape == (32, 32, 3)


def test_missing_bucket_or_folder_is_one_clear_error(gcs, bucket_faces, tmp_path):
    config = bucket_config(bucket_faces, str(tmp_path / "decoded"), num_steps=2)
    with pytest.raises(storage.StorageError, match="the bucket gs://no-such-bucket does not exist"):
        train.train_and_evaluate(config, "gs://no-such-bucket/runs/vae")
    config.data.path = "gs://no-such-bucket/faces"
    with pytest.raises(storage.StorageError, match="data.path=gs://no-such-bucket/faces: the bucket"):
        pipeline.make_source(config.data)
    config.data.path = f"{BUCKET}/no-such-folder"
    with pytest.raises(sources.DataError, match="no-such-folder' does not exist"):
        pipeline.make_source(config.data)
    assert not os.listdir(tmp_path)  # Nothing was decoded or written.


def test_tfds_dataset_in_a_bucket_data_dir_reads_as_the_local_copy(gcs, tmp_path):
    """TFDS opens a gs:// data dir through epath; ArrayRecord reads the record files from the bucket itself."""
    import ml_collections
    import tensorflow_datasets as tfds

    from animejax.data import tfds_anime, tfds_reader

    manual = tmp_path / "manual"
    manual.mkdir()
    faces = synthetic.SyntheticFaces(6, 40, seed=5)
    for i in range(6):
        Image.fromarray(faces.load(i)).save(manual / f"{i}.png")
    local_dir = tmp_path / "tfds"
    tfds.disable_progress_bar()
    tfds_anime.AnimeFaces(data_dir=str(local_dir)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
    )
    bucket_dir = f"{BUCKET}/tfds"
    for root, _, names in os.walk(local_dir):  # Upload the prepared dataset.
        for name in names:
            relative = os.path.relpath(os.path.join(root, name), local_dir)
            epath.Path(f"{bucket_dir}/{relative}").write_bytes(open(os.path.join(root, name), "rb").read())

    data = {"source": "tfds", "path": "anime_faces", "split": "train", "image_size": 32}
    local = pipeline.make_source(ml_collections.ConfigDict({**data, "tfds_data_dir": str(local_dir)}))
    remote = pipeline.make_source(ml_collections.ConfigDict({**data, "tfds_data_dir": bucket_dir}), 1, 2)
    assert isinstance(remote, tfds_reader.TfdsImages) and remote.data_dir.startswith(bucket_dir)
    assert len(remote) == 3
    for i in range(3):
        np.testing.assert_array_equal(remote.load(i), local.load(2 * i + 1))
    assert len(remote.fingerprint()) == 16  # From the sizes and times of the bucket's record files.


def test_urls_epath_cannot_open_and_a_url_cache_dir_are_refused(tmp_path):
    with pytest.raises(storage.StorageError, match=r"memory:// URLs are not supported.*gs://"):
        storage.as_path("memory://bucket/run", "--workdir")
    config = bucket_config("gs://bucket/faces", "gs://bucket/cache", num_steps=2)
    with pytest.raises(ConfigError, match="local disk"):
        pipeline.load_images(config.data)
    assert storage.as_path("~/runs/x") == epath.Path(os.path.expanduser("~/runs/x"))


def test_event_file_on_a_bucket_is_rewritten_whole_and_holds_every_step(gcs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = f"{BUCKET}/events_only"
    writer = writers.TensorBoardWriter(logdir, sync_seconds=0.0)  # Copies after every write.
    for step in range(1, 6):
        writer.write_scalars(step, {"loss": 1.0 / step})
    writer.write_images(5, {"grid": np.zeros((8, 8, 3), np.uint8)})
    writer.close()
    (name,) = os.listdir(gcs.local_path(logdir))
    assert name.startswith("events.out.tfevents")
    events = EventAccumulator(gcs.local_path(logdir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3, 4, 5]
    assert events.Tags()["images"] == ["grid"]


def test_checkpointer_paths_stay_urls(gcs):
    config = bucket_config(f"{BUCKET}/faces", "", num_steps=2)
    checkpointer = checkpoint.Checkpointer(f"{BUCKET}/runs/paths", config)
    assert os.fspath(checkpointer.manager.directory) == f"{BUCKET}/runs/paths/checkpoints"
    checkpointer.write_config()
    assert checkpointer.saved_config()["data"]["path"] == f"{BUCKET}/faces"
    checkpointer.close()
