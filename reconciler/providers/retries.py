"""Pacing and retrying HTTP requests: a shared token bucket and urllib3 retries that ask a
gate (time budget, rate limit, counts) before each retry."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from urllib3.exceptions import (
    InvalidHeader,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.util import Retry

from reconciler.providers.deadlines import Call, current

log = logging.getLogger("reconciler.providers.ctm")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

_paced = threading.local()  # seconds this thread has waited for the rate limit, in all


def rate_limit_waited() -> float:
    """Seconds the calling thread has spent waiting for the rate limit so far: a write's
    time is told apart from its wait for a token (apply's per-action milliseconds)."""
    return getattr(_paced, "seconds", 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one request tries. Defaults are for the real API; tests shrink the waits."""

    retries: int = 6  # retries after the first attempt, all causes together
    connect_retries: int = 2  # of which for refused/failed connections
    backoff_factor: float = 0.5  # waits 0, 1, 2, 4, 8, 10 s ... (first retry is immediate)
    backoff_max: float = 10.0
    backoff_jitter: float = 0.5  # plus uniform(0, jitter) seconds
    retry_after_max: float = 60.0  # a longer Retry-After fails the request at once
    budget_seconds: float = 120.0  # no attempt runs later than this after the request began


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
            _paced.seconds = rate_limit_waited() + wait
            return wait
        return 0.0

    def defer(self, seconds: float) -> None:
        """Hand out no token for `seconds` (a server's Retry-After), to any thread."""
        with self._lock:
            self._tat = max(self._tat, time.monotonic() + seconds + self._tolerance)


class RetryGate:
    """Shared by all retries of all requests: paces, bounds, counts and logs them."""

    def __init__(self, policy: RetryPolicy, bucket: TokenBucket) -> None:
        self.policy = policy
        self.bucket = bucket
        self.lock = threading.Lock()
        self.retries = 0

    def refuse(self, call: Call, wait: float, retry_after: float | None) -> str:
        """Why not to retry after waiting `wait` s ("" = go ahead)."""
        if call.cut == "interrupted":
            return "interrupted"
        if retry_after is not None and retry_after > self.policy.retry_after_max:
            return (
                f"server asks to retry after {retry_after:.0f} s, "
                f"more than the {self.policy.retry_after_max:.0f} s this client waits"
            )
        if time.monotonic() + wait >= call.ends:
            return f"retry budget of {self.policy.budget_seconds:g} s spent"
        return ""

    def after_wait(self, call: Call) -> None:
        self.bucket.acquire()
        call.attempts += 1
        with self.lock:
            self.retries += 1


class GatedRetry(Retry):
    """urllib3 Retry that also asks a :class:`RetryGate` (time budget, rate limit, counts)."""

    gate: RetryGate | None = None

    def new(self, **kw: Any) -> GatedRetry:
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
    ) -> GatedRetry:
        fresh = super().increment(method, url, response, error, _pool, _stacktrace)
        call = getattr(current, "call", None)
        if self.gate is None or call is None:
            return fresh
        retry_after = fresh.get_retry_after(response) if response is not None else None
        wait = retry_after or fresh.get_backoff_time()
        why = self.gate.refuse(call, wait, retry_after)
        if why:
            call.gave_up = why
            raise MaxRetryError(_pool, url, error or ResponseError(why))  # type: ignore[arg-type]
        why = f"status={response.status}" if response is not None else cause(error, call)
        path = urlsplit(url or "").path
        log.info("retry: method=%s path=%s %s wait=%.2f", method, path, why, wait)
        if retry_after:
            self.gate.bucket.defer(retry_after)
        return fresh

    def sleep(self, response: Any = None) -> None:
        super().sleep(response)
        call = getattr(current, "call", None)
        if self.gate is not None and call is not None:
            self.gate.after_wait(call)


def cause(error: Exception | None, call: Call) -> str:
    if call.cut == "deadline":
        return "error=deadline"
    if isinstance(error, ProtocolError):
        return "error=connection_dropped"
    if isinstance(error, ReadTimeoutError):
        return "error=read_timeout"
    if isinstance(error, NewConnectionError):
        return "error=connect_failed"
    return f"error={type(error).__name__}"
