"""Issue 11, one rule per test: guards judged on effect across account -> numbers, money
as it is, error headlines, live-state integrity and verification as a re-plan.

Through the real CLI and the real sandbox (the example config); the HTTP cases go through
`sandbox serve` behind a small misbehaving proxy (tests/tamper_proxy.py).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from tamper_proxy import Refuse, tamper_proxy
from test_cli_e2e import account, audit, edit_account, plan_json, run

from reconciler.providers.sandbox.server import start_server
from reconciler.providers.sandbox.store import SandboxStore

BAYSIDE = "bayside-plumbing.yaml"


def findings(data: dict, kind: str, code: str) -> list[dict]:
    return [f for f in data[kind] if f["code"] == code]


# --- 2. protected on effect ------------------------------------------------------------


def test_an_account_stop_that_silences_a_protected_number_is_an_error(project):
    edit_account(project, BAYSIDE, "status: active", "status: stopped")
    code, data = plan_json("--account", "1002")
    assert code == 1
    (err,) = findings(data, "errors", "protected")
    assert err["address"] == "number.+14435550111"
    assert err["source"] == "config/accounts/bayside-plumbing.yaml:9"  # its protected: line
    assert (
        "stopping account 1002 (Bayside Plumbing) (status: active -> stopped, "
        "config/accounts/bayside-plumbing.yaml:5) would leave it unable to ring "
        "(388 calls in the last 30 days)" in err["message"]
    )
    code, out = run("apply", "--auto-approve", "--account", "1002")
    assert code == 1 and "nothing was applied" in out
    assert out.startswith("Plan has 1 error(s) and cannot be applied.")
    assert audit(project) == []


def test_an_account_pause_that_unswaps_a_protected_number_is_an_error(project):
    edit_account(project, BAYSIDE, "status: active", "status: paused")
    code, data = plan_json("--account", "1002")
    assert code == 1
    (err,) = findings(data, "errors", "protected")
    assert err["address"] == "number.+14435550111"
    assert "pausing account 1002" in err["message"]
    assert "no longer swapped on websites" in err["message"]


def test_an_unprotected_numbers_loss_is_no_error_and_a_protected_account_still_is(project):
    edit_account(project, BAYSIDE, "    protected: true\n", "")
    edit_account(project, BAYSIDE, "status: active", "status: stopped")
    code, data = plan_json("--account", "1002")
    assert code == 0 and data["errors"] == []
    edit_account(project, BAYSIDE, "status: stopped", "status: stopped\n  protected: true")
    code, data = plan_json("--account", "1002")
    assert code == 1
    assert [(e["code"], e["address"]) for e in data["errors"]] == [("protected", "account.1002")]


# --- 3. recent_calls on effect -------------------------------------------------------------


def test_an_account_stop_warns_with_the_calls_of_every_number_it_silences(project):
    code, data = plan_json()
    assert code == 0
    by_address = {w["address"]: w["message"] for w in findings(data, "warnings", "recent_calls")}
    assert by_address["account.1003"] == (
        "stopping account 1003 silences 3 numbers that took 8 calls in the last 30 days: "
        "+12025550121 (6), +18885550123 (2); callers will hear a disconnected tone"
    )
    assert "took 57 calls" in by_address["number.+14435550112"]  # a number's own stop


def test_a_numbers_own_stop_under_a_stopped_account_silences_nothing(project):
    assert run("apply", "--auto-approve")[0] == 0  # account 1003 is stopped live now
    edit_account(project, "cedar-law.yaml", '"+12025550121"', '"+12025550121"\n    calls: stopped')
    code, data = plan_json("--account", "1003")
    assert code == 0 and [c["action"] for c in data["changes"]] == ["stop"]
    assert findings(data, "warnings", "recent_calls") == []


# --- 4. mass-change guard on effect ----------------------------------------------------------


def generated(project: Path, accounts: int, numbers: int) -> Path:
    """A generated fleet and a config that matches it exactly (imported)."""
    db = project / "fleet.db"
    code, out = run(
        "sandbox", "generate", "--db", str(db), "--accounts", str(accounts),
        "--numbers-per-account", str(numbers),
    )  # fmt: skip
    assert code == 0, out
    cfg = project / "cfg"
    (cfg / "accounts").mkdir(parents=True)
    (cfg / "reconciler.yaml").write_text(f"provider:\n  type: sandbox\n  database: {db}\n")
    with sqlite3.connect(db) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM accounts ORDER BY seq")]
    args = [a for i in ids for a in ("--account", i)]
    assert run("import", "--config", str(cfg), *args)[0] == 0
    assert run("plan", "--config", str(cfg), "--detailed-exitcode")[0] == 0
    return cfg


def account_files(cfg: Path) -> list[Path]:
    return sorted((cfg / "accounts").glob("*.yaml"))


def set_status(path: Path, status: str) -> None:
    text = path.read_text()
    path.write_text(text.replace("status: active", f"status: {status}", 1))


def writes(project: Path) -> list[dict]:
    with SandboxStore(project / "fleet.db") as s:
        return s.audit()


def test_stopping_one_account_of_12_numbers_needs_force(project):
    cfg = generated(project, 3, 12)
    set_status(account_files(cfg)[0], "stopped")
    code, data = plan_json("--config", str(cfg))
    (warn,) = findings(data, "warnings", "threshold_exceeded")
    assert "per-account rule" in warn["message"] and "12 of the 12 numbers" in warn["message"]
    code, out = run("apply", "--config", str(cfg), "--auto-approve")
    assert code == 1 and "--force" in out and writes(project) == []
    code, out = run("apply", "--config", str(cfg), "--auto-approve", "--force")
    assert code == 0 and len(writes(project)) == 1


def test_the_share_of_numbers_counts_effects_not_fields(project):
    cfg = generated(project, 1, 12)
    (path,) = account_files(cfg)
    data = yaml.safe_load(path.read_text())
    ringing = [n for n in data["numbers"] if n.get("calls", "allowed") == "allowed"]
    assert len(ringing) >= 4
    for n in ringing[:3]:
        n["calls"] = "stopped"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    _, plan = plan_json("--config", str(cfg))
    assert findings(plan, "warnings", "threshold_exceeded") == []  # 3 of 12 = 25%
    ringing[3]["calls"] = "stopped"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    _, plan = plan_json("--config", str(cfg))
    (warn,) = findings(plan, "warnings", "threshold_exceeded")
    assert "4 of the 12 numbers" in warn["message"]


def test_stopping_4_of_12_small_accounts_needs_force(project):
    cfg = generated(project, 12, 3)  # accounts below the per-account minimum of 10 numbers
    files = account_files(cfg)
    for path in files[:3]:
        set_status(path, "stopped")
    _, data = plan_json("--config", str(cfg))
    assert findings(data, "warnings", "threshold_exceeded") == []  # 3 of 12 = 25%
    set_status(files[3], "stopped")
    _, data = plan_json("--config", str(cfg))
    (warn,) = findings(data, "warnings", "threshold_exceeded")
    assert warn["address"] == "plan"
    assert "per-plan rule" in warn["message"] and "4 of the 12 accounts" in warn["message"]
    code, out = run("apply", "--config", str(cfg), "--auto-approve")
    assert code == 1 and "--force" in out and writes(project) == []


# --- 5. money as it is -----------------------------------------------------------------------


def live_db(project: Path) -> Path:
    return project / ".reconciler" / "sandbox.db"


def test_drift_leads_with_what_live_bills_now(project):
    assert run("apply", "--auto-approve")[0] == 0
    with SandboxStore(live_db(project)) as s:
        s.set_account_status("1004", "stopped", "direct")  # behind the config's back
    code, out = run("drift")
    assert code == 2
    charges = out[out.index("Charges:") :]
    assert "Nothing managed is stopped" not in out
    # 119.00 as applied, plus account 1004 (49.00) and its two numbers (3.00 each)
    assert "Live now bills 174.00 USD/month for 10 stopped resources that cannot ring" in charges
    assert "account 1004" in charges
    _, data = plan_json("--account", "1004")
    ch = data["charges"]
    assert (ch["live_stopped_monthly"], ch["stopped_monthly_total"]) == ("55.00", "0.00")
    assert (ch["resumed_monthly"], ch["newly_stopped_monthly"]) == ("55.00", "0.00")
    assert {i["address"] for i in ch["resumed_items"]} == {
        "account.1004",
        "number.+13015550131",
        "number.+13015550132",
    }


def http_config(project: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "config" / "reconciler.yaml").write_text(
        f"provider:\n  type: ctm\n  base_url: {url}\n  requests_per_second: 500\n"
    )
    monkeypatch.setenv("CTM_ACCESS_KEY", "ak")
    monkeypatch.setenv("CTM_SECRET_KEY", "sk-effects-0123")


def through_proxy(project: Path, monkeypatch: pytest.MonkeyPatch, tamper: Any, *args: str):
    """Run the CLI against `sandbox serve` behind the tampering proxy."""
    run("plan")  # seed the database from the example fleet
    with (
        start_server(live_db(project), access_key="ak", secret_key="sk-effects-0123") as server,
        tamper_proxy(server.url, tamper) as url,
    ):
        http_config(project, url, monkeypatch)
        return run(*args)


def test_a_partly_failed_apply_states_the_re_read_figure(project, monkeypatch):
    def refuse_one(method: str, path: str, data: Any) -> Any:
        return data

    def before(method: str, path: str) -> None:
        if method == "POST" and "TPN1001B" in path:
            raise Refuse(409, "number is locked by billing")

    refuse_one.before = before  # type: ignore[attr-defined]

    code, out = through_proxy(
        project, monkeypatch, refuse_one, "apply", "--auto-approve", "--report", "r.json"
    )
    assert code == 1 and "4 ok, 1 failed" in out
    assert "Once applied" not in out.split("Apply incomplete")[1]
    # the plan said 119.00; +14105550102 (3.00) still rings
    assert "Still billed for stopped resources that cannot ring (re-read): 116.00 USD/month" in out
    report = json.loads((project / "r.json").read_text())
    after = report["charges_after"]
    assert after["stopped_monthly_total"] == after["live_stopped_monthly"] == "116.00"
    assert "number.+14105550102" not in {i["address"] for i in after["items"]}


# --- 6. headlines ----------------------------------------------------------------------------


def test_a_plan_of_errors_only_never_says_no_changes(project, tmp_path, monkeypatch):
    run("apply", "--auto-approve")
    edit_account(project, "acme-dental.yaml", '"+14105550104"', '"+14105550177"')
    code, out = run("plan", "--account", "1001")
    assert code == 1
    assert out.splitlines()[0] == "Plan has 1 error(s) and cannot be applied."
    assert "No changes" not in out
    code, md = run("plan", "--account", "1001", "--format", "markdown")
    assert md.splitlines()[1] == "### Plan has 1 error(s) and cannot be applied."
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    run("plan", "--account", "1001", "--format", "github")
    assert summary.read_text().splitlines()[1] == "### Plan has 1 error(s) and cannot be applied."
    code, out = run("drift", "--account", "1001")
    assert code == 1 and "No drift" not in out


# --- 7. live-state integrity -----------------------------------------------------------------


def test_a_number_listed_twice_is_an_error_and_nothing_is_planned_for_it(project, monkeypatch):
    def list_twice(method: str, path: str, data: Any) -> Any:
        if path.endswith("/accounts/1002/numbers"):
            copy = dict(data["numbers"][0], id="TPNCOPY", number="+14105550102")
            data["numbers"].append(copy)
        return data

    code, out = through_proxy(project, monkeypatch, list_twice, "plan", "--format", "json")
    data = json.loads(out)
    assert code == 1
    (err,) = findings(data, "errors", "duplicate_live_number")
    assert err["address"] == "number.+14105550102"
    assert "id TPN1001B in account 1001" in err["message"]
    assert "id TPNCOPY in account 1002" in err["message"]
    assert "number.+14105550102" not in {c["address"] for c in data["changes"]}
    assert findings(data, "errors", "wrong_account") == []
    code, out = through_proxy(project, monkeypatch, list_twice, "drift")
    assert code == 1 and "No drift" not in out
    code, out = through_proxy(project, monkeypatch, list_twice, "apply", "--auto-approve")
    assert code == 1 and audit(project) == []


def test_an_answer_for_another_account_is_a_provider_error(project, monkeypatch):
    def other_account(method: str, path: str, data: Any) -> Any:
        return dict(data, id=1001) if path.endswith("/accounts/1002") else data

    code, out = through_proxy(project, monkeypatch, other_account, "plan", "--account", "1002")
    assert code == 1 and "answered for another account" in out
    assert len(out.strip().splitlines()) == 1

    def numbers_of_another(method: str, path: str, data: Any) -> Any:
        if path.endswith("/accounts/1002/numbers"):
            data["numbers"] = [dict(n, account_id="1001") for n in data["numbers"]]
        return data

    code, out = through_proxy(project, monkeypatch, numbers_of_another, "plan")
    assert code == 1 and "answered for another account" in out


# --- 8. verification re-plans ----------------------------------------------------------------


def test_a_write_that_flips_another_field_does_not_verify(project, monkeypatch):
    def also_pause(method: str, path: str, data: Any) -> Any:
        if method == "POST" and path.endswith("/TPN1001B/update_number"):
            with SandboxStore(live_db(project)) as s:
                s.update_number("1001", "TPN1001B", paused=True, via="direct")
        return data

    code, out = through_proxy(
        project, monkeypatch, also_pause, "apply", "--auto-approve", "--report", "r.json"
    )
    assert code == 1, out
    assert "Verified: 5/5 planned fields match live state." in out
    assert "changed outside the plan: number +14105550102 swapping active -> paused" in out
    assert "Apply incomplete" in out
    (m,) = json.loads((project / "r.json").read_text())["verification"]["mismatches"]
    assert (m["kind"], m["address"], m["field"]) == ("unplanned", "number.+14105550102", "swapping")


def test_a_number_moved_mid_apply_does_not_verify(project, monkeypatch):
    def move(method: str, path: str, data: Any) -> Any:
        if method == "POST" and path.endswith("/TPN1001B/update_number"):
            with sqlite3.connect(live_db(project)) as conn:
                conn.execute("UPDATE numbers SET account_id = '1005' WHERE id = 'TPN1001B'")
        return data

    code, out = through_proxy(project, monkeypatch, move, "apply", "--auto-approve")
    assert code == 1, out
    assert "moved: number +14105550102 is no longer in account 1001" in out
    assert account(project, "1003")["status"] == "stopped"  # the other writes went through
