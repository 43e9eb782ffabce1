"""Creating a sandbox database: built in a temporary file next to its final path and
swapped in with one rename, so readers see the old database or the complete new one."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

from reconciler.providers.sandbox.clock import utc_now
from reconciler.providers.sandbox.store import SandboxDbError
from reconciler.providers.sandbox.tables import (
    ACCOUNT_COLUMNS,
    NUMBER_COLUMNS,
    SCHEMA_SQL,
    SCHEMA_VERSION,
    Row,
)


def create_database(path: Path | str, accounts: Iterable[Row], numbers: Iterable[Row]) -> None:
    """Create or replace the database at `path` with these rows, atomically.

    The new database is built in a temporary file next to `path` and moved over it with
    os.replace, so readers see either the old database or the complete new one. A local
    I/O failure (a parent that is a file, a full disk) is a `SandboxDbError` naming the
    path, and the temporary file is removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot_create(path, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _fill(tmp, accounts, numbers)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        # A leftover WAL of the old file would be replayed onto the new one: drop it first.
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, path)
    except BaseException as exc:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with suppress(OSError):
                Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _cannot_create(path, exc) from None
        if isinstance(exc, sqlite3.DatabaseError):
            raise SandboxDbError(f"{path}: cannot create the sandbox database ({exc})") from None
        raise


def _cannot_create(path: Path, exc: OSError) -> SandboxDbError:
    if isinstance(exc, FileExistsError):  # mkdir of a parent that is a regular file
        reason = f"{exc.filename} is not a directory"
    elif isinstance(exc, NotADirectoryError):
        reason = "a parent of it is a regular file, not a directory"
    elif isinstance(exc, IsADirectoryError) and exc.filename2 is not None:
        reason = f"{path} is a directory"
    else:
        reason = exc.strerror or str(exc)
    return SandboxDbError(f"{path}: cannot create the sandbox database ({reason})")


def _fill(tmp: Path, accounts: Iterable[Row], numbers: Iterable[Row]) -> None:
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        # No journal while building: the file is private until os.replace publishes it.
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.executescript(SCHEMA_SQL)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("schema_version", str(SCHEMA_VERSION)), ("created", utc_now())],
        )
        conn.executemany(
            f"INSERT INTO accounts ({', '.join(ACCOUNT_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(ACCOUNT_COLUMNS))})",
            accounts,
        )
        conn.executemany(
            f"INSERT INTO numbers ({', '.join(NUMBER_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(NUMBER_COLUMNS))})",
            numbers,
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")  # persistent in the file header
    except sqlite3.IntegrityError as exc:
        raise SandboxDbError(f"cannot build the sandbox database: {exc}") from None
    finally:
        conn.close()
