"""Table-driven tests of the pure planner: transitions, codes, windows, charges, checksum."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from factories import NOW, codes, dacc, dnum, lacc, lnum, plan_of

from reconciler.models import Settings
from reconciler.plan import checksum
from reconciler.windows import humanize

N1, N2 = "+14105550101", "+14105550102"

# --- every account transition ---------------------------------------------------------

ACCOUNT_TRANSITIONS = [
    ("active", "paused", "pause"),
    ("paused", "active", "resume"),
    ("active", "stopped", "stop"),
    ("paused", "stopped", "stop"),
    ("stopped", "active", "allow"),
    ("stopped", "paused", "allow"),
]


@pytest.mark.parametrize(("live", "desired", "action"), ACCOUNT_TRANSITIONS)
def test_account_transitions(live, desired, action):
    p = plan_of([dacc(status=desired)], [lacc(status=live)])
    assert [(c.address, c.field, c.from_, c.to, c.action) for c in p.changes] == [
        ("account.1001", "status", live, desired, action)
    ]
    assert p.changes[0].source == "acc.yaml:4" and p.changes[0].monthly_fee == "49.00"
    assert getattr(p.summary, action) == 1


@pytest.mark.parametrize("status", ["active", "paused", "stopped"])
def test_account_unchanged(status):
    p = plan_of([dacc(status=status)], [lacc(status=status)])
    assert p.changes == [] and p.summary.unchanged == 1


NUMBER_TRANSITIONS = [
    ("calls", "allowed", "stopped", "stop"),
    ("calls", "stopped", "allowed", "allow"),
    ("swapping", "active", "paused", "pause"),
    ("swapping", "paused", "active", "resume"),
]


@pytest.mark.parametrize(("field", "live", "desired", "action"), NUMBER_TRANSITIONS)
def test_number_transitions(field, live, desired, action):
    p = plan_of([dacc([dnum(N1, **{field: desired})])], [lacc([lnum(N1, **{field: live})])])
    (c,) = p.changes
    assert (c.address, c.kind, c.field, c.from_, c.to, c.action, c.reason) == (
        f"number.{N1}",
        "number",
        field,
        live,
        desired,
        action,
        "config",
    )
    assert c.number_id == "TPN0101" and c.account_id == "1001" and c.monthly_fee == "3.00"
    assert c.source == ("acc.yaml:11" if field == "calls" else "acc.yaml:12")


def test_number_both_fields_change_counts_one_resource():
    p = plan_of(
        [dacc([dnum(N1, calls="stopped", swapping="paused"), dnum(N2, line=20)])],
        [lacc([lnum(N1), lnum(N2)])],
    )
    assert [c.field for c in p.changes] == ["calls", "swapping"]
    assert p.summary.unchanged == 2  # the account and N2


# --- windows ------------------------------------------------------------------------------


def test_window_ongoing_keeps_stop_and_says_time_left():
    until = NOW + timedelta(days=5, hours=3)
    p = plan_of([dacc([dnum(N1, calls="stopped", until=until)])], [lacc([lnum(N1)])])
    assert p.changes[0].to == "stopped" and p.changes[0].reason == "config"
    assert p.changes[0].until == "2026-12-01T13:00:00Z"
    (w,) = [w for w in p.warnings if w.code == "window_ends"]
    assert "ends in 5d 3h" in w.message and w.source == "acc.yaml:13"


def test_window_ended_allows_again_with_reason():
    until = NOW - timedelta(hours=1)
    p = plan_of(
        [dacc([dnum(N1, calls="stopped", until=until)])], [lacc([lnum(N1, calls="stopped")])]
    )
    (c,) = p.changes
    assert (c.action, c.to, c.reason) == ("allow", "allowed", "window_ended")
    assert any("window ended 1h 0m ago" in w.message for w in p.warnings)
    assert any("remove from/until and `calls: stopped` from" in w.message for w in p.warnings)


def test_an_ended_pause_window_says_which_lines_to_remove():
    until = NOW - timedelta(hours=1)
    num = dnum(N1, calls="stopped", swapping="paused", until=until)
    p = plan_of([dacc([num])], [lacc([lnum(N1, calls="stopped", swapping="paused")])])
    (w,) = [w for w in p.warnings if w.code == "window_ends"]
    assert "remove from/until and `calls: stopped` and `swapping: paused` from" in w.message
    pause = dnum(N1, swapping="paused", until=until)
    p = plan_of([dacc([pause])], [lacc([lnum(N1, swapping="paused")])])
    (w,) = [w for w in p.warnings if w.code == "window_ends"]
    assert "and `swapping: paused` from the file" in w.message and "stop" not in w.message


def test_account_window_ended_resumes():
    p = plan_of([dacc(status="paused", until=NOW - timedelta(minutes=1))], [lacc(status="paused")])
    (c,) = p.changes
    assert (c.action, c.to, c.reason) == ("resume", "active", "window_ended")


def test_window_ended_and_live_already_allowed_is_no_change():
    p = plan_of(
        [dacc([dnum(N1, calls="stopped", until=NOW - timedelta(days=1))])], [lacc([lnum(N1)])]
    )
    assert p.changes == []


# --- errors ---------------------------------------------------------------------------------


def test_unknown_account():
    p = plan_of([dacc(account="9999")], [], missing=["9999"])
    assert codes(p.errors) == ["unknown_account"] and p.errors[0].source == "acc.yaml:2"


def test_unknown_number():
    p = plan_of([dacc([dnum(N1), dnum(N2, line=20)])], [lacc([lnum(N1)])])
    assert codes(p.errors) == ["unknown_number"] and p.errors[0].address == f"number.{N2}"
    assert p.errors[0].source == "acc.yaml:20"


def test_wrong_account():
    p = plan_of(
        [dacc([dnum(N1), dnum(N2, line=20)]), dacc(account="1002", numbers=())],
        [lacc([lnum(N1)]), lacc([lnum(N2, account="1002")], account="1002", name="Bay")],
    )
    assert codes(p.errors) == ["wrong_account"]
    assert "belongs to account 1002 (Bay), not 1001" in p.errors[0].message


def test_not_pausable_offline_number():
    p = plan_of([dacc([dnum(N1, swapping="paused")])], [lacc([lnum(N1, online=False)])])
    assert codes(p.errors) == ["not_pausable"] and p.changes == []


def test_offline_number_already_paused_is_fine():
    p = plan_of(
        [dacc([dnum(N1, swapping="paused")])], [lacc([lnum(N1, online=False, swapping="paused")])]
    )
    assert p.errors == [] and p.changes == []


@pytest.mark.parametrize(
    ("desired_kw", "live_kw"), [({"calls": "stopped"}, {}), ({"swapping": "paused"}, {})]
)
def test_protected_number_cannot_be_stopped_or_paused(desired_kw, live_kw):
    p = plan_of([dacc([dnum(N1, protected=True, **desired_kw)])], [lacc([lnum(N1, **live_kw)])])
    assert codes(p.errors) == ["protected"] and p.changes == []


def test_protected_number_can_be_allowed():
    p = plan_of([dacc([dnum(N1, protected=True)])], [lacc([lnum(N1, calls="stopped")])])
    assert p.errors == [] and p.changes[0].action == "allow"


@pytest.mark.parametrize("status", ["paused", "stopped"])
def test_protected_account(status):
    p = plan_of([dacc(status=status, protected=True)], [lacc()])
    assert codes(p.errors) == ["protected"] and p.changes == []


# --- warnings -------------------------------------------------------------------------------


def test_name_mismatch():
    p = plan_of([dacc(name="Acme Dental")], [lacc(name="ACME Dental LLC")])
    assert "name_mismatch" in codes(p.warnings)


def test_no_name_in_config_is_no_mismatch():
    assert "name_mismatch" not in codes(plan_of([dacc(name=None)], [lacc()]).warnings)


def test_recent_calls_only_for_stops_with_calls():
    p = plan_of(
        [dacc([dnum(N1, calls="stopped"), dnum(N2, calls="stopped", line=20)])],
        [lacc([lnum(N1, recent_calls=12), lnum(N2, recent_calls=0)])],
    )
    rc = [w for w in p.warnings if w.code == "recent_calls"]
    assert len(rc) == 1 and "took 12 calls" in rc[0].message


def test_stale_stop_uses_active_changed_and_policy():
    settings = Settings.model_validate({"policy": {"stale_stop_days": 10}})
    live = [
        lacc(
            [
                lnum(N1, calls="stopped", active_changed=NOW - timedelta(days=11)),
                lnum(N2, calls="stopped", active_changed=NOW - timedelta(days=9)),
            ]
        )
    ]
    p = plan_of(
        [dacc([dnum(N1, calls="stopped"), dnum(N2, calls="stopped", line=20)])],
        live,
        settings=settings,
    )
    stale = [w for w in p.warnings if w.code == "stale_stop"]
    assert [w.address for w in stale] == [f"number.{N1}"]
    assert "stopped for 11 days" in stale[0].message and "3.00 USD/month" in stale[0].message


def test_stale_stopped_account():
    p = plan_of(
        [dacc(status="stopped")], [lacc(status="stopped", updated=NOW - timedelta(days=90))]
    )
    assert "stale_stop" in codes(p.warnings)


def test_not_effective_number_allowed_under_stopped_account():
    p = plan_of(
        [dacc([dnum(N1)], status="stopped")], [lacc([lnum(N1, calls="stopped")], status="stopped")]
    )
    ne = [w for w in p.warnings if w.code == "not_effective"]
    assert {w.address for w in ne} == {f"number.{N1}", "account.1001"}


def test_not_effective_resume_swapping_under_paused_account():
    p = plan_of(
        [dacc([dnum(N1)], status="paused")], [lacc([lnum(N1, swapping="paused")], status="paused")]
    )
    assert any(w.code == "not_effective" and "not swapped" in w.message for w in p.warnings)


@pytest.mark.parametrize(
    ("policy", "in_warnings", "in_errors"),
    [("ignore", False, False), ("report", True, False), ("error", False, True)],
)
def test_unmanaged_policy(policy, in_warnings, in_errors):
    settings = Settings.model_validate({"policy": {"unmanaged": policy}})
    p = plan_of([dacc([dnum(N1)])], [lacc([lnum(N1), lnum(N2)])], settings=settings)
    assert p.unmanaged == [f"number.{N2}"]
    assert ("unmanaged" in codes(p.warnings)) == in_warnings
    assert ("unmanaged" in codes(p.errors)) == in_errors
    assert p.changes == []  # never touched


def numbers(n: int) -> list[str]:
    return [f"+1410555{1000 + i:04d}" for i in range(n)]


@pytest.mark.parametrize(
    ("total", "changed", "expected"),
    [(10, 3, False), (10, 4, True), (9, 9, False), (100, 30, False), (100, 31, True)],
)
def test_threshold(total, changed, expected):
    nums = numbers(total)
    desired = [dnum(n, calls="stopped" if i < changed else "allowed") for i, n in enumerate(nums)]
    p = plan_of([dacc(desired)], [lacc([lnum(n) for n in nums])])
    assert ("threshold_exceeded" in codes(p.warnings)) == expected


def test_charges_continue_on_every_stop_and_pause():
    p = plan_of(
        [dacc([dnum(N1, calls="stopped"), dnum(N2, swapping="paused", line=20)])],
        [lacc([lnum(N1), lnum(N2)])],
    )
    cc = [w for w in p.warnings if w.code == "charges_continue"]
    assert [w.address for w in cc] == [f"number.{N1}", f"number.{N2}"]
    assert "does not stop charges" in cc[0].message


# --- charges --------------------------------------------------------------------------------


def test_charges_definition():
    """Stopped account fee + each number that cannot ring, once; unmanaged included."""
    n3 = "+14105550103"
    live = [
        lacc(
            [lnum(N1), lnum(N2, calls="stopped", renewal_fee=Decimal("5.00")), lnum(n3)],
            monthly_fee=Decimal("49.00"),
        ),
        lacc([lnum("+14435550111", account="1002", renewal_fee=None)], account="1002"),
    ]
    desired = [
        dacc([dnum(N1), dnum(N2, calls="stopped", line=20)], status="stopped"),  # n3 unmanaged
        dacc([dnum("+14435550111", account="1002", calls="stopped")], account="1002"),
    ]
    p = plan_of(desired, live)
    ch = p.charges
    # account 49 + N1 3 + N2 5 + n3 3 (unmanaged, under stopped account) + 1002's number 3 (default fee)
    assert ch.stopped_monthly_total == "63.00"
    # N2 was already stopped: everything else is new
    assert ch.newly_stopped_monthly == "58.00"
    assert len(ch.items) == 5 and len({i.address for i in ch.items}) == 5
    assert all(isinstance(i.monthly_fee, str) for i in ch.items)


def test_charges_when_allowing_drop_out():
    p = plan_of([dacc([dnum(N1)])], [lacc([lnum(N1, calls="stopped")])])
    assert p.charges.stopped_monthly_total == "0.00" and p.charges.items == []


def test_money_is_decimal_exact():
    nums = numbers(10)
    live = [
        lacc(
            [lnum(n, calls="stopped", renewal_fee=Decimal("0.10")) for n in nums],
            monthly_fee=Decimal("0.20"),
            status="stopped",
        )
    ]
    p = plan_of([dacc([dnum(n, calls="stopped") for n in nums], status="stopped")], live)
    assert p.charges.stopped_monthly_total == "1.20"  # a float sum would give 1.2000000000000002


# --- checksum, linearity, purity ------------------------------------------------------------


def test_checksum_covers_intended_actions_only():
    a = plan_of([dacc([dnum(N1, calls="stopped", note="x")])], [lacc([lnum(N1)])])
    b = plan_of(
        [dacc([dnum(N1, calls="stopped", note="other", line=40)])],
        [lacc([lnum(N1, recent_calls=99)])],
        now=NOW + timedelta(hours=1),
    )
    assert a.checksum == b.checksum
    c = plan_of([dacc([dnum(N1, swapping="paused")])], [lacc([lnum(N1)])])
    assert c.checksum != a.checksum
    assert checksum([]) == plan_of([dacc()], [lacc()]).checksum


def test_checksum_independent_of_order():
    a = plan_of(
        [dacc([dnum(N1, calls="stopped"), dnum(N2, calls="stopped", line=20)])],
        [lacc([lnum(N1), lnum(N2)])],
    )
    b = plan_of(
        [dacc([dnum(N2, calls="stopped", line=20), dnum(N1, calls="stopped")])],
        [lacc([lnum(N2), lnum(N1)])],
    )
    assert a.checksum == b.checksum


def test_plan_is_pure_same_inputs_same_output():
    args = ([dacc([dnum(N1, calls="stopped")])], [lacc([lnum(N1)])])
    assert plan_of(*args).to_json_dict() == plan_of(*args).to_json_dict()


def test_large_fleet_in_sync_is_empty():
    """20,000 numbers in 4 accounts, all in sync: nothing to do, every resource counted."""
    ids = range(201, 205)
    desired = [
        dacc([dnum(f"+1{a}{i:06d}", account=str(a)) for i in range(5000)], account=str(a))
        for a in ids
    ]
    live = [
        lacc([lnum(f"+1{a}{i:06d}", account=str(a)) for i in range(5000)], account=str(a))
        for a in ids
    ]
    p = plan_of(desired, live)
    assert p.summary.unchanged == 20004 and p.changes == [] and p.errors == []


def test_humanize():
    assert humanize(timedelta(days=2, hours=5, minutes=3)) == "2d 5h"
    assert humanize(timedelta(hours=3, minutes=20)) == "3h 20m"
    assert humanize(timedelta(minutes=12)) == "12m"
    assert humanize(timedelta(seconds=-5)) == "0m"
