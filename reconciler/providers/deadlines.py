"""Total deadlines for HTTP requests, whatever the server does.

A socket timeout bounds one wait, not a request: a server that trickles a byte a second, or
streams an endless chunked body, never lets one wait run out. So every attempt of a
request (`Call`) has a deadline, and a watchdog thread shuts down the socket of each
connection whose attempt is past it; the blocked read then ends at once, in whichever
thread it is. `Watchdog.abort` cuts a client's requests in flight at once (a signal's grace
ran out). The connection and pool classes plug this into urllib3.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

WATCH_INTERVAL = 0.05  # how often the watchdog looks: deadlines hold to within this


class Call:
    """One request of one thread, all its attempts: its deadlines and why it was cut."""

    def __init__(self, timeout: float, budget: float, owner: object) -> None:
        self.owner = owner  # the Transport making it
        self.started = time.monotonic()
        self.timeout = timeout
        self.ends = self.started + budget  # the retry budget: no attempt runs past it
        self.deadline = self.ends
        self.cut = ""  # "" | "deadline" | "interrupted": why the current attempt was cut
        self.attempts = 1
        self.gave_up = ""

    def attempt(self) -> None:
        """A new attempt starts now (a connection is about to send the request); none
        starts once the call was interrupted."""
        if self.cut == "interrupted":
            raise ConnectionAbortedError("interrupted before the request was sent")
        self.deadline = min(time.monotonic() + self.timeout, self.ends)
        if self.cut == "deadline":
            self.cut = ""


current = threading.local()  # .call: the Call of the request this thread is making


class _Watchdog:
    """Shuts down the socket of every connection whose request is past its deadline.

    Connections are armed when they send a request and disarmed when they go back to the
    pool (or close), under one lock, so a connection is never cut once another request
    owns it.

    The lock is reentrant, and the loops walk a copy: the garbage collector can run while
    a thread holds it (any allocation: a new thread, a tuple), and a collected pool's
    finalizer closes its connections, which disarms them, in that same thread. With a
    plain lock that deadlocked an apply for good (seen in the hostile-provider fuzz).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._armed: dict[int, tuple[_Connection, Call]] = {}
        self._thread: threading.Thread | None = None

    def arm(self, conn: _Connection, call: Call) -> None:
        with self._lock:
            self._armed[id(conn)] = (conn, call)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ctm-deadlines", daemon=True)
                self._thread.start()

    def disarm(self, conn: object) -> None:
        with self._lock:
            self._armed.pop(id(conn), None)

    def abort(self, owner: object) -> int:
        """Cut every request `owner` has in flight now; return how many were cut."""
        with self._lock:
            armed = [(k, c) for k, c in self._armed.copy().items() if c[1].owner is owner]
            for key, (conn, call) in armed:
                self._armed.pop(key, None)
                call.cut = "interrupted"
                conn.cut()
        return len(armed)

    def _run(self) -> None:
        while True:
            time.sleep(WATCH_INTERVAL)
            now = time.monotonic()
            with self._lock:
                if not self._armed:  # idle: end; the next `arm` starts a new thread
                    self._thread = None
                    return
                for key, (conn, call) in self._armed.copy().items():
                    if now >= call.deadline:
                        self._armed.pop(key, None)
                        call.cut = call.cut or "deadline"
                        conn.cut()

    def settle(self) -> None:
        """Wait for the thread to end if nothing is armed (a closing client leaves none)."""
        with self._lock:
            thread = None if self._armed else self._thread
        if thread is not None:
            thread.join()


WATCHDOG = _Watchdog()


class _Connection(HTTPConnection):
    """A urllib3 connection the watchdog can cut, from the first byte of its connect on.

    It keeps a duplicate of its socket's descriptor: `shutdown` acts on the socket, not on
    one descriptor, so cutting the duplicate also ends a TLS handshake or read in progress
    on the wrapped socket, from another thread, without touching the TLS object.
    """

    _cutter: socket.socket | None = None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self._drop_cutter()
        self._cutter = sock.dup()
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        call = getattr(current, "call", None)
        if call is not None:
            call.attempt()
            WATCHDOG.arm(self, call)
        super().request(*args, **kwargs)

    def cut(self) -> None:
        """Called by the watchdog (under its lock)."""
        cutter = self._cutter
        if cutter is not None:
            # not connected yet or already closed: the attempt ends anyway
            with contextlib.suppress(OSError):
                cutter.shutdown(socket.SHUT_RDWR)

    def _drop_cutter(self) -> None:
        cutter, self._cutter = self._cutter, None
        if cutter is not None:
            cutter.close()

    def close(self) -> None:
        WATCHDOG.disarm(self)
        super().close()
        self._drop_cutter()


class _HTTPSConnection(_Connection, HTTPSConnection):
    pass


class Pool(HTTPConnectionPool):
    ConnectionCls = _Connection

    def _put_conn(self, conn: Any) -> None:
        WATCHDOG.disarm(conn)
        super()._put_conn(conn)


class HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection

    def _put_conn(self, conn: Any) -> None:
        WATCHDOG.disarm(conn)
        super()._put_conn(conn)
