"""JSON Schemas generated from the models, checked in under `schemas/`.

Editors validate config files as you type through the `# yaml-language-server: $schema=`
line; a test fails when the checked-in files differ from what the models generate.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any


def _account() -> dict[str, Any]:
    from reconciler.models import AccountFile

    return AccountFile.model_json_schema()


def _settings() -> dict[str, Any]:
    from reconciler.models import Settings

    return Settings.model_json_schema()


def _plan() -> dict[str, Any]:
    from reconciler.plan_model import Plan

    return Plan.model_json_schema(by_alias=True, mode="serialization")


def _ledger() -> dict[str, Any]:
    from reconciler.ledger import Ledger

    return Ledger.model_json_schema(mode="serialization")


GENERATORS: dict[str, Callable[[], dict[str, Any]]] = {
    "account.schema.json": _account,
    "ledger.schema.json": _ledger,
    "settings.schema.json": _settings,
    "plan.schema.json": _plan,
}


def render_schemas() -> dict[str, str]:
    """File name -> JSON text, deterministic (sorted keys, trailing newline)."""
    return {
        name: json.dumps(gen(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, gen in sorted(GENERATORS.items())
    }


def write_schemas(out_dir: str, check: bool = False) -> dict[str, str]:
    """Write the schemas; return the names that differed, each with why ("missing" or "out
    of date"). With check=True, write nothing."""
    from reconciler.atomic import write_atomic

    changed = {}
    for name, text in render_schemas().items():
        path = os.path.join(out_dir, name)
        try:
            with open(path, encoding="utf-8") as fh:
                current: str | None = fh.read()
        except FileNotFoundError:
            current = None
        except (OSError, UnicodeDecodeError):
            current = ""
        if current != text:
            changed[name] = "missing" if current is None else "out of date"
            if not check:
                write_atomic(path, text)
    return changed
