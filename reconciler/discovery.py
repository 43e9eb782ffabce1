"""Discovery: every live account next to the file that manages it (`reconciler accounts`),
and which live accounts `import --all` may write files for.

Plain data in, plain data out: the CLI lists, renders and writes; the provider only lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reconciler.models import DesiredState, ListedAccount
from reconciler.render.safe import neutral
from reconciler.shard import in_shard

# The statuses an account file can hold (models.AccountStatus); others are listed, not managed.
MANAGEABLE = ("active", "paused", "stopped")


@dataclass(frozen=True, slots=True)
class Discovered:
    """A live account and the account file that manages it (None: no file does)."""

    id: str
    name: str
    status: str | None
    numbers: int | None
    managed_by: str | None


def managed_files(desired: DesiredState) -> dict[str, str]:
    """Account id -> the file that manages it, as the config names it
    (`config/accounts/acme-dental.yaml`)."""
    return {account_id: acc.source.path for account_id, acc in desired.accounts.items()}


def discover(listed: list[ListedAccount], managed: dict[str, str]) -> list[Discovered]:
    """Each listed account with its managing file (`managed`: account id -> file path)."""
    return [
        Discovered(acc.id, acc.name, acc.status, acc.numbers, managed.get(acc.id)) for acc in listed
    ]


def importable(
    listed: list[ListedAccount], managed: dict[str, str], shard: tuple[int, int] | None
) -> tuple[list[str], list[ListedAccount]]:
    """(ids `import --all` writes, accounts it skips for a status no file can hold): every
    listed account that no file manages, of `shard` when given."""
    wanted, skipped = [], []
    for acc in listed:
        if acc.id in managed or (shard is not None and not in_shard(acc.id, shard)):
            continue
        if acc.status in MANAGEABLE:
            wanted.append(acc.id)
        else:
            skipped.append(acc)
    return wanted, skipped


def render_json(found: list[Discovered]) -> str:
    """`{"accounts": [{"id", "name", "status", "numbers", "managed_by"}]}`."""
    rows: list[dict[str, Any]] = [
        {
            "id": d.id,
            "name": d.name,
            "status": d.status,
            "numbers": d.numbers,
            "managed_by": d.managed_by,
        }
        for d in found
    ]
    return json.dumps({"accounts": rows}, indent=2, ensure_ascii=False) + "\n"


def render_text(found: list[Discovered]) -> str:
    """A table (provider text neutralised) and one summary line."""
    header = ("ID", "NAME", "STATUS", "NUMBERS", "MANAGED BY")
    rows = [
        (
            neutral(d.id),
            neutral(d.name) or "-",
            neutral(d.status) if d.status is not None else "(not reported)",
            "-" if d.numbers is None else str(d.numbers),
            neutral(d.managed_by) if d.managed_by else "-",
        )
        for d in found
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(widths[i]) if i == 3 else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.append(summary(found))
    return "\n".join(lines) + "\n"


def summary(found: list[Discovered]) -> str:
    """`5 accounts: 4 managed, 1 not managed (...)`, naming statuses no file can hold."""
    n = len(found)
    managed = sum(1 for d in found if d.managed_by)
    line = f"{n} account{'s' if n != 1 else ''}: {managed} managed, {n - managed} not managed"
    odd = [d for d in found if d.status not in MANAGEABLE]
    notes = []
    if any(not d.managed_by and d.status in MANAGEABLE for d in found):
        notes.append("`reconciler import --all` writes files for them")
    if odd:
        statuses = sorted({neutral(d.status) if d.status else "(not reported)" for d in odd})
        notes.append(f"{len(odd)} with a status no account file can hold: {', '.join(statuses)}")
    return line + (f" ({'; '.join(notes)})" if notes else "") + "."
