"""Property tests over small random fleets and configs (issue 11).

1. No plan ever lets a protected number lose ringing or swapping without a `protected`
   error on that number. The effect is recomputed here from the plan's own changes and
   the SPEC §2 rules, independently of the planner's bookkeeping.
2. After a real apply to the sandbox (the CLI, a real SQLite database) in which every
   action succeeds, the report's `charges_after.live_stopped_monthly` equals the plan's
   `stopped_monthly_total`; a plan with errors writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from factories import PROVIDER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.config import load_config
from reconciler.plan import build_plan
from reconciler.providers.sandbox.fleet import init_database
from reconciler.providers.sandbox.provider import SandboxProvider
from reconciler.providers.sandbox.store import SandboxStore

STATUSES = ["active", "paused", "stopped"]


@st.composite
def fleets(draw: Any) -> tuple[dict, list[dict]]:
    """(live fleet in wire shape, desired account files)."""
    live_accounts, files = [], []
    serial = 0
    for a in range(draw(st.integers(1, 3))):
        acc_id = 2001 + a
        numbers, desired = [], []
        for _ in range(draw(st.integers(0, 4))):
            serial += 1
            e164 = f"+1410555{serial:04d}"
            online = draw(st.booleans())
            numbers.append(
                {
                    "id": f"TPN{serial}",
                    "number": e164,
                    "name": f"n{serial}",
                    "active": draw(st.booleans()),
                    "paused": online and draw(st.booleans()),  # only online ones pause
                    "source": {"name": "Web", "online": online},
                    "stats": {
                        "renewal_costs": draw(st.sampled_from(["3.00", "5.00", "0.50"])),
                        "calls": draw(st.integers(0, 50)),
                    },
                }
            )
            if draw(st.integers(0, 4)):  # most numbers are listed in the file
                desired.append(
                    {
                        "number": e164,
                        "calls": draw(st.sampled_from(["allowed", "stopped"])),
                        "swapping": draw(st.sampled_from(["active", "paused"])),
                        "protected": draw(st.booleans()),
                    }
                )
        live_accounts.append(
            {
                "id": acc_id,
                "name": f"Account {acc_id}",
                "status": draw(st.sampled_from(STATUSES)),
                "monthly_fee": draw(st.sampled_from(["49.00", "0.00", "12.34"])),
                "numbers": numbers,
            }
        )
        files.append(
            {
                "account": {
                    "id": acc_id,
                    "status": draw(st.sampled_from(STATUSES)),
                    "protected": draw(st.booleans()),
                },
                "numbers": desired,
            }
        )
    return {"accounts": live_accounts}, files


def write_project(root: Path, fleet: dict, files: list[dict]) -> Path:
    cfg = root / "cfg"
    (cfg / "accounts").mkdir(parents=True)
    fleet_file = root / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump(fleet, sort_keys=False))
    init_database(root / "live.db", fleet_file)
    (cfg / "reconciler.yaml").write_text(
        f"provider:\n  type: sandbox\n  database: {root / 'live.db'}\n"
    )
    for f in files:
        path = cfg / "accounts" / f"a{f['account']['id']}.yaml"
        path.write_text(yaml.safe_dump(f, sort_keys=False))
    return cfg


def ring(status: str, calls: str) -> bool:
    return status != "stopped" and calls == "allowed"


def swapped(status: str, calls: str, swapping: str) -> bool:
    return status == "active" and calls == "allowed" and swapping == "active"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=fleets())
def test_no_protected_number_loses_ringing_or_swapping_without_an_error(tmp_path_factory, data):
    fleet, files = data
    root = tmp_path_factory.mktemp("p")
    cfg = write_project(root, fleet, files)
    desired = load_config(str(cfg))
    with SandboxProvider(root / "live.db") as provider:
        live = provider.read(list(desired.accounts))
    plan = build_plan(desired, live, now=_now(), provider=PROVIDER)
    status = {c.account_id: c.to for c in plan.changes if c.kind == "account"}
    fields = {(c.number, c.field): c.to for c in plan.changes if c.kind == "number"}
    errors = {(e.code, e.address) for e in plan.errors}
    for acc in desired.accounts.values():
        live_acc = live.accounts[acc.id]
        after_status = status.get(acc.id, live_acc.status)
        by_number = {n.number: n for n in live_acc.numbers}
        for num in acc.numbers:
            n = by_number[num.number]
            calls = fields.get((n.number, "calls"), n.calls)
            swapping = fields.get((n.number, "swapping"), n.swapping)
            lost = (ring(live_acc.status, n.calls) and not ring(after_status, calls)) or (
                swapped(live_acc.status, n.calls, n.swapping)
                and not swapped(after_status, calls, swapping)
            )
            if num.protected and lost:
                assert ("protected", f"number.{num.number}") in errors, plan.errors


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=fleets())
def test_a_converged_apply_bills_what_the_plan_said(tmp_path_factory, monkeypatch, data):
    fleet, files = data
    root = tmp_path_factory.mktemp("a")
    cfg = write_project(root, fleet, files)
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(root / "locks"))
    runner = CliRunner()
    planned = runner.invoke(main, ["plan", "--config", str(cfg), "--format", "json"])
    plan = json.loads(planned.output)
    report_file = root / "report.json"
    result = runner.invoke(
        main,
        ["apply", "--config", str(cfg), "--auto-approve", "--force", "--report", str(report_file)],
    )
    with SandboxStore(root / "live.db") as store:
        written = store.audit()
    if plan["errors"]:
        assert result.exit_code == 1 and written == []
        return
    if not plan["changes"]:
        assert result.exit_code == 0 and written == []
        return
    assert result.exit_code == 0, result.output
    report = json.loads(report_file.read_text())
    assert report["converged"] and report["counts"]["ok"] == len(plan["changes"])
    after = report["charges_after"]
    assert after["live_stopped_monthly"] == plan["charges"]["stopped_monthly_total"]
    assert after["newly_stopped_monthly"] == plan["charges"]["newly_stopped_monthly"]
    assert after["resumed_monthly"] == plan["charges"]["resumed_monthly"]


def _now():
    from factories import NOW

    return NOW
