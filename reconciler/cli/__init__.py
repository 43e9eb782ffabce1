"""The `reconciler` command line: the `main` click group with every command registered, and `run`."""

# One module per command family, each a thin click layer over the core; importing them
# registers their commands on `main`. Heavy modules (pydantic, yaml, requests, the engine)
# are imported inside the command bodies so that `reconciler --help` starts fast.

from __future__ import annotations

from reconciler.cli import apply, check, doctor, importer, ledger, plan, schedule  # noqa: F401
from reconciler.cli.base import (
    CONTEXT_SETTINGS,
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    fail,
    hold_until_exit,
    main,
    run,
    run_guarded,
)

__all__ = [
    "CONTEXT_SETTINGS",
    "EXIT_CHANGES",
    "EXIT_ERROR",
    "EXIT_OK",
    "fail",
    "hold_until_exit",
    "main",
    "run",
    "run_guarded",
]
