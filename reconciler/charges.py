"""What stays billed: stopping or pausing never stops charges (SPEC §2, §6).

A resource bills "for nothing" when it cannot ring: a stopped account (its monthly fee),
and every number that cannot ring (its own calls stopped, or any number, managed or not,
of a stopped account), each counted once. The figures compare two states of the same
accounts, *before* and *after*:

- `live_stopped_monthly`: the total before (live as it is now);
- `stopped_monthly_total`: the total after (once the plan is applied);
- `newly_stopped_monthly`: what bills after but not before (this plan newly stops it);
- `resumed_monthly`: what bills before but not after (this plan ends paying for nothing).

For a plan, *after* is live with the plan's final values; for an apply's `charges_after`,
*before* is the pre-apply read and *after* the verification re-read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from reconciler.models import LiveAccount, LiveNumber, jsonable
from reconciler.plan_model import ChargeItem, Charges

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def money(value: Decimal) -> str:
    """Two-place decimal string: never a float."""
    return str(value.quantize(CENT))


def number_fee(number: LiveNumber, default_fee: Decimal) -> Decimal:
    return number.renewal_fee if number.renewal_fee is not None else default_fee


@dataclass(slots=True)
class _Silent:
    """One resource that cannot ring but bills."""

    account: LiveAccount
    number: LiveNumber | None
    fee: Decimal
    why: str
    since: datetime | None
    estimated: bool = False  # the provider reports no fee: a billing default is counted


def silent_resources(
    accounts: Iterable[LiveAccount],
    final_status: Mapping[str, str],
    final_calls: Mapping[str, str],
    default_fee: Decimal,
    default_account_fee: Decimal = ZERO,
) -> tuple[dict[str, _Silent], dict[str, _Silent]]:
    """Every resource that cannot ring before and after `final_*` (id / E.164 -> value)
    are applied, each keyed by address, in account and number order. One pass: a fleet
    has 100,000 numbers. A number whose calls the provider does not report counts as
    able to ring (it is never changed, and nothing says it is silent)."""
    before: dict[str, _Silent] = {}
    after: dict[str, _Silent] = {}
    for acc in accounts:
        was_stopped = acc.status == "stopped"
        is_stopped = final_status.get(acc.id, acc.status) == "stopped"
        if was_stopped or is_stopped:
            guess = acc.monthly_fee is None
            fee = default_account_fee if guess else acc.monthly_fee
            since = acc.updated if was_stopped else None
            item = _Silent(acc, None, fee, "account stopped", since, guess)
            if was_stopped:
                before[f"account.{acc.id}"] = item
            if is_stopped:
                after[f"account.{acc.id}"] = item
        for num in acc.numbers:
            calls = final_calls.get(num.number, num.calls) if final_calls else num.calls
            now_silent = was_stopped or num.calls == "stopped"
            then_silent = is_stopped or calls == "stopped"
            if not (now_silent or then_silent):
                continue
            since = num.active_changed if num.calls == "stopped" else None
            fee = number_fee(num, default_fee)
            guess = num.renewal_fee is None
            address = f"number.{num.number}"
            if now_silent:
                why = "calls stopped" if num.calls == "stopped" else "account stopped"
                before[address] = _Silent(acc, num, fee, why, since, guess)
            if then_silent:
                why = "calls stopped" if calls == "stopped" else "account stopped"
                after[address] = _Silent(acc, num, fee, why, since, guess)
    return before, after


def compare_charges(
    before: Mapping[str, _Silent], after: Mapping[str, _Silent], *, currency: str
) -> Charges:
    """The Charges block for going from `before` to `after` (see the module docstring)."""
    total = sum((s.fee for s in after.values()), ZERO)
    live = sum((s.fee for s in before.values()), ZERO)
    newly = sum((s.fee for a, s in after.items() if a not in before), ZERO)
    resumed = [s for a, s in before.items() if a not in after]
    return Charges(
        currency=currency,
        stopped_monthly_total=money(total),
        newly_stopped_monthly=money(newly),
        live_stopped_monthly=money(live),
        resumed_monthly=money(sum((s.fee for s in resumed), ZERO)),
        items=[_item(s, new=a not in before) for a, s in after.items()],
        resumed_items=[_item(s, new=False) for s in resumed],
        estimated=sum(s.estimated for s in after.values()),
    )


def compute_charges(
    accounts: Iterable[LiveAccount],
    final_status: Mapping[str, str],
    final_calls: Mapping[str, str],
    *,
    currency: str,
    default_fee: Decimal,
    default_account_fee: Decimal = ZERO,
) -> Charges:
    """Charges of a plan: live now against live with the plan's final values."""
    before, after = silent_resources(
        accounts, final_status, final_calls, default_fee, default_account_fee
    )
    return compare_charges(before, after, currency=currency)


def _item(s: _Silent, *, new: bool) -> ChargeItem:
    acc, num = s.account, s.number
    if num is None:
        address, kind, name = f"account.{acc.id}", "account", acc.name
    else:
        address, kind, name = f"number.{num.number}", "number", num.name
    return ChargeItem(
        address=address,
        kind=kind,
        account_id=acc.id,
        name=name,
        monthly_fee=money(s.fee),
        why=s.why,
        new=new,
        stopped_since=None if new else jsonable(s.since),
        estimated=s.estimated,
    )
