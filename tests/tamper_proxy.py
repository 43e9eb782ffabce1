"""A small misbehaving provider for tests: a stdlib HTTP proxy in front of `sandbox serve`.

Every request is forwarded to the real sandbox server; a test gives a `tamper` function
that may rewrite the JSON the client gets back, or change the database behind the
server's back, to play a provider that lists a number twice, answers for another
account, or does more than it was asked.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


class Refuse(Exception):
    """Raised by a tamper function: answer with this status and reason instead."""

    def __init__(self, status: int, reason: str, body: dict | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason
        self.body = body if body is not None else {"status": "error", "reason": reason}


# (method, path without query, parsed JSON response) -> JSON to send instead (or Refuse).
# A `before(method, path)` attribute on it, if any, is asked first and may Refuse the
# request before it reaches the server.
Tamper = Callable[[str, str, Any], Any]


def _handler(upstream: str, tamper: Tamper) -> type[BaseHTTPRequestHandler]:
    refuse_first = getattr(tamper, "before", None)  # (method, path) -> None; may Refuse
    base = upstream.split("/api/v1")[0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _forward(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if refuse_first is not None:
                try:
                    refuse_first(method, self.path.split("?")[0])
                except Refuse as refused:
                    self._send(refused.status, refused.body)
                    return
            resp = requests.request(
                method,
                base + self.path,
                data=body,
                headers={
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("authorization", "content-type", "accept")
                },
                timeout=30,
            )
            data = resp.json() if resp.content else None
            status = resp.status_code
            if resp.ok:
                try:
                    data = tamper(method, self.path.split("?")[0], data)
                except Refuse as refused:
                    status, data = refused.status, refused.body
            self._send(status, data, resp.headers.get("Retry-After"))

        def _send(self, status: int, data: Any, retry_after: str | None = None) -> None:
            out = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            if retry_after:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(out)

        def do_GET(self) -> None:
            self._forward("GET")

        def do_POST(self) -> None:
            self._forward("POST")

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (the reconciler cuts reads nobody waits for) is no error."""
        import sys

        if not isinstance(sys.exc_info()[1], (OSError, requests.ConnectionError)):
            super().handle_error(request, client_address)


@contextmanager
def tamper_proxy(upstream: str, tamper: Tamper) -> Iterator[str]:
    """Serve on 127.0.0.1 (ephemeral port); yields the proxy's base URL (…/api/v1)."""
    with serving(_Server(("127.0.0.1", 0), _handler(upstream, tamper))) as url:
        yield url


@contextmanager
def serving(httpd: ThreadingHTTPServer) -> Iterator[str]:
    """Run `httpd` (bound to 127.0.0.1) in a thread; yields its base URL (…/api/v1)."""
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/api/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
