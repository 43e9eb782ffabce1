"""Reading a saved plan (`plan --out FILE`) back: untrusted input, one line when it is not
a plan."""

from __future__ import annotations

import json

from reconciler.errors import ReconcilerError
from reconciler.plan_model import Plan

MAX_PLAN_BYTES = 256 * 1024 * 1024  # a plan of 100,000 changes is about 60 MB


def load_plan(path: str) -> Plan:
    """The plan saved in `path`, or a ReconcilerError naming the file and what is wrong."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_PLAN_BYTES + 1)
        if len(raw) > MAX_PLAN_BYTES:
            raise ReconcilerError(f"{path}: larger than a saved plan can be")
        data = json.loads(raw)
    except OSError as exc:
        raise ReconcilerError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except RecursionError:
        raise ReconcilerError(f"{path}: not a reconciler plan (nested too deeply)") from None
    except ValueError as exc:
        raise ReconcilerError(
            f"{path}: not a reconciler plan (not JSON: {str(exc)[:80]})"
        ) from None
    if not isinstance(data, dict) or data.get("format_version") != 1:
        raise ReconcilerError(f"{path}: not a reconciler plan (format_version 1)")
    from pydantic import ValidationError

    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "the top level"
        raise ReconcilerError(
            f"{path}: not a reconciler plan ({where}: {first.get('msg', 'invalid')[:80]})"
        ) from None
    except RecursionError:
        raise ReconcilerError(f"{path}: not a reconciler plan (nested too deeply)") from None
