"""Walking a provider's paged lists without trusting its counts (the `ctm` provider).

`total_pages`/`total_entries` only say how many pages to ask for ahead (a window of
requests in flight); a list ends at a short or empty page, at `total_entries`, or at its
last page once no `next_page` follows it, and goes on while full pages with a `next_page`
keep coming. A list of more than MAX_PAGES pages is refused with one line.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import ProviderError
from reconciler.providers import wire

PER_PAGE = wire.MAX_PER_PAGE
MAX_PAGES = 1000  # per list: 150,000 accounts, or numbers of one account


@dataclass(frozen=True)
class Page:
    """One decoded page of a list, with what it claims about the rest of the list."""

    items: list[Any]  # LiveNumber objects (numbers) or wire dicts (accounts)
    claimed: int  # pages the provider says the list has
    full: bool  # as many items as a page holds: there may be more
    more: bool  # `next_page` names a further page
    entries: int | None  # `total_entries`, if given


@dataclass
class PagedList:
    """A list being walked: how far it is asked for and whether it has ended."""

    path: str
    claimed: int
    pages: list[Page] = field(default_factory=list)
    got: int = 0
    next: int = 2  # the next page to ask for
    gone: bool = False  # a later page 404'd: the account went away meanwhile
    done: bool = False

    def add(self, page: Page, n: int) -> None:
        self.pages.append(page)
        self.got += len(page.items)
        if not page.full or (page.entries is not None and self.got >= page.entries):
            self.done = True
        elif n >= self.claimed:
            if not page.more:
                self.done = True
            elif n >= MAX_PAGES:
                raise too_many(self.path)
            else:
                self.claimed = n + 1  # full pages keep coming: follow them


def parse_page(data: dict, path: str, items: list[Any], count: int) -> Page:
    """A decoded page with what it claims about its list, checked: counts are whole numbers
    >= 0, and a list of more than MAX_PAGES pages is refused before a page of it is queued.
    `count` is how many items the page held (`items` may be converted from them)."""
    counts = {}
    for key in ("total_pages", "total_entries", "per_page"):
        value = data.get(key)
        if value is not None and (type(value) is not int or value < 0):
            raise ProviderError(f"ctm: GET {path}: malformed response: bad {key}")
        counts[key] = value
    size = counts["per_page"] or PER_PAGE
    try:
        more = wire.next_page_number(data.get("next_page")) is not None
    except ProviderError as exc:
        raise ProviderError(f"ctm: GET {path}: {exc}") from None
    claimed = counts["total_pages"]
    if claimed is None:
        entries = counts["total_entries"]
        claimed = math.ceil(entries / size) if entries is not None else (2 if more else 1)
    if claimed > MAX_PAGES:
        raise too_many(path, claimed)
    return Page(items, claimed, count >= min(size, PER_PAGE), more, counts["total_entries"])


def too_many(path: str, claimed: int | None = None) -> ProviderError:
    said = f"claims {claimed} pages" if claimed is not None else "keeps naming a next page"
    return ProviderError(
        f"ctm: GET {path}: the provider {said}, more than the {MAX_PAGES} pages "
        f"({MAX_PAGES * PER_PAGE:,} entries) this client reads of one list"
    )


class Walker:
    """Fetches the remaining pages of several lists, at most `window` requests ahead, and
    decodes them in order as they arrive; a list stops as soon as it has ended, and is
    then handed to `on_done` (by key)."""

    def __init__(
        self,
        lists: dict[str, PagedList],
        fetch: Callable[[str, int], Future[Any]],
        decode: Callable[[str, Any], Page | None],
        window: int,
        on_done: Callable[[str], None] = lambda key: None,
    ) -> None:
        self.lists, self.fetch, self.decode, self.window = lists, fetch, decode, window
        self.on_done = on_done
        self.todo = deque(k for k, lst in lists.items() if not lst.done)
        self.inflight: deque[tuple[str, int, Future[Any]]] = deque()
        self._submit()

    def _submit(self) -> None:
        while self.todo and len(self.inflight) < self.window:
            key = self.todo[0]
            lst = self.lists[key]
            if lst.done or lst.next > lst.claimed:
                self.todo.popleft()
                continue
            self.inflight.append((key, lst.next, self.fetch(key, lst.next)))
            lst.next += 1

    def run(self) -> dict[str, PagedList]:
        try:
            while self.inflight:
                key, n, future = self.inflight.popleft()
                lst = self.lists[key]
                if lst.done:
                    future.cancel()
                else:
                    page = self.decode(key, future.result())
                    if page is None:
                        lst.gone = lst.done = True
                    else:
                        was = lst.claimed
                        lst.add(page, n)
                        if lst.claimed > was:
                            self.todo.append(key)
                    if lst.done:
                        self.on_done(key)
                self._submit()
        except BaseException:
            for _, _, future in self.inflight:
                future.cancel()
            raise
        return self.lists
