"""The sandbox's clock: the time it stamps on writes (now, or a fixed time for demos)."""

from __future__ import annotations

import os
from datetime import datetime, timezone

from reconciler.errors import ProviderError

CLOCK_ENV = "RECONCILER_SANDBOX_CLOCK"


def sandbox_clock() -> str | None:
    """`$RECONCILER_SANDBOX_CLOCK`, the time the sandbox stamps on every write instead of
    now (reproducible demos and docs: the README's examples), as ISO-8601 UTC with Z;
    None when unset. A value that is not an ISO-8601 time with a timezone is refused."""
    text = os.environ.get(CLOCK_ENV)
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if when.tzinfo is None:
            raise ValueError
        return when.astimezone(timezone.utc).replace(microsecond=0).isoformat()[:19] + "Z"
    except (ValueError, OverflowError):
        raise ProviderError(
            f"{CLOCK_ENV}={text[:40]!r}: expected an ISO-8601 time with timezone, e.g. "
            "2026-12-01T09:00:00Z (or unset it)"
        ) from None


def utc_now() -> str:
    """Now as ISO-8601 UTC with Z, to the second (the wire's time format); the sandbox
    clock instead when it is set (`sandbox_clock`)."""
    try:
        fixed = sandbox_clock()
    except ProviderError:
        fixed = None  # refused where the sandbox is opened; never half-way through a write
    if fixed:
        return fixed
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
