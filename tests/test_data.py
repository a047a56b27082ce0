"""Image folder, decode cache and batch order: behaviour and bad input."""

import logging
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from animejax.config_defaults import base_config
from animejax.data import cache, pipeline, sources


def _write_images(folder, count, size=(40, 30), seed=0, fmt="png"):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    arrays = []
    for i in range(count):
        array = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(array).save(os.path.join(folder, f"{i:03d}.{fmt}"))
        arrays.append(array)
    return arrays


def _folder_config(path, cache_dir, image_size=16) -> ml_collections.ConfigDict:
    data = base_config().data
    data.source, data.path, data.image_size, data.cache_dir = "folder", str(path), image_size, str(cache_dir)
    return data


def test_center_crop_resize_matches_pil_reference():
    array = np.random.default_rng(1).integers(0, 256, size=(30, 50, 3), dtype=np.uint8)
    got = sources.center_crop_resize(Image.fromarray(array), 20)
    reference = Image.fromarray(array[:, 10:40]).resize((20, 20), Image.Resampling.LANCZOS, reducing_gap=None)
    np.testing.assert_array_equal(got, np.asarray(reference))


def test_folder_lists_recursively_and_by_extension(tmp_path):
    _write_images(tmp_path / "a", 2)
    _write_images(tmp_path / "b" / "c", 2, fmt="jpg")
    _write_images(tmp_path / "d", 1, fmt="webp")
    (tmp_path / "notes.txt").write_text("not an image")
    folder = sources.ImageFolder(str(tmp_path), 16)
    assert len(folder) == 5
    assert folder.load(0).shape == (16, 16, 3)


def test_cache_skips_corrupt_images_and_decodes_once(tmp_path, caplog):
    originals = _write_images(tmp_path / "img", 6)
    (tmp_path / "img" / "002.png").write_bytes(b"this is not a png")
    source = sources.ImageFolder(str(tmp_path / "img"), 16)
    with caplog.at_level(logging.WARNING):
        images = cache.cached_images(source, str(tmp_path / "cache"))
    assert images.shape == (5, 16, 16, 3)
    assert cache.corrupt_count(source, str(tmp_path / "cache")) == 1
    assert "002.png" in caplog.text
    expected = sources.center_crop_resize(Image.fromarray(originals[3]), 16)
    np.testing.assert_array_equal(images[2], expected)  # Index 2 is file 003 after the skip.

    calls = []
    original_load = source.load
    source.load = lambda i: calls.append(i) or original_load(i)
    again = cache.cached_images(source, str(tmp_path / "cache"))
    assert calls == [] and np.array_equal(np.asarray(again), np.asarray(images))


def test_a_killed_cache_build_leaves_no_temporary_behind(tmp_path, caplog):
    """A build killed midway (here: its SIGKILLed process) leaves a partial file; the next build removes it and
    keeps a live process's partial file and every finished cache."""
    import subprocess
    import sys

    _write_images(tmp_path / "img", 3)
    source = sources.ImageFolder(str(tmp_path / "img"), 16)
    cache_dir = tmp_path / "cache"
    data_path = os.path.join(cache_dir, cache.cache_key(source) + ".u8")
    os.makedirs(cache_dir)
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead.kill()
    dead.wait()
    stale, live = cache._temporary_path(data_path, dead.pid), cache._temporary_path(data_path, os.getppid())
    finished = cache_dir / "other-finished.u8"
    for path in (stale, live, finished):
        open(path, "wb").write(b"\0" * 1024)
    with caplog.at_level(logging.WARNING):
        images = cache.cached_images(source, str(cache_dir))
    assert images.shape == (3, 16, 16, 3)
    assert not os.path.exists(stale) and "partial decode cache of a build that did not finish" in caplog.text
    assert os.path.exists(live) and finished.exists()


def test_missing_and_empty_folders_name_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(sources.DataError, match="nowhere.*does not exist"):
        pipeline.load_images(_folder_config(missing, tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(sources.DataError, match="empty.*holds no images"):
        pipeline.load_images(_folder_config(tmp_path / "empty", tmp_path / "cache"))


def test_all_corrupt_folder_is_an_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(sources.DataError, match="could be decoded"):
        pipeline.load_images(_folder_config(tmp_path / "bad", tmp_path / "cache"))


def test_fewer_images_than_a_batch_is_an_error(tmp_path):
    _write_images(tmp_path / "few", 3)
    images, _ = pipeline.load_images(_folder_config(tmp_path / "few", tmp_path / "cache"))
    with pytest.raises(sources.DataError, match="few.*3 usable images.*fewer than one batch"):
        pipeline.check_enough_images(images, 4, f"data.path {str(tmp_path / 'few')!r}")


def test_batches_are_a_function_of_seed_and_index():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(3, axis=-1).repeat(2, axis=2)
    dataset = pipeline.batch_dataset(images, 4, seed=3, random_flip=False)
    from_start = pipeline.iterate_batches(dataset, 0)
    first_six = [next(from_start) for _ in range(6)]
    resumed = pipeline.iterate_batches(dataset, 4)
    np.testing.assert_array_equal(next(resumed), first_six[4])
    np.testing.assert_array_equal(next(resumed), first_six[5])
    # The first 2.5 batches are one epoch: every image exactly once in the first 10 entries.
    seen = np.concatenate([b[:, 0, 0, 0] for b in first_six])[:10]
    assert sorted(seen) == list(range(10))
    # Epochs are shuffled differently.
    second_epoch = np.concatenate([b[:, 0, 0, 0] for b in first_six])[10:20]
    assert sorted(second_epoch) == list(range(10)) and not np.array_equal(seen, second_epoch)
    other_seed = pipeline.iterate_batches(pipeline.batch_dataset(images, 4, seed=4, random_flip=False), 0)
    assert not all(np.array_equal(next(other_seed), b) for b in first_six[:3])


def test_random_flip_mirrors_about_half_the_images():
    images = np.zeros((64, 2, 2, 3), np.uint8)
    images[:, :, 0] = 255  # Left column white.
    dataset = pipeline.batch_dataset(images, 64, seed=0, random_flip=True)
    batch = dataset[0]
    flipped = batch[:, 0, 1, 0] == 255
    assert 16 < flipped.sum() < 48
    np.testing.assert_array_equal(batch[flipped][:, :, ::-1], images[: flipped.sum()])


def test_process_shards_partition_the_folder(tmp_path):
    _write_images(tmp_path / "img", 7)
    folder = sources.ImageFolder(str(tmp_path / "img"), 8)
    shards = [folder.shard(i, 3) for i in range(3)]
    assert sorted(p for s in shards for p in s.paths) == folder.paths
    np.testing.assert_array_equal(shards[1].load(1), folder.load(4))
