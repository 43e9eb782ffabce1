"""Plan -> provider writes -> verification.

Writes run in a safe order, in phases: numbers being stopped or paused go before their
account is stopped or paused; an account is allowed or resumed before its numbers are.
Within a phase, writes run with bounded concurrency. A failed write does not stop the
others. Afterwards one bulk re-read checks that every planned field now has its value.
Only resources in the plan are ever written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from reconciler.errors import ProviderError, ReconcilerError
from reconciler.models import Change, LiveAccount, LiveNumber, Plan, jsonable
from reconciler.providers.base import Provider

log = logging.getLogger(__name__)

Outcome = Literal["ok", "failed", "not_started"]
REPORT_FORMAT_VERSION = 1


def phase(change: Change) -> int:
    """0: numbers stop/pause, 1: accounts stop/pause, 2: accounts allow/resume, 3: numbers."""
    narrowing = change.action in ("stop", "pause")
    if change.kind == "number":
        return 0 if narrowing else 3
    return 1 if narrowing else 2


@dataclass
class ActionResult:
    change: Change
    outcome: Outcome = "not_started"
    error: str | None = None
    ms: float = 0.0
    started_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        c = self.change
        return {
            "address": c.address,
            "field": c.field,
            "action": c.action,
            "from": c.from_,
            "to": c.to,
            "outcome": self.outcome,
            "error": self.error,
            "ms": round(self.ms, 1),
            "started_at": self.started_at,
        }


@dataclass
class Verification:
    checked: int = 0
    matched: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.matched == self.checked

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "matched": self.matched,
            "mismatches": self.mismatches,
            "error": self.error,
            "ok": self.ok,
        }


@dataclass
class ApplyReport:
    plan: Plan
    started_at: str
    finished_at: str = ""
    results: list[ActionResult] = field(default_factory=list)
    verification: Verification | None = None
    interrupted: bool = False

    @property
    def converged(self) -> bool:
        return (
            not self.interrupted
            and all(r.outcome == "ok" for r in self.results)
            and self.verification is not None
            and self.verification.ok
        )

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "failed": 0, "not_started": 0}
        for r in self.results:
            out[r.outcome] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": REPORT_FORMAT_VERSION,
            "checksum": self.plan.checksum,
            "config_digest": self.plan.config_digest,
            "provider": self.plan.provider.model_dump(),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "interrupted": self.interrupted,
            "converged": self.converged,
            "counts": self.counts(),
            "actions": [r.to_dict() for r in self.results],
            "verification": self.verification.to_dict() if self.verification else None,
        }


def _now() -> str:
    return jsonable(datetime.now(timezone.utc).replace(microsecond=0))


def run_action(provider: Provider, change: Change) -> ActionResult:
    """One write, checked against what the provider returns. Never raises for a failure."""
    result = ActionResult(change, started_at=_now())
    start = time.perf_counter()
    try:
        if change.kind == "account":
            got: LiveAccount | LiveNumber = provider.set_account_status(
                change.account_id, change.to
            )
            actual = got.status  # type: ignore[union-attr]
        else:
            got = provider.set_number(
                change.account_id, change.number_id or "", change.field, change.to
            )  # type: ignore[arg-type]
            actual = getattr(got, change.field)
        if actual != change.to:
            raise ProviderError(f"write not applied: the provider reports {change.field}: {actual}")
        result.outcome = "ok"
    except ProviderError as exc:
        result.outcome, result.error = "failed", str(exc)
    except Exception as exc:  # one bad write must not abort the others
        log.debug("action failed: address=%s", change.address, exc_info=True)
        result.outcome, result.error = "failed", f"{type(exc).__name__}: {exc}"
    result.ms = (time.perf_counter() - start) * 1000
    log.info(
        "write: address=%s field=%s to=%s outcome=%s ms=%.0f",
        change.address,
        change.field,
        change.to,
        result.outcome,
        result.ms,
    )
    return result


def apply_changes(
    provider: Provider,
    plan: Plan,
    *,
    concurrency: int,
    on_result: Callable[[ActionResult], None] = lambda r: None,
) -> ApplyReport:
    """Run the plan's writes in safe phases; stop cleanly on KeyboardInterrupt."""
    report = ApplyReport(plan, started_at=_now())
    runner = _Runner(provider, plan, max(1, concurrency), on_result)
    report.results = list(runner.results.values())
    with ThreadPoolExecutor(max_workers=runner.limit, thread_name_prefix="apply") as pool:
        try:
            for ph in range(4):
                runner.run_phase(pool, [c for c in plan.changes if phase(c) == ph])
        except KeyboardInterrupt:
            report.interrupted = True
            runner.drain()
    report.finished_at = _now()
    return report


class _Runner:
    """Keeps at most `limit` writes in flight, so a stop leaves the rest unstarted, and
    knows which writes are in flight, so an interrupted run still records their outcome."""

    def __init__(
        self, provider: Provider, plan: Plan, limit: int, on_result: Callable[[ActionResult], None]
    ) -> None:
        self.provider, self.limit, self.on_result = provider, limit, on_result
        self.results = {id(c): ActionResult(c) for c in plan.changes}
        self.pending: set[Future[ActionResult]] = set()

    def run_phase(self, pool: ThreadPoolExecutor, batch: list[Change]) -> None:
        queue = list(reversed(batch))
        while queue or self.pending:
            while queue and len(self.pending) < self.limit:
                self.pending.add(pool.submit(run_action, self.provider, queue.pop()))
            done, self.pending = wait(self.pending, return_when=FIRST_COMPLETED)
            for result in [self.record(fut) for fut in done]:  # all recorded before reporting
                self.on_result(result)

    def record(self, fut: Future[ActionResult]) -> ActionResult:
        res = fut.result()
        return _merge(self.results[id(res.change)], res)

    def drain(self) -> None:
        """After an interrupt: let in-flight writes finish and record them; start nothing."""
        while self.pending:
            try:
                done, self.pending = wait(self.pending)
            except KeyboardInterrupt:
                continue  # a second Ctrl-C cannot stop a write already sent; keep waiting
            for result in [self.record(fut) for fut in done]:
                with contextlib.suppress(KeyboardInterrupt):
                    self.on_result(result)


def _merge(slot: ActionResult, res: ActionResult) -> ActionResult:
    slot.outcome, slot.error, slot.ms, slot.started_at = (
        res.outcome,
        res.error,
        res.ms,
        res.started_at,
    )
    return slot


def verify(provider: Provider, plan: Plan) -> Verification:
    """One bulk re-read; every planned field must now have its planned value."""
    ver = Verification(checked=len(plan.changes))
    ids = list(dict.fromkeys(c.account_id for c in plan.changes))
    try:
        live = provider.read(ids)
    except ProviderError as exc:
        ver.error = f"verification read failed: {exc}"
        return ver
    numbers = {n.number: n for a in live.accounts.values() for n in a.numbers}
    for c in plan.changes:
        if c.kind == "account":
            acc = live.accounts.get(c.account_id)
            actual = acc.status if acc else None
        else:
            num = numbers.get(c.number or "")
            actual = getattr(num, c.field) if num else None
        if actual == c.to:
            ver.matched += 1
        else:
            ver.mismatches.append(
                {"address": c.address, "field": c.field, "expected": c.to, "actual": actual}
            )
    return ver


# --- saved plans ---------------------------------------------------------------------


def check_saved_plan(plan_file: str, fresh: Plan) -> None:
    """Refuse ("plan is stale") unless a fresh plan intends exactly what the saved one did."""
    try:
        with open(plan_file, encoding="utf-8") as fh:
            saved = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ReconcilerError(f"{plan_file}: cannot read a saved plan ({exc})") from None
    if not isinstance(saved, dict) or saved.get("format_version") != 1 or "checksum" not in saved:
        raise ReconcilerError(f"{plan_file}: not a reconciler plan (format_version 1)")
    target = (saved.get("provider") or {}).get("target")
    if target != fresh.provider.target:
        raise ReconcilerError(
            f"plan is stale: {plan_file} was made for {target}, this apply targets "
            f"{fresh.provider.target}; nothing was applied"
        )
    if saved["checksum"] != fresh.checksum:
        detail = plan_difference(saved.get("changes") or [], fresh)
        raise ReconcilerError(
            f"plan is stale: live state or config changed since {plan_file} was saved; "
            f"nothing was applied. Run plan again.{detail}"
        )


def plan_difference(saved_changes: list[Any], fresh: Plan, limit: int = 10) -> str:
    """What the fresh plan intends differently from the saved one, a line each."""
    from deepdiff import DeepDiff

    def intents(changes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {
            f"{c.get('address')} {c.get('field')}": {"from": c.get("from"), "to": c.get("to")}
            for c in changes
            if isinstance(c, dict)
        }

    old, new = intents(saved_changes), intents(fresh.to_json_dict()["changes"])
    diff = DeepDiff(old, new, view="tree")
    lines: list[str] = []
    for item in diff.get("dictionary_item_removed", []):
        key = item.path(output_format="list")[0]
        lines.append(f"no longer planned: {key}: {old[key]['from']} -> {old[key]['to']}")
    for item in diff.get("dictionary_item_added", []):
        key = item.path(output_format="list")[0]
        lines.append(f"newly planned:     {key}: {new[key]['from']} -> {new[key]['to']}")
    for item in diff.get("values_changed", []):
        key, part = item.path(output_format="list")[:2]
        lines.append(f"changed:           {key}: {part} {item.t1} -> {item.t2}")
    more = [f"… and {len(lines) - limit} more"] if len(lines) > limit else []
    return "".join(f"\n  {line}" for line in [*sorted(lines)[:limit], *more])
