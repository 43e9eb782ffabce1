"""The sandbox database's tables, and the SQL that reads its rows as the wire's JSON.

`store.py` runs these; `create.py` creates the tables. The row tuples follow
`ACCOUNT_COLUMNS` / `NUMBER_COLUMNS`; `NUMBER_JSON` must build exactly what
`store.number_to_wire` makes (a test compares every row).
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1
ACCOUNT_STATUSES = ("active", "paused", "stopped")

ACCOUNT_COLUMNS = ("id", "id_is_int", "name", "status", "monthly_fee", "updated")
NUMBER_COLUMNS = (
    "id",
    "account_id",
    "number",
    "formatted",
    "name",
    "active",
    "paused",
    "source_name",
    "source_online",
    "renewal_costs",
    "calls",
    "active_changed",
    "updated",
)
Row = tuple[Any, ...]
FileId = tuple[int, int]  # (st_dev, st_ino)

SCHEMA_SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (
    seq INTEGER PRIMARY KEY,            -- listing order = fleet order
    id TEXT NOT NULL UNIQUE,
    id_is_int INTEGER NOT NULL CHECK (id_is_int IN (0, 1)),  -- wire shows 1001, not "1001"
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'paused', 'stopped')),
    monthly_fee TEXT,                   -- decimal string, "49.00"
    updated TEXT
);
CREATE TABLE numbers (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    number TEXT NOT NULL UNIQUE,
    formatted TEXT NOT NULL,
    name TEXT NOT NULL,
    active INTEGER NOT NULL CHECK (active IN (0, 1)),
    paused INTEGER NOT NULL CHECK (paused IN (0, 1)),
    source_name TEXT NOT NULL,
    source_online INTEGER NOT NULL CHECK (source_online IN (0, 1)),
    renewal_costs TEXT,
    calls INTEGER NOT NULL,
    active_changed TEXT,
    updated TEXT
);
CREATE INDEX numbers_by_account ON numbers (account_id, seq);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    resource TEXT NOT NULL,
    field TEXT NOT NULL,
    from_value TEXT,
    to_value TEXT,
    via TEXT NOT NULL CHECK (via IN ('direct', 'http'))
);
"""

ACCOUNT_SELECT = f"SELECT {', '.join(ACCOUNT_COLUMNS)} FROM accounts"
NUMBER_SELECT = f"SELECT {', '.join(NUMBER_COLUMNS)} FROM numbers"


def json_bool(column: str) -> str:
    return f"json(CASE WHEN {column} THEN 'true' ELSE 'false' END)"


# A numbers row as the JSON text of its wire shape, built by SQLite: must be exactly what
# `number_to_wire` makes (same keys in the same order; a test compares every row).
NUMBER_JSON = (
    "json_object("
    "'id', id, 'account_id', account_id, 'number', number, 'formatted', formatted, "
    f"'name', name, 'active', {json_bool('active')}, 'paused', {json_bool('paused')}, "
    f"'source', json_object('name', source_name, 'online', {json_bool('source_online')}), "
    "'stats', json_object('renewal_costs', renewal_costs, 'calls', calls), "
    "'active_changed', active_changed, 'updated', updated"
    ")"
)

# A whole numbers page in one statement and one result row: does the account exist, how
# many numbers it has, and the page's rows as JSON joined in `seq` order (a window
# aggregate's frame is visited in its ORDER BY order; a plain group_concat's order is
# unspecified). One statement is one consistent snapshot without BEGIN/COMMIT, and one
# row means the server thread gives up the GIL once, not once per row: with 8 clients at
# once that is what kept a threaded server from scaling (635 -> 1,551 pages/s).
NUMBERS_PAGE_JSON = (
    "SELECT EXISTS(SELECT 1 FROM accounts WHERE id = :account), "
    "(SELECT count(*) FROM numbers WHERE account_id = :account), "
    "(SELECT group_concat(j, ',') OVER "
    "(ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) "
    f"FROM (SELECT seq, {NUMBER_JSON} AS j FROM numbers WHERE account_id = :account "
    "ORDER BY seq LIMIT :limit OFFSET :offset) LIMIT 1)"
)

# SQLite integers are 64-bit: an absurd page number asks for this offset (past any list).
MAX_OFFSET = 2**62
