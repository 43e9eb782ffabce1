"""Guards judged on effect (SPEC §2), across the account -> numbers hierarchy.

For each number of a managed account whose effect can change, the planner's state says
whether it can ring and whether it is swapped before and after the plan; `protected`,
`recent_calls` and the mass-change threshold are judged on that, and a number the provider
lists twice is refused. Called by `plan.build_plan` on its builder; pure like it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.models import DesiredAccount, LiveAccount, LiveNumber, LiveState
from reconciler.plan_model import Change

if TYPE_CHECKING:
    from reconciler.plan import _Builder

THRESHOLD_MIN_NUMBERS = 10  # rule 1: accounts with at least this many live numbers
THRESHOLD_MIN_ACCOUNTS = 10  # rule 2: plans with at least this many accounts in scope
PLAN_ADDRESS = "plan"  # findings about the plan as a whole
ACCOUNTS_LISTED = 5


def can_ring(status: str, calls: str | None) -> bool:
    """SPEC §2: a number rings only when its account is not stopped and its calls allowed.
    Calls the provider does not report (None) are taken to be allowed: a guard must never
    assume a number is already silent."""
    return status != "stopped" and calls != "stopped"


def is_swapped(status: str, calls: str | None, swapping: str | None) -> bool:
    """SPEC §2: swapped on websites only when it can ring, its account is active and its
    own swapping is active (not reported: taken to be active, as for `can_ring`)."""
    return status == "active" and calls != "stopped" and swapping != "paused"


@dataclass(slots=True)
class Effect:
    """What the plan does to one live number: can it ring, is it swapped, before/after."""

    number: LiveNumber
    ring_before: bool
    ring_after: bool
    swapped_before: bool
    swapped_after: bool

    @property
    def changed(self) -> bool:
        return self.ring_before != self.ring_after or self.swapped_before != self.swapped_after

    @property
    def silenced(self) -> bool:
        return self.ring_before and not self.ring_after

    @property
    def unswapped(self) -> bool:
        return self.swapped_before and not self.swapped_after


@dataclass(slots=True)
class AccountEffects:
    """One managed account, its planned status change (if any) and its numbers' effects."""

    acc: DesiredAccount
    live: LiveAccount
    change: Change | None
    effects: list[Effect]


def number_effects(b: _Builder, live: LiveAccount, final_status: str) -> list[Effect]:
    """The effect of the plan on the numbers of one account whose effect can change: all
    of them when the account's status changes, else those with a change of their own."""
    numbers = live.numbers if final_status != live.status else b.changed_live.get(live.id, [])
    calls_after, swapping_after = b.final_calls, b.final_swapping
    out = []
    for n in numbers:
        calls = calls_after.get(n.number, n.calls)
        swapping = swapping_after.get(n.number, n.swapping)
        out.append(
            Effect(
                n,
                can_ring(live.status, n.calls),
                can_ring(final_status, calls),
                is_swapped(live.status, n.calls, n.swapping),
                is_swapped(final_status, calls, swapping),
            )
        )
    return out


def account_guards(b: _Builder) -> None:
    """Every guard judged on effect (SPEC §2): protected, recent_calls, threshold."""
    for acc, live, final_status in b.planned:
        effects = number_effects(b, live, final_status)
        if not effects:
            continue
        fx = AccountEffects(acc, live, b.account_change.get(acc.id), effects)
        _protected_by_effect(b, fx)
        _recent_calls(b, fx)
        _account_threshold(b, fx)


def _protected_by_effect(b: _Builder, fx: AccountEffects) -> None:
    acc, account_change, effects = fx.acc, fx.change, fx.effects
    # A protected number's own stop or pause is refused where it is planned, so a loss
    # that remains here comes from its account's change.
    if account_change is None:
        return
    protected = {n.number: n for n in acc.numbers if n.protected}
    if not protected:
        return
    c = account_change
    verb = {"stop": "stopping", "pause": "pausing"}.get(c.action, f"{c.action}ing")
    cause = f"{verb} account {acc.id} ({c.account_name}) (status: {c.from_} -> {c.to}, {c.source})"
    for e in effects:
        num = protected.get(e.number.number)
        if num is None or not (e.silenced or e.unswapped):
            continue
        if e.silenced:
            calls = e.number.recent_calls
            took = (
                "its call count is not reported"
                if calls is None
                else f"{calls} call{'s' if calls != 1 else ''} in the last 30 days"
            )
            lost = f"unable to ring ({took})"
        else:
            lost = "no longer swapped on websites"
        b.error(
            "protected",
            f"number.{num.number}",
            f"{num.number} is protected: true; {cause} would leave it {lost}. Keep account "
            f"{acc.id} {c.from_}, or remove protected: true from the number in the same "
            "change if this is intended",
            num.source.at(num.field_lines, "protected"),
        )


TOP_CALLERS = 3


def _recent_calls(b: _Builder, fx: AccountEffects) -> None:
    acc, account_change, effects = fx.acc, fx.change, fx.effects
    silenced = [e.number for e in effects if e.silenced]
    unknown = [n for n in silenced if n.recent_calls is None]
    if account_change is not None:
        counted = [n for n in silenced if n.recent_calls is not None]
        calls = sum(n.recent_calls or 0 for n in counted)
        if calls <= 0 and not unknown:
            return
        top = sorted(counted, key=lambda n: -(n.recent_calls or 0))[:TOP_CALLERS]
        listed = ", ".join(f"{n.number} ({n.recent_calls})" for n in top if n.recent_calls)
        more = len(counted) - len(top)
        tail = f"{f', and {more} more' if more > 0 else ''}"
        if unknown:
            tail += f"; call counts are not reported for {len(unknown)} of them"
        c = account_change  # only a stop silences numbers
        b.warn(
            "recent_calls",
            c.address,
            f"stopping account {acc.id} silences {len(silenced)} number"
            f"{'s' if len(silenced) != 1 else ''} that took {calls} call"
            f"{'s' if calls != 1 else ''} in the last 30 days"
            f"{f': {listed}' if listed else ''}{tail}; callers will hear a disconnected tone",
            c.source,
        )
        return
    desired = {n.number: n for n in acc.numbers}
    for n in silenced:
        if n.recent_calls is not None and n.recent_calls <= 0:
            continue
        num = desired[n.number]
        took = (
            "whose call counts the provider does not report"
            if n.recent_calls is None
            else f"that took {n.recent_calls} call{'s' if n.recent_calls != 1 else ''} in the "
            "last 30 days"
        )
        b.warn(
            "recent_calls",
            f"number.{n.number}",
            f"stopping {n.number} silences a number {took}; callers will hear a disconnected tone",
            num.source.at(num.field_lines, "calls"),
        )


def _account_threshold(b: _Builder, fx: AccountEffects) -> None:
    acc, live, account_change, effects = fx.acc, fx.live, fx.change, fx.effects
    """Rule 1: the share of an account's live numbers (>= 10) whose effect changes; an
    account status change counts all of them."""
    limit = b.settings.policy.max_change_fraction
    total = len(live.numbers)
    if total < THRESHOLD_MIN_NUMBERS:
        return
    changed = total if account_change is not None else sum(1 for e in effects if e.changed)
    if changed / total <= limit:
        return
    c = account_change
    how = f" (account status: {c.from_} -> {c.to})" if c is not None else ""
    b.warn(
        "threshold_exceeded",
        f"account.{acc.id}",
        f"per-account rule: the plan changes whether {changed} of the {total} numbers of "
        f"account {acc.id} ({live.name}) can ring or are swapped{how}, {changed / total:.0%} > "
        f"policy.max_change_fraction {limit:.0%}; apply needs --force",
        acc.source,
    )


def plan_threshold(b: _Builder) -> None:
    """Rule 2: the share of accounts in scope (>= 10) whose status changes."""
    limit = b.settings.policy.max_change_fraction
    total = len(b.planned)
    changed = len(b.account_change)
    if total < THRESHOLD_MIN_ACCOUNTS or changed / total <= limit:
        return
    shown = ", ".join(list(b.account_change)[:ACCOUNTS_LISTED])
    more = f" and {changed - ACCOUNTS_LISTED} more" if changed > ACCOUNTS_LISTED else ""
    b.warn(
        "threshold_exceeded",
        PLAN_ADDRESS,
        f"per-plan rule: the plan changes the status of {changed} of the {total} accounts in "
        f"scope ({shown}{more}), {changed / total:.0%} > policy.max_change_fraction "
        f"{limit:.0%}; apply needs --force",
    )


def duplicate_live_numbers(b: _Builder, live: LiveState) -> None:
    """An E.164 the provider lists twice (two ids): which one rings is unknowable, so
    nothing is planned for it and the plan cannot be applied."""
    listed = [n.number for acc in live.accounts.values() for n in acc.numbers]
    if len(set(listed)) == len(listed):
        return  # the common case, found at C speed
    first: dict[str, tuple[str, LiveNumber]] = {}
    for acc in live.accounts.values():
        for n in acc.numbers:
            seen = first.setdefault(n.number, (acc.id, n))
            if seen[1] is not n:
                b.duplicates.setdefault(n.number, [seen]).append((acc.id, n))
    if not b.duplicates:
        return
    sources = {
        n.number: n.source
        for a in b.desired.accounts.values()
        for n in a.numbers
        if n.number in b.duplicates
    }
    for e164, listed in b.duplicates.items():
        where = "; ".join(f"id {n.id} in account {acc_id}" for acc_id, n in listed)
        b.error(
            "duplicate_live_number",
            f"number.{e164}",
            f"the provider lists {e164} {len(listed)} times ({where}); nothing is planned "
            "for it and the plan cannot be applied. Check the number in the provider's UI "
            "(one of the entries may be a stale copy)",
            sources.get(e164),
        )
