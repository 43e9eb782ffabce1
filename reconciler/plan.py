"""Desired state + live state + now -> Plan. Pure: no I/O, no clock, no randomness.

The diff is keyed (accounts by id, numbers by E.164), so it is linear in the fleet size.
Level-triggered: the plan depends only on what the config says and what live is now,
never on a previous run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from reconciler.charges import compute_charges, money, number_fee
from reconciler.effects import account_guards, duplicate_live_numbers, plan_threshold
from reconciler.models import (
    DesiredAccount,
    DesiredNumber,
    DesiredState,
    LiveAccount,
    LiveNumber,
    LiveState,
    Settings,
    jsonable,
)
from reconciler.plan_model import AccountSummary, Change, Finding, Plan, ProviderInfo, Summary
from reconciler.windows import effective, schedule_missed, window_warning

UNMANAGED_LISTED = 5

LIVE_STATUSES = frozenset({"active", "paused", "stopped"})
ACCOUNT_ACTIONS = {
    ("active", "paused"): "pause",
    ("paused", "active"): "resume",
    ("active", "stopped"): "stop",
    ("paused", "stopped"): "stop",
    ("stopped", "active"): "allow",
    ("stopped", "paused"): "allow",
}
WIRE_FIELD = {"calls": "active", "swapping": "paused"}
NUMBER_ACTIONS = {
    ("calls", "allowed", "stopped"): "stop",
    ("calls", "stopped", "allowed"): "allow",
    ("swapping", "active", "paused"): "pause",
    ("swapping", "paused", "active"): "resume",
}


def checksum(changes: list[Change]) -> str:
    """Covers the intended actions only (address, field, from, to): same intent, same sum."""
    rows = sorted((c.address, c.field, c.from_, c.to) for c in changes)
    return "sha256:" + hashlib.sha256(json.dumps(rows).encode()).hexdigest()


@dataclass
class _Builder:
    desired: DesiredState
    live: LiveState
    now: datetime
    changes: list[Change] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    errors: list[Finding] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)
    accounts: list[AccountSummary] = field(default_factory=list)
    unchanged: int = 0
    final_status: dict[str, str] = field(default_factory=dict)
    final_calls: dict[str, str] = field(default_factory=dict)
    final_swapping: dict[str, str] = field(default_factory=dict)
    # managed accounts found live, with their final status: the effects pass walks these
    planned: list[tuple[DesiredAccount, LiveAccount, str]] = field(default_factory=list)
    account_change: dict[str, Change] = field(default_factory=dict)
    # live numbers with a planned change of their own, by account id
    changed_live: dict[str, list[LiveNumber]] = field(default_factory=dict)
    # E.164 -> (account id, number) for every number the provider lists more than once
    duplicates: dict[str, list[tuple[str, LiveNumber]]] = field(default_factory=dict)
    # desired numbers their account does not list live, in plan order (see _numbers_elsewhere)
    missing: list[tuple[DesiredAccount, DesiredNumber]] = field(default_factory=list)
    # account id -> fields the provider does not report for numbers the config leaves at
    # the default (one `not_reported` warning per account), and how many numbers
    not_reported: dict[str, set[str]] = field(default_factory=dict)
    not_reported_numbers: dict[str, set[str]] = field(default_factory=dict)
    default_fee: Decimal = field(init=False)
    stale_after: timedelta = field(init=False)
    due_grace: timedelta = field(init=False)
    _wanted: set[str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # made once: both are rebuilt on each access and asked for per number
        self.default_fee = self.settings.billing.default_fee
        self.stale_after = timedelta(days=self.settings.policy.stale_stop_days)
        self.due_grace = timedelta(minutes=self.settings.policy.due_grace_minutes)

    def window_fields(
        self,
        start: datetime | None,
        until: datetime | None,
        reason: str,
        boundary: datetime | None,
    ) -> dict[str, Any]:
        """A change's window keys: its window while it is ahead or running, the boundary
        that caused it, and whether that boundary passed within policy.due_grace_minutes."""
        ahead = reason != "window_ended"
        return {
            "window_from": jsonable(start) if ahead and start else None,
            "until": jsonable(until) if ahead and until else None,
            "boundary": jsonable(boundary) if boundary else None,
            "due": boundary is not None and self.now - boundary < self.due_grace,
        }

    def wanted(self) -> set[str]:
        """Every desired number of the config; built only when an account needs it."""
        if self._wanted is None:
            self._wanted = {n.number for a in self.desired.accounts.values() for n in a.numbers}
        return self._wanted

    @property
    def settings(self) -> Settings:
        return self.desired.settings

    def warn(self, code: str, address: str, message: str, source: object = None) -> None:
        self.warnings.append(
            Finding(
                code=code, address=address, message=message, source=str(source) if source else None
            )
        )

    def error(self, code: str, address: str, message: str, source: object = None) -> None:
        self.errors.append(
            Finding(
                code=code, address=address, message=message, source=str(source) if source else None
            )
        )


def build_plan(
    desired: DesiredState,
    live: LiveState,
    *,
    now: datetime,
    provider: ProviderInfo,
    scope: list[str] | None = None,
    generated_at: datetime | None = None,
) -> Plan:
    """Compare desired with live and say what to change, what to warn about, what stays billed.

    Every time rule is evaluated at `now`; `generated_at` (default `now`) is when the plan
    was made, which differs from `now` under `--at`.
    """
    b = _Builder(desired, live, now)
    duplicate_live_numbers(b, live)
    for acc in desired.accounts.values():
        live_acc = live.accounts.get(acc.id)
        if live_acc is None:
            b.error(
                "unknown_account",
                f"account.{acc.id}",
                f"account {acc.id} does not exist at the provider (or these credentials "
                "cannot see it); fix the id or remove the file",
                acc.source,
            )
            continue
        if live_acc.status not in LIVE_STATUSES:
            shown = repr(live_acc.status) if live_acc.status else "none"
            b.error(
                "unsupported_status",
                f"account.{acc.id}",
                f"account {acc.id} ({live_acc.name or acc.name or 'no name'}) has status "
                f"{shown} at the provider; reconciler manages only active, paused and stopped "
                "accounts, so nothing is planned for it. Leave it out of --account, or remove "
                "its file until the provider reports a status reconciler knows",
                acc.source,
            )
            continue
        _plan_account(b, acc, live_acc)
    _numbers_elsewhere(b, live)
    account_guards(b)
    plan_threshold(b)
    schedule_missed(b)
    _charges_continue(b)
    billing = desired.settings.billing
    managed_live = [live.accounts[a] for a in desired.accounts if a in live.accounts]
    charges = compute_charges(
        managed_live,
        b.final_status,
        b.final_calls,
        currency=billing.currency,
        default_fee=billing.default_fee,
        default_account_fee=billing.default_account_fee,
    )
    summary = Summary(unchanged=b.unchanged)
    for c in b.changes:
        setattr(summary, c.action, getattr(summary, c.action) + 1)
    return Plan(
        generated_at=jsonable(generated_at or now),
        evaluated_at=jsonable(now),
        config_digest=desired.digest,
        checksum=checksum(b.changes),
        provider=provider,
        scope=list(scope or []),
        changes=b.changes,
        warnings=b.warnings,
        errors=b.errors,
        unmanaged=b.unmanaged,
        charges=charges,
        summary=summary,
        accounts=b.accounts,
    )


def _plan_account(b: _Builder, acc: DesiredAccount, live: LiveAccount) -> None:
    address = f"account.{acc.id}"
    name = live.name or acc.name or ""
    if acc.name is not None and live.name and acc.name != live.name:
        b.warn(
            "name_mismatch",
            address,
            f"config calls account {acc.id} {acc.name!r}, the provider calls it {live.name!r}",
            acc.source,
        )
    status, reason, boundary = effective(acc.status, acc.start, acc.until, b.now, "active")
    src = acc.source.at(acc.field_lines, "status")
    final_status = live.status
    if status != live.status:
        action = ACCOUNT_ACTIONS[(live.status, status)]
        if acc.protected and action in ("stop", "pause"):
            b.error(
                "protected",
                address,
                f"account {acc.id} ({name}) is protected: true; "
                f"the plan would {action} it. Remove protected: true in the same change "
                "if this is intended",
                src,
            )
        else:
            final_status = status
            b.account_change[acc.id] = Change(
                address=address,
                kind="account",
                account_id=acc.id,
                account_name=name,
                field="status",
                action=action,
                from_=live.status,
                to=status,
                reason=reason,
                source=src,
                monthly_fee=money(live.monthly_fee) if live.monthly_fee is not None else None,
                note=acc.note,
                live_updated=jsonable(live.updated),
                **b.window_fields(acc.start, acc.until, reason, boundary),
            )
            b.changes.append(b.account_change[acc.id])
    else:
        b.unchanged += 1
    b.final_status[acc.id] = final_status
    b.planned.append((acc, live, final_status))
    if acc.status != "active":
        window_warning(
            b,
            address,
            acc.start,
            acc.until,
            f"status {acc.status}",
            "status returns to active",
            acc.source.at(acc.field_lines, "from" if acc.start else "until"),
        )
    if final_status == "stopped" and live.status == "stopped":
        _stale(b, address, live.updated, live.monthly_fee, f"account {acc.id} ({name})", src)

    by_number = {n.number: n for n in live.numbers}
    changed_numbers: set[str] = set()
    managed = unchanged = 0
    dups = b.duplicates
    for num in acc.numbers:
        if dups and num.number in dups:
            continue  # duplicate_live_number: nothing is planned for it
        live_num = by_number.get(num.number)
        if live_num is None:
            # reported once all accounts are indexed (unknown or wrong account)
            b.missing.append((acc, num))
            continue
        managed += 1
        if (
            num.until is None
            and num.start is None
            and num.calls == live_num.calls
            and num.swapping == live_num.swapping
        ):
            # The common case at fleet scale, inlined: nothing to change and no window.
            # The outcome is that of _plan_number, without its per-field work.
            unchanged += 1
            if live_num.calls == "stopped":
                _stale_number(b, num, live_num, live_num.calls)
        elif _plan_number(b, acc, live, num, live_num, final_status):
            changed_numbers.add(num.number)
    b.unchanged += unchanged
    if {n.number for n in acc.numbers}.issuperset(by_number):
        unmanaged: list[LiveNumber] = []  # every live number is in this very file
    else:
        wanted = b.wanted()
        unmanaged = [n for n in live.numbers if n.number not in wanted and n.number not in dups]
    _unmanaged(b, acc, live, unmanaged)
    _not_effective_account(b, acc, live, final_status)
    if acc.id in b.not_reported:
        fields = " and ".join(sorted(b.not_reported[acc.id]))
        count = len(b.not_reported_numbers[acc.id])
        b.warn(
            "not_reported",
            address,
            f"the provider does not report {fields} for {count} number(s) of account {acc.id}; "
            "the config wants the default there, so they are left as they are (reconciler "
            "never changes a field it cannot see)",
            acc.source,
        )
    b.accounts.append(
        AccountSummary(
            id=acc.id,
            name=name,
            live_status=live.status,
            desired_status=status,
            managed_numbers=managed,
            unmanaged_numbers=len(unmanaged),
            changed_numbers=len(changed_numbers),
            source=str(acc.source),
        )
    )


def _plan_number(
    b: _Builder,
    acc: DesiredAccount,
    live_acc: LiveAccount,
    num: DesiredNumber,
    live: LiveNumber,
    account_final: str,
) -> bool:
    address = f"number.{num.number}"
    fee = number_fee(live, b.default_fee)
    changed = False
    for fld, written, default in (
        ("calls", num.calls, "allowed"),
        ("swapping", num.swapping, "active"),
    ):
        value, reason, boundary = effective(written, num.start, num.until, b.now, default)
        current = getattr(live, fld)
        if value == current:
            continue
        src = num.source.at(num.field_lines, fld)
        if current is None:  # the provider does not report this field
            if value == default:
                b.not_reported.setdefault(acc.id, set()).add(fld)
                b.not_reported_numbers.setdefault(acc.id, set()).add(num.number)
            else:
                b.error(
                    "not_reported",
                    address,
                    f"the provider does not report {fld} of {num.number} (its number object "
                    f"has no `{WIRE_FIELD[fld]}`), so reconciler cannot see or set it; "
                    f"{fld}: {value} cannot be planned. Check with `reconciler doctor`",
                    src,
                )
            continue
        action = NUMBER_ACTIONS[(fld, current, value)]
        if action == "pause" and not live.online:
            why = (
                "the provider does not report its source, so it cannot be known to be on-site"
                if live.online is None
                else f"it comes from an offline source ({live.source_name or 'not on-site'})"
            )
            b.error(
                "not_pausable",
                address,
                f"{num.number}: {why}; only numbers of on-site sources can pause swapping. "
                "Write swapping: active, or stop its calls instead",
                src,
            )
            continue
        if num.protected and action in ("stop", "pause"):
            b.error(
                "protected",
                address,
                f"{num.number} is protected: true; the plan would "
                f"{action} it. Remove protected: true in the same change if this is intended",
                src,
            )
            continue
        changed = True
        b.changes.append(
            Change(
                address=address,
                kind="number",
                account_id=acc.id,
                account_name=live_acc.name,
                number=num.number,
                number_id=live.id,
                field=fld,
                action=action,
                from_=current,
                to=value,
                reason=reason,
                source=src,
                monthly_fee=money(fee),
                note=num.note,
                live_updated=jsonable(live.updated),
                **b.window_fields(num.start, num.until, reason, boundary),
            )
        )
        if fld == "calls":
            b.final_calls[num.number] = value
        else:
            b.final_swapping[num.number] = value
        _not_effective_number(b, num, fld, value, account_final, src)
    if changed:
        b.changed_live.setdefault(acc.id, []).append(live)
    else:
        b.unchanged += 1
    _stale_number(b, num, live, b.final_calls.get(num.number, live.calls))
    narrowed = [
        f"{f} {v}"
        for f, v, d in (("calls", num.calls, "allowed"), ("swapping", num.swapping, "active"))
        if v != d
    ]
    if (num.until is not None or num.start is not None) and narrowed:
        window_warning(
            b,
            address,
            num.start,
            num.until,
            " and ".join(narrowed),
            "calls are allowed and swapping active again",
            num.source.at(num.field_lines, "from" if num.start else "until"),
        )
    return changed


def _stale_number(b: _Builder, num: DesiredNumber, live: LiveNumber, final_calls: str) -> None:
    if final_calls == "stopped" and live.calls == "stopped":
        _stale(
            b,
            f"number.{num.number}",
            live.active_changed,
            number_fee(live, b.default_fee),
            num.number,
            num.source.at(num.field_lines, "calls"),
        )


def _stale(
    b: _Builder, address: str, since: datetime | None, fee: object, what: str, source: str
) -> None:
    if since is None:
        return
    age = b.now - since
    if age <= b.stale_after:
        return
    cost = f"{money(fee)} {b.settings.billing.currency}/month" if fee is not None else "its fees"
    b.warn(
        "stale_stop",
        address,
        f"{what} has been stopped for {age.days} days "
        f"(since {since.date().isoformat()}) and still bills {cost}; release it in the "
        "provider's UI if it is no longer needed (reconciler never releases numbers)",
        source,
    )


def _not_effective_number(
    b: _Builder, num: DesiredNumber, fld: str, value: str, account_final: str, src: str
) -> None:
    if fld == "calls" and value == "allowed" and account_final == "stopped":
        b.warn(
            "not_effective",
            f"number.{num.number}",
            f"{num.number} is allowed but cannot ring while account {num.account_id} is stopped",
            src,
        )
    if fld == "swapping" and value == "active" and account_final != "active":
        b.warn(
            "not_effective",
            f"number.{num.number}",
            f"{num.number} resumes swapping but is "
            f"not swapped while account {num.account_id} is {account_final}",
            src,
        )


def _not_effective_account(
    b: _Builder, acc: DesiredAccount, live: LiveAccount, final_status: str
) -> None:
    if final_status != "stopped":
        return
    allowed = [
        n
        for n in acc.numbers
        if b.final_calls.get(n.number, "") == "allowed"
        or (n.number not in b.final_calls and n.calls == "allowed")
    ]
    if allowed:
        b.warn(
            "not_effective",
            f"account.{acc.id}",
            f"account {acc.id} is stopped: its "
            f"{len(allowed)} allowed number(s) cannot ring until the account is allowed",
            acc.source,
        )


def _unmanaged(
    b: _Builder, acc: DesiredAccount, live: LiveAccount, unmanaged: list[LiveNumber]
) -> None:
    if not unmanaged:
        return
    b.unmanaged.extend(f"number.{n.number}" for n in unmanaged)
    policy = b.settings.policy.unmanaged
    if policy == "ignore":
        return
    shown = ", ".join(n.number for n in unmanaged[:UNMANAGED_LISTED])
    more = (
        f" and {len(unmanaged) - UNMANAGED_LISTED} more"
        if len(unmanaged) > UNMANAGED_LISTED
        else ""
    )
    message = (
        f"{len(unmanaged)} live number(s) of account {acc.id} are not in its file: "
        f"{shown}{more}; they are left as they are"
    )
    if policy == "error":
        b.error(
            "unmanaged",
            f"account.{acc.id}",
            message + " (policy.unmanaged: error: add them "
            "to the file, e.g. with `reconciler import`)",
            acc.source,
        )
    else:
        b.warn("unmanaged", f"account.{acc.id}", message, acc.source)


def _numbers_elsewhere(b: _Builder, live: LiveState) -> None:
    """Desired numbers not in their account: in another read account, or nowhere."""
    if not b.missing:
        return
    owner = {n.number: a for a in live.accounts.values() for n in a.numbers}
    for acc, num in b.missing:
        if num.number in b.duplicates:
            continue  # reported as duplicate_live_number
        other = owner.get(num.number)
        if other is not None:
            b.error(
                "wrong_account",
                f"number.{num.number}",
                f"{num.number} belongs to "
                f"account {other.id} ({other.name}), not {acc.id}; move it to that "
                "account's file",
                num.source,
            )
        else:
            b.error(
                "unknown_number",
                f"number.{num.number}",
                f"{num.number} is not a "
                f"tracking number of account {acc.id}; check the digits or remove it",
                num.source,
            )


def _charges_continue(b: _Builder) -> None:
    currency = b.settings.billing.currency
    for c in b.changes:
        if c.action not in ("stop", "pause"):
            continue
        fee = f"{c.monthly_fee} {currency}/month" if c.monthly_fee else "its fees"
        if c.kind == "account" and c.action == "stop":
            msg = (
                f"stopping account {c.account_id} does not stop charges: its subscription "
                f"({fee}) and every number's monthly fee keep billing"
            )
        elif c.kind == "account":
            msg = (
                f"pausing account {c.account_id} does not stop charges: calls still connect "
                f"and bill per minute; the subscription ({fee}) continues"
            )
        elif c.action == "stop":
            msg = (
                f"stopping {c.number} does not stop charges: it keeps billing {fee} until "
                "released in the provider's UI (reconciler never releases numbers)"
            )
        else:
            msg = (
                f"pausing swapping of {c.number} does not stop charges ({fee}); calls still connect"
            )
        b.warn("charges_continue", c.address, msg, c.source)
