"""Exception types. Each says what went wrong where it is known; the CLI turns them into
one clear line per problem and exit code 1. Messages never carry secrets."""

from __future__ import annotations

from dataclasses import dataclass


class ReconcilerError(Exception):
    """Base for every error the CLI reports as a message (exit 1) instead of a traceback."""


@dataclass(frozen=True, order=True)
class ConfigIssue:
    """One problem in the config, located at path:line:col (1-based; 0 = unknown)."""

    path: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}:{self.col}: {self.message}"
        return f"{self.path}: {self.message}"


class ConfigError(ReconcilerError):
    """The config has one or more problems; all of them are listed."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = sorted(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class ProviderError(ReconcilerError):
    """The provider could not be read or written (network, auth, bad response)."""


class ProviderAuthError(ProviderError):
    """Credentials missing or refused (401/403)."""


class ProviderNotFound(ProviderError):
    """The provider does not know the account or number (404)."""


class ProviderTransientError(ProviderError):
    """A failure worth retrying (429, 5xx, connection) that outlived the retry budget."""


class ProviderTargetChanged(ProviderError):
    """What this run reads and writes is no longer the target it planned against (the
    sandbox database file was replaced or deleted): no further write may be sent; an apply
    stops and leaves the rest of its writes unstarted."""
