"""Issue 12, one rule per test, through the real CLI and the real sandbox (the example config):
`from`/`until` windows, `--at`, `apply --due`, drift that knows what is due, `schedule`.

The example config's holiday closure: +14435550114 (Bayside Plumbing) calls stopped from
2027-12-24T17:00:00Z until 2027-12-27T08:00:00Z; live has it allowed.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from icalendar import Calendar
from test_cli_e2e import audit, edit_account, plan_json, run

SALES = "number.+14435550114"
BAYSIDE = "bayside-plumbing.yaml"


def change(data: dict, address: str) -> dict | None:
    return next((c for c in data["changes"] if c["address"] == address), None)


# --- 1. from / until ---------------------------------------------------------------------


def test_a_window_ahead_changes_nothing_until_it_starts(project):
    code, data = plan_json("--account", "1002")
    assert code == 0 and change(data, SALES) is None
    (warn,) = [w for w in data["warnings"] if w["code"] == "window_starts"]
    assert warn["address"] == SALES and "starts in" in warn["message"]
    _, inside = plan_json("--account", "1002", "--at", "2027-12-24T17:00:00Z")  # inclusive
    c = change(inside, SALES)
    assert (c["action"], c["reason"], c["window_from"], c["until"]) == (
        "stop",
        "config",
        "2027-12-24T17:00:00Z",
        "2027-12-27T08:00:00Z",
    )
    _, after = plan_json("--account", "1002", "--at", "2027-12-27T08:00:00Z")  # exclusive
    assert change(after, SALES) is None


def test_a_stop_live_before_its_window_is_allowed_until_the_window_starts(project):
    run("plan")  # seed
    from reconciler.providers.sandbox.store import SandboxStore

    with SandboxStore(project / ".reconciler" / "sandbox.db") as s:
        s.update_number("1002", "TPN1002D", active=False, via="direct")
    code, out = run("plan", "--account", "1002", "--at", "2027-12-21T13:00:00Z")
    assert code == 0
    assert "~ number +14435550114 (Bayside Plumbing)  calls: stopped -> allowed" in out
    assert "allow · window not started · from 2027-12-24T17:00:00Z (starts in 3d 4h)" in out


def test_a_window_ended_stop_is_allowed_again(project):
    assert run("apply", "--auto-approve")[0] == 0  # +14435550112 stopped until 2027-01-05
    _, data = plan_json("--account", "1002", "--at", "2027-01-05T09:00:00Z")
    c = change(data, "number.+14435550112")
    assert (c["action"], c["reason"], c["boundary"]) == (
        "allow",
        "window_ended",
        "2027-01-05T08:00:00Z",
    )


# --- 2. --at -----------------------------------------------------------------------------------


def test_at_judges_time_rules_then_and_is_recorded(project):
    _, data = plan_json("--at", "2027-06-02T00:00:00Z")
    assert data["evaluated_at"] == "2027-06-02T00:00:00Z"
    assert data["generated_at"] != data["evaluated_at"]  # live was read now
    stale = next(w for w in data["warnings"] if w["code"] == "stale_stop")
    assert "has been stopped for 365 days (since 2026-06-01)" in stale["message"]


def test_a_bad_at_and_apply_at_are_one_line_errors(project):
    code, out = run("plan", "--at", "2027-06-01 noon")
    assert code == 1 and "expected an ISO-8601 time with timezone" in out
    code, out = run("drift", "--at", "2027-06-01T00:00:00")  # no timezone
    assert code == 1 and "--at 2026-12-24T18:00:00Z" in out
    code, out = run("apply", "--auto-approve", "--at", "2027-06-01T00:00:00Z")
    assert code == 1 and out.strip() == (
        "Error: apply always acts now: --at is for plan, drift and schedule (to see a time ahead)"
    )
    assert not (project / ".reconciler").exists()  # refused before anything was opened


# --- 3. apply --due -----------------------------------------------------------------------------


def _window_now(project, start: timedelta, end: timedelta) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    edit_account(
        project,
        BAYSIDE,
        "from: 2027-12-24T17:00:00Z",
        f"from: {(now + start).isoformat().replace('+00:00', 'Z')}",
    )
    edit_account(
        project,
        BAYSIDE,
        "until: 2027-12-27T08:00:00Z",
        f"until: {(now + end).isoformat().replace('+00:00', 'Z')}",
    )


def test_apply_due_carries_out_a_window_and_leaves_everything_else(project):
    _window_now(project, timedelta(minutes=-10), timedelta(days=2))
    code, out = run("apply", "--due", "--auto-approve", "--report", "r.json")
    assert code == 0, out
    assert "Not due: left for a normal apply (4):" in out
    assert "  - account 1003 status: active -> stopped" in out
    written = {(a["resource"], a["field"]) for a in audit(project)}
    # only entries with from/until: the holiday closure and the showroom's time-boxed stop;
    # the other changes (no window) wait for a reviewed apply
    assert written == {(SALES, "active"), ("number.+14435550112", "active")}
    report = json.loads((project / "r.json").read_text())
    assert report["converged"] and len(report["actions"]) == 2
    code, out = run("apply", "--due", "--auto-approve")
    assert code == 0 and "Nothing is due" in out  # level-triggered: nothing twice


def test_apply_due_keeps_every_guard(project):
    _window_now(project, timedelta(minutes=-10), timedelta(days=2))
    edit_account(
        project,
        BAYSIDE,
        '  - number: "+14435550114"\n',
        '  - number: "+14435550114"\n    protected: true\n',
    )
    code, out = run("apply", "--due", "--auto-approve")
    assert code == 1 and "nothing was applied" in out and audit(project) == []


# --- 5. drift knows what is due ---------------------------------------------------------------


def test_drift_within_the_grace_is_due_not_drift(project):
    code, out = run("drift", "--account", "1002", "--at", "2027-12-24T17:30:00Z")
    assert code == 0, out
    assert (
        "No drift: live matches the config (4 resources checked; 1 due (scheduled), not drift)."
        in out
    )
    assert "due (scheduled)" in out.split("Charges:")[0]


def test_drift_beyond_the_grace_says_the_schedule_did_not_run(project):
    code, out = run("drift", "--account", "1002", "--at", "2027-12-24T18:01:00Z")
    assert code == 2, out
    assert "Drift: 1 difference" in out
    assert "schedule_missed" in out and "apply --due` did not run or failed" in out


def test_due_grace_is_a_setting(project):
    settings = project / "config" / "reconciler.yaml"
    settings.write_text(
        settings.read_text().replace(
            "  stale_stop_days: 30\n", "  stale_stop_days: 30\n  due_grace_minutes: 120\n"
        )
    )
    code, out = run("drift", "--account", "1002", "--at", "2027-12-24T18:01:00Z")
    assert code == 0, out


# --- 6. schedule ----------------------------------------------------------------------------------


def test_schedule_lists_boundaries_with_their_charges(project):
    code, out = run("schedule", "--at", "2026-12-01T09:00:00Z", "--days", "400", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["format_version"] == 1
    events = [
        (e["at"], e["address"], e["action"], e["monthly_charges_effect"]) for e in data["events"]
    ]
    assert events == [
        ("2027-01-05T08:00:00Z", "number.+14435550112", "allow", "-3.00"),
        ("2027-01-15T14:00:00Z", "account.1004", "resume", "0.00"),
        ("2027-12-24T17:00:00Z", SALES, "stop", "3.00"),
        ("2027-12-27T08:00:00Z", SALES, "allow", "-3.00"),
    ]
    assert data["events"][2]["source"] == "config/accounts/bayside-plumbing.yaml:16"
    code, out = run("schedule", "--at", "2026-12-01T09:00:00Z")  # 30 days by default
    assert code == 0 and "No window boundaries in the 30 days" in out


def test_schedule_ics_is_a_calendar_with_stable_uids(project):
    args = ("schedule", "--at", "2027-12-01T00:00:00Z", "--format", "ics")
    code, first = run(*args)
    assert code == 0
    cal = Calendar.from_ical(first)
    events = [c for c in cal.walk("VEVENT")]
    assert [str(e["SUMMARY"]) for e in events] == [
        "stop calls +14435550114 (Bayside Plumbing)",
        "allow calls +14435550114 (Bayside Plumbing)",
    ]
    start = events[0].decoded("DTSTART")
    assert start == datetime(2027, 12, 24, 17, 0, tzinfo=timezone.utc)
    second = run(*args)[1]
    assert [str(e["UID"]) for e in Calendar.from_ical(second).walk("VEVENT")] == [
        str(e["UID"]) for e in events
    ]


def test_the_pr_comment_lists_what_is_upcoming(project):
    _, md = run("plan", "--format", "markdown", "--at", "2027-12-01T00:00:00Z")
    assert "#### Upcoming (30 days)" in md
    assert "| 2027-12-24T17:00:00Z | stop | number +14435550114 Bayside Plumbing" in md
    _, md = run("plan", "--format", "markdown", "--at", "2026-12-01T09:00:00Z")
    assert "Upcoming" not in md


# --- the API under the commands, without the CLI --------------------------------------------


def test_upcoming_and_due_desired_as_functions():
    from factories import NOW, dacc, dnum, lacc, lnum

    from reconciler.due import due_desired
    from reconciler.models import DesiredState, LiveState, Settings
    from reconciler.schedule import upcoming

    start, end = NOW + timedelta(days=1), NOW + timedelta(days=3)
    desired = DesiredState(
        "cfg",
        Settings(),
        None,
        {
            "1001": dacc(
                [
                    dnum("+14105550101", calls="stopped", start=start, until=end),
                    dnum("+14105550102", calls="stopped"),
                ],
                status="paused",
            )
        },
        "sha256:" + "0" * 64,
    )
    live = LiveState({"1001": lacc([lnum("+14105550101"), lnum("+14105550102")])})
    events = upcoming(desired, live, NOW, days=2)
    assert [(e.at, e.action, e.charges) for e in events] == [(start, "stop", Decimal("3.00"))]
    due = due_desired(desired, live)
    acc = due.accounts["1001"]
    assert acc.status == "active"  # no window: as live
    assert [(n.number, n.calls) for n in acc.numbers] == [
        ("+14105550101", "stopped"),  # a window: as written
        ("+14105550102", "allowed"),  # no window: as live
    ]


def test_sandbox_set_changes_live_and_refuses_nonsense(project):
    run("plan")  # seed
    db = str(project / ".reconciler" / "sandbox.db")
    code, out = run("sandbox", "set", "--db", db, "number.+14435550113", "calls=stopped")
    assert code == 0 and '"active": false' in out
    code, out = run("sandbox", "set", "--db", db, "number.+14435550113", "calls=off")
    assert code == 1 and "write FIELD=VALUE, one of calls=allowed|stopped" in out
    code, out = run("sandbox", "set", "--db", db, "acount.1001", "status=stopped")
    assert code == 1 and "write account.<id> or number.<E.164>" in out
    code, out = run("sandbox", "set", "--db", db, "account.1001", "state=stopped")
    assert code == 1 and "one of status=active|paused|stopped" in out
    code, out = run("sandbox", "set", "--db", db, "account.9999", "status=stopped")
    assert code == 1 and out.strip() == f"Error: {db}: no account '9999'"
    code, out = run("sandbox", "set", "--db", db, "number.+19999999999", "calls=stopped")
    assert code == 1 and out.strip() == f"Error: {db}: no number +19999999999"
    (last,) = audit(project)[-1:]
    assert (last["via"], last["resource"], last["to"]) == ("direct", "number.+14435550113", "false")
    code, out = run("drift", "--account", "1002", "--at", "2026-12-01T09:00:00Z")
    assert code == 2 and "calls: live stopped, config allowed" in out
