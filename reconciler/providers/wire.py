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
from reconciler.models import ListedAccount, LiveAccount, LiveNumber
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


ACCOUNT_STATUSES = ("active", "paused", "stopped")


def account_from_wire(data: Any) -> LiveAccount:
    """Wire Account -> LiveAccount (numbers empty).

    The status is kept as the provider reports it: another value (`canceled`, say) or none
    is not an error here; the plan reports `unsupported_status` for that account alone.
    """
    try:
        status = data.get("status")
        if status not in ACCOUNT_STATUSES:
            status = "" if status is None else str(status)[:40]
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

    Only `id` and `number` are required. A field the provider does not send is not
    reported (None): `active` (calls), `paused` (swapping), `source` (whether it can be
    paused), `stats.calls`; the plan never changes what it cannot see. A field sent with
    the wrong type is a malformed response.

    `account_id` is the account the number was asked of: a number that says it belongs
    to another account is a provider error, never silently re-homed.
    """
    try:
        active, paused = data.get("active"), data.get("paused")
        owner = data.get("account_id")
        if account_id is not None and owner is not None and str(owner) != account_id:
            raise ProviderError(
                f"provider answered for another account: number {str(data.get('id'))[:40]!r} "
                f"of account {str(owner)[:40]!r} listed under account {account_id}"
            )
        if (active is not None and type(active) is not bool) or (
            paused is not None and type(paused) is not bool
        ):
            raise ProviderError("malformed response: number active/paused are not booleans")
        source = data.get("source")
        online = None if source is None else source.get("online")
        if online is not None and type(online) is not bool:
            raise ProviderError("malformed response: number source.online is not a boolean")
        stats = data.get("stats") or {}
        calls = stats.get("calls")
        if calls is not None:
            calls = int(calls)
            if calls < 0 or type(stats.get("calls")) is bool:
                raise ValueError("stats.calls")
        # Positional, in LiveNumber's field order: a fleet read makes 100,000 of these, and
        # keyword arguments make the dataclass's __init__ ~60% slower.
        return LiveNumber(
            nid
            if type(nid := data["id"]) is str and nid.isalnum() and len(nid) <= MAX_ID_LENGTH
            else check_id(nid, "number"),  # id
            str(owner or account_id or ""),  # account_id
            _live_number(data["number"]),  # number
            None if active is None else "allowed" if active else "stopped",  # calls
            None if paused is None else "paused" if paused else "active",  # swapping
            online,  # online
            str(data.get("name") or ""),  # name
            str(data.get("formatted") or ""),  # formatted
            str((source or {}).get("name") or ""),  # source_name
            parse_money(stats.get("renewal_costs")),  # renewal_fee
            calls,  # recent_calls
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


def next_page_number(value: Any) -> int | None:
    """A page's `next_page`: a page number, a URL with a `page` parameter (as the real API
    sends), or null. Returns the page number, or None at the end. Anything else (a URL
    without `page`, a page below 2) is a malformed response."""
    if value is None or value == "" or value is False:
        return None
    if type(value) is int:
        page = value
    elif isinstance(value, str):
        from urllib.parse import parse_qs, urlsplit

        found = parse_qs(urlsplit(value).query).get("page") if not value.isdigit() else [value]
        if not found or not found[0].isdigit():
            raise ProviderError(f"malformed response: next_page {value[:60]!r} names no page")
        page = int(found[0])
    else:
        raise ProviderError("malformed response: next_page is not a page number or URL")
    if page < 2:
        raise ProviderError(f"malformed response: next_page {page} is not after page 1")
    return page


def error_reason(data: Any) -> str:
    """The reason a provider's error body gives: `reason`, `error` or `message`, a string
    or a list of strings; "" when it gives none."""
    if not isinstance(data, dict):
        return ""
    for key in ("reason", "error", "message", "errors"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, list):
            parts = [v for v in value if isinstance(v, str) and v.strip()]
            if parts:
                return "; ".join(parts)
    return ""


def listed_from_wire(data: Any) -> ListedAccount:
    """A listed Account, reading only what a listing shows: any status is kept as the
    provider writes it (`canceled` too), a missing name is empty; only the id must be
    usable."""
    if not isinstance(data, dict):
        raise ProviderError("malformed response: account is not an object")
    status = data.get("status")
    return ListedAccount(
        id=check_id(data.get("id"), "account"),
        name=str(data.get("name") or ""),
        status=None if status in (None, "") else str(status)[:40],
    )
