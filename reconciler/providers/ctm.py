"""The `ctm` provider: the provider's REST API (SPEC §7 wire API) as live state.

This module knows CTM's paths, its paging and its objects; the HTTP underneath (pool,
deadlines, retries, rate limit, size limits, redaction) is `transport.py`.

- **Minimal reads.** One account: ``GET /accounts/{id}``. Several: ``GET /accounts`` page 1
  (150 per page) and then whichever is cheaper for the ids it did not contain: the remaining
  list pages or one GET per remaining id (so the cost is at most one more request than the
  cheaper of the two). Numbers: ``GET /accounts/{id}/numbers`` page 1 for every account,
  then the remaining pages, each stage concurrently (``concurrency`` threads). Never one
  request per number. ``prefetch`` starts an account's first page before ``read`` is
  called (the engine does so while the config loads) without ever adding a request for
  an account ``read`` is then asked for. Workers only fetch; pages are decoded by the
  thread that reads.
- **Paging trusts no count** (`paging.py`). ``total_pages``/``total_entries`` only say how many pages
  to ask for ahead (at most ``2 × concurrency`` in flight); a list ends at a short or empty
  page, at ``total_entries``, or at its last page once no ``next_page`` follows it, and
  goes on while full pages with a ``next_page`` keep coming. A list of more than
  :data:`MAX_PAGES` pages (150,000 entries) fails the read with one line instead of being
  queued.
- **Progress**: ``read`` advances a :class:`~reconciler.progress.Progress` as each
  account's list ends, and logs one ``-v`` line: accounts, numbers, requests, retries, time.
- **Writes** build their request with :mod:`reconciler.providers.wire` (the one place the
  write mapping lives) and POST it. Honesty note: the stop/allow/pause writes are not in the
  provider's public documentation; the mapping follows SPEC §7's wire API, so every write is
  checked against the object its response returns ("write not applied" otherwise) and an
  apply verifies the whole result with one bulk re-read.
- **Every id the provider sends** is checked (`wire.check_id`) and percent-encoded as one
  path segment before it is used in a URL; an answer for another account than the one
  asked for is refused. Every error leaving a public method passes through redaction once
  more.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import quote

from reconciler.errors import ProviderError, ProviderNotFound
from reconciler.models import ListedAccount, LiveAccount, LiveNumber, LiveState, ProviderSettings
from reconciler.progress import Cost, Progress, read_line
from reconciler.providers import wire
from reconciler.providers.base import NumberField, Provider
from reconciler.providers.paging import (
    MAX_PAGES,
    PER_PAGE,
    Page,
    PagedList,
    Walker,
    parse_page,
)
from reconciler.providers.transport import (
    Response,
    RetryPolicy,
    TokenBucket,
    one_line,
    transport_for,
)

__all__ = ["MAX_PAGES", "CtmProvider", "RetryPolicy", "TokenBucket"]

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

ACCOUNT_STATUSES = ("active", "paused", "stopped")
NUMBER_VALUES = {"calls": ("allowed", "stopped"), "swapping": ("active", "paused")}


def _seg(value: str) -> str:
    """An id as one URL path segment ("../x" cannot escape its place)."""
    return quote(str(value), safe="")


def _paging(page: int) -> dict[str, int]:
    return {"page": page, "per_page": PER_PAGE}


def _results(futures: list[Future[R]]) -> list[R]:
    """The futures' results in order; the first failure cancels the rest."""
    try:
        return [f.result() for f in futures]
    except BaseException:
        for f in futures:
            f.cancel()
        raise


def _redacting(method: Callable[..., T]) -> Callable[..., T]:
    """Last line of defence: no ProviderError leaves a public method with a secret in it."""

    @functools.wraps(method)
    def wrapper(self: CtmProvider, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except ProviderError as exc:
            clean = self._redact(str(exc))
            if clean == str(exc):
                raise
            raise type(exc)(clean) from None

    return wrapper


class CtmProvider(Provider):
    """Reads and writes accounts and numbers over the provider's REST API (see module doc)."""

    kind = "ctm"

    def __init__(
        self,
        settings: ProviderSettings,
        environ: Mapping[str, str] | None = None,
        *,
        retry: RetryPolicy | None = None,
        burst: int | None = None,
    ) -> None:
        rps = settings.requests_per_second
        self.burst = burst if burst is not None else max(1, int(rps // 10))
        self.concurrency = settings.concurrency
        self._http = transport_for(
            settings,
            {} if environ is None else environ,
            retry=retry,
            burst=self.burst,
            reason_of=wire.error_reason,
        )
        self.timeout = settings.timeout_seconds
        self.retry_policy = self._http.retry_policy
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # `concurrency` threads, made on first use
        # Reads started by `prefetch` for the next `read`: each account's first numbers page
        # (in flight or not yet decoded; decoded, in `_ready`), page 1 of the account list,
        # and the accounts whose page has arrived since `prefetch` last looked.
        self._early: dict[str, Future[Response | None]] = {}
        self._ready: dict[str, Page | None] = {}
        self._early_list: Future[Any] | None = None
        self._arrived: deque[str] = deque()
        self._cost: Cost | None = None

    @property
    def target(self) -> str:
        return self._http.base

    @property
    def requests_made(self) -> int:
        return self._http.requests_made

    @property
    def retries_made(self) -> int:
        return self._http.retries_made

    def abort(self) -> int:
        """Cut every request in flight now (a signal's grace ran out); return how many."""
        return self._http.abort()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            early, self._early, self._ready, self._early_list = self._early, {}, {}, None
        for future in early.values():
            future.cancel()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
            self._http.abort()  # reads nobody waits for any more (an interrupt, a failure)
            pool.shutdown(wait=True)
        self._http.close()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="ctm")
            return self._pool

    def _redact(self, text: str) -> str:
        return self._http.redact(text)

    # --- reads --------------------------------------------------------------------------

    def prefetch(self, account_id: str) -> None:
        """Start reading this account's first page of numbers now; `read` picks it up.

        Called while the config is still loading, so the waits on the network overlap the
        CPU work of parsing it. A prefetched account costs no extra request when `read` is
        then asked for it (an id the provider does not know costs one: its numbers 404).
        Once two accounts are announced, `read` is going to list accounts, so page 1 of the
        list starts too. Pages that have arrived meanwhile are decoded here, in the caller's
        thread, between its own steps: the workers stay free for requests, and `read`
        finds most pages ready.
        """
        account_id = str(account_id)
        pool = self._executor()
        with self._lock:
            if account_id in self._early or account_id in self._ready:
                return
            self._cost = self._cost or Cost(self)  # the read's -v line counts from here
            future = pool.submit(self._fetch_numbers, account_id, 1)
            self._early[account_id] = future
            if len(self._early) + len(self._ready) == 2:
                self._early_list = pool.submit(self._get, "/accounts", 1)
        future.add_done_callback(lambda _: self._arrived.append(account_id))
        arrived = []
        while self._arrived:
            arrived.append(self._arrived.popleft())
        self._decode_early(arrived, self._early, self._ready)

    def _decode_early(
        self,
        account_ids: Iterable[str],
        early: dict[str, Future[Response | None]],
        ready: dict[str, Page | None],
    ) -> None:
        """Decode these prefetched pages (waiting for them): from `early` into `ready`.

        A page that failed, or fails to decode, stays in `early`: `read` reports it where
        it would have without prefetching (after the account list, say).
        """
        for account_id in account_ids:
            future = early.get(account_id)
            if future is None or future.exception() is not None:
                continue
            try:
                ready[account_id] = self._numbers_of(account_id, future.result())
            except ProviderError:
                continue
            del early[account_id]

    @_redacting
    def read(self, account_ids: Sequence[str]) -> LiveState:
        wanted = list(dict.fromkeys(str(a) for a in account_ids))
        with self._lock:
            early, self._early = self._early, {}
            ready, self._ready = self._ready, {}
            early_list, self._early_list = self._early_list, None
            cost, self._cost = self._cost or Cost(self), None  # since the first prefetch
        try:
            if not wanted:
                return LiveState(accounts={})
            pool = self._executor()
            with Progress(len(wanted), retries=cost.retries) as progress:
                # The account lookups start first, so they queue in the pool alongside the
                # prefetched pages still in flight instead of being one more round trip
                # after them; the prefetched pages are decoded while they run.
                finding = self._start_finding(wanted, pool, early_list)
                self._decode_early(list(early), early, ready)
                found = finding()
                progress.advance(len(wanted) - len(found))
                gone = self._attach_numbers(list(found.values()), pool, early, ready, progress)
        finally:
            for future in early.values():  # announced, but not asked for or not found
                future.cancel()
        accounts = {a: found[a] for a in wanted if a in found and a not in gone}
        missing = [a for a in wanted if a not in accounts]
        log.info("%s from %s %s", read_line(accounts.values(), missing), self.target, cost)
        return LiveState(accounts=accounts, missing=missing)

    def _start_finding(
        self, wanted: list[str], pool: ThreadPoolExecutor, early_list: Future[Any] | None
    ) -> Callable[[], dict[str, LiveAccount]]:
        """Start finding the wanted accounts in the fewest requests; the function returned
        waits for them and gives the accounts the provider knows, by id.

        One account: its GET. Several: list page 1 (waited for here; prefetch started it),
        then the rest of the list or single GETs for the ids page 1 lacks, whichever costs
        less.
        """
        listed: dict[str, Any] = {}
        walker: Walker | None = None
        gets: dict[str, Future[Any]] = {}
        if len(wanted) == 1:
            gets = {a: pool.submit(self._get_account, a) for a in wanted}
        else:
            first = self._account_page(
                "/accounts", early_list.result() if early_list else self._get("/accounts", 1)
            )
            listed.update(first.items)
            rest = [a for a in wanted if a not in listed]
            accounts = PagedList("/accounts", first.claimed)
            accounts.add(first, 1)
            if rest and not accounts.done:
                if len(rest) < accounts.claimed - 1:
                    gets = {a: pool.submit(self._get_account, a) for a in rest}
                else:
                    walker = Walker(
                        {"/accounts": accounts},
                        lambda _key, n: pool.submit(self._get, "/accounts", n),
                        self._account_page,
                        2 * self.concurrency,
                    )

        def finish() -> dict[str, LiveAccount]:
            if walker is not None:
                for page in walker.run()["/accounts"].pages[1:]:
                    listed.update(page.items)
            for account_id, data in zip(gets, _results(list(gets.values())), strict=True):
                if data is not None:
                    got = data.get("id") if isinstance(data, dict) else None
                    if str(got) != account_id:
                        raise ProviderError(
                            f"ctm: GET /accounts/{account_id}: the provider answered for "
                            f"another account ({self._redact(str(got)[:40])!r})"
                        )
                    listed[account_id] = data
            convert = wire.account_from_wire
            return {
                a: self._convert("/accounts", convert, listed[a]) for a in wanted if a in listed
            }

        return finish

    def _get_account(self, account_id: str) -> Any:
        """GET /accounts/{id}: the wire dict, or None if the provider does not know it."""
        try:
            return self._get(f"/accounts/{_seg(account_id)}")
        except ProviderNotFound:
            return None

    def _account_page(self, path: str, data: Any) -> Page:
        """A page of the account list; its items are the wire dicts by id."""
        items = self._items(data, "accounts", path)
        try:
            by_id = [(str(item["id"]), item) for item in items]
        except (KeyError, TypeError):
            raise ProviderError(
                f"ctm: GET {path}: malformed response: account without id"
            ) from None
        return parse_page(data, path, by_id, len(items))

    def _attach_numbers(
        self,
        accounts: list[LiveAccount],
        pool: ThreadPoolExecutor,
        early: dict[str, Future[Response | None]],
        ready: dict[str, Page | None],
        progress: Progress,
    ) -> set:
        """Fill in every account's numbers; return the ids whose numbers 404 (gone).

        First pages of prefetched accounts are taken from `ready` (decoded) or `early` (in
        flight; removed from it). `progress` advances as each account's list ends.
        """
        lists: dict[str, PagedList] = {}
        gone: set[str] = set()

        def first(account_id: str, page: Page | None) -> None:
            if page is None:
                gone.add(account_id)
            else:
                lists[account_id] = PagedList(f"/accounts/{account_id}/numbers", page.claimed)
                lists[account_id].add(page, 1)
            if page is None or lists[account_id].done:
                progress.advance()

        self._firsts(
            [acc.id for acc in accounts],
            [
                ready[a.id]
                if a.id in ready
                else early.pop(a.id, None) or pool.submit(self._fetch_numbers, a.id, 1)
                for a in accounts
            ],
            first,
        )
        Walker(
            lists,
            lambda account_id, n: pool.submit(self._fetch_numbers, account_id, n),
            self._numbers_of,
            2 * self.concurrency,
            on_done=lambda _account_id: progress.advance(),
        ).run()
        for acc in accounts:
            lst = lists.get(acc.id)
            if lst is None:
                continue
            if lst.gone:
                gone.add(acc.id)
                continue
            seen: set[str] = set()
            for page in lst.pages:
                for number in page.items:
                    if number.id not in seen:  # a page boundary shifted: count once
                        seen.add(number.id)
                        acc.numbers.append(number)
        return gone

    def _fetch_numbers(self, account_id: str, page: int) -> Response | None:
        """One page of an account's numbers, not yet decoded; None if the account is gone.

        Runs in a worker thread. Decoding and converting the page (about a third of the CPU
        a page costs) is left to the thread that called `read`, so the worker is free for
        its next request sooner: with 8 requests in flight, a fleet read is then ~10%
        faster.
        """
        try:
            return self._http.exchange("GET", self._numbers_path(account_id), params=_paging(page))
        except ProviderNotFound:
            return None

    def _firsts(
        self,
        account_ids: list[str],
        sources: list[Future[Response | None] | Page | None],
        each: Callable[[str, Page | None], None],
    ) -> None:
        """Each account's first page, decoded here as it arrives, handed to `each` in order
        (a source that is not a future is a page decoded already); a failure cancels the
        rest."""
        try:
            for account_id, got in zip(account_ids, sources, strict=True):
                page = (
                    self._numbers_of(account_id, got.result()) if isinstance(got, Future) else got
                )
                each(account_id, page)
        except BaseException:
            for got in sources:
                if isinstance(got, Future):
                    got.cancel()
            raise

    def _numbers_of(self, account_id: str, resp: Response | None) -> Page | None:
        """A fetched numbers page decoded and converted (None stays None: gone)."""
        if resp is None:
            return None
        data = self._http.json("GET", self._numbers_path(account_id), resp)
        path = f"/accounts/{account_id}/numbers"
        items = self._items(data, "numbers", path)
        numbers = self._convert(path, wire.numbers_from_wire, items, account_id)
        return parse_page(data, path, numbers, len(items))

    @staticmethod
    def _numbers_path(account_id: str) -> str:
        return f"/accounts/{_seg(account_id)}/numbers"

    def _items(self, page: Any, key: str, path: str) -> list:
        items = page.get(key) if isinstance(page, dict) else None
        if not isinstance(items, list):
            raise ProviderError(f"ctm: GET {path}: malformed response: no {key!r} list")
        return items

    # --- writes -------------------------------------------------------------------------

    @_redacting
    def set_account_status(self, account_id: str, status: str) -> LiveAccount:
        if status not in ACCOUNT_STATUSES:
            raise ValueError(f"unknown account status {status!r}")
        path, body = wire.account_status_write(_seg(account_id), status)
        data = self._written(path, self._request("POST", path, body=body), "account")
        account = self._convert(path, wire.account_from_wire, data, method="POST")
        if account.id != str(account_id) or account.status != status:
            raise ProviderError(
                f"ctm: POST {path}: write not applied: the response shows account "
                f"{account.id} with status {account.status}, expected {status}"
            )
        return account

    @_redacting
    def set_number(
        self, account_id: str, number_id: str, field: NumberField, value: str
    ) -> LiveNumber:
        if value not in NUMBER_VALUES.get(field, ()):
            raise ValueError(f"cannot set number {field!r} to {value!r}")
        path, body = wire.number_write(_seg(account_id), _seg(number_id), field, value)
        data = self._written(path, self._request("POST", path, body=body), "number")
        number = self._convert(path, wire.number_from_wire, data, str(account_id), method="POST")
        now = getattr(number, field)
        if number.id != str(number_id) or now != value:
            raise ProviderError(
                f"ctm: POST {path}: write not applied: the response shows number "
                f"{number.id} with {field} {now}, expected {value}"
            )
        return number

    def _written(self, path: str, data: Any, key: str) -> Any:
        """The object of a write's `{"status": "success", key: {...}}` response."""
        if isinstance(data, dict) and data.get("status") == "error":
            reason = wire.error_reason(data)
            said = self._redact(one_line(reason)) if reason else "no reason given"
            raise ProviderError(f"ctm: POST {path}: the provider refused the write: {said}")
        if not isinstance(data, dict) or data.get("status") != "success" or key not in data:
            shape = sorted(map(str, data))[:5] if isinstance(data, dict) else type(data).__name__
            raise ProviderError(
                f"ctm: POST {path}: write not applied: expected "
                f'{{"status": "success", "{key}": ...}}, got {self._redact(str(shape))}'
            )
        return data[key]

    def _convert(self, path: str, fn: Callable[..., T], *args: Any, method: str = "GET") -> T:
        try:
            return fn(*args)
        except ProviderError as exc:
            raise ProviderError(f"ctm: {method} {path}: {self._redact(str(exc))}") from None

    def _get(self, path: str, page: int | None = None) -> Any:
        return self._request("GET", path, params=None if page is None else _paging(page))

    def _request(
        self, method: str, path: str, *, params: dict | None = None, body: dict | None = None
    ) -> Any:
        """One API call (with its retries); the decoded JSON body of a 2xx answer."""
        resp = self._http.exchange(method, path, params=params, body=body)
        return self._http.json(method, path, resp)

    # --- discovery (`reconciler accounts`, `import --all`) ------------------------------

    @_redacting
    def list_accounts(self, count_numbers: bool = True) -> list[ListedAccount]:
        """Every account the keys see, in the provider's order.

        Cost: the account list's pages, ceil(A/150) requests (at least one). With
        `count_numbers`, one more per account: page 1 of its numbers, whose
        `total_entries` is the count (`concurrency` at a time). Only an account whose first
        page is full and gives no `total_entries` costs its further pages. Numbers are
        counted, never converted: a number the mapping could not read does not stop a
        listing.
        """
        pool = self._executor()
        first = self._account_page("/accounts", self._get("/accounts", 1))
        walked = PagedList("/accounts", first.claimed)
        walked.add(first, 1)
        Walker(
            {"/accounts": walked},
            lambda _key, n: pool.submit(self._get, "/accounts", n),
            self._account_page,
            2 * self.concurrency,
        ).run()
        by_id: dict[str, Any] = {}
        for page in walked.pages:
            for account_id, data in page.items:
                by_id.setdefault(account_id, data)  # a page boundary shifted: list once
        listed = [
            self._convert("/accounts", wire.listed_from_wire, data) for data in by_id.values()
        ]
        if not count_numbers:
            return listed
        counts = self._count_numbers([acc.id for acc in listed], pool)
        # an account whose numbers 404 went away since the list was read: not live any more
        return [
            ListedAccount(acc.id, acc.name, acc.status, counts[acc.id])
            for acc in listed
            if acc.id in counts
        ]

    def _count_numbers(self, account_ids: list[str], pool: ThreadPoolExecutor) -> dict[str, int]:
        """Each account's number count from its first numbers page (see `list_accounts`);
        accounts that 404 are left out."""
        firsts = _results([pool.submit(self._count_page, a, 1) for a in account_ids])
        counts: dict[str, int] = {}
        lists: dict[str, PagedList] = {}
        for account_id, first in zip(account_ids, firsts, strict=True):
            if first is None:
                continue
            if not first.full:
                counts[account_id] = len(first.items)
            elif first.entries is not None:
                counts[account_id] = max(first.entries, len(first.items))
            else:
                lists[account_id] = PagedList(f"/accounts/{account_id}/numbers", first.claimed)
                lists[account_id].add(first, 1)
        Walker(
            lists,
            lambda account_id, n: pool.submit(self._count_page, account_id, n),
            lambda _account_id, page: page,
            2 * self.concurrency,
        ).run()
        for account_id, lst in lists.items():
            if not lst.gone:
                counts[account_id] = len({str(i) for page in lst.pages for i in page.items})
        return counts

    def _count_page(self, account_id: str, n: int) -> Page | None:
        """Page `n` of an account's numbers with only their ids (None: the account is gone)."""
        try:
            data = self._get(self._numbers_path(account_id), n)
        except ProviderNotFound:
            return None
        path = f"/accounts/{account_id}/numbers"
        items = self._items(data, "numbers", path)
        ids = [item.get("id") if isinstance(item, dict) else None for item in items]
        return parse_page(data, path, ids, len(items))
