"""The sandbox fleet file: the SPEC §7 wire shape in YAML or JSON.

    {"accounts": [Account + {"numbers": [Number]}]}

`load_fleet` validates a file into store rows: strict on types, enums, E.164 numbers, money,
times and duplicates (each problem is one line naming the file and the entry), lenient on
keys it does not know (they are ignored). Omitted ids are generated: accounts get
sequential integers after the highest integer id in the file (1001 for a fresh fleet),
numbers get "TPN" + 20 hex digits derived from the phone number, so the same file always
gives the same ids. Omitted fields get defaults (status active, active true, paused false,
calls 0, formatted from the number).

`dump_fleet` is the inverse: loading a file, initialising a database from it and dumping
that database gives back the same data (after the defaults and normalisation above:
money as "3.00", times as ISO-8601 UTC with Z).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from reconciler.errors import ReconcilerError
from reconciler.models import E164_PATTERN
from reconciler.phone import display
from reconciler.providers.sandbox.create import create_database
from reconciler.providers.sandbox.store import SandboxStore, account_to_wire, number_to_wire
from reconciler.providers.sandbox.tables import ACCOUNT_STATUSES, Row

FIRST_ACCOUNT_ID = 1001
# Ids travel in URL paths: letters, digits, _ and - only (no dots: ".json" is a suffix).
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_E164 = re.compile(E164_PATTERN)
_NANP = re.compile(r"^\+1(\d{3})(\d{3})(\d{4})$")
_MONEY_LIMIT = Decimal("1000000")


class FleetError(ReconcilerError):
    """The fleet file cannot be read or is invalid; the message names file and entry."""


@dataclass
class Fleet:
    """A validated fleet as store rows (see tables.ACCOUNT_COLUMNS / NUMBER_COLUMNS)."""

    accounts: list[Row]
    numbers: list[Row]


def number_id_for(number: str) -> str:
    """The generated id of a tracking number: stable for the same phone number."""
    return "TPN" + hashlib.sha256(number.encode()).hexdigest()[:20].upper()


def format_number(number: str) -> str:
    """'+14105550101' -> '(410) 555-0101' (a regex: generate makes 100,000); other
    countries by the library, international: '+44 20 7946 0958'."""
    m = _NANP.match(number)
    return f"({m[1]}) {m[2]}-{m[3]}" if m else display(number)


# --- loading --------------------------------------------------------------------------


def read_fleet_data(path: Path | str) -> Any:
    """Parse a fleet file (JSON by extension .json, YAML otherwise) into plain data."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FleetError(f"{path}: no such fleet file") from None
    except UnicodeDecodeError:
        raise FleetError(f"{path}: not UTF-8 text; expected a YAML or JSON fleet file") from None
    except OSError as exc:
        raise FleetError(f"{path}: cannot read: {exc.strerror}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise FleetError(f"{path}: not valid JSON: {exc}") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader: 100k numbers
    try:
        return yaml.load(text, Loader=loader)  # safe: SafeLoader or CSafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise FleetError(f"{path}{where}: not valid YAML: {exc.problem}") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise FleetError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None


def load_fleet(path: Path | str) -> Fleet:
    """Read and validate a fleet file."""
    return parse_fleet(read_fleet_data(path), str(path))


def parse_fleet(data: Any, source: str) -> Fleet:
    """Validate fleet data (already parsed); `source` names it in error messages."""
    if not isinstance(data, dict) or not isinstance(data.get("accounts"), list):
        raise FleetError(f'{source}: expected a mapping with an "accounts" list')
    checker = _Checker(source)
    raw_accounts = data["accounts"]
    for i, acc in enumerate(raw_accounts):
        checker.need(isinstance(acc, dict), f"accounts[{i}]", "expected a mapping")
    next_id = (
        max([a["id"] for a in raw_accounts if type(a.get("id")) is int] + [FIRST_ACCOUNT_ID - 1])
        + 1
    )
    explicit_ids = {str(a["id"]) for a in raw_accounts if a.get("id") is not None}
    accounts: list[Row] = []
    numbers: list[Row] = []
    seen_accounts: set[str] = set()
    seen_numbers: set[str] = set()
    seen_number_ids: set[str] = set()
    for i, acc in enumerate(raw_accounts):
        where = f"accounts[{i}]"
        if acc.get("id") is None:
            while str(next_id) in explicit_ids:
                next_id += 1
            acc = {**acc, "id": next_id}
            next_id += 1
        row = _account_row(checker, acc, where)
        checker.need(row[0] not in seen_accounts, f"{where}.id", f"duplicate id {row[0]}")
        seen_accounts.add(row[0])
        accounts.append(row)
        raw_numbers = acc.get("numbers") or []
        checker.need(isinstance(raw_numbers, list), f"{where}.numbers", "expected a list")
        for j, num in enumerate(raw_numbers):
            n_where = f"{where}.numbers[{j}]"
            nrow = _number_row(checker, num, row[0], n_where)
            checker.need(
                nrow[2] not in seen_numbers, f"{n_where}.number", f"{nrow[2]} is listed twice"
            )
            checker.need(nrow[0] not in seen_number_ids, f"{n_where}.id", f"duplicate id {nrow[0]}")
            seen_numbers.add(nrow[2])
            seen_number_ids.add(nrow[0])
            numbers.append(nrow)
    return Fleet(accounts, numbers)


class _Checker:
    """Turns a failed check into one FleetError line: `file: accounts[2].numbers[0].x: ...`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def need(self, ok: bool, where: str, problem: str) -> None:
        if not ok:
            raise FleetError(f"{self.source}: {where}: {problem}")

    def string(self, value: Any, where: str) -> str:
        self.need(isinstance(value, str), where, f"expected a string, got {_kind(value)}")
        return value

    def boolean(self, value: Any, where: str) -> bool:
        self.need(isinstance(value, bool), where, f"expected true or false, got {_kind(value)}")
        return value

    def count(self, value: Any, where: str) -> int:
        ok = type(value) is int and value >= 0
        self.need(ok, where, f"expected a whole number >= 0, got {_kind(value)}")
        return value

    def ident(self, value: Any, where: str) -> str:
        text = str(value) if type(value) is int and value >= 0 else value
        ok = isinstance(text, str) and ID_PATTERN.match(text) is not None
        self.need(ok, where, "ids are integers or 1-64 letters, digits, '_' or '-'")
        return text

    def money(self, value: Any, where: str) -> str | None:
        if value is None:
            return None
        ok = isinstance(value, str | int | float) and not isinstance(value, bool)
        try:
            amount = Decimal(str(value)) if ok else None
        except InvalidOperation:
            amount = None
        good = amount is not None and amount.is_finite() and 0 <= amount < _MONEY_LIMIT
        self.need(good, where, f'expected an amount like "3.00", got {_show(value)}')
        assert amount is not None
        return str(amount.quantize(Decimal("0.01")))

    def time(self, value: Any, where: str) -> str | None:
        if value is None or value == "":
            return None
        parsed: datetime | None = value if isinstance(value, datetime) else None
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                parsed = None
        self.need(parsed is not None, where, f"expected an ISO-8601 time, got {_show(value)}")
        assert parsed is not None
        self.need(parsed.tzinfo is not None, where, f"time without timezone: {_show(value)}")
        return parsed.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if value is None:
            return {}
        self.need(isinstance(value, dict), where, f"expected a mapping, got {_kind(value)}")
        return value


def _account_row(ck: _Checker, acc: dict[str, Any], where: str) -> Row:
    raw_id = acc["id"]
    account_id = ck.ident(raw_id, f"{where}.id")
    status = acc.get("status", "active")
    ck.need(
        status in ACCOUNT_STATUSES,
        f"{where}.status",
        f"expected one of {', '.join(ACCOUNT_STATUSES)}, got {_show(status)}",
    )
    return (
        account_id,
        int(type(raw_id) is int),
        ck.string(acc.get("name"), f"{where}.name"),
        status,
        ck.money(acc.get("monthly_fee"), f"{where}.monthly_fee"),
        ck.time(acc.get("updated"), f"{where}.updated"),
    )


def _number_row(ck: _Checker, num: Any, account_id: str, where: str) -> Row:
    ck.need(isinstance(num, dict), where, "expected a mapping")
    number = num.get("number")
    ck.need(
        isinstance(number, str) and _E164.match(number) is not None,
        f"{where}.number",
        f'expected an E.164 number in quotes, like "+14105550101", got {_show(number)}',
    )
    if num.get("account_id") is not None:
        ck.need(
            str(num["account_id"]) == account_id,
            f"{where}.account_id",
            f"{_show(num['account_id'])} differs from its account's id {account_id}",
        )
    source = ck.mapping(num.get("source"), f"{where}.source")
    stats = ck.mapping(num.get("stats"), f"{where}.stats")
    online = ck.boolean(source.get("online", False), f"{where}.source.online")
    paused = ck.boolean(num.get("paused", False), f"{where}.paused")
    ck.need(
        online or not paused,
        f"{where}.paused",
        "only numbers of an online source can be paused (source.online is false)",
    )
    source_name = ck.string(source.get("name", ""), f"{where}.source.name")
    return (
        ck.ident(num["id"], f"{where}.id") if num.get("id") is not None else number_id_for(number),
        account_id,
        number,
        ck.string(num.get("formatted") or format_number(number), f"{where}.formatted"),
        ck.string(num.get("name", source_name), f"{where}.name"),
        int(ck.boolean(num.get("active", True), f"{where}.active")),
        int(paused),
        source_name,
        int(online),
        ck.money(stats.get("renewal_costs"), f"{where}.stats.renewal_costs"),
        ck.count(stats.get("calls", 0), f"{where}.stats.calls"),
        ck.time(num.get("active_changed"), f"{where}.active_changed"),
        ck.time(num.get("updated"), f"{where}.updated"),
    )


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {_show(value)}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- init and dump --------------------------------------------------------------------


def init_database(db_path: Path | str, fleet_path: Path | str) -> Fleet:
    """Create or replace the database at `db_path` from a fleet file, atomically."""
    fleet = load_fleet(fleet_path)
    create_database(db_path, fleet.accounts, fleet.numbers)
    return fleet


def dump_fleet(store: SandboxStore) -> dict[str, Any]:
    """The live state of a database in the fleet shape."""
    account_rows, number_rows = store.all_rows()
    by_account: dict[str, list[dict[str, Any]]] = {row[0]: [] for row in account_rows}
    for row in number_rows:
        by_account[row[1]].append(number_to_wire(row))
    return {
        "accounts": [
            {**account_to_wire(row), "numbers": by_account[row[0]]} for row in account_rows
        ]
    }


def write_fleet(data: dict[str, Any], path: Path | str) -> None:
    """Write fleet data as JSON (for a .json path) or YAML; a local I/O failure is one line
    naming the path."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            if path.suffix.lower() == ".json":
                json.dump(data, fh, indent=1)
                fh.write("\n")
            else:
                dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
                yaml.dump(data, fh, Dumper=dumper, sort_keys=False, allow_unicode=True)
    except OSError as exc:
        reason = (
            f"{exc.filename} is not a directory"
            if isinstance(exc, FileExistsError)
            else exc.strerror or str(exc)
        )
        raise FleetError(f"{path}: cannot write the fleet file ({reason})") from None
