"""The sandbox server's limits against hostile or broken clients, over real sockets.

Complements tests/test_sandbox_server.py (which covers the basic 401, 413, 400 and 404
cases): here the same limits are pushed further, and slow clients are timed out.
Nothing here may ever produce a 500, a traceback, or a write.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from reconciler.providers.sandbox import server as server_module
from reconciler.providers.sandbox.server import RunningServer, start_server

AUTH = ("test-access", "test-secret")
TOKEN = base64.b64encode(b"test-access:test-secret").decode()
GOOD = f"Authorization: Basic {TOKEN}\r\n"


def raw(server: RunningServer, request: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are; everything the server answers until it closes (or `timeout`)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return reply


def read_response(sock: socket.socket) -> bytes:
    """One response (head and Content-Length body) from a connection that stays open."""
    reply = b""

    def more() -> bytes:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection (after {reply[:100]!r})"
        return chunk

    while b"\r\n\r\n" not in reply:
        reply += more()
    head, _, body = reply.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += more()
    return head + b"\r\n\r\n" + body


def status_of(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1."), reply[:200]
    return int(reply.split(b" ", 2)[1])


def json_error(reply: bytes) -> dict:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    data = json.loads(body)
    assert data["status"] == "error" and isinstance(data["reason"], str)
    return data


def nothing_written(server: RunningServer) -> None:
    assert server.store.audit() == []
    assert server.store.get_account("1001")["status"] == "active"


def assert_served_while(server: RunningServer, within: float = 3.0) -> None:
    """Another client gets its answer, and promptly (a generous bound: not blocked)."""
    started = time.monotonic()
    response = requests.get(f"{server.url}/accounts/1001", auth=AUTH, timeout=within)
    assert response.status_code == 200
    assert time.monotonic() - started < within


# --- credentials --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/accounts/1001",
        "/api/v1/accounts/9999",  # unknown: still 401, so ids cannot be probed without keys
        "/api/v1/accounts/1001/numbers/TPN1001A",
        "/api/v1/nope",
        "/api/v1/accounts/..%2F..%2Fetc",
        "/api/v1/accounts/" + "9" * 10_000,
    ],
)
def test_without_credentials_nothing_is_revealed(served: RunningServer, path: str) -> None:
    for header in ("", "Authorization: Basic Og==\r\n"):  # none, and ":" (both empty)
        reply = raw(
            served, f"GET {path} HTTP/1.1\r\nHost: x\r\n{header}Connection: close\r\n\r\n".encode()
        )
        assert status_of(reply) == 401
        assert b'www-authenticate: basic realm="reconciler-sandbox"' in reply.lower()
        json_error(reply)


@pytest.mark.parametrize(
    "credentials",
    [
        b"test-access:",
        b":test-secret",
        b"test-access:test-secret2",
        b"test-access:test-secre",
        b"test-access:test-secret:extra",
        b"TEST-ACCESS:test-secret",
        b"test-access:TEST-SECRET",
        b"test-access\x00:test-secret",
        b"test-access:test-secret\n",
        "test-access:test-secrét".encode(),
        b"\xff\xfe:\xff",
    ],
)
def test_near_miss_credentials_are_401_and_write_nothing(
    served: RunningServer, credentials: bytes
) -> None:
    token = base64.b64encode(credentials).decode()
    response = requests.post(
        f"{served.url}/accounts/1001/status",
        headers={"Authorization": f"Basic {token}"},
        json={"status": "stopped"},
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    nothing_written(served)


def test_a_huge_authorization_header_is_refused_not_a_crash(served: RunningServer) -> None:
    for size in (70_000, 1_000_000):  # over http.server's 64 KiB line limit
        reply = raw(
            served,
            b"GET /api/v1/accounts HTTP/1.1\r\nAuthorization: Basic " + b"A" * size + b"\r\n\r\n",
        )
        assert status_of(reply) == 431
        json_error(reply)
    reply = raw(served, b"GET /api/v1/accounts HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n")
    assert status_of(reply) == 431  # too many headers
    assert_served_while(served)


def test_credentials_in_an_absolute_request_url_are_not_credentials(served: RunningServer) -> None:
    url = served.url.replace("http://", "http://test-access:test-secret@")
    reply = raw(served, f"GET {url}/accounts HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
    assert status_of(reply) == 401


# --- bodies -----------------------------------------------------------------------------------


def test_a_huge_content_length_is_refused_before_any_of_it_is_read(served: RunningServer) -> None:
    """413 at once, from the header alone: the server neither waits for nor buffers 1 TB."""
    started = time.monotonic()
    reply = raw(
        served,
        f"POST /api/v1/accounts/1001/status HTTP/1.1\r\n{GOOD}Content-Length: {10**12}\r\n\r\n{{".encode(),
    )
    assert status_of(reply) == 413 and b"connection: close" in reply.lower()
    assert time.monotonic() - started < 3
    json_error(reply)
    nothing_written(served)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("Content-Length: -1\r\n", 400),
        ("Content-Length: abc\r\n", 400),
        ("Content-Length: 1e3\r\n", 400),
        ("Content-Length: 0x10\r\n", 400),
        ("Content-Length: 20\r\nContent-Length: 2\r\n", 400),  # conflicting: request smuggling
        ("Transfer-Encoding: chunked\r\n", 411),
        ("Transfer-Encoding: gzip, chunked\r\n", 411),
    ],
)
def test_bad_body_framing_is_refused_and_the_connection_closed(
    served: RunningServer, headers: str, status: int
) -> None:
    body = b'{"status":"stopped"}'
    reply = raw(
        served,
        f"POST /api/v1/accounts/1001/status HTTP/1.1\r\n{GOOD}{headers}\r\n".encode() + body,
    )
    assert status_of(reply) == status, reply
    assert b"connection: close" in reply.lower()
    json_error(reply)
    nothing_written(served)


@pytest.mark.parametrize(
    "body",
    [
        b'{"status": "' + b"s" * 900_000 + b'"}',
        b'{"' + b"k" * 900_000 + b'": 1}',
        b'{"status": "stopped\xff"}',
        b'{"status": NaN}',
        b'{"status": 1e999}',
        b'"stopped"',
        b"null",
        b"\x00" * 1000,
        b"{" * 500_000,
    ],
)
def test_hostile_json_is_400_with_a_short_reason(
    served: RunningServer, api: requests.Session, body: bytes
) -> None:
    response = api.post(f"{served.url}/accounts/1001/status", data=body)
    assert response.status_code == 400
    assert len(response.content) < 400  # the reason never echoes the input at length
    nothing_written(served)


# --- paths and ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/%2e%2e",
        "/accounts/%2E%2E/%2e%2e/etc/passwd",
        "/accounts/..",
        "/accounts/../accounts/1001",
        "/accounts/1001/numbers/../../1002",
        "/accounts/%252e%252e%252fetc",
        "/accounts/1001%2F..%2F1002",
        "/accounts/1001%00",
        "/accounts/%00/numbers",
        "/accounts/%ff%fe",
        "/accounts/%c0%ae%c0%ae",
        "/accounts/1001%20",
        "/accounts/%201001",
        "/accounts/1001%0d%0aSet-Cookie:%20x=y",
        "/accounts/%C3%A9",
        "/accounts/%EF%BC%91%EF%BC%90%EF%BC%90%EF%BC%91",  # fullwidth 1001
        "/accounts/%F0%9D%9F%99%F0%9D%9F%98%F0%9D%9F%98%F0%9D%9F%99",  # mathematical 1001
        "/accounts/%E2%80%AE1001",  # right-to-left override
        "/accounts/" + "%F0%9F%98%80" * 2_000,
        "/accounts/" + "a" * 10_000 + "/numbers",
        "/accounts/1001/numbers/" + "N" * 65,  # one over the id limit
        "/accounts/1001/numbers/TPN1001A/" + "x" * 10_000,
        "//accounts/1001",
        "/accounts//1001",
        "/accounts/1001/",
        "/./accounts/1001",
        "/accounts\\1001",
    ],
)
def test_traversal_and_absurd_ids_are_refused_never_500(
    served: RunningServer, api: requests.Session, path: str
) -> None:
    for method, suffix, body in (("GET", "", None), ("POST", "/status", {"status": "stopped"})):
        # requests would normalise some of these paths: send them exactly as written
        reply = raw(
            served,
            f"{method} /api/v1{path}{suffix} HTTP/1.1\r\nHost: x\r\n{GOOD}"
            f"Content-Type: application/json\r\nContent-Length: {len(json.dumps(body)) if body else 0}\r\n"
            f"Connection: close\r\n\r\n{json.dumps(body) if body else ''}".encode(),
        )
        assert status_of(reply) in (400, 404, 405), reply[:300]  # 405: it hit a read route
        assert len(reply) < 1000 and b"\r\nSet-Cookie" not in reply
        json_error(reply)
    nothing_written(served)


def test_an_absurdly_long_request_line_is_414(served: RunningServer) -> None:
    reply = raw(served, b"GET /api/v1/accounts/" + b"9" * 70_000 + b" HTTP/1.1\r\n\r\n")
    assert status_of(reply) == 414
    json_error(reply)


def test_a_raw_nul_or_control_character_in_the_request_line(served: RunningServer) -> None:
    for target in (b"/api/v1/accounts/10\x0001", b"/api/v1/accounts/\x1b[2J", b"/api/v1/\xff"):
        request = b"GET " + target + b" HTTP/1.1\r\nConnection: close\r\n" + GOOD.encode()
        reply = raw(served, request + b"\r\n")
        assert status_of(reply) in (400, 404)
        json_error(reply)


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "QUERY", "PUT", "PATCH", "DELETE"])
def test_methods_the_api_does_not_use_are_405_with_allow(
    served: RunningServer, method: str
) -> None:
    reply = raw(
        served,
        f"{method} /api/v1/accounts/1001 HTTP/1.1\r\n{GOOD}Connection: close\r\n\r\n".encode(),
    )
    assert status_of(reply) == 405 and b"\r\nAllow: GET\r\n" in reply
    json_error(reply)


def test_an_unknown_method_is_501_json(served: RunningServer) -> None:
    reply = raw(served, f"BREW /api/v1/accounts HTTP/1.1\r\n{GOOD}\r\n".encode())
    assert status_of(reply) == 501
    json_error(reply)


# --- slow clients -----------------------------------------------------------------------------


@pytest.fixture
def quick_timeouts(monkeypatch: pytest.MonkeyPatch) -> tuple[float, float]:
    """The server's read timeout and request deadline, shrunk to keep the tests short.

    The real values (10 s each) are exercised by the slow tests below.
    """
    monkeypatch.setattr(server_module._Handler, "timeout", 1.0)
    monkeypatch.setattr(server_module._Handler, "request_timeout", 2.0)
    return 1.0, 2.0


@pytest.fixture
def quick_server(quick_timeouts: tuple[float, float], sandbox_db: Path) -> Iterator[RunningServer]:
    with start_server(sandbox_db) as server:
        yield server


def cut_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes `sock` (read returns EOF or reset); fails past `limit`."""
    sock.settimeout(limit)
    started = time.monotonic()
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for over {limit} s")
    return time.monotonic() - started


def test_a_silent_connection_is_cut_after_the_timeout_and_blocks_nobody(
    quick_server: RunningServer,
) -> None:
    with socket.create_connection((quick_server.host, quick_server.port)) as silent:
        assert_served_while(quick_server)
        assert 0.5 < cut_after(silent, limit=5) < 5


def trickle(sock: socket.socket, data: bytes, gap: float, stop: threading.Event) -> None:
    """Send `data` one byte at a time, `gap` seconds apart (a slow-loris client)."""
    for byte in data:
        if stop.wait(gap):
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return  # cut by the server


def test_a_slow_loris_is_cut_at_the_request_deadline_and_blocks_nobody(
    quick_server: RunningServer,
) -> None:
    """Headers one byte every 0.1 s: never idle for the 1 s read timeout, yet cut at the
    2 s deadline for a whole request."""
    head = f"GET /api/v1/accounts HTTP/1.1\r\nHost: x\r\n{GOOD}".encode() + b"X-Slow: " + b"z" * 500
    stop = threading.Event()
    with socket.create_connection((quick_server.host, quick_server.port)) as loris:
        sender = threading.Thread(target=trickle, args=(loris, head, 0.1, stop), daemon=True)
        sender.start()
        try:
            time.sleep(0.5)
            assert_served_while(quick_server)
            waited = cut_after(loris, limit=8)
        finally:
            stop.set()
            sender.join(5)
    assert waited < 4  # cut about 2 s after its first byte, never answered


def test_a_slow_body_is_cut_and_nothing_is_written(quick_server: RunningServer) -> None:
    body = b'{"status": "stopped"}'
    head = (
        f"POST /api/v1/accounts/1001/status HTTP/1.1\r\n{GOOD}Content-Length: {len(body)}\r\n\r\n"
    )
    stop = threading.Event()
    with socket.create_connection((quick_server.host, quick_server.port)) as slow:
        slow.sendall(head.encode() + body[:5])  # then the rest, too slowly to make it
        sender = threading.Thread(target=trickle, args=(slow, body[5:], 0.3, stop), daemon=True)
        sender.start()
        try:
            assert_served_while(quick_server)
            reply_or_cut = cut_after(slow, limit=8)
        finally:
            stop.set()
            sender.join(5)
    assert reply_or_cut < 4
    nothing_written(quick_server)


def test_a_keep_alive_connection_may_idle_between_requests_but_not_forever(
    quick_server: RunningServer,
) -> None:
    """The deadline is per request: a pooled connection that is reused stays usable."""
    with socket.create_connection((quick_server.host, quick_server.port), timeout=5) as conn:
        for _ in range(4):
            conn.sendall(f"GET /api/v1/accounts/1001 HTTP/1.1\r\n{GOOD}\r\n".encode())
            assert status_of(read_response(conn)) == 200
            time.sleep(0.7)  # under the 1 s read timeout; 2.8 s in all, past the 2 s deadline
        assert cut_after(conn, limit=5) < 3


def test_many_connections_at_once(quick_server: RunningServer) -> None:
    """100 idle sockets and 100 concurrent requests: every request answered, idle ones cut."""
    idle = [socket.create_connection((quick_server.host, quick_server.port)) for _ in range(100)]
    try:

        def one(i: int) -> int:
            with requests.Session() as session:
                path = "/accounts/1001" if i % 2 else "/accounts/1001/numbers"
                return session.get(quick_server.url + path, auth=AUTH, timeout=20).status_code

        with ThreadPoolExecutor(max_workers=50) as pool:
            statuses = list(pool.map(one, range(100)))
        assert statuses == [200] * 100
        for sock in idle:
            assert cut_after(sock, limit=10) < 10
    finally:
        for sock in idle:
            sock.close()
    assert 500 not in quick_server.stats.by_status


@pytest.mark.slow
def test_the_real_timeouts_cut_idle_and_slow_loris_clients(served: RunningServer) -> None:
    """Unpatched: a silent client is cut after 10 s, a trickling one 10 s after its first byte."""
    timeout = server_module.SOCKET_TIMEOUT_S
    stop = threading.Event()
    with (
        socket.create_connection((served.host, served.port)) as silent,
        socket.create_connection((served.host, served.port)) as loris,
    ):
        head = b"GET /api/v1/accounts HTTP/1.1\r\nX-Slow: " + b"z" * 1000
        sender = threading.Thread(target=trickle, args=(loris, head, 0.5, stop), daemon=True)
        sender.start()
        try:
            assert_served_while(served)
            assert timeout - 1 < cut_after(silent, limit=timeout + 5) < timeout + 5
            assert cut_after(loris, limit=timeout + 5) < timeout + 5
        finally:
            stop.set()
            sender.join(5)
