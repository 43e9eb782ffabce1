"""What a config error says: pydantic's error turned into `what is wrong; what to write`,
located on the data the user wrote (not on pydantic's internal union tags)."""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import BaseModel

from reconciler.phone import problem
from reconciler.yamlsafe import Path_

TIME_EXAMPLE = "2026-12-01T17:00:00Z"
ENUM_HINTS: dict[str, dict[bool, str]] = {
    "calls": {False: "stopped", True: "allowed"},
    "swapping": {False: "paused", True: "active"},
}
ALLOWED: dict[str, tuple[str, ...]] = {
    "status": ("active", "paused", "stopped"),
    "calls": ("allowed", "stopped"),
    "swapping": ("active", "paused"),
    "type": ("sandbox", "ctm"),
    "unmanaged": ("ignore", "report", "error"),
}


def data_loc(data: Any, loc: tuple[Any, ...], err_type: str) -> Path_:
    """Trim pydantic's loc to the part that names real data (drops union member tags)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            node = node[part]
        elif isinstance(node, dict) and err_type in ("missing", "extra_forbidden"):
            out.append(part)
            break
        else:
            break
        out.append(part)
    if err_type == "value_error" and isinstance(node, dict):
        # a window rule of the entry is broken: point at its `from` (else its `until`)
        key = next((k for k in ("from", "until") if k in node), None)
        if key:
            out.append(key)
    return tuple(out)


def message(model: type[BaseModel], err: dict[str, Any], loc: Path_) -> str:
    etype, value = err["type"], err.get("input")
    key = str(loc[-1]) if loc and isinstance(loc[-1], str) else ""
    where = ".".join(str(p) for p in loc) or "file"
    if etype == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key {key!r}; {hint}allowed here: {', '.join(allowed)}"
    if etype == "missing":
        return f"missing required key {key!r}"
    if etype == "literal_error" and key in ALLOWED:
        return _enum_message(key, value)
    if key == "number":
        return _number_message(value)
    if key in ("from", "until", "from_"):
        return _window_message(key.rstrip("_"), etype, loc, value, str(err.get("msg", "")))
    if key == "id" and len(loc) == 2:
        return "account id must be a number or a non-empty string, e.g. `id: 1001`"
    if etype == "bool_type":
        return f"{where}: write true or false (got {_show(value)})"
    if etype in ("model_type", "dict_type", "model_attributes_type"):
        return f"{where} must be a mapping of keys (got {_show(value)})"
    if etype == "list_type":
        return f'{where} must be a list: one `- number: "+1..."` entry per number'
    if etype == "string_type":
        return f"{where} must be text; quote it (got {_show(value)})"
    if etype == "string_pattern_mismatch" and key == "default_number_monthly_fee":
        return f'{where} must be an amount like "3.00" (got {_show(value)})'
    return f"{where}: {err['msg']} (got {_show(value)})"


def _enum_message(key: str, value: Any) -> str:
    choices = ALLOWED[key]
    if isinstance(value, bool) and key in ENUM_HINTS:
        word = ENUM_HINTS[key][value]
        return (
            f"{key}: YAML reads on/off/yes/no/true/false as a boolean ({str(value).lower()}); "
            f"write {key}: {word}"
        )
    if isinstance(value, str) and value.lower() in choices:
        return f"{key}: write {value.lower()!r} in lowercase; one of {', '.join(choices)}"
    return f"{key} must be one of {', '.join(choices)} (got {_show(value)})"


def _number_message(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return (
            f"quote the number: YAML reads an unquoted +{value} as an integer; "
            f'write number: "+{value}"'
        )
    why = problem(value) if isinstance(value, str) else "not an E.164 number"
    if why == "not an E.164 number":
        return (
            f"not an E.164 number: {_show(value)}; write it quoted with + and the country "
            'code, digits only, e.g. number: "+14105550101"'
        )
    if why is not None and "not in E.164 form" in why:
        canonical = why.rsplit(" ", 1)[-1]
        return f'not an E.164 number: {_show(value)} {why}; write number: "{canonical}"'
    return (
        f"not a valid phone number: {_show(value)} {why or 'is not valid'} (libphonenumber's "
        'metadata); write the whole number with its country code, e.g. number: "+14105550101"'
    )


def _window_message(key: str, etype: str, loc: Path_, value: Any, msg: str) -> str:
    """`from`/`until` problems, each with what to write instead."""
    if "from_not_before_until" in msg:
        return (
            "from must be before until: the stop or pause holds from `from` (inclusive) "
            "to `until` (exclusive); swap them or fix the dates"
        )
    if "time_out_of_range" in msg:
        return (
            f"{key} is outside the times UTC can represent (got {_show(value)}); write a "
            f"real date, e.g. {key}: {TIME_EXAMPLE}"
        )
    if etype == "value_error":
        if loc and loc[0] == "account":
            return (
                "from/until only apply to a stop or pause: set status: stopped or paused, "
                "or remove from/until"
            )
        return (
            "from/until only apply to a stop or pause: set calls: stopped or swapping: "
            "paused, or remove from/until"
        )
    if etype == "timezone_aware":
        return f"{key} needs a timezone: write e.g. {key}: {TIME_EXAMPLE} (Z = UTC)"
    if isinstance(value, str) and re.search(r"T\d\d:\d\d:60", value):
        return (
            f"{key}: a leap second (:60) cannot be represented; write the second before "
            f"(:59) or the next minute, e.g. {key}: {value.replace(':60', ':59', 1)}"
        )
    return (
        f"{key} must be an ISO-8601 time with timezone, e.g. {key}: {TIME_EXAMPLE} "
        f"(got {_show(value)})"
    )


def _allowed_keys(model: type[BaseModel], at: Path_) -> list[str]:
    current: Any = model
    for part in at:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", None)
        current = args[0] if args and hasattr(args[0], "model_fields") else ann
    return list(getattr(current, "model_fields", {}))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
