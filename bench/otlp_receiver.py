"""A tiny OTLP/HTTP receiver: accepts POSTs to /v1/traces and /v1/metrics and counts them.

    python bench/otlp_receiver.py [--port 0]     # prints its URL, then counts until ^C/SIGTERM

On ^C or SIGTERM it prints the POST counts per path as one JSON line and exits.

The benchmark starts it in a thread (``start()``) and reads ``counts``.
"""

from __future__ import annotations

import argparse
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.counts[path] += 1
            self.server.bytes[path] += len(body)
        status = 200 if path in ("/v1/traces", "/v1/metrics", "/v1/logs") else 404
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class OtlpReceiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.bytes.clear()


def start(port: int = 0) -> OtlpReceiver:
    server = OtlpReceiver(port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    import json
    import signal

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    srv = OtlpReceiver(ap.parse_args().port)
    signal.signal(signal.SIGTERM, _interrupt)
    print(srv.url, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        print(json.dumps({"posts": dict(srv.counts), "bytes": dict(srv.bytes)}), flush=True)
