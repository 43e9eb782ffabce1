"""SQLite store behind the embedded sandbox provider and its HTTP server.

One database file holds the sandbox's live state: `accounts`, `numbers`, an `audit` log of
every write that changed something, and `meta` (schema_version). The database runs in WAL
mode so readers never block the single writer; every write is one `BEGIN IMMEDIATE`
transaction that reads the current value, changes it only if it differs, and records one
audit row per changed field. A write that sets the value already in place changes nothing
and writes no audit row, so a retried write leaves exactly one row.

Connections come from a small pool: each thread takes one for the duration of a call and
hands it back, so a threaded server uses one connection per busy thread without leaking a
connection per short-lived thread.

The file's identity (st_dev, st_ino) is recorded when the store opens it, and `sandbox init`
replaces a database by renaming a new file over the path: connections opened before keep
using the old, unlinked file. So every call checks the path still names the file it opened
(one stat, never per row) and raises `DatabaseReplaced` otherwise: reads before they start
and after their snapshot ends (data read from a file no longer at the path is never
returned), writes once they hold the write lock (nothing is written to an old file) and
again after COMMIT. A write whose COMMIT raced the rename went to the old file: it is
reported as lost (`DatabaseReplaced` with `committed=True`), never as done. A new
connection is only used if the path names the recorded file before and after opening it.

Any sqlite3.DatabaseError (a damaged or foreign file) becomes a `SandboxDbError`: one line
naming the path and SQLite's reason.

Rows are plain tuples in `ACCOUNT_COLUMNS` / `NUMBER_COLUMNS` order; `account_to_wire` and
`number_to_wire` turn them into the SPEC §7 wire shapes (money as "3.00", times ISO-8601 Z).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

from reconciler.errors import ProviderError, ProviderNotFound, ProviderTargetChanged
from reconciler.providers.sandbox.clock import sandbox_clock, utc_now
from reconciler.providers.sandbox.tables import (
    ACCOUNT_SELECT,
    ACCOUNT_STATUSES,
    MAX_OFFSET,
    NUMBER_SELECT,
    NUMBERS_PAGE_JSON,
    SCHEMA_VERSION,
    FileId,
    Row,
)

BUSY_TIMEOUT_S = 10.0
MAX_IDLE_CONNECTIONS = 32
VIA = ("direct", "http")


class SandboxDbError(ProviderError):
    """The database file is missing, not SQLite, or not a sandbox database."""


class DatabaseReplaced(SandboxDbError, ProviderTargetChanged):
    """The file at the database path is not the one this store opened (replaced or deleted)."""

    def __init__(self, path: Path, *, committed: bool = False) -> None:
        what = (
            "this write was committed to the old file and is lost; nothing more was written"
            if committed
            else "nothing more was written"
        )
        super().__init__(
            f"{path}: the sandbox database was replaced or deleted while this run was using it "
            f"(by `sandbox init`?); {what} — re-run to plan against the new database"
        )
        self.committed = committed


class NotFound(ProviderNotFound):
    """No such account, or no such number in that account."""


class Conflict(ProviderError):
    """The write is not possible in the current state (e.g. pausing an offline number)."""


class BadValue(ProviderError):
    """A write value outside its enum or of the wrong type."""


# --- wire shapes ------------------------------------------------------------------------


def account_to_wire(row: Row) -> dict[str, Any]:
    """accounts row -> SPEC §7 Account."""
    return {
        "id": int(row[0]) if row[1] else row[0],
        "name": row[2],
        "status": row[3],
        "monthly_fee": row[4],
        "updated": row[5],
    }


def number_to_wire(row: Row) -> dict[str, Any]:
    """numbers row -> SPEC §7 Number."""
    return {
        "id": row[0],
        "account_id": row[1],
        "number": row[2],
        "formatted": row[3],
        "name": row[4],
        "active": bool(row[5]),
        "paused": bool(row[6]),
        "source": {"name": row[7], "online": bool(row[8])},
        "stats": {"renewal_costs": row[9], "calls": row[10]},
        "active_changed": row[11],
        "updated": row[12],
    }


# --- the store --------------------------------------------------------------------------


class SandboxStore:
    """Reads and writes one sandbox database; safe to share between threads."""

    def __init__(self, path: Path | str) -> None:
        sandbox_clock()  # a bad RECONCILER_SANDBOX_CLOCK is refused before anything is read
        self.path = Path(path)
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self._trace: Callable[[str], None] | None = None
        if self.path.is_dir():
            raise SandboxDbError(
                f"{self.path}: is a directory, not a sandbox database; create one with "
                f"`reconciler sandbox init --db FILE --from FLEET.yaml`"
            )
        file_id = file_identity(self.path) if self.path.is_file() else None
        if file_id is None:
            raise SandboxDbError(
                f"{self.path}: no such sandbox database; create it with "
                f"`reconciler sandbox init --db {self.path} --from FLEET.yaml` "
                f"or `reconciler sandbox generate --db {self.path} ...`"
            )
        self.file_id: FileId = file_id
        self._check_schema()

    # the file's identity --------------------------------------------------------------

    def same_file(self) -> bool:
        """Whether the database path still names the file this store opened."""
        return file_identity(self.path) == self.file_id

    def check_same_file(self, *, committed: bool = False) -> None:
        """Raise `DatabaseReplaced` unless the path still names the file this store opened."""
        if file_identity(self.path) != self.file_id:
            raise DatabaseReplaced(self.path, committed=committed)

    # connections ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # mode=rw: never create an empty file if the database vanished meanwhile.
        uri = f"file:{quote(str(self.path.absolute()))}?mode=rw"
        self.check_same_file()
        try:
            conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,  # pooled: used by one thread at a time
            )
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None
        try:
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # The same file before and after opening: this connection has that file open.
            self.check_same_file()
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise self._unusable(exc) from None
            raise
        conn.set_trace_callback(self._trace)
        return conn

    def _unusable(self, exc: sqlite3.DatabaseError) -> SandboxDbError:
        """A SQLite error as one line: the path, SQLite's reason, and what to do."""
        if isinstance(exc, sqlite3.OperationalError):  # locked, I/O error, disk full, ...
            return SandboxDbError(f"{self.path}: cannot use the sandbox database ({exc})")
        return SandboxDbError(
            f"{self.path}: not a usable sandbox database ({exc}); re-create it with "
            f"`reconciler sandbox init --db {self.path} --from FLEET.yaml`"
        )

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise SandboxDbError(f"{self.path}: the sandbox store is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        healthy = False
        try:
            yield conn
            healthy = True
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None
        except ProviderError:
            healthy = True  # the store's own refusals leave the connection as it was
            raise
        finally:
            with self._lock:
                keep = healthy and not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        writing = begin == "BEGIN IMMEDIATE"
        with self._conn() as conn:
            if not writing:
                self.check_same_file()  # no read of a file that is gone already
            conn.execute(begin)
            try:
                if writing:
                    self.check_same_file()  # with the write lock held, before any change
                yield conn
            except BaseException:
                # The original error is the one worth reporting.
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        # Written, or read, from the file at the path: else the write is lost, the data old.
        self.check_same_file(committed=writing)

    def _read(self) -> Any:
        """A read transaction: one consistent snapshot for several SELECTs."""
        return self._transaction("BEGIN")

    def _write(self) -> Any:
        """A write transaction that holds the write lock from its first statement."""
        return self._transaction("BEGIN IMMEDIATE")

    @property
    def trace(self) -> Callable[[str], None] | None:
        """The callback `set_trace` installed, if any."""
        return self._trace

    def set_trace(self, callback: Callable[[str], None] | None) -> None:
        """Call `callback(sql)` for every statement run from now on (tests count queries)."""
        with self._lock:
            self._trace = callback
            for conn in self._idle:
                conn.set_trace_callback(callback)

    def close(self) -> None:
        """Close idle connections; busy ones close when their call returns."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> SandboxStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_schema(self) -> None:
        with self._conn() as conn:
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            except sqlite3.DatabaseError as exc:
                raise SandboxDbError(
                    f"{self.path}: not a sandbox database ({exc}); re-create it with "
                    f"`reconciler sandbox init --db {self.path} --from FLEET.yaml`"
                ) from None
        if row is None or row[0] != str(SCHEMA_VERSION):
            found = "none" if row is None else row[0]
            raise SandboxDbError(
                f"{self.path}: sandbox schema version {found}, expected {SCHEMA_VERSION}; "
                "recreate it with `reconciler sandbox init`"
            )

    # reads ---------------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        """(accounts, numbers) in the database."""
        with self._read() as c:
            accounts = c.execute("SELECT count(*) FROM accounts").fetchone()[0]
            numbers = c.execute("SELECT count(*) FROM numbers").fetchone()[0]
        return accounts, numbers

    def list_accounts(self, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
        """One page of accounts (1-based page) and the total count."""
        with self._read() as c:
            total = c.execute("SELECT count(*) FROM accounts").fetchone()[0]
            offset = (page - 1) * per_page
            rows = []
            if offset < total:  # also keeps absurd page numbers away from SQLite's int64
                rows = c.execute(
                    f"{ACCOUNT_SELECT} ORDER BY seq LIMIT ? OFFSET ?", (per_page, offset)
                ).fetchall()
        return [account_to_wire(r) for r in rows], total

    def account_summaries(self) -> list[Row]:
        """(id, name, status, number count) of every account in listing order: one query."""
        with self._read() as c:
            return c.execute(
                "SELECT a.id, a.name, a.status, "
                "(SELECT count(*) FROM numbers n WHERE n.account_id = a.id) "
                "FROM accounts a ORDER BY a.seq"
            ).fetchall()

    def get_account(self, account_id: str) -> dict[str, Any]:
        with self._read() as c:
            return account_to_wire(self._account_row(c, account_id))

    def list_numbers(
        self, account_id: str, page: int, per_page: int
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of an account's numbers and the account's total number count."""
        with self._read() as c:
            self._account_row(c, account_id)
            total = c.execute(
                "SELECT count(*) FROM numbers WHERE account_id = ?", (account_id,)
            ).fetchone()[0]
            offset = (page - 1) * per_page
            rows = []
            if offset < total:
                rows = c.execute(
                    f"{NUMBER_SELECT} WHERE account_id = ? ORDER BY seq LIMIT ? OFFSET ?",
                    (account_id, per_page, offset),
                ).fetchall()
        return [number_to_wire(r) for r in rows], total

    def list_numbers_json(self, account_id: str, page: int, per_page: int) -> tuple[str, int]:
        """`list_numbers` with the page as JSON text (an array), written by SQLite.

        The numbers list is the hot path of a fleet read, one request per account: building
        the rows' JSON in SQLite is ~3x cheaper than `number_to_wire` plus `json.dumps`, and
        one statement with one result row (`NUMBERS_PAGE_JSON`) keeps the server from
        being the bottleneck.
        """
        offset = min((page - 1) * per_page, MAX_OFFSET)
        args = {"account": account_id, "limit": per_page, "offset": offset}
        with self._conn() as c:
            self.check_same_file()
            exists, total, joined = c.execute(NUMBERS_PAGE_JSON, args).fetchone()
        self.check_same_file()
        if not exists:
            raise NotFound(f"no account {_short(account_id)}")
        return f"[{joined or ''}]", total

    def get_number(self, account_id: str, number_id: str) -> dict[str, Any]:
        with self._read() as c:
            return number_to_wire(self._number_row(c, account_id, number_id))

    def bulk_rows(self, account_ids: Sequence[str]) -> tuple[list[Row], list[Row]]:
        """Account and number rows of these accounts: two queries, one snapshot."""
        ids = _json_list(account_ids)
        with self._read() as c:
            accounts = c.execute(
                f"{ACCOUNT_SELECT} WHERE id IN (SELECT value FROM json_each(?)) ORDER BY seq",
                (ids,),
            ).fetchall()
            numbers = c.execute(
                f"{NUMBER_SELECT} WHERE account_id IN (SELECT value FROM json_each(?)) "
                "ORDER BY account_id, seq",  # index order: no sort step
                (ids,),
            ).fetchall()
        return accounts, numbers

    def all_rows(self) -> tuple[list[Row], list[Row]]:
        """Every account and number row, in listing order (for `sandbox show`)."""
        with self._read() as c:
            accounts = c.execute(f"{ACCOUNT_SELECT} ORDER BY seq").fetchall()
            numbers = c.execute(f"{NUMBER_SELECT} ORDER BY seq").fetchall()
        return accounts, numbers

    def audit(self, resource: str | None = None) -> list[dict[str, Any]]:
        """Audit rows, oldest first; only those of `resource` when given."""
        sql = "SELECT time, resource, field, from_value, to_value, via FROM audit"
        args: tuple[str, ...] = ()
        if resource is not None:
            sql, args = sql + " WHERE resource = ?", (resource,)
        with self._read() as c:
            rows = c.execute(sql + " ORDER BY seq", args).fetchall()
        keys = ("time", "resource", "field", "from", "to", "via")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def _account_row(self, c: sqlite3.Connection, account_id: str) -> Row:
        row = c.execute(f"{ACCOUNT_SELECT} WHERE id = ?", (account_id,)).fetchone()
        if row is None:
            raise NotFound(f"no account {_short(account_id)}")
        return row

    def _number_row(self, c: sqlite3.Connection, account_id: str, number_id: str) -> Row:
        row = c.execute(
            f"{NUMBER_SELECT} WHERE id = ? AND account_id = ?", (number_id, account_id)
        ).fetchone()
        if row is None:
            self._account_row(c, account_id)  # says "no account" when that is the problem
            raise NotFound(f"no number {_short(number_id)} in account {_short(account_id)}")
        return row

    # writes --------------------------------------------------------------------------

    def find_number(self, e164: str) -> tuple[str, str] | None:
        """(account id, number id) of the number with this E.164, or None."""
        with self._read() as c:
            row = c.execute(
                "SELECT account_id, id FROM numbers WHERE number = ?", (e164,)
            ).fetchone()
        return (row[0], row[1]) if row else None

    def set_account_status(
        self, account_id: str, status: str, via: str, *, at: str | None = None
    ) -> dict[str, Any]:
        """Set an account's status; return the Account after the write (`at`: when it
        happened, default now)."""
        _check_via(via)
        if status not in ACCOUNT_STATUSES:
            raise BadValue(f"status must be one of {', '.join(ACCOUNT_STATUSES)}")
        with self._write() as c:
            row = self._account_row(c, account_id)
            if row[3] != status:
                now = at or utc_now()
                c.execute(
                    "UPDATE accounts SET status = ?, updated = ? WHERE id = ?",
                    (status, now, account_id),
                )
                self._audit(c, now, f"account.{account_id}", "status", row[3], status, via)
                row = self._account_row(c, account_id)
        return account_to_wire(row)

    def update_number(
        self,
        account_id: str,
        number_id: str,
        active: bool | None = None,
        paused: bool | None = None,
        *,
        via: str,
        at: str | None = None,
    ) -> dict[str, Any]:
        """Set a number's `active` and/or `paused`; return the Number after the write."""
        _check_via(via)
        for name, value in (("active", active), ("paused", paused)):
            if value is not None and not isinstance(value, bool):
                raise BadValue(f"{name} must be true or false")
        if active is None and paused is None:
            raise BadValue("nothing to update: give active and/or paused")
        with self._write() as c:
            row = self._number_row(c, account_id, number_id)
            if paused and not row[8]:
                raise Conflict(
                    f"number {row[2]} cannot be paused: its source {row[7]!r} is not online "
                    "(only numbers of on-site sources are swapped)"
                )
            changes = [
                (name, bool(row[index]), value)
                for name, index, value in (("active", 5, active), ("paused", 6, paused))
                if value is not None and bool(row[index]) != value
            ]
            if changes:
                row = self._apply_number_changes(c, row, changes, via, at or utc_now())
        return number_to_wire(row)

    def _apply_number_changes(
        self,
        c: sqlite3.Connection,
        row: Row,
        changes: list[tuple[str, bool, bool]],
        via: str,
        now: str,
    ) -> Row:
        for name, old, new in changes:
            extra = ", active_changed = :now" if name == "active" else ""
            c.execute(
                f"UPDATE numbers SET {name} = :value, updated = :now{extra} WHERE id = :id",
                {"value": int(new), "now": now, "id": row[0]},
            )
            self._audit(c, now, f"number.{row[2]}", name, _b(old), _b(new), via)
        return self._number_row(c, row[1], row[0])

    @staticmethod
    def _audit(
        c: sqlite3.Connection, now: str, resource: str, field: str, old: str, new: str, via: str
    ) -> None:
        c.execute(
            "INSERT INTO audit (time, resource, field, from_value, to_value, via) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (now, resource, field, old, new, via),
        )


def file_identity(path: Path) -> FileId | None:
    """(st_dev, st_ino) of the file at `path`, or None when nothing can be found there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _b(value: bool) -> str:
    return "true" if value else "false"


def _check_via(via: str) -> None:
    if via not in VIA:
        raise ValueError(f"via must be one of {VIA}, not {via!r}")


def _short(value: str) -> str:
    """An id for a message, cut so a 10,000-character id cannot flood a log line."""
    return repr(value) if len(value) <= 64 else repr(value[:64] + "...")


def _json_list(values: Sequence[str]) -> str:
    return json.dumps([str(v) for v in values])
