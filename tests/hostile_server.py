"""A provider that misbehaves at the byte level, for tests: stdlib sockets in front of the
real `sandbox serve`.

Every request is forwarded to the sandbox server (so writes land in its database, as they
would at a real provider); a scenario switch then decides what the client gets back, byte
by byte: the answer as it is, trickled, endless, compressed, swapped for hostile JSON, or
nothing at all. `HostileServer.rules` maps a request to a scenario:

    with hostile(upstream_url) as server:
        server.rules = [("GET", "/numbers", trickle())]

A rule is (method, substring of the path, scenario); the first match wins, requests that
match none are answered faithfully. `server.seen` lists (method, path) in arrival order.
"""

from __future__ import annotations

import gzip
import json
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests

# (socket file to write to, upstream status, upstream body, server stopping) -> None
Scenario = Callable[[Any, int, bytes, threading.Event], None]


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _send(out: Any, data: bytes) -> None:
    out.write(data)
    out.flush()


def faithful() -> Scenario:
    def run(out: Any, status: int, body: bytes, stop: threading.Event) -> None:
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        _send(out, _head(status, headers) + body)

    return run


def trickle(every: float = 0.5, headers_too: bool = False) -> Scenario:
    """The real answer, one byte every `every` seconds (the headers too, if asked)."""

    def run(out: Any, status: int, body: bytes, stop: threading.Event) -> None:
        head = _head(status, {"Content-Type": "application/json", "Content-Length": str(len(body))})
        if not headers_too:
            _send(out, head)
            head = b""
        for i in range(len(head + body)):
            _send(out, (head + body)[i : i + 1])
            if stop.wait(every):
                return

    return run


def endless() -> Scenario:
    """A chunked body that never ends (a chunk of spaces every few milliseconds)."""

    def run(out: Any, status: int, body: bytes, stop: threading.Event) -> None:
        _send(out, _head(200, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}))
        chunk = b" " * 4096
        while not stop.wait(0.002):
            _send(out, b"%x\r\n%s\r\n" % (len(chunk), chunk))

    return run


def oversized(size: int) -> Scenario:
    """A body of `size` bytes of JSON whitespace and the real answer, with no length given
    (the connection closes at its end)."""

    def run(out: Any, status: int, body: bytes, stop: threading.Event) -> None:
        _send(out, _head(200, {"Content-Type": "application/json", "Connection": "close"}))
        block = b" " * 65536
        for _ in range(size // len(block)):
            _send(out, block)
        _send(out, body)

    return run


def gzipped(inflated: int) -> Scenario:
    """An unrequested gzip body that inflates to `inflated` bytes."""
    packed = gzip.compress(b" " * inflated, compresslevel=9)

    def run(out: Any, status: int, body: bytes, stop: threading.Event) -> None:
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Content-Length": str(len(packed)),
        }
        _send(out, _head(200, headers) + packed)

    return run


def replaced(body: bytes | Callable[[Any], Any], status: int = 200) -> Scenario:
    """Another body: these bytes, or a function of the real answer's JSON (its result is
    sent as JSON)."""

    def run(out: Any, upstream_status: int, upstream: bytes, stop: threading.Event) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body(json.loads(upstream))).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
        _send(out, _head(status, headers) + data)

    return run


def rewritten(fn: Callable[[bytes], bytes]) -> Scenario:
    """The real answer's bytes, passed through `fn` (to write JSON no encoder would)."""

    def run(out: Any, status: int, body: bytes, stop: threading.Event) -> None:
        data = fn(body)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data))}
        _send(out, _head(status, headers) + data)

    return run


def silent() -> Scenario:
    """The request is carried out upstream, then no answer at all, ever."""

    def run(out: Any, status: int, body: bytes, stop: threading.Event) -> None:
        stop.wait()

    return run


class HostileServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream.split("/api/v1")[0]
        self.rules: list[tuple[str, str, Scenario]] = []
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/v1"

    def scenario(self, method: str, path: str) -> Scenario:
        for want, part, run in self.rules:
            if want == method and part in path:
                return run
        return faithful()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client hanging up on a hostile answer is the point


class _Handler(socketserver.StreamRequestHandler):
    server: HostileServer

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(65537)
            if not line.strip():
                return
            method, target, _ = line.decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while (h := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                name, _, value = h.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = self.rfile.read(int(headers.get("content-length") or 0))
            path = target.split("?")[0]
            with self.server.lock:
                self.server.seen.append((method, path))
            resp = requests.request(
                method,
                self.server.upstream + target,
                data=body or None,
                headers={
                    k: v
                    for k, v in headers.items()
                    if k in ("authorization", "content-type", "accept")
                },
                timeout=30,
            )
            self.server.scenario(method, path)(
                self.wfile, resp.status_code, resp.content, self.server.stopping
            )


@contextmanager
def hostile(upstream: str) -> Iterator[HostileServer]:
    """Serve on 127.0.0.1 (ephemeral port) in front of `upstream` (a sandbox server URL)."""
    server = HostileServer(upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()  # handlers still trickling or silent end now
        server.shutdown()
        server.server_close()
