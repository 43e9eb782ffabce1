"""What a scheduled `apply --due` may change: only entries whose desired value depends on
time (those with `from` or `until`).

Pure: the due plan is the ordinary plan of a desired state in which every other entry
asks for exactly what live has, so it goes through every guard (errors, protected,
threshold, charges) like any plan, and never touches a change a person has not merged
for a normal apply.
"""

from __future__ import annotations

import dataclasses

from reconciler.models import DesiredAccount, DesiredNumber, DesiredState, LiveState
from reconciler.plan_model import Change, Plan


def is_timed(entry: DesiredAccount | DesiredNumber) -> bool:
    """An entry with a window: its desired value depends on the time."""
    return entry.start is not None or entry.until is not None


def due_desired(desired: DesiredState, live: LiveState) -> DesiredState:
    """`desired` with every entry without a window set to what live has."""
    accounts = {}
    for acc_id, acc in desired.accounts.items():
        live_acc = live.accounts.get(acc_id)
        if live_acc is None:
            accounts[acc_id] = acc  # unknown_account: reported as always
            continue
        by_number = {n.number: n for n in live_acc.numbers}
        numbers = []
        for num in acc.numbers:
            live_num = by_number.get(num.number)
            if live_num is None or is_timed(num):
                numbers.append(num)
            else:
                numbers.append(
                    dataclasses.replace(num, calls=live_num.calls, swapping=live_num.swapping)
                )
        status = acc.status if is_timed(acc) else live_acc.status
        accounts[acc_id] = dataclasses.replace(acc, status=status, numbers=tuple(numbers))
    return DesiredState(
        desired.config_dir, desired.settings, desired.settings_path, accounts, desired.digest
    )


def not_due(full: Plan, due: Plan) -> list[Change]:
    """Changes of the full plan that the due plan leaves for a normal apply."""
    planned = {(c.address, c.field) for c in due.changes}
    return [c for c in full.changes if (c.address, c.field) not in planned]
