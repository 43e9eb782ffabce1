"""Terminal output that reads like `terraform plan`: a line per change, a summary line,
the Charges block, then warnings and errors. Colour only when asked (a TTY, no NO_COLOR)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import click

from reconciler.plan_model import Change, ChargeItem, Finding, Plan
from reconciler.render import charges_lead, describe, headline, summary_line
from reconciler.windows import humanize

ACTION_COLORS = {"stop": "red", "allow": "green", "pause": "yellow", "resume": "green"}
MAX_FINDINGS_PER_CODE = 20
MAX_CHARGE_ITEMS = 12


def render_text(plan: Plan, *, mode: str = "plan", color: bool = False) -> str:
    style: Callable[..., str] = click.style if color else (lambda text, **_: text)
    out: list[str] = []
    head_line = headline(plan, mode)
    if head_line:
        out += [style(head_line, fg="red", bold=True), ""]
    if plan.changes:
        head = (
            "Live differs from the config:"
            if mode == "drift"
            else "reconciler will perform the following actions:"
        )
        out += [style(head, bold=True), ""]
        out += [line for c in plan.changes for line in _change_lines(c, plan, mode, style)]
        out.append("")
    out.append(style(summary_line(plan, mode), bold=True))
    out += ["", *_charges(plan, style, mode)]
    if plan.errors:
        out += [
            "",
            style(f"Errors ({len(plan.errors)}): the plan cannot be applied", fg="red", bold=True),
        ]
        out += _findings(plan.errors, style, "✗", "red")
    if plan.warnings:
        out += ["", style(f"Warnings ({len(plan.warnings)}):", fg="yellow", bold=True)]
        out += _findings(plan.warnings, style, "!", "yellow")
    return "\n".join(out) + "\n"


def _change_lines(c: Change, plan: Plan, mode: str, style: Callable[..., str]) -> list[str]:
    sym = style("~", fg=ACTION_COLORS[c.action], bold=True)
    who = f" ({c.account_name})" if c.account_name else ""
    if mode == "drift":
        value = f"{c.field}: live {c.from_}, config {c.to}"
    else:
        value = f"{c.field}: {c.from_} -> {style(c.to, fg=ACTION_COLORS[c.action])}"
    lines = [f"  {sym} {describe(c.address)}{who}  {value}"]
    detail = [c.action]
    at = plan.evaluated_at or plan.generated_at
    if c.reason != "config":
        detail.append(c.reason.replace("_", " "))
    if c.due:
        detail.append("due (scheduled)")
    if c.window_from:
        starts = _left(c.window_from, at)
        detail.append(f"from {c.window_from}" + (f" (starts in {starts})" if starts else ""))
    if c.until:
        left = _left(c.until, at)
        detail.append(f"until {c.until}" + (f" ({left} left)" if left else ""))
    if mode == "drift" and c.live_updated:
        detail.append(f"live changed {c.live_updated}")
    if c.note:
        detail.append(f'"{c.note}"')
    detail.append(c.source)
    lines.append(style("      " + " · ".join(detail), dim=True))
    return lines


def _left(until: str, now: str) -> str:
    try:
        end = datetime.fromisoformat(until.replace("Z", "+00:00"))
        start = datetime.fromisoformat(now.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return humanize(end - start) if end > start else ""


def charge_rows(plan: Plan, mode: str) -> list[tuple[ChargeItem, str]]:
    """The items to list with their tag: once applied (plan) or live now (drift)."""
    ch = plan.charges
    if mode == "drift":
        rows = [(i, _since(i)) for i in ch.items if not i.new]
        return rows + [
            (i, "; ".join(filter(None, [_since(i), "config resumes it"]))) for i in ch.resumed_items
        ]
    rows = [
        (i, "new" + ("; estimated" if i.estimated else "") if i.new else _since(i))
        for i in ch.items
    ]
    return rows + [(i, "resumed") for i in ch.resumed_items]


def _since(item: ChargeItem) -> str:
    since = f"since {item.stopped_since[:10]}" if item.stopped_since else ""
    return "; ".join(filter(None, [since, "estimated" if item.estimated else "", item.set_by]))


def _charges(plan: Plan, style: Callable[..., str], mode: str) -> list[str]:
    ch = plan.charges
    cur = ch.currency
    out = [style("Charges: stopping calls does not stop charges.", bold=True)]
    rows = charge_rows(plan, mode)
    if not ch.items and not ch.resumed_items:
        out.append(
            "  Nothing managed is stopped: no fees are billed for resources that cannot ring."
        )
        return out
    out.append(f"  {charges_lead(plan, mode)}")
    if rows:
        shown = rows[:MAX_CHARGE_ITEMS]
        width = max(len(describe(i.address)) for i, _ in shown)
        for item, tag in shown:
            out.append(
                f"    {describe(item.address):<{width}}  {item.monthly_fee:>9} {cur}  "
                f"{item.why}{'  (' + tag + ')' if tag else ''}"
            )
        if len(rows) > MAX_CHARGE_ITEMS:
            out.append(f"    … and {len(rows) - MAX_CHARGE_ITEMS} more (see --format json)")
    out.append(
        "  Only releasing a number or cancelling an account ends its fee; "
        "reconciler never does either."
    )
    return out


def _findings(
    findings: list[Finding], style: Callable[..., str], mark: str, color: str
) -> list[str]:
    out: list[str] = []
    per_code: dict[str, int] = {}
    for f in findings:
        per_code[f.code] = per_code.get(f.code, 0) + 1
        if per_code[f.code] > MAX_FINDINGS_PER_CODE:
            continue
        where = f"  ({f.source})" if f.source else ""
        out.append(f"  {style(mark, fg=color)} {f.code}: {f.message}{style(where, dim=True)}")
    for code, n in per_code.items():
        if n > MAX_FINDINGS_PER_CODE:
            out.append(f"  … {n - MAX_FINDINGS_PER_CODE} more {code} (see --format json)")
    return out
