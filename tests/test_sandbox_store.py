"""The sandbox store, fleet file, generator and direct provider, on real SQLite files."""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.errors import ProviderError, ProviderNotFound
from reconciler.providers.sandbox.create import create_database
from reconciler.providers.sandbox.fleet import (
    FleetError,
    dump_fleet,
    init_database,
    load_fleet,
    parse_fleet,
    write_fleet,
)
from reconciler.providers.sandbox.generate import generate_database, generate_rows
from reconciler.providers.sandbox.provider import SandboxProvider
from reconciler.providers.sandbox.store import (
    BadValue,
    Conflict,
    SandboxDbError,
    SandboxStore,
)

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- fleet: round trip, ids, validation ---------------------------------------------------


def test_fleet_round_trip_is_lossless(sandbox_db: Path, fleet_data: dict[str, Any]) -> None:
    with SandboxStore(sandbox_db) as store:
        assert dump_fleet(store) == fleet_data


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_the_example_fleet_survives_init_show_init(tmp_path: Path, suffix: str) -> None:
    original = load_fleet(REPO / "config" / "sandbox-fleet.yaml")
    db = tmp_path / "a.db"
    create_database(db, original.accounts, original.numbers)
    with SandboxStore(db) as store:
        dumped = dump_fleet(store)
    again = tmp_path / f"again{suffix}"
    write_fleet(dumped, again)
    assert load_fleet(again) == original


def test_missing_ids_are_generated_after_the_highest_given(tmp_path: Path) -> None:
    data = {
        "accounts": [
            {"name": "No id", "numbers": [{"number": "+14105550101"}]},
            {"id": 1005, "name": "Given"},
            {"name": "No id either"},
        ]
    }
    fleet = parse_fleet(data, "f.yaml")
    assert [a[0] for a in fleet.accounts] == ["1006", "1005", "1007"]
    number = fleet.numbers[0]
    assert number[0].startswith("TPN") and len(number[0]) == 23
    assert number[0] == parse_fleet(data, "f.yaml").numbers[0][0]  # stable
    assert number[3] == "(410) 555-0101"  # formatted default
    assert (number[5], number[6], number[10]) == (1, 0, 0)  # active, not paused, 0 calls


def test_a_fresh_fleet_starts_at_1001() -> None:
    fleet = parse_fleet({"accounts": [{"name": "A"}, {"name": "B"}]}, "f.yaml")
    assert [a[0] for a in fleet.accounts] == ["1001", "1002"]
    assert all(a[1] == 1 for a in fleet.accounts)  # shown as integers on the wire


@pytest.mark.parametrize(
    ("change", "where", "text"),
    [
        (lambda d: d["accounts"][0].update(status="off"), "accounts[0].status", "one of"),
        (lambda d: d["accounts"][0].update(id="a/b"), "accounts[0].id", "ids are"),
        (lambda d: d["accounts"][1].update(id=1001), "accounts[1].id", "duplicate"),
        (lambda d: d["accounts"][0].update(monthly_fee="lots"), "monthly_fee", "amount"),
        (lambda d: d["accounts"][0].update(updated="2026-01-01T10:00"), "updated", "timezone"),
        (lambda d: d["accounts"][0].update(updated="yesterday"), "updated", "ISO-8601"),
        (lambda d: d["accounts"][0].update(name=None), "accounts[0].name", "string"),
        (
            lambda d: d["accounts"][0]["numbers"][0].update(number="4105550101"),
            "accounts[0].numbers[0].number",
            "E.164",
        ),
        (
            lambda d: d["accounts"][1]["numbers"][0].update(number="+14105550101"),
            "accounts[1].numbers[0].number",
            "listed twice",
        ),
        (
            lambda d: d["accounts"][0]["numbers"][1].update(paused=True),
            "accounts[0].numbers[1].paused",
            "online",
        ),
        (
            lambda d: d["accounts"][0]["numbers"][0].update(active="yes"),
            "numbers[0].active",
            "true or false",
        ),
        (
            lambda d: d["accounts"][0]["numbers"][0]["stats"].update(calls=-1),
            "stats.calls",
            "whole number",
        ),
        (
            lambda d: d["accounts"][0]["numbers"][0].update(account_id="1002"),
            "numbers[0].account_id",
            "differs",
        ),
        (
            lambda d: d["accounts"][1]["numbers"][0].update(id="TPN1001A"),
            "accounts[1].numbers[0].id",
            "duplicate",
        ),
    ],
)
def test_bad_fleets_are_one_clear_line(
    tmp_path: Path, fleet_data: dict[str, Any], change: Any, where: str, text: str
) -> None:
    change(fleet_data)
    path = write_yaml(tmp_path / "fleet.yaml", fleet_data)
    with pytest.raises(FleetError) as err:
        load_fleet(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(path)) and where in message and text in message


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("accounts: [", "not valid YAML"),
        ("- 1\n- 2\n", '"accounts" list'),
        ("accounts: [1]", "expected a mapping"),
        ("", '"accounts" list'),
    ],
)
def test_unusable_fleet_files(tmp_path: Path, content: str, text: str) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(content)
    with pytest.raises(FleetError, match=text):
        load_fleet(path)


def test_unknown_keys_are_ignored(fleet_data: dict[str, Any]) -> None:
    plain = parse_fleet(fleet_data, "f")
    fleet_data["accounts"][0]["colour"] = "blue"
    fleet_data["accounts"][0]["numbers"][0]["extra"] = {"x": 1}
    assert parse_fleet(fleet_data, "f") == plain


def test_missing_fleet_file(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="no such fleet file"):
        load_fleet(tmp_path / "nope.yaml")


def test_a_failed_init_keeps_the_old_database_and_leaves_no_temp_files(
    tmp_path: Path, sandbox_db: Path
) -> None:
    before = sandbox_db.read_bytes()
    bad = write_yaml(tmp_path / "bad.yaml", {"accounts": [{"name": "x", "status": "nope"}]})
    with pytest.raises(FleetError):
        init_database(sandbox_db, bad)
    assert sandbox_db.read_bytes() == before
    assert sorted(p.name for p in sandbox_db.parent.iterdir() if p.name.endswith(".tmp")) == []


def test_init_replaces_an_existing_database(tmp_path: Path, sandbox_db: Path) -> None:
    other = write_yaml(tmp_path / "other.yaml", {"accounts": [{"name": "Only one"}]})
    init_database(sandbox_db, other)
    with SandboxStore(sandbox_db) as store:
        assert store.counts() == (1, 0)
        assert store.audit() == []


# --- store: opening ---------------------------------------------------------------------


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_text("hello, not a database\n" * 100)
    with pytest.raises(SandboxDbError, match="not a"):
        SandboxStore(path)


def test_a_sqlite_file_that_is_not_a_sandbox_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(SandboxDbError, match="not a sandbox database"):
        SandboxStore(path)


def test_a_missing_database_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(SandboxDbError, match="sandbox init"):
        SandboxStore(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_the_database_is_in_wal_mode(sandbox_db: Path) -> None:
    conn = sqlite3.connect(sandbox_db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


# --- store: writes and audit ------------------------------------------------------------


def test_a_status_write_is_audited_once_and_updates_the_account(sandbox_db: Path) -> None:
    with SandboxStore(sandbox_db) as store:
        account = store.set_account_status("1001", "stopped", "direct")
        assert account["status"] == "stopped"
        assert account["updated"] != "2026-10-02T15:04:00Z"
        again = store.set_account_status("1001", "stopped", "http")  # a retry: no change
        assert again == account
        rows = store.audit()
    assert len(rows) == 1
    assert rows[0]["resource"] == "account.1001"
    assert (rows[0]["field"], rows[0]["from"], rows[0]["to"], rows[0]["via"]) == (
        "status",
        "active",
        "stopped",
        "direct",
    )
    assert rows[0]["time"].endswith("Z")


def test_number_writes_audit_only_real_changes(sandbox_db: Path) -> None:
    with SandboxStore(sandbox_db) as store:
        same = store.update_number("1001", "TPN1001A", active=True, paused=False, via="http")
        assert same["updated"] == "2026-10-02T15:04:00Z"  # nothing changed, nothing touched
        assert store.audit() == []
        stopped = store.update_number("1001", "TPN1001A", active=False, via="http")
        assert stopped["active"] is False
        assert stopped["active_changed"] == stopped["updated"] != "2025-03-01T09:00:00Z"
        paused = store.update_number("1001", "TPN1001A", paused=True, via="http")
        assert paused["active_changed"] == stopped["active_changed"]  # pausing is not calls
        rows = store.audit("number.+14105550101")
    assert [(r["field"], r["from"], r["to"]) for r in rows] == [
        ("active", "true", "false"),
        ("paused", "false", "true"),
    ]


def test_pausing_an_offline_number_is_refused(sandbox_db: Path) -> None:
    with SandboxStore(sandbox_db) as store:
        with pytest.raises(Conflict, match="not online"):
            store.update_number("1001", "TPN1001B", paused=True, via="direct")
        # resuming (a no-op) is fine
        store.update_number("1001", "TPN1001B", paused=False, via="direct")
        assert store.audit() == []


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.set_account_status("1001", "off", "direct"), BadValue),
        (lambda s: s.update_number("1001", "TPN1001A", active=1, via="direct"), BadValue),
        (lambda s: s.update_number("1001", "TPN1001A", via="direct"), BadValue),
        (lambda s: s.set_account_status("9999", "active", "direct"), ProviderNotFound),
        (
            lambda s: s.update_number("1002", "TPN1001A", active=True, via="direct"),
            ProviderNotFound,
        ),
        (lambda s: s.get_number("1001", "TPN-none"), ProviderNotFound),
        (lambda s: s.list_numbers("x" * 10_000, 1, 10), ProviderNotFound),
    ],
)
def test_bad_writes_and_unknown_ids(sandbox_db: Path, call: Any, error: type) -> None:
    with SandboxStore(sandbox_db) as store:
        with pytest.raises(error):
            call(store)
        assert store.audit() == []


def test_concurrent_writers_are_serialised(sandbox_db: Path) -> None:
    """8 threads hammer the same number and the same account; every change is audited."""
    store = SandboxStore(sandbox_db)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(25):
                store.update_number("1001", "TPN1001A", active=(i + j) % 2 == 0, via="http")
                store.set_account_status("1002", ("active", "paused")[j % 2], "direct")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = store.audit("number.+14105550101")
    # every audit row is a real transition: from differs from to, and each follows the last
    assert all(r["from"] != r["to"] for r in rows)
    assert all(a["to"] == b["from"] for a, b in itertools.pairwise(rows))
    final = store.get_number("1001", "TPN1001A")["active"]
    assert rows[-1]["to"] == ("true" if final else "false")
    store.close()


# --- the direct provider ----------------------------------------------------------------


def test_provider_reads_live_objects_and_lists_missing_ids(sandbox_db: Path) -> None:
    with SandboxProvider(sandbox_db) as provider:
        state = provider.read(["1002", "404", "1001", "1001"])
    assert list(state.accounts) == ["1002", "1001"]
    assert state.missing == ["404"]
    acme = state.accounts["1001"]
    assert acme.monthly_fee == Decimal("49.00") and acme.status == "active"
    assert [n.number for n in acme.numbers] == ["+14105550101", "+14105550102"]
    main, mail = acme.numbers
    assert (main.calls, main.swapping, main.online, main.recent_calls) == (
        "allowed",
        "active",
        True,
        212,
    )
    assert (mail.calls, mail.online, mail.renewal_fee) == ("stopped", False, Decimal("3.00"))
    assert main.active_changed == datetime(2025, 3, 1, 9, tzinfo=timezone.utc)
    assert state.accounts["1002"].numbers[0].swapping == "paused"


def test_provider_read_uses_a_constant_number_of_queries(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    generate_database(db, 30, 20, seed=3, now=NOW)
    with SandboxProvider(db) as provider:
        statements: list[str] = []
        provider.store.set_trace(statements.append)
        provider.read(["1001"])
        one = len(statements)
        statements.clear()
        provider.read([str(1001 + i) for i in range(30)])
        assert len(statements) == one <= 4  # BEGIN, accounts, numbers, COMMIT


def test_provider_writes_map_calls_and_swapping(sandbox_db: Path) -> None:
    with SandboxProvider(sandbox_db) as provider:
        number = provider.set_number("1001", "TPN1001A", "calls", "stopped")
        assert number.calls == "stopped"
        number = provider.set_number("1001", "TPN1001A", "swapping", "paused")
        assert (number.calls, number.swapping) == ("stopped", "paused")
        account = provider.set_account_status("1003", "active")
        assert account.status == "active"
        with pytest.raises(ProviderError, match="not online"):
            provider.set_number("1001", "TPN1001B", "swapping", "paused")
        with pytest.raises(ProviderError):
            provider.set_number("1001", "TPN1001A", "calls", "maybe")
        vias = {row["via"] for row in provider.store.audit()}
    assert vias == {"direct"}
    assert provider.target == str(sandbox_db)


def test_provider_seeds_a_missing_database(tmp_path: Path, fleet_file: Path) -> None:
    db = tmp_path / "deep" / "er" / "sandbox.db"
    with SandboxProvider(db, seed=fleet_file) as provider:
        assert sorted(provider.read(["1001", "1002", "1003"]).accounts) == [
            "1001",
            "1002",
            "1003",
        ]
    assert db.is_file()


def test_provider_without_database_or_seed_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="reconciler sandbox init --db"):
        SandboxProvider(tmp_path / "none.db", seed=tmp_path / "missing-seed.yaml")
    with pytest.raises(ProviderError, match="reconciler sandbox init --db"):
        SandboxProvider(tmp_path / "none.db")


# --- the generator ----------------------------------------------------------------------


def test_generation_is_deterministic_and_realistic() -> None:
    accounts, numbers = generate_rows(200, 50, seed=7, now=NOW)
    assert (accounts, numbers) == generate_rows(200, 50, seed=7, now=NOW)
    assert generate_rows(200, 50, seed=8, now=NOW)[1] != numbers
    assert len({n[2] for n in numbers}) == len(numbers) == 10_000
    assert len({n[0] for n in numbers}) == len(numbers)
    assert len({a[2] for a in accounts}) == len(accounts)  # names unique
    stopped = sum(1 for n in numbers if not n[5]) / len(numbers)
    paused = sum(1 for n in numbers if n[6]) / len(numbers)
    assert 0.03 < stopped < 0.07 and 0.015 < paused < 0.045
    assert all(n[8] for n in numbers if n[6])  # only online numbers are paused
    assert {n[9] for n in numbers} == {"3.00", "5.00"}
    assert {a[3] for a in accounts} == {"active", "paused", "stopped"}
    assert all(n[3].startswith("(") for n in numbers)
    # the generated rows are a valid fleet
    fleet = parse_fleet(
        {"accounts": [{"id": int(a[0]), "name": a[2]} for a in accounts[:3]]}, "generated"
    )
    assert [a[0] for a in fleet.accounts] == ["1001", "1002", "1003"]


def test_a_generated_fleet_round_trips_through_a_fleet_file(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    generate_database(db, 5, 7, seed=2, now=NOW)
    with SandboxStore(db) as store:
        dumped = dump_fleet(store)
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(dumped))
    again = tmp_path / "again.db"
    init_database(again, path)
    with SandboxStore(again) as store:
        assert dump_fleet(store) == dumped


def test_100k_numbers_generate_and_read_fast(tmp_path: Path) -> None:
    """The benchmark fleet: 1,000 x 100. Bounds are loose (shared CI); see the report."""
    db = tmp_path / "big.db"
    started = time.perf_counter()
    generate_database(db, 1000, 100, seed=1, now=NOW)
    generate_s = time.perf_counter() - started
    with SandboxProvider(db) as provider:
        started = time.perf_counter()
        state = provider.read([str(1001 + i) for i in range(1000)])
        read_s = time.perf_counter() - started
    assert sum(len(a.numbers) for a in state.accounts.values()) == 100_000
    assert generate_s < 8, generate_s
    assert read_s < 3, read_s


def test_numbers_pages_as_json_text_are_the_wire_shape(tmp_path: Path) -> None:
    """The server's numbers list is JSON built by SQLite: it must equal number_to_wire's."""
    accounts, numbers = generate_rows(3, 40, seed=5, now=NOW)
    odd = list(numbers[0])
    odd[4] = 'Caf\u00e9 "Main" \\ line\t\u2603'  # name: non-ASCII, quotes, backslash, tab
    odd[9] = odd[11] = odd[12] = None  # no fee, never changed, no update time
    numbers[0] = tuple(odd)
    db = tmp_path / "s.db"
    create_database(db, accounts, numbers)
    with SandboxStore(db) as store:
        for account in accounts:
            for page, per_page in ((1, 150), (1, 7), (3, 7), (6, 7), (9, 7)):
                text, total = store.list_numbers_json(account[0], page, per_page)
                items, expected_total = store.list_numbers(account[0], page, per_page)
                assert total == expected_total
                # equal, with the same keys in the same order at every level
                assert json.dumps(json.loads(text)) == json.dumps(items)
        with pytest.raises(ProviderNotFound):
            store.list_numbers_json("424242", 1, 10)
        assert store.list_numbers_json(accounts[0][0], 10**20, 150) == ("[]", 40)


def test_numbers_page_as_json_of_an_account_without_numbers(tmp_path: Path) -> None:
    accounts, _ = generate_rows(1, 0, seed=5, now=NOW)
    db = tmp_path / "s.db"
    create_database(db, accounts, [])
    with SandboxStore(db) as store:
        assert store.list_numbers_json(accounts[0][0], 1, 150) == ("[]", 0)
