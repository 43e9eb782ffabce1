"""Issue 14, part 4: `reconciler accounts` (discovery) and `import --all`, `import` of a
managed account. Through the real CLI, on the example config and its sandbox; the HTTP
cases go through `sandbox serve` (request counts from its stats) and the tampering proxy
for statuses the sandbox cannot hold."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tamper_proxy import tamper_proxy
from test_cli_e2e import audit, bare_config, plan_json, run
from test_effects import http_config, live_db

from reconciler.providers.sandbox.server import start_server
from reconciler.shard import shard_of

KEYS = {"access_key": "ak", "secret_key": "sk-effects-0123"}  # what http_config sets
EVERGREEN = "evergreen-vet-clinic-not-managed-by-this-config.yaml"
EXAMPLE = {  # id -> (name, status, numbers, managing file) of the example fleet
    "1001": ("Acme Dental", "active", 6, "config/accounts/acme-dental.yaml"),
    "1002": ("Bayside Plumbing", "active", 4, "config/accounts/bayside-plumbing.yaml"),
    "1003": ("Cedar Law Group", "active", 3, "config/accounts/cedar-law.yaml"),
    "1004": ("Delta Auto Repair", "paused", 2, "config/accounts/delta-auto.yaml"),
    "1005": ("Evergreen Vet Clinic (not managed by this config)", "active", 1, None),
}


def accounts_json(*extra: str) -> list[dict[str, Any]]:
    code, out = run("accounts", "--format", "json", *extra)
    assert code == 0, out
    return json.loads(out)["accounts"]


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def seeded(project: Path) -> None:
    assert run("plan")[0] == 0  # creates the sandbox database from the example's seed


# --- accounts ---------------------------------------------------------------------------


def test_accounts_text_lists_every_live_account_and_its_file(project):
    code, out = run("accounts")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "NUMBERS", "MANAGED", "BY"]
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert list(rows) == list(EXAMPLE)
    for account_id, (name, status, numbers, path) in EXAMPLE.items():
        cells = rows[account_id].split("  ")
        assert [c.strip() for c in cells if c.strip()] == [
            account_id, name, status, str(numbers), path or "-",
        ]  # fmt: skip
    assert lines[-1] == (
        "5 accounts: 4 managed, 1 not managed (`reconciler import --all` writes files for them)."
    )
    assert audit(project) == []  # discovery never writes


def test_accounts_json_gives_managed_by_or_null(project):
    got = accounts_json()
    assert got == [
        {"id": i, "name": n, "status": s, "numbers": c, "managed_by": p}
        for i, (n, s, c, p) in EXAMPLE.items()
    ]
    assert {a["id"]: a["numbers"] for a in accounts_json("--no-counts")} == dict.fromkeys(EXAMPLE)


def test_accounts_works_without_any_account_file(project):
    cfg = bare_config(project)
    code, out = run("accounts", "--config", str(cfg))
    assert code == 0, out
    assert out.splitlines()[-1].startswith("5 accounts: 0 managed, 5 not managed")


# --- accounts over HTTP: the documented cost ----------------------------------------------


def served_cost(project: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[str, int]:
    """Run the CLI against `sandbox serve` over the project's database; (output, requests)."""
    with start_server(live_db(project), **KEYS) as server:
        http_config(project, server.url, monkeypatch)
        server.reset_stats()
        code, out = run(*args)
        assert code == 0, out
        stats = server.stats.snapshot()
    assert stats["writes"] == 0
    return out, stats["total"]


def test_accounts_over_http_costs_one_list_page_plus_one_request_per_account(project, monkeypatch):
    seeded(project)
    out, requests = served_cost(project, monkeypatch, "accounts", "--format", "json")
    listed = json.loads(out)["accounts"]
    assert [(a["id"], a["numbers"], a["managed_by"]) for a in listed] == [
        (i, c, p) for i, (_, _, c, p) in EXAMPLE.items()
    ]
    assert requests == math.ceil(5 / 150) + 5
    _, requests = served_cost(project, monkeypatch, "accounts", "--no-counts")
    assert requests == math.ceil(5 / 150)
    assert audit(project) == []


def test_accounts_over_http_pages_the_list_and_counts_from_total_entries(project, monkeypatch):
    """151 accounts of 151 numbers: two list pages, and each count from one numbers page
    although a full page holds only 150 (its total_entries says 151)."""
    db = project / "big.db"
    code, out = run(
        "sandbox", "generate", "--db", str(db), "--accounts", "151",
        "--numbers-per-account", "151",
    )  # fmt: skip
    assert code == 0, out
    for path in (project / "config" / "accounts").iterdir():
        path.unlink()  # no account of the example is in this fleet
    with start_server(db, **KEYS) as server:
        http_config(project, server.url, monkeypatch)
        for args, cost in (((), math.ceil(151 / 150) + 151), (("--no-counts",), 2)):
            server.reset_stats()
            listed = accounts_json(*args)
            assert server.stats.snapshot()["total"] == cost
            assert len(listed) == 151 and len({a["id"] for a in listed}) == 151
            counts = {a["numbers"] for a in listed}
            assert counts == ({None} if args else {151})


def test_accounts_lists_unknown_statuses_and_import_all_skips_them(project, monkeypatch):
    """A `canceled` account (and one whose status is missing) is listed as it is; a number
    without `paused` does not stop the count; `import --all` writes no file for them."""

    def tamper(method: str, path: str, data: Any) -> Any:
        if path.endswith("/accounts"):
            for acc in data["accounts"]:
                if acc["id"] == 1005:
                    acc["status"] = "canceled"
                if acc["id"] == 1003:
                    del acc["status"]
        if path.endswith("/numbers"):
            for number in data["numbers"]:
                number.pop("paused", None)
        return data

    seeded(project)
    (project / "config" / "accounts" / "cedar-law.yaml").unlink()
    with start_server(live_db(project), **KEYS) as server, tamper_proxy(server.url, tamper) as url:
        http_config(project, url, monkeypatch)
        listed = {a["id"]: a for a in accounts_json()}
        code, text = run("accounts")
        before = files(project / "config" / "accounts")
        code_all, out_all = run("import", "--all")
    assert listed["1005"]["status"] == "canceled" and listed["1005"]["numbers"] == 1
    assert listed["1003"]["status"] is None and listed["1003"]["managed_by"] is None
    assert listed["1001"]["numbers"] == 6
    assert code == 0
    assert "(not reported)" in text and "canceled" in text
    assert text.splitlines()[-1].endswith(
        "2 with a status no account file can hold: (not reported), canceled)."
    )
    assert code_all == 0, out_all
    assert "Warning: account 1005 not imported: its status ('canceled')" in out_all
    assert "Warning: account 1003 not imported: its status (not reported)" in out_all
    assert "Nothing to import" in out_all
    assert files(project / "config" / "accounts") == before
    assert audit(project) == []


# --- import --all -------------------------------------------------------------------------


def test_import_all_imports_only_the_unmanaged_and_plans_empty_for_them(project):
    config_files = files(project / "config" / "accounts")
    code, out = run("import", "--all")
    assert code == 0, out
    assert out == f"wrote config/accounts/{EVERGREEN}\n"
    after = files(project / "config" / "accounts")
    assert {k: v for k, v in after.items() if k != EVERGREEN} == config_files  # untouched
    code, data = plan_json()
    assert code == 0
    assert [c for c in data["changes"] if c["account_id"] == "1005"] == []
    assert "1005" in [a["id"] for a in data["accounts"]]
    assert [a["managed_by"] for a in accounts_json()][-1] == f"config/accounts/{EVERGREEN}"
    code, out = run("import", "--all")
    assert code == 0 and out == "Nothing to import: every live account is managed already.\n"
    assert audit(project) == []


def test_import_all_into_an_empty_config_gives_an_empty_plan(project):
    cfg = bare_config(project)
    code, out = run("import", "--config", str(cfg), "--all")
    assert code == 0, out
    assert len(list((cfg / "accounts").iterdir())) == 5
    assert run("plan", "--config", str(cfg), "--detailed-exitcode")[0] == 0
    code, data = plan_json("--config", str(cfg))
    assert data["changes"] == [] and data["errors"] == []
    assert sorted(a["id"] for a in data["accounts"]) == sorted(EXAMPLE)
    assert audit(project) == []


@pytest.mark.parametrize("k", [1, 2])
def test_import_all_shard_imports_only_that_shard(project, k):
    cfg = bare_config(project)
    code, out = run("import", "--config", str(cfg), "--all", "--shard", f"{k}/2")
    assert code == 0, out
    expected = {i for i in EXAMPLE if shard_of(i, 2) == k}
    assert expected and expected != set(EXAMPLE)  # both shards hold some accounts
    data = accounts_json("--config", str(cfg))
    assert {a["id"] for a in data if a["managed_by"]} == expected
    assert len(list((cfg / "accounts").iterdir())) == len(expected)
    code, out = run("import", "--config", str(cfg), "--all", "--shard", f"{3 - k}/2")
    assert code == 0, out
    assert all(a["managed_by"] for a in accounts_json("--config", str(cfg)))
    assert run("plan", "--config", str(cfg), "--detailed-exitcode")[0] == 0


def test_import_all_never_writes_over_a_file_managing_another_account(project):
    seeded(project)
    with sqlite3.connect(live_db(project)) as con:
        con.execute("UPDATE accounts SET name = 'Acme Dental' WHERE id = '1005'")
    before = files(project / "config" / "accounts")
    code, out = run("import", "--all", "--overwrite")
    assert code == 0, out
    after = files(project / "config" / "accounts")
    assert sorted(set(after) - set(before)) == ["acme-dental-account-1005.yaml"]
    assert {k: after[k] for k in before} == before
    assert "id: 1005" in after["acme-dental-account-1005.yaml"].decode()


# --- import --account of a managed account ------------------------------------------------


def test_import_of_a_managed_account_refuses_naming_its_file(project):
    seeded(project)
    before = files(project / "config" / "accounts")
    for extra in ((), ("--out", "elsewhere")):
        code, out = run("import", "--account", "1002", *extra)
        assert code == 1
        assert out.strip() == (
            "Error: account 1002 is already managed by config/accounts/bayside-plumbing.yaml; "
            "pass --overwrite to rewrite that file"
        )
    assert files(project / "config" / "accounts") == before
    assert not (project / "elsewhere").exists()
    assert audit(project) == []


def test_overwrite_rewrites_the_managing_file_in_place(project):
    """The managing file has a name of its own (not the slug `acme-dental.yaml` an import
    would choose): --overwrite rewrites it and creates nothing beside it."""
    accounts = project / "config" / "accounts"
    (accounts / "acme-dental.yaml").rename(accounts / "acme.yaml")
    before = files(accounts)
    code, out = run("import", "--account", "1001", "--overwrite")
    assert code == 0, out
    assert out == "wrote config/accounts/acme.yaml\n"
    after = files(accounts)
    assert sorted(after) == sorted(before)  # same names: no new file
    assert after["acme.yaml"] != before["acme.yaml"]
    assert after["acme.yaml"].startswith(b"# yaml-language-server")
    assert {k: v for k, v in after.items() if k != "acme.yaml"} == {
        k: v for k, v in before.items() if k != "acme.yaml"
    }
    assert [a["managed_by"] for a in accounts_json() if a["id"] == "1001"] == [
        "config/accounts/acme.yaml"
    ]
    code, data = plan_json("--account", "1001")
    assert code == 0 and data["changes"] == []  # the file now says what live is
    assert audit(project) == []


# --- usage ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Error: pass --account ID (repeatable) or --all"),
        (
            ("--all", "--account", "1001"),
            "Error: pass --account ID (repeatable) or --all, not both",
        ),
        (("--account", "1005", "--shard", "1/2"), "Error: --shard goes with --all"),
    ],
)
def test_import_takes_account_or_all(project, args, message):
    code, out = run("import", *args)
    assert code == 1 and out == message + "\n"
    assert not (project / ".reconciler").exists()  # refused before the provider was opened
