"""GitHub Actions output: workflow annotations on the config lines, the text plan for the
log, and the Markdown appended to $GITHUB_STEP_SUMMARY when that is set.

One annotation per changed line: a stop's or pause's notice says what stays billed
(`…; still billed 3.00 USD/month until released`) instead of a second `charges_continue`
annotation on the same line.
"""

from __future__ import annotations

import os

from reconciler.errors import ReconcilerError
from reconciler.plan_model import Plan
from reconciler.render import charges_continue, describe, still_billed
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, message: str, source: str | None, title: str) -> str:
    """`::warning file=…,line=…,title=…::message` (GitHub workflow command syntax)."""
    props = [f"title={_escape_property(title)}"]
    if source and ":" in source:
        path, _, line = source.rpartition(":")
        workspace = os.environ.get("GITHUB_WORKSPACE")
        if workspace and os.path.isabs(path):
            path = os.path.relpath(path, workspace)
        props = [f"file={_escape_property(path)}", f"line={line}", *props]
    return f"::{level} {','.join(props)}::{_escape_data(message)}"


def render_github(plan: Plan, *, mode: str = "plan") -> str:
    lines = [annotation("error", f.message, f.source, f"reconciler: {f.code}") for f in plan.errors]
    lines += [
        annotation("warning", f.message, f.source, f"reconciler: {f.code}")
        for f in plan.warnings
        if f.code != "charges_continue"
    ]
    verb = "differs" if mode == "drift" else "will"
    billed = charges_continue(plan)
    for c in plan.changes:
        text = (
            f"{describe(c.address)}: {c.field} {c.from_} -> {c.to} ({c.action}"
            f"{', ' + c.reason.replace('_', ' ') if c.reason != 'config' else ''})"
        )
        if (c.address, c.source) in billed:
            text += f"; {still_billed(c, plan.charges.currency)}"
        lines.append(annotation("notice", text, c.source, f"reconciler {verb} {c.action}"))
    summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_path:
        try:
            with open(summary_path, "a", encoding="utf-8") as fh:
                fh.write(render_markdown(plan, mode=mode) + "\n")
        except OSError as exc:
            raise ReconcilerError(
                f"GITHUB_STEP_SUMMARY {summary_path}: cannot append the job summary "
                f"({exc.strerror or exc})"
            ) from None
    return "\n".join(lines) + ("\n" if lines else "") + render_text(plan, mode=mode, color=False)
