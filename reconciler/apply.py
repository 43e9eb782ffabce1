"""Plan -> provider writes -> verification.

Writes run in a safe order, in phases: numbers being stopped or paused go before their
account is stopped or paused; an account is allowed or resumed before its numbers are.
Within a phase, writes run with bounded concurrency. A failed write does not stop the
others, except one that finds the target itself changed (`ProviderTargetChanged`): then
nothing more is started. Afterwards one bulk re-read of the accounts written to verifies the apply as a
re-plan would: every planned field has its value, no other field of a managed resource
changed, every planned number is still in its account; and what stays billed is stated
from that re-read, never from the plan. Only resources in the plan are ever written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from queue import Empty, SimpleQueue
from typing import Any, Literal

from reconciler.charges import compare_charges, silent_resources
from reconciler.errors import ProviderError, ProviderTargetChanged, ReconcilerError
from reconciler.models import DesiredState, LiveAccount, LiveNumber, LiveState, jsonable
from reconciler.plan_model import Change, Charges, Plan
from reconciler.providers.base import Provider

log = logging.getLogger(__name__)

Outcome = Literal["ok", "failed", "unknown", "not_started"]
REPORT_FORMAT_VERSION = 1
GRACE_SECONDS = 3.0  # after an interrupt, how long writes in flight may still finish
UNKNOWN = "outcome unknown: interrupted mid-request"


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
    ms: float = 0.0  # on the wire: the wait for the provider's rate limit is apart
    wait_ms: float = 0.0  # waiting for the rate limit before (and between) attempts
    started_at: str | None = None
    target_changed: bool = False  # the write found the target replaced: start no more

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
            "rate_limit_wait_ms": round(self.wait_ms, 1),
            "started_at": self.started_at,
        }


MismatchKind = Literal["planned", "unplanned", "moved"]


@dataclass
class Verification:
    """What the re-read after the writes found.

    Mismatches are `planned` (a planned field does not have its value), `unplanned` (a
    field of a managed resource the plan did not touch changed between the pre-apply
    read and the re-read) or `moved` (a planned number is no longer in its account).
    `charges_after` is stated from the re-read (None when it failed).
    """

    checked: int = 0
    matched: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    charges_after: Charges | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.matched == self.checked and not self.mismatches

    def mismatch(
        self, kind: MismatchKind, address: str, fld: str, expected: Any, actual: Any, message: str
    ) -> None:
        self.mismatches.append(
            {
                "kind": kind,
                "address": address,
                "field": fld,
                "expected": expected,
                "actual": actual,
                "message": message,
            }
        )

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
    target_changed: bool = False  # stopped: a write found the target replaced or deleted

    @property
    def converged(self) -> bool:
        return (
            not self.interrupted
            and not self.target_changed
            and all(r.outcome == "ok" for r in self.results)
            and self.verification is not None
            and self.verification.ok
        )

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "failed": 0, "unknown": 0, "not_started": 0}
        for r in self.results:
            out[r.outcome] += 1
        return out

    def settle(self) -> None:
        """Writes cut by an interrupt ("unknown") take the outcome the re-read shows."""
        ver = self.verification
        if ver is None or ver.error is not None:
            return
        wrong = {(m["address"], m["field"]) for m in ver.mismatches if m["kind"] != "unplanned"}
        for r in self.results:
            if r.outcome == "unknown":
                landed = (r.change.address, r.change.field) not in wrong
                r.outcome = "ok" if landed else "failed"
                shows = "applied" if landed else "not applied"
                r.error = f"{UNKNOWN}; the re-read shows it {shows}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": REPORT_FORMAT_VERSION,
            "checksum": self.plan.checksum,
            "config_digest": self.plan.config_digest,
            "provider": self.plan.provider.model_dump(),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "interrupted": self.interrupted,
            "target_changed": self.target_changed,
            "converged": self.converged,
            "counts": self.counts(),
            "actions": [r.to_dict() for r in self.results],
            "verification": self.verification.to_dict() if self.verification else None,
            "charges_after": (
                self.verification.charges_after.model_dump(mode="json")
                if self.verification and self.verification.charges_after
                else None
            ),
        }


def _now() -> str:
    return jsonable(datetime.now(timezone.utc).replace(microsecond=0))


def run_action(provider: Provider, change: Change) -> ActionResult:
    """One write, checked against what the provider returns. Never raises for a failure."""
    from reconciler.providers.retries import rate_limit_waited

    result = ActionResult(change, started_at=_now())
    start, waited = time.perf_counter(), rate_limit_waited()
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
        result.target_changed = isinstance(exc, ProviderTargetChanged)
    except Exception as exc:  # one bad write must not abort the others
        log.debug("action failed: address=%s", change.address, exc_info=True)
        result.outcome, result.error = "failed", f"{type(exc).__name__}: {exc}"
    result.wait_ms = (rate_limit_waited() - waited) * 1000
    result.ms = max(0.0, (time.perf_counter() - start) * 1000 - result.wait_ms)
    log.info(
        "write: address=%s field=%s to=%s outcome=%s ms=%.0f rate_limit_wait_ms=%.0f",
        change.address,
        change.field,
        change.to,
        result.outcome,
        result.ms,
        result.wait_ms,
    )
    return result


def apply_changes(
    provider: Provider,
    plan: Plan,
    *,
    concurrency: int,
    on_result: Callable[[ActionResult], None] = lambda r: None,
    grace: float = GRACE_SECONDS,
) -> ApplyReport:
    """Run the plan's writes in safe phases. Stop cleanly on KeyboardInterrupt (nothing new
    starts, writes in flight get `grace` seconds, then are cut: "unknown" outcome) and when
    a write finds the target changed (in-flight writes finish, nothing more starts)."""
    report = ApplyReport(plan, started_at=_now())
    runner = _Runner(provider, plan, max(1, concurrency), on_result)
    report.results = list(runner.results.values())
    with ThreadPoolExecutor(max_workers=runner.limit, thread_name_prefix="apply") as pool:
        try:
            for ph in range(4):
                if runner.target_changed:
                    break
                runner.run_phase(pool, [c for c in plan.changes if phase(c) == ph])
        except KeyboardInterrupt:
            report.interrupted = True
            runner.drain(grace)
    report.target_changed = runner.target_changed
    report.finished_at = _now()
    return report


class _Runner:
    """Keeps at most `limit` writes in flight, so a stop leaves the rest unstarted.

    Each write records its own outcome, in its worker thread: a Ctrl-C lands in the main
    thread at any bytecode, and must never leave a write that was sent recorded as "not
    started". The main thread only paces the writes and reports them.

    Finished writes come back through a SimpleQueue, not `concurrent.futures.wait`: wait
    takes every future's lock in a Python loop, and a Ctrl-C inside that loop leaves some
    of them held by the main thread for good, so the workers' `set_result` blocks and the
    drain never ends (seen in test_sigint_stops_cleanly_with_a_summary). `SimpleQueue.get`
    is one C call: interrupted, it holds nothing.
    """

    def __init__(
        self, provider: Provider, plan: Plan, limit: int, on_result: Callable[[ActionResult], None]
    ) -> None:
        self.provider, self.limit, self.on_result = provider, limit, on_result
        self.results = {id(c): ActionResult(c) for c in plan.changes}
        self.in_flight = 0  # submitted and not yet taken from `finished` (main thread only)
        self.submitted = 0  # main thread only; one short at worst after a Ctrl-C
        self.finished: SimpleQueue[ActionResult] = SimpleQueue()
        self.finished_count = 0  # by the workers, after they put their result
        self._count_lock = threading.Lock()
        self.target_changed = False

    def _run(self, change: Change) -> None:
        slot = self.results[id(change)]
        try:
            _merge(slot, run_action(self.provider, change))
        finally:
            self.finished.put(slot)
            with self._count_lock:
                self.finished_count += 1

    def run_phase(self, pool: ThreadPoolExecutor, batch: list[Change]) -> None:
        queue = list(reversed(batch))
        while (queue and not self.target_changed) or self.in_flight:
            while queue and not self.target_changed and self.in_flight < self.limit:
                pool.submit(self._run, queue.pop())
                self.in_flight += 1
                self.submitted += 1
            result = self.finished.get()
            self.in_flight -= 1
            self.target_changed = self.target_changed or result.target_changed
            self.on_result(result)

    def drain(self, grace: float) -> None:
        """After an interrupt: start nothing; give in-flight writes `grace` seconds (a second
        interrupt ends it early), then cut them: a write cut mid-request may or may not have
        landed, so it is "unknown" until the verification re-read settles it.

        The main thread's counts may be one off after a Ctrl-C, so the end is when every
        submitted write has put its result and the queue is empty (the pool's shutdown
        still waits for a write the count missed, before verification).
        """
        until = time.monotonic() + grace
        cut = False
        while True:
            try:
                result = self.finished.get(timeout=0.05)
            except Empty:
                if self.finished_count >= self.submitted:
                    return
                if not cut and time.monotonic() >= until:
                    cut = True
                    self.provider.abort()
                continue
            except KeyboardInterrupt:
                until = 0.0  # a second interrupt ends the grace now
                continue
            if cut and result.outcome == "failed":
                result.outcome, result.error = "unknown", f"{UNKNOWN} ({result.error})"
            with contextlib.suppress(KeyboardInterrupt):
                self.on_result(result)


def _merge(slot: ActionResult, res: ActionResult) -> ActionResult:
    slot.outcome, slot.error, slot.ms, slot.wait_ms, slot.started_at, slot.target_changed = (
        res.outcome,
        res.error,
        res.ms,
        res.wait_ms,
        res.started_at,
        res.target_changed,
    )
    return slot


def verify(
    provider: Provider, plan: Plan, before: LiveState, desired: DesiredState
) -> Verification:
    """Re-read the accounts written to and check them as a re-plan would.

    `before` is the live state the plan was made from, `desired` the config it was made
    with. Only the accounts the plan writes to are re-read: writes reach nothing else, and
    re-reading every account in scope would cost a full fleet read at the provider's rate
    limit. The other accounts enter `charges_after` as the pre-apply read showed them.
    """
    ver = Verification(checked=len(plan.changes))
    ids = list(dict.fromkeys(c.account_id for c in plan.changes))
    try:
        after = provider.read(ids)
    except ProviderError as exc:
        ver.error = f"verification read failed: {exc}"
        return ver
    except Exception as exc:  # writes have landed: a failure here must not lose the report
        log.debug("verification read failed", exc_info=True)
        ver.error = f"verification read failed: {type(exc).__name__}: {str(exc)[:200]}"
        return ver
    _check_planned(ver, plan, after)
    _check_unplanned(ver, plan, before, after, desired)
    billing = desired.settings.billing
    scope = [a for a in desired.accounts if a in before.accounts]
    fees = (billing.default_fee, billing.default_account_fee)
    old, _ = silent_resources([before.accounts[a] for a in scope], {}, {}, *fees)
    new, _ = silent_resources(
        [after.accounts.get(a) or before.accounts[a] for a in scope], {}, {}, *fees
    )
    charges = compare_charges(old, new, currency=billing.currency)
    # After an apply, "live now" is the re-read: the same figure as what stays billed.
    charges.live_stopped_monthly = charges.stopped_monthly_total
    ver.charges_after = charges
    return ver


def _check_planned(ver: Verification, plan: Plan, after: LiveState) -> None:
    """(a) every planned field has its value; (c) every planned number is in its account."""
    by_account = {a.id: {n.number: n for n in a.numbers} for a in after.accounts.values()}
    for c in plan.changes:
        acc = after.accounts.get(c.account_id)
        if c.kind == "account":
            actual = acc.status if acc else None
        else:
            num = by_account.get(c.account_id, {}).get(c.number or "")
            if num is None:
                elsewhere = [a for a, nums in by_account.items() if c.number in nums]
                where = f"; it is now in account {elsewhere[0]}" if elsewhere else ""
                ver.mismatch(
                    "moved",
                    c.address,
                    c.field,
                    c.to,
                    None,
                    f"moved: number {c.number} is no longer in account {c.account_id}{where}",
                )
                continue
            actual = getattr(num, c.field)
        if actual == c.to:
            ver.matched += 1
        else:
            ver.mismatch(
                "planned",
                c.address,
                c.field,
                c.to,
                actual,
                f"{c.address.replace('.', ' ', 1)} {c.field}: expected {c.to}, live {actual}",
            )


def _check_unplanned(
    ver: Verification, plan: Plan, before: LiveState, after: LiveState, desired: DesiredState
) -> None:
    """(b) no field of a managed resource the plan did not plan changed meanwhile."""
    planned = {(c.address, c.field) for c in plan.changes}

    def outside(address: str, fld: str, old: str, new: str) -> None:
        if old != new and (address, fld) not in planned:
            ver.mismatch(
                "unplanned",
                address,
                fld,
                old,
                new,
                f"changed outside the plan: {address.replace('.', ' ', 1)} {fld} {old} -> {new}",
            )

    for acc_id, new_acc in after.accounts.items():
        old_acc, wanted = before.accounts.get(acc_id), desired.accounts.get(acc_id)
        if old_acc is None or wanted is None:
            continue
        outside(f"account.{acc_id}", "status", old_acc.status, new_acc.status)
        old_nums = {n.number: n for n in old_acc.numbers}
        new_nums = {n.number: n for n in new_acc.numbers}
        for num in wanted.numbers:
            old, new = old_nums.get(num.number), new_nums.get(num.number)
            if old is None:
                continue  # not live before: the plan reported it
            address = f"number.{num.number}"
            if new is None:
                if not any((address, f) in planned for f in ("calls", "swapping")):
                    ver.mismatch(
                        "moved",
                        address,
                        "number",
                        acc_id,
                        None,
                        f"changed outside the plan: number {num.number} is no longer in "
                        f"account {acc_id}",
                    )
                continue
            outside(address, "calls", old.calls, new.calls)
            outside(address, "swapping", old.swapping, new.swapping)


# --- saved plans ---------------------------------------------------------------------


def check_saved_plan(plan_file: str, fresh: Plan) -> None:
    """Refuse ("plan is stale") unless a fresh plan intends exactly what the saved one did."""
    try:
        with open(plan_file, encoding="utf-8") as fh:
            saved = json.load(fh)
    except (OSError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise ReconcilerError(f"{plan_file}: cannot read a saved plan ({reason})") from None
    if (
        not isinstance(saved, dict)
        or saved.get("format_version") != 1
        or not isinstance(saved.get("checksum"), str)
        or not isinstance(saved.get("provider"), dict)
        or not isinstance(saved.get("changes", []), list)
    ):
        raise ReconcilerError(f"{plan_file}: not a reconciler plan (format_version 1)")
    target = saved["provider"].get("target")
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
