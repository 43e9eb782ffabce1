"""The embedded sandbox provider: the Provider contract directly on the SQLite store.

No HTTP: reads are two SQL queries whatever the number of accounts, and rows become
LiveAccount / LiveNumber objects without going through wire dicts (100,000 numbers read in
a fraction of a second). Writes go through the same wire mapping as the HTTP client
(`providers/wire.py`), so the sandbox exercises the mapping the real provider relies on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from reconciler.errors import ProviderError
from reconciler.models import ListedAccount, LiveAccount, LiveNumber, LiveState
from reconciler.phone import E164_SHAPE as _E164_SHAPE
from reconciler.phone import live_e164
from reconciler.progress import Cost, Progress, read_line
from reconciler.providers.base import NumberField, Provider
from reconciler.providers.sandbox.store import Row, SandboxStore
from reconciler.providers.wire import account_from_wire, number_from_wire, number_write

log = logging.getLogger(__name__)


class SandboxProvider(Provider):
    """Live state in a local SQLite database (see `store.py`)."""

    kind = "sandbox"

    def __init__(self, db_path: Path, seed: Path | None = None) -> None:
        self.db_path = Path(db_path)
        if not self.db_path.exists():
            self._seed_database(seed)
        self.store = SandboxStore(self.db_path)

    def _seed_database(self, seed: Path | None) -> None:
        from reconciler.providers.sandbox.fleet import init_database

        if seed is None or not Path(seed).exists():
            seed_hint = f" (the seed file {seed} does not exist either)" if seed else ""
            raise ProviderError(
                f"{self.db_path}: no sandbox database{seed_hint}; create it with "
                f"`reconciler sandbox init --db {self.db_path} --from FLEET.yaml`"
            )
        init_database(self.db_path, seed)

    @property
    def target(self) -> str:
        return str(self.db_path)

    def read(self, account_ids: Sequence[str]) -> LiveState:
        wanted = list(dict.fromkeys(str(a) for a in account_ids))
        cost = Cost(self)
        with Progress(len(wanted)) as progress:  # two queries: all accounts finish at once
            account_rows, number_rows = self.store.bulk_rows(wanted)
            accounts = {row[0]: _live_account(row) for row in account_rows}
            money: dict[str | None, Decimal | None] = {None: None}
            times: dict[str | None, datetime | None] = {None: None}
            for row in number_rows:
                accounts[row[1]].numbers.append(_live_number(row, money, times))
            progress.advance(len(wanted))
        ordered = {a: accounts[a] for a in wanted if a in accounts}
        missing = [a for a in wanted if a not in accounts]
        log.info("%s from %s %s", read_line(ordered.values(), missing), self.target, cost)
        return LiveState(ordered, missing=missing)

    def list_accounts(self, count_numbers: bool = True) -> list[ListedAccount]:
        """One SQL query; the counts come with it, so they cost nothing extra."""
        return [
            ListedAccount(row[0], row[1], row[2], row[3] if count_numbers else None)
            for row in self.store.account_summaries()
        ]

    def set_account_status(self, account_id: str, status: str) -> LiveAccount:
        return account_from_wire(self.store.set_account_status(str(account_id), status, "direct"))

    def set_number(
        self, account_id: str, number_id: str, field: NumberField, value: str
    ) -> LiveNumber:
        allowed = {"calls": ("allowed", "stopped"), "swapping": ("active", "paused")}
        if value not in allowed.get(field, ()):
            raise ProviderError(f"cannot set {field} to {value!r}")
        _, body = number_write(str(account_id), str(number_id), field, value)
        wire = self.store.update_number(str(account_id), str(number_id), **body, via="direct")
        return number_from_wire(wire)

    def close(self) -> None:
        self.store.close()


def _live_account(row: Row) -> LiveAccount:
    return LiveAccount(
        id=row[0],
        name=row[2],
        status=row[3],
        monthly_fee=Decimal(row[4]) if row[4] is not None else None,
        updated=_time(row[5]),
    )


def _live_number(
    row: Row,
    money: dict[str | None, Decimal | None],
    times: dict[str | None, datetime | None],
) -> LiveNumber:
    # Fees and times repeat a lot across 100,000 rows: parse each distinct string once.
    fee = money.get(row[9], ...)
    if fee is ...:
        fee = money[row[9]] = Decimal(row[9])
    changed = times.get(row[11], ...)
    if changed is ...:
        changed = times[row[11]] = _time(row[11])
    updated = times.get(row[12], ...)
    if updated is ...:
        updated = times[row[12]] = _time(row[12])
    number = row[2] if _E164_SHAPE.fullmatch(row[2]) else live_e164(row[2])
    if number is None:
        raise ProviderError(f"sandbox database: number {row[2][:40]!r} is not a phone number")
    return LiveNumber(
        row[0],
        row[1],
        number,
        "allowed" if row[5] else "stopped",
        "paused" if row[6] else "active",
        bool(row[8]),
        row[4],
        row[3],
        row[7],
        fee,  # type: ignore[arg-type]
        row[10],
        changed,  # type: ignore[arg-type]
        updated,  # type: ignore[arg-type]
    )


def _time(value: str | None) -> datetime | None:
    # fromisoformat reads "Z" only from Python 3.11 on.
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
