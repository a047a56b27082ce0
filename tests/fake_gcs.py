"""A local stand-in for a Google Cloud Storage bucket, reached through real `gs://` URLs.

Nothing special-cases local paths: `gs://BUCKET/...` goes through the same code as on a cluster, with only the
two transports swapped for local ones that share one folder (`root/BUCKET/OBJECT_NAME`):

- etils.epath (without TensorFlow) opens `gs://` through fsspec's "gcs" protocol, i.e. gcsfs. `FakeGcsFileSystem`
  is registered under that protocol in gcsfs's place: an fsspec DirFileSystem over `root`.
- Orbax asks google-cloud-storage whether the bucket has a hierarchical namespace (to list and delete steps);
  `STORAGE_EMULATOR_HOST` points that client at `FakeGcsServer` too.
- Orbax writes array data with TensorStore's `gcs` kvstore driver (C++, HTTP). `FakeGcsServer` answers the
  subset of the GCS JSON API that driver uses (object get/metadata, media upload, delete, list; generation
  preconditions), and `TENSORSTORE_GCS_HTTP_URL` points the driver at it.
- ArrayRecord (TFDS's record files) reads gs:// with google-cloud-cpp: `CLOUD_STORAGE_EMULATOR_ENDPOINT` points
  it at the same server.
"""

from __future__ import annotations

import http.server
import itertools
import json
import os
import threading
import urllib.parse

import fsspec
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem


class FakeGcsFileSystem(DirFileSystem):
    """fsspec's "gs"/"gcs" protocol served from the local folder `FakeGcsFileSystem.root` (set before use)."""

    protocol = ("gs", "gcs")
    root: str | None = None

    def __init__(self, *args, **storage_options):
        del args, storage_options  # gcsfs options such as finalize_on_close mean nothing here.
        if self.root is None:
            raise RuntimeError("FakeGcsFileSystem.root is not set")
        super().__init__(path=self.root, fs=LocalFileSystem(auto_mkdir=True))

    def open(self, path, mode="rb", *args, **kwargs):
        if "a" in mode or "+" in mode:  # gcsfs turns "ab" into "wb" (with a warning), losing what was there.
            raise NotImplementedError(f"GCS objects cannot be appended to or updated in place (mode {mode!r})")
        return super().open(path, mode, *args, **kwargs)


class FakeGcsServer:
    """The GCS JSON API calls of TensorStore's gcs driver, on 127.0.0.1, storing objects as files under `root`.

    An object's generation changes whenever its file changes, whoever wrote it (this server or the fsspec side).
    """

    def __init__(self, root: str):
        self.root = root
        self._lock = threading.Lock()
        self._generations: dict[str, tuple[tuple, int]] = {}  # path -> (stat signature, generation)
        self._counter = itertools.count(1)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # Keep-alive and "Expect: 100-continue", as curl expects.

            def do_GET(self):  # noqa: N802 (http.server's naming)
                server._dispatch(self, "GET")

            def do_POST(self):  # noqa: N802
                server._dispatch(self, "POST")

            def do_DELETE(self):  # noqa: N802
                server._dispatch(self, "DELETE")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # Storage.

    def _path(self, bucket: str, name: str) -> str:
        return os.path.join(self.root, bucket, *name.split("/"))

    def _generation(self, path: str) -> int | None:
        """The object's generation (None when absent); caller holds the lock."""
        try:
            info = os.stat(path)
        except FileNotFoundError:
            self._generations.pop(path, None)
            return None
        if not os.path.isfile(path):
            return None
        signature = (info.st_ino, info.st_mtime_ns, info.st_size, info.st_ctime_ns)
        known = self._generations.get(path)
        if known is None or known[0] != signature:
            known = (signature, next(self._counter))
            self._generations[path] = known
        return known[1]

    def _metadata(self, bucket: str, name: str, path: str, generation: int) -> dict:
        return {
            "kind": "storage#object",
            "name": name,
            "bucket": bucket,
            "generation": str(generation),
            "metageneration": "1",
            "size": str(os.path.getsize(path)),
        }

    # HTTP.

    @staticmethod
    def _reply(handler, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if body and handler.command != "HEAD":
            handler.wfile.write(body)

    def _dispatch(self, handler, method: str) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        params = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0)) if method == "POST" else b""
        parts = parsed.path.split("/")
        # /storage/v1/b/BUCKET/o[/NAME] and /upload/storage/v1/b/BUCKET/o
        upload = parts[1] == "upload"
        parts = parts[2:] if upload else parts[1:]
        if len(parts) < 4 or parts[:3] != ["storage", "v1", "b"]:
            return self._reply(handler, 404)
        bucket = parts[3]
        if len(parts) == 4 and method == "GET":  # Bucket metadata (Orbax asks for the hierarchical namespace).
            return self._reply(handler, 200, json.dumps(_bucket_metadata(bucket)).encode(), _JSON)
        if len(parts) < 5 or parts[4] != "o":
            return self._reply(handler, 404)
        name = urllib.parse.unquote("/".join(parts[5:])) if len(parts) > 5 else None
        with self._lock:
            if method == "POST" and upload and name is None:
                return self._insert(handler, bucket, params, body)
            if method == "GET" and name is None:
                return self._list(handler, bucket, params)
            if method == "GET":
                return self._get(handler, bucket, name, params)
            if method == "DELETE" and name is not None:
                return self._delete(handler, bucket, name, params)
        return self._reply(handler, 404)

    @staticmethod
    def _precondition_fails(params: dict, generation: int | None) -> bool:
        if "ifGenerationMatch" in params and int(params["ifGenerationMatch"]) != (generation or 0):
            return True
        return (
            "ifGenerationNotMatch" in params
            and generation is not None
            and (int(params["ifGenerationNotMatch"]) == generation)
        )

    def _insert(self, handler, bucket: str, params: dict, body: bytes) -> None:
        name = params.get("name")
        if params.get("uploadType") != "media" or not name:
            return self._reply(handler, 400)
        path = self._path(bucket, name)
        if self._precondition_fails(params, self._generation(path)):
            return self._reply(handler, 412)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.upload-{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, path)
        generation = self._generation(path)
        self._reply(handler, 200, json.dumps(self._metadata(bucket, name, path, generation)).encode(), _JSON)

    def _get(self, handler, bucket: str, name: str, params: dict) -> None:
        path = self._path(bucket, name)
        generation = self._generation(path)
        if "ifGenerationMatch" in params and int(params["ifGenerationMatch"]) != (generation or 0):
            return self._reply(handler, 412)
        if generation is None:
            return self._reply(handler, 404)
        if "ifGenerationNotMatch" in params and int(params["ifGenerationNotMatch"]) == generation:
            return self._reply(handler, 304)
        if params.get("alt") != "media":
            return self._reply(handler, 200, json.dumps(self._metadata(bucket, name, path, generation)).encode(), _JSON)
        with open(path, "rb") as f:
            data = f.read()
        headers = {"Content-Type": "application/octet-stream", "x-goog-generation": str(generation)}
        byte_range = handler.headers.get("Range")
        if byte_range and byte_range.startswith("bytes="):
            first, _, last = byte_range[len("bytes=") :].partition("-")
            if first == "":  # The last N bytes.
                start, stop = max(0, len(data) - int(last)), len(data)
            else:
                start, stop = int(first), (int(last) + 1 if last else len(data))
            stop = min(stop, len(data))
            if start >= len(data) and len(data) > 0:
                return self._reply(handler, 416)
            headers["Content-Range"] = f"bytes {start}-{max(start, stop - 1)}/{len(data)}"
            return self._reply(handler, 206, data[start:stop], headers)
        self._reply(handler, 200, data, headers)

    def _delete(self, handler, bucket: str, name: str, params: dict) -> None:
        path = self._path(bucket, name)
        generation = self._generation(path)
        if generation is None:
            return self._reply(handler, 404)
        if "ifGenerationMatch" in params and int(params["ifGenerationMatch"]) != generation:
            return self._reply(handler, 412)
        os.remove(path)
        self._generations.pop(path, None)
        self._reply(handler, 204)

    def _list(self, handler, bucket: str, params: dict) -> None:
        top = os.path.join(self.root, bucket)
        names = []
        for folder, _, files in os.walk(top):
            for file_name in files:
                names.append(os.path.relpath(os.path.join(folder, file_name), top).replace(os.sep, "/"))
        names.sort()
        prefix = params.get("prefix", "")
        start, end = params.get("startOffset", ""), params.get("endOffset")
        after = params.get("pageToken")
        items = []
        for name in names:
            if not name.startswith(prefix) or name < start or (end and name >= end) or (after and name <= after):
                continue
            path = self._path(bucket, name)
            generation = self._generation(path)
            if generation is not None:
                items.append(self._metadata(bucket, name, path, generation))
        self._reply(handler, 200, json.dumps({"kind": "storage#objects", "items": items}).encode(), _JSON)


_JSON = {"Content-Type": "application/json"}


def _bucket_metadata(bucket: str) -> dict:
    return {"kind": "storage#bucket", "id": bucket, "name": bucket, "hierarchicalNamespace": {"enabled": False}}


class FakeGcs:
    """Both transports over one folder; `install()` makes `gs://` URLs of this process use them."""

    def __init__(self, root: str):
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.server = FakeGcsServer(root)

    def install(self, environ: dict) -> None:
        """Registers the fsspec side and sets the variables TensorStore reads (in `environ`, e.g. os.environ)."""
        FakeGcsFileSystem.root = self.root
        FakeGcsFileSystem.clear_instance_cache()
        for protocol in FakeGcsFileSystem.protocol:
            fsspec.register_implementation(protocol, FakeGcsFileSystem, clobber=True)
        environ["TENSORSTORE_GCS_HTTP_URL"] = self.server.url
        environ["GOOGLE_AUTH_TOKEN_FOR_TESTING"] = "fake-token"  # No credential lookup or metadata server probe.
        environ["STORAGE_EMULATOR_HOST"] = self.server.url  # google-cloud-storage, which Orbax asks about buckets.
        environ["CLOUD_STORAGE_EMULATOR_ENDPOINT"] = self.server.url  # google-cloud-cpp: ArrayRecord's gs:// reader.

    def local_path(self, url: str) -> str:
        """Where the object or prefix `gs://bucket/name` is stored locally (to inspect or damage it in tests)."""
        bucket, _, name = url.removeprefix("gs://").partition("/")
        return os.path.join(self.root, bucket, *[p for p in name.split("/") if p])

    def close(self) -> None:
        self.server.close()
