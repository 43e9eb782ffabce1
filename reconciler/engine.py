"""The I/O around the pure planner: load the config, open the provider, read live state
for the accounts in scope, and build the plan."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from reconciler.config import load_config, load_settings_only
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.models import DesiredAccount, DesiredState, LiveState, Settings
from reconciler.plan import build_plan
from reconciler.plan_model import Plan, ProviderInfo
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
    return settings_dir_of(desired.config_dir, desired.settings_path)


def settings_dir_of(config_dir: str, settings_path: str | None) -> Path:
    """The settings file's directory (the config dir when there is no settings file)."""
    return Path(settings_path or str(Path(config_dir) / "reconciler.yaml")).parent


def scope_accounts(desired: DesiredState, accounts: tuple[str, ...] | list[str]) -> DesiredState:
    """Only the --account ids; each must be managed by the config."""
    ids = [str(a) for a in accounts]
    unknown = [a for a in ids if a not in desired.accounts]
    if unknown:
        raise ReconcilerError(
            f"--account {', '.join(unknown)}: not managed by {desired.config_dir} "
            f"(managed: {', '.join(list(desired.accounts)[:10]) or 'none'})"
        )
    return desired.scoped(ids or None)


def open_for(desired: DesiredState) -> Provider:
    return open_provider(desired.settings, settings_dir(desired))


def in_scope(account_id: str, accounts: set[str], shard: tuple[int, int] | None) -> bool:
    """Whether --account and --shard select this account."""
    if accounts and account_id not in accounts:
        return False
    if shard is None:
        return True
    from reconciler.shard import in_shard

    return in_shard(account_id, shard)


class ReadAhead:
    """Starts reading live state while the config is still loading (a `load_config` hook).

    Loading 1,000 account files is about a second of CPU work; reading those accounts over
    HTTP is mostly waiting on the network. Each account in scope is handed to the
    provider's `prefetch` as soon as its file is loaded, so the two overlap. The plan is
    the same as without it: `read` still gets the whole list once the config is complete.

    Only for the HTTP provider (`for_config`): the sandbox reads in two queries anyway, and
    opening it can create its database from the seed, which must not happen for a config
    that turns out to be invalid. If the provider cannot be opened (a key is not set, say),
    nothing is prefetched and the error comes as usual, after the config is checked.
    """

    @classmethod
    def for_config(
        cls, config_dir: str, accounts: tuple[str, ...] | list[str], shard: tuple[int, int] | None
    ) -> ReadAhead | None:
        """A ReadAhead if the config's provider is the HTTP one (else None)."""
        try:
            settings, _ = load_settings_only(config_dir)
        except ConfigError:
            return None  # load_config reports it, with every other problem
        return cls(config_dir, accounts, shard) if settings.provider.type == "ctm" else None

    def __init__(
        self, config_dir: str, accounts: tuple[str, ...] | list[str], shard: tuple[int, int] | None
    ) -> None:
        self.config_dir = config_dir
        self.accounts = {str(a) for a in accounts}
        self.shard = shard
        self.provider: Provider | None = None
        self.off = False

    def __call__(
        self, settings: Settings, settings_path: str | None, account: DesiredAccount
    ) -> None:
        if self.off or not in_scope(account.id, self.accounts, self.shard):
            return
        if self.provider is None:
            try:
                where = settings_dir_of(self.config_dir, settings_path)
                self.provider = open_provider(settings, where)
            except ReconcilerError:
                self.off = True
                return
        self.provider.prefetch(account.id)

    def close(self) -> None:
        if self.provider is not None:
            self.provider.close()


def shard_accounts(desired: DesiredState, shard: tuple[int, int] | None) -> DesiredState:
    """Only the accounts of shard K of N (see shard.py)."""
    if shard is None:
        return desired
    return desired.scoped([a for a in desired.accounts if in_scope(a, set(), shard)])


def due_plan(planned: Planned) -> tuple[Planned, list]:
    """The plan of `apply --due`: only entries with from/until, judged at the same time
    against the same live read; and the full plan's other changes (not due)."""
    from reconciler.due import due_desired, not_due

    full = planned.plan
    desired = due_desired(planned.desired, planned.live)
    at = datetime.fromisoformat((full.evaluated_at or full.generated_at).replace("Z", "+00:00"))
    plan = build_plan(
        desired,
        planned.live,
        now=at,
        generated_at=datetime.fromisoformat(full.generated_at.replace("Z", "+00:00")),
        provider=full.provider,
        scope=full.scope,
    )
    plan.upcoming = full.upcoming
    return Planned(desired, planned.live, plan, planned.provider), not_due(full, plan)


def read_live(
    config_dir: str,
    accounts: tuple[str, ...] | list[str] = (),
    *,
    provider: Provider | None = None,
    desired: DesiredState | None = None,
    shard: tuple[int, int] | None = None,
) -> tuple[DesiredState, LiveState, Provider]:
    """The config in scope (--account, --shard) and live state of its accounts, read while
    the config loads for the HTTP provider. The caller closes the provider."""
    ahead = None
    if desired is None and provider is None:
        ahead = ReadAhead.for_config(config_dir, accounts, shard)
    try:
        if desired is None:
            desired = load_config(config_dir, on_account=ahead)
        desired = shard_accounts(scope_accounts(desired, accounts), shard)
    except BaseException:
        if ahead is not None:
            ahead.close()
        raise
    provider = provider or (ahead.provider if ahead else None) or open_for(desired)
    try:
        live = provider.read(list(desired.accounts))
    except BaseException:
        provider.close()
        raise
    return desired, live, provider


def make_plan(
    config_dir: str,
    accounts: tuple[str, ...] | list[str] = (),
    *,
    provider: Provider | None = None,
    now: datetime | None = None,
    desired: DesiredState | None = None,
    shard: tuple[int, int] | None = None,
    at: datetime | None = None,
) -> Planned:
    """Config + live -> Plan. The caller closes `Planned.provider`.

    `at` (`--at`): judge every time rule at that time; live is still read now. `now`
    fixes the clock itself (tests).
    """
    desired, live, provider = read_live(
        config_dir, accounts, provider=provider, desired=desired, shard=shard
    )
    clock = now or datetime.now(timezone.utc).replace(microsecond=0)
    plan = build_plan(
        desired,
        live,
        now=at or clock,
        generated_at=clock,
        provider=ProviderInfo(type=provider.kind, target=provider.target),
        scope=[str(a) for a in accounts],
    )
    plan.shard = f"{shard[0]}/{shard[1]}" if shard else None
    from reconciler.ledger import attribute_plan

    attribute_plan(plan, desired, live)
    from reconciler.plan_model import UpcomingEvent
    from reconciler.schedule import upcoming

    plan.upcoming = [
        UpcomingEvent.model_validate(e.to_dict()) for e in upcoming(desired, live, at or clock)
    ]
    return Planned(desired, live, plan, provider)
