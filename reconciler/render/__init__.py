"""Renderers: each reads a Plan (never changes it) and returns text.

`mode` is "plan" (what apply would do) or "drift" (live differs from config).
"""

from __future__ import annotations

from reconciler.plan_model import Change, Finding, Plan

FORMATS = ("text", "json", "markdown", "github")
ACTIONS = ("stop", "allow", "pause", "resume")


def render(plan: Plan, fmt: str, *, mode: str = "plan", color: bool = False) -> str:
    """The plan in one of FORMATS (every format but JSON with provider text neutralised)."""
    if fmt == "json":
        from reconciler.render.json import render_json

        return render_json(plan)  # JSON escapes control characters itself
    from reconciler.render.safe import neutral_plan

    plan = neutral_plan(plan)
    if fmt == "markdown":
        from reconciler.render.markdown import render_markdown

        return render_markdown(plan, mode=mode)
    if fmt == "github":
        from reconciler.render.github import render_github

        return render_github(plan, mode=mode)
    from reconciler.render.text import render_text

    return render_text(plan, mode=mode, color=color)


def headline(plan: Plan, mode: str = "plan") -> str | None:
    """`Plan has 2 error(s) and cannot be applied.` when it has errors, else None."""
    n = len(plan.errors)
    if not n:
        return None
    if mode == "drift":
        return f"Drift check has {n} error(s): live could not be fully compared with the config."
    return f"Plan has {n} error(s) and cannot be applied."


def summary_line(plan: Plan, mode: str = "plan") -> str:
    """`Plan: 2 to stop, 1 to allow, 1 to pause, 0 to resume; 9 unchanged.`"""
    s = plan.summary
    if mode == "drift":
        drifted = [c for c in plan.changes if not c.due]
        n, due = len(drifted), len(plan.changes) - len(drifted)
        scheduled = f"; {due} due (scheduled), not drift" if due else ""
        if not n and not plan.errors:
            return (
                f"No drift: live matches the config ({s.unchanged} resources checked{scheduled})."
            )
        counts = {a: sum(1 for c in drifted if c.action == a) for a in ACTIONS}
        return (
            f"Drift: {n} difference{'s' if n != 1 else ''} between live and config "
            f"({counts['stop']} would stop, {counts['allow']} allow, {counts['pause']} pause, "
            f"{counts['resume']} resume); {s.unchanged} in sync{scheduled}."
        )
    if not plan.changes and not plan.errors:
        return f"No changes. Live matches the config ({s.unchanged} resources checked)."
    return (
        f"Plan: {s.stop} to stop, {s.allow} to allow, {s.pause} to pause, "
        f"{s.resume} to resume; {s.unchanged} unchanged."
    )


def charges_lead(plan: Plan, mode: str = "plan") -> str:
    """Money as it is: what live bills now for what cannot ring, then once applied.

    `Now 5.00 USD/month billed for 1 stopped resource; once applied 43.00 (+38.00 newly
    stopped, −0.00 resumed).` Plans saved before the live figure existed give only the
    once-applied figure.
    """
    lead = _lead(plan, mode)
    n = plan.charges.estimated
    if n:
        lead += (
            f" Estimated: {n} fee{'s' if n != 1 else ''} the provider does not report "
            f"{'are' if n != 1 else 'is'} counted at the billing defaults."
        )
    return lead


def _lead(plan: Plan, mode: str) -> str:
    ch = plan.charges
    cur = ch.currency
    after = f"{ch.stopped_monthly_total} {cur}/month"
    if ch.live_stopped_monthly is None:
        return (
            f"Once applied, {after} keeps billing for {_resources(len(ch.items))} that cannot ring."
        )
    now_count = sum(1 for i in ch.items if not i.new) + len(ch.resumed_items)
    now = f"{ch.live_stopped_monthly} {cur}/month billed for {_resources(now_count)}"
    delta = f"(+{ch.newly_stopped_monthly} newly stopped, −{ch.resumed_monthly} resumed)"
    if mode == "drift":
        lead = f"Live now bills {ch.live_stopped_monthly} {cur}/month for {_resources(now_count)} that cannot ring"
        if not plan.changes:
            return lead + "."
        return f"{lead}; matching the config would make it {ch.stopped_monthly_total} {delta}."
    if not plan.changes:
        return f"Now {now} that cannot ring; nothing in this plan changes it."
    return f"Now {now}; once applied {ch.stopped_monthly_total} {delta}."


def _resources(n: int) -> str:
    if n == 0:
        return "stopped resources"
    return f"{n} stopped resource{'s' if n != 1 else ''}"


def charges_continue(plan: Plan) -> dict[tuple[str, str | None], Finding]:
    """The plan's `charges_continue` warnings by (address, source): one per stop or pause."""
    return {(f.address, f.source): f for f in plan.warnings if f.code == "charges_continue"}


def still_billed(c: Change, currency: str) -> str:
    """What a stop or pause leaves billing: `still billed 3.00 USD/month until released`."""
    fee = f"{c.monthly_fee} {currency}/month" if c.monthly_fee else "its fee"
    if c.kind == "account" and c.action == "stop":
        return f"still billed: subscription {fee} and every number's fee"
    if c.kind == "account":
        return f"still billed: subscription {fee}; calls still connect and bill per minute"
    if c.action == "stop":
        return f"still billed {fee} until released"
    return f"still billed {fee}; calls still connect"


def drifted(plan: Plan) -> bool:
    """Live differs from the config, apart from changes due by the schedule."""
    return any(not c.due for c in plan.changes)


def describe(change_address: str) -> str:
    """`number.+1410…` -> `number +1410…`; `account.1001` -> `account 1001`."""
    kind, _, ident = change_address.partition(".")
    return f"{kind} {ident}" if ident else kind
