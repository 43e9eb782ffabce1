"""apply engine: safe phases, continuing past failures, verification, clean interruption."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.apply import apply_changes, phase, verify
from reconciler.config import load_config
from reconciler.engine import make_plan
from reconciler.errors import ProviderError
from reconciler.providers.sandbox.provider import SandboxProvider

ROOT = Path(__file__).resolve().parent.parent


class FailingFor(SandboxProvider):
    """The real sandbox, with writes to some numbers failing (a provider-side refusal)."""

    def __init__(self, db: Path, seed: Path, fail: set[str]) -> None:
        super().__init__(db, seed=seed)
        self.fail = fail
        self.writes: list[str] = []

    def set_number(self, account_id, number_id, field, value):
        self.writes.append(number_id)
        if number_id in self.fail:
            raise ProviderError(f"ctm: POST …/{number_id}/update_number: 409 Conflict")
        return super().set_number(account_id, number_id, field, value)

    def set_account_status(self, account_id, status):
        self.writes.append(f"account.{account_id}")
        return super().set_account_status(account_id, status)


@pytest.fixture
def planned(tmp_path):
    provider = FailingFor(tmp_path / "s.db", ROOT / "config" / "sandbox-fleet.yaml", {"TPN1001B"})
    desired = load_config(str(ROOT / "config"))
    result = make_plan(str(ROOT / "config"), provider=provider, desired=desired)
    yield result
    provider.close()


def test_phases():
    from factories import dacc, dnum, lacc, lnum, plan_of

    p = plan_of(
        [dacc([dnum("+1", calls="stopped"), dnum("+2", line=20)], status="active")],
        [lacc([lnum("+1"), lnum("+2", calls="stopped")], status="stopped")],
    )
    assert sorted(phase(c) for c in p.changes) == [0, 2, 3]


def test_a_failed_action_does_not_stop_the_others(planned):
    seen = []
    report = apply_changes(planned.provider, planned.plan, concurrency=2, on_result=seen.append)
    report.verification = verify(planned.provider, planned.plan, planned.live, planned.desired)
    counts = report.counts()
    assert counts == {"ok": 4, "failed": 1, "unknown": 0, "not_started": 0}
    failed = [r for r in report.results if r.outcome == "failed"]
    assert failed[0].change.number == "+14105550102" and "409 Conflict" in failed[0].error
    assert report.verification.matched == 4 and report.verification.mismatches == [
        {
            "kind": "planned",
            "address": "number.+14105550102",
            "field": "calls",
            "expected": "stopped",
            "actual": "allowed",
            "message": "number +14105550102 calls: expected stopped, live allowed",
        }
    ]
    assert not report.converged and len(seen) == 5
    data = report.to_dict()
    assert data["converged"] is False and data["counts"]["failed"] == 1
    assert all("ms" in a and a["outcome"] in ("ok", "failed") for a in data["actions"])


def test_interrupt_finishes_in_flight_and_starts_nothing_else(planned):
    def interrupt(result):
        raise KeyboardInterrupt

    report = apply_changes(planned.provider, planned.plan, concurrency=1, on_result=interrupt)
    assert report.interrupted and not report.converged
    counts = report.counts()
    assert counts["ok"] + counts["failed"] == 1 and counts["not_started"] == 4
    assert len(planned.provider.writes) == 1


def test_plan_difference_names_what_moved():
    from factories import dacc, lacc, plan_of

    from reconciler.apply import plan_difference

    fresh = plan_of([dacc(status="stopped")], [lacc(status="paused")])
    saved = [
        {"address": "account.1001", "field": "status", "from": "active", "to": "stopped"},
        {"address": "number.+1", "field": "calls", "from": "allowed", "to": "stopped"},
    ]
    text = plan_difference(saved, fresh)
    assert "changed:           account.1001 status: from active -> paused" in text
    assert "no longer planned: number.+1 calls: allowed -> stopped" in text


def test_check_saved_plan_refuses_garbage(tmp_path):
    from factories import dacc, lacc, plan_of

    from reconciler.apply import check_saved_plan
    from reconciler.errors import ReconcilerError

    fresh = plan_of([dacc()], [lacc()])
    bad = tmp_path / "p.json"
    for content, message in [
        ("{", "cannot read a saved plan"),
        ("[]", "not a reconciler plan"),
        ('{"format_version": 2, "checksum": "x"}', "not a reconciler plan"),
        ("[" * 200_000, "cannot read a saved plan \\(nested too deeply\\)"),
        ('{"format_version": 1, "checksum": 3, "provider": {}}', "not a reconciler plan"),
        ('{"format_version": 1, "checksum": "x", "provider": []}', "not a reconciler plan"),
        (
            '{"format_version": 1, "checksum": "x", "provider": {}, "changes": {}}',
            "not a reconciler plan",
        ),
    ]:
        bad.write_text(content)
        with pytest.raises(ReconcilerError, match=message):
            check_saved_plan(str(bad), fresh)
