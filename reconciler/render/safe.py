"""Neutralised text: provider and config strings never reach a terminal or a GitHub
workflow log raw.

Control characters (C0, DEL, C1), line and paragraph separators and bidirectional
overrides are shown as escapes (`\\x1b`, `\\u202e`): an account name cannot retitle a
terminal, ring its bell, or start a new line with `::error` in `--format github`.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.plan_model import Plan

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


_C0_IN_JSON = re.compile(r"\\[nrtbf]|\\u00")  # how JSON writes C0 controls
_HIGH = re.compile("[\x80-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _unsafe_json(text: str) -> bool:
    """Whether a JSON text may hold an unsafe character; str methods first (memchr speed:
    a fleet plan's JSON is megabytes)."""
    if "\\" in text and _C0_IN_JSON.search(text):
        return True
    return "\x7f" in text or (not text.isascii() and _HIGH.search(text) is not None)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutral(text: str) -> str:
    """`text` with every control character shown as an escape; one line, always."""
    return _UNSAFE.sub(_escape, text)


def _walk(value: Any) -> Any:
    if isinstance(value, str):
        return neutral(value)
    if isinstance(value, list):
        return [_walk(v) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v) for k, v in value.items()}
    return value


def neutral_plan(plan: Plan) -> Plan:
    """`plan` with every string neutralised (for text, Markdown, GitHub); the plan itself
    when nothing needs it (the common case: no copy)."""
    # The check runs on pydantic's JSON (built in Rust: a fleet plan lists thousands of
    # charge items), where C0 controls appear as JSON escapes; a false alarm (a literal
    # backslash-n in a note) only costs the slow path, never a missed character.
    if not _unsafe_json(plan.model_dump_json()):
        return plan
    return Plan.model_validate(_walk(plan.model_dump(by_alias=True)))
