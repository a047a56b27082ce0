"""Tests for the built-in procedurally drawn face dataset."""

import numpy as np
import pytest
from PIL import Image

from animejax.data.sources import DataError
from animejax.data.synthetic import RENDERER_VERSION, SyntheticFaces, render_face


@pytest.mark.parametrize("size", [32, 64, 96])
def test_shape_and_dtype(size):
    image = render_face(0, 0, size)
    assert image.shape == (size, size, 3)
    assert image.dtype == np.uint8


def test_deterministic():
    np.testing.assert_array_equal(render_face(3, 7, 48), render_face(3, 7, 48))


def test_independent_of_call_order():
    first = render_face(1, 5, 32)
    for index in range(3):
        render_face(2, index, 40)
    np.testing.assert_array_equal(render_face(1, 5, 32), first)


def test_different_indices_and_seeds_differ():
    base = render_face(0, 0, 32).astype(np.int16)
    assert np.abs(base - render_face(0, 1, 32)).mean() > 10
    assert np.abs(base - render_face(1, 0, 32)).mean() > 10


def test_same_face_at_every_size():
    for index in range(3):
        big = Image.fromarray(render_face(4, index, 128)).resize((32, 32), Image.Resampling.BOX)
        small = render_face(4, index, 32)
        difference = np.abs(np.asarray(big, np.float32) - small.astype(np.float32)).mean()
        assert difference < 4.0, (index, difference)


def test_not_blank():
    for index in range(8):
        assert render_face(0, index, 32).std() > 20


def test_variety():
    images = np.stack([render_face(0, index, 32) for index in range(64)]).astype(np.float32)
    mean_colours = images.mean(axis=(1, 2))
    assert mean_colours.std(axis=0).min() > 10
    # The top centre of the image is hair in almost every face.
    hair = images[:, 5, 16] // 32
    assert len({tuple(colour) for colour in hair.astype(int)}) >= 10


def test_source_protocol():
    source = SyntheticFaces(10, 24, seed=2)
    assert len(source) == 10
    assert source.image_size == 24
    assert source.name == f"synthetic:seed=2:v{RENDERER_VERSION}"
    np.testing.assert_array_equal(source.load(3), render_face(2, 3, 24))
    with pytest.raises(IndexError):
        source.load(10)


def test_shard_consistency():
    source = SyntheticFaces(10, 16, seed=1)
    seen = []
    for index in range(3):
        shard = source.shard(index, 3)
        assert len(shard) == len(range(index, 10, 3))
        for i in range(len(shard)):
            np.testing.assert_array_equal(shard.load(i), source.load(index + i * 3))
        seen += list(shard.indices)
        assert shard.fingerprint() != source.fingerprint()
    assert sorted(seen) == list(range(10))


def test_fingerprint():
    base = SyntheticFaces(100, 64, seed=0).fingerprint()
    assert base == SyntheticFaces(100, 64, seed=0).fingerprint()
    assert isinstance(base, str) and len(base) <= 32
    others = {
        SyntheticFaces(100, 64, seed=1).fingerprint(),
        SyntheticFaces(101, 64, seed=0).fingerprint(),
        SyntheticFaces(100, 32, seed=0).fingerprint(),
    }
    assert base not in others and len(others) == 3


def test_rejects_empty():
    with pytest.raises(DataError):
        SyntheticFaces(0, 64)


def test_rejects_negative_seed_and_index():
    with pytest.raises(ValueError):
        render_face(-1, 0, 16)
    with pytest.raises(ValueError):
        render_face(0, -1, 16)
