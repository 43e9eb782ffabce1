"""A doctor finding and the exit code of a list of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One finding: a name, ok / warn / fail, and a line saying what was seen."""

    name: str
    status: Status
    detail: str


RANK = {"ok": 0, "warn": 1, "fail": 2}


def exit_code(checks: Iterable[Check]) -> int:
    """0 all ok, 2 warnings only, 1 any failure."""
    worst = max((RANK[c.status] for c in checks), default=0)
    return {0: 0, 1: 2, 2: 1}[worst]
