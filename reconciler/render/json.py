"""The plan as JSON (SPEC §6, `format_version` 1; schema: schemas/plan.schema.json)."""

from __future__ import annotations

import json

from reconciler.plan_model import Plan


def render_json(plan: Plan) -> str:
    return json.dumps(plan.to_json_dict(), indent=2, ensure_ascii=False) + "\n"
