"""The plan as Markdown for a pull-request comment or a job summary.

Values from config and live data are escaped (`|`, backticks, brackets, HTML), and the
comment is cut with a note before GitHub's 65,536-character limit. In GitHub Actions each
Source links to its file and line at the commit under review (`source_linker`). Warnings
are grouped by code, the consequential ones first (`WARNING_ORDER`); the per-change
`charges_continue` warnings are folded into the Charges section.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable
from urllib.parse import quote

from reconciler.plan_model import Change, Finding, Plan, UpcomingEvent
from reconciler.render import (
    charges_continue,
    charges_lead,
    describe,
    headline,
    still_billed,
    summary_line,
)
from reconciler.render.text import MAX_FINDINGS_PER_CODE, charge_rows

GITHUB_COMMENT_LIMIT = 65_536
MARKER = "<!-- reconciler-plan -->"  # lets CI find and update its own comment
_RESERVE = 600  # room kept for the truncation note and the footer
# Warning groups that change what a reviewer decides come first, in this order; the rest
# follow alphabetically by code (a stable order: the comment does not reshuffle between
# pushes as counts change).
WARNING_ORDER = ("recent_calls", "threshold_exceeded", "not_effective", "stale_stop")
FOLDED = "charges_continue"  # shown in the Charges section, not under Warnings

_SERVER = re.compile(r"https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?")
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_LINE = re.compile(r"[1-9][0-9]{0,8}")

Linker = Callable[[str | None], str]


def esc(value: object) -> str:
    """Safe inside a table cell: HTML escaped, pipes, backticks and `[` neutralised (no
    injected code span, link or image: each needs an opening bracket), one line."""
    text = html.escape(str(value), quote=False)
    text = text.replace("|", "&#124;").replace("`", "&#96;").replace("[", "&#91;")
    return " ".join(text.split())


def blob_base(env: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """`{GITHUB_SERVER_URL}/{GITHUB_REPOSITORY}/blob/{GITHUB_SHA}/` when all three are set
    and well-formed (http(s)://host, owner/name, 40 or 64 hex digits), else None."""
    server = env.get("GITHUB_SERVER_URL", "").removesuffix("/")
    repository = env.get("GITHUB_REPOSITORY", "")
    sha = env.get("GITHUB_SHA", "").lower()
    if not (_SERVER.fullmatch(server) and _REPOSITORY.fullmatch(repository)):
        return None
    if any(part in (".", "..") for part in repository.split("/")) or not _SHA.fullmatch(sha):
        return None
    return f"{server}/{repository}/blob/{sha}/"


def repo_path(path: str, env: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """`path` relative to the repository root (`GITHUB_WORKSPACE`), or None when it may lie
    outside it: an absolute path outside the workspace, or one that climbs with `..`."""
    workspace = env.get("GITHUB_WORKSPACE", "")
    if os.path.isabs(path) or (workspace and os.path.isabs(workspace)):
        if not workspace or not os.path.isabs(workspace):
            return None
        root = os.path.realpath(workspace)
        try:  # a relative source is from the current directory, as the plan wrote it
            path = os.path.relpath(os.path.realpath(path), root)
        except ValueError:  # another drive (Windows)
            return None
    parts = [p for p in path.replace(os.sep, "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts or os.path.isabs(path):
        return None
    return "/".join(parts)


def source_linker(env: dict[str, str] | os._Environ[str] = os.environ) -> Linker:
    """A function: a `file:line` source -> its escaped text, or a link to that line at the
    commit under review when GitHub's variables allow one (its text then the path in the
    repository)."""
    base = blob_base(env)

    def link(source: str | None) -> str:
        if not source:
            return ""
        text = esc(source)
        path, _, line = source.rpartition(":")
        rel = repo_path(path, env) if base and path and _LINE.fullmatch(line) else None
        if rel is None:
            return text
        # the text as the repository knows the file (no runner's checkout directory), with
        # `]` escaped too: it would end the link text early
        label = esc(rel).replace("]", "&#93;")
        return f"[{label}:{line}]({base}{quote(rel, safe='/')}#L{line})"

    return link


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
    """The plan as a PR comment (`limit` characters at most); Source cells link to GitHub
    when its environment allows (`source_linker`)."""
    b = _Budget(limit)
    link = source_linker()
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
    _errors(plan, b, link)
    _changes(plan, b, mode, link)
    _charges(plan, b, mode, link)
    _upcoming(plan, b)
    _warnings(plan, b, link)
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


def _errors(plan: Plan, b: _Budget, link: Linker) -> None:
    if not plan.errors:
        return
    b.add("#### Errors")
    b.add("| Code | Resource | Message | Source |")
    b.add("|---|---|---|---|")
    for f in plan.errors:
        b.add(
            f"| `{esc(f.code)}` | {esc(describe(f.address))} | {esc(f.message)} | {link(f.source)} |"
        )
    b.add("")


def _changes(plan: Plan, b: _Budget, mode: str, link: Linker) -> None:
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
            f"| {reason} | {esc(c.note or '')} | {link(c.source)} |"
        )
    b.add("")


def _charges(plan: Plan, b: _Budget, mode: str, link: Linker) -> None:
    """The Charges block; each stop's or pause's `charges_continue` warning is folded in:
    its config line on the resource's row, or a line below for what the table omits (a
    pause, which leaves the resource ringing; a stop in a drift report, which lists live)."""
    ch = plan.charges
    b.add("#### Charges")
    b.add(
        f"Stopping calls **does not stop charges**. {esc(charges_lead(plan, mode))} "
        "Only releasing a number or cancelling an account ends its fee; reconciler never does either."
    )
    folded = list(charges_continue(plan).values())
    rows = charge_rows(plan, mode)
    on_rows = {i.address for i, _ in rows}
    source: dict[str, str | None] = {}
    for f in folded:
        source.setdefault(f.address, f.source)
    if rows:
        b.add("")
        b.add("| Resource | Monthly fee | Why | | Source |")
        b.add("|---|---:|---|---|---|")
        for i, tag in rows:
            tag = f"**{tag}**" if tag in ("new", "resumed") else tag
            b.add(
                f"| {esc(describe(i.address))} {esc(i.name)} | {i.monthly_fee} {ch.currency} "
                f"| {esc(i.why)} | {tag} | {link(source.get(i.address))} |"
            )
    changes = {(c.address, c.source): c for c in plan.changes}
    rest = [(f, changes.get((f.address, f.source))) for f in folded if f.address not in on_rows]
    if rest:
        b.add("")
        pauses = all(c is not None and c.action == "pause" for _, c in rest)
        b.add("Pausing does not stop charges either:" if pauses else "Also still billed:")
        for f, c in rest:
            b.add(_billed_line(f, c, ch.currency, link))
    b.add("")


def _billed_line(f: Finding, c: Change | None, currency: str, link: Linker) -> str:
    """`- number +1…, swapping → paused: still billed 3.00 USD/month; calls still connect (src)`"""
    src = f" ({link(f.source)})" if f.source else ""
    if c is None:  # a saved plan whose warning names no change: its message as it is
        return f"- {esc(describe(f.address))}: {esc(f.message)}{src}"
    return (
        f"- {esc(describe(c.address))}, {esc(c.field)} → {esc(c.to)}: "
        f"{esc(still_billed(c, currency))}{src}"
    )


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


def _warnings(plan: Plan, b: _Budget, link: Linker) -> None:
    """Warnings grouped by code with their counts (`WARNING_ORDER` first, then by code),
    at most MAX_FINDINGS_PER_CODE items each; `charges_continue` only counted (see Charges)."""
    groups: dict[str, list[Finding]] = {}
    for f in plan.warnings:
        groups.setdefault(f.code, []).append(f)
    folded = groups.pop(FOLDED, [])
    if not groups and not folded:
        return
    b.add("#### Warnings")
    rank = {code: n for n, code in enumerate(WARNING_ORDER)}
    for code in sorted(groups, key=lambda c: (rank.get(c, len(rank)), c)):
        found = groups[code]
        b.add(f"**{esc(code)}** ({len(found)})")
        for f in found[:MAX_FINDINGS_PER_CODE]:
            src = f" ({link(f.source)})" if f.source else ""
            b.add(f"- {esc(describe(f.address))}: {esc(f.message)}{src}")
        if len(found) > MAX_FINDINGS_PER_CODE:
            b.add(
                f"- … and {len(found) - MAX_FINDINGS_PER_CODE} more {esc(code)} "
                "(in the JSON artifact: `reconciler plan --format json`)"
            )
        b.add("")
    if folded:
        b.add(
            f"**{FOLDED}** ({len(folded)}): what each stop or pause leaves billing is under Charges."
        )
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
