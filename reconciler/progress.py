"""How far a read of live state is, on stderr; and what a batch of provider calls cost.

A provider's ``read`` reports each account it has finished to a :class:`Progress`. While
the read runs, stderr shows it:

- on a terminal, a progress bar, once the read has taken :data:`BAR_AFTER` seconds (or
  the interval below, if that is shorter);
- anywhere else (CI logs, pipes), a line every :data:`INTERVAL` seconds (environment
  variable ``RECONCILER_PROGRESS_INTERVAL`` overrides it), the first one only once the
  read has taken that long, so a fast run prints nothing::

      reading live state: 12/30 accounts, 0 retries

Never on stdout: it carries the plan, JSON included. The label is "reading live state",
or what the caller names with :func:`labelled` ("verifying" after an apply).

:class:`Cost` measures a batch of calls (time, requests and retries sent) for the one
``-v`` line each batch logs, e.g. ``read 30 accounts, 3,000 numbers from URL (31
requests, 0 retries) in 2.10 s``.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from reconciler.models import LiveAccount

INTERVAL = 5.0  # seconds between progress lines when stderr is not a terminal
INTERVAL_ENV = "RECONCILER_PROGRESS_INTERVAL"
BAR_AFTER = 1.0  # a read done sooner shows no bar (no flicker on fast runs)
TICK = 0.2  # how often the bar is redrawn
READING = "reading live state"

_label: ContextVar[str] = ContextVar("progress_label", default=READING)


@contextmanager
def labelled(label: str) -> Iterator[None]:
    """Reads inside this block report as `label` (e.g. "verifying")."""
    token = _label.set(label)
    try:
        yield
    finally:
        _label.reset(token)


def interval() -> float:
    """Seconds between progress lines: RECONCILER_PROGRESS_INTERVAL if valid, else 5."""
    try:
        value = float(os.environ.get(INTERVAL_ENV) or INTERVAL)
    except ValueError:
        return INTERVAL
    return value if value > 0 and math.isfinite(value) else INTERVAL


class Progress:
    """How far one read is, shown on stderr while it runs (see the module doc).

    Use as a context manager: the display starts on entry, in a thread of its own that
    alone writes it, and has ended (thread joined) on exit. `advance` may be called from
    any thread.
    """

    def __init__(
        self,
        total: int,
        *,
        unit: str = "accounts",
        retries: Callable[[], int] = lambda: 0,
        stream: TextIO | None = None,
    ) -> None:
        self.total, self.unit, self.retries = total, unit, retries
        self.label = _label.get()
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def advance(self, n: int = 1) -> None:
        """`n` more accounts finished."""
        with self._lock:
            self.done = min(self.total, self.done + n)

    def line(self) -> str:
        """The progress line, e.g. `reading live state: 12/30 accounts, 0 retries`."""
        return f"{self.label}: {self.done}/{self.total} {self.unit}, {self.retries()} retries"

    def __enter__(self) -> Progress:
        if self.total > 0:
            self._thread = threading.Thread(target=self._show, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _show(self) -> None:
        try:
            if _isatty(self.stream):
                self._bar()
            else:
                self._lines()
        except (OSError, ValueError):  # stderr closed or gone: progress is not worth a failure
            pass

    def _lines(self) -> None:
        every = interval()
        while not self._stop.wait(every):
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def _bar(self) -> None:
        import click

        if self._stop.wait(min(BAR_AFTER, interval())):
            return
        bar = click.progressbar(
            length=self.total,
            label=self.label,
            file=self.stream,
            show_pos=True,
            item_show_func=lambda _: f"{self.unit}, {self.retries()} retries",
        )
        shown = 0
        with bar:
            while True:
                stopped = self._stop.wait(TICK)
                done = self.done
                bar.update(done - shown)
                bar.render_progress()  # the retry count may have changed without a step
                shown = done
                if stopped:
                    return


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def plural(n: int, word: str) -> str:
    """`1 account`, `3,000 numbers`, `2 retries` (for log lines)."""
    if n == 1:
        return f"1 {word[:-3] + 'y' if word.endswith('ies') else word[:-1]}"
    return f"{n:,} {word}"


def took(seconds: float) -> str:
    """A duration for a log line: `4 ms`, `0.84 s`, `19.3 s`."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


class Counting(Protocol):
    """What counts its requests: a Provider, or the ctm transport itself."""

    @property
    def requests_made(self) -> int: ...

    @property
    def retries_made(self) -> int: ...


class Cost:
    """What a batch of provider calls cost since it was made: time, and the requests and
    retries the provider sent (none for a local database)."""

    def __init__(self, provider: Counting) -> None:
        self.provider = provider
        self.started = time.monotonic()
        self.requests = provider.requests_made
        self.retries_at = provider.retries_made

    def retries(self) -> int:
        """Retries sent since the batch began."""
        return self.provider.retries_made - self.retries_at

    def __str__(self) -> str:
        """`(31 requests, 0 retries) in 2.10 s`, or `in 4 ms` if no request was sent."""
        sent = self.provider.requests_made - self.requests
        spent = took(time.monotonic() - self.started)
        if not sent:
            return f"in {spent}"
        return f"({plural(sent, 'requests')}, {plural(self.retries(), 'retries')}) in {spent}"


def read_line(accounts: Iterable[LiveAccount], missing: Collection[str]) -> str:
    """What a read found, for its -v line: `read 3 accounts (1 not found), 30 numbers`."""
    found = list(accounts)
    numbers = sum(len(a.numbers) for a in found)
    unknown = f" ({len(missing):,} not found)" if missing else ""
    return f"read {plural(len(found), 'accounts')}{unknown}, {plural(numbers, 'numbers')}"
