"""One apply at a time per target on this machine.

An exclusive `flock` on a file named after the target. The kernel drops the lock when the
holder exits, however it exits (SIGKILL included), so a crashed apply never leaves a lock
that must be cleaned by hand; the file keeps who held it last, for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator

from reconciler.errors import ReconcilerError


class LockedError(ReconcilerError):
    """Another apply holds the lock for this target."""


def lock_dir() -> str:
    return os.environ.get("RECONCILER_LOCK_DIR") or os.path.join(
        tempfile.gettempdir(), f"reconciler-locks-{os.getuid()}"
    )


def lock_path(target: str) -> str:
    """Lock file for a target; a local database is keyed by its real path."""
    key = os.path.realpath(target) if os.path.exists(target) else target
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(lock_dir(), f"apply-{digest}.lock")


@contextlib.contextmanager
def apply_lock(target: str) -> Iterator[str]:
    """Hold the apply lock for `target`, or raise LockedError naming the holder."""
    path = lock_path(target)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                f"another apply is running against {target}: {_holder(fd)}; "
                "wait for it to finish (the lock is released when that process exits)"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "user": _user(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(
                os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)
            )[:200],
            "target": target,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return "holder unknown"
    return (
        f"pid {info.get('pid')} on {info.get('host')} by {info.get('user')} since "
        f"{info.get('started')} ({info.get('command')})"
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
