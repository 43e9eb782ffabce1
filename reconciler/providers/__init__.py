"""Providers: where live state is read and written. See `base.py` for the contract."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from reconciler.models import Settings
from reconciler.providers.base import Provider


def open_provider(
    settings: Settings, settings_dir: Path, environ: Mapping[str, str] | None = None
) -> Provider:
    """The provider the settings name. Relative paths resolve against `settings_dir`."""
    cfg = settings.provider
    if cfg.type == "sandbox":
        from reconciler.providers.sandbox.provider import SandboxProvider

        seed = Path(os.path.normpath(settings_dir / cfg.seed)) if cfg.seed else None
        return SandboxProvider(Path(os.path.normpath(settings_dir / cfg.database)), seed=seed)
    from reconciler.providers.ctm import CtmProvider

    return CtmProvider(cfg, environ=os.environ if environ is None else environ)
