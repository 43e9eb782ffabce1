"""The Provider interface: the one seam between reconciler and a call-tracking service.

Contract a new provider must meet (read this file and you can add one):

- ``read(account_ids)`` returns the live state of exactly those accounts, with all their
  numbers, as a :class:`~reconciler.models.LiveState`. Ids the provider does not know are
  listed in ``LiveState.missing`` (not raised), so a plan can report ``unknown_account``
  next to everything else it found. It must cost the minimum number of requests the
  service allows: list calls, never one request per number.
- ``read`` shows its progress: it runs inside a :class:`reconciler.progress.Progress`
  over the ids asked for and advances it as each account is complete (all at once is
  fine for a read that cannot be slow), and logs one ``-v`` (INFO) line for the read:
  what, how many, how long (:class:`reconciler.progress.Cost`).
- ``set_account_status(account_id, status)`` sets ``active | paused | stopped`` and returns
  the account as the service reports it after the write (``numbers`` may be empty).
- ``set_number(account_id, number_id, field, value)`` sets a number's ``calls``
  (``allowed | stopped``) or ``swapping`` (``active | paused``) and returns the number as
  the service reports it after the write.
- Writes are idempotent "set" operations: repeating one is harmless, so callers may retry.
  A provider must not change anything it was not asked to change.
- Failures raise :class:`~reconciler.errors.ProviderError` subclasses with one clear line
  of text. Secrets (keys, Authorization headers) never appear in messages or logs.
- ``list_accounts(count_numbers)`` lists every account the credentials see, in the
  provider's order, as :class:`~reconciler.models.ListedAccount` (id, name, status as
  the provider writes it, never refused for a status it cannot manage); with
  ``count_numbers`` each carries its number count, read as cheaply as the service allows
  (a count field, or one request per account, never all the numbers). Optional: the
  default raises ``ProviderError`` (discovery is then unavailable).
- ``prefetch(account_id)`` is optional: a hint that the next ``read`` will include this
  account, given while the caller is still busy (loading the config). A provider whose
  reads wait on the network may start them now; ``read`` must return exactly what it
  would have returned without the hint. The default does nothing.
- ``requests_made`` / ``retries_made`` count the requests sent so far (first attempts) and
  their retries, for progress and ``-v`` lines; the default (no network) is 0.
- ``target`` is a human-readable, secret-free name of what is being managed (a database
  path, a base URL); the plan records it and the apply lock is keyed by it.
- Providers are context managers; ``close()`` releases connections and files.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Literal

from reconciler.errors import ProviderError
from reconciler.models import ListedAccount, LiveAccount, LiveNumber, LiveState

NumberField = Literal["calls", "swapping"]


class Provider(ABC):
    """Reads live state and applies stop/allow/pause/resume writes."""

    kind: str = ""  # "sandbox" | "ctm"

    @property
    @abstractmethod
    def target(self) -> str:
        """Secret-free name of the managed target (database path or API base URL)."""

    @abstractmethod
    def read(self, account_ids: Sequence[str]) -> LiveState:
        """Live state of these accounts with all their numbers; unknown ids in `missing`."""

    @abstractmethod
    def set_account_status(self, account_id: str, status: str) -> LiveAccount:
        """Set an account's status; return the account as the provider now reports it."""

    @abstractmethod
    def set_number(
        self, account_id: str, number_id: str, field: NumberField, value: str
    ) -> LiveNumber:
        """Set a number's calls or swapping; return the number as the provider now reports it."""

    @property
    def requests_made(self) -> int:
        """Requests sent so far (first attempts); 0 for a provider without a network."""
        return 0

    @property
    def retries_made(self) -> int:
        """Retries of those requests so far."""
        return 0

    def list_accounts(self, count_numbers: bool = True) -> list[ListedAccount]:
        """Every account the provider lists (numbers counted when asked), in its order."""
        raise ProviderError(f"the {self.kind or 'configured'} provider cannot list accounts")

    def prefetch(self, account_id: str) -> None:  # noqa: B027 - optional hook
        """Hint: the next `read` includes this account; start reading it if that helps."""

    def abort(self) -> int:
        """Cut every request in flight now (an interrupt's grace ran out); how many were cut.
        Providers whose calls cannot hang (a local database) have nothing to cut."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""

    def __enter__(self) -> Provider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
