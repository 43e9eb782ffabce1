"""`sandbox serve`'s request counters and the faults it injects on purpose (latency, 503s,
dropped write responses, a rate limit), for testing clients."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any


class ServerStats:
    """Thread-safe request counters: totals, reads, writes, per status, faults by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = self._reads = self._writes = 0
            self._by_status: Counter[int] = Counter()
            self._faults: Counter[str] = Counter()

    def request(self, method: str) -> None:
        with self._lock:
            self._total += 1
            if method in ("GET", "HEAD"):
                self._reads += 1
            elif method == "POST":
                self._writes += 1

    def status(self, status: int) -> None:
        with self._lock:
            self._by_status[status] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    @property
    def total(self) -> int:
        return self._total

    @property
    def reads(self) -> int:
        return self._reads

    @property
    def writes(self) -> int:
        return self._writes

    @property
    def by_status(self) -> dict[int, int]:
        with self._lock:
            return dict(self._by_status)

    @property
    def faults(self) -> dict[str, int]:
        """Injected faults by kind: latency, error, drop, rate_limit."""
        with self._lock:
            return dict(self._faults)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._total,
                "reads": self._reads,
                "writes": self._writes,
                "by_status": dict(self._by_status),
                "faults": dict(self._faults),
            }


class TokenBucket:
    """`rate` tokens per second, burst of about one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0 if a token was taken, else seconds until one will be there."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate


@dataclass
class Faults:
    latency_ms: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    rate_limit: float | None = None
    rng_seed: int | None = None

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        for name in ("error_rate", "drop_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ValueError("rate_limit must be > 0 requests per second")
        self._rng = random.Random(self.rng_seed)
        self._lock = threading.Lock()
        self.bucket = TokenBucket(self.rate_limit) if self.rate_limit else None

    def chance(self, rate: float) -> bool:
        """True with probability `rate` (seeded; one shared sequence for all threads)."""
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        with self._lock:
            return self._rng.random() < rate
