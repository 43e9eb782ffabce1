"""One apply at a time per target on this machine.

An exclusive `flock` on a file named after the target, in a private per-user directory:
`$RECONCILER_LOCK_DIR`, else `$XDG_RUNTIME_DIR/reconciler`, else
`~/.cache/reconciler/locks`, created with mode 0700. The kernel drops the lock when the
holder exits, however it exits (SIGKILL included), so a crashed apply never leaves a lock
that must be cleaned by hand; the file keeps who held it last, for the message. The file is
never removed: removing it on release would let two applies lock two different files.

What is guaranteed:
- Other local users cannot take, forge, redirect or remove a lock: the directory is refused
  unless it is a directory owned by you that neither group nor others can write (a symlink
  to it counts only if you own the symlink), and a lock file that is a symlink is refused,
  so an apply never writes its holder text through one.
- The file an apply holds is the file at the lock path once it holds it: the identity
  (device, inode) of the held descriptor is compared with the path after `flock`, and a file
  removed or replaced in between is opened again. Two applies that race therefore lock the
  same file, and one of them is refused.
- Holder text is read as untrusted: size-capped, parsed defensively, each field shortened
  and its control characters escaped.

What is not: a lock file removed or replaced while it is held (which, in a private
directory, only you or root can do) lets a second apply lock a new file; no file lock can
prevent that. The holder notices: `HeldLock.check` before the writes stops the apply with
nothing written, and the check on release fails the run with a line saying another apply
may have run at the same time. Nor does it span machines (`flock` is local), or guard a lock
directory whose parent others can write (the defaults are the user's own).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from reconciler.errors import ReconcilerError

_ATTEMPTS = 5  # opens of a lock file that keeps being replaced before giving up
_HOLDER_BYTES = 4096  # what is read of a lock file for the message; ours are ~200 bytes


class LockError(ReconcilerError):
    """The lock directory or lock file cannot be used safely."""


class LockedError(LockError):
    """Another apply holds the lock for this target."""


class LockLostError(LockError):
    """The lock file was removed or replaced while held."""


def lock_dir() -> str:
    """The private directory for lock files (see the module docstring)."""
    configured = os.environ.get("RECONCILER_LOCK_DIR")
    if configured:
        return configured
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return os.path.join(runtime, "reconciler")
    return os.path.join(os.path.expanduser("~"), ".cache", "reconciler", "locks")


def lock_key(target: str) -> str:
    """A URL as it is; a path by its real path, whether or not the file exists yet (so
    `sandbox init` of a new database and the apply on it share a lock)."""
    return target if "://" in target else os.path.realpath(target)


def lock_path(target: str) -> str:
    """Lock file for a target."""
    digest = hashlib.sha256(lock_key(target).encode()).hexdigest()[:16]
    return os.path.join(lock_dir(), f"apply-{digest}.lock")


@dataclass(frozen=True)
class HeldLock:
    """A lock being held: its file, and whether that file is still the one at the path."""

    path: str
    target: str
    fd: int
    dir_fd: int

    def intact(self) -> bool:
        return _same_file(self.fd, self.dir_fd, self.path)

    def check(self) -> None:
        """Raise LockLostError if the lock file was removed or replaced (before writing)."""
        if not self.intact():
            raise LockLostError(
                f"{self.path}: the lock file was removed or replaced while this run held it, "
                f"so another apply against {self.target} could start; nothing was applied: "
                "run it again"
            )


@contextlib.contextmanager
def apply_lock(target: str) -> Iterator[HeldLock]:
    """Hold the lock for `target`, or raise LockedError naming the holder (LockError when
    the directory or file cannot be used safely; one line naming the path)."""
    path = lock_path(target)
    dir_fd = _open_dir(os.path.dirname(path))
    try:
        held = HeldLock(path, target, _acquire(dir_fd, path, target), dir_fd)
        try:
            _write_holder(held)
            yield held
            if not held.intact():
                raise LockLostError(
                    f"{path}: the lock file was removed or replaced while this run held it; "
                    f"another apply against {target} may have run at the same time: check "
                    "live state with `reconciler drift`"
                )
        finally:
            os.close(held.fd)  # closing the descriptor releases the flock
    finally:
        os.close(dir_fd)


def _open_dir(path: str) -> int:
    """A descriptor on the lock directory, created 0700 if missing, checked to be private."""
    try:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o700)
            st = os.lstat(path)
        link = stat.S_ISLNK(st.st_mode)
        if link and st.st_uid != os.geteuid():
            raise LockError(
                f"lock directory {path} is a symlink owned by uid {st.st_uid}, not by you "
                f"(uid {os.geteuid()}); point RECONCILER_LOCK_DIR at a private directory"
            )
        if not link and not stat.S_ISDIR(st.st_mode):
            raise LockError(f"lock directory {path} is not a directory")
        fd = os.open(
            path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if link else os.O_NOFOLLOW)
        )
    except OSError as exc:
        raise _os_error(path, exc) from None
    try:
        _check_private(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_private(path: str, st: os.stat_result) -> None:
    if not stat.S_ISDIR(st.st_mode):
        raise LockError(f"lock directory {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise LockError(
            f"lock directory {path} is owned by uid {st.st_uid}, not by you "
            f"(uid {os.geteuid()}); another user could forge or redirect its locks"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise LockError(
            f"lock directory {path} is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); make it private: chmod 700 {path}"
        )


def _acquire(dir_fd: int, path: str, target: str) -> int:
    """The descriptor of the lock file at `path`, flocked; see the module docstring."""
    for _ in range(_ATTEMPTS):
        fd = _open_file(dir_fd, os.path.basename(path), path)
        try:
            _flock(fd, path, target)
            if _same_file(fd, dir_fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # removed or replaced between open and flock: lock the file there now
    raise LockError(f"{path}: the lock file keeps being removed or replaced; try again")


def _flock(fd: int, path: str, target: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LockedError(
            f"another apply is running against {target}: {_holder(fd)}; "
            "wait for it to finish (the lock is released when that process exits)"
        ) from None
    except OSError as exc:
        raise _os_error(path, exc) from None


def _open_file(dir_fd: int, name: str, path: str) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW: the last component is a symlink
            raise LockError(f"{path}: the lock file is a symlink; refusing to follow it") from None
        raise _os_error(path, exc) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LockError(f"{path}: the lock file is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _same_file(fd: int, dir_fd: int, path: str) -> bool:
    """Whether `fd` is the file now at `path` (not removed, not replaced)."""
    try:
        at_path = os.stat(os.path.basename(path), dir_fd=dir_fd, follow_symlinks=False)
        held = os.fstat(fd)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _os_error(path, exc) from None
    return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)


def _write_holder(held: HeldLock) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "user": _user(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[
            :200
        ],
        "target": held.target,
    }
    try:
        os.ftruncate(held.fd, 0)
        os.pwrite(held.fd, json.dumps(holder).encode(), 0)
    except OSError as exc:
        raise _os_error(held.path, exc) from None


def _holder(fd: int) -> str:
    """Who holds the lock, from text anyone with access to the file could have written."""
    try:
        raw = os.pread(fd, _HOLDER_BYTES + 1, 0)
        info = json.loads(raw.decode("utf-8")) if len(raw) <= _HOLDER_BYTES else None
    except (OSError, ValueError, RecursionError):
        info = None
    if not isinstance(info, dict):
        return "holder unknown"
    pid = info.get("pid")
    pid_text = str(pid) if type(pid) is int else "?"
    host, user, started = (_field(info.get(k), 64) for k in ("host", "user", "started"))
    return (
        f"pid {pid_text} on {host} by {user} since {started} ({_field(info.get('command'), 120)})"
    )


def _field(value: object, limit: int) -> str:
    from reconciler.render.safe import neutral

    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return "?"
    text = str(value)
    return neutral(text[:limit] + ("…" if len(text) > limit else ""))


def _os_error(path: str, exc: OSError) -> LockError:
    return LockError(f"{path}: cannot use it for the apply lock ({exc.strerror or exc})")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
