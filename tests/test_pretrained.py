"""animejax.pretrained: the torch-free PyTorch checkpoint reader and the weights download cache.

The reader is checked against files written by torch (a test-only dependency; those tests skip without it).
The cache is tested against a local HTTP server on 127.0.0.1, with the FID Inception weights' `WeightsFile`
as the example (its messages name the released URL and the config flag); nothing is downloaded from the
internet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import socket

import numpy as np
import pytest

from animejax.errors import UserError
from animejax.pretrained import download, torch_pickle
from animejax.pretrained import inception as pretrained_inception
from animejax.pretrained.download import MissingWeightsError, WeightsChecksumError
from animejax.pretrained.torch_pickle import CheckpointFormatError
from tests.local_server import CountingServer

FID_WEIGHTS = pretrained_inception.FID_WEIGHTS


def _torch():
    return pytest.importorskip("torch", reason="torch is a test-only dependency (reads back what torch wrote)")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Requests to the local server must not go through a proxy set in the environment."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


# --- torch_pickle.load_torch_state_dict ------------------------------------------------------------------------------


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_loader_reads_both_formats_with_strides_and_offsets(tmp_path, zip_format):
    torch = _torch()
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "plain": torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(0)),
        "transposed": base.t(),  # Shares `base`'s storage, non-contiguous.
        "offset": base[1:, 2:],  # Same storage, nonzero offset.
        "scalar": torch.tensor(7, dtype=torch.int64),
        "half": torch.linspace(-1, 1, 5).half(),
        "flags": torch.tensor([True, False]),
        "parameter": torch.nn.Parameter(torch.ones(2, 2)),
    }
    path = str(tmp_path / "state.pth")
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    loaded = torch_pickle.load_torch_state_dict(path)
    assert set(loaded) == set(state)
    for name, tensor in state.items():
        expected = tensor.detach().numpy()
        assert loaded[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(loaded[name], expected, err_msg=name)


def test_loader_refuses_arbitrary_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned > " + str(tmp_path / "owned"),))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointFormatError):
        torch_pickle.load_torch_state_dict(str(path))
    assert not (tmp_path / "owned").exists()
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointFormatError):
        torch_pickle.load_torch_state_dict(str(path))


# --- download.resolve: local file, cache, download (the FID Inception weights as the example) ----------------------


@pytest.fixture
def served_file():
    payload = np.random.default_rng(0).bytes(3 << 20)
    server = CountingServer(payload, FID_WEIGHTS.file_name)
    yield server, payload
    server.close()


def test_missing_local_file_says_how_to_get_it(tmp_path):
    with pytest.raises(MissingWeightsError) as error:
        download.resolve(FID_WEIGHTS, local_path=str(tmp_path / "nope.pth"), cache_dir=str(tmp_path / "cache"))
    message = str(error.value)
    assert "does not exist" in message and pretrained_inception.FID_WEIGHTS_URL in message
    assert "--config.eval.inception_path" in message and str(tmp_path / "cache") in message
    assert isinstance(error.value, UserError)


def test_wrong_hash_download_leaves_nothing_in_the_cache(tmp_path, served_file):
    server, _ = served_file
    cache = tmp_path / "cache"
    with pytest.raises(WeightsChecksumError, match="expected 6726825d"):
        download.resolve(FID_WEIGHTS, cache_dir=str(cache), url=server.url)
    assert server.requests == 1
    assert list(cache.iterdir()) == []


def test_download_verifies_caches_and_is_not_repeated(tmp_path, served_file):
    server, payload = served_file
    weights = dataclasses.replace(FID_WEIGHTS, sha256=hashlib.sha256(payload).hexdigest())
    cache = tmp_path / "cache"
    path = download.resolve(weights, cache_dir=str(cache), url=server.url)
    assert path == str(cache / pretrained_inception.FID_WEIGHTS_FILENAME)
    assert open(path, "rb").read() == payload and server.requests == 1
    assert download.resolve(weights, cache_dir=str(cache), url=server.url) == path
    assert server.requests == 1  # Served from the cache.
    assert os.listdir(cache) == [pretrained_inception.FID_WEIGHTS_FILENAME]  # No temp files left.


def test_interrupted_download_leaves_nothing_in_the_cache(tmp_path):
    server = CountingServer(b"x" * 1000, FID_WEIGHTS.file_name, declared_length=5000)  # The connection ends early.
    try:
        with pytest.raises(MissingWeightsError, match="download") as error:
            download.resolve(FID_WEIGHTS, cache_dir=str(tmp_path), url=server.url)
    finally:
        server.close()
    assert isinstance(error.value, download.DownloadError)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_cached_file_is_reported(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / pretrained_inception.FID_WEIGHTS_FILENAME).write_bytes(b"truncated")
    with pytest.raises(WeightsChecksumError, match="Delete the file") as error:
        download.resolve(FID_WEIGHTS, cache_dir=str(cache))
    assert isinstance(error.value, download.CorruptCacheError)


def test_unreachable_url_says_how_to_get_the_file(tmp_path):
    with socket.socket() as sock:  # A port that nothing listens on.
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cache = tmp_path / "cache"
    with pytest.raises(MissingWeightsError, match="Could not download") as error:
        download.resolve(FID_WEIGHTS, cache_dir=str(cache), url=f"http://127.0.0.1:{port}/weights.pth")
    assert pretrained_inception.FID_WEIGHTS_URL in str(error.value)
    assert isinstance(error.value, download.DownloadError)
    assert list(cache.iterdir()) == []


def _payload_weights(payload: bytes, **changes) -> download.WeightsFile:
    return dataclasses.replace(FID_WEIGHTS, sha256=hashlib.sha256(payload).hexdigest(), **changes)


def test_default_cache_honours_xdg_cache_home(tmp_path, served_file, monkeypatch):
    server, payload = served_file
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected_dir = tmp_path / "xdg" / "animejax" / "weights"
    assert download.default_cache_dir() == str(expected_dir)
    path = download.resolve(_payload_weights(payload), url=server.url)
    assert path == str(expected_dir / FID_WEIGHTS.file_name) and open(path, "rb").read() == payload
    # Unset or empty: ~/.cache, as the XDG base directory spec says.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert download.default_cache_dir() == str(tmp_path / "home" / ".cache" / "animejax" / "weights")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert download.default_cache_dir() == str(tmp_path / "home" / ".cache" / "animejax" / "weights")


def test_corrupt_cache_is_fetched_again_when_the_file_says_so(tmp_path, served_file):
    server, payload = served_file
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / FID_WEIGHTS.file_name).write_bytes(b"truncated")
    path = download.resolve(_payload_weights(payload, refetch_corrupt_cache=True), cache_dir=str(cache), url=server.url)
    assert open(path, "rb").read() == payload and server.requests == 1
    assert os.listdir(cache) == [FID_WEIGHTS.file_name]


def test_local_file_with_another_checksum_warns_or_fails(tmp_path, caplog):
    local = tmp_path / "resaved.pth"
    local.write_bytes(b"re-saved weights")
    with caplog.at_level("WARNING", logger=download.__name__):
        assert download.resolve(FID_WEIGHTS, local_path=str(local)) == str(local)
    assert "not the released file's" in caplog.text
    with pytest.raises(WeightsChecksumError, match="expected 6726825d") as error:
        download.resolve(dataclasses.replace(FID_WEIGHTS, strict_local=True), local_path=str(local))
    assert "--config.eval.inception_path" in str(error.value)
