"""The `ctm` provider: an HTTP client for the provider's REST API (SPEC §7 wire API).

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
- **Client-side rate limit.** Every attempt, first tries and retries alike, takes a token
  from one :class:`TokenBucket` at ``requests_per_second`` shared by all threads. The
  bucket is small (``burst = max(1, rps // 10)``, i.e. 100 ms worth): the sustained rate
  is the rate whatever the burst, while a deep client burst on top of arrival jitter is
  what empties a server's bucket of the same rate and starts a 429 storm. A ``Retry-After``
  seen by one thread pauses the whole bucket, so the other threads stop too.
- **Retries** are urllib3's :class:`~urllib3.util.Retry` on the adapter: 429/500/502/503/
  504, connection errors and dropped responses, for GET *and* POST (every write is an
  idempotent "set", so repeating it is harmless), exponential backoff (``backoff_factor``
  0.5 s, doubling, at most 10 s per wait) plus up to 0.5 s of jitter, ``Retry-After``
  honoured. Budget per request: at most 6 retries (2 of them for refused connections, so
  a server that is down is reported within about a second), and no retry that would start
  more than 120 s after the request began. A ``Retry-After`` above 60 s is not waited out:
  the request fails at once with the server's figure, since a client sleeping for minutes
  inside a CI job looks hung. TLS failures are not retried. ``raise_on_status`` is off, so
  the last response of a spent budget becomes a clear
  :class:`~reconciler.errors.ProviderTransientError`.
- **Minimal reads.** One account: ``GET /accounts/{id}``. Several: ``GET /accounts`` page 1
  (150 per page) and then whichever is cheaper for the ids it did not contain: the remaining
  list pages or one GET per remaining id (so the cost is at most one more request than the
  cheaper of the two). Numbers: ``GET /accounts/{id}/numbers`` page 1 for every account,
  then all remaining pages, each stage concurrently (``concurrency`` threads). Never one
  request per number. ``prefetch`` starts an account's first page before ``read`` is
  called (the engine does so while the config loads) without ever adding a request for
  an account ``read`` is then asked for. Workers only fetch; pages are decoded by the
  thread that reads.
- **Writes** build their request with :mod:`reconciler.providers.wire` (the one place the
  write mapping lives) and POST it. Honesty note: the stop/allow/pause writes are not in the
  provider's public documentation; the mapping follows SPEC §7's wire API, so every write is
  checked against the object its response returns ("write not applied" otherwise) and an
  apply verifies the whole result with one bulk re-read.
- **Errors** become one line, ``ctm: GET /accounts/1001/numbers: 401 Unauthorized: check
  CTM_ACCESS_KEY and CTM_SECRET_KEY``, raised as :class:`~reconciler.errors.ProviderError`
  subclasses. Credentials live only in the ``Authorization`` header (never in URLs or log
  lines); server-supplied text is redacted before it is quoted, and every error leaving a
  public method passes through :meth:`CtmProvider._redact` once more.

Logger ``reconciler.providers.ctm``: ``request: method=GET path=/accounts page=2 status=200
ms=21 attempts=1`` at DEBUG for every request, ``retry: ...`` at INFO for every retry.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import certifi
from urllib3 import BaseHTTPResponse, PoolManager, ProxyManager, Timeout
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    InvalidHeader,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    ResponseError,
    SSLError,
)
from urllib3.util import Retry, make_headers, parse_url

from reconciler.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderTransientError,
)
from reconciler.models import LiveAccount, LiveNumber, LiveState, ProviderSettings, is_loopback
from reconciler.providers import wire
from reconciler.providers.base import NumberField, Provider

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

PER_PAGE = wire.MAX_PER_PAGE
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
ACCOUNT_STATUSES = ("active", "paused", "stopped")
NUMBER_VALUES = {"calls": ("allowed", "stopped"), "swapping": ("active", "paused")}


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request tries. Defaults are for the real API; tests shrink the waits."""

    retries: int = 6  # retries after the first attempt, all causes together
    connect_retries: int = 2  # of which for refused/failed connections
    backoff_factor: float = 0.5  # waits 0, 1, 2, 4, 8, 10 s ... (first retry is immediate)
    backoff_max: float = 10.0
    backoff_jitter: float = 0.5  # plus uniform(0, jitter) seconds
    retry_after_max: float = 60.0  # a longer Retry-After fails the request at once
    budget_seconds: float = 120.0  # no retry starts later than this after the request began


class TokenBucket:
    """Thread-safe token bucket (in GCRA form): `rate` requests per second, `burst` at once.

    Each caller reserves the next slot under the lock and sleeps outside it, so waiting
    threads are served in order and the long-run rate never exceeds `rate`.
    """

    def __init__(self, rate: float, burst: int = 1) -> None:
        self._interval = 1.0 / rate
        self._tolerance = (max(1, burst) - 1) * self._interval
        self._tat = 0.0  # theoretical arrival time of the next request
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a token; return the seconds waited."""
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat, now)
            wait = tat - self._tolerance - now
            self._tat = tat + self._interval
        if wait > 0:
            time.sleep(wait)
            return wait
        return 0.0

    def defer(self, seconds: float) -> None:
        """Hand out no token for `seconds` (a server's Retry-After), to any thread."""
        with self._lock:
            self._tat = max(self._tat, time.monotonic() + seconds + self._tolerance)


class _RetryGate:
    """Shared by all retries of all requests: paces, bounds, counts and logs them."""

    def __init__(self, policy: RetryPolicy, bucket: TokenBucket) -> None:
        self.policy = policy
        self.bucket = bucket
        self.local = threading.local()
        self.lock = threading.Lock()
        self.retries = 0

    def begin(self) -> None:
        self.local.started = time.monotonic()
        self.local.attempts = 1
        self.local.gave_up = ""

    @property
    def attempts(self) -> int:
        return getattr(self.local, "attempts", 1)

    @property
    def gave_up(self) -> str:
        return getattr(self.local, "gave_up", "")

    def refuse(self, wait: float, retry_after: float | None) -> str:
        """Why not to retry after waiting `wait` s ("" = go ahead)."""
        if retry_after is not None and retry_after > self.policy.retry_after_max:
            return (
                f"server asks to retry after {retry_after:.0f} s, "
                f"more than the {self.policy.retry_after_max:.0f} s this client waits"
            )
        started = getattr(self.local, "started", time.monotonic())
        if time.monotonic() + wait - started > self.policy.budget_seconds:
            return f"retry budget of {self.policy.budget_seconds:.0f} s spent"
        return ""

    def after_wait(self) -> None:
        self.bucket.acquire()
        self.local.attempts = self.attempts + 1
        with self.lock:
            self.retries += 1


class _GatedRetry(Retry):
    """urllib3 Retry that also asks a :class:`_RetryGate` (time budget, rate limit, counts)."""

    gate: _RetryGate | None = None

    def new(self, **kw: Any) -> _GatedRetry:
        fresh = super().new(**kw)
        fresh.gate = self.gate
        return fresh

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            return super().parse_retry_after(retry_after)
        except InvalidHeader:
            return 0.0  # unparseable: fall back to exponential backoff

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> _GatedRetry:
        fresh = super().increment(method, url, response, error, _pool, _stacktrace)
        if self.gate is None:
            return fresh
        retry_after = fresh.get_retry_after(response) if response is not None else None
        wait = retry_after or fresh.get_backoff_time()
        why = self.gate.refuse(wait, retry_after)
        if why:
            self.gate.local.gave_up = why
            raise MaxRetryError(_pool, url, error or ResponseError(why))  # type: ignore[arg-type]
        cause = f"status={response.status}" if response is not None else _cause(error)
        path = urlsplit(url or "").path
        log.info("retry: method=%s path=%s %s wait=%.2f", method, path, cause, wait)
        if retry_after:
            self.gate.bucket.defer(retry_after)
        return fresh

    def sleep(self, response: Any = None) -> None:
        super().sleep(response)
        if self.gate is not None:
            self.gate.after_wait()


def _cause(error: Exception | None) -> str:
    if isinstance(error, ProtocolError):
        return "error=connection_dropped"
    if isinstance(error, ReadTimeoutError):
        return "error=read_timeout"
    if isinstance(error, NewConnectionError):
        return "error=connect_failed"
    return f"error={type(error).__name__}"


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


MIN_SECRET_LENGTH = 8


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


def _seg(value: str) -> str:
    """An id as one URL path segment ("../x" cannot escape its place)."""
    return quote(str(value), safe="")


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _paging(page: int) -> dict[str, int]:
    return {"page": page, "per_page": PER_PAGE}


def _results(futures: list[Future[R]]) -> list[R]:
    """The futures' results in order; the first failure cancels the rest."""
    try:
        return [f.result() for f in futures]
    except BaseException:
        for f in futures:
            f.cancel()
        raise


def _redacting(method: Callable[..., T]) -> Callable[..., T]:
    """Last line of defence: no ProviderError leaves a public method with a secret in it."""

    @functools.wraps(method)
    def wrapper(self: CtmProvider, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except ProviderError as exc:
            clean = self._redact(str(exc))
            if clean == str(exc):
                raise
            raise type(exc)(clean) from None

    return wrapper


@dataclass(frozen=True)
class _Page:
    numbers: list[LiveNumber]
    total_pages: int


class CtmProvider(Provider):
    """Reads and writes accounts and numbers over the provider's REST API (see module doc)."""

    kind = "ctm"

    def __init__(
        self,
        settings: ProviderSettings,
        environ: Mapping[str, str] | None = None,
        *,
        retry: RetryPolicy | None = None,
        burst: int | None = None,
    ) -> None:
        self._base = check_base_url(settings.base_url)
        self._path_prefix = urlsplit(self._base).path
        self._key_vars = (settings.access_key_env, settings.secret_key_env)
        access, secret = self._credentials(settings, {} if environ is None else environ)
        token = base64.b64encode(f"{access}:{secret}".encode()).decode("ascii")
        self._redactor = secret_pattern(access, secret)
        self.concurrency = settings.concurrency
        self.timeout = settings.timeout_seconds
        rps = settings.requests_per_second
        self.burst = burst if burst is not None else max(1, int(rps // 10))
        self.retry_policy = retry or RetryPolicy()
        self._gate = _RetryGate(self.retry_policy, TokenBucket(rps, self.burst))
        self._headers = {
            "Authorization": f"Basic {token}",
            "Accept": "application/json",
            "User-Agent": "reconciler",
        }
        self._http = self._make_pool()
        self._lock = threading.Lock()
        self.requests_made = 0  # first attempts; retries are in `retries_made`
        self._pool: ThreadPoolExecutor | None = None  # `concurrency` threads, made on first use
        # Reads started by `prefetch` for the next `read`: each account's first numbers page
        # (in flight or not yet decoded; decoded, in `_ready`), page 1 of the account list,
        # and the accounts whose page has arrived since `prefetch` last looked.
        self._early: dict[str, Future[BaseHTTPResponse | None]] = {}
        self._ready: dict[str, _Page | None] = {}
        self._early_list: Future[Any] | None = None
        self._arrived: deque[str] = deque()

    @property
    def target(self) -> str:
        return self._base

    @property
    def retries_made(self) -> int:
        return self._gate.retries

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self._early, self._ready, self._early_list = {}, {}, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # in-flight requests end first
        self._http.clear()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="ctm")
            return self._pool

    # --- setup --------------------------------------------------------------------------

    def _credentials(
        self, settings: ProviderSettings, environ: Mapping[str, str]
    ) -> tuple[str, str]:
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

    def _make_pool(self) -> PoolManager:
        """The connection pool: retries, timeouts, TLS and (for remote hosts) proxy."""
        p = self.retry_policy
        retry = _GatedRetry(
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
        retry.gate = self._gate
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
            return PoolManager(**options)
        auth = parse_url(proxy).auth
        headers = make_headers(proxy_basic_auth=auth) if auth else None
        return ProxyManager(proxy, proxy_headers=headers, **options)

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
            f"{_one_line(where, 120)}"
        )

    def _proxy(self) -> str | None:
        """The proxy the environment names for base_url (none for loopback hosts)."""
        if is_loopback(urlsplit(self._base).hostname or ""):
            return None  # never send loopback traffic through an env proxy
        import requests.utils  # ~20 ms to import, and needed for remote hosts only

        proxies = requests.utils.get_environ_proxies(self._base)
        proxy = requests.utils.select_proxy(self._base, proxies)
        return requests.utils.prepend_scheme_if_needed(proxy, "http") if proxy else None

    # --- reads --------------------------------------------------------------------------

    def prefetch(self, account_id: str) -> None:
        """Start reading this account's first page of numbers now; `read` picks it up.

        Called while the config is still loading, so the waits on the network overlap the
        CPU work of parsing it. A prefetched account costs no extra request when `read` is
        then asked for it (an id the provider does not know costs one: its numbers 404).
        Once two accounts are announced, `read` is going to list accounts, so page 1 of the
        list starts too. Pages that have arrived meanwhile are decoded here, in the caller's
        thread, between its own steps: the workers stay free for requests, and `read`
        finds most pages ready.
        """
        account_id = str(account_id)
        pool = self._executor()
        with self._lock:
            if account_id in self._early or account_id in self._ready:
                return
            future = pool.submit(self._fetch_numbers, account_id, 1)
            self._early[account_id] = future
            if len(self._early) + len(self._ready) == 2:
                self._early_list = pool.submit(self._get, "/accounts", 1)
        future.add_done_callback(lambda _: self._arrived.append(account_id))
        arrived = []
        while self._arrived:
            arrived.append(self._arrived.popleft())
        self._decode_early(arrived, self._early, self._ready)

    def _decode_early(
        self,
        account_ids: Iterable[str],
        early: dict[str, Future[BaseHTTPResponse | None]],
        ready: dict[str, _Page | None],
    ) -> None:
        """Decode these prefetched pages (waiting for them): from `early` into `ready`.

        A page that failed, or fails to decode, stays in `early`: `read` reports it where
        it would have without prefetching (after the account list, say).
        """
        for account_id in account_ids:
            future = early.get(account_id)
            if future is None or future.exception() is not None:
                continue
            try:
                ready[account_id] = self._numbers_of(account_id, future.result())
            except ProviderError:
                continue
            del early[account_id]

    @_redacting
    def read(self, account_ids: Sequence[str]) -> LiveState:
        wanted = list(dict.fromkeys(str(a) for a in account_ids))
        with self._lock:
            early, self._early = self._early, {}
            ready, self._ready = self._ready, {}
            early_list, self._early_list = self._early_list, None
        try:
            if not wanted:
                return LiveState(accounts={})
            pool = self._executor()
            # The account lookups start first, so they queue in the pool alongside the
            # prefetched pages still in flight instead of being one more round trip after
            # them; the prefetched pages are decoded while they run.
            finding = self._start_finding(wanted, pool, early_list)
            self._decode_early(list(early), early, ready)
            found = finding()
            gone = self._attach_numbers(list(found.values()), pool, early, ready)
        finally:
            for future in early.values():  # announced, but not asked for or not found
                future.cancel()
        accounts = {a: found[a] for a in wanted if a in found and a not in gone}
        return LiveState(accounts=accounts, missing=[a for a in wanted if a not in accounts])

    def _start_finding(
        self, wanted: list[str], pool: ThreadPoolExecutor, early_list: Future[Any] | None
    ) -> Callable[[], dict[str, LiveAccount]]:
        """Start finding the wanted accounts in the fewest requests; the function returned
        waits for them and gives the accounts the provider knows, by id.

        One account: its GET. Several: list page 1 (waited for here; prefetch started it),
        then the rest of the list or single GETs for the ids page 1 lacks, whichever costs
        less.
        """
        listed: dict[str, Any] = {}
        pages: list[Future[Any]] = []
        gets: dict[str, Future[Any]] = {}
        if len(wanted) == 1:
            gets = {a: pool.submit(self._get_account, a) for a in wanted}
        else:
            first = early_list.result() if early_list else self._get("/accounts", page=1)
            listed = self._accounts_on(first, "/accounts")
            rest = [a for a in wanted if a not in listed]
            more = list(range(2, self._total_pages(first, "/accounts") + 1))
            if rest and more:
                if len(rest) < len(more):
                    gets = {a: pool.submit(self._get_account, a) for a in rest}
                else:
                    pages = [pool.submit(self._get, "/accounts", n) for n in more]

        def finish() -> dict[str, LiveAccount]:
            for page in _results(pages):
                listed.update(self._accounts_on(page, "/accounts"))
            for account_id, data in zip(gets, _results(list(gets.values())), strict=True):
                if data is not None:
                    got = data.get("id") if isinstance(data, dict) else None
                    if str(got) != account_id:
                        raise ProviderError(
                            f"ctm: GET /accounts/{account_id}: the provider answered for "
                            f"another account ({self._redact(str(got)[:40])!r})"
                        )
                    listed[account_id] = data
            convert = wire.account_from_wire
            return {
                a: self._convert("/accounts", convert, listed[a]) for a in wanted if a in listed
            }

        return finish

    def _get_account(self, account_id: str) -> Any:
        """GET /accounts/{id}: the wire dict, or None if the provider does not know it."""
        try:
            return self._get(f"/accounts/{_seg(account_id)}")
        except ProviderNotFound:
            return None

    def _accounts_on(self, page: Any, path: str) -> dict[str, Any]:
        items = self._items(page, "accounts", path)
        try:
            return {str(item["id"]): item for item in items}
        except (KeyError, TypeError):
            raise ProviderError(
                f"ctm: GET {path}: malformed response: account without id"
            ) from None

    def _attach_numbers(
        self,
        accounts: list[LiveAccount],
        pool: ThreadPoolExecutor,
        early: dict[str, Future[BaseHTTPResponse | None]],
        ready: dict[str, _Page | None],
    ) -> set:
        """Fill in every account's numbers; return the ids whose numbers 404 (gone).

        First pages of prefetched accounts are taken from `ready` (decoded) or `early` (in
        flight; removed from it).
        """
        first_jobs = [(acc.id, 1) for acc in accounts]
        firsts = self._pages(
            first_jobs,
            [
                ready[a]
                if a in ready
                else early.pop(a, None) or pool.submit(self._fetch_numbers, a, n)
                for a, n in first_jobs
            ],
        )
        more = [
            (acc, n)
            for acc, first in zip(accounts, firsts, strict=True)
            if first is not None
            for n in range(2, first.total_pages + 1)
        ]
        more_jobs = [(acc.id, n) for acc, n in more]
        pages = firsts + self._pages(
            more_jobs, [pool.submit(self._fetch_numbers, a, n) for a, n in more_jobs]
        )
        gone: set[str] = set()
        seen: set[tuple[str, str]] = set()
        for acc, page in zip([*accounts, *(acc for acc, _n in more)], pages, strict=True):
            if page is None:
                gone.add(acc.id)
                continue
            for number in page.numbers:
                if (acc.id, number.id) not in seen:  # a page boundary shifted: count once
                    seen.add((acc.id, number.id))
                    acc.numbers.append(number)
        return gone

    def _fetch_numbers(self, account_id: str, page: int) -> BaseHTTPResponse | None:
        """One page of an account's numbers, not yet decoded; None if the account is gone.

        Runs in a worker thread. Decoding and converting the page (about a third of the CPU
        a page costs) is left to the thread that called `read`, so the worker is free for
        its next request sooner: with 8 requests in flight, a fleet read is then ~10%
        faster.
        """
        try:
            return self._exchange("GET", self._numbers_path(account_id), params=_paging(page))
        except ProviderNotFound:
            return None

    def _pages(
        self,
        jobs: list[tuple[str, int]],
        sources: list[Future[BaseHTTPResponse | None] | _Page | None],
    ) -> list[_Page | None]:
        """Each job's page, decoded here as it arrives, in order (a source that is not a
        future is a page decoded already); a failure cancels the rest."""
        try:
            return [
                self._numbers_of(account_id, got.result()) if isinstance(got, Future) else got
                for (account_id, _), got in zip(jobs, sources, strict=True)
            ]
        except BaseException:
            for got in sources:
                if isinstance(got, Future):
                    got.cancel()
            raise

    def _numbers_of(self, account_id: str, resp: BaseHTTPResponse | None) -> _Page | None:
        """A fetched numbers page decoded and converted (None stays None: gone)."""
        if resp is None:
            return None
        data = self._json("GET", self._numbers_path(account_id), resp)
        path = f"/accounts/{account_id}/numbers"
        items = self._items(data, "numbers", path)
        numbers = self._convert(path, wire.numbers_from_wire, items, account_id)
        return _Page(numbers, self._total_pages(data, path))

    @staticmethod
    def _numbers_path(account_id: str) -> str:
        return f"/accounts/{_seg(account_id)}/numbers"

    def _items(self, page: Any, key: str, path: str) -> list:
        items = page.get(key) if isinstance(page, dict) else None
        if not isinstance(items, list):
            raise ProviderError(f"ctm: GET {path}: malformed response: no {key!r} list")
        return items

    def _total_pages(self, page: Any, path: str) -> int:
        if not isinstance(page, dict):
            raise ProviderError(f"ctm: GET {path}: malformed response: not an object")
        total = page.get("total_pages")
        if total is None and page.get("next_page") is None:
            return 1
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise ProviderError(f"ctm: GET {path}: malformed response: bad total_pages")
        return total

    # --- writes -------------------------------------------------------------------------

    @_redacting
    def set_account_status(self, account_id: str, status: str) -> LiveAccount:
        if status not in ACCOUNT_STATUSES:
            raise ValueError(f"unknown account status {status!r}")
        path, body = wire.account_status_write(_seg(account_id), status)
        data = self._written(path, self._request("POST", path, body=body), "account")
        account = self._convert(path, wire.account_from_wire, data, method="POST")
        if account.id != str(account_id) or account.status != status:
            raise ProviderError(
                f"ctm: POST {path}: write not applied: the response shows account "
                f"{account.id} with status {account.status}, expected {status}"
            )
        return account

    @_redacting
    def set_number(
        self, account_id: str, number_id: str, field: NumberField, value: str
    ) -> LiveNumber:
        if value not in NUMBER_VALUES.get(field, ()):
            raise ValueError(f"cannot set number {field!r} to {value!r}")
        path, body = wire.number_write(_seg(account_id), _seg(number_id), field, value)
        data = self._written(path, self._request("POST", path, body=body), "number")
        number = self._convert(path, wire.number_from_wire, data, str(account_id), method="POST")
        now = getattr(number, field)
        if number.id != str(number_id) or now != value:
            raise ProviderError(
                f"ctm: POST {path}: write not applied: the response shows number "
                f"{number.id} with {field} {now}, expected {value}"
            )
        return number

    def _written(self, path: str, data: Any, key: str) -> Any:
        """The object of a write's `{"status": "success", key: {...}}` response."""
        if isinstance(data, dict) and data.get("status") == "error":
            reason = data.get("reason")
            said = self._redact(_one_line(reason)) if isinstance(reason, str) else "no reason given"
            raise ProviderError(f"ctm: POST {path}: the provider refused the write: {said}")
        if not isinstance(data, dict) or data.get("status") != "success" or key not in data:
            shape = sorted(data)[:5] if isinstance(data, dict) else type(data).__name__
            raise ProviderError(
                f"ctm: POST {path}: write not applied: expected "
                f'{{"status": "success", "{key}": ...}}, got {self._redact(str(shape))}'
            )
        return data[key]

    def _convert(self, path: str, fn: Callable[..., T], *args: Any, method: str = "GET") -> T:
        try:
            return fn(*args)
        except ProviderError as exc:
            raise ProviderError(f"ctm: {method} {path}: {self._redact(str(exc))}") from None

    # --- HTTP ---------------------------------------------------------------------------

    def _get(self, path: str, page: int | None = None) -> Any:
        return self._request("GET", path, params=None if page is None else _paging(page))

    def _request(
        self, method: str, path: str, *, params: dict | None = None, body: dict | None = None
    ) -> Any:
        """One API call (with its retries); the decoded JSON body of a 2xx answer."""
        return self._json(method, path, self._exchange(method, path, params=params, body=body))

    def _exchange(
        self, method: str, path: str, *, params: dict | None = None, body: dict | None = None
    ) -> BaseHTTPResponse:
        """One API call (with its retries): the 2xx response, its body read and its
        connection back in the pool; `_json` decodes it."""
        self._gate.bucket.acquire()
        self._gate.begin()
        with self._lock:
            self.requests_made += 1
        t0 = time.monotonic()
        url = self._base + path
        if params:
            url += "?" + urlencode(params)
        headers = self._headers
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers = {**headers, "Content-Type": "application/json"}
        try:
            resp = self._http.urlopen(
                method, url, body=data, headers=headers, redirect=False, preload_content=True
            )
        except HTTPError as exc:
            err = self._network_error(method, path, exc)
            log.debug("request: method=%s path=%s failed: %s", method, path, err)
            raise err from None
        page = (params or {}).get("page", "-")
        ms = (time.monotonic() - t0) * 1000
        log.debug(
            "request: method=%s path=%s page=%s status=%d ms=%d attempts=%d",
            *(method, path, page, resp.status, ms, self._gate.attempts),
        )
        if not 200 <= resp.status < 300:
            raise self._http_error(method, path, resp)
        return resp

    def _json(self, method: str, path: str, resp: BaseHTTPResponse) -> Any:
        try:
            return json.loads(resp.data)
        except ValueError:
            kind = resp.headers.get("Content-Type", "no content type")
            raise ProviderError(
                f"ctm: {method} {path}: malformed response: not JSON ({_one_line(kind, 60)})"
            ) from None

    def _http_error(self, method: str, path: str, resp: BaseHTTPResponse) -> ProviderError:
        code = resp.status
        head = f"ctm: {method} {path}: {code} {_one_line(resp.reason or '', 60)}".rstrip()
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
            why = self._gate.gave_up or "retries exhausted"
            tail = f": {reason}" if reason else ""
            return ProviderTransientError(
                f"{head}{tail}: gave up after {self._gate.attempts} attempts ({why})"
            )
        return ProviderError(f"{head}: {reason or 'request refused'}")

    def _server_reason(self, resp: BaseHTTPResponse) -> str:
        try:
            data = json.loads(resp.data)
        except ValueError:
            return ""
        reason = data.get("reason") if isinstance(data, dict) else None
        return self._redact(_one_line(reason)) if isinstance(reason, str) else ""

    def _network_error(self, method: str, path: str, exc: HTTPError) -> ProviderError:
        """A urllib3 failure (usually MaxRetryError around its cause) as one line."""
        cause: BaseException = exc
        if isinstance(exc, MaxRetryError):
            cause = exc.reason or exc
        origin = self._base[: len(self._base) - len(self._path_prefix)]
        tries = f"after {self._gate.attempts} attempts"
        if self._gate.gave_up:
            tries += f"; {self._gate.gave_up}"
        if isinstance(cause, SSLError):
            found = re.search(r"\[SSL: [A-Z_]+\] ([^(')]+)", str(cause))
            detail = found.group(1).strip() if found else "handshake failed"
            return ProviderError(f"ctm: {method} {path}: TLS error with {origin}: {detail}")
        if isinstance(cause, ProxyError):
            text = "cannot connect through the proxy named by HTTPS_PROXY/HTTP_PROXY"
        elif isinstance(cause, NameResolutionError):
            text = f"cannot resolve host {urlsplit(self._base).hostname} (DNS lookup failed)"
        elif isinstance(cause, NewConnectionError):
            refused = "refused" in str(cause).lower()
            text = f"cannot connect to {origin}" + (" (connection refused)" if refused else "")
        elif isinstance(cause, ConnectTimeoutError):
            text = f"connecting to {origin} timed out after {self.timeout:g} s"
        elif isinstance(cause, ReadTimeoutError):
            text = f"no response within {self.timeout:g} s (timeout_seconds)"
        elif isinstance(cause, ProtocolError):
            text = "the connection was closed without a response"
        else:
            text = f"request failed ({type(cause).__name__})"
        return ProviderTransientError(f"ctm: {method} {path}: {text} ({tries})")

    def _redact(self, text: str) -> str:
        text = self._redactor.sub("***", text)
        return re.sub(r"(?i)(basic\s+)[A-Za-z0-9+/=]{6,}", r"\1***", text)
