"""A sandbox database replaced or deleted while it is in use (issue 13, case 7).

`sandbox init` builds a new file and renames it over the database path; connections opened
before keep using the old, unlinked file. The embedded provider must stop and say so (never
report writes to a deleted file as done). `sandbox serve`: test_sandbox_serve_replaced.py.

What was written to the old file cannot be looked at afterwards: its committed writes sit
in its WAL, which SQLite neither checkpoints nor keeps once the database has moved. So the
tests check the new file and the reports; the one test of a write lost to the old file
reads it through the store's own connection.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT
from test_cli_e2e import run

import reconciler.apply
from reconciler.errors import ProviderError
from reconciler.providers.sandbox.fleet import init_database
from reconciler.providers.sandbox.provider import SandboxProvider

REPLACED = (
    ".reconciler/sandbox.db: the sandbox database was replaced or deleted while this run "
    "was using it (by `sandbox init`?); nothing more was written — re-run to plan against "
    "the new database"
)
DB = Path(".reconciler") / "sandbox.db"


def audit_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM audit").fetchone()[0]


def other_fleet(path: Path) -> Path:
    """The example fleet with account 1001 renamed: a different database, same ids."""
    data = yaml.safe_load((ROOT / "config" / "sandbox-fleet.yaml").read_text())
    data["accounts"][0]["name"] = "Renamed By A New Init"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- the embedded provider during an apply ----------------------------------------------


def test_init_during_an_apply_stops_it_and_writes_nothing(project: Path) -> None:
    """A real `reconciler apply` process; `sandbox init` lands after its plan is shown.

    The test holds the database's write lock from the start, so the apply's first write
    waits until the new file is in place: deterministic, whatever the machine's speed.
    """
    assert run("plan")[0] == 0  # seeds .reconciler/sandbox.db from the example fleet
    hold = sqlite3.connect(DB, isolation_level=None, timeout=10)
    hold.execute("BEGIN IMMEDIATE")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "apply", "--auto-approve"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        shown = []
        for line in proc.stdout:  # the plan is printed once live state has been read
            shown.append(line)
            if line.startswith("Plan: "):
                break
        assert shown and shown[-1].startswith("Plan: 3 to stop"), "".join(shown)
        init_database(DB, other_fleet(project / "other.yaml"))
        hold.execute("ROLLBACK")
        hold.close()
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    lines = out.splitlines()
    assert any(line.startswith("Stopped: .reconciler/sandbox.db was replaced") for line in lines)
    summary = next(line for line in lines if line.startswith("Apply incomplete: "))
    counts = re.match(r"Apply incomplete: (\d+) ok, (\d+) failed, (\d+) not started\.", summary)
    assert counts and counts[1] == "0" and int(counts[2]) + int(counts[3]) == 5, summary
    assert any(line.startswith("  failed") and line.endswith(REPLACED) for line in lines)
    assert f"Verification failed: verification read failed: {REPLACED}" in lines
    assert not any(line.startswith("Verified") for line in lines)
    assert audit_count(DB) == 0  # nothing in the new database
    code, again = run("plan")  # a fresh plan reads the new database: everything is still due
    assert code == 0 and "Plan: 3 to stop, 1 to allow, 1 to pause" in again


@pytest.mark.parametrize("how", ["replaced", "deleted"])
def test_a_replacement_mid_apply_leaves_the_rest_not_started(
    project: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """After the 2nd of 5 writes the file is replaced (or deleted): writes 1-2 are ok (on the
    old file), the 3rd finds it changed and nothing after it is started."""
    settings = project / "config" / "reconciler.yaml"
    settings.write_text(
        settings.read_text().replace("type: sandbox", "type: sandbox\n  concurrency: 1")
    )
    assert run("plan")[0] == 0
    real_run_action = reconciler.apply.run_action
    done: list[str] = []

    def then_replace(provider: Any, change: Any) -> Any:
        result = real_run_action(provider, change)  # the real write, through the provider
        done.append(change.address)
        if len(done) == 2:
            if how == "replaced":
                init_database(DB, other_fleet(project / "other.yaml"))
            else:
                DB.unlink()
        return result

    monkeypatch.setattr(reconciler.apply, "run_action", then_replace)
    code, out = run("apply", "--auto-approve", "--report", "report.json")
    assert code == 1
    assert "Apply incomplete: 2 ok, 1 failed, 2 not started." in out
    assert len(done) == 3  # the 3rd write was refused; nothing else was attempted
    assert f"Verification failed: verification read failed: {REPLACED}" in out
    report = json.loads(Path("report.json").read_text())
    assert report["target_changed"] is True and report["converged"] is False
    failed = [a for a in report["actions"] if a["outcome"] == "failed"]
    assert [a["error"] for a in failed] == [REPLACED]
    if how == "replaced":
        assert audit_count(DB) == 0  # the two ok writes went to the old file, none here


# --- the exact moment of the rename, through the provider's own calls -------------------


@pytest.fixture
def provider(sandbox_db: Path) -> Iterator[SandboxProvider]:
    with SandboxProvider(sandbox_db) as p:
        yield p


def _replace_on(provider: SandboxProvider, statement: str, tmp_path: Path) -> None:
    """Replace the database the moment the store starts running `statement` (its trace
    callback: the hook the store offers tests)."""
    db = provider.db_path
    fleet = tmp_path / "other.yaml"
    fleet.write_text(yaml.safe_dump({"accounts": [{"name": "Only one"}]}))
    replaced: list[bool] = []

    def hook(sql: str) -> None:
        if sql.startswith(statement) and not replaced:
            replaced.append(True)
            init_database(db, fleet)

    provider.store.set_trace(hook)


def test_a_write_committed_as_the_file_is_replaced_is_reported_lost(
    provider: SandboxProvider, tmp_path: Path
) -> None:
    provider.read(["1001"])
    _replace_on(provider, "COMMIT", tmp_path)
    with pytest.raises(ProviderError, match="committed to the old file and is lost"):
        provider.set_number("1001", "TPN1001A", "calls", "stopped")
    provider.store.set_trace(None)
    old_file = provider.store._idle[0]  # the pooled connection: the only way into the old file
    assert old_file.execute("SELECT count(*) FROM audit").fetchone() == (1,)  # landed there
    assert audit_count(provider.db_path) == 0


def test_a_write_that_waited_for_the_lock_writes_nothing_to_the_old_file(
    provider: SandboxProvider, tmp_path: Path
) -> None:
    provider.read(["1001"])
    _replace_on(provider, "BEGIN IMMEDIATE", tmp_path)
    with pytest.raises(ProviderError, match="nothing more was written"):
        provider.set_account_status("1001", "stopped")
    provider.store.set_trace(None)
    old_file = provider.store._idle[0]
    assert old_file.execute("SELECT count(*) FROM audit").fetchone() == (0,)  # rolled back
    assert audit_count(provider.db_path) == 0


def test_a_read_that_overlaps_the_replacement_is_refused(
    provider: SandboxProvider, tmp_path: Path
) -> None:
    _replace_on(provider, "SELECT", tmp_path)
    with pytest.raises(ProviderError, match="replaced or deleted"):
        provider.read(["1001", "1002"])
