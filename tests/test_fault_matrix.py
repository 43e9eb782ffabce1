"""Fault matrix: the real `reconciler apply` (provider `ctm`) against a sandbox server that
injects every combination of errors, dropped write responses, a rate limit and latency.

Each run must converge within the client's production retry budget: exit 0, a report that
says converged, every planned field at its planned value in the store, and an audit table
with exactly one row per planned change and nothing else. Two combinations run by default,
the other 14 under `-m slow`. When the budget is exhausted the run must say so per action,
exit 1, and leave live state untouched.

Reproducible: the server's fault dice are seeded, and the client runs with concurrency 1, so
the same requests meet the same dice in the same order (a 429 draws no die and the request is
simply sent again). That matters: at error rate 0.2 and drop rate 0.3 a write attempt fails
with p = 0.2 + 0.8 * 0.3 = 0.44, so a write spends all 7 attempts with p = 0.44**7 = 0.3%, and
about one 20-write run in 16 would not converge on unseeded dice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import reconciler.apply
from reconciler.cli import main
from reconciler.providers.sandbox.create import create_database
from reconciler.providers.sandbox.fleet import parse_fleet
from reconciler.providers.sandbox.server import RunningServer, start_server
from reconciler.providers.sandbox.store import SandboxStore

ACCESS, SECRET = "matrix-access", "matrix-secret-0a1b2c"
SEED = 7
# The client's own limit is well above the server's, so the server's limit is really met: a
# sequential client (latency-bound at >= 33 requests per second) against 5 per second.
CLIENT_RPS = 50

# account id, name, live status, desired status (None: not in config), numbers
# number: e164, live calls, live swapping, source online, desired calls, desired swapping
# (desired None, None: a live number no file lists, i.e. unmanaged)
Number = tuple[str, str, str, bool, "str | None", "str | None"]
FLEET: list[tuple[str, str, str, str | None, list[Number]]] = [
    (
        "2001",
        "Alpha Dental",
        "active",
        "active",
        [
            ("+14105552001", "allowed", "active", True, "stopped", "active"),
            ("+14105552002", "allowed", "active", True, "stopped", "active"),
            ("+14105552003", "allowed", "active", False, "stopped", "active"),
            ("+14105552004", "allowed", "active", True, "allowed", "paused"),
            ("+14105552005", "allowed", "active", True, "allowed", "paused"),
            ("+14105552006", "stopped", "active", False, "allowed", "active"),
            ("+14105552007", "stopped", "active", True, "allowed", "active"),
            ("+14105552008", "allowed", "active", True, "allowed", "active"),
            ("+14105552009", "allowed", "active", True, None, None),
            ("+14105552010", "allowed", "active", False, "stopped", "active"),
        ],
    ),
    (
        "2002",
        "Bravo Plumbing",
        "active",
        "stopped",
        [
            ("+14105552101", "allowed", "active", True, "stopped", "active"),
            ("+14105552102", "allowed", "active", False, "stopped", "active"),
            ("+14105552103", "allowed", "active", True, "allowed", "paused"),
            ("+14105552104", "allowed", "active", True, "allowed", "active"),
            ("+14105552105", "allowed", "active", True, None, None),
            ("+14105552106", "allowed", "active", False, "stopped", "active"),
        ],
    ),
    (
        "2003",
        "Cedar Law",
        "paused",
        "active",
        [
            ("+14105552201", "stopped", "active", False, "allowed", "active"),
            ("+14105552202", "stopped", "active", True, "allowed", "active"),
            ("+14105552203", "allowed", "paused", True, "allowed", "active"),
            ("+14105552204", "allowed", "paused", True, "allowed", "active"),
            ("+14105552205", "allowed", "active", False, "stopped", "active"),
            ("+14105552206", "allowed", "active", True, "allowed", "paused"),
            ("+14105552207", "allowed", "active", True, "allowed", "active"),
        ],
    ),
    (
        "2004",
        "Delta Auto",
        "active",
        None,
        [("+14105552301", "allowed", "active", True, None, None)],
    ),
]


def planned_changes() -> set[tuple[str, str, str, str]]:
    """(resource, audit field, from, to) of every change the fleet's config asks for."""
    changes = set()
    flag = {"stopped": "false", "allowed": "true", "paused": "true", "active": "false"}
    for acc_id, _, live, desired, numbers in FLEET:
        if desired is not None and desired != live:
            changes.add((f"account.{acc_id}", "status", live, desired))
        for e164, calls, swapping, _, want_calls, want_swapping in numbers:
            if want_calls is not None and want_calls != calls:
                changes.add((f"number.{e164}", "active", flag[calls], flag[want_calls]))
            if want_swapping is not None and want_swapping != swapping:
                changes.add((f"number.{e164}", "paused", flag[swapping], flag[want_swapping]))
    return changes


PLANNED = planned_changes()
assert len(PLANNED) == 20  # the fleet above is meant to plan exactly 20 changes


def write_project(
    root: Path, base_url: str, fleet: list = FLEET, concurrency: int = 1
) -> tuple[Path, Path]:
    """The sandbox database (live state) and a config directory (desired state)."""
    accounts = []
    for acc_id, name, live, _, numbers in fleet:
        accounts.append(
            {
                "id": int(acc_id),
                "name": name,
                "status": live,
                "numbers": [
                    {
                        "number": e164,
                        "active": calls == "allowed",
                        "paused": swapping == "paused",
                        "source": {"name": "Website" if online else "Print", "online": online},
                        "stats": {"renewal_costs": "3.00", "calls": 0},
                    }
                    for e164, calls, swapping, online, _, _ in numbers
                ],
            }
        )
    parsed = parse_fleet({"accounts": accounts}, "fault matrix fleet")
    db = root / "live.db"
    create_database(db, parsed.accounts, parsed.numbers)

    config = root / "config"
    (config / "accounts").mkdir(parents=True)
    settings = {
        "provider": {
            "type": "ctm",
            "base_url": base_url,
            "concurrency": concurrency,
            "requests_per_second": CLIENT_RPS,
            "timeout_seconds": 5,
        },
        "policy": {"max_change_fraction": 1.0},
    }
    (config / "reconciler.yaml").write_text(yaml.safe_dump(settings))
    for acc_id, name, _, desired, numbers in fleet:
        if desired is None:
            continue  # not managed
        doc = {
            "account": {"id": int(acc_id), "name": name, "status": desired},
            "numbers": [
                {"number": e164, "calls": want_calls, "swapping": want_swapping}
                for e164, _, _, _, want_calls, want_swapping in numbers
                if want_calls is not None
            ],
        }
        (config / "accounts" / f"{acc_id}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return db, config


def live_values(db: Path) -> dict[tuple[str, str], str]:
    """(resource, audit field) -> value, for every account and number in the database."""
    values: dict[tuple[str, str], str] = {}
    with SandboxStore(db) as store:
        for acc_id, *_ in store.all_rows()[0]:
            values[(f"account.{acc_id}", "status")] = store.get_account(acc_id)["status"]
            for n in store.list_numbers(acc_id, 1, 150)[0]:
                values[(f"number.{n['number']}", "active")] = str(n["active"]).lower()
                values[(f"number.{n['number']}", "paused")] = str(n["paused"]).lower()
    return values


def audit_rows(db: Path) -> list[tuple[str, str, str, str]]:
    with SandboxStore(db) as store:
        return [(r["resource"], r["field"], r["from"], r["to"]) for r in store.audit()]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CTM_ACCESS_KEY", ACCESS)
    monkeypatch.setenv("CTM_SECRET_KEY", SECRET)
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return tmp_path


@pytest.fixture
def serve(project: Path) -> Iterator[Callable[..., tuple[RunningServer, Path]]]:
    """serve(fleet, **faults) -> (server, config dir): the fleet behind a real server."""
    servers: list[RunningServer] = []

    def start(
        fleet: list = FLEET, concurrency: int = 1, **faults: Any
    ) -> tuple[RunningServer, Path]:
        # the server needs the database and the config needs the server's URL
        db, config = write_project(project, "http://127.0.0.1:1/api/v1", fleet, concurrency)
        server = start_server(db, access_key=ACCESS, secret_key=SECRET, rng_seed=SEED, **faults)
        servers.append(server)
        settings = config / "reconciler.yaml"
        settings.write_text(settings.read_text().replace("http://127.0.0.1:1/api/v1", server.url))
        return server, config

    yield start
    for server in servers:
        server.stop()


def apply(config: Path, report: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["apply", "--config", str(config), "--auto-approve", "--report", str(report)]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output and SECRET not in result.output
    return result.exit_code, result.output


# --- the matrix -----------------------------------------------------------------------------

ERROR_RATES, DROP_RATES, RATE_LIMITS, LATENCIES = (0.0, 0.2), (0.0, 0.3), (None, 5.0), (0, 30)
# Run by default: no faults, and every fault at once (13 s of it is waiting out Retry-After).
REPRESENTATIVE = {(0.0, 0.0, None, 0), (0.2, 0.3, 5.0, 30)}
COMBINATIONS = [
    pytest.param(
        e, d, r, lat,
        id=f"error{e}-drop{d}-rate{r or 'none'}-latency{lat}",
        marks=() if (e, d, r, lat) in REPRESENTATIVE else pytest.mark.slow,
    )
    for e in ERROR_RATES
    for d in DROP_RATES
    for r in RATE_LIMITS
    for lat in LATENCIES
]  # fmt: skip


@pytest.mark.parametrize(("error_rate", "drop_rate", "rate_limit", "latency_ms"), COMBINATIONS)
def test_apply_converges_under_faults(
    serve: Callable[..., tuple[RunningServer, Path]],
    project: Path,
    error_rate: float,
    drop_rate: float,
    rate_limit: float | None,
    latency_ms: int,
) -> None:
    server, config = serve(
        FLEET,
        error_rate=error_rate,
        drop_rate=drop_rate,
        rate_limit=rate_limit,
        latency_ms=latency_ms,
    )
    before = live_values(server.store.path)

    code, out = apply(config, project / "report.json")

    assert code == 0, out
    report = json.loads((project / "report.json").read_text())
    assert report["converged"] is True
    assert report["counts"] == {"ok": 20, "failed": 0, "unknown": 0, "not_started": 0}
    assert report["verification"]["ok"] and report["verification"]["checked"] == 20
    # live state: every planned field has its value, everything else is as it was
    after = live_values(server.store.path)
    expected = dict(before) | {(res, field): to for res, field, _, to in PLANNED}
    assert after == expected
    # the audit table: one row per planned change, nothing outside the plan
    rows = audit_rows(server.store.path)
    assert sorted(rows) == sorted(PLANNED), out
    # the faults were really there
    faults = server.stats.faults
    print(f"\nfaults injected: {faults}, requests: {server.stats.total}")
    assert (faults.get("error", 0) > 0) == (error_rate > 0)
    assert (faults.get("drop", 0) > 0) == (drop_rate > 0)
    assert (faults.get("latency", 0) == server.stats.total) == (latency_ms > 0)
    if rate_limit is None:
        assert "rate_limit" not in faults
    elif not error_rate:  # (each 503 pauses the client 1 s: the server's bucket refills)
        assert faults.get("rate_limit", 0) > 0


# --- budget exhausted -------------------------------------------------------------------------

# Three changes of the same phase (numbers stopped or paused), so their retries overlap.
SMALL_FLEET = [
    (
        "2001",
        "Alpha Dental",
        "active",
        "active",
        [
            ("+14105552001", "allowed", "active", True, "stopped", "paused"),
            ("+14105552003", "allowed", "active", False, "stopped", "active"),
            ("+14105552008", "allowed", "active", True, "allowed", "active"),
        ],
    ),
]


def test_an_exhausted_retry_budget_fails_each_action_and_changes_nothing(
    serve: Callable[..., tuple[RunningServer, Path]],
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every write answered 503 (Retry-After 1) until the production budget of 6 retries is
    spent: exit 1, one `failed` line with a reason per action, not converged, nothing written.

    The server's error rate is turned to 1.0 only while the writes run (the plan's reads and
    the verifying re-read are served), so the run reaches the per-action summary.
    """
    server, config = serve(SMALL_FLEET, concurrency=4)
    faults = server._httpd.faults
    real_apply = reconciler.apply.apply_changes

    def writes_refused(*args: Any, **kwargs: Any) -> Any:
        faults.error_rate = 1.0
        try:
            return real_apply(*args, **kwargs)
        finally:
            faults.error_rate = 0.0

    monkeypatch.setattr(reconciler.apply, "apply_changes", writes_refused)
    before = live_values(server.store.path)

    code, out = apply(config, project / "report.json")

    assert code == 1, out
    assert "Apply incomplete: 0 ok, 3 failed, 0 not started." in out
    failed = [line for line in out.splitlines() if line.lstrip().startswith("failed ")]
    assert len(failed) == 2 * 3  # progress line and summary line per action
    for line in failed:
        assert "503" in line and "gave up after 7 attempts" in line, line
    assert "Verified: 0/3 planned fields match live state." in out
    report = json.loads((project / "report.json").read_text())
    assert report["converged"] is False
    assert report["counts"] == {"ok": 0, "failed": 3, "unknown": 0, "not_started": 0}
    assert all(a["outcome"] == "failed" and a["error"] for a in report["actions"])
    assert live_values(server.store.path) == before
    assert audit_rows(server.store.path) == []
    assert server.stats.faults["error"] == 3 * 7  # every write tried 7 times
