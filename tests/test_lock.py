"""The apply lock (issue 13, case 1, and the lock part of case 8): a private per-user
directory, no symlink followed, untrusted holder text, a held file that is still the one at
the path, and `sandbox init` behind the same lock. Through the real CLI and sandbox.

CI runs as root, so nothing here relies on a chmod making a path unwritable: a directory of
another user is made with chown, an unusable path is one under a regular file."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_cli_e2e import audit, run

from reconciler import engine
from reconciler.lock import LockedError, apply_lock, lock_path

NOBODY = 65534


def _db(project: Path) -> str:
    return str(project / ".reconciler" / "sandbox.db")


def _error(out: str) -> str:
    """The last line, which must be the one error line."""
    lines = out.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), out
    return lines[-1]


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, mode=0o700)
    path.chmod(0o700)
    return path


@pytest.fixture
def db(project: Path) -> str:
    code, out = run("plan")  # creates the database (the lock key is its real path)
    assert code == 0, out
    return _db(project)


def _lock_dir_env(monkeypatch: pytest.MonkeyPatch, home: Path, runtime: Path | None) -> None:
    monkeypatch.delenv("RECONCILER_LOCK_DIR", raising=False)
    monkeypatch.setenv("HOME", str(home))
    if runtime is None:
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    else:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))


def test_the_lock_dir_is_chosen_in_order_and_created_private(project, db, monkeypatch):
    home, runtime = project / "home", _private_dir(project / "run")
    expected = [
        (runtime, runtime / "reconciler"),
        (None, home / ".cache" / "reconciler" / "locks"),
    ]
    for xdg, where in expected:
        _lock_dir_env(monkeypatch, home, xdg)
        code, out = run("apply", "--auto-approve")
        assert code == 0, out
        assert [p.name for p in where.iterdir()] == [Path(lock_path(db)).name]
        assert stat.S_IMODE(where.stat().st_mode) == 0o700
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(project / "mine"))  # first of all
    code, out = run("apply", "--auto-approve")
    assert code == 0, out
    assert stat.S_IMODE((project / "mine").stat().st_mode) == 0o700
    assert len(list((project / "mine").iterdir())) == 1


def _theirs(d: Path) -> None:
    _private_dir(d)
    os.chown(d, NOBODY, NOBODY)


def _mode(mode: int) -> Callable[[Path], None]:
    return lambda d: _private_dir(d).chmod(mode)


def _symlink_to_theirs(d: Path) -> None:
    _theirs(d.parent / "theirs")
    d.symlink_to(d.parent / "theirs")


@pytest.mark.parametrize(
    ("where", "make", "says"),
    [
        ("locks", _theirs, "is owned by uid 65534, not by you"),
        ("locks", _mode(0o777), "is writable by group or others (mode 0777)"),
        ("locks", _mode(0o770), "is writable by group or others (mode 0770)"),
        ("locks", _symlink_to_theirs, "is owned by uid 65534, not by you"),
        ("locks", lambda d: d.write_text("x"), "is not a directory"),
        ("afile/locks", lambda d: d.parent.write_text("x"), "(Not a directory)"),
    ],
    ids=[
        "owned-by-another-user",
        "world-writable",
        "group-writable",
        "symlink-to-another-users-dir",
        "a-regular-file",
        "under-a-regular-file",
    ],
)
def test_a_lock_dir_that_is_not_private_is_refused_and_nothing_is_applied(
    project, db, monkeypatch, where, make, says
):
    make(project / where)
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(project / where))
    code, out = run("apply", "--auto-approve")
    assert code == 1
    line = _error(out)
    assert str(project / where) in line and says in line, line
    assert audit(project) == []


def test_a_symlink_of_ours_to_a_private_dir_of_ours_is_accepted(project, db, monkeypatch):
    real = _private_dir(project / "real-locks")
    (project / "link").symlink_to(real)
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(project / "link"))
    code, out = run("apply", "--auto-approve")
    assert code == 0, out
    assert len(list(real.iterdir())) == 1


def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched(project, db):
    _private_dir(project / "locks")
    victim = project / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, lock_path(db))
    code, out = run("apply", "--auto-approve")
    assert code == 1
    assert (
        _error(out) == f"Error: {lock_path(db)}: the lock file is a symlink; refusing to follow it"
    )
    assert victim.read_text() == "precious\n"
    assert audit(project) == []


def test_a_lock_path_that_is_a_directory_is_one_line(project, db):
    _private_dir(project / "locks")
    os.mkdir(lock_path(db))
    code, out = run("apply", "--auto-approve")
    assert code == 1
    assert _error(out) == (
        f"Error: {lock_path(db)}: cannot use it for the apply lock (Is a directory)"
    )


FORGED = {
    "escapes": json.dumps(
        {
            "pid": 1,
            "host": "\x1b]0;owned\x07",
            "user": "\x1b[2J\u202eroot",
            "started": "now\n::error::forged",
            "command": "\x9b31m",
        }
    ).encode(),
    "not-an-object": b"[1, 2, 3]",
    "nested-deep": b"[" * 4000,
    "not-utf8": b"\xff\xfe{}",
    "huge": json.dumps({"pid": 1, "command": "x" * 3000}).encode(),
    "oversized": b'{"pid": 1}' + b" " * 10_000,
}


@pytest.mark.parametrize("text", FORGED.values(), ids=FORGED.keys())
def test_a_forged_held_lock_is_one_neutral_short_line(project, db, text):
    _private_dir(project / "locks")
    fd = os.open(lock_path(db), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, text)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, out = run("apply", "--auto-approve")
        with pytest.raises(LockedError) as raised, apply_lock(db):
            pass
    finally:
        os.close(fd)
    assert code == 1
    line = _error(out)
    assert line.startswith("Error: another apply is running against .reconciler/sandbox.db: ")
    assert len(line) < 600
    assert not any(c in str(raised.value) for c in "\x1b\x07\n\x9b\u202e")  # the API too
    assert audit(project) == []


def _swap(path: str, how: str) -> None:
    """Remove the lock file, or put a new file in its place."""
    if how == "removed":
        os.unlink(path)
    else:
        Path(path + ".new").write_text("{}")
        os.replace(path + ".new", path)


@pytest.fixture
def once(monkeypatch) -> Iterator[Callable[[object, str, Callable[[], None]], None]]:
    """Patch `owner.name` so that its first call runs `before` first."""

    def patch(owner: object, name: str, before: Callable[[], None]) -> None:
        real, done = getattr(owner, name), []

        def wrapper(*args, **kwargs):
            if not done:
                done.append(True)
                before()
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    yield patch


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_a_lock_file_swapped_between_open_and_flock_admits_no_second_apply(project, db, once, how):
    """The holder re-opens until it holds the file at the path, so a second apply opens
    the same file and is refused."""
    once(fcntl, "flock", lambda: _swap(lock_path(db), how))
    with apply_lock(db):
        code, out = run("apply", "--auto-approve")
    assert code == 1 and "another apply is running against" in _error(out)
    assert f"pid {os.getpid()}" in out
    assert audit(project) == []


def test_a_lock_file_that_keeps_being_swapped_is_one_line(project, db, monkeypatch):
    real = fcntl.flock

    def swapping(fd: int, operation: int) -> None:
        _swap(lock_path(db), "replaced")
        real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", swapping)
    code, out = run("apply", "--auto-approve")
    assert code == 1
    assert _error(out) == (
        f"Error: {lock_path(db)}: the lock file keeps being removed or replaced; try again"
    )
    assert audit(project) == []


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_a_lock_file_swapped_before_the_writes_stops_the_apply(project, db, once, how):
    """Removed while held (during planning): another apply could start, so this one writes
    nothing."""
    once(engine, "make_plan", lambda: _swap(lock_path(db), how))
    code, out = run("apply", "--auto-approve")
    assert code == 1
    line = _error(out)
    assert "the lock file was removed or replaced while this run held it" in line
    assert line.endswith("nothing was applied: run it again")
    assert audit(project) == []


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_a_lock_file_swapped_during_the_writes_fails_the_apply(project, db, once, how):
    """Removed while writing: the writes go on (stopping halfway helps nobody), and the
    run ends in an error line that says another apply may have run at the same time."""
    from reconciler import apply

    once(apply, "apply_changes", lambda: _swap(lock_path(db), how))
    code, out = run("apply", "--auto-approve")
    assert code == 1
    assert any(line.startswith("Apply complete: 5 ok") for line in out.splitlines())
    line = _error(out)
    assert "removed or replaced while this run held it" in line
    assert "may have run at the same time" in line
    assert len(audit(project)) == 5


@pytest.mark.parametrize(
    ("command", "spelling"),
    [
        (["init", "--from", "config/sandbox-fleet.yaml"], "./config/../.reconciler/sandbox.db"),
        (["generate", "--accounts", "2", "--numbers-per-account", "2"], ".reconciler/sandbox.db"),
        (["init", "--from", "config/sandbox-fleet.yaml"], "fresh.db"),  # not there yet
    ],
    ids=["init", "generate", "init-of-a-new-database"],
)
def test_sandbox_init_is_refused_while_an_apply_holds_the_database(project, db, command, spelling):
    before = Path(db).read_bytes()
    held = str(project / spelling) if spelling == "fresh.db" else db
    with apply_lock(held):
        code, out = run("sandbox", command[0], "--db", spelling, *command[1:])
    assert code == 1
    assert _error(out).startswith(f"Error: another apply is running against {Path(spelling)}: pid ")
    assert Path(db).read_bytes() == before
    assert not (project / "fresh.db").exists()
    code, out = run("sandbox", command[0], "--db", spelling, *command[1:])
    assert code == 0, out  # and once the apply is over, it works
