"""What a config error says: pydantic's error turned into `what is wrong; what to write`,
located on the data the user wrote (not on pydantic's internal union tags).

No message repeats pydantic's own wording ("Input should be ...", "Value error, ..."): each
error type that the models can raise has its own sentence here, and the value is echoed as
the file writes it (`14105550188`, `off`), not as Python read it.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, NamedTuple

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from reconciler.phone import is_valid_e164, problem
from reconciler.yamlsafe import Path_

TIME_EXAMPLE = "2026-12-01T17:00:00Z"
NUMBER_EXAMPLE = '"+14105550101"'
# what a YAML boolean written for a word most likely meant
ENUM_HINTS: dict[str, dict[bool, str]] = {
    "status": {False: "stopped", True: "active"},
    "calls": {False: "stopped", True: "allowed"},
    "swapping": {False: "paused", True: "active"},
    "unmanaged": {False: "ignore", True: "report"},
}
ALLOWED: dict[str, tuple[str, ...]] = {
    "status": ("active", "paused", "stopped"),
    "calls": ("allowed", "stopped"),
    "swapping": ("active", "paused"),
    "type": ("sandbox", "ctm"),
    "unmanaged": ("ignore", "report", "error"),
}
PATTERN_HINTS = {
    "access_key_env": "the name of an environment variable (letters, digits and _, not "
    "starting with a digit), e.g. access_key_env: CTM_ACCESS_KEY",
    "secret_key_env": "the name of an environment variable (letters, digits and _, not "
    "starting with a digit), e.g. secret_key_env: CTM_SECRET_KEY",
    "currency": "a three-letter ISO 4217 code in capitals, e.g. currency: USD",
}
FEE_KEYS = ("default_number_monthly_fee", "default_account_monthly_fee")
SECTION_EXAMPLES = {
    "provider": "provider: then type: sandbox on the next line, indented",
    "policy": "policy: then unmanaged: report on the next line, indented",
    "billing": 'billing: then default_number_monthly_fee: "3.00" on the next line, indented',
}
NUMERIC_TYPES = {
    "int_type",
    "int_parsing",
    "int_from_float",
    "float_type",
    "float_parsing",
    "finite_number",
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
}
MAPPING_TYPES = {"model_type", "dict_type", "model_attributes_type"}


class Found(NamedTuple):
    """One error as written: where (1-based, with the item's number), the value as the file
    writes it, and the last key."""

    where: str
    got: str
    key: str
    value: Any
    written: str | None


def data_loc(data: Any, loc: tuple[Any, ...], err_type: str) -> Path_:
    """Trim pydantic's loc to the part that names real data (drops union member tags)."""
    out: list[Any] = []
    node = data
    for part in loc:
        if err_type == "invalid_key" and part == "None" and isinstance(node, dict):
            part = None  # pydantic names a null key "None"
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


def show_loc(loc: Path_, data: Any) -> str:
    """`numbers[4] (+14105550104).protected`: positions 1-based, an item named by its number."""
    text = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            number = item.get("number") if isinstance(item, dict) else None
            text += f"[{part + 1}]" + (f" ({number})" if isinstance(number, str) else "")
            node = item
        else:
            text += ("." if text else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return text or "file"


def message(
    model: type[BaseModel], err: dict[str, Any], loc: Path_, data: Any, written: str | None
) -> str:
    """The sentence for one pydantic error at `loc` (already trimmed by data_loc)."""
    etype, value = err["type"], err.get("input")
    key = str(loc[-1]) if loc and isinstance(loc[-1], str) else ""
    f = Found(show_loc(loc, data), _got(value, written), key, value, written)
    if etype == "extra_forbidden":
        return _unknown_key(model, loc, key)
    if etype == "missing":
        return _missing(loc, f)
    if etype == "invalid_key":
        allowed = ", ".join(_allowed_keys(model, loc[:-1]))
        if value is None:
            return f"a key is empty (a `:` or `? ` with no name before it); write one of {allowed}"
        kind = "a boolean" if isinstance(value, bool) else "a number"
        return f"key {_show(value)} is not a name (YAML reads it as {kind}); write one of {allowed}"
    if etype == "literal_error" and key in ALLOWED:
        return _enum_message(f)
    if key == "number" and len(loc) == 3:
        return _number_message(value, written)
    if key in ("from", "until"):
        return _window_message(key, etype, loc, f, str(err.get("msg", "")))
    if key == "id" and len(loc) == 2:
        why = f", and YAML reads {f.got} as a boolean" if isinstance(value, bool) else ""
        return (
            f"account id must be a number or a non-empty string (got {f.got}{why}); "
            "write e.g. id: 1001"
        )
    if key in FEE_KEYS:
        return (
            f"{f.where} must be an amount of money, at most 2 decimals (got {f.got}); "
            f'write e.g. {key}: "3.00"'
        )
    if etype in MAPPING_TYPES:
        return _mapping_message(loc, f)
    first = next(iter(value), "") if isinstance(value, dict) and value else value
    if etype == "list_type" and isinstance(first, str) and re.match(r"-[^\s-]", first):
        item = value.get(first) if isinstance(value, dict) else None
        shown = f'"{item}"' if isinstance(item, str) else "..."
        return f"{f.where}: a list item needs a space after the `-`; write - {first[1:]}: {shown}"
    if etype == "list_type":
        return (
            f"{f.where} must be a list (got {f.got}); write one `- number: ...` item per "
            f"number, each on its own line under numbers:, e.g. - number: {NUMBER_EXAMPLE}"
        )
    if etype == "bool_type":
        quoted = isinstance(value, str) and value.lower() in ("true", "false", "yes", "no")
        return f"{f.where}: write true or false{' without quotes' if quoted else ''} (got {f.got})"
    if etype == "string_type":
        return _text_message(f)
    field = _field(model, loc)
    if etype in NUMERIC_TYPES and field is not None:
        return _numeric_message(f, field)
    if etype == "string_pattern_mismatch" and key in PATTERN_HINTS:
        return f"{f.where} must be {PATTERN_HINTS[key]} (got {f.got})"
    if etype == "value_error" and key == "base_url":
        return (
            f"{f.where} must be an https:// URL (http:// only for localhost, 127.0.0.1 or ::1) "
            f"(got {f.got}); write e.g. base_url: https://api.calltrackingmetrics.com/api/v1"
        )
    what = field.description if field is not None and field.description else None
    return f"{f.where}: not a valid value (got {f.got})" + (f"; expected: {what}" if what else "")


def _got(value: Any, written: str | None) -> str:
    if written:
        return written if len(written) <= 60 else written[:57] + "..."
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return _show(value)


def _unknown_key(model: type[BaseModel], loc: Path_, key: str) -> str:
    allowed = _allowed_keys(model, loc[:-1])
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key {key!r}; {hint}allowed here: {', '.join(allowed)}"


def _missing(loc: Path_, f: Found) -> str:
    if loc == ("account",):
        return (
            "no `account:` in this file; write the account it manages first, e.g.\n"
            "    account:\n      id: 1001"
        )
    if loc == ("account", "id"):
        return (
            "account: missing `id`; write the provider's account id under account:, e.g. id: 1001"
        )
    parent = f.where.rsplit(".", 1)[0]
    if f.key == "number":
        return f"{parent}: missing `number:`; write it first in the item, e.g. - number: {NUMBER_EXAMPLE}"
    return f"{parent}: missing `{f.key}`; write {f.key}: under it"


def _enum_message(f: Found) -> str:
    choices = ALLOWED[f.key]
    if isinstance(f.value, bool):
        word = ENUM_HINTS.get(f.key, {}).get(f.value)
        write = f"write {f.key}: {word} (one of" if word else "write one of"
        return (
            f"{f.where}: YAML reads {f.got} as a boolean ({str(f.value).lower()}), not a word; "
            f"{write} {', '.join(choices)}{')' if word else ''}"
        )
    if isinstance(f.value, str) and f.value.lower() in choices:
        return f"{f.where}: write {f.value.lower()!r} in lowercase; one of {', '.join(choices)}"
    close = difflib.get_close_matches(str(f.value), choices, n=1)
    mean = f"; did you mean {f.key}: {close[0]}?" if close else ""
    return f"{f.where} must be one of {', '.join(choices)} (got {f.got}){mean}"


def _number_message(value: Any, written: str | None) -> str:
    shown = written or _show(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if shown.startswith("+"):
            return (
                f"quote the number: YAML reads an unquoted {shown} as an integer (without "
                f'the +); write number: "{shown}"'
            )
        digits = str(value)
        guess = next((c for c in (f"+{digits}", f"+1{digits}") if is_valid_e164(c)), None)
        write = f'number: "{guess}"' if guess else f"e.g. number: {NUMBER_EXAMPLE}"
        return (
            f"number {shown} is not quoted and has no +: YAML reads it as an integer; write "
            f"it quoted, with + and the country code: {write}"
        )
    why = problem(value) if isinstance(value, str) else "not an E.164 number"
    if why == "not an E.164 number":
        return (
            f"not an E.164 number: {shown}; write it quoted with + and the country "
            f"code, digits only, e.g. number: {NUMBER_EXAMPLE}"
        )
    if why is not None and "not in E.164 form" in why:
        canonical = why.rsplit(" ", 1)[-1]
        return f'not an E.164 number: {shown} {why}; write number: "{canonical}"'
    return (
        f"not a valid phone number: {shown} {why or 'is not valid'} (libphonenumber's "
        f"metadata); write the whole number with its country code, e.g. number: {NUMBER_EXAMPLE}"
    )


def _mapping_message(loc: Path_, f: Found) -> str:
    if len(loc) == 2 and loc[0] == "numbers":
        number = f.value if isinstance(f.value, str) and f.value.startswith("+") else None
        example = f'"{number}"' if number else NUMBER_EXAMPLE
        what = (
            "is empty (a `-` with nothing after it)"
            if f.value is None
            else (f"must be a mapping of keys (got {f.got})")
        )
        return (
            f"{f.where} {what}; write each item as `number:` and its settings, e.g.\n"
            f"    - number: {example}\n      calls: stopped"
        )
    if loc == ("account",):
        return (
            f"account must be a mapping of keys (got {f.got}); write its keys indented "
            "under it, e.g.\n    account:\n      id: 1001"
        )
    example = SECTION_EXAMPLES.get(f.key, f"{f.key}: then its keys indented under it")
    return f"{f.where} must be a mapping of keys (got {f.got}); write {example}"


def _text_message(f: Found) -> str:
    if isinstance(f.value, bool | int | float) and f.written:
        return (
            f"{f.where} must be text; YAML reads {f.got} as a "
            f"{'boolean' if isinstance(f.value, bool) else 'number'}: quote it, "
            f'{f.key}: "{f.written}"'
        )
    if f.value is None:
        return f"{f.where} is empty; write a value, or remove the key"
    return f"{f.where} must be one line of text (got {f.got}); write e.g. {f.key}: some text"


def _numeric_message(f: Found, field: FieldInfo) -> str:
    whole = field.annotation is int
    bounds = []
    for m in field.metadata:
        if isinstance(m, at.Ge):
            bounds.append(f"at least {m.ge}")
        elif isinstance(m, at.Gt):
            bounds.append(f"more than {m.gt}")
        elif isinstance(m, at.Le):
            bounds.append(f"at most {m.le}")
        elif isinstance(m, at.Lt):
            bounds.append(f"less than {m.lt}")
    expect = ("a whole number" if whole else "a number") + (
        f" {' and '.join(bounds)}" if bounds else ""
    )
    if isinstance(f.value, bool):
        why = f"YAML reads {f.got} as a boolean"
    elif isinstance(f.value, str):
        why = f"{f.got} is text" + (
            ", not a number: remove the quotes" if _is_number(f.value) else ""
        )
    elif isinstance(f.value, float) and f.value != f.value:
        why = f"{f.got} is not a number"
    elif isinstance(f.value, float) and whole:
        why = f"{f.got} is not a whole number"
    elif isinstance(f.value, int | float):
        why = f"{f.got} is out of range"
    else:
        why = f"got {f.got}"
    return f"{f.where} must be {expect} ({why}); write e.g. {f.key}: {field.default}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _window_message(key: str, etype: str, loc: Path_, f: Found, msg: str) -> str:
    """`from`/`until` problems, each with what to write instead."""
    if "from_not_before_until" in msg:
        return (
            "from must be before until: the stop or pause holds from `from` (inclusive) "
            "to `until` (exclusive); swap them or fix the dates"
        )
    if "time_out_of_range" in msg:
        return (
            f"{key} is outside the times UTC can represent (got {f.got}); write a "
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
    value = f.value
    if isinstance(value, str) and re.search(r"T\d\d:\d\d:60", value):
        return (
            f"{key}: a leap second (:60) cannot be represented; write the second before "
            f"(:59) or the next minute, e.g. {key}: {value.replace(':60', ':59', 1)}"
        )
    return f"{key} must be an ISO-8601 time with timezone, e.g. {key}: {TIME_EXAMPLE} (got {f.got})"


def _field(model: type[BaseModel], loc: Path_) -> FieldInfo | None:
    """The pydantic field that `loc` names (list positions skipped)."""
    current: Any = model
    field: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        name = next((n for n, fi in fields.items() if (fi.alias or n) == part), None)
        if name is None:
            return None
        field = fields[name]
        ann = field.annotation
        args = getattr(ann, "__args__", None)
        current = args[0] if args and hasattr(args[0], "model_fields") else ann
    return field


def _allowed_keys(model: type[BaseModel], at_: Path_) -> list[str]:
    current: Any = model
    for part in at_:
        if isinstance(part, int):
            continue
        field = _field(current, (part,)) if hasattr(current, "model_fields") else None
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", None)
        current = args[0] if args and hasattr(args[0], "model_fields") else ann
    fields = getattr(current, "model_fields", {})
    return [fi.alias or n for n, fi in fields.items()]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
