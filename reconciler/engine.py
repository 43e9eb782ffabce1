"""The I/O around the pure planner: load the config, open the provider, read live state
for the accounts in scope, and build the plan."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from reconciler.config import load_config
from reconciler.errors import ReconcilerError
from reconciler.models import DesiredState, LiveState, Plan, ProviderInfo
from reconciler.plan import build_plan
from reconciler.providers import open_provider
from reconciler.providers.base import Provider


@dataclass
class Planned:
    desired: DesiredState
    live: LiveState
    plan: Plan
    provider: Provider


def settings_dir(desired: DesiredState) -> Path:
    """Relative provider paths resolve against the settings file's directory."""
    base = desired.settings_path or str(Path(desired.config_dir) / "reconciler.yaml")
    return Path(base).parent


def scope_accounts(desired: DesiredState, accounts: tuple[str, ...] | list[str]) -> DesiredState:
    """Only the --account ids; each must be managed by the config."""
    ids = [str(a) for a in accounts]
    unknown = [a for a in ids if a not in desired.accounts]
    if unknown:
        raise ReconcilerError(
            f"--account {', '.join(unknown)}: not managed by {desired.config_dir} "
            f"(managed: {', '.join(list(desired.accounts)[:10]) or 'none'})"
        )
    return desired.scoped(ids)


def open_for(desired: DesiredState) -> Provider:
    return open_provider(desired.settings, settings_dir(desired))


def shard_accounts(desired: DesiredState, shard: tuple[int, int] | None) -> DesiredState:
    """Only the accounts of shard K of N (see shard.py)."""
    if shard is None:
        return desired
    from reconciler.shard import in_shard

    keep = [a for a in desired.accounts if in_shard(a, shard)]
    return DesiredState(
        desired.config_dir,
        desired.settings,
        desired.settings_path,
        {a: desired.accounts[a] for a in keep},
        desired.digest,
    )


def make_plan(
    config_dir: str,
    accounts: tuple[str, ...] | list[str] = (),
    *,
    provider: Provider | None = None,
    now: datetime | None = None,
    desired: DesiredState | None = None,
    shard: tuple[int, int] | None = None,
) -> Planned:
    """Config + live -> Plan. The caller closes `Planned.provider`."""
    if desired is None:
        desired = load_config(config_dir)
    desired = shard_accounts(scope_accounts(desired, accounts), shard)
    provider = provider or open_for(desired)
    try:
        live = provider.read(list(desired.accounts))
    except BaseException:
        provider.close()
        raise
    plan = build_plan(
        desired,
        live,
        now=now or datetime.now(timezone.utc),
        provider=ProviderInfo(type=provider.kind, target=provider.target),
        scope=[str(a) for a in accounts],
    )
    return Planned(desired, live, plan, provider)
