"""Data types: desired state (account files), settings, and live state.

Desired state and settings are strict pydantic models: unknown keys are errors and nothing
is silently coerced (YAML's `off` stays a bool and is refused for `calls`). Their JSON
Schemas are generated from these classes (`reconciler schema`).

Live state is plain slotted dataclasses: a fleet holds 100,000 numbers and per-item pydantic
validation in that loop would dominate a plan's run time; the providers convert wire data
once, in one place (`providers/wire.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from reconciler.phone import E164_PATTERN, is_valid_e164
from reconciler.phone import display as display_number

AccountStatus = Literal["active", "paused", "stopped"]
Calls = Literal["allowed", "stopped"]
Swapping = Literal["active", "paused"]


def _valid_number(value: str) -> str:
    # the pattern (kept for editors' JSON Schema) only gives the shape; the library decides
    if not is_valid_e164(value):
        raise ValueError("invalid_phone_number")  # config_messages says why
    return value


E164 = Annotated[str, StringConstraints(pattern=E164_PATTERN), AfterValidator(_valid_number)]
MONEY_PATTERN = r"^[0-9]+(\.[0-9]{1,2})?$"


class StrictModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def in_utc(value: datetime | None) -> datetime | None:
    """A window time in UTC; one that UTC cannot represent (year 1 or 9999 at an extreme
    offset) is an error, not an OverflowError later."""
    if value is None:
        return None
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("time_out_of_range") from None


def check_window(start: datetime | None, until: datetime | None, narrowing: bool) -> None:
    """`from`/`until` representable in UTC, only on a stop or pause, and `from` before
    `until` (SPEC §3)."""
    in_utc(start)
    in_utc(until)
    if (start is not None or until is not None) and not narrowing:
        raise ValueError("window_on_default")
    if start is not None and until is not None and start >= until:
        raise ValueError("from_not_before_until")


# --- desired state: one account file -------------------------------------------------


class AccountSpec(StrictModel):
    """The `account:` block of an account file."""

    # `until` only on a stop or pause: the same rule as the validator, for editors.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {
                "anyOf": [
                    {"required": ["until"], "properties": {"until": {"type": "string"}}},
                    {"required": ["from"], "properties": {"from": {"type": "string"}}},
                ]
            },
            "then": {
                "required": ["status"],
                "properties": {"status": {"enum": ["paused", "stopped"]}},
            },
        }
    )

    id: Annotated[int, Field(ge=0)] | Annotated[str, StringConstraints(min_length=1)] = Field(
        description="Provider account id (int or string; compared as string)."
    )
    name: str | None = Field(None, description="Optional label; a mismatch with live is a warning.")
    status: AccountStatus = Field("active", description="active | paused | stopped")
    from_: AwareDatetime | None = Field(
        None,
        alias="from",
        strict=False,
        description="ISO-8601 time with timezone; only with paused/stopped. Before it the "
        "desired status is active (a stop or pause planned ahead).",
    )
    until: AwareDatetime | None = Field(
        None,
        strict=False,
        description="ISO-8601 time with timezone; only with paused/stopped. From then on the "
        "desired status is active again.",
    )
    note: str | None = Field(None, description="Free text shown in plans: why, who, ticket.")
    protected: bool = Field(
        False, description="true: a plan that would stop or pause it is an error."
    )

    @model_validator(mode="after")
    def _window_needs_a_stop(self) -> AccountSpec:
        if self.from_ is not None or self.until is not None:  # most entries have no window
            check_window(self.from_, self.until, self.status != "active")
        return self


class NumberSpec(StrictModel):
    """One entry of `numbers:` in an account file."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {
                "anyOf": [
                    {"required": ["until"], "properties": {"until": {"type": "string"}}},
                    {"required": ["from"], "properties": {"from": {"type": "string"}}},
                ]
            },
            "then": {
                "anyOf": [
                    {"required": ["calls"], "properties": {"calls": {"const": "stopped"}}},
                    {"required": ["swapping"], "properties": {"swapping": {"const": "paused"}}},
                ]
            },
        }
    )

    number: E164 = Field(description='E.164 number, quoted: "+14105550101". Unique in the config.')
    calls: Calls = Field("allowed", description="allowed | stopped")
    swapping: Swapping = Field("active", description="active | paused")
    from_: AwareDatetime | None = Field(
        None,
        alias="from",
        strict=False,
        description="ISO-8601 time with timezone; only with calls: stopped or swapping: paused. "
        "Before it calls are allowed and swapping active.",
    )
    until: AwareDatetime | None = Field(
        None,
        strict=False,
        description="ISO-8601 time with timezone; only with calls: stopped or swapping: paused.",
    )
    note: str | None = Field(None, description="Free text shown in plans.")
    protected: bool = Field(
        False, description="true: a plan that would stop or pause it is an error."
    )

    @model_validator(mode="after")
    def _window_needs_a_stop(self) -> NumberSpec:
        if self.from_ is not None or self.until is not None:  # 100,000 entries: keep it cheap
            check_window(
                self.from_, self.until, self.calls == "stopped" or self.swapping == "paused"
            )
        return self


class AccountFile(StrictModel):
    """An account file: `config/accounts/<name>.yaml`."""

    model_config = ConfigDict(
        title="reconciler account file",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    account: AccountSpec
    numbers: list[NumberSpec] = Field(default_factory=list)


# --- settings: reconciler.yaml ------------------------------------------------------


class ProviderSettings(StrictModel):
    type: Literal["sandbox", "ctm"] = Field("sandbox", description="sandbox | ctm")
    database: str = Field(
        "../.reconciler/sandbox.db",
        description="sandbox: SQLite file, relative to the settings file.",
    )
    seed: str | None = Field(
        None,
        description="sandbox: fleet file loaded when the database does not exist yet "
        "(relative to the settings file).",
    )
    base_url: str = Field(
        "https://api.calltrackingmetrics.com/api/v1",
        description="ctm: API base URL; https only (http only for loopback hosts).",
    )
    access_key_env: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = Field(
        "CTM_ACCESS_KEY", description="Name of the environment variable holding the access key."
    )
    secret_key_env: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = Field(
        "CTM_SECRET_KEY", description="Name of the environment variable holding the secret key."
    )
    concurrency: Annotated[int, Field(ge=1, le=64)] = Field(8, description="Parallel requests.")
    requests_per_second: Annotated[float, Field(gt=0, le=10000)] = Field(
        10, description="Client-side rate limit (token bucket)."
    )
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        30,
        description="ctm: total deadline of one attempt of a request: connect, headers and "
        "body together, whatever the server does.",
    )
    retry_budget_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        120,
        description="ctm: total deadline of one request with all its retries; no attempt "
        "runs past it.",
    )

    @field_validator("base_url", mode="after")
    @classmethod
    def _https_or_loopback(cls, v: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme == "https" and parts.hostname:
            return v.rstrip("/")
        if parts.scheme == "http" and is_loopback(parts.hostname or ""):
            return v.rstrip("/")
        raise ValueError("base_url must be an https:// URL (plain http only for loopback hosts)")


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class PolicySettings(StrictModel):
    max_change_fraction: Annotated[float, Field(ge=0, le=1)] = Field(
        0.3,
        description="A plan that changes whether more than this share of an account's live "
        "numbers can ring or are swapped (accounts with >= 10; an account status change "
        "counts all), or the status of more than this share of the accounts in scope (plans "
        "with >= 10), needs --force.",
    )
    unmanaged: Literal["ignore", "report", "error"] = Field(
        "report", description="Live numbers of a managed account that no file lists."
    )
    stale_stop_days: Annotated[int, Field(ge=0)] = Field(
        30, description="Stopped longer than this: listed with its cost."
    )
    due_grace_minutes: Annotated[int, Field(ge=0, le=10080)] = Field(
        60,
        description="A window boundary this recent is 'due' (for the schedule), not drift.",
    )


class BillingSettings(StrictModel):
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = Field(
        "USD", description="ISO 4217 code used in charge figures."
    )
    default_number_monthly_fee: (
        Annotated[str, StringConstraints(pattern=MONEY_PATTERN)] | Annotated[float, Field(ge=0)]
    ) = Field("3.00", description='Used when the provider reports no fee; e.g. "3.00".')

    default_account_monthly_fee: (
        Annotated[str, StringConstraints(pattern=MONEY_PATTERN)] | Annotated[float, Field(ge=0)]
    ) = Field(
        "0.00",
        description="Used when the provider reports no account subscription fee; "
        'e.g. "49.00". Figures that use it are marked estimated.',
    )

    @field_validator("default_number_monthly_fee", "default_account_monthly_fee", mode="after")
    @classmethod
    def _money(cls, v: str | float) -> str:
        return str(Decimal(str(v)).quantize(Decimal("0.01")))

    @property
    def default_fee(self) -> Decimal:
        return Decimal(str(self.default_number_monthly_fee))

    @property
    def default_account_fee(self) -> Decimal:
        return Decimal(str(self.default_account_monthly_fee))


class Settings(StrictModel):
    """`config/reconciler.yaml`: every key optional."""

    model_config = ConfigDict(
        title="reconciler settings",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    provider: ProviderSettings = Field(default_factory=ProviderSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    billing: BillingSettings = Field(default_factory=BillingSettings)


# --- desired state after loading (with where each entry came from) ------------------


@dataclass(frozen=True, slots=True)
class Source:
    """Where a desired entry is written: file path (as given) and 1-based line."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"

    def at(self, lines: dict[str, int], key: str) -> str:
        """`file:line` of `key` when it is written (`lines`: key -> line), else of the entry."""
        return f"{self.path}:{lines.get(key, self.line)}"


@dataclass(slots=True)  # not frozen: frozen __init__ is 3x slower at 100,000 numbers
class DesiredNumber:
    number: str
    account_id: str
    calls: Calls
    swapping: Swapping
    until: datetime | None
    note: str | None
    protected: bool
    source: Source
    # line of each key written in the file (calls, swapping, until, ...), for annotations
    field_lines: dict[str, int] = field(default_factory=dict, compare=False)
    start: datetime | None = None  # `from`: the stop/pause holds from then on


@dataclass(slots=True)
class DesiredAccount:
    id: str
    name: str | None
    status: AccountStatus
    until: datetime | None
    note: str | None
    protected: bool
    source: Source
    numbers: tuple[DesiredNumber, ...]
    field_lines: dict[str, int] = field(default_factory=dict, compare=False)
    start: datetime | None = None  # `from`


@dataclass(frozen=True)
class DesiredState:
    """Everything the config says: settings plus managed accounts keyed by id (string)."""

    config_dir: str
    settings: Settings
    settings_path: str | None
    accounts: dict[str, DesiredAccount]
    digest: str  # sha256 over the config files' bytes, "sha256:<hex>"

    def scoped(self, account_ids: list[str] | None) -> DesiredState:
        """Only the given accounts, in that order (all when None)."""
        if account_ids is None:
            return self
        keep = {a: self.accounts[a] for a in account_ids if a in self.accounts}
        return DesiredState(self.config_dir, self.settings, self.settings_path, keep, self.digest)


# --- live state ---------------------------------------------------------------------


@dataclass(slots=True)
class LiveNumber:
    """A tracking number as the provider reports it (`active` -> calls, `paused` -> swapping)."""

    id: str
    account_id: str
    number: str
    # None: the provider does not report it (no `active` / `paused` / `source` / `stats.calls`
    # in its number object). The plan never changes a field it cannot see.
    calls: Calls | None
    swapping: Swapping | None
    online: bool | None  # its source is on-site (dynamic): only those can be paused
    name: str = ""
    formatted: str = ""
    source_name: str = ""
    renewal_fee: Decimal | None = None  # stats.renewal_costs
    recent_calls: int | None = 0  # stats.calls: calls in the last 30 days
    active_changed: datetime | None = None
    updated: datetime | None = None

    def display(self) -> str:
        """How a person reads the number: the provider's `formatted`, else the library's
        format (national in the NANP, international elsewhere); made only when shown."""
        return self.formatted or display_number(self.number)


@dataclass(slots=True)
class LiveAccount:
    id: str
    name: str
    # as the provider reports it: anything but active/paused/stopped (`canceled`, "" when
    # missing) is `unsupported_status` in a plan, and that account is not planned
    status: str
    monthly_fee: Decimal | None = None
    updated: datetime | None = None
    numbers: list[LiveNumber] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ListedAccount:
    """An account as the provider's account list shows it (`reconciler accounts`).

    `status` is the provider's word as it is (`canceled` too: listing never fails on a
    status the reconciler cannot manage; None when not reported); `numbers` is its number
    count, None when not counted."""

    id: str
    name: str
    status: str | None
    numbers: int | None = None


@dataclass(slots=True)
class LiveState:
    """Live accounts keyed by id; `missing` lists requested ids the provider does not know."""

    accounts: dict[str, LiveAccount]
    missing: list[str] = field(default_factory=list)


def jsonable(value: Any) -> Any:
    """Decimal -> str, datetime -> ISO-8601 Z, recursively; for JSON output."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
