"""A one-file HTTP server on 127.0.0.1 for download tests (nothing is fetched from the internet)."""

from __future__ import annotations

import http.server
import threading


class CountingServer:
    """Serves `payload` at `url` (any path answers) and counts the GET requests.

    Args:
      payload: the file's bytes.
      file_name: the last part of `url`.
      declared_length: a Content-Length to announce instead of the payload's (a transfer that ends early).
    """

    def __init__(self, payload: bytes, file_name: str, declared_length: int | None = None):
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(declared_length or len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/{file_name}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
