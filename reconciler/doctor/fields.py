"""Doctor's field-by-field checks: what the mapping (`providers/wire.py`) needs of an
account object and of a numbers page, and how a gap or a wrong type is judged and shown
(samples shortened and neutralised)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconciler.doctor.check import RANK, Check, Status
from reconciler.providers import wire
from reconciler.render.safe import neutral

ACCOUNT_STATUSES = ("active", "paused", "stopped")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_SAMPLE_CHARS = 40


def _always(value: Any) -> bool:
    return True


def _no_problem(value: Any, account_id: str) -> tuple[Status, str] | None:
    return None


def _as_is(value: Any) -> Any:
    return value


def _refuse(value: Any) -> Any:
    raise ValueError("not read")


def _is_id(value: Any) -> bool:
    return type(value) in (int, str) and _reads(lambda v: wire.check_id(v, "an"), value)


def _is_bool(value: Any) -> bool:
    return type(value) is bool


def _is_text(value: Any) -> bool:
    return type(value) is str


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _is_money(value: Any) -> bool:
    return type(value) is str and _reads(wire.parse_money, value)


def _is_time(value: Any) -> bool:
    return type(value) is str and _reads(wire.parse_time, value)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _reads(read: Callable[[Any], Any], value: Any) -> bool:
    try:
        read(value)
    except Exception:  # whatever the mapping's own conversion raises: it cannot read it
        return False
    return True


@dataclass(frozen=True)
class Field:
    """A field the mapping reads: where it is, what it should be, what a gap means."""

    path: tuple[str, ...]
    expected: str  # "a boolean"
    strict: Callable[[Any], bool]  # of the expected type
    read: Callable[[Any], Any]  # what the mapping makes of another type; raises if it cannot
    missing: tuple[Status, str]  # when absent, null or "": status and consequence
    value: Callable[[Any, str], tuple[Status, str] | None] = _no_problem  # (value, account)
    needs_parent: bool = False  # nested: skipped where the parent object is absent


def _status_value(value: Any, account_id: str) -> tuple[Status, str] | None:
    if value in ACCOUNT_STATUSES:
        return None
    return (
        "warn",
        f"{sample(value)} is not active, paused or stopped: this account is an error "
        "(unsupported_status) and is not planned; other accounts are",
    )


def _same_account(what: str) -> Callable[[Any, str], tuple[Status, str] | None]:
    def check(value: Any, account_id: str) -> tuple[Status, str] | None:
        if str(value) == account_id:
            return None
        return ("fail", f"{what} {sample(value)}, not {account_id}: reads refuse the answer")

    return check


def _e164(value: Any, account_id: str) -> tuple[Status, str] | None:
    if isinstance(value, str) and _E164.match(value):
        return None
    return (
        "warn",
        f"{sample(value)} is not E.164 (+ and up to 15 digits): config entries cannot match it",
    )


_MALFORMED = ("fail", "reads fail (malformed response)")

ACCOUNT_FIELDS = (
    Field(
        ("id",), "a string or integer", _is_id, _refuse, _MALFORMED, _same_account("the account is")
    ),
    Field(
        ("name",),
        "a string",
        _is_text,
        str,
        ("warn", "the config's name is shown and name_mismatch is not checked"),
    ),
    Field(
        ("status",),
        "active, paused or stopped",
        _always,
        _as_is,
        (
            "warn",
            "status not reported: this account is an error (unsupported_status) and is not planned",
        ),
        _status_value,
    ),
    Field(
        ("monthly_fee",),
        'a decimal string ("49.00")',
        _is_money,
        wire.parse_money,
        ("warn", "the account's fee falls back to billing.default_account_monthly_fee"),
    ),
)


def number_fields(default_fee: str) -> tuple[Field, ...]:
    """The number fields the mapping reads (`wire.number_from_wire`)."""
    return (
        Field(("id",), "a string or integer", _is_id, _refuse, _MALFORMED),
        Field(("number",), "an E.164 string", _is_text, str, _MALFORMED, _e164),
        Field(("formatted",), "a string", _is_text, str, ("warn", "numbers are shown unformatted")),
        Field(("name",), "a string", _is_text, str, ("warn", "numbers are shown without a name")),
        Field(
            ("active",),
            "a boolean",
            _is_bool,
            _refuse,
            ("warn", "calls not reported: reconciler will not change calls of such numbers"),
        ),
        Field(
            ("paused",),
            "a boolean",
            _is_bool,
            _refuse,
            ("warn", "swapping not reported: reconciler will not change swapping of such numbers"),
        ),
        Field(
            ("source",),
            "an object",
            _is_object,
            _refuse,
            ("warn", "source not reported: pausing such numbers is refused (not_pausable)"),
        ),
        Field(
            ("source", "online"),
            "a boolean",
            _is_bool,
            bool,
            ("warn", "such numbers count as offline: pausing them is refused (not_pausable)"),
            needs_parent=True,
        ),
        Field(
            ("stats", "calls"),
            "a whole number",
            _is_count,
            int,
            (
                "warn",
                "call counts not reported: no recent_calls warning before stopping such numbers",
            ),
        ),
        Field(
            ("stats", "renewal_costs"),
            'a decimal string ("3.00")',
            _is_money,
            wire.parse_money,
            ("warn", f"fees fall back to billing.default_number_monthly_fee ({default_fee})"),
        ),
        Field(
            ("active_changed",),
            "an ISO-8601 time",
            _is_time,
            wire.parse_time,
            ("warn", "stopped-since dates unknown: no stale_stop warning for such numbers"),
        ),
        Field(
            ("account_id",),
            "a string or integer",
            _is_id,
            str,
            ("ok", "the account they are listed under is assumed"),
            _same_account("numbers say their account is"),
        ),
    )


_ABSENT = object()
_NO_PARENT = object()
_BAD_PARENT = object()


def _lookup(obj: Any, path: tuple[str, ...]) -> Any:
    """The value at `path`; _ABSENT (absent, null or "": the mapping reads all three as not
    reported), _NO_PARENT, or _BAD_PARENT (a parent is not an object)."""
    value = obj
    for depth, key in enumerate(path):
        if not isinstance(value, dict):
            return _BAD_PARENT
        value = value.get(key)
        if value is None or value == "":
            return _NO_PARENT if depth < len(path) - 1 else _ABSENT
    return value


@dataclass
class _Tally:
    """What one field looked like across the objects checked."""

    present: list[Any] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # the objects lacking it
    coerced: list[Any] = field(default_factory=list)  # another type the mapping reads
    unreadable: list[Any] = field(default_factory=list)  # another type it cannot read
    problems: dict[str, tuple[Status, list[Any]]] = field(default_factory=dict)


def _tally(spec: Field, objects: list[Any], account_id: str) -> _Tally:
    tally = _Tally()
    for obj in objects:
        value = _lookup(obj, spec.path)
        if value is _NO_PARENT and spec.needs_parent:
            continue
        if value is _ABSENT or value is _NO_PARENT:
            tally.missing.append(label(obj))
            continue
        if value is _BAD_PARENT:
            tally.unreadable.append(_lookup(obj, spec.path[:1]))
            continue
        tally.present.append(value)
        if not spec.strict(value):
            (tally.coerced if _reads(spec.read, value) else tally.unreadable).append(value)
        problem = spec.value(value, account_id)
        if problem is not None:
            tally.problems.setdefault(problem[1], (problem[0], []))[1].append(value)
    return tally


def field_check(kind: str, spec: Field, objects: list[Any], account_id: str) -> Check:
    """One field across `objects` (an account, or a page of numbers): present, missing or
    of a wrong type, with samples and what a gap means."""
    tally = _tally(spec, objects, account_id)
    n, many = len(objects), len(objects) > 1

    def on(k: int) -> str:
        return f" on {k} of {n} {kind}s" if many else ""

    parts: list[str] = []
    worst: Status = "ok"
    if tally.present:
        parts.append(f"present{on(len(tally.present))}: {samples(tally.present)}")
    if tally.missing:
        status, why = spec.missing
        shown = f" (e.g. {tally.missing[0]})" if many else ""
        parts.append(f"missing{on(len(tally.missing))}{shown}: {why}")
        worst = _worse(worst, status)
    if tally.coerced:
        parts.append(
            f"not {spec.expected}{on(len(tally.coerced))} ({samples(tally.coerced)}): "
            "read by converting it"
        )
        worst = _worse(worst, "warn")
    if tally.unreadable:
        parts.append(
            f"not {spec.expected}{on(len(tally.unreadable))} ({samples(tally.unreadable)}): "
            "reads fail (malformed response)"
        )
        worst = "fail"
    for message, (status, values) in tally.problems.items():
        parts.append(message + (f" ({len(values)} of {n} {kind}s)" if many else ""))
        worst = _worse(worst, status)
    return Check(f"{kind}.{'.'.join(spec.path)}", worst, "; ".join(parts))


def _worse(a: Status, b: Status) -> Status:
    return a if RANK[a] >= RANK[b] else b


def label(obj: Any) -> str:
    """How an object is named in a detail: its number, else its id."""
    if isinstance(obj, dict):
        for key in ("number", "id"):
            if isinstance(obj.get(key), str | int) and not isinstance(obj.get(key), bool):
                return sample(obj[key])
    return "?"


def sample(value: Any) -> str:
    """A value as JSON, shortened: text from the provider, shown safely."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > _SAMPLE_CHARS:
        text = text[: _SAMPLE_CHARS - 3] + "..."
    return neutral(text)


def samples(values: list[Any], most: int = 3, width: int = 60) -> str:
    """Up to `most` distinct values, fewer once they fill `width` characters."""
    shown: list[str] = []
    for value in values:
        text = sample(value)
        if text in shown:
            continue
        if shown and len(", ".join([*shown, text])) > width:
            break
        shown.append(text)
        if len(shown) == most:
            break
    return ", ".join(shown)


def shown_text(value: str) -> str:
    """A header's text, shortened and shown safely (no JSON quotes)."""
    text = " ".join(value.split())
    return neutral(text if len(text) <= _SAMPLE_CHARS else text[: _SAMPLE_CHARS - 3] + "...")
