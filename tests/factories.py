"""Builders of desired and live state for planner and renderer tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from reconciler.models import (
    DesiredAccount,
    DesiredNumber,
    DesiredState,
    LiveAccount,
    LiveNumber,
    LiveState,
    Settings,
    Source,
)
from reconciler.plan import build_plan
from reconciler.plan_model import ProviderInfo

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)
PROVIDER = ProviderInfo(type="sandbox", target="test.db")


def dnum(number: str, account: str = "1001", line: int = 10, **kw) -> DesiredNumber:
    base = dict(
        number=number,
        account_id=account,
        calls="allowed",
        swapping="active",
        until=None,
        note=None,
        protected=False,
        source=Source("acc.yaml", line),
        field_lines={"calls": line + 1, "swapping": line + 2, "until": line + 3},
    )
    base.update(kw)
    return DesiredNumber(**base)


def dacc(numbers=(), account="1001", **kw) -> DesiredAccount:
    base = dict(
        id=account,
        name="Acme",
        status="active",
        until=None,
        note=None,
        protected=False,
        source=Source("acc.yaml", 2),
        numbers=tuple(numbers),
        field_lines={"status": 4, "until": 5},
    )
    base.update(kw)
    return DesiredAccount(**base)


def lnum(number: str, account: str = "1001", **kw) -> LiveNumber:
    base = dict(
        id=f"TPN{number[-4:]}",
        account_id=account,
        number=number,
        calls="allowed",
        swapping="active",
        online=True,
        name="n",
        renewal_fee=Decimal("3.00"),
        recent_calls=0,
        active_changed=NOW - timedelta(days=3),
    )
    base.update(kw)
    return LiveNumber(**base)


def lacc(numbers=(), account="1001", **kw) -> LiveAccount:
    base = dict(
        id=account,
        name="Acme",
        status="active",
        monthly_fee=Decimal("49.00"),
        updated=NOW - timedelta(days=2),
        numbers=list(numbers),
    )
    base.update(kw)
    return LiveAccount(**base)


def plan_of(desired_accounts, live_accounts, *, missing=(), settings=None, now=NOW):
    desired = DesiredState(
        "cfg",
        settings or Settings(),
        None,
        {a.id: a for a in desired_accounts},
        "sha256:" + "0" * 64,
    )
    live = LiveState({a.id: a for a in live_accounts}, list(missing))
    return build_plan(desired, live, now=now, provider=PROVIDER)


def codes(findings) -> list[str]:
    return [f.code for f in findings]
