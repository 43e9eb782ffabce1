"""The plan as Markdown for a pull-request comment or a job summary.

Values from config and live data are escaped (`|`, backticks, HTML), and the comment is
cut with a note before GitHub's 65,536-character limit.
"""

from __future__ import annotations

import html

from reconciler.models import Plan, UpcomingEvent
from reconciler.render import charges_lead, describe, headline, summary_line
from reconciler.render.text import charge_rows

GITHUB_COMMENT_LIMIT = 65_536
MARKER = "<!-- reconciler-plan -->"  # lets CI find and update its own comment
_RESERVE = 600  # room kept for the truncation note and the footer


def esc(value: object) -> str:
    """Safe inside a table cell: HTML escaped, pipes and backticks neutralised, one line."""
    text = html.escape(str(value), quote=False)
    text = text.replace("|", "&#124;").replace("`", "&#96;")
    return " ".join(text.split())


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lines: list[str] = []
        self.size = 0
        self.truncated = 0

    def add(self, line: str, *, force: bool = False) -> bool:
        if not force and self.size + len(line) + 1 > self.limit - _RESERVE:
            self.truncated += 1
            return False
        self.lines.append(line)
        self.size += len(line) + 1
        return True


def render_markdown(plan: Plan, *, mode: str = "plan", limit: int = GITHUB_COMMENT_LIMIT) -> str:
    b = _Budget(limit)
    title = "Drift report" if mode == "drift" else "Plan"
    b.add(MARKER, force=True)
    summary = summary_line(plan, mode).removeprefix("Plan: ").removeprefix("Drift: ")
    errors_line = headline(plan, mode)
    if errors_line:  # a plan with errors says so first (never "No changes")
        b.add(f"### {esc(errors_line)}", force=True)
        b.add("", force=True)
        b.add(f"reconciler {title.lower()}: {esc(summary)}", force=True)
    else:
        b.add(f"### reconciler {title.lower()}: {esc(summary)}", force=True)
    b.add("", force=True)
    s, ch = plan.summary, plan.charges
    b.add(
        "| Stop | Allow | Pause | Resume | Unchanged | Errors | Warnings "
        "| Billed for stopped, now | Once applied |",
        force=True,
    )
    b.add("|---:|---:|---:|---:|---:|---:|---:|---:|---:|", force=True)
    now = f"{ch.live_stopped_monthly} {ch.currency}/month" if ch.live_stopped_monthly else "–"
    b.add(
        f"| {s.stop} | {s.allow} | {s.pause} | {s.resume} | {s.unchanged} | {len(plan.errors)} "
        f"| {len(plan.warnings)} | {now} | {ch.stopped_monthly_total} {ch.currency}/month |",
        force=True,
    )
    b.add("", force=True)
    _callouts(plan, b)
    _errors(plan, b)
    _changes(plan, b, mode)
    _charges(plan, b, mode)
    _upcoming(plan, b)
    _warnings(plan, b)
    _unchanged(plan, b)
    if b.truncated:
        b.add(
            f"> **Truncated:** {b.truncated} more line(s) did not fit in a GitHub comment "
            "(65,536 characters). The full plan is in the JSON artifact "
            "(`reconciler plan --format json`).",
            force=True,
        )
    b.add("", force=True)
    b.add(
        f"<sub>checksum `{plan.checksum}` · config `{plan.config_digest[:19]}…` · "
        f"provider {esc(plan.provider.type)} · generated {plan.generated_at}</sub>",
        force=True,
    )
    return "\n".join(b.lines) + "\n"


def _callouts(plan: Plan, b: _Budget) -> None:
    for f in plan.warnings:
        if f.code == "threshold_exceeded":
            b.add(f"> [!CAUTION]\n> **threshold_exceeded**: {esc(f.message)}", force=True)
            b.add("", force=True)
    if plan.errors:
        b.add(
            f"> [!IMPORTANT]\n> **{len(plan.errors)} error(s): this plan cannot be applied.**",
            force=True,
        )
        b.add("", force=True)


def _errors(plan: Plan, b: _Budget) -> None:
    if not plan.errors:
        return
    b.add("#### Errors")
    b.add("| Code | Resource | Message | Source |")
    b.add("|---|---|---|---|")
    for f in plan.errors:
        b.add(
            f"| `{esc(f.code)}` | {esc(describe(f.address))} | {esc(f.message)} | {esc(f.source or '')} |"
        )
    b.add("")


def _changes(plan: Plan, b: _Budget, mode: str) -> None:
    if not plan.changes:
        return
    b.add("#### Differences" if mode == "drift" else "#### Changes")
    b.add("| Action | Resource | Account | Change | Reason | Note | Source |")
    b.add("|---|---|---|---|---|---|---|")
    for c in plan.changes:
        reason = c.reason.replace("_", " ")
        if c.due:
            reason += ", due (scheduled)"
        if c.window_from:
            reason += f", from {c.window_from}"
        if c.until:
            reason += f", until {c.until}"
        change = f"{esc(c.field)}: {esc(c.from_)} → **{esc(c.to)}**"
        b.add(
            f"| {c.action} | {esc(describe(c.address))} | {esc(c.account_name)} | {change} "
            f"| {reason} | {esc(c.note or '')} | {esc(c.source)} |"
        )
    b.add("")


def _charges(plan: Plan, b: _Budget, mode: str) -> None:
    ch = plan.charges
    b.add("#### Charges")
    b.add(
        f"Stopping calls **does not stop charges**. {esc(charges_lead(plan, mode))} "
        "Only releasing a number or cancelling an account ends its fee; reconciler never does either."
    )
    rows = charge_rows(plan, mode)
    if rows:
        b.add("")
        b.add("| Resource | Monthly fee | Why | |")
        b.add("|---|---:|---|---|")
        for i, tag in rows:
            tag = f"**{tag}**" if tag in ("new", "resumed") else tag
            b.add(
                f"| {esc(describe(i.address))} {esc(i.name)} | {i.monthly_fee} {ch.currency} "
                f"| {esc(i.why)} | {tag} |"
            )
    b.add("")


def _upcoming(plan: Plan, b: _Budget) -> None:
    for line in upcoming_table(plan.upcoming, 30):
        b.add(line)


def upcoming_table(events: list[UpcomingEvent], days: int) -> list[str]:
    """The "Upcoming (N days)" table of window boundaries (none: no lines)."""
    if not events:
        return []
    lines = [
        f"#### Upcoming ({days} days)",
        "| When (UTC) | Action | Resource | Change | Charges a month | Note |",
        "|---|---|---|---|---:|---|",
    ]
    for e in events:
        lines.append(
            f"| {e.at} | {e.action} | {esc(describe(e.address))} {esc(e.name)} "
            f"| {esc(e.field)}: {esc(e.from_)} → {esc(e.to)} "
            f"| {esc(e.monthly_charges_effect or 'unknown')} | {esc(e.note or '')} |"
        )
    return [*lines, ""]


def _warnings(plan: Plan, b: _Budget) -> None:
    if not plan.warnings:
        return
    b.add("#### Warnings")
    for f in plan.warnings:
        src = f" ({esc(f.source)})" if f.source else ""
        b.add(f"- `{esc(f.code)}` {esc(describe(f.address))}: {esc(f.message)}{src}")
    b.add("")


def _unchanged(plan: Plan, b: _Budget) -> None:
    if not plan.accounts:
        return
    b.add(
        f"<details><summary>Accounts ({len(plan.accounts)}); {plan.summary.unchanged} "
        "resources unchanged</summary>"
    )
    b.add("")
    b.add("| Account | Name | Live | Desired | Managed numbers | Changed | Unmanaged |")
    b.add("|---|---|---|---|---:|---:|---:|")
    for a in plan.accounts:
        b.add(
            f"| {esc(a.id)} | {esc(a.name)} | {esc(a.live_status or '')} | {esc(a.desired_status)} "
            f"| {a.managed_numbers} | {a.changed_numbers} | {a.unmanaged_numbers} |"
        )
    b.add("")
    b.add("</details>", force=True)
