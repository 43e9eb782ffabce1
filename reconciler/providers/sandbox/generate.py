"""Synthetic sandbox fleets for demos and benchmarks.

`generate_rows(accounts, numbers_per_account, seed)` makes store rows directly (no
per-number validation pass): 1,000 x 100 numbers take well under a second. The same seed
and `now` always give the same fleet.

What it looks like: business names such as "Harbor Dental" or "Summit Roofing Co."; US
numbers in E.164, unique across the fleet, formatted "(410) 555-0101"; sources mixing
online (Google Ads, Website, Facebook Ads...) and offline (Direct Mail, Billboard, Yelp...)
ones; about 5% of numbers stopped and 3% paused (online sources only); a few accounts
paused or stopped; monthly fees 49/99/199; renewal costs 3.00 (5.00 for toll-free).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from reconciler.providers.sandbox.create import create_database
from reconciler.providers.sandbox.fleet import FIRST_ACCOUNT_ID, format_number, number_id_for
from reconciler.providers.sandbox.tables import Row

_PREFIXES = (
    "Acme", "Harbor", "Summit", "Blue Ridge", "Evergreen", "Bayside", "Cedar", "Delta",
    "Lakeside", "Northstar", "Pioneer", "Riverbend", "Granite", "Maple", "Silver Oak",
    "Keystone", "Redwood", "Coastal", "Prairie", "Liberty", "Sunrise", "Golden Gate",
    "Chesapeake", "Highland", "Magnolia", "Ironwood", "Westfield", "Brookside", "Capitol",
    "Heritage", "Peachtree", "Canyon", "Willow Creek", "Frontier", "Atlas", "Beacon",
    "Crescent", "Oakmont", "Patriot", "Rocky Mountain",
)  # fmt: skip
_TRADES = (
    "Dental", "Plumbing", "Roofing", "Law Group", "Auto Repair", "HVAC", "Vet Clinic",
    "Realty", "Family Medicine", "Chiropractic", "Pest Control", "Landscaping",
    "Electric", "Orthodontics", "Insurance Agency", "Physical Therapy", "Home Health",
    "Movers", "Garage Doors", "Med Spa", "Tire & Brake", "Pool Service", "Dermatology",
    "Accounting", "Storage", "Windows & Doors", "Flooring", "Tree Service", "Eye Care",
    "Urgent Care",
)  # fmt: skip
_SUFFIXES = ("", "", "", " Co.", " LLC", " & Sons", " Group", " Pros")
# (name, online): online sources are swapped on websites and so can be paused.
_SOURCES = (
    ("Google Ads", True), ("Google Organic", True), ("Website", True),
    ("Facebook Ads", True), ("Bing Ads", True), ("Google Business Profile", True),
    ("Direct Mail", False), ("Billboard", False), ("Yelp", False), ("Radio", False),
    ("Print Ad", False), ("Vehicle signage", False), ("TV", False),
)  # fmt: skip
_AREA_CODES = (
    "202", "212", "214", "301", "303", "305", "312", "404", "410", "415", "443", "469",
    "503", "512", "571", "602", "617", "646", "702", "703", "704", "713", "720", "804",
    "813", "818", "858", "904", "916", "919", "949", "971",
)  # fmt: skip
_TOLL_FREE = ("800", "833", "844", "855", "866", "877", "888")
_FEES = ("49.00", "49.00", "99.00", "99.00", "199.00")


def generate_rows(
    accounts: int, numbers_per_account: int, seed: int = 1, now: datetime | None = None
) -> tuple[list[Row], list[Row]]:
    """Account and number rows of a synthetic fleet (store column order)."""
    rng = random.Random(seed)
    if now is None:  # midnight: the same seed gives the same fleet all day
        now = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    names = _business_names(rng, accounts)
    used_numbers: set[str] = set()
    account_rows: list[Row] = []
    number_rows: list[Row] = []
    for i in range(accounts):
        account_id = str(FIRST_ACCOUNT_ID + i)
        roll = rng.random()
        status = "stopped" if roll < 0.02 else "paused" if roll < 0.05 else "active"
        updated = _iso(now - timedelta(seconds=rng.randrange(3600, 400 * 86400)))
        account_rows.append((account_id, 1, names[i], status, rng.choice(_FEES), updated))
        area = rng.choice(_AREA_CODES)
        for _ in range(numbers_per_account):
            number_rows.append(_number_row(rng, account_id, area, used_numbers, now))
    return account_rows, number_rows


def _business_names(rng: random.Random, count: int) -> list[str]:
    combos = [f"{p} {t}" for p in _PREFIXES for t in _TRADES]
    rng.shuffle(combos)
    names = []
    for i in range(count):
        base = combos[i % len(combos)] + rng.choice(_SUFFIXES)
        lap = i // len(combos)
        names.append(base if lap == 0 else f"{base} #{lap + 1}")
    return names


def _number_row(
    rng: random.Random, account_id: str, area: str, used: set[str], now: datetime
) -> Row:
    toll_free = rng.random() < 0.08
    while True:  # a local number mostly in the account's home area code
        code = rng.choice(_TOLL_FREE) if toll_free else area
        if not toll_free and rng.random() < 0.2:
            code = rng.choice(_AREA_CODES)
        number = f"+1{code}{rng.randrange(200, 1000)}{rng.randrange(10000):04d}"
        if number not in used:
            used.add(number)
            break
    source, online = rng.choice(_SOURCES)
    active = rng.random() >= 0.05
    # ~3% of all numbers paused; only online ones can be, and they are about half.
    paused = online and rng.random() < 0.06
    changed = now - timedelta(seconds=rng.randrange(3600, (200 if not active else 900) * 86400))
    updated = changed + timedelta(seconds=rng.randrange(0, int((now - changed).total_seconds())))
    calls = rng.randrange(0, 3) if not active else int(rng.expovariate(1 / 40))
    return (
        number_id_for(number),
        account_id,
        number,
        format_number(number),
        source if rng.random() < 0.7 else f"{source} {rng.choice(('Main', 'Spring', 'B', '2'))}",
        int(active),
        int(paused),
        source,
        int(online),
        "5.00" if toll_free else "3.00",
        calls,
        _iso(changed),
        _iso(updated),
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def generate_database(
    db_path: Path | str,
    accounts: int,
    numbers_per_account: int,
    seed: int = 1,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Create or replace `db_path` with a synthetic fleet; return (accounts, numbers)."""
    account_rows, number_rows = generate_rows(accounts, numbers_per_account, seed, now)
    create_database(db_path, account_rows, number_rows)
    return len(account_rows), len(number_rows)
