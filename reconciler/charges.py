"""What stays billed: stopping or pausing never stops charges (SPEC §2, §6).

`stopped_monthly_total` is what keeps billing for the managed accounts once the plan is
applied although nothing rings: each stopped account's monthly fee plus the renewal fee of
every number that cannot ring (its own calls stopped, or any number of a stopped account),
each counted once. `newly_stopped_monthly` is the part this plan newly stops.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from reconciler.models import ChargeItem, Charges, LiveAccount, LiveNumber, jsonable

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def money(value: Decimal) -> str:
    """Two-place decimal string: never a float."""
    return str(value.quantize(CENT))


def number_fee(number: LiveNumber, default_fee: Decimal) -> Decimal:
    return number.renewal_fee if number.renewal_fee is not None else default_fee


def compute_charges(
    accounts: Iterable[LiveAccount],
    final_status: Mapping[str, str],
    final_calls: Mapping[str, str],
    *,
    currency: str,
    default_fee: Decimal,
) -> Charges:
    """Charges after the plan: `final_*` map account id / number to the value once applied."""
    items: list[ChargeItem] = []
    total = newly = ZERO
    for acc in accounts:
        was_stopped = acc.status == "stopped"
        is_stopped = final_status.get(acc.id, acc.status) == "stopped"
        if is_stopped:
            fee = acc.monthly_fee if acc.monthly_fee is not None else ZERO
            items.append(_item(acc, None, fee, "account stopped", not was_stopped, acc.updated))
            total += fee
            newly += fee if not was_stopped else ZERO
        for num in acc.numbers:
            calls_after = final_calls.get(num.number, num.calls)
            if not (is_stopped or calls_after == "stopped"):
                continue
            could_ring_before = not was_stopped and num.calls == "allowed"
            fee = number_fee(num, default_fee)
            why = "calls stopped" if calls_after == "stopped" else "account stopped"
            since = num.active_changed if num.calls == "stopped" else None
            items.append(_item(acc, num, fee, why, could_ring_before, since))
            total += fee
            newly += fee if could_ring_before else ZERO
    return Charges(
        currency=currency,
        stopped_monthly_total=money(total),
        newly_stopped_monthly=money(newly),
        items=items,
    )


def _item(
    acc: LiveAccount, num: LiveNumber | None, fee: Decimal, why: str, new: bool, since: object
) -> ChargeItem:
    if num is None:
        address, kind, name = f"account.{acc.id}", "account", acc.name
    else:
        address, kind, name = f"number.{num.number}", "number", num.name
    return ChargeItem(
        address=address,
        kind=kind,
        account_id=acc.id,
        name=name,
        monthly_fee=money(fee),
        why=why,
        new=new,
        stopped_since=None if new else jsonable(since),
    )
