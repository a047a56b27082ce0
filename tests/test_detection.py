"""Tests of the anime-face detection rate and of fetching the detector file."""

import functools
import hashlib
import http.server
import os
import socket
import threading

import numpy as np
import pytest

from animejax.metrics import detection

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")  # <repo>/../shared/data
CASCADE = os.path.join(SHARED_DATA, "lbpcascade_animeface.xml")
FACES = os.path.join(SHARED_DATA, "anime_faces_96")


@pytest.fixture(scope="module")
def cascade():
    if not os.path.isfile(CASCADE):
        pytest.skip(f"shared detector not found at {CASCADE} (only present on the project's machines)")
    return CASCADE


def _load_faces(count, size):
    from PIL import Image

    if not os.path.isdir(FACES):
        pytest.skip(f"real-face data not found at {FACES} (only present on the project's machines)")
    images = []
    for i in range(count):
        with Image.open(os.path.join(FACES, f"{i}.jpg")) as image:
            images.append(np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR)))
    return np.stack(images)


def test_real_faces_are_detected(cascade):
    path = detection.detector_path(local_path=cascade)
    result = detection.detection_rate(_load_faces(300, 64), path)
    assert result["rate"] >= 0.9, result
    assert result["num_images"] == 300 and result["image_size"] == 64
    assert (result["scale_factor"], result["min_neighbors"], result["min_size"]) == (1.1, 3, 24)


def test_noise_is_not_detected(cascade):
    noise = np.random.default_rng(0).integers(0, 256, size=(100, 64, 64, 3), dtype=np.uint8)
    result = detection.detection_rate(noise, cascade)
    assert result["rate"] == 0.0 and result["num_detected"] == 0


def test_rejects_float_images(cascade):
    with pytest.raises(ValueError, match="uint8"):
        detection.detection_rate(np.zeros((2, 64, 64, 3), np.float32), cascade)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving `tmp_path/www`; yields (base URL, list of requested paths)."""
    root = tmp_path / "www"
    root.mkdir()
    requests = []

    class Handler(_Handler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Requests to the local server must not go through a proxy set in the environment."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def test_download_is_checked_and_cached(server, tmp_path):
    url, root, requests = server
    content = b"<opencv_storage>a small stand-in cascade</opencv_storage>\n"
    (root / "cascade.xml").write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    cache = tmp_path / "cache"

    path = detection.detector_path(cache_dir=str(cache), url=f"{url}/cascade.xml", sha256=digest)
    assert path == str(cache / detection.FILE_NAME)
    assert open(path, "rb").read() == content
    assert requests == ["/cascade.xml"]

    again = detection.detector_path(cache_dir=str(cache), url=f"{url}/cascade.xml", sha256=digest)
    assert again == path and len(requests) == 1  # served from the cache
    assert os.listdir(cache) == [detection.FILE_NAME]


def test_real_cascade_through_the_default_checksum(server, tmp_path, cascade):
    url, root, requests = server
    (root / detection.FILE_NAME).write_bytes(open(cascade, "rb").read())
    path = detection.detector_path(cache_dir=str(tmp_path / "cache"), url=f"{url}/{detection.FILE_NAME}")
    assert detection.detection_rate(np.zeros((1, 64, 64, 3), np.uint8), path)["num_images"] == 1


def test_wrong_bytes_are_rejected_and_not_cached(server, tmp_path):
    url, root, _ = server
    (root / "cascade.xml").write_bytes(b"tampered")
    cache = tmp_path / "cache"
    with pytest.raises(detection.DetectorError, match="sha256") as error:
        detection.detector_path(cache_dir=str(cache), url=f"{url}/cascade.xml")
    assert str(cache / detection.FILE_NAME) in str(error.value)  # says where to put the file by hand
    assert os.listdir(cache) == []


def test_offline_and_missing_files_give_clear_errors(server, tmp_path):
    url, _, _ = server
    cache = tmp_path / "cache"
    with pytest.raises(detection.DetectorError, match="cannot download") as error:
        detection.detector_path(cache_dir=str(cache), url=f"{url}/absent.xml")  # HTTP 404
    assert detection.RAW_URL in str(error.value) and str(cache) in str(error.value)
    assert os.listdir(cache) == []
    with socket.socket() as closed:  # a port nobody listens on: connection refused, as when offline
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(detection.DetectorError, match="cannot download"):
        detection.detector_path(cache_dir=str(cache), url=f"http://127.0.0.1:{port}/x.xml")
    assert os.listdir(cache) == []
    with pytest.raises(detection.DetectorError, match="not found"):
        detection.detector_path(local_path=str(tmp_path / "nowhere.xml"))
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"x")
    with pytest.raises(detection.DetectorError, match="expected"):
        detection.detector_path(local_path=str(bad))


@pytest.mark.parametrize("smallest,lowest,highest", [(64, 0.9, 1.0), (0, 0.3, 0.75)])
def test_small_images_are_enlarged_before_detection(cascade, smallest, lowest, highest):
    """At 32 px the cascade finds about half of the real faces; the detection metric enlarges them to
    eval.detector_min_image_size first (0 keeps them as they are)."""
    import types

    from animejax import config_defaults
    from animejax.metrics import registry

    config = config_defaults.eval_group()
    config.detector_min_image_size = smallest
    metric = registry.get("detection")(config, 200)
    metric.update(None, _load_faces(200, 32))
    references = types.SimpleNamespace(detector_path=lambda: cascade)
    rate = metric.results(references, "eval/")["eval/detection_rate200"]
    assert lowest <= rate <= highest
