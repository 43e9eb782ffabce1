"""Tolerant, honest reads (issue 14, part 1): a provider shaped like what CTM's public
material shows, through the real CLI.

`ctm_shaped` is a tampering proxy in front of the real `sandbox serve` with a switch per
variation the public material allows: numbers without `active`/`paused`/`source`/`stats`,
accounts with another status or no fee, error bodies under `error` or `message`. The
plan never changes a field it cannot see, and one odd account never stops the others.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tamper_proxy import Refuse, tamper_proxy
from test_cli_e2e import audit, run
from test_effects import http_config, live_db

from reconciler.providers.sandbox.server import start_server


def ctm_shaped(
    *,
    drop_number_fields: tuple[str, ...] = (),
    account_status: dict[str, Any] | None = None,
    drop_account_fields: tuple[str, ...] = (),
    only: str = "",
) -> Any:
    """A tamper function: numbers of accounts whose path contains `only` lose these
    fields; accounts get these statuses (None: no status at all) or lose these fields."""
    statuses = account_status or {}

    def account(item: dict) -> dict:
        if str(item.get("id")) in statuses:
            item = {**item, "status": statuses[str(item["id"])]}
            if item["status"] is None:
                del item["status"]
        return {k: v for k, v in item.items() if k not in drop_account_fields}

    def tamper(method: str, path: str, data: Any) -> Any:
        if method != "GET" or not isinstance(data, dict):
            return data
        if "numbers" in data and only in path:
            data["numbers"] = [
                {k: v for k, v in n.items() if k not in drop_number_fields} for n in data["numbers"]
            ]
        if "accounts" in data:
            data["accounts"] = [account(a) for a in data["accounts"]]
        elif "status" in data and "numbers" not in data:
            data = account(data)
        return data

    return tamper


@contextmanager
def shaped(project: Path, monkeypatch: pytest.MonkeyPatch, tamper: Any):
    run("plan")  # seed the database from the example fleet
    with (
        start_server(live_db(project), access_key="ak", secret_key="sk-effects-0123") as server,
        tamper_proxy(server.url, tamper) as url,
    ):
        http_config(project, url, monkeypatch)
        yield


def plan_of(*args: str) -> dict:
    code, out = run("plan", "--format", "json", *args)
    assert code in (0, 1), out
    return json.loads(out)


def findings(plan: dict, kind: str, code: str) -> dict[str, str]:
    return {f["address"]: f["message"] for f in plan[kind] if f["code"] == code}


def test_a_number_without_paused_is_never_changed_in_swapping(project, monkeypatch):
    tamper = ctm_shaped(drop_number_fields=("paused",), only="/1001/")
    with shaped(project, monkeypatch, tamper):
        plan = plan_of()
    # the config pauses +14105550103: it cannot be planned, and says why
    errors = findings(plan, "errors", "not_reported")
    assert set(errors) == {"number.+14105550103"}
    assert "does not report swapping of +14105550103" in errors["number.+14105550103"]
    assert "has no `paused`" in errors["number.+14105550103"]
    # the others want the default: left as they are, one warning for the account
    warned = findings(plan, "warnings", "not_reported")
    assert set(warned) == {"account.1001"}
    # the five numbers of the file but +14105550103
    assert "does not report swapping for 4 number(s) of account 1001" in warned["account.1001"]
    assert not [
        c for c in plan["changes"] if c["field"] == "swapping" and "1001" in c["account_id"]
    ]
    # calls are still reported and still planned
    assert {(c["address"], c["field"]) for c in plan["changes"] if c["account_id"] == "1001"} == {
        ("number.+14105550102", "calls"),
        ("number.+14105550104", "calls"),
    }


def test_a_number_without_active_leaves_calls_alone(project, monkeypatch):
    tamper = ctm_shaped(drop_number_fields=("active",), only="/1001/")
    with shaped(project, monkeypatch, tamper):
        plan = plan_of()
    errors = findings(plan, "errors", "not_reported")
    assert "number.+14105550102" in errors  # the config stops its calls: cannot be planned
    assert "has no `active`" in errors["number.+14105550102"]
    assert not [c for c in plan["changes"] if c["field"] == "calls" and c["account_id"] == "1001"]


def test_an_unknown_account_status_is_an_error_for_that_account_alone(project, monkeypatch):
    tamper = ctm_shaped(account_status={"1002": "canceled", "1004": None})
    with shaped(project, monkeypatch, tamper):
        plan = plan_of()
        errors = findings(plan, "errors", "unsupported_status")
        assert set(errors) == {"account.1002", "account.1004"}
        assert "has status 'canceled' at the provider" in errors["account.1002"]
        assert "has status none at the provider" in errors["account.1004"]
        planned = {c["account_id"] for c in plan["changes"]}
        assert "1002" not in planned and "1004" not in planned
        assert {"1001", "1003"} <= planned  # the others are planned
        code, out = run("apply", "--account", "1001", "--auto-approve")
    assert code == 0, out
    of_1001 = {c["address"] for c in plan["changes"] if c["account_id"] == "1001"}
    assert {w["resource"] for w in audit(project)} == of_1001 != set()


def test_missing_optional_fields_are_tolerated_and_said(project, monkeypatch):
    tamper = ctm_shaped(
        drop_number_fields=("source", "stats", "active_changed", "name", "formatted"),
        drop_account_fields=("monthly_fee",),
    )
    with shaped(project, monkeypatch, tamper):
        plan = plan_of()
        _, out = run("plan")
    pausing = findings(plan, "errors", "not_pausable")
    assert "does not report its source" in pausing["number.+14105550103"]
    calls = findings(plan, "warnings", "recent_calls")
    assert "call counts are not reported for 3 of them" in calls["account.1003"]
    assert "whose call counts the provider does not report" in calls["number.+14105550102"]
    charges = plan["charges"]
    assert charges["estimated"] == len(charges["items"]) > 0
    assert all(item["estimated"] for item in charges["items"])
    # numbers at billing.default_number_monthly_fee (3.00), accounts at the new
    # billing.default_account_monthly_fee (0.00)
    fees = {i["address"]: i["monthly_fee"] for i in charges["items"]}
    assert fees["account.1003"] == "0.00" and fees["number.+14105550102"] == "3.00"
    assert "fees the provider does not report are counted at the billing defaults" in out


@pytest.mark.parametrize(
    ("body_key", "value", "shown"),
    [
        ("error", "per_page limit is 150", "per_page limit is 150"),
        ("message", ["account is locked", "try later"], "account is locked; try later"),
        ("reason", "number is locked by billing", "number is locked by billing"),
    ],
)
def test_an_error_reason_is_read_from_reason_error_or_message(
    project, monkeypatch, body_key, value, shown
):
    def refuse(method: str, path: str, data: Any) -> Any:
        return data

    def before(method: str, path: str) -> None:
        if path.endswith("/accounts/1003"):
            raise Refuse(400, "", {"status": "error", body_key: value})

    refuse.before = before  # type: ignore[attr-defined]
    with shaped(project, monkeypatch, refuse):
        code, out = run("plan", "--account", "1003")
    assert code == 1
    assert (
        out.strip().splitlines()[-1] == f"Error: ctm: GET /accounts/1003: 400 Bad Request: {shown}"
    )
