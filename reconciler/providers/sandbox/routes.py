"""`sandbox serve`'s routes and list pages: which handler a path goes to, the paging
parameters, and the page envelope as the real API shapes it."""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from reconciler.providers.wire import MAX_PER_PAGE

BASE_PATH = "/api/v1"
DEFAULT_PER_PAGE = 10  # as the real API (its docs' pagination samples)


class HttpError(Exception):
    """Answer with this status and reason (and optional headers)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


# (segments with "{}" for an id, method, handler name)
_ROUTES: list[tuple[tuple[str, ...], str, str]] = [
    (("accounts",), "GET", "list_accounts"),
    (("accounts", "{}"), "GET", "get_account"),
    (("accounts", "{}", "numbers"), "GET", "list_numbers"),
    (("accounts", "{}", "numbers", "{}"), "GET", "get_number"),
    (("accounts", "{}", "status"), "POST", "set_status"),
    (("accounts", "{}", "numbers", "{}", "update_number"), "POST", "update_number"),
]


def resolve(method: str, raw_path: str) -> tuple[str, list[str]]:
    """(handler name, ids) for a request path; HttpError 404/405 otherwise."""
    path = urlsplit(raw_path).path
    if not path.startswith(BASE_PATH + "/"):
        raise HttpError(404, "no such path")
    rest = path[len(BASE_PATH) + 1 :]
    if rest.endswith(".json"):
        rest = rest[: -len(".json")]
    # Split first, then decode: "%2F" inside an id stays inside that id (and fails below).
    segments = [unquote(s) for s in rest.split("/")]
    allowed: list[str] = []
    for pattern, route_method, name in _ROUTES:
        ids = match_route(pattern, segments)
        if ids is None:
            continue
        if route_method == ("GET" if method == "HEAD" else method):
            return name, ids
        allowed.append(route_method)
    if allowed:
        raise HttpError(405, f"method {method} not allowed here", {"Allow": ", ".join(allowed)})
    raise HttpError(404, "no such path")


def match_route(pattern: tuple[str, ...], segments: list[str]) -> list[str] | None:
    if len(pattern) != len(segments):
        return None
    ids = []
    for want, got in zip(pattern, segments, strict=True):
        if want == "{}":
            ids.append(got)
        elif want != got:
            return None
    return ids


def page_args(query: str) -> tuple[int, int]:
    params = parse_qs(query, keep_blank_values=True)

    def number(name: str, default: int) -> int:
        values = params.get(name)
        if not values:
            return default
        try:
            value = int(values[-1])
        except ValueError:
            raise HttpError(400, f"{name} must be a positive integer") from None
        if value < 1:
            raise HttpError(400, f"{name} must be a positive integer")
        return value

    page, per_page = number("page", 1), number("per_page", DEFAULT_PER_PAGE)
    if per_page > MAX_PER_PAGE:
        raise HttpError(400, f"per_page limit is {MAX_PER_PAGE}")
    return page, per_page


def envelope(
    key: str, items: list[Any], total: int, page: int, per_page: int, url: str = ""
) -> dict[str, Any]:
    """A list page as the real API shapes it: `next_page`/`previous_page` are full URLs
    (`url` is the list's own URL, without query), null at either end."""
    total_pages = math.ceil(total / per_page)

    def at(n: int) -> str:
        return f"{url}?{urlencode({'page': n, 'per_page': per_page})}"

    return {
        key: items,
        "page": page,
        "per_page": per_page,
        "total_entries": total,
        "total_pages": total_pages,
        "next_page": at(page + 1) if page < total_pages else None,
        "previous_page": at(page - 1) if page > 1 else None,
    }


def envelope_json(
    key: str, items: str, total: int, page: int, per_page: int, url: str = ""
) -> bytes:
    """`envelope` encoded, for items that are JSON text already (an array)."""
    rest = envelope(key, [], total, page, per_page, url)
    del rest[key]
    return f'{{"{key}":{items},{json.dumps(rest, separators=(",", ":"))[1:]}'.encode()
