"""The ctm provider against the sandbox HTTP server on 127.0.0.1: reads, writes, faults.

Request counts are exact: the server's own counters must show the minimum the wire API
allows. No mock of the HTTP layer; fault injection is the server's.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import ProviderAuthError, ProviderError, ProviderNotFound
from reconciler.errors import ProviderTransientError as Transient
from reconciler.models import ProviderSettings
from reconciler.providers.ctm import CtmProvider, RetryPolicy
from reconciler.providers.sandbox.create import create_database
from reconciler.providers.sandbox.fleet import parse_fleet
from reconciler.providers.sandbox.generate import generate_database
from reconciler.providers.sandbox.server import RunningServer, start_server

ACCESS, SECRET = "test-access", "test-secret"
ENV = {"CTM_ACCESS_KEY": ACCESS, "CTM_SECRET_KEY": SECRET}
FAST = RetryPolicy(backoff_factor=0.01, backoff_max=0.05, backoff_jitter=0.01, budget_seconds=20)


def fleet_db(path: Path, counts: list[int], online: bool = True) -> Path:
    """Accounts 1001, 1002, ... with counts[i] numbers each (numbers' ids are generated)."""
    accounts = []
    for i, count in enumerate(counts):
        numbers = [
            {
                "number": f"+1{4100000000 + i * 100000 + k}",
                "active": True,
                "paused": False,
                "source": {"name": "Website" if online else "Billboard", "online": online},
                "stats": {"renewal_costs": "3.00", "calls": k % 7},
            }
            for k in range(count)
        ]
        accounts.append({"id": 1001 + i, "name": f"Account {i}", "numbers": numbers})
    fleet = parse_fleet({"accounts": accounts}, "test fleet")
    create_database(path, fleet.accounts, fleet.numbers)
    return path


def settings(url: str, **kw: Any) -> ProviderSettings:
    values = {"type": "ctm", "base_url": url, "requests_per_second": 1000, "timeout_seconds": 5}
    return ProviderSettings(**{**values, **kw})


@contextmanager
def ctm(
    db: Path, server_kw: dict[str, Any] | None = None, retry: RetryPolicy = FAST, **kw: Any
) -> Iterator[tuple[CtmProvider, RunningServer]]:
    """A sandbox server over `db` and a CtmProvider pointed at it."""
    with (
        start_server(db, access_key=ACCESS, secret_key=SECRET, **(server_kw or {})) as server,
        CtmProvider(settings(server.url, **kw), ENV, retry=retry) as provider,
    ):
        yield provider, server


# --- minimal reads ------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 150, 151, 1000])
def test_numbers_are_paged_with_the_fewest_requests(tmp_path: Path, count: int) -> None:
    db = fleet_db(tmp_path / "s.db", [count])
    with ctm(db) as (provider, server):
        state = provider.read(["1001"])
        stats = server.stats.snapshot()
    expected = 1 + max(1, math.ceil(count / 150))  # GET /accounts/1001 + number pages
    assert provider.requests_made == expected
    assert stats["total"] == expected and provider.retries_made == 0
    numbers = state.accounts["1001"].numbers
    assert len(numbers) == count == len({n.id for n in numbers})
    assert {n.number for n in numbers} == {f"+1{4100000000 + k}" for k in range(count)}
    assert state.missing == []


def test_live_state_is_mapped_from_the_wire(sandbox_db: Path) -> None:
    with ctm(sandbox_db) as (provider, _):
        state = provider.read(["1001", "1002", "1003"])
    acme = state.accounts["1001"]
    assert (acme.name, acme.status, str(acme.monthly_fee)) == ("Acme Dental", "active", "49.00")
    by_number = {n.number: n for n in acme.numbers}
    main, mail = by_number["+14105550101"], by_number["+14105550102"]
    assert (main.calls, main.swapping, main.online, main.recent_calls) == (
        "allowed", "active", True, 212,
    )  # fmt: skip
    assert (mail.calls, mail.online, str(mail.renewal_fee)) == ("stopped", False, "3.00")
    assert state.accounts["1002"].numbers[0].swapping == "paused"
    assert state.accounts["1003"].status == "stopped" and state.accounts["1003"].numbers == []
    assert provider.requests_made == 1 + 3  # one list page, one numbers page each


@pytest.mark.parametrize(
    ("wanted", "requests"),
    [
        # 460 accounts = 4 list pages of 150. Page 1 holds 1001-1150.
        (["1001", "1002"], 1 + 2),  # everything on page 1: no more list pages
        (["1001", "1451", "1452"], 1 + 2 + 3),  # 2 left < 3 pages left: two single GETs
        (["1001", "1151", "1301", "1451"], 1 + 3 + 4),  # 3 left, 3 pages: list them
        (["1460"], 1 + 1),  # one account: GET /accounts/1460 directly
        ([str(1001 + i) for i in range(460)], 4 + 460),
    ],
)
def test_accounts_are_found_with_the_fewest_requests(
    tmp_path: Path, wanted: list[str], requests: int
) -> None:
    db = tmp_path / "big.db"
    generate_database(db, 460, 1, seed=3)
    with ctm(db, concurrency=16) as (provider, server):
        state = provider.read(wanted)
        total = server.stats.snapshot()["total"]
    assert list(state.accounts) == wanted and state.missing == []
    assert all(len(a.numbers) == 1 for a in state.accounts.values())
    assert provider.requests_made == total == requests


def test_unknown_accounts_are_missing_not_errors(sandbox_db: Path) -> None:
    with ctm(sandbox_db) as (provider, _):
        alone = provider.read(["999999"])
        mixed = provider.read(["1001", "424242", "1001"])
    assert alone.accounts == {} and alone.missing == ["999999"]
    assert list(mixed.accounts) == ["1001"] and mixed.missing == ["424242"]
    assert provider.read([]).accounts == {}
    assert provider.requests_made == 1 + 2  # nothing for an empty read


@pytest.mark.parametrize("count", [1, 151])
def test_prefetch_gives_the_same_read_with_the_same_requests(tmp_path: Path, count: int) -> None:
    db = fleet_db(tmp_path / "s.db", [count, 2, 0])
    ids = ["1001", "1002", "1003"]
    with ctm(db) as (provider, server):
        plain = provider.read(ids)
        plain_requests = server.stats.snapshot()["total"]
        server.reset_stats()
        for account_id in ids:  # as the engine does while the config loads
            provider.prefetch(account_id)
        ahead = provider.read(ids)
        assert server.stats.snapshot()["total"] == plain_requests == 1 + 1 + count // 150 + 2
    assert ahead == plain


def test_prefetch_is_used_once_and_only_for_what_is_read(sandbox_db: Path) -> None:
    with ctm(sandbox_db) as (provider, server):
        for account_id in ("1001", "424242", "1002"):
            provider.prefetch(account_id)
        state = provider.read(["1001", "424242"])  # 1002 announced but not asked for
        assert list(state.accounts) == ["1001"] and state.missing == ["424242"]
        server.store.update_number("1001", state.accounts["1001"].numbers[0].id, active=False,
                                   via="direct")  # fmt: skip
        again = provider.read(["1001", "1002"])  # reads live again: nothing stale is reused
        provider.prefetch("1003")
    assert again.accounts["1001"].numbers[0].calls == "stopped"
    assert list(again.accounts) == ["1001", "1002"]


def test_accounts_are_read_concurrently(tmp_path: Path) -> None:
    db = fleet_db(tmp_path / "s.db", [1] * 8)
    ids = [str(1001 + i) for i in range(8)]
    timings = {}
    for concurrency in (8, 1):
        with ctm(db, {"latency_ms": 100}, concurrency=concurrency) as (provider, _):
            started = time.monotonic()
            assert len(provider.read(ids).accounts) == 8
            timings[concurrency] = time.monotonic() - started
    assert timings[8] < 0.5  # list page + 8 numbers pages in parallel: ~0.2 s
    assert timings[1] > 0.85  # the same, one at a time: ~0.9 s


def test_every_request_is_logged_without_secrets(
    sandbox_db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with ctm(sandbox_db) as (provider, _):
        provider.read(["1001", "1002"])
    lines = [r.getMessage() for r in caplog.records if r.name == "reconciler.providers.ctm"]
    assert any(
        line.startswith("request: method=GET path=/accounts page=1 status=200 ms=")
        for line in lines
    )
    assert len([line for line in lines if line.startswith("request: ")]) == 3
    assert lines[-1].startswith("read 2 accounts, 3 numbers from http://127.0.0.1:")  # -v line
    assert SECRET not in caplog.text and "dGVzdC1hY2Nlc3M6dGVzdC1zZWNyZXQ" not in caplog.text


# --- auth -----------------------------------------------------------------------------------


def test_wrong_keys_are_one_clear_line(sandbox_db: Path) -> None:
    with start_server(sandbox_db, access_key=ACCESS, secret_key="other") as server:
        provider = CtmProvider(settings(server.url), ENV, retry=FAST)
        with pytest.raises(ProviderAuthError) as err:
            provider.read(["1001"])
        assert server.stats.snapshot()["total"] == 1  # a 401 is not retried
    assert str(err.value) == (
        "ctm: GET /accounts/1001: 401 Unauthorized: check CTM_ACCESS_KEY and CTM_SECRET_KEY"
    )


# --- writes ---------------------------------------------------------------------------------


def test_writes_are_applied_checked_and_audited_once(sandbox_db: Path) -> None:
    with ctm(sandbox_db) as (provider, server):
        account = provider.set_account_status("1002", "stopped")
        stopped = provider.set_number("1001", "TPN1001A", "calls", "stopped")
        paused = provider.set_number("1001", "TPN1001A", "swapping", "paused")
        again = provider.set_number("1001", "TPN1001A", "swapping", "paused")  # idempotent
        allowed = provider.set_number("1001", "TPN1001B", "calls", "allowed")
        writes = server.stats.snapshot()["total"]
        audit = server.store.audit()
    assert (account.id, account.status) == ("1002", "stopped")
    assert (stopped.calls, paused.swapping, again.swapping) == ("stopped", "paused", "paused")
    assert allowed.calls == "allowed" and allowed.account_id == "1001"
    assert writes == provider.requests_made == 5  # no GET after a write
    assert [(a["resource"], a["field"], a["to"]) for a in audit] == [
        ("account.1002", "status", "stopped"),
        ("number.+14105550101", "active", "false"),
        ("number.+14105550101", "paused", "true"),
        ("number.+14105550102", "active", "true"),
    ]


def test_write_errors_carry_the_servers_reason(sandbox_db: Path) -> None:
    with ctm(sandbox_db) as (provider, _):
        with pytest.raises(ProviderNotFound, match=r"^ctm: POST /accounts/4242/status: 404 "):
            provider.set_account_status("4242", "stopped")
        with pytest.raises(ProviderNotFound, match="404 Not Found: "):
            provider.set_number("1001", "TPNNOPE", "calls", "stopped")
        with pytest.raises(ProviderError, match=r": 409 Conflict: number \+14105550102 cannot"):
            provider.set_number("1001", "TPN1001B", "swapping", "paused")  # offline source
        with pytest.raises(ValueError, match="cannot set number"):
            provider.set_number("1001", "TPN1001B", "calls", "paused")


# --- faults: every flag alone and combined; reads and writes still converge -------------------

FAULTS = {  # seeded (rng_seed 5 unless given): the random faults fire the same way every run
    "error_rate": {"error_rate": 0.2},
    "drop_rate": {"drop_rate": 0.4, "rng_seed": 7},
    "rate_limit": {"rate_limit": 8},
    "latency": {"latency_ms": 30},
    "all": {"error_rate": 0.1, "drop_rate": 0.3, "rate_limit": 10, "latency_ms": 10},
}
FIRED = {"error_rate": "error", "drop_rate": "drop", "rate_limit": "rate_limit",
         "latency_ms": "latency"}  # fmt: skip


@pytest.mark.parametrize("faults", FAULTS.values(), ids=FAULTS.keys())
def test_reads_and_writes_converge_under_faults(tmp_path: Path, faults: dict) -> None:
    db = fleet_db(tmp_path / "s.db", [160, 3, 2])
    ids = ["1001", "1002", "1003"]
    with ctm(db, {"rng_seed": 5, **faults}, concurrency=4) as (provider, server):
        before = provider.read(ids)
        targets = [n for acc in before.accounts.values() for n in acc.numbers][::40]
        for number in targets:
            provider.set_number(number.account_id, number.id, "calls", "stopped")
        provider.set_account_status("1003", "paused")
        after = provider.read(ids)
        audit = server.store.audit()
        stats = server.stats.snapshot()
    assert sum(len(a.numbers) for a in before.accounts.values()) == 165
    stopped = {n.number for a in after.accounts.values() for n in a.numbers if n.calls == "stopped"}
    assert stopped == {n.number for n in targets}
    assert after.accounts["1003"].status == "paused"
    # exactly one audit row per changed field, retries and dropped responses included
    assert sorted(a["resource"] for a in audit) == sorted(
        ["account.1003"] + [f"number.{n.number}" for n in targets]
    )
    for flag in set(faults) - {"rng_seed"}:
        if flag != "rate_limit" or len(faults) == 1:  # (the rate limit depends on timing)
            assert stats["faults"].get(FIRED[flag], 0) > 0, f"the {flag} fault never fired"
    refused = sum(stats["faults"].get(k, 0) for k in ("error", "drop", "rate_limit"))
    assert provider.retries_made == refused  # every refusal was retried, nothing else


def test_a_dropped_write_response_is_retried_and_applied_once(tmp_path: Path) -> None:
    db = fleet_db(tmp_path / "s.db", [12])
    with ctm(db, {"drop_rate": 0.5, "rng_seed": 11}) as (provider, server):
        numbers = provider.read(["1001"]).accounts["1001"].numbers
        for number in numbers:
            assert provider.set_number("1001", number.id, "calls", "stopped").calls == "stopped"
        audit = server.store.audit()
        drops = server.stats.snapshot()["faults"].get("drop", 0)
    assert drops >= 3  # the write committed, the response was lost, the retry saw it done
    assert provider.retries_made == drops
    assert sorted(a["resource"] for a in audit) == sorted(f"number.{n.number}" for n in numbers)
    assert all((a["field"], a["from"], a["to"]) == ("active", "true", "false") for a in audit)


def test_a_429_storm_is_ridden_out_honouring_retry_after(tmp_path: Path) -> None:
    """Client allowed 1000/s against a server limit of 15/s: 429s with Retry-After: 1."""
    db = fleet_db(tmp_path / "s.db", [1] * 24)
    ids = [str(1001 + i) for i in range(24)]
    started = time.monotonic()
    with ctm(db, {"rate_limit": 15}, concurrency=8) as (provider, server):
        state = provider.read(ids)
        stats = server.stats.snapshot()
    elapsed = time.monotonic() - started
    assert len(state.accounts) == 24 and state.missing == []
    limited = stats["by_status"].get(429, 0)
    assert limited > 0 and provider.retries_made == limited
    assert elapsed >= 0.9  # 25 requests at 15/s with a full bucket of 15: at least one wait
    # One refill window: at most one refusal per thread (those already in flight); the
    # shared pause on Retry-After keeps new attempts back (measured: 3-4 with it, 8 without)
    assert limited <= 8


def test_matching_rates_sustain_100_rps_without_429s(tmp_path: Path) -> None:
    """Client and server both at 100 requests/s: ~130 requests, no 429, ~100/s achieved."""
    db = fleet_db(tmp_path / "s.db", [1] * 129)
    ids = [str(1001 + i) for i in range(129)]
    with ctm(db, {"rate_limit": 100}, requests_per_second=100, concurrency=8) as (provider, srv):
        srv.store.counts()
        started = time.monotonic()
        state = provider.read(ids)
        elapsed = time.monotonic() - started
        stats = srv.stats.snapshot()
    assert len(state.accounts) == 129
    assert stats["by_status"].get(429, 0) == 0 and provider.retries_made == 0
    assert provider.requests_made == 1 + 129
    rate = provider.requests_made / elapsed
    assert 80 <= rate <= 115  # the bucket allows a burst of 10 on top of 100/s


def test_a_timeout_is_a_clear_error(sandbox_db: Path) -> None:
    policy = RetryPolicy(retries=1, backoff_factor=0.01, backoff_jitter=0)
    with (
        ctm(sandbox_db, {"latency_ms": 600}, retry=policy, timeout_seconds=0.15) as (p, _),
        pytest.raises(Transient) as err,
    ):
        p.read(["1001"])
    assert str(err.value) == (
        "ctm: GET /accounts/1001: no complete response within 0.15 s (timeout_seconds) (after 2 attempts)"
    )
