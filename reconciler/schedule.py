"""Window boundaries ahead: when each `from`/`until` of the config flips a desired value,
with what it does to the charges. Pure: desired + live (for names and fees) + a time span.

Rendered as text, JSON, Markdown or an RFC 5545 calendar (`icalendar`), so on-call
engineers can subscribe to planned stops; the plan's PR comment lists them as "Upcoming".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from reconciler.charges import ZERO, money, number_fee
from reconciler.models import DesiredState, LiveAccount, LiveState, jsonable
from reconciler.plan import ACCOUNT_ACTIONS, NUMBER_ACTIONS

SCHEDULE_FORMAT_VERSION = 1
DEFAULT_DAYS = 30


@dataclass(frozen=True)
class Event:
    """One window boundary: at `at`, the desired `field` of `address` goes `from_` -> `to`."""

    at: datetime
    address: str
    kind: str
    field: str
    from_: str
    to: str
    action: str
    name: str
    note: str | None
    source: str
    charges: Decimal | None  # change in what bills for nothing, a month (None: unknown)

    def to_dict(self) -> dict[str, object]:
        return {
            "at": jsonable(self.at),
            "address": self.address,
            "kind": self.kind,
            "field": self.field,
            "from": self.from_,
            "to": self.to,
            "action": self.action,
            "name": self.name,
            "note": self.note,
            "source": self.source,
            "monthly_charges_effect": None if self.charges is None else money(self.charges),
        }

    @property
    def uid(self) -> str:
        """Stable across runs: the same boundary keeps its calendar entry."""
        key = f"{self.address}|{self.field}|{jsonable(self.at)}"
        return hashlib.sha256(key.encode()).hexdigest()[:32] + "@reconciler"

    @property
    def summary(self) -> str:
        """`stop calls +14105550101 (Acme Dental)`."""
        what = self.address.partition(".")[2]
        who = f" ({self.name})" if self.name else ""
        target = f"account {what}" if self.kind == "account" else what
        return f"{self.action} {self.field} {target}{who}"


def upcoming(
    desired: DesiredState, live: LiveState, start: datetime, days: int = DEFAULT_DAYS
) -> list[Event]:
    """Every window boundary in [start, start + days), sorted by time."""
    end = start + timedelta(days=days)
    default_fee = desired.settings.billing.default_fee
    events: list[Event] = []

    def add(at: datetime | None, **kw: object) -> None:
        if at is not None and start <= at < end:
            events.append(Event(at=at, **kw))  # type: ignore[arg-type]

    for acc in desired.accounts.values():
        # most entries have no window: a fleet plan of 100,000 numbers passes through here
        timed = [n for n in acc.numbers if n.start is not None or n.until is not None]
        if not timed and acc.start is None and acc.until is None:
            continue
        live_acc = live.accounts.get(acc.id)
        name = (live_acc.name if live_acc else "") or acc.name or ""
        src = f"{acc.source.path}:{acc.field_lines.get('status', acc.source.line)}"
        if acc.status != "active":
            fee = _account_stop_cost(live_acc, default_fee) if acc.status == "stopped" else ZERO
            for at, old, new, sign in (
                (acc.start, "active", acc.status, 1),
                (acc.until, acc.status, "active", -1),
            ):
                add(
                    at,
                    address=f"account.{acc.id}",
                    kind="account",
                    field="status",
                    from_=old,
                    to=new,
                    action=ACCOUNT_ACTIONS[(old, new)],
                    name=name,
                    note=acc.note,
                    source=src,
                    charges=None if fee is None else (sign * fee if fee else ZERO),
                )
        by_number = {n.number: n for n in live_acc.numbers} if live_acc and timed else {}
        for num in timed:
            live_num = by_number.get(num.number)
            for fld, written, default in (
                ("calls", num.calls, "allowed"),
                ("swapping", num.swapping, "active"),
            ):
                if written == default:
                    continue
                cost: Decimal | None = ZERO
                if fld == "calls":
                    cost = number_fee(live_num, default_fee) if live_num else None
                for at, old, new, sign in (
                    (num.start, default, written, 1),
                    (num.until, written, default, -1),
                ):
                    add(
                        at,
                        address=f"number.{num.number}",
                        kind="number",
                        field=fld,
                        from_=old,
                        to=new,
                        action=NUMBER_ACTIONS[(fld, old, new)],
                        name=name,
                        note=num.note,
                        source=f"{num.source.path}:{num.field_lines.get(fld, num.source.line)}",
                        charges=None if cost is None else (sign * cost if cost else ZERO),
                    )
    return sorted(events, key=lambda e: (e.at, e.address, e.field))


def _account_stop_cost(live: LiveAccount | None, default_fee: Decimal) -> Decimal | None:
    """What a stop adds to the bill for nothing: the subscription and every number that
    could ring until then."""
    if live is None:
        return None
    fee = live.monthly_fee if live.monthly_fee is not None else ZERO
    return fee + sum(
        (number_fee(n, default_fee) for n in live.numbers if n.calls == "allowed"), ZERO
    )


# --- rendering ---------------------------------------------------------------------------


def effect_text(event: Event, currency: str) -> str:
    if event.charges is None:
        return "charges: unknown (not read live)"
    if event.charges == 0:
        return "no change in charges"
    sign = "+" if event.charges > 0 else "−"
    verb = "billed for nothing" if event.charges > 0 else "no longer billed for nothing"
    return f"{sign}{money(abs(event.charges))} {currency}/month {verb}"


def render_schedule(
    events: list[Event], fmt: str, *, start: datetime, days: int, currency: str
) -> str:
    """The events as text, json, markdown or ics."""
    if fmt == "json":
        doc = {
            "format_version": SCHEDULE_FORMAT_VERSION,
            "evaluated_at": jsonable(start),
            "days": days,
            "currency": currency,
            "events": [e.to_dict() for e in events],
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if fmt == "ics":
        return render_ics(events, currency)
    if fmt == "markdown":
        return "\n".join(markdown_lines(events, days)) + "\n"
    head = f"Window boundaries in the {days} days from {jsonable(start)}:"
    if not events:
        return f"No window boundaries in the {days} days from {jsonable(start)}.\n"
    lines = [head, ""]
    for e in events:
        what = f"{e.field}: {e.from_} -> {e.to}"
        lines.append(f"  {jsonable(e.at)}  {e.action:<6} {e.address}  {what}  ({e.name})")
        detail = [effect_text(e, currency), *([f'"{e.note}"'] if e.note else []), e.source]
        lines.append("      " + " · ".join(detail))
    lines += ["", f"{len(events)} boundar{'y' if len(events) == 1 else 'ies'}; "
              "`reconciler apply --due` on a schedule carries them out."]  # fmt: skip
    return "\n".join(lines) + "\n"


def markdown_lines(events: list[Event], days: int) -> list[str]:
    from reconciler.plan_model import UpcomingEvent
    from reconciler.render.markdown import upcoming_table

    rows = [UpcomingEvent.model_validate(e.to_dict()) for e in events]
    return upcoming_table(rows, days) or [f"No window boundaries in the next {days} days."]


def render_ics(events: list[Event], currency: str) -> str:
    """An RFC 5545 calendar: one VEVENT per boundary, UTC start, a stable UID."""
    from icalendar import Calendar
    from icalendar import Event as VEvent

    cal = Calendar()
    cal.add("prodid", "-//reconciler//window boundaries//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", "reconciler: planned stops and resumes")
    for e in events:
        ev = VEvent()
        ev.add("uid", e.uid)
        ev.add("dtstamp", e.at)
        ev.add("dtstart", e.at)
        ev.add("duration", timedelta(minutes=15))
        ev.add("summary", e.summary)
        ev.add(
            "description",
            f"{e.field}: {e.from_} -> {e.to}; {effect_text(e, currency)}; {e.source}"
            + (f"; {e.note}" if e.note else ""),
        )
        cal.add_component(ev)
    return cal.to_ical().decode("utf-8")
