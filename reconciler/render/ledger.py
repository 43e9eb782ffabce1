"""The ledger as text (terminal), Markdown (job summary), CSV (spreadsheets) and JSON.

Strings from the provider, the config and git are neutralised for the terminal and
Markdown (`safe.py`, `markdown.esc`); in CSV a cell that a spreadsheet would run as a
formula (`=`, `+`, `-`, `@`, tab, CR first) is prefixed with `'` (OWASP's advice).
"""

from __future__ import annotations

import csv
import io
import json

from reconciler.ledger import Ledger, LedgerItem
from reconciler.provenance import Provenance
from reconciler.render import describe
from reconciler.render.markdown import blob_base, esc, source_linker
from reconciler.render.safe import neutral

NEVER = (
    "Only releasing a number or cancelling an account ends its fee; reconciler never does either."
)
CSV_FIELDS = (
    "address",
    "kind",
    "account_id",
    "account_name",
    "state",
    "since",
    "days",
    "monthly_fee",
    "currency",
    "estimated",
    "stale",
    "until",
    "note",
    "source",
    "commit",
    "author",
    "date",
    "subject",
    "pr",
    "why_no_provenance",
)


def render_ledger(ledger: Ledger, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(ledger.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return ledger_csv(ledger)
    if fmt == "markdown":
        return ledger_markdown(ledger)
    return ledger_text(ledger)


def set_by(item: LedgerItem) -> str:
    """`set by Jane Ops on 2026-06-01 in #131`, or why nobody is named."""
    if item.provenance is None:
        return item.why_no_provenance or "provenance unknown"
    return Provenance(**item.provenance.model_dump()).short()


def _headline(ledger: Ledger) -> str:
    n = len(ledger.items)
    if not n:
        return f"Ledger: nothing is stopped; 0.00 {ledger.currency}/month billed for resources that cannot ring."
    return (
        f"Ledger: {n} resource{'s' if n != 1 else ''} cannot ring and still bill "
        f"{ledger.total_monthly} {ledger.currency}/month."
    )


def _since(item: LedgerItem) -> str:
    if item.since is None:
        return "since unknown"
    days = f"{item.days} day{'s' if item.days != 1 else ''}"
    return f"since {item.since[:10]} ({days})"


def _details(item: LedgerItem) -> list[str]:
    parts = []
    if item.note:
        parts.append(f'"{item.note}"')
    if item.until:
        parts.append(f"until {item.until}")
    if item.stale:
        parts.append("stale")
    if item.estimated:
        parts.append("fee estimated")
    parts.append(set_by(item))
    if item.source:
        parts.append(item.source)
    return parts


def ledger_text(ledger: Ledger) -> str:
    cur = ledger.currency
    width = max((len(i.monthly_fee) for i in [*ledger.items, *ledger.paused]), default=4)
    out = [_headline(ledger), f"Evaluated at {ledger.evaluated_at}.", ""]

    def rows(items: list[LedgerItem]) -> list[str]:
        lines = []
        for i in items:
            who = neutral(f"{describe(i.address)} ({i.account_name or i.account_id})")
            lines.append(f"  {i.monthly_fee:>{width}} {cur}  {who}  {i.state} {_since(i)}")
            lines.append("      " + neutral(" · ".join(_details(i))))
        return lines

    out += rows(ledger.items)
    if ledger.items:
        out += [
            "",
            f"  Total: {ledger.total_monthly} {cur}/month for {len(ledger.items)} resources.",
        ]
    if ledger.paused:
        out += [
            "",
            "Paused (these still ring but are not swapped on websites; not in the total):",
            "",
        ]
        out += rows(ledger.paused)
    if ledger.provenance_note:
        out += ["", f"Provenance: {neutral(ledger.provenance_note)}."]
    out += ["", NEVER]
    return "\n".join(out) + "\n"


def cell(value: object) -> str:
    """Safe in a Markdown table cell: control characters shown, Markdown escaped."""
    return esc(neutral(str(value)))


def _md_set_by(item: LedgerItem, repo_url: str | None) -> str:
    """`set_by` for a table cell; the PR linked when GitHub's variables name the repo."""
    text = cell(set_by(item))
    p = item.provenance
    if repo_url and p is not None and p.pr is not None:
        number = f"#{p.pr}"
        return text.replace(number, f"[{number}]({repo_url}/pull/{p.pr})")
    return text


def _md_rows(items: list[LedgerItem], cur: str) -> list[str]:
    link = source_linker()
    base = blob_base()
    repo_url = base.split("/blob/", 1)[0] if base else None
    lines = [
        "| Monthly fee | Resource | Account | State | Since | Days | Note | Set by | Source |",
        "|---:|---|---|---|---|---:|---|---|---|",
    ]
    for i in items:
        flags = [f for f, on in (("stale", i.stale), ("estimated", i.estimated)) if on]
        said = [i.note] if i.note else []
        note = " · ".join([*said, *([f"until {i.until}"] if i.until else [])])
        lines.append(
            f"| {cell(i.monthly_fee)} {cell(cur)} | {cell(describe(i.address))}"
            f"{' (' + ', '.join(flags) + ')' if flags else ''} "
            f"| {cell(i.account_id)} {cell(i.account_name)} | {cell(i.state)} "
            f"| {cell(i.since[:10]) if i.since else 'unknown'} "
            f"| {i.days if i.days is not None else ''} | {cell(note)} "
            f"| {_md_set_by(i, repo_url)} | {link(neutral(i.source)) if i.source else ''} |"
        )
    return lines


def ledger_markdown(ledger: Ledger) -> str:
    cur = ledger.currency
    out = [f"### {cell(_headline(ledger))}", "", f"Evaluated at {cell(ledger.evaluated_at)}.", ""]
    if ledger.items:
        out += _md_rows(ledger.items, cur)
        out += ["", f"**Total: {cell(ledger.total_monthly)} {cell(cur)}/month.**"]
    if ledger.paused:
        out += [
            "",
            "#### Paused (these still ring but are not swapped on websites; not in the total)",
            "",
        ]
        out += _md_rows(ledger.paused, cur)
    if ledger.provenance_note:
        out += ["", f"Provenance: {cell(ledger.provenance_note)}."]
    out += ["", NEVER]
    return "\n".join(out) + "\n"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def ledger_csv(ledger: Ledger) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    for i in ledger.items:
        p = i.provenance
        row = {
            **i.model_dump(exclude={"provenance"}),
            "currency": ledger.currency,
            "commit": p.commit if p else None,
            "author": p.author if p else None,
            "date": p.date if p else None,
            "subject": p.subject if p else None,
            "pr": p.pr if p else None,
        }
        writer.writerow([_cell(row[f]) for f in CSV_FIELDS])
    return buf.getvalue()
