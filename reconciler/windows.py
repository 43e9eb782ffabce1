"""Time windows (`from`/`until`): the desired value at a time, the window warnings, and
a boundary long past that live still does not follow. Pure: the time is given."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from reconciler.models import jsonable

if TYPE_CHECKING:
    from reconciler.plan import _Builder


def effective(
    written: str, start: datetime | None, until: datetime | None, now: datetime, default: str
) -> tuple[str, str, datetime | None]:
    """(desired value at `now`, reason, boundary).

    A written stop/pause holds from `start` (inclusive) to `until` (exclusive); outside
    that window the desired value is `default`. `boundary` is the window time that last
    set the value (`start` once passed, `until` once ended), so a difference it causes can
    be told apart as "due" from drift.
    """
    if written == default:
        return written, "config", None
    if start is not None and now < start:
        return default, "window_not_started", None
    if until is not None and now >= until:
        return default, "window_ended", until
    return written, "config", start


def humanize(delta: timedelta) -> str:
    """`5d 7h`, `3h 20m`, `12m`: how long is left, at a glance."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rem = divmod(minutes, 24 * 60)
    hours, mins = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins}m"
    return f"{mins}m"


def window_warning(
    b: _Builder,
    address: str,
    start: datetime | None,
    until: datetime | None,
    written: str,
    then: str,
    source: object,
) -> None:
    if start is None and until is None:
        return
    now = b.now
    if start is not None and now < start:
        ends = f", ends in {humanize(until - now)} ({jsonable(until)})" if until else ""
        b.warn(
            "window_starts",
            address,
            f"scheduled: {written} starts in {humanize(start - now)} ({jsonable(start)}){ends}; "
            "before then the default (active, allowed) holds",
            source,
        )
    elif until is not None and now < until:
        b.warn(
            "window_ends",
            address,
            f"time-boxed: ends in {humanize(until - now)} ({jsonable(until)}); then {then}",
            source,
        )
    elif until is not None:
        b.warn(
            "window_ends",
            address,
            f"window ended {humanize(now - until)} ago ({jsonable(until)}); remove from/until "
            f"and {_as_written(written)} from the file",
            source,
        )


def _as_written(fields: str) -> str:
    """`calls stopped and swapping paused` -> `` `calls: stopped` and `swapping: paused` ``:
    the lines to delete, as they stand in the file."""
    return " and ".join(
        f"`{name}: {value}`" for name, _, value in (f.partition(" ") for f in fields.split(" and "))
    )


def schedule_missed(b: _Builder) -> None:
    """A window boundary long past that live still does not follow: the schedule did not
    run (or failed); drift then reports it, with this warning."""
    grace = b.settings.policy.due_grace_minutes
    for c in b.changes:
        if c.boundary is None or c.due:
            continue
        when = datetime.fromisoformat(c.boundary.replace("Z", "+00:00"))
        b.warn(
            "schedule_missed",
            c.address,
            f"{c.field} should have become {c.to} at {c.boundary}, {humanize(b.now - when)} ago "
            f"(more than policy.due_grace_minutes {grace}): the scheduled `reconciler apply "
            "--due` did not run or failed; check .github/workflows/schedule.yml",
            c.source,
        )
