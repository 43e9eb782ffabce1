"""HTTP transport for the ctm provider: pool, deadlines, retries, rate limit, size limits,
redaction. It knows nothing of CTM's paths or objects (`ctm.py` does).

Design, in the order a request meets it:

- **One connection pool.** A single urllib3 ``PoolManager`` (a ``ProxyManager`` when the
  environment names a proxy for the host: ``HTTPS_PROXY``/``NO_PROXY`` as requests reads
  them) keeps up to ``concurrency`` keep-alive connections, shared by every worker thread.
  This is the transport requests itself uses, without requests' per-call layers (request
  preparation, cookies, hooks, response wrapping): those cost ~0.35 ms of CPU per call
  under the GIL, which at 1,000 pages and 8 threads made a fleet read ~5% slower.
  Redirects are never followed (a 3xx is an error naming only the target's origin), so
  credentials can never be carried to another host. TLS verification is always on
  (``CERT_REQUIRED`` with certifi's bundle; a ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``
  in the environment may name a different bundle, nothing can turn verification off).
  ``http://`` is refused unless the host is loopback (127.0.0.0/8, ::1, ``localhost``),
  which is how the sandbox server is tested; loopback never goes through a proxy.
- **Deadlines.** Every attempt has a total deadline of ``timeout_seconds`` for connect,
  TLS, headers and body together, whatever the server does (a body trickled a byte a
  second, an endless chunked body): a watchdog thread (`deadlines.py`) shuts the
  connection's socket down when it passes. The retry budget is a deadline too: no attempt runs past
  ``budget_seconds`` after the request began. :meth:`Transport.abort` cuts every request
  in flight at once (a signal's grace has run out); they fail as "interrupted".
- **No trusted sizes.** The client asks for ``Accept-Encoding: identity`` and refuses a
  compressed answer it did not ask for (a 2 MB gzip body may inflate to gigabytes); a body
  over :data:`MAX_RESPONSE_BYTES` (16 MiB, about 200 times a full page) is refused as it
  streams in, before it is held.
- **Client-side rate limit.** Every attempt, first tries and retries alike, takes a token
  from one :class:`TokenBucket` at ``requests_per_second`` shared by all threads. The
  bucket is small (``burst = max(1, rps // 10)``, i.e. 100 ms worth): the sustained rate
  is the rate whatever the burst, while a deep client burst on top of arrival jitter is
  what empties a server's bucket of the same rate and starts a 429 storm. A ``Retry-After``
  seen by one thread pauses the whole bucket, so the other threads stop too.
- **Retries** (`retries.py`, with the token bucket) are urllib3's Retry on the pool: 429/500/502/503/504,
  connection errors and dropped responses, for GET *and* POST (every write is an
  idempotent "set", so repeating it is harmless), exponential backoff (``backoff_factor``
  0.5 s, doubling, at most 10 s per wait) plus up to 0.5 s of jitter, ``Retry-After``
  honoured; a body cut short is retried the same way. Budget per request: at most 6
  retries (2 of them for refused connections, so a server that is down is reported within
  about a second), within the 120 s deadline. A ``Retry-After`` above 60 s is not waited
  out: the request fails at once with the server's figure, since a client sleeping for
  minutes inside a CI job looks hung. TLS failures are not retried.
- **Malformed is one line.** :meth:`Transport.json` decodes strictly: invalid JSON, nesting
  too deep, ``NaN``/``Infinity`` and numbers that overflow a float are "malformed
  response", never a traceback.
- **Errors** become one line, ``ctm: GET /accounts/1001/numbers: 401 Unauthorized: check
  CTM_ACCESS_KEY and CTM_SECRET_KEY``, raised as :class:`~reconciler.errors.ProviderError`
  subclasses. Credentials live only in the ``Authorization`` header (never in URLs or log
  lines); server-supplied text is redacted (:func:`secret_pattern`) before it is quoted.

Logger ``reconciler.providers.ctm``: ``request: method=GET path=/accounts page=2 status=200
ms=21 attempts=1`` at DEBUG for every request, ``retry: ...`` at INFO for every retry.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import certifi
from urllib3 import BaseHTTPResponse, PoolManager, ProxyManager, Timeout
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import Retry, make_headers, parse_url

from reconciler.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderTransientError,
)
from reconciler.models import is_loopback
from reconciler.providers.deadlines import WATCHDOG, Call, HTTPSPool, Pool, current
from reconciler.providers.retries import (
    RETRY_STATUSES,
    GatedRetry,
    RetryGate,
    RetryPolicy,
    TokenBucket,
)

if TYPE_CHECKING:
    from reconciler.models import ProviderSettings

log = logging.getLogger("reconciler.providers.ctm")

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MIN_SECRET_LENGTH = 8
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Response:
    """A complete answer: status, headers and the whole (capped) body."""

    status: int
    reason: str
    headers: Mapping[str, str]
    data: bytes


def check_base_url(url: str) -> str:
    """The base URL without a trailing slash; https, or http on a loopback host only."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ProviderError(
            "ctm: base_url must not contain credentials; the keys come from the environment "
            "variables named by access_key_env and secret_key_env"
        )
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ProviderError(f"ctm: base_url {url[:80]!r} is not an https:// URL")
    if parts.query or parts.fragment:
        raise ProviderError(f"ctm: base_url {url[:80]!r} must not have a query or fragment")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ProviderError(
            f"ctm: refusing plain http:// to {parts.hostname}: the keys would cross the "
            "network unencrypted; use https:// (http:// is allowed for loopback hosts only)"
        )
    return url.rstrip("/")


def secret_pattern(access: str, secret: str) -> re.Pattern[str]:
    """What redaction removes: the secret key in any case, percent-encoded or base64
    (alone or as the Basic credentials), and any prefix of 8 or more characters of those
    (a server that echoes a cut copy). The access key is an identifier, not a secret."""
    forms = {
        secret,
        quote(secret, safe=""),
        base64.b64encode(secret.encode()).decode("ascii"),
        base64.b64encode(f"{access}:{secret}".encode()).decode("ascii"),
    }
    alternatives = []
    for form in sorted(forms, key=len, reverse=True):
        head, tail = form[:MIN_SECRET_LENGTH], form[MIN_SECRET_LENGTH:]
        rest = ""
        for char in reversed(tail):  # head, then as much of the rest as is there
            rest = f"(?:{re.escape(char)}{rest})?"
        alternatives.append(re.escape(head) + rest)
    return re.compile("|".join(alternatives), re.IGNORECASE)


def one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MalformedJSON(ValueError):
    """Valid JSON text this client will not take: non-finite numbers, deep nesting."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedJSON(f"the number {text[:20]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise MalformedJSON(f"{name} is not a number")


def decode_json(data: bytes) -> Any:
    """Strict JSON: ValueError for invalid text; MalformedJSON for NaN/Infinity, a float
    that overflows, or nesting too deep to decode."""
    try:
        return json.loads(data, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise MalformedJSON("nested too deeply") from None


def read_credentials(settings: ProviderSettings, environ: Mapping[str, str]) -> tuple[str, str]:
    """The access and secret key from the environment variables the settings name; a
    ProviderAuthError naming the variable (never a value) when one is unset, empty or too
    short to be a real secret."""
    values = []
    pairs = (("access key", settings.access_key_env), ("secret key", settings.secret_key_env))
    for what, var in pairs:
        value = environ.get(var)
        if not value:
            state = "is not set" if value is None else "is empty"
            raise ProviderAuthError(
                f"ctm: environment variable {var} {state} (it must hold the {what})"
            )
        if what == "secret key" and len(value) < MIN_SECRET_LENGTH:
            raise ProviderAuthError(
                f"ctm: the secret key in {var} is too short to be a real key "
                f"(under {MIN_SECRET_LENGTH} characters)"
            )
        values.append(value)
    return values[0], values[1]


def transport_for(
    settings: ProviderSettings,
    environ: Mapping[str, str],
    *,
    retry: RetryPolicy | None = None,
    burst: int | None = None,
    reason_of: Callable[[Any], str] = lambda data: "",
) -> Transport:
    """The transport the settings describe: keys from the environment (`read_credentials`),
    Basic auth, the secret redacted from every error. One way to build it for every user
    (the ctm provider, `doctor`), so the same TLS, deadline and redaction rules apply."""
    access, secret = read_credentials(settings, environ)
    token = base64.b64encode(f"{access}:{secret}".encode()).decode("ascii")
    rps = settings.requests_per_second
    return Transport(
        settings.base_url,
        f"Basic {token}",
        concurrency=settings.concurrency,
        timeout=settings.timeout_seconds,
        requests_per_second=rps,
        burst=burst if burst is not None else max(1, int(rps // 10)),
        retry=retry or RetryPolicy(budget_seconds=settings.retry_budget_seconds),
        redactor=secret_pattern(access, secret),
        key_vars=(settings.access_key_env, settings.secret_key_env),
        reason_of=reason_of,
    )


# --- the transport ---------------------------------------------------------------------


class Transport:
    """Sends one API call at a time per thread; any number of threads (see module doc)."""

    def __init__(
        self,
        base_url: str,
        authorization: str,
        *,
        concurrency: int,
        timeout: float,
        requests_per_second: float,
        burst: int,
        retry: RetryPolicy,
        redactor: re.Pattern[str],
        key_vars: tuple[str, str],
        reason_of: Callable[[Any], str] = lambda data: "",
    ) -> None:
        self.base = check_base_url(base_url)
        self._path_prefix = urlsplit(self.base).path
        self.concurrency = concurrency
        self.timeout = timeout
        self.retry_policy = retry
        self._redactor = redactor
        self._key_vars = key_vars
        self._reason_of = reason_of  # the API's error body -> its reason text
        self.gate = RetryGate(retry, TokenBucket(requests_per_second, burst))
        self._headers = {
            "Authorization": authorization,
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "User-Agent": "reconciler",
        }
        self._http = self._make_pool()
        self._lock = threading.Lock()
        self.requests_made = 0  # first attempts; retries are in `retries_made`
        self._calls: set[Call] = set()  # in progress, for `abort`

    @property
    def retries_made(self) -> int:
        return self.gate.retries

    def abort(self) -> int:
        """Interrupt every call in progress: those waiting to send never send, those in
        flight are cut; they fail as interrupted. Returns how many were cut mid-request."""
        with self._lock:
            for call in self._calls:
                call.cut = "interrupted"
        return WATCHDOG.abort(self)

    def close(self) -> None:
        self._http.clear()
        WATCHDOG.settle()

    # --- setup ------------------------------------------------------------------------

    def _make_pool(self) -> PoolManager:
        """The connection pool: retries, timeouts, TLS and (for remote hosts) proxy."""
        p = self.retry_policy
        retry = GatedRetry(
            total=p.retries,
            connect=p.connect_retries,
            other=0,  # TLS verification and proxy failures do not fix themselves
            redirect=0,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=Retry.DEFAULT_ALLOWED_METHODS | {"POST"},
            backoff_factor=p.backoff_factor,
            backoff_max=p.backoff_max,
            backoff_jitter=p.backoff_jitter,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
        )
        retry.gate = self.gate
        options: dict[str, Any] = {
            "num_pools": 1,
            "maxsize": self.concurrency,
            "block": True,  # a thread waits for a free connection instead of opening more
            "retries": retry,
            "timeout": Timeout(connect=self.timeout, read=self.timeout),
            "cert_reqs": "CERT_REQUIRED",
            **self._ca_options(),
        }
        proxy = self._proxy()
        if proxy is None:
            manager = PoolManager(**options)
        else:
            auth = parse_url(proxy).auth
            headers = make_headers(proxy_basic_auth=auth) if auth else None
            manager = ProxyManager(proxy, proxy_headers=headers, **options)
        manager.pool_classes_by_scheme = {"http": Pool, "https": HTTPSPool}
        return manager

    def _ca_options(self) -> dict[str, str]:
        """certifi's bundle, or the file or directory REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE names
        (as requests reads them; an empty value means the default, never "do not verify")."""
        where = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if not where:
            return {"ca_certs": certifi.where()}
        if os.path.isdir(where):
            return {"ca_cert_dir": where}
        if os.path.isfile(where):
            return {"ca_certs": where}
        raise ProviderError(
            f"ctm: the CA bundle named by REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE does not exist: "
            f"{one_line(where, 120)}"
        )

    def _proxy(self) -> str | None:
        """The proxy the environment names for base_url (none for loopback hosts)."""
        if is_loopback(urlsplit(self.base).hostname or ""):
            return None  # never send loopback traffic through an env proxy
        import requests.utils  # ~20 ms to import, and needed for remote hosts only

        proxies = requests.utils.get_environ_proxies(self.base)
        proxy = requests.utils.select_proxy(self.base, proxies)
        return requests.utils.prepend_scheme_if_needed(proxy, "http") if proxy else None

    # --- one call ---------------------------------------------------------------------

    def exchange(
        self, method: str, path: str, *, params: dict | None = None, body: dict | None = None
    ) -> Response:
        """One API call (with its retries): the complete 2xx response, or a ProviderError."""
        call = Call(self.timeout, self.retry_policy.budget_seconds, self)
        with self._lock:
            self._calls.add(call)
        try:
            return self._exchange(method, path, params, body, call)
        finally:
            with self._lock:
                self._calls.discard(call)

    def _exchange(
        self, method: str, path: str, params: dict | None, body: dict | None, call: Call
    ) -> Response:
        self.gate.bucket.acquire()
        if call.cut == "interrupted":
            raise ProviderTransientError(f"ctm: {method} {path}: interrupted before it was sent")
        with self._lock:
            self.requests_made += 1
        current.call = call
        t0 = time.monotonic()
        url = self.base + path + ("?" + urlencode(params) if params else "")
        headers = self._headers
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers = {**headers, "Content-Type": "application/json"}
        try:
            resp = self._attempts(method, path, url, data, headers, call)
        finally:
            current.call = None
        page = (params or {}).get("page", "-")
        ms = (time.monotonic() - t0) * 1000
        log.debug(
            "request: method=%s path=%s page=%s status=%d ms=%d attempts=%d",
            *(method, path, page, resp.status, ms, call.attempts),
        )
        if not 200 <= resp.status < 300:
            raise self._http_error(method, path, resp, call)
        return resp

    def _attempts(
        self, method: str, path: str, url: str, data: bytes | None, headers: dict, call: Call
    ) -> Response:
        """urllib3's attempts for the status line; then the body, again while it is cut
        short and the budget allows."""
        body_retries = self.retry_policy.retries
        while True:
            try:
                raw = self._http.urlopen(
                    method,
                    url,
                    body=data,
                    headers=headers,
                    redirect=False,
                    preload_content=False,
                    decode_content=False,
                )
            except HTTPError as exc:
                err = self._network_error(method, path, exc, call)
                log.debug("request: method=%s path=%s failed: %s", method, path, err)
                raise err from None
            try:
                return self._complete(method, path, raw)
            except _CutShort as short:
                wait = self.retry_policy.backoff_factor * 2 ** (call.attempts - 1)
                wait = min(wait, self.retry_policy.backoff_max)
                wait += random.uniform(0, self.retry_policy.backoff_jitter)
                why = self.gate.refuse(call, wait, None)
                if not why and body_retries <= 0:
                    why = "retries exhausted"
                if why:
                    raise ProviderTransientError(
                        f"ctm: {method} {path}: {short.what(self.timeout)} "
                        f"(after {call.attempts} attempts; {why})"
                    ) from None
                log.info("retry: method=%s path=%s error=body_cut wait=%.2f", method, path, wait)
                body_retries -= 1
                time.sleep(wait)
                self.gate.after_wait(call)

    def _complete(self, method: str, path: str, raw: BaseHTTPResponse) -> Response:
        """Read the whole body (at most MAX_RESPONSE_BYTES, no content coding), or raise."""
        call: Call = current.call
        done = False
        try:
            coding = (raw.headers.get("Content-Encoding") or "identity").strip().lower()
            if coding != "identity":
                raise ProviderError(
                    f"ctm: {method} {path}: malformed response: compressed with "
                    f"{one_line(coding, 40)!r}, which this client did not ask for"
                )
            length = raw.headers.get("Content-Length", "")
            if length.strip().isdigit() and int(length) > MAX_RESPONSE_BYTES:
                raise self._too_large(method, path)
            chunks: list[bytes] = []
            size = 0
            while True:
                try:
                    chunk = raw.read(_CHUNK, decode_content=False)
                except (HTTPError, OSError) as exc:
                    timed_out = isinstance(exc, ReadTimeoutError | TimeoutError)
                    raise _CutShort(call.cut or ("deadline" if timed_out else ""), exc) from None
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise self._too_large(method, path)
                chunks.append(chunk)
            if call.cut:
                raise _CutShort(call.cut, None)
            done = True
            return Response(raw.status, raw.reason or "", raw.headers, b"".join(chunks))
        finally:
            if not done:
                raw.close()  # the connection is not reusable mid-body
            raw.release_conn()

    @staticmethod
    def _too_large(method: str, path: str) -> ProviderError:
        return ProviderError(
            f"ctm: {method} {path}: malformed response: larger than "
            f"{MAX_RESPONSE_BYTES // (1024 * 1024)} MiB, the most this client reads"
        )

    def json(self, method: str, path: str, resp: Response) -> Any:
        """The decoded body of a response, or a one-line "malformed response" error."""
        try:
            return decode_json(resp.data)
        except MalformedJSON as exc:
            reason = str(exc)
        except ValueError:
            reason = (
                f"not JSON ({one_line(resp.headers.get('Content-Type', 'no content type'), 60)})"
            )
        raise ProviderError(f"ctm: {method} {path}: malformed response: {reason}")

    # --- errors -----------------------------------------------------------------------

    def _http_error(self, method: str, path: str, resp: Response, call: Call) -> ProviderError:
        code = resp.status
        head = f"ctm: {method} {path}: {code} {one_line(resp.reason, 60)}".rstrip()
        reason = self._server_reason(resp)
        access_var, secret_var = self._key_vars
        if 300 <= code < 400:
            where = urlsplit(resp.headers.get("Location", ""))
            to = f"{where.scheme}://{where.hostname}" if where.hostname else "another path"
            return ProviderError(f"{head}: redirect to {to} not followed; check base_url")
        if code == 401:
            return ProviderAuthError(f"{head}: check {access_var} and {secret_var}")
        if code == 403:
            return ProviderAuthError(
                f"{head}: {reason or 'access denied'}: the key in {access_var} may not do this"
            )
        if code == 404:
            return ProviderNotFound(f"{head}: {reason or 'not found'}")
        if code in RETRY_STATUSES:
            why = call.gave_up or "retries exhausted"
            tail = f": {reason}" if reason else ""
            return ProviderTransientError(
                f"{head}{tail}: gave up after {call.attempts} attempts ({why})"
            )
        return ProviderError(f"{head}: {reason or 'request refused'}")

    def _server_reason(self, resp: Response) -> str:
        try:
            data = decode_json(resp.data)
        except ValueError:
            return ""
        reason = self._reason_of(data)
        return self.redact(one_line(reason)) if reason else ""

    def _network_error(self, method: str, path: str, exc: HTTPError, call: Call) -> ProviderError:
        """A urllib3 failure (usually MaxRetryError around its cause) as one line."""
        cause: BaseException = exc
        if isinstance(exc, MaxRetryError):
            cause = exc.reason or exc
        origin = self.base[: len(self.base) - len(self._path_prefix)]
        tries = f"after {call.attempts} attempts"
        if call.gave_up:
            tries += f"; {call.gave_up}"
        if isinstance(cause, SSLError) and not call.cut:
            found = re.search(r"\[SSL: [A-Z_]+\] ([^(')]+)", str(cause))
            detail = found.group(1).strip() if found else "handshake failed"
            return ProviderError(f"ctm: {method} {path}: TLS error with {origin}: {detail}")
        if call.cut == "interrupted":
            text = "interrupted before the response was complete"
        elif call.cut == "deadline" or isinstance(cause, ReadTimeoutError):
            text = f"no complete response within {self.timeout:g} s (timeout_seconds)"
        elif isinstance(cause, ProxyError):
            text = "cannot connect through the proxy named by HTTPS_PROXY/HTTP_PROXY"
        elif isinstance(cause, NameResolutionError):
            text = f"cannot resolve host {urlsplit(self.base).hostname} (DNS lookup failed)"
        elif isinstance(cause, NewConnectionError):
            refused = "refused" in str(cause).lower()
            text = f"cannot connect to {origin}" + (" (connection refused)" if refused else "")
        elif isinstance(cause, ConnectTimeoutError):
            text = f"connecting to {origin} timed out after {self.timeout:g} s"
        elif isinstance(cause, ProtocolError):
            text = "the connection was closed without a response"
        else:
            text = f"request failed ({type(cause).__name__})"
        return ProviderTransientError(f"ctm: {method} {path}: {text} ({tries})")

    def redact(self, text: str) -> str:
        text = self._redactor.sub("***", text)
        return re.sub(r"(?i)(basic\s+)[A-Za-z0-9+/=]{6,}", r"\1***", text)


class _CutShort(Exception):
    """The body ended early: the server closed, or the deadline or an abort cut it."""

    def __init__(self, cut: str, error: BaseException | None) -> None:
        super().__init__(cut)
        self.cut, self.error = cut, error

    def what(self, timeout: float) -> str:
        if self.cut == "interrupted":
            return "interrupted before the response was complete"
        if self.cut == "deadline":
            return f"no complete response within {timeout:g} s (timeout_seconds)"
        return "the connection was closed before the response was complete"
