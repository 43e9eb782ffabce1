"""`reconciler doctor`: a read-only first contact with the provider, as a list of checks.

In order: settings and credentials (the variables are named, never their values); the base
URL reached and TLS verified; authentication; the account list and whether the page size
asked for is honoured; for one account (`--account`, else the first managed one) the
account object and its first page of numbers, field by field against what the mapping
(`providers/wire.py`) needs: present, missing or of a wrong type, with sample values and
what a gap means for a plan; then the clock skew from `Date` and the rate-limit headers.

Every check is ok, warn or fail. A check that does not apply (TLS on plain http to a
loopback host, rate-limit headers the provider does not send) is ok with a note. A failure
that later checks depend on ends the run there. Doctor only ever sends GET requests, three
of them against a provider that answers: the account list, the account, its numbers.

Samples are provider text: shortened, neutralised (`render/safe.py`) and redacted. The
field-by-field judgement is `doctor/fields.py`; a finding and the exit code, `check.py`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.doctor.check import RANK, Check, exit_code
from reconciler.doctor.fields import ACCOUNT_FIELDS, field_check, number_fields, sample, shown_text
from reconciler.errors import (
    ConfigError,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderTransientError,
)
from reconciler.models import is_loopback
from reconciler.progress import Cost, took
from reconciler.providers import wire
from reconciler.render.safe import neutral

__all__ = ["Check", "exit_code", "render_json", "render_text", "run_checks"]

if TYPE_CHECKING:
    from reconciler.models import Settings
    from reconciler.providers.transport import Response, Transport

log = logging.getLogger(__name__)

ASKED_PER_PAGE = wire.MAX_PER_PAGE
MAX_SKEW_SECONDS = 60
DOCTOR_RETRY_BUDGET_SECONDS = 15.0  # a first contact answers quickly or says why
ACCOUNT_STATUSES = ("active", "paused", "stopped")
RATE_LIMIT_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "RateLimit",
    "Retry-After",
)
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_SAMPLE_CHARS = 40


# --- the run ---------------------------------------------------------------------------


@dataclass
class _Seen:
    """The answers a run got, for the checks on headers (clock, rate limits)."""

    responses: list[tuple[Response, float]] = field(default_factory=list)  # (response, at)


def run_checks(
    config_dir: str, account: str | None = None, environ: Mapping[str, str] | None = None
) -> list[Check]:
    """Every check in order; stops at a failure that the later checks depend on."""
    env = os.environ if environ is None else environ
    first, settings, settings_dir = check_settings(config_dir)
    checks = [first]
    if settings is None:
        return checks
    if settings.provider.type == "sandbox":
        started = time.monotonic()
        checks += sandbox_checks(config_dir, settings, settings_dir, account)
        log.info("checked the sandbox database in %s", took(time.monotonic() - started))
        return checks
    made, transport = check_credentials(settings, env)
    checks.append(made)
    if transport is None:
        return checks
    cost = Cost(transport)
    try:
        checks += _ctm_checks(config_dir, settings, transport, account)
    finally:
        transport.close()
        log.info("checked %s %s", transport.base, cost)
    return [Check(c.name, c.status, transport.redact(c.detail)) for c in checks]


def _ctm_checks(
    config_dir: str, settings: Settings, transport: Transport, account: str | None
) -> list[Check]:
    seen = _Seen()
    listing, error = _get(transport, "/accounts", seen, page=1, per_page=ASKED_PER_PAGE)
    checks = contact_checks(settings, error)
    if error is not None:
        return checks
    listed_check, page = check_account_list(listing)
    checks.append(listed_check)
    if page is None:
        return checks + header_checks(seen, settings)
    checks.append(check_page_size(page))
    chosen, account_id = pick_account(config_dir, account, page.get("accounts") or [])
    checks.append(chosen)
    if account_id is not None:
        checks += account_checks(transport, seen, settings, account_id)
    return checks + header_checks(seen, settings)


def _get(
    transport: Transport, path: str, seen: _Seen, **params: Any
) -> tuple[Any, ProviderError | None]:
    """One GET: (decoded JSON, None) or (None, the error)."""
    try:
        resp = transport.exchange("GET", path, params=params or None)
        seen.responses.append((resp, time.time()))
        return transport.json("GET", path, resp), None
    except ProviderError as exc:
        return None, exc


# --- settings and credentials ------------------------------------------------------------


def check_settings(config_dir: str) -> tuple[Check, Settings | None, Path]:
    """The settings file loads; which provider it names."""
    from reconciler.config import load_settings_only
    from reconciler.engine import settings_dir_of

    try:
        settings, path = load_settings_only(config_dir)
    except ConfigError as exc:
        shown = "; ".join(str(issue) for issue in exc.issues[:3])
        more = f" (and {len(exc.issues) - 3} more)" if len(exc.issues) > 3 else ""
        return Check("settings", "fail", f"{shown}{more}"), None, Path(config_dir)
    where = path or f"{config_dir} (no settings file: defaults)"
    cfg = settings.provider
    if cfg.type == "sandbox":
        detail = f"{where}: provider sandbox (embedded SQLite database)"
    else:
        detail = f"{where}: provider ctm at {cfg.base_url}"
    return Check("settings", "ok", detail), settings, settings_dir_of(config_dir, path)


def check_credentials(
    settings: Settings, environ: Mapping[str, str]
) -> tuple[Check, Transport | None]:
    """Both key variables are set; the transport is built the way the ctm provider builds it."""
    from reconciler.providers.transport import RetryPolicy, transport_for

    cfg = settings.provider
    names = f"{cfg.access_key_env} and {cfg.secret_key_env}"
    budget = min(cfg.retry_budget_seconds, DOCTOR_RETRY_BUDGET_SECONDS)
    try:
        transport = transport_for(
            settings.provider,
            environ,
            retry=RetryPolicy(budget_seconds=budget),
            reason_of=wire.error_reason,
        )
    except ProviderAuthError as exc:
        return Check("credentials", "fail", f"{exc}; the keys are read from {names}"), None
    except ProviderError as exc:
        return Check("credentials", "fail", str(exc)), None
    return Check("credentials", "ok", f"{names} are set (values not shown)"), transport


# --- reaching the provider ----------------------------------------------------------------

_ANSWERED = re.compile(r"^ctm: GET \S+: [1-5][0-9][0-9]\b")


def contact_checks(settings: Settings, error: ProviderError | None) -> list[Check]:
    """Connection, TLS and authentication, from how the first request ended."""
    from urllib.parse import urlsplit

    base = settings.provider.base_url
    parts = urlsplit(base)
    origin = f"{parts.scheme}://{parts.netloc}"
    text = str(error) if error is not None else ""
    if isinstance(error, ProviderTransientError) and not _ANSWERED.match(text):
        return [Check("connection", "fail", text)]  # no answer: refused, DNS, timeout
    checks = [Check("connection", "ok", f"{origin} answered")]
    if "TLS error" in text:
        return [*checks, Check("tls", "fail", text)]
    if parts.scheme == "http" and is_loopback(parts.hostname or ""):
        tls = Check(
            "tls", "ok", f"does not apply: plain http to the loopback host {parts.hostname}"
        )
    else:
        tls = Check("tls", "ok", f"certificate of {parts.hostname} verified")
    checks.append(tls)
    if isinstance(error, ProviderAuthError):
        return [*checks, Check("authentication", "fail", text)]
    if error is not None:
        hint = "; check base_url" if isinstance(error, ProviderNotFound) else ""
        return [*checks, Check("account list", "fail", text + hint)]
    keys = f"{settings.provider.access_key_env} and {settings.provider.secret_key_env}"
    return [*checks, Check("authentication", "ok", f"the keys in {keys} were accepted")]


def check_account_list(page: Any) -> tuple[Check, dict | None]:
    """GET /accounts answers a page with an `accounts` list."""
    items = page.get("accounts") if isinstance(page, dict) else None
    if not isinstance(items, list):
        return Check(
            "account list", "fail", "GET /accounts: no 'accounts' list in the answer"
        ), None
    total = page.get("total_entries")
    of = f" of {total}" if isinstance(total, int) and not isinstance(total, bool) else ""
    ids = [sample(a.get("id")) for a in items[:3] if isinstance(a, dict)]
    shown = f" (e.g. {', '.join(ids)})" if ids else ""
    return Check("account list", "ok", f"page 1 lists {len(items)}{of} accounts{shown}"), page


def check_page_size(page: dict) -> Check:
    """The page holds what `per_page=150` asked for (a smaller page size works, at a cost)."""
    name = "page size"
    items = len(page.get("accounts") or [])
    said = page.get("per_page") if type(page.get("per_page")) is int else None
    total = page.get("total_entries") if type(page.get("total_entries")) is int else None
    size = said or ASKED_PER_PAGE
    if total is not None and items < min(total, size):
        stated = f"per_page={said}" if said is not None else "no per_page"
        return Check(
            name,
            "warn",
            f"asked for per_page={ASKED_PER_PAGE}: page 1 holds {items} of {total} accounts "
            f"({stated}); reads take a page shorter than its size for the last one",
        )
    if said == ASKED_PER_PAGE:
        return Check(name, "ok", f"per_page={ASKED_PER_PAGE} honoured")
    if said is not None and said < ASKED_PER_PAGE:
        return Check(
            name,
            "warn",
            f"asked for per_page={ASKED_PER_PAGE}, the provider answers per_page={said}: "
            f"reads still follow every page, with up to {ASKED_PER_PAGE / max(said, 1):.0f} "
            "times as many requests",
        )
    if said is not None:
        return Check(name, "warn", f"asked for per_page={ASKED_PER_PAGE}, the answer says {said}")
    if total is not None:
        return Check(name, "ok", f"page 1 holds {items} of {total} accounts (per_page not stated)")
    return Check(name, "ok", f"cannot tell: {items} accounts on page 1, no per_page or total")


# --- which account -------------------------------------------------------------------------


def pick_account(
    config_dir: str, account: str | None, listed: list[Any]
) -> tuple[Check, str | None]:
    """`--account`, else the first managed account, else the first listed one."""
    from reconciler.config import load_config

    if account is not None:
        return Check("account", "ok", f"{account} (--account)"), str(account)
    first = next((a.get("id") for a in listed if isinstance(a, dict)), None)
    fallback = None if first is None else str(first)
    instead = f"checking the first listed account {sample(first)}"
    try:
        desired = load_config(config_dir)
    except ConfigError as exc:
        accounts_dir = os.path.join(config_dir, "accounts")
        if fallback is not None and all(i.path == accounts_dir for i in exc.issues):
            return Check("account", "ok", f"no account is managed yet: {instead}"), fallback
        n = len(exc.issues)
        why = f"the account files have {n} problem{'s' if n != 1 else ''} (`reconciler validate`)"
        if fallback is None:
            return Check("account", "warn", f"{why} and the provider lists no accounts"), None
        return Check("account", "warn", f"{why}: {instead}"), fallback
    if desired.accounts:
        acc = next(iter(desired.accounts.values()))
        return Check(
            "account", "ok", f"{acc.id} (first managed account, {acc.source.path})"
        ), acc.id
    if fallback is None:
        return Check("account", "warn", "no account is managed and the provider lists none"), None
    return Check("account", "ok", f"no account is managed yet: {instead}"), fallback


# --- the account and its numbers, field by field ---------------------------------------


def _seg(value: str) -> str:
    from urllib.parse import quote

    return quote(str(value), safe="")


def account_checks(
    transport: Transport, seen: _Seen, settings: Settings, account_id: str
) -> list[Check]:
    """The account object and page 1 of its numbers, against the fields the mapping needs."""
    try:
        wire.check_id(account_id, "account")
    except ProviderError:
        return [Check("account object", "fail", f"{sample(account_id)} is not a usable id")]
    path = f"/accounts/{_seg(account_id)}"
    data, error = _get(transport, path, seen)
    if isinstance(error, ProviderNotFound):
        return [
            Check("account object", "fail", f"the provider has no account {account_id} ({error})")
        ]
    if error is not None or not isinstance(data, dict):
        return [Check("account object", "fail", str(error or f"GET {path}: not an object"))]
    checks = [Check("account object", "ok", f"GET {path} answered")]
    checks += [field_check("account", spec, [data], account_id) for spec in ACCOUNT_FIELDS]
    page, error = _get(transport, path + "/numbers", seen, page=1, per_page=ASKED_PER_PAGE)
    items = page.get("numbers") if isinstance(page, dict) else None
    if error is not None or not isinstance(items, list):
        return [
            *checks,
            Check("numbers", "fail", str(error or f"GET {path}/numbers: no 'numbers' list")),
        ]
    if not items:
        return [
            *checks,
            Check(
                "numbers",
                "warn",
                f"account {account_id} lists no numbers: their fields could not be checked "
                "(try --account with an account that has numbers)",
            ),
        ]
    total = page.get("total_entries")
    of = f" of {total}" if type(total) is int else ""
    checks.append(
        Check("numbers", "ok", f"page 1 lists {len(items)}{of} numbers of account {account_id}")
    )
    fields = number_fields(str(settings.billing.default_number_monthly_fee))
    return checks + [field_check("number", spec, items, account_id) for spec in fields]


# --- headers: clock and rate limits ------------------------------------------------------


def header_checks(seen: _Seen, settings: Settings) -> list[Check]:
    if not seen.responses:
        return []
    resp, at = seen.responses[0]
    return [check_clock(resp, at), check_rate_limits(seen.responses[-1][0], settings)]


def check_clock(resp: Response, at: float) -> Check:
    """The provider's `Date` against this machine's clock."""
    date = resp.headers.get("Date")
    if date is None:
        return Check("clock", "ok", "does not apply: the provider sends no Date header")
    try:
        then = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return Check("clock", "warn", f"unreadable Date header {shown_text(date)!r}: skew unknown")
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    skew = then.timestamp() - at
    side = "ahead of" if skew > 0 else "behind"
    said = f"{abs(skew):.0f} s {side} this machine's clock (Date: {shown_text(date)})"
    if abs(skew) > MAX_SKEW_SECONDS:
        return Check(
            "clock",
            "warn",
            f"the provider's clock is {said}: time windows are judged by this machine's "
            "clock; check which one is wrong (NTP)",
        )
    return Check("clock", "ok", f"the provider's clock is within {MAX_SKEW_SECONDS} s: {said}")


def check_rate_limits(resp: Response, settings: Settings) -> Check:
    """Rate-limit headers the provider sends, if any, beside the client's own limit."""
    headers = {k.lower(): v for k, v in resp.headers.items()}
    found = [
        f"{name}: {shown_text(headers[name.lower()])}"
        for name in RATE_LIMIT_HEADERS
        if name.lower() in headers
    ]
    own = f"the client keeps to requests_per_second={settings.provider.requests_per_second:g}"
    if not found:
        return Check(
            "rate limits", "ok", f"does not apply: the provider sends no rate-limit headers; {own}"
        )
    return Check("rate limits", "ok", f"{', '.join(found)}; {own}")


# --- the embedded sandbox ------------------------------------------------------------------


def sandbox_checks(
    config_dir: str, settings: Settings, settings_dir: Path, account: str | None
) -> list[Check]:
    """The database is there and usable (or its seed is); the HTTP checks do not apply."""
    from reconciler.providers.sandbox.store import SandboxStore

    cfg = settings.provider
    db = Path(os.path.normpath(settings_dir / cfg.database))
    seed = Path(os.path.normpath(settings_dir / cfg.seed)) if cfg.seed else None
    http = Check(
        "http",
        "ok",
        "does not apply: the embedded sandbox needs no network, keys, TLS or paging",
    )
    if not db.exists():
        if seed is not None and seed.is_file():
            note = f"{db} not created yet: the first command that reads creates it from {seed}"
            return [Check("sandbox database", "ok", note), http]
        return [Check("sandbox database", "fail", f"{db}: no such database and no seed file"), http]
    try:
        with SandboxStore(db) as store:
            n_accounts, n_numbers = store.counts()
            checks = [
                Check(
                    "sandbox database", "ok", f"{db}: {n_accounts} accounts, {n_numbers} numbers"
                ),
                http,
            ]
            listed = store.list_accounts(1, 1)[0]
            chosen, account_id = pick_account(config_dir, account, listed)
            checks.append(chosen)
            if account_id is not None:
                checks.append(_sandbox_account(store, account_id))
    except ProviderError as exc:
        return [Check("sandbox database", "fail", str(exc)), http]
    return checks


def _sandbox_account(store: Any, account_id: str) -> Check:
    try:
        acc = store.get_account(account_id)
    except ProviderNotFound:
        return Check("account object", "fail", f"the sandbox database has no account {account_id}")
    return Check("account object", "ok", f"{sample(acc.get('name'))}, {acc.get('status')}")


# --- output ---------------------------------------------------------------------------------

_MARK = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


def render_text(checks: list[Check]) -> str:
    """One line per check (marker, name, detail), then a summary line."""
    width = max((len(c.name) for c in checks), default=0)
    lines = [
        f"{_MARK[c.status]:<4}  {neutral(c.name):<{width}}  {neutral(c.detail)}" for c in checks
    ]
    count = {s: sum(1 for c in checks if c.status == s) for s in RANK}
    warnings = f"{count['warn']} warning{'s' if count['warn'] != 1 else ''}"
    failures = f"{count['fail']} failure{'s' if count['fail'] != 1 else ''}"
    total = f"{len(checks)} check{'s' if len(checks) != 1 else ''}"
    lines.append(f"doctor: {total}, {count['ok']} ok, {warnings}, {failures}")
    return "\n".join(lines) + "\n"


def render_json(checks: list[Check]) -> str:
    """`{"checks": [{"name", "status", "detail"}]}`."""
    rows = [
        {"name": neutral(c.name), "status": c.status, "detail": neutral(c.detail)} for c in checks
    ]
    return json.dumps({"checks": rows}, indent=2) + "\n"
