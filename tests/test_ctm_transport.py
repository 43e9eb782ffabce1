"""The ctm client's transport safety, against tiny stdlib HTTP servers on 127.0.0.1.

These servers misbehave on purpose (redirect, stall, refuse, answer garbage) in ways the
sandbox server does not; no mock of the HTTP layer is involved.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pydantic
import pytest

from reconciler.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderTransientError,
)
from reconciler.models import ProviderSettings
from reconciler.providers.ctm import CtmProvider, RetryPolicy, TokenBucket

ACCESS, SECRET = "test-access", "s3cret-Value-42"
ENV = {"CTM_ACCESS_KEY": ACCESS, "CTM_SECRET_KEY": SECRET}
TOKEN = base64.b64encode(f"{ACCESS}:{SECRET}".encode()).decode()
FAST = RetryPolicy(backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0.01, budget_seconds=5)

ACCOUNT = {"id": 1, "name": "One", "status": "active", "monthly_fee": "49.00"}
NUMBER = {"id": "TPN1", "number": "+14105550101", "active": True, "paused": False}

Reply = tuple[int, Any, dict[str, str]]  # status, JSON body (or bytes), headers


def settings(url: str, **kw: Any) -> ProviderSettings:
    values = {"type": "ctm", "base_url": url, "requests_per_second": 1000, "timeout_seconds": 2}
    return ProviderSettings(**{**values, **kw})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    answer: Callable[[str, str, dict[str, str]], Reply | None]
    seen: list[tuple[str, str, dict[str, str]]]

    def log_message(self, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        headers = dict(self.headers.items())
        self.seen.append((self.command, self.path, headers))
        reply = self.answer(self.command, self.path, headers)
        if reply is None:  # drop the connection without an answer
            self.close_connection = True
            return
        status, body, extra = reply
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve


@contextmanager
def http_server(
    answer: Callable[[str, str, dict[str, str]], Reply | None],
    tls: ssl.SSLContext | None = None,
) -> Iterator[tuple[str, list]]:
    """A loopback server answering with `answer`; yields (origin, requests seen)."""
    seen: list = []
    handler = type("H", (_Handler,), {"answer": staticmethod(answer), "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def client(
    answer: Callable[[str, str, dict[str, str]], Reply | None],
    *,
    retry: RetryPolicy = FAST,
    tls: ssl.SSLContext | None = None,
    **kw: Any,
) -> Iterator[tuple[CtmProvider, list]]:
    """A CtmProvider talking to a fresh `http_server(answer)`; yields (provider, seen)."""
    with (
        http_server(answer, tls) as (origin, seen),
        CtmProvider(settings(f"{origin}/api/v1", **kw), ENV, retry=retry) as provider,
    ):
        yield provider, seen


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text
        assert TOKEN not in text
        assert f"Basic {TOKEN}" not in text


# --- configuration refusals -----------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://api.calltrackingmetrics.com/api/v1", "http://10.0.0.5/api/v1"]
)
def test_plain_http_to_a_remote_host_is_refused(url: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        settings(url)
    unchecked = ProviderSettings.model_construct(type="ctm", base_url=url)
    with pytest.raises(ProviderError, match=r"refusing plain http:// to .*use https://"):
        CtmProvider(unchecked, ENV)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/api/v1", "http://127.5.0.1/api/v1", "http://[::1]:9/api/v1",
            "http://localhost:9/api/v1", "https://api.example.com/api/v1/"],
)  # fmt: skip
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    with CtmProvider(settings(url), ENV) as provider:
        assert provider.target == url.rstrip("/")
        assert provider.requests_made == 0


def test_credentials_in_the_base_url_are_refused_without_echoing_them() -> None:
    url = f"https://{ACCESS}:{SECRET}@api.example.com/api/v1"
    unchecked = ProviderSettings.model_construct(type="ctm", base_url=url)
    with pytest.raises(ProviderError, match="must not contain credentials") as err:
        CtmProvider(unchecked, ENV)
    assert_no_secret(str(err.value))


@pytest.mark.parametrize("var", ["CTM_ACCESS_KEY", "CTM_SECRET_KEY"])
@pytest.mark.parametrize("value", [None, ""])
def test_a_missing_key_names_the_variable(var: str, value: str | None) -> None:
    env = {k: v for k, v in ENV.items() if k != var}
    if value is not None:
        env[var] = value
    state = "is not set" if value is None else "is empty"
    with pytest.raises(ProviderAuthError, match=f"environment variable {var} {state}") as err:
        CtmProvider(settings("http://127.0.0.1:9/api/v1"), env)
    assert_no_secret(str(err.value))


def test_custom_variable_names_are_used() -> None:
    cfg = settings("http://127.0.0.1:9/api/v1", access_key_env="A1", secret_key_env="S1")
    with pytest.raises(ProviderAuthError, match="S1 is not set"):
        CtmProvider(cfg, {"A1": "x"})
    CtmProvider(cfg, {"A1": "x", "S1": "y-long-enough"}).close()


# --- redirects never carry credentials --------------------------------------------------


def test_a_redirect_to_another_host_is_not_followed() -> None:
    with http_server(lambda *_: (200, ACCOUNT, {})) as (other, other_seen):
        moved = (302, {}, {"Location": f"{other}/api/v1/accounts/1"})
        with (
            client(lambda *_: moved) as (provider, seen),
            pytest.raises(ProviderError, match=r"302 .*redirect to http://127\.0\.0\.1 not"),
        ):
            provider.read(["1"])
    assert len(seen) == 1 and seen[0][2]["Authorization"] == f"Basic {TOKEN}"
    assert other_seen == []  # never contacted, so it never saw the credentials


# --- network failures: one clear line, quickly -----------------------------------------


def test_a_server_that_is_down_is_reported_quickly() -> None:
    """Default retry policy: refused connections get 2 quick retries, then one line."""
    url = f"http://127.0.0.1:{closed_port()}/api/v1"
    started = time.monotonic()
    with CtmProvider(settings(url), ENV) as provider, pytest.raises(ProviderTransientError) as e:
        provider.read(["1001"])
    assert time.monotonic() - started < 4
    assert str(e.value).startswith("ctm: GET /accounts/1001: cannot connect to http://127.0.0.1:")
    assert "(connection refused) (after 3 attempts)" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_stalled_server_times_out_with_a_clear_error() -> None:
    def slow(*_: Any) -> Reply:
        time.sleep(1.0)
        return 200, ACCOUNT, {}

    policy = RetryPolicy(retries=1, backoff_factor=0.01, backoff_jitter=0)
    started = time.monotonic()
    with (
        client(slow, retry=policy, timeout_seconds=0.2) as (provider, seen),
        pytest.raises(ProviderTransientError, match=r"no complete response within 0\.2 s") as err,
    ):
        provider.read(["1"])
    assert time.monotonic() - started < 1.5  # two 0.2 s attempts (+ server shutdown)
    assert "after 2 attempts" in str(err.value)
    assert len(seen) == 2


def test_dns_failure_is_one_line() -> None:
    cfg = settings("https://no-such-host.invalid/api/v1")
    with (
        CtmProvider(cfg, ENV, retry=FAST) as provider,
        pytest.raises(ProviderTransientError, match=r"cannot resolve host no-such-host\.invalid"),
    ):
        provider.read(["1"])


def test_the_retry_time_budget_bounds_a_request() -> None:
    policy = RetryPolicy(retries=50, backoff_factor=0.05, backoff_jitter=0, budget_seconds=0.5)
    started = time.monotonic()
    with (
        client(_error(503, "down"), retry=policy) as (provider, seen),
        pytest.raises(ProviderTransientError, match=r"503 .*: down: gave up after \d+ a") as err,
    ):
        provider.read(["1"])
    assert time.monotonic() - started < 1.0
    assert "(retry budget of 0.5 s spent)" in str(err.value)
    assert 3 <= len(seen) < 50


def test_a_long_retry_after_fails_at_once_instead_of_hanging() -> None:
    reply = (429, {"status": "error", "reason": "slow down"}, {"Retry-After": "3600"})
    started = time.monotonic()
    with (
        client(lambda *_: reply) as (provider, seen),
        pytest.raises(ProviderTransientError) as err,
    ):
        provider.read(["1"])
    assert time.monotonic() - started < 1
    assert "asks to retry after 3600 s, more than the 60 s this client waits" in str(err.value)
    assert len(seen) == 1


def test_retry_after_is_honoured() -> None:
    calls: list[float] = []

    def limited(method: str, path: str, headers: dict) -> Reply:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return 429, {"status": "error", "reason": "rate"}, {"Retry-After": "1"}
        if path.endswith("/numbers?page=1&per_page=150"):
            return 200, {"numbers": [NUMBER], "total_pages": 1, "next_page": None}, {}
        return 200, ACCOUNT, {}

    with client(limited) as (provider, _):
        state = provider.read(["1"])
    assert [n.number for n in state.accounts["1"].numbers] == ["+14105550101"]
    assert calls[1] - calls[0] >= 0.95
    assert (provider.requests_made, provider.retries_made) == (2, 1)


# --- HTTP errors and bad answers ------------------------------------------------------


def _error(status: int, reason: str) -> Callable[..., Reply]:
    return lambda *_: (status, {"status": "error", "reason": reason}, {})


@pytest.mark.parametrize(
    ("status", "kind", "text"),
    [
        (401, ProviderAuthError, "401 Unauthorized: check CTM_ACCESS_KEY and CTM_SECRET_KEY"),
        (403, ProviderAuthError, "403 Forbidden: nope: the key in CTM_ACCESS_KEY may not do this"),
        (404, ProviderNotFound, "404 Not Found: nope"),
        (409, ProviderError, "409 Conflict: nope"),
        (400, ProviderError, "400 Bad Request: nope"),
    ],
)
def test_http_errors_on_writes_are_one_clear_line(status: int, kind: type, text: str) -> None:
    with client(_error(status, "nope")) as (provider, seen), pytest.raises(kind) as err:
        provider.set_number("1", "TPN1", "calls", "stopped")
    assert str(err.value) == f"ctm: POST /accounts/1/numbers/TPN1/update_number: {text}"
    assert len(seen) == 1  # 4xx are not retried


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"<html>oops</html>", "malformed response: not JSON (application/json)"),
        ({"accounts": "x"}, "malformed response: no 'accounts' list"),
        ({"accounts": [{"name": "no id"}], "total_pages": 1}, "account without id"),
        ({"accounts": [], "next_page": "https://x/accounts?per_page=150"}, "names no page"),
        ({"accounts": [], "total_pages": "many", "next_page": 2}, "bad total_pages"),
    ],
)
def test_malformed_reads_are_clear_errors(body: Any, text: str) -> None:
    with client(lambda *_: (200, body, {})) as (provider, _), pytest.raises(ProviderError) as e:
        provider.read(["1", "2"])
    assert str(e.value).startswith("ctm: GET /accounts: ")
    assert text in str(e.value)


@pytest.mark.parametrize("prefetch", [False, True])
@pytest.mark.parametrize(
    ("reply", "text"),
    [
        ((200, b"<html>oops</html>", {}), "malformed response: not JSON (application/json)"),
        ((200, {"numbers": "x"}, {}), "malformed response: no 'numbers' list"),
        ((400, {"status": "error", "reason": "nope"}, {}), "400 Bad Request: nope"),
    ],
)
def test_a_bad_numbers_page_is_the_same_error_with_or_without_prefetch(
    prefetch: bool, reply: Reply, text: str
) -> None:
    """A prefetched page that fails is reported by read, where it would have been."""

    def answer(method: str, path: str, headers: dict[str, str]) -> Reply:
        if path.startswith("/api/v1/accounts?"):
            accounts = [ACCOUNT, {**ACCOUNT, "id": 2}]
            return 200, {"accounts": accounts, "total_pages": 1}, {}
        if path.startswith("/api/v1/accounts/2/numbers"):
            return reply
        return 200, {"numbers": [NUMBER], "total_pages": 1}, {}

    with client(answer) as (provider, seen), pytest.raises(ProviderError) as e:
        if prefetch:
            provider.prefetch("1")
            provider.prefetch("2")
        provider.read(["1", "2"])
    assert str(e.value) == f"ctm: GET /accounts/2/numbers: {text}"
    assert len(seen) == 3  # the list, and one numbers page each


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"status": "success", "number": {**NUMBER, "active": True}}, "with calls allowed"),
        ({"status": "success", "number": {**NUMBER, "id": "TPN9", "active": False}}, "TPN9"),
        ({"status": "error", "number": {**NUMBER, "active": False}}, "refused the write"),
        ({"status": "error", "reason": "locked"}, "the provider refused the write: locked"),
        ({"status": "success"}, 'expected {"status": "success", "number": ...}'),
        ([], "got list"),
        ({"status": "success", "number": {"id": "TPN1"}}, "malformed response"),
    ],
)
def test_a_write_the_response_does_not_confirm_is_an_error(body: Any, text: str) -> None:
    with client(lambda *_: (200, body, {})) as (provider, seen), pytest.raises(ProviderError) as e:
        provider.set_number("1", "TPN1", "calls", "stopped")
    assert str(e.value).startswith("ctm: POST /accounts/1/numbers/TPN1/update_number: ")
    assert text in str(e.value)
    assert len(seen) == 1  # no extra GET per write


def test_ids_cannot_escape_their_path_segment() -> None:
    with client(_error(404, "no")) as (provider, seen):
        assert provider.read(["../../x?y=1"]).missing == ["../../x?y=1"]
    assert seen[0][1] == "/api/v1/accounts/..%2F..%2Fx%3Fy%3D1"


# --- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for 127.0.0.1 and api.example.test: cert.pem, key.pem."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not available")
    d: Path = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:api.example.test",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return d


@pytest.fixture(scope="module")
def self_signed(tls_files: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files / "cert.pem", tls_files / "key.pem")
    return context


def one_account(method: str, path: str, headers: dict[str, str]) -> Reply:
    """Account 1 with one number, for reads that must simply succeed."""
    if "/numbers" in path:
        return 200, {"numbers": [NUMBER], "total_pages": 1}, {}
    return 200, ACCOUNT, {}


@contextmanager
def connect_proxy() -> Iterator[tuple[str, list[str], bytearray]]:
    """An HTTP CONNECT proxy on 127.0.0.1 that sends every tunnel to 127.0.0.1 (so any
    host name works offline). Yields (proxy URL, CONNECT targets seen, bytes relayed)."""
    targets: list[str] = []
    relayed = bytearray()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                relayed.extend(chunk)
                dst.sendall(chunk)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def tunnel(conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        target = head.split(b" ")[1].decode()
        targets.append(target)
        upstream = socket.create_connection(("127.0.0.1", int(target.rsplit(":", 1)[1])))
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()
        pump(conn, upstream)

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = listener.accept()
                conn.settimeout(None)
                threading.Thread(target=tunnel, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", targets, relayed
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_tls_verification_is_always_on(self_signed: ssl.SSLContext) -> None:
    """A self-signed certificate is refused at once (default policy: TLS is not retried)."""
    answer = lambda *_: (200, ACCOUNT, {})  # noqa: E731
    with (
        client(answer, tls=self_signed, retry=RetryPolicy()) as (provider, seen),
        pytest.raises(ProviderError, match=r"TLS error with https://127\.0\.0\.1:\d+: .*verif"),
    ):
        provider.read(["1"])
    assert seen == []  # the handshake failed before any request (or key) was sent
    assert provider.retries_made == 0  # a bad certificate does not get better by retrying


@pytest.mark.parametrize(
    "env",
    [{"CURL_CA_BUNDLE": ""}, {"REQUESTS_CA_BUNDLE": ""}, {"PYTHONHTTPSVERIFY": "0"}],
    ids=["CURL_CA_BUNDLE empty", "REQUESTS_CA_BUNDLE empty", "PYTHONHTTPSVERIFY=0"],
)
def test_tls_verification_cannot_be_turned_off_by_the_environment(
    self_signed: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    """Environment tricks that disable verification elsewhere change nothing here."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    answer = lambda *_: (200, ACCOUNT, {})  # noqa: E731
    with (
        client(answer, tls=self_signed, retry=RetryPolicy()) as (provider, seen),
        pytest.raises(ProviderError, match=r"TLS error"),
    ):
        provider.read(["1"])
    assert seen == []


def test_the_ca_bundle_the_environment_names_is_trusted(
    tls_files: Path, self_signed: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files / "cert.pem"))
    with client(one_account, tls=self_signed) as (provider, seen):
        assert provider.read(["1"]).accounts["1"].name == "One"
    assert len(seen) == 2


def test_a_ca_bundle_that_does_not_exist_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    with pytest.raises(ProviderError, match=r"CA bundle .* does not exist: /nonexistent/ca\.pem"):
        CtmProvider(settings("https://api.example.test/api/v1"), ENV)


@pytest.mark.parametrize("scheme", ["http://", ""], ids=["with scheme", "without scheme"])
def test_https_goes_through_the_proxy_the_environment_names(
    tls_files: Path, self_signed: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    """A tunnel (CONNECT) to the API host: the proxy relays only ciphertext, never the keys."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files / "cert.pem"))
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    with (
        connect_proxy() as (proxy, targets, relayed),
        http_server(one_account, self_signed) as (origin, seen),
    ):
        monkeypatch.setenv("HTTPS_PROXY", proxy.replace("http://", scheme))
        port = origin.rsplit(":", 1)[1]
        url = f"https://api.example.test:{port}/api/v1"
        with CtmProvider(settings(url), ENV, retry=FAST) as provider:
            assert provider.read(["1"]).accounts["1"].name == "One"
    assert targets == [f"api.example.test:{port}"]
    assert len(seen) == 2 and seen[0][2]["Authorization"] == f"Basic {TOKEN}"
    assert relayed and TOKEN.encode() not in relayed and SECRET.encode() not in relayed


def test_no_proxy_and_loopback_hosts_bypass_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("no_proxy", "ALL_PROXY", "all_proxy", "https_proxy", "http_proxy"):
        monkeypatch.delenv(var, raising=False)
    with connect_proxy() as (proxy, targets, _):
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        monkeypatch.setenv("HTTP_PROXY", proxy)
        with client(one_account) as (provider, seen):  # http://127.0.0.1
            provider.read(["1"])
        assert len(seen) == 2
        monkeypatch.setenv("NO_PROXY", "api.example.test")
        cfg = settings("https://api.example.test/api/v1")
        with (
            CtmProvider(cfg, ENV, retry=FAST) as provider,
            pytest.raises(ProviderTransientError, match=r"cannot resolve host api\.example\.test"),
        ):
            provider.read(["1"])  # straight to the host, which does not resolve offline
    assert targets == []


# --- secrets never leak -------------------------------------------------------------------


def test_secrets_never_appear_in_errors_or_logs(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"bad header Basic {TOKEN} for {SECRET}"
    failures = [
        _error(401, "denied"),
        _error(409, echo),
        _error(400, echo),
        _error(503, echo),
        lambda *_: (200, {"status": "success", "number": {**NUMBER, "id": SECRET}}, {}),
        lambda *_: None,
    ]
    messages = []
    for answer in failures:
        with client(answer) as (provider, seen):
            for call in (
                lambda p=provider: p.read(["1"]),
                lambda p=provider: p.set_number("1", "TPN1", "calls", "stopped"),
            ):
                with pytest.raises(ProviderError) as err:
                    call()
                messages.append(str(err.value))
        assert all(h["Authorization"] == f"Basic {TOKEN}" for _, _, h in seen)  # it was sent
    out = capsys.readouterr()
    assert any("***" in m for m in messages)
    assert_no_secret(caplog.text, out.out, out.err, *messages)
    assert "request: method=GET path=/accounts/1 page=- status=401" in caplog.text


# --- the shared token bucket ---------------------------------------------------------------


def test_token_bucket_holds_the_rate_across_threads() -> None:
    bucket = TokenBucket(rate=200, burst=1)
    started = time.monotonic()
    threads = [
        threading.Thread(target=lambda: [bucket.acquire() for _ in range(25)]) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert 199 / 200 - 0.02 <= elapsed < 1.5  # 200 tokens at 200/s: the first is free


def test_token_bucket_burst_and_defer() -> None:
    bucket = TokenBucket(rate=10, burst=3)
    started = time.monotonic()
    for _ in range(3):
        bucket.acquire()
    assert time.monotonic() - started < 0.05  # a burst of 3 goes at once
    bucket.acquire()
    assert time.monotonic() - started >= 0.09
    bucket.defer(0.3)
    before = time.monotonic()
    bucket.acquire()
    assert time.monotonic() - before >= 0.29


@pytest.mark.parametrize(
    "echo",
    [
        SECRET,
        SECRET.lower(),
        SECRET.upper(),
        SECRET[:8],  # a cut copy
        SECRET[:11] + "…",
        quote(SECRET, safe=""),
        base64.b64encode(SECRET.encode()).decode(),
        TOKEN,
    ],
    ids=["exact", "lower", "upper", "prefix8", "prefix11", "percent", "base64", "basic"],
)
def test_a_server_echoing_any_form_of_the_secret_never_leaks_it(echo: str) -> None:
    with (
        client(_error(400, f"bad key {echo} given")) as (provider, _),
        pytest.raises(ProviderError) as err,
    ):
        provider.read(["1"])
    text = str(err.value)
    assert "bad key *** given" in text or "bad key ***… given" in text, text
    assert echo not in text


def test_a_secret_key_too_short_to_be_real_is_refused() -> None:
    env = dict(ENV, CTM_SECRET_KEY="short")
    with pytest.raises(ProviderAuthError, match="too short to be a real key") as err:
        CtmProvider(settings("http://127.0.0.1:9/api/v1"), env)
    assert "short" not in str(err.value).replace("too short", "")


def test_a_pool_collected_while_the_watchdog_holds_its_lock_does_not_deadlock(
    sandbox_db: Path,
) -> None:
    """The garbage collector can run in a thread that holds the watchdog's lock (any
    allocation there: a new thread, a tuple); a collected pool's finalizer then closes its
    connections, which disarms them, in that thread. With a plain lock this hung a fuzzed
    apply for good; the real pool, the real finalizer, a forced collection."""
    import gc

    from reconciler.providers.deadlines import WATCHDOG, Pool
    from reconciler.providers.sandbox.server import start_server

    with start_server(sandbox_db, access_key="ak", secret_key="sk-secret") as server:
        host, port = server.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        pool = Pool(host, int(port), maxsize=1)
        pool.request("GET", "/api/v1/accounts", retries=False).release_conn()
        assert pool.num_connections == 1  # one connection back in the pool
        pool.cycle = pool  # type: ignore[attr-defined]  # only the collector can free it
        del pool
        done = threading.Event()

        def collect_under_the_lock() -> None:
            gc.disable()  # no collection before the one under test
            try:
                with WATCHDOG._lock:
                    gc.collect()  # runs the pool's finalizer: close -> disarm
                done.set()
            finally:
                gc.enable()

        worker = threading.Thread(target=collect_under_the_lock, daemon=True)
        worker.start()
        worker.join(timeout=10)
        assert done.is_set(), "the finalizer's disarm waited for a lock its own thread held"
