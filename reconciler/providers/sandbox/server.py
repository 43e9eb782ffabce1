"""`sandbox serve`: the provider's wire API (SPEC §7) over a sandbox database, stdlib only.

- Base path /api/v1; every path also answers with a `.json` suffix.
- Lists are paginated with `page` (default 1) and `per_page` (default 100, at most 150;
  above that: 400 "per_page limit is 150"). Envelope as will_paginate writes it:
  `total_pages = ceil(total_entries / per_page)` (0 for an empty list), `next_page` null on
  the last page, `previous_page` null on the first.
- HTTP Basic auth against the keys the server was started with (constant-time compare).
- Errors are JSON `{"status": "error", "reason": ...}`; 429 and 503 carry Retry-After.
- HTTP/1.1 keep-alive, one thread per connection, a 10 s read timeout per socket so an idle
  client cannot hold anything, and 10 s for a whole request to arrive from its first byte so a
  client that trickles bytes (slow loris) cannot either; request bodies limited to 1 MiB.
- Fault injection for tests and benchmarks, in this order on every request: latency, rate
  limit (429), error rate (503, before auth or any database access), and for writes the
  drop rate (the write commits, then the connection closes without a response).
- A database replaced under the server (`sandbox init` renames a new file over the path)
  is reopened at the next request: one stat per request compares the path with the file
  the store opened; the old connections are closed and one line is logged. While nothing
  usable is at the path (deleted, or not a sandbox database) every request is 503 with
  Retry-After, until a database appears there again. A request that raced the rename is
  503 too: a write committed to the old file is lost, and the client's retry (writes are
  idempotent sets) lands in the new one.

`start_server(...)` runs it in a background thread and returns a `RunningServer`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import io
import json
import logging
import math
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reconciler.errors import ProviderNotFound
from reconciler.providers.sandbox.faults import Faults, ServerStats
from reconciler.providers.sandbox.fleet import ID_PATTERN
from reconciler.providers.sandbox.routes import (
    BASE_PATH,
    HttpError,
    envelope,
    envelope_json,
    page_args,
    resolve,
)
from reconciler.providers.sandbox.store import (
    BadValue,
    Conflict,
    DatabaseReplaced,
    SandboxDbError,
    SandboxStore,
)

MAX_BODY_BYTES = 1024 * 1024
SOCKET_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 10.0
# The client is not told the server's file paths; the server log names them.
UNAVAILABLE = "the sandbox database is being replaced or is not usable; retry shortly"

log = logging.getLogger("reconciler.sandbox.server")
access_log = logging.getLogger("reconciler.sandbox.access")


def _check_id(value: str, what: str) -> str:
    if not ID_PATTERN.match(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise HttpError(404, f"no {what} {shown!r}")
    return value


def _json_body(body: bytes, allowed: tuple[str, ...]) -> dict[str, Any]:
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError) as exc:
        raise HttpError(400, f"malformed JSON: {str(exc)[:80]}") from None
    if not isinstance(data, dict):
        raise HttpError(400, f"request body must be a JSON object with {' and/or '.join(allowed)}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise HttpError(400, f"unknown key {unknown[0][:40]!r} (allowed: {', '.join(allowed)})")
    return data


# --- the request handler ----------------------------------------------------------------


class _RequestReader(io.RawIOBase):
    """A connection's read side with two limits: no wait for data over `idle_s`, and a request
    (line, headers, body) must arrive within `deadline_s` of its first byte. A per-read
    timeout alone never fires for a client that sends one byte every few seconds."""

    def __init__(self, sock: socket.socket, idle_s: float, deadline_s: float) -> None:
        super().__init__()
        self._sock, self._idle_s, self._deadline_s = sock, idle_s, deadline_s
        self._deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        wait = self._idle_s
        if self._deadline is not None:
            wait = min(wait, self._deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError("request not complete within its deadline")
        self._sock.settimeout(wait)
        count = self._sock.recv_into(buffer)
        if count and self._deadline is None:
            self._deadline = time.monotonic() + self._deadline_s
        return count

    def request_read(self) -> None:
        """The request is in: the next one gets its own deadline; replies get the full timeout."""
        self._deadline = None
        self._sock.settimeout(self._idle_s)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse pooled connections
    server_version = "reconciler-sandbox"
    timeout = SOCKET_TIMEOUT_S  # an idle or slow client times out instead of lingering
    request_timeout = REQUEST_TIMEOUT_S  # ...and so does one that trickles its request
    disable_nagle_algorithm = True  # headers and body are separate writes
    server: SandboxHTTPServer
    _store: SandboxStore  # the server's store when this request started

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain socket reader knows no deadline: read through ours
        self._reader = _RequestReader(self.connection, self.timeout, self.request_timeout)
        self.rfile = io.BufferedReader(self._reader)

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET
    # Standard methods the API has no use for still reach routing: 405 with Allow, not 501.
    do_TRACE = do_CONNECT = do_QUERY = do_GET

    def _handle(self) -> None:
        started = time.monotonic()
        self._status = 0
        stats, faults = self.server.stats, self.server.faults
        stats.request(self.command)
        try:
            body = self._read_body()
            self._reader.request_read()
            if faults.latency_ms:
                stats.fault("latency")
                time.sleep(faults.latency_ms / 1000)
            self._inject_refusals()
            if not self._authorized():
                raise HttpError(
                    401,
                    "missing or wrong credentials (HTTP Basic: access key and secret key)",
                    {"WWW-Authenticate": 'Basic realm="reconciler-sandbox", charset="UTF-8"'},
                )
            name, ids = resolve(self.command, self.path)
            self._store = self.server.current_store()
            getattr(self, f"_{name}")(ids, body)
        except HttpError as exc:
            self._send(exc.status, {"status": "error", "reason": exc.reason}, exc.headers)
        except ProviderNotFound as exc:
            self._send(404, {"status": "error", "reason": str(exc)})
        except BadValue as exc:
            self._send(400, {"status": "error", "reason": str(exc)})
        except Conflict as exc:
            self._send(409, {"status": "error", "reason": str(exc)})
        except DatabaseReplaced:
            # Raced the rename: the next request reopens; a write here went to the old file.
            self._send(503, {"status": "error", "reason": UNAVAILABLE}, {"Retry-After": "1"})
        except SandboxDbError as exc:
            self.server.warn_once(f"sandbox database: {exc}")
            self._send(503, {"status": "error", "reason": UNAVAILABLE}, {"Retry-After": "1"})
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.exception("internal error: %s %s", self.command, _printable(self.path))
            self._send(500, {"status": "error", "reason": "internal error"})
        finally:
            if self.server.access_log:
                ms = (time.monotonic() - started) * 1000
                status = self._status or "dropped"
                access_log.info("%s %s %s %.1fms", self.command, _printable(self.path), status, ms)

    def _inject_refusals(self) -> None:
        """Rate limit (429) and error rate (503): before auth or any database access."""
        faults, stats = self.server.faults, self.server.stats
        if faults.bucket is not None:
            wait = faults.bucket.take()
            if wait:
                stats.fault("rate_limit")
                raise HttpError(
                    429, "rate limit exceeded", {"Retry-After": str(max(1, math.ceil(wait)))}
                )
        if faults.chance(faults.error_rate):
            stats.fault("error")
            raise HttpError(503, "service unavailable (injected)", {"Retry-After": "1"})

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise HttpError(411, "send a Content-Length; chunked bodies are not accepted")
        values = self.headers.get_all("Content-Length") or []
        if len(set(values)) > 1:  # which one counts is ambiguous: the way to smuggle requests
            self.close_connection = True
            raise HttpError(400, "conflicting Content-Length headers")
        raw = values[0] if values else None
        if raw is None:
            return b""
        try:
            length = int(raw)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise HttpError(400, "bad Content-Length") from None
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body must not be parsed as a request
            raise HttpError(413, f"request body over {MAX_BODY_BYTES} bytes (1 MiB)")
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise HttpError(400, "request body shorter than its Content-Length")
        return body

    def _authorized(self) -> bool:
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        # Both compared every time, in constant time: no hint which one was wrong.
        user_ok = hmac.compare_digest(user, self.server.access_key)
        password_ok = hmac.compare_digest(password, self.server.secret_key)
        return bool(sep) and user_ok and password_ok

    # routes ------------------------------------------------------------------------

    def _list_accounts(self, ids: list[str], body: bytes) -> None:
        page, per_page = page_args(urlsplit(self.path).query)
        items, total = self._store.list_accounts(page, per_page)
        self._send(200, envelope("accounts", items, total, page, per_page, self._own_url()))

    def _get_account(self, ids: list[str], body: bytes) -> None:
        self._send(200, self._store.get_account(_check_id(ids[0], "account")))

    def _list_numbers(self, ids: list[str], body: bytes) -> None:
        account_id = _check_id(ids[0], "account")
        page, per_page = page_args(urlsplit(self.path).query)
        items, total = self._store.list_numbers_json(account_id, page, per_page)
        url = self._own_url()
        self._send_body(200, envelope_json("numbers", items, total, page, per_page, url))

    def _own_url(self) -> str:
        """This request's URL without query, on the address the server is bound to (never
        the client's Host header: a client cannot make the server name another host)."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{urlsplit(self.path).path}"

    def _get_number(self, ids: list[str], body: bytes) -> None:
        account_id, number_id = _check_id(ids[0], "account"), _check_id(ids[1], "number")
        self._send(200, self._store.get_number(account_id, number_id))

    def _set_status(self, ids: list[str], body: bytes) -> None:
        account_id = _check_id(ids[0], "account")
        data = _json_body(body, ("status",))
        status = data.get("status")
        if status not in ("active", "paused", "stopped"):
            raise HttpError(400, "status must be one of active, paused, stopped")
        drop = self.server.faults.chance(self.server.faults.drop_rate)
        account = self._store.set_account_status(account_id, status, "http")
        self._reply_write(drop, {"status": "success", "account": account})

    def _update_number(self, ids: list[str], body: bytes) -> None:
        account_id, number_id = _check_id(ids[0], "account"), _check_id(ids[1], "number")
        data = _json_body(body, ("active", "paused"))
        if not data:
            raise HttpError(400, "nothing to update: give active and/or paused")
        for key, value in data.items():
            if not isinstance(value, bool):
                raise HttpError(400, f"{key} must be true or false")
        drop = self.server.faults.chance(self.server.faults.drop_rate)
        number = self._store.update_number(account_id, number_id, **data, via="http")
        self._reply_write(drop, {"status": "success", "number": number})

    def _reply_write(self, drop: bool, payload: dict[str, Any]) -> None:
        if not drop:
            self._send(200, payload)
            return
        # Injected fault: the write is committed, the client never hears about it.
        self.server.stats.fault("drop")
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # responses -----------------------------------------------------------------------

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_body(status, json.dumps(payload, separators=(",", ":")).encode(), headers)

    def _send_body(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Answer with `body`, a JSON document already encoded."""
        self._status = status
        self.server.stats.status(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        try:
            self.end_headers()
            if getattr(self, "command", None) != "HEAD":
                self.wfile.write(body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away; nobody left to tell

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, 414, 431, 501) as JSON too."""
        self.close_connection = True
        reason = message or HTTPStatus(code).phrase
        self._send(code, {"status": "error", "reason": reason})

    def version_string(self) -> str:
        return self.server_version  # without the Python version http.server would add

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Access lines are written by _handle (without headers or query strings)."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http.server: " + format, *args)


def _printable(path: str) -> str:
    """The path (no query string) safe for one log line."""
    path = urlsplit(path).path
    clean = "".join(ch if ch.isprintable() else "?" for ch in path)
    return clean if len(clean) <= 200 else clean[:200] + "..."


# --- the server -------------------------------------------------------------------------


class SandboxHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its store, keys and faults, and its open connections."""

    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        store: SandboxStore,
        keys: tuple[str, str],
        faults: Faults,
        access_log: bool = False,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.store = store
        self.access_key, self.secret_key = (k.encode() for k in keys)
        self.faults = faults
        self.access_log = access_log
        self.stats = ServerStats()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._store_lock = threading.Lock()
        self._warn_lock = threading.Lock()
        self._last_warning: str | None = None
        super().__init__(address, _Handler)

    def current_store(self) -> SandboxStore:
        """The store for a request: the database now at the path (reopened if replaced).

        HttpError 503 while nothing usable is there; one log line per change of state.
        """
        store = self.store
        if store.same_file():  # one stat: the common case takes no lock
            return store
        with self._store_lock:
            store = self.store
            if store.same_file():  # another thread reopened it meanwhile
                return store
            try:
                fresh = SandboxStore(store.path)
            except SandboxDbError as exc:
                self.warn_once(f"sandbox database unusable, answering 503 until it is back: {exc}")
                raise HttpError(503, UNAVAILABLE, {"Retry-After": "1"}) from None
            fresh.set_trace(store.trace)
            self.store = fresh
        with self._warn_lock:
            self._last_warning = None
        store.close()  # busy connections close when their call returns
        log.warning(
            "sandbox database %s was replaced: reopened it, serving the new data", fresh.path
        )
        return fresh

    def warn_once(self, message: str) -> None:
        """Log a database problem once, not once per request while it lasts."""
        with self._warn_lock:
            if message == self._last_warning:
                return
            self._last_warning = message
        log.warning("%s", message)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that broke mid-request is routine; anything else is logged."""
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self, wait_s: float = 2.0) -> None:
        """End every open client connection; wait a little for their threads to finish."""
        with self._connections_lock:
            open_now = list(self._connections)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with self._connections_lock:
                if not self._connections:
                    return
            time.sleep(0.01)


class RunningServer:
    """A sandbox server serving in a background thread. Use as a context manager."""

    def __init__(self, httpd: SandboxHTTPServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self.host, self.port = httpd.server_address[:2]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}{BASE_PATH}"
        self.stopped = False

    @property
    def stats(self) -> ServerStats:
        return self._httpd.stats

    @property
    def store(self) -> SandboxStore:
        return self._httpd.store

    def reset_stats(self) -> None:
        self._httpd.stats.reset()

    def stop(self) -> None:
        """Stop accepting, end open connections, close the database. Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        self._thread.join(timeout=5)
        self._httpd.store.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    db_path: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    access_key: str = "test-access",
    secret_key: str = "test-secret",
    latency_ms: float = 0,
    error_rate: float = 0.0,
    drop_rate: float = 0.0,
    rate_limit: float | None = None,
    rng_seed: int | None = None,
    access_log: bool = False,
) -> RunningServer:
    """Serve the wire API over `db_path` in a background thread; port 0 = ephemeral."""
    if not access_key or not secret_key:
        raise ValueError("access_key and secret_key must not be empty")
    faults = Faults(latency_ms, error_rate, drop_rate, rate_limit, rng_seed)
    store = SandboxStore(db_path)
    try:
        httpd = SandboxHTTPServer((host, port), store, (access_key, secret_key), faults, access_log)
    except BaseException:
        store.close()
        raise
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.05},  # stop() returns quickly
        name=f"sandbox-server-{httpd.server_address[1]}",
        daemon=True,
    )
    thread.start()
    return RunningServer(httpd, thread)
