"""The ledger: every resource of the managed accounts that cannot ring and still bills,
since when, what it costs, and who set it (the config line's commit, `provenance.py`).

Built from live state as it is (what bills now), not from the plan: a stopped account and
every number under it, and each number whose own calls are stopped, each counted once as
in `charges.py`. Numbers whose swapping is paused and accounts whose tracking code is
paused still ring: they are listed apart and not in the total.

Provenance is looked up for the config line that sets the state the ledger shows (the
entry's `status:` / `calls:` line, else its first line), and only when the config agrees
with live: a resource stopped outside the config (drift) or not in the config at all has
none, and its note says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reconciler.charges import ZERO, money, number_fee, silent_resources
from reconciler.models import (
    BillingSettings,
    DesiredAccount,
    DesiredNumber,
    DesiredState,
    LiveAccount,
    LiveNumber,
    LiveState,
    jsonable,
)
from reconciler.plan_model import Finding, Plan
from reconciler.provenance import History, Provenance

LEDGER_FORMAT_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LedgerProvenance(_Model):
    """The commit that last set the config line of this state."""

    commit: str
    author: str
    date: str = Field(description="The commit's author date, ISO-8601 UTC.")
    subject: str
    pr: int | None = Field(description="Pull request number from the subject, if any.")


class LedgerItem(_Model):
    address: str = Field(description="`account.<id>` or `number.<E.164>`.")
    kind: Literal["account", "number"]
    account_id: str
    account_name: str
    state: str = Field(
        description="account stopped | calls stopped (in `items`); swapping paused | "
        "tracking code paused (in `paused`)."
    )
    since: str | None = Field(description="When live last changed it (ISO-8601); None: unknown.")
    days: int | None = Field(description="Whole days from `since` to `evaluated_at`.")
    monthly_fee: str = Field(description="Two-place decimal string.")
    estimated: bool = Field(
        False, description="The provider reports no fee: the billing default is counted."
    )
    note: str | None
    until: str | None = Field(description="End of the config's time window, if any.")
    stale: bool = Field(description="Stopped longer than policy.stale_stop_days.")
    source: str | None = Field(description="`file:line` of the config line that sets it.")
    provenance: LedgerProvenance | None
    why_no_provenance: str | None = Field(
        None,
        description="Why `provenance` is None for this item when it is not the history's "
        "fault (`provenance_note`): not in the config, or live differs from it.",
    )


class Ledger(_Model):
    """`reconciler ledger --format json`: what is stopped and still billed (money: strings)."""

    format_version: Literal[1] = LEDGER_FORMAT_VERSION
    generated_at: str
    evaluated_at: str
    currency: str
    total_monthly: str = Field(description="Sum of `items` (never of `paused`).")
    items: list[LedgerItem] = Field(description="Cannot ring, still billed; fee highest first.")
    paused: list[LedgerItem] = Field(description="Still ring, not swapped; not in the total.")
    provenance_note: str | None = Field(
        description="Why some or all provenance is missing and how to get it; None if none is."
    )


class _Draft:
    """One ledger row before provenance is attached."""

    __slots__ = ("item", "line", "path", "why_none")

    def __init__(self, item: dict, path: str | None, line: int | None, why_none: str) -> None:
        self.item, self.path, self.line, self.why_none = item, path, line, why_none


def build_ledger(
    desired: DesiredState,
    live: LiveState,
    *,
    now: datetime,
    generated_at: datetime,
    history: History | None,
) -> Ledger:
    """The ledger of the managed accounts in `desired` from `live` at `now`."""
    settings = desired.settings
    billing, stale_days = settings.billing, settings.policy.stale_stop_days
    accounts = [live.accounts[a] for a in desired.accounts if a in live.accounts]
    silent, _ = silent_resources(accounts, {}, {}, billing.default_fee, billing.default_account_fee)
    drafts: list[_Draft] = []
    index: Index = {}
    for address, s in silent.items():
        acc, num = s.account, s.number
        want = desired.accounts[acc.id]
        since = s.since if num is None or num.calls == "stopped" else acc.updated
        entry = _entry_for(want, acc, num, index)
        drafts.append(
            _draft(address, acc, num, s.why, since, s.fee, s.estimated, entry, now, stale_days)
        )
    paused = [
        _draft(
            address,
            acc,
            num,
            why,
            since,
            fee,
            estimated,
            _entry_for(want, acc, num, index),
            now,
            -1,
        )
        for want, acc in ((desired.accounts[a.id], a) for a in accounts)
        for address, num, why, since, fee, estimated in _paused(acc, silent, billing)
    ]
    lookup = _provenance(history, [*drafts, *paused])
    total = sum((Decimal(d.item["monthly_fee"]) for d in drafts), ZERO)
    missing = any(lookup(d) is None and d.why_none == "" for d in [*drafts, *paused])
    note = None
    if history is not None and missing:
        note = history.hint or (
            "some config lines are not committed yet (or not tracked): they have no "
            "provenance until they are"
        )
    return Ledger(
        generated_at=jsonable(generated_at),
        evaluated_at=jsonable(now),
        currency=billing.currency,
        total_monthly=money(total),
        items=_sorted(drafts, lookup),
        paused=_sorted(paused, lookup),
        provenance_note=note,
    )


Entry = tuple[DesiredAccount | DesiredNumber | None, str, bool]  # entry, key, agrees


def _entry_for(
    want: DesiredAccount, acc: LiveAccount, num: LiveNumber | None, index: Index
) -> Entry:
    """The config entry (and its key) whose line sets this resource's state, and whether
    the config agrees with live about it."""
    if num is None:
        return want, "status", want.status == acc.status
    if acc.status == "stopped":
        return want, "status", want.status == "stopped"
    if acc.status == "paused" and num.calls != "stopped" and num.swapping != "paused":
        return want, "status", want.status == "paused"
    mine = _numbers_of(want, index).get(num.number)
    if mine is None:
        return None, "", False
    if num.calls == "stopped":
        return mine, "calls", mine.calls == "stopped"
    return mine, "swapping", mine.swapping == "paused"


Index = dict[str, dict[str, DesiredNumber]]  # account id -> its desired numbers by E.164


def _numbers_of(want: DesiredAccount, index: Index) -> dict[str, DesiredNumber]:
    """The account's desired numbers by E.164, built once per account per call (not a
    scan per item: a ledger or a plan can hold thousands of items)."""
    found = index.get(want.id)
    if found is None:
        found = index[want.id] = {n.number: n for n in want.numbers}
    return found


def _draft(
    address: str,
    acc: LiveAccount,
    num: LiveNumber | None,
    state: str,
    since: datetime | None,
    fee: Decimal,
    estimated: bool,
    entry: Entry,
    now: datetime,
    stale_days: int,
) -> _Draft:
    desired, key, agrees = entry
    days = max(0, (now - since).days) if since is not None else None  # --at before it: 0
    note = getattr(desired, "note", None) if desired is not None else None
    if desired is None:
        why_none = "not in the config"
    elif not agrees:
        why_none = "live differs from the config (changed outside it)"
    else:
        why_none = ""
    path = line = None
    if desired is not None:
        path, line = desired.source.path, desired.field_lines.get(key, desired.source.line)
    item = {
        "address": address,
        "kind": "account" if num is None else "number",
        "account_id": acc.id,
        "account_name": acc.name,
        "state": state,
        "since": jsonable(since),
        "days": days,
        "monthly_fee": money(fee),
        "estimated": estimated,
        "note": note,
        "until": jsonable(getattr(desired, "until", None)),
        "stale": stale_days >= 0 and since is not None and now - since > timedelta(days=stale_days),
        "source": f"{path}:{line}" if path is not None else None,
        "provenance": None,
        "why_no_provenance": why_none or None,
    }
    return _Draft(item, path, line, why_none)


def _paused(
    acc: LiveAccount, silent: Mapping[str, object], billing: BillingSettings
) -> list[tuple[str, LiveNumber | None, str, datetime | None, Decimal, bool]]:
    """Resources that still ring but are not swapped: a paused account, numbers whose own
    swapping is paused (not those already silent)."""
    out: list[tuple[str, LiveNumber | None, str, datetime | None, Decimal, bool]] = []
    if acc.status == "paused":
        guess = acc.monthly_fee is None
        fee = billing.default_account_fee if guess else acc.monthly_fee
        out.append((f"account.{acc.id}", None, "tracking code paused", acc.updated, fee, guess))
    for num in acc.numbers:
        address = f"number.{num.number}"
        if num.swapping == "paused" and address not in silent:
            fee = number_fee(num, billing.default_fee)
            out.append((address, num, "swapping paused", num.updated, fee, num.renewal_fee is None))
    return out


def _provenance(
    history: History | None, drafts: list[_Draft]
) -> Callable[[_Draft], Provenance | None]:
    """Look up every line the drafts need (only those the config agrees with), one batch
    per file; return the lookup."""
    wanted = [
        (d.path, d.line)
        for d in drafts
        if d.path is not None and d.line is not None and d.why_none == ""
    ]
    found = history.lookup(wanted) if history is not None else {}

    def of(d: _Draft) -> Provenance | None:
        if d.path is None or d.line is None or d.why_none:
            return None
        return found.get((d.path, d.line))

    return of


def _sorted(drafts: list[_Draft], lookup: Callable[[_Draft], Provenance | None]) -> list:
    rows = []
    for d in drafts:
        prov = lookup(d)
        rows.append(LedgerItem(**{**d.item, "provenance": prov.to_dict() if prov else None}))
    rows.sort(key=lambda r: (-Decimal(r.monthly_fee), r.account_id, r.address))
    return rows


def attribute_plan(plan: Plan, desired: DesiredState, live: LiveState) -> None:
    """Say who set each standing stop of a plan: the `stale_stop` warnings and the charges
    items the plan does not newly stop get the config line's provenance in short (`set by
    Jane Ops on 2026-06-01 in #131`). Git runs only when there is such an item, and only
    for the files that hold them."""
    standing = [i for i in plan.charges.items if not i.new]
    stale = [w for w in plan.warnings if w.code == "stale_stop" and w.source]
    if not standing and not stale:
        return
    history = History(desired.config_dir)  # one cheap `git rev-parse` before any other work
    if not history.available:
        return
    targets: list[tuple[object, str, int]] = []
    numbers: dict[str, dict[str, LiveNumber]] = {}
    index: Index = {}
    for item in standing:
        acc, want = live.accounts.get(item.account_id), desired.accounts.get(item.account_id)
        if acc is None or want is None:
            continue
        num = None
        if item.kind == "number":
            by_e164 = numbers.get(acc.id)
            if by_e164 is None:  # once per account, not once per item
                by_e164 = numbers[acc.id] = {n.number: n for n in acc.numbers}
            num = by_e164.get(item.address.removeprefix("number."))
            if num is None:
                continue
        entry, key, agrees = _entry_for(want, acc, num, index)
        if entry is not None and agrees:
            targets.append((item, entry.source.path, entry.field_lines.get(key, entry.source.line)))
    for warning in stale:
        path, _, line = (warning.source or "").rpartition(":")
        if path and line.isdigit():
            targets.append((warning, path, int(line)))
    found = history.lookup((path, line) for _, path, line in targets)
    for target, path, line in targets:
        prov = found.get((path, line))
        if prov is None:
            continue
        if isinstance(target, Finding):
            target.message = f"{target.message}; {prov.short()}"
        else:
            target.set_by = prov.short()  # type: ignore[attr-defined]
