"""Local I/O and SQLite errors on the sandbox paths are one line naming the path and the
reason, exit 1, never a traceback, no temporary file left (issue 13, case 8, the sandbox
parts). CI runs as root, so an unwritable place is a path under a regular file (ENOTDIR,
EEXIST) or a directory where a file should be (EISDIR), never a chmod."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.providers.sandbox.fleet import init_database
from reconciler.providers.sandbox.store import SandboxDbError

DB = ".reconciler/sandbox.db"
REMAKE = f"re-create it with `reconciler sandbox init --db {DB} --from FLEET.yaml`"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_line(result: Result) -> str:
    """The only line on stderr, after checking exit 1 and no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def no_temp_files(root: Path) -> None:
    assert [p for p in root.rglob("*") if p.name.endswith(".tmp")] == []


# --- seeding .reconciler/ where it cannot be created -----------------------------------


def test_first_run_where_reconciler_dir_is_a_file(project: Path) -> None:
    (project / ".reconciler").write_text("not a directory\n")
    line = one_line(invoke("plan"))
    assert (
        line == f"Error: {DB}: cannot create the sandbox database (.reconciler is not a directory)"
    )
    no_temp_files(project)


def test_first_run_with_a_database_path_under_a_regular_file(project: Path) -> None:
    (project / "afile").write_text("x")
    settings = project / "config" / "reconciler.yaml"
    settings.write_text(
        settings.read_text().replace("../.reconciler/sandbox.db", "../afile/sub/sandbox.db")
    )
    line = one_line(invoke("plan"))
    assert line.startswith("Error: ") and "afile/sub/sandbox.db: cannot create the sandbox" in line
    assert "(a parent of it is a regular file, not a directory)" in line
    no_temp_files(project)


def test_a_directory_at_the_database_path(project: Path) -> None:
    (project / DB).mkdir(parents=True)
    line = one_line(invoke("plan"))
    assert line.startswith(f"Error: {DB}: is a directory, not a sandbox database")


def test_init_over_a_directory_removes_its_temporary_file(tmp_path: Path, fleet_file: Path):
    (tmp_path / "x.db").mkdir()
    with pytest.raises(SandboxDbError, match=r"x\.db: cannot create the sandbox database"):
        init_database(tmp_path / "x.db", fleet_file)
    no_temp_files(tmp_path)


@pytest.mark.parametrize(
    "command",
    [
        ["sandbox", "init", "--from", "config/sandbox-fleet.yaml"],
        ["sandbox", "generate", "--accounts", "2", "--numbers-per-account", "2"],
    ],
)
def test_creating_a_database_under_a_regular_file(project: Path, command: list[str]) -> None:
    (project / "afile").write_text("x")
    line = one_line(invoke(*command, "--db", "afile/x.db"))
    assert (
        line == "Error: afile/x.db: cannot create the sandbox database (afile is not a directory)"
    )
    no_temp_files(project)


def test_generate_fleet_out_under_a_regular_file(project: Path) -> None:
    (project / "afile").write_text("x")
    args = ["--accounts", "2", "--numbers-per-account", "2", "--fleet-out", "afile/f.json"]
    line = one_line(invoke("sandbox", "generate", "--db", "g.db", *args))
    assert line == "Error: afile/f.json: cannot write the fleet file (afile is not a directory)"


# --- a damaged database, under every command that opens one ---------------------------


def _random_bytes(db: Path) -> None:
    db.write_bytes(bytes((i * 7919 + 13) % 256 for i in range(20_000)))


def _truncated(db: Path) -> None:
    db.write_bytes(db.read_bytes()[:6000])


def _not_sqlite(db: Path) -> None:
    db.write_text("accounts:\n  - name: this is YAML, not SQLite\n" * 50)


def garbled_pages(db: Path) -> None:
    """A valid header and schema, the pages of the accounts and numbers tables overwritten:
    the store opens, and the first read of either table finds the damage."""
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name IN ('accounts', 'numbers')"
        ).fetchall()
    data = bytearray(db.read_bytes())
    for (root,) in roots:
        start = (root - 1) * page_size
        data[start : start + page_size] = bytes((i * 31 + 7) % 256 for i in range(page_size))
    db.write_bytes(bytes(data))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "random-bytes": _random_bytes,
    "truncated": _truncated,
    "not-sqlite": _not_sqlite,
    "garbled-pages": garbled_pages,
}
REASONS = ("file is not a database", "database disk image is malformed")

COMMANDS = {
    "plan": ["plan"],
    "apply": ["apply", "--auto-approve"],
    "drift": ["drift"],
    "show": ["sandbox", "show", "--db", DB],
    "set-account": ["sandbox", "set", "--db", DB, "account.1001", "status=paused"],
    "set-number": ["sandbox", "set", "--db", DB, "number.+14105550101", "calls=stopped"],
    "serve": ["sandbox", "serve", "--db", DB, "--port", "0", "--access-key", "a", "--secret-key", "b"],
}  # fmt: skip


@pytest.fixture
def damaged(project: Path, request: pytest.FixtureRequest) -> Path:
    db = project / DB
    init_database(db, project / "config" / "sandbox-fleet.yaml")
    DAMAGE[request.param](db)
    return db


@pytest.mark.parametrize("damaged", list(DAMAGE), indirect=True)
@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "serve"])
def test_a_damaged_database_is_one_line(damaged: Path, command: str) -> None:
    line = one_line(invoke(*COMMANDS[command]))
    assert line.startswith(f"Error: {DB}: not a ") and any(r in line for r in REASONS), line
    assert line.endswith(REMAKE) or "not a sandbox database" in line, line


@pytest.mark.parametrize("damaged", ["random-bytes", "truncated", "not-sqlite"], indirect=True)
def test_serve_refuses_a_damaged_database_in_one_line(damaged: Path) -> None:
    line = one_line(invoke(*COMMANDS["serve"]))
    assert line.startswith(f"Error: {DB}: not a usable sandbox database (") and line.endswith(
        REMAKE
    )
