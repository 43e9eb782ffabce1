"""`import`: account files that describe live state exactly (a plan with them is empty).

File names come from live data (account names), so they are reduced to `[a-z0-9-]` and
every path is checked to stay inside the output directory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

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
    """The account file text for a live account: status and every number as they are now
    (a field the provider does not report is left out: the file then wants the default,
    which a plan leaves alone)."""
    if acc.status not in ("active", "paused", "stopped"):
        shown = repr(acc.status) if acc.status else "no status"
        raise ReconcilerError(
            f"account {acc.id} has {shown} at the provider; reconciler manages only active, "
            "paused and stopped accounts, so it cannot be imported"
        )
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
    if num.calls not in (None, "allowed"):
        out.append(f"    calls: {num.calls}\n")
    if num.swapping not in (None, "active"):
        out.append(f"    swapping: {num.swapping}\n")
    return out


def write_account_files(
    accounts: list[LiveAccount],
    out_dir: str,
    overwrite: bool,
    managed: Mapping[str, str] | None = None,
) -> list[str]:
    """Write one file per account; refuse to overwrite unless asked. Returns the paths.

    `managed` (account id -> its file) puts an account already managed back in *its* file
    (only with `overwrite`), and no other account is ever written over a managed file: a
    name that would land on one takes the account id as suffix. Nothing is written unless
    every file can be.
    """
    managed = managed or {}
    root = os.path.realpath(out_dir)
    taken = {
        p for path in managed.values() for p in (os.path.abspath(path), os.path.realpath(path))
    }
    planned: list[tuple[str, LiveAccount]] = []
    used: set[str] = set()
    for acc in accounts:
        if acc.id in managed:
            path = managed[acc.id]
            if not overwrite:
                raise ReconcilerError(
                    f"account {acc.id} is already managed by {path}; "
                    "pass --overwrite to rewrite that file"
                )
        else:
            path = _new_file(acc, out_dir, root, used, taken, overwrite)
        planned.append((path, acc))
    written = []
    for path, acc in planned:
        write_atomic(path, account_yaml(acc), prefix=".import-")
        written.append(path)
    return written


def _new_file(
    acc: LiveAccount, out_dir: str, root: str, used: set[str], taken: set[str], overwrite: bool
) -> str:
    """The path of a new file for an account no file manages, inside `out_dir`."""
    stem = slug(acc.name, acc.id)
    path = os.path.join(out_dir, stem + ".yaml")
    if stem in used or os.path.abspath(path) in taken or os.path.realpath(path) in taken:
        stem = f"{stem}-{slug('', acc.id)}"
        path = os.path.join(out_dir, stem + ".yaml")
    used.add(stem)
    real = os.path.realpath(path)
    if os.path.dirname(real) != root:
        raise ReconcilerError(f"refusing to write outside {out_dir}: {real}")
    if real in taken or os.path.abspath(path) in taken:
        raise ReconcilerError(f"{path} manages another account; refusing to write over it")
    if os.path.exists(path) and not overwrite:
        raise ReconcilerError(f"{path} exists; pass --overwrite to replace it")
    return path
