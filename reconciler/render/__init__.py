"""Renderers: each reads a Plan (never changes it) and returns text.

`mode` is "plan" (what apply would do) or "drift" (live differs from config).
"""

from __future__ import annotations

from reconciler.models import Plan

FORMATS = ("text", "json", "markdown", "github")


def render(plan: Plan, fmt: str, *, mode: str = "plan", color: bool = False) -> str:
    """The plan in one of FORMATS."""
    if fmt == "json":
        from reconciler.render.json import render_json

        return render_json(plan)
    if fmt == "markdown":
        from reconciler.render.markdown import render_markdown

        return render_markdown(plan, mode=mode)
    if fmt == "github":
        from reconciler.render.github import render_github

        return render_github(plan, mode=mode)
    from reconciler.render.text import render_text

    return render_text(plan, mode=mode, color=color)


def summary_line(plan: Plan, mode: str = "plan") -> str:
    """`Plan: 2 to stop, 1 to allow, 1 to pause, 0 to resume; 9 unchanged.`"""
    s = plan.summary
    if mode == "drift":
        n = len(plan.changes)
        if not n:
            return f"No drift: live matches the config ({s.unchanged} resources checked)."
        return (
            f"Drift: {n} difference{'s' if n != 1 else ''} between live and config "
            f"({s.stop} would stop, {s.allow} allow, {s.pause} pause, {s.resume} resume); "
            f"{s.unchanged} in sync."
        )
    if not plan.changes:
        return f"No changes. Live matches the config ({s.unchanged} resources checked)."
    return (
        f"Plan: {s.stop} to stop, {s.allow} to allow, {s.pause} to pause, "
        f"{s.resume} to resume; {s.unchanged} unchanged."
    )


def describe(change_address: str) -> str:
    """`number.+1410…` -> `number +1410…`; `account.1001` -> `account 1001`."""
    kind, _, ident = change_address.partition(".")
    return f"{kind} {ident}"
