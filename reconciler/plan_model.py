"""The plan as data (SPEC §6): built by `plan.py`, read by the renderers and apply, saved
as JSON by `plan --out` (its schema is `schemas/plan.schema.json`, generated from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PLAN_FORMAT_VERSION = 1
Action = Literal["stop", "allow", "pause", "resume"]


class PlanModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Change(PlanModel):
    """One field of one resource to change."""

    address: str = Field(description="`account.<id>` or `number.<E.164>`.")
    kind: Literal["account", "number"]
    account_id: str
    account_name: str = ""
    number: str | None = None
    number_id: str | None = Field(None, description="The provider's id of the number.")
    field: Literal["status", "calls", "swapping"]
    action: Action
    from_: str = Field(alias="from")
    to: str
    reason: Literal["config", "window_ended", "window_not_started"]
    source: str = Field(description="Where the desired value is written: `file:line`.")
    monthly_fee: str | None = Field(None, description="What the resource bills a month.")
    note: str | None = None
    until: str | None = Field(
        None, description="End of the stop/pause's window while it is ahead or running."
    )
    window_from: str | None = Field(
        None, description="Start (`from`) of the stop/pause's window while it is ahead or running."
    )
    boundary: str | None = Field(
        None, description="The window time (`from` passed, `until` ended) that causes this change."
    )
    due: bool = Field(
        False,
        description="The boundary passed less than policy.due_grace_minutes ago: a scheduled "
        "change, not drift.",
    )
    live_updated: str | None = Field(None, description="When live last changed (ISO-8601).")


class Finding(PlanModel):
    """A warning or an error about one resource."""

    code: str
    address: str
    message: str
    source: str | None = None


class ChargeItem(PlanModel):
    address: str
    kind: Literal["account", "number"]
    account_id: str
    name: str = ""
    monthly_fee: str
    why: str = Field(description="account stopped | calls stopped")
    new: bool = Field(description="Newly stopped by this plan.")
    stopped_since: str | None = None
    estimated: bool = Field(
        False,
        description="The provider reports no fee for it: the billing default is counted.",
    )
    set_by: str | None = Field(
        None, description="Who set its stop, from git: `set by Jane Ops on 2026-06-01 in #131`."
    )


class Charges(PlanModel):
    """What keeps billing for resources that cannot ring (money: two-place decimal strings).

    Plans saved before `live_stopped_monthly`, `resumed_monthly` and `resumed_items`
    existed still load: those keys are then None / empty.
    """

    currency: str
    stopped_monthly_total: str = Field(
        description="Once applied: each stopped account's fee plus every number that cannot "
        "ring, each counted once."
    )
    newly_stopped_monthly: str = Field(description="Part of the total this plan newly stops.")
    live_stopped_monthly: str | None = Field(
        None, description="The same total for live as it is now, before the plan."
    )
    resumed_monthly: str | None = Field(
        None, description="What bills now for nothing and no longer once applied."
    )
    items: list[ChargeItem] = Field(
        default_factory=list, description="Every resource in stopped_monthly_total."
    )
    resumed_items: list[ChargeItem] = Field(
        default_factory=list, description="Every resource in resumed_monthly."
    )
    estimated: int = Field(
        0,
        description="How many items of stopped_monthly_total count a billing default "
        "because the provider reports no fee for them.",
    )


class Summary(PlanModel):
    stop: int = 0
    allow: int = 0
    pause: int = 0
    resume: int = 0
    unchanged: int = 0


class AccountSummary(PlanModel):
    id: str
    name: str = ""
    live_status: str | None = None
    desired_status: str
    managed_numbers: int = 0
    unmanaged_numbers: int = 0
    changed_numbers: int = 0
    source: str = ""


class UpcomingEvent(PlanModel):
    """A window boundary ahead (`reconciler schedule`): the desired value flips at `at`."""

    at: str
    address: str
    kind: Literal["account", "number"]
    field: Literal["status", "calls", "swapping"]
    from_: str = Field(alias="from")
    to: str
    action: Action
    name: str = ""
    note: str | None = None
    source: str
    monthly_charges_effect: str | None = Field(
        None, description="Change in what bills for nothing, a month (signed decimal)."
    )


class ProviderInfo(PlanModel):
    type: str
    target: str


class Plan(PlanModel):
    """What `plan` found: changes, findings and what keeps billing. JSON: SPEC §6."""

    model_config = ConfigDict(
        title="reconciler plan",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    format_version: int = PLAN_FORMAT_VERSION
    generated_at: str
    evaluated_at: str | None = Field(
        None, description="The time windows and ages were judged at (`--at`, else generated_at)."
    )
    config_digest: str
    checksum: str
    provider: ProviderInfo
    scope: list[str] = Field(default_factory=list, description="--account ids; empty = all.")
    shard: str | None = Field(None, description="--shard K/N, when the plan was sharded.")
    changes: list[Change] = Field(default_factory=list)
    warnings: list[Finding] = Field(default_factory=list)
    errors: list[Finding] = Field(default_factory=list)
    unmanaged: list[str] = Field(default_factory=list)
    charges: Charges
    summary: Summary
    accounts: list[AccountSummary] = Field(default_factory=list)
    upcoming: list[UpcomingEvent] = Field(
        default_factory=list, description="Window boundaries in the 30 days after evaluated_at."
    )

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
