"""Shared fixtures: a small sandbox fleet, its database, and a served sandbox API."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from reconciler.providers.sandbox.fleet import init_database
from reconciler.providers.sandbox.server import RunningServer, start_server

ACCESS_KEY, SECRET_KEY = "test-access", "test-secret"
ROOT = Path(__file__).resolve().parent.parent

SMALL_FLEET: dict[str, Any] = {
    "accounts": [
        {
            "id": 1001,
            "name": "Acme Dental",
            "status": "active",
            "monthly_fee": "49.00",
            "updated": "2026-10-02T15:04:00Z",
            "numbers": [
                {
                    "id": "TPN1001A",
                    "account_id": "1001",
                    "number": "+14105550101",
                    "formatted": "(410) 555-0101",
                    "name": "Main line",
                    "active": True,
                    "paused": False,
                    "source": {"name": "Website", "online": True},
                    "stats": {"renewal_costs": "3.00", "calls": 212},
                    "active_changed": "2025-03-01T09:00:00Z",
                    "updated": "2026-10-02T15:04:00Z",
                },
                {
                    "id": "TPN1001B",
                    "account_id": "1001",
                    "number": "+14105550102",
                    "formatted": "(410) 555-0102",
                    "name": "Direct Mail",
                    "active": False,
                    "paused": False,
                    "source": {"name": "Direct Mail", "online": False},
                    "stats": {"renewal_costs": "3.00", "calls": 0},
                    "active_changed": "2026-06-01T12:00:00Z",
                    "updated": "2026-06-01T12:00:00Z",
                },
            ],
        },
        {
            "id": 1002,
            "name": "Bayside Plumbing",
            "status": "paused",
            "monthly_fee": "99.00",
            "updated": "2026-08-14T11:00:00Z",
            "numbers": [
                {
                    "id": "TPN1002A",
                    "account_id": "1002",
                    "number": "+18885550111",
                    "formatted": "(888) 555-0111",
                    "name": "Toll-free",
                    "active": True,
                    "paused": True,
                    "source": {"name": "Google Ads", "online": True},
                    "stats": {"renewal_costs": "5.00", "calls": 7},
                    "active_changed": "2024-01-10T09:00:00Z",
                    "updated": "2026-08-14T11:00:00Z",
                }
            ],
        },
        {
            "id": 1003,
            "name": "Cedar Law Group",
            "status": "stopped",
            "monthly_fee": None,
            "updated": None,
            "numbers": [],
        },
    ]
}


def small_fleet() -> dict[str, Any]:
    """A fresh copy of the small fleet (tests may change it)."""
    return copy.deepcopy(SMALL_FLEET)


@pytest.fixture(autouse=True)
def private_lock_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Locks of every test in a private directory of the session (never the real
    ~/.cache or $XDG_RUNTIME_DIR); a test may point RECONCILER_LOCK_DIR elsewhere."""
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path_factory.getbasetemp() / "locks"))


@pytest.fixture(autouse=True)
def outside_github_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GitHub Actions variables from the machine running the suite (in CI they are set):
    Markdown sources link to GitHub only in the tests that set them."""
    for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_SHA", "GITHUB_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fleet_data() -> dict[str, Any]:
    """The small fleet as data: 3 accounts (active, paused, stopped), 3 numbers."""
    return small_fleet()


@pytest.fixture
def fleet_file(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(small_fleet(), sort_keys=False))
    return path


@pytest.fixture
def sandbox_db(tmp_path: Path, fleet_file: Path) -> Path:
    db = tmp_path / "sandbox.db"
    init_database(db, fleet_file)
    return db


@pytest.fixture
def served(sandbox_db: Path) -> Iterator[RunningServer]:
    with start_server(sandbox_db, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as server:
        yield server


@pytest.fixture
def api(served: RunningServer) -> Iterator[requests.Session]:
    """An authenticated session; use with `served.url + "/accounts"`."""
    with requests.Session() as session:
        session.auth = (ACCESS_KEY, SECRET_KEY)
        yield session


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example config; the sandbox database is created from its seed."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return tmp_path
