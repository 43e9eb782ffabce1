"""The provider's wire shapes (CTM API v1 conventions, SPEC §7) and their mapping to live state.

This is the one place that knows how stop/allow/pause/resume map onto the wire. The
provider does not document these writes publicly; the mapping follows the wire API the
reconciler is specified against, and every write is checked against the object the
response returns.
"""

from __future__ import annotations

import functools
import re
import sys
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from reconciler.errors import ProviderError
from reconciler.models import LiveAccount, LiveNumber
from reconciler.phone import live_e164

MAX_PER_PAGE = 150
MAX_ID_LENGTH = 200
_BAD_ID = re.compile(r"[\x00-\x1f\x7f/\\?#%]")


def check_id(value: Any, what: str) -> str:
    """A provider id as text, safe to use as one URL path segment: not empty, not `.` or
    `..`, no slash, backslash, `?`, `#`, `%` or control character, at most 200 characters.
    Anything else is a malformed response: a write can only reach the route it was built
    for."""
    if type(value) is str:
        if value.isalnum() and len(value) <= MAX_ID_LENGTH:
            return value  # the common case, checked in C: 100,000 numbers a fleet read
        text = value
    elif type(value) is int:
        return str(value)
    else:
        raise ProviderError(f"malformed response: {what} id is not a string or integer")
    if text in ("", ".", "..") or len(text) > MAX_ID_LENGTH or _BAD_ID.search(text):
        raise ProviderError(f"malformed response: unusable {what} id {text[:40]!r}")
    return text


# --- writes ---------------------------------------------------------------------------


def account_status_write(account_id: str, status: str) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) that sets an account's status."""
    return f"/accounts/{account_id}/status", {"status": status}


def number_write(
    account_id: str, number_id: str, field: str, value: str
) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) that sets a number's calls (`active`) or swapping (`paused`)."""
    path = f"/accounts/{account_id}/numbers/{number_id}/update_number"
    if field == "calls":
        return path, {"active": value == "allowed"}
    if field == "swapping":
        return path, {"paused": value == "paused"}
    raise ValueError(f"unknown number field {field!r}")


# --- reads ----------------------------------------------------------------------------


# `datetime.fromisoformat` reads a trailing "Z" from Python 3.11 on.
_ISO_READS_Z = sys.version_info >= (3, 11)


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 string (Z or offset) -> aware datetime; None/empty -> None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ProviderError(
            f"malformed response: expected a time string, got {type(value).__name__}"
        )
    try:
        parsed = datetime.fromisoformat(value if _ISO_READS_Z else value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ProviderError(f"malformed response: bad time {value[:40]!r}") from exc
    if parsed.tzinfo is None:
        raise ProviderError(f"malformed response: time without timezone {value[:40]!r}")
    return parsed


def parse_money(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return _money(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ProviderError(f"malformed response: bad amount {str(value)[:40]!r}") from exc


_CENT = Decimal("0.01")


# A fleet has few distinct fees ("3.00" on most numbers): parse each one once. Decimals are
# immutable, so sharing one object between numbers is safe.
@functools.lru_cache(maxsize=1024)
def _money(text: str) -> Decimal:
    amount = Decimal(text)
    if not amount.is_finite() or amount < 0:  # NaN, Infinity, a negative fee: not money
        raise ValueError(text)
    return amount.quantize(_CENT)


def account_from_wire(data: Any) -> LiveAccount:
    """Wire Account -> LiveAccount (numbers empty)."""
    try:
        status = data["status"]
        if status not in ("active", "paused", "stopped"):
            raise ProviderError(f"malformed response: account status {str(status)[:20]!r}")
        return LiveAccount(
            id=check_id(data["id"], "account"),
            name=str(data.get("name") or ""),
            status=status,
            monthly_fee=parse_money(data.get("monthly_fee")),
            updated=parse_time(data.get("updated")),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ProviderError(f"malformed response: account object lacks {exc}") from exc


def number_from_wire(data: Any, account_id: str | None = None) -> LiveNumber:
    """Wire Number -> LiveNumber (`active` -> calls, `paused` -> swapping).

    `account_id` is the account the number was asked of: a number that says it belongs
    to another account is a provider error, never silently re-homed.
    """
    try:
        active, paused = data["active"], data["paused"]
        owner = data.get("account_id")
        if account_id is not None and owner is not None and str(owner) != account_id:
            raise ProviderError(
                f"provider answered for another account: number {str(data.get('id'))[:40]!r} "
                f"of account {str(owner)[:40]!r} listed under account {account_id}"
            )
        if not isinstance(active, bool) or not isinstance(paused, bool):
            raise ProviderError("malformed response: number active/paused are not booleans")
        source = data.get("source") or {}
        stats = data.get("stats") or {}
        # Positional, in LiveNumber's field order: a fleet read makes 100,000 of these, and
        # keyword arguments make the dataclass's __init__ ~60% slower.
        return LiveNumber(
            nid
            if type(nid := data["id"]) is str and nid.isalnum() and len(nid) <= MAX_ID_LENGTH
            else check_id(nid, "number"),  # id
            str(owner or account_id or ""),  # account_id
            _live_number(data["number"]),  # number
            "allowed" if active else "stopped",  # calls
            "paused" if paused else "active",  # swapping
            bool(source.get("online", False)),  # online
            str(data.get("name") or ""),  # name
            str(data.get("formatted") or ""),  # formatted
            str(source.get("name") or ""),  # source_name
            parse_money(stats.get("renewal_costs")),  # renewal_fee
            int(stats.get("calls") or 0),  # recent_calls
            parse_time(data.get("active_changed")),  # active_changed
            parse_time(data.get("updated")),  # updated
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, ProviderError):
            raise
        raise ProviderError(f"malformed response: number object lacks or garbles {exc}") from exc


def _live_number(value: Any) -> str:
    """The phone number of a wire Number as E.164 (a provider may format it)."""
    number = live_e164(value) if type(value) is str else None
    if number is None:
        raise ProviderError(
            f"malformed response: number {str(value)[:40]!r} is not a phone number "
            "(expected + and the country code, in any formatting)"
        )
    return number


def numbers_from_wire(items: list[Any], account_id: str) -> list[LiveNumber]:
    """A page of wire Numbers -> LiveNumbers (one call per page, not per number)."""
    return [number_from_wire(item, account_id) for item in items]
