"""`sandbox serve` over a database that is replaced, deleted or damaged while it serves
(issue 13, cases 7 and 8): a replaced file is reopened at the next request (one log line),
and while nothing usable is at the path every request is 503 with Retry-After and the
JSON error body, until a database is there again."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner
from conftest import ACCESS_KEY, ROOT, SECRET_KEY, small_fleet
from test_sandbox_db_errors import garbled_pages

from reconciler.cli import main
from reconciler.providers.sandbox.fleet import init_database
from reconciler.providers.sandbox.server import start_server

# --- replaced or deleted ---------------------------------------------------------------


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    """A real `reconciler sandbox serve` process over tmp_path/live.db: (url, process, db)."""
    db = tmp_path / "live.db"
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(small_fleet(), sort_keys=False))
    init_database(db, fleet)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RECONCILER_SANDBOX_ACCESS_KEY": "k",
        "RECONCILER_SANDBOX_SECRET_KEY": "s",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "sandbox", "serve", "--db", str(db), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        match = re.search(r"(http://127\.0\.0\.1:\d+/api/v1)", proc.stdout.readline())
        assert match
        yield match[1], proc, db
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=10)


def _get(url: str) -> requests.Response:
    return requests.get(url, auth=("k", "s"), timeout=5)


def test_serve_reopens_a_database_replaced_by_init(
    serve: tuple[str, subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    url, proc, db = serve
    assert _get(f"{url}/accounts/1001").json()["name"] == "Acme Dental"
    fleet = tmp_path / "other.yaml"
    fleet.write_text(yaml.safe_dump({"accounts": [{"id": 1001, "name": "A New Fleet"}]}))
    result = CliRunner().invoke(main, ["sandbox", "init", "--db", str(db), "--from", str(fleet)])
    assert result.exit_code == 0, result.output
    listed = _get(f"{url}/accounts").json()
    assert [a["name"] for a in listed["accounts"]] == ["A New Fleet"]
    assert _get(f"{url}/accounts/1001/numbers").json()["total_entries"] == 0
    write = requests.post(
        f"{url}/accounts/1001/status", json={"status": "paused"}, auth=("k", "s"), timeout=5
    )
    assert write.status_code == 200
    with sqlite3.connect(db) as conn:  # the write went to the new file
        assert conn.execute("SELECT status FROM accounts").fetchall() == [("paused",)]
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    assert err.strip().splitlines() == [
        f"sandbox database {db} was replaced: reopened it, serving the new data"
    ]


def test_serve_answers_503_while_the_database_is_deleted(
    serve: tuple[str, subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    url, proc, db = serve
    assert _get(f"{url}/accounts").status_code == 200
    db.unlink()
    for path in ("/accounts", "/accounts/1001", "/accounts/1001/numbers"):
        gone = _get(url + path)
        assert gone.status_code == 503 and gone.headers["Retry-After"] == "1"
        assert gone.headers["Content-Type"].startswith("application/json")
        assert gone.json()["status"] == "error" and "retry" in gone.json()["reason"]
        assert str(tmp_path) not in gone.text  # server paths are for its log, not clients
    fleet = tmp_path / "fleet.yaml"
    init_database(db, fleet)  # it reappears
    assert _get(f"{url}/accounts/1001").json()["name"] == "Acme Dental"
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in err
    assert lines[0].startswith("sandbox database unusable, answering 503 until it is back: ")
    assert "no such sandbox database" in lines[0]
    assert lines[1] == f"sandbox database {db} was replaced: reopened it, serving the new data"


# --- damaged ---------------------------------------------------------------------------


def test_serve_on_a_damaged_page_answers_503_and_logs_one_line(
    sandbox_db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbled_pages(sandbox_db)  # opens fine; reading accounts finds the damage
    caplog.set_level(logging.WARNING, logger="reconciler.sandbox.server")
    with start_server(sandbox_db, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as server:
        got = requests.get(f"{server.url}/accounts", auth=(ACCESS_KEY, SECRET_KEY), timeout=5)
        again = requests.get(f"{server.url}/accounts", auth=(ACCESS_KEY, SECRET_KEY), timeout=5)
        fine = requests.get(f"{server.url}/nope", auth=(ACCESS_KEY, SECRET_KEY), timeout=5)
    assert got.status_code == 503 and got.headers["Retry-After"] == "1"
    assert got.json()["status"] == "error" and str(sandbox_db) not in got.text
    assert again.status_code == 503 and fine.status_code == 404
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "database disk image is malformed" in messages[0]
    assert not any(r.exc_info for r in caplog.records)  # a log line, not a traceback
