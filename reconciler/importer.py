"""`import`: account files that describe live state exactly (a plan with them is empty).

File names come from live data (account names), so they are reduced to `[a-z0-9-]` and
every path is checked to stay inside the output directory.
"""

from __future__ import annotations

import json
import os
import re

from reconciler.atomic import write_atomic
from reconciler.errors import ReconcilerError
from reconciler.models import LiveAccount, LiveNumber

MODELINE = "# yaml-language-server: $schema=../../schemas/account.schema.json\n"


def slug(name: str, account_id: str) -> str:
    """A safe file stem: `Acme Dental` -> `acme-dental`; nothing usable -> `account-<id>`."""
    text = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60].strip("-")
    safe_id = re.sub(r"[^A-Za-z0-9_-]+", "-", account_id)[:40] or "unknown"
    return text or f"account-{safe_id}"


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def _comment(text: str) -> str:
    return " ".join(text.replace("#", "").split())[:80]


def account_yaml(acc: LiveAccount) -> str:
    """The account file text for a live account: status and every number as they are now."""
    ident = acc.id if acc.id.isdigit() and not acc.id.startswith("0") else _q(acc.id)
    lines = [
        MODELINE,
        "# Imported from live state by `reconciler import`.\n",
        "account:\n",
        f"  id: {ident}\n",
        f"  name: {_q(acc.name)}\n",
        f"  status: {acc.status}\n",
        "numbers:" + (" []\n" if not acc.numbers else "\n"),
    ]
    for num in acc.numbers:
        lines.extend(_number_lines(num))
    return "".join(lines)


def _number_lines(num: LiveNumber) -> list[str]:
    label = " / ".join(x for x in (num.display(), num.name, num.source_name) if x)
    out = [f"  - number: {_q(num.number)}  # {_comment(label)}\n"]
    if num.calls != "allowed":
        out.append(f"    calls: {num.calls}\n")
    if num.swapping != "active":
        out.append(f"    swapping: {num.swapping}\n")
    return out


def write_account_files(accounts: list[LiveAccount], out_dir: str, overwrite: bool) -> list[str]:
    """Write one file per account; refuse to overwrite unless asked. Returns the paths."""
    root = os.path.realpath(out_dir)
    planned: list[tuple[str, LiveAccount]] = []
    used: set[str] = set()
    for acc in accounts:
        stem = slug(acc.name, acc.id)
        if stem in used:
            stem = f"{stem}-{slug('', acc.id)}"
        used.add(stem)
        path = os.path.realpath(os.path.join(root, stem + ".yaml"))
        if os.path.dirname(path) != root:
            raise ReconcilerError(f"refusing to write outside {out_dir}: {path}")
        if os.path.exists(path) and not overwrite:
            raise ReconcilerError(f"{path} exists; pass --overwrite to replace it")
        planned.append((path, acc))
    written = []
    for path, acc in planned:
        write_atomic(path, account_yaml(acc), prefix=".import-")
        written.append(path)
    return written
