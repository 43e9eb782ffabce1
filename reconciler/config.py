"""Config directory -> DesiredState, with every problem located as file:line:col.

Layout: `<dir>/reconciler.yaml` (optional settings) and `<dir>/accounts/*.yaml|*.yml`
(one managed account per file). All problems of a run are collected and raised together
as one ConfigError, so a user fixes them in one pass.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import logging
import multiprocessing
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timezone
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from reconciler.config_messages import data_loc, message
from reconciler.errors import ConfigError, ConfigIssue
from reconciler.models import (
    AccountFile,
    DesiredAccount,
    DesiredNumber,
    DesiredState,
    Settings,
    Source,
)
from reconciler.phone import is_valid_e164
from reconciler.yamlsafe import LoadedYaml, Path_, YamlError, load_yaml

log = logging.getLogger(__name__)

SETTINGS_NAMES = ("reconciler.yaml", "reconciler.yml")
OnAccount = Callable[[Settings, str | None, DesiredAccount], None]


def load_config(
    config_dir: str, on_account: OnAccount | None = None, *, require_accounts: bool = True
) -> DesiredState:
    """Load and check a config directory; raise ConfigError listing every problem.

    `require_accounts=False` accepts a config without account files (discovery and import
    start from one).

    `on_account(settings, settings_path, account)`, if given, is called for each account
    as soon as its file is loaded, as long as no problem has been found so far (the engine
    uses it to start reading live state while the remaining files load). A big config is
    then parsed in a worker process (see `_load_account_files`).
    """
    if not os.path.isdir(config_dir):
        raise ConfigError(
            [
                ConfigIssue(
                    config_dir,
                    0,
                    0,
                    "config directory not found; pass --config DIR or set RECONCILER_CONFIG",
                )
            ]
        )
    issues: list[ConfigIssue] = []
    settings, settings_path, digest_parts = _load_settings(config_dir, issues)
    account_files = _account_files(config_dir, issues, require_accounts)
    accounts: dict[str, DesiredAccount] = {}
    owners: _Owners = ({}, {})
    in_worker = on_account is not None and _big(account_files)
    for loaded in _load_account_files(account_files, config_dir, in_worker):
        issues.extend(loaded.issues)
        if loaded.raw is not None:
            digest_parts.append((loaded.name, loaded.raw))
        if loaded.account is None:
            if loaded.claims is not None:  # a file with errors still claims what it can
                _check_unique(loaded.claims, owners, issues)
            continue
        account = loaded.account
        accounts.setdefault(account.id, account)
        _check_unique(_claims_of(account), owners, issues)
        if on_account is not None and not issues:
            on_account(settings, settings_path, account)
    if issues:
        raise ConfigError(issues)
    return DesiredState(
        config_dir=config_dir,
        settings=settings,
        settings_path=settings_path,
        accounts=accounts,
        digest=_digest(digest_parts),
    )


def load_settings_only(config_dir: str) -> tuple[Settings, str | None]:
    """Just the settings (for commands that do not need the account files)."""
    issues: list[ConfigIssue] = []
    settings, path, _ = _load_settings(config_dir, issues)
    if issues:
        raise ConfigError(issues)
    return settings, path


# --- files ----------------------------------------------------------------------------


def _load_settings(
    config_dir: str, issues: list[ConfigIssue]
) -> tuple[Settings, str | None, list[tuple[str, bytes]]]:
    for name in SETTINGS_NAMES:
        path = os.path.join(config_dir, name)
        problem = _not_a_file(path)
        if problem == "missing":
            continue
        if problem:
            # never silently fall back to defaults (the sandbox) for a broken settings file
            issues.append(
                ConfigIssue(path, 0, 0, f"{problem}; the settings file must be a regular file")
            )
            return Settings(), path, []
        if os.path.isfile(path):
            loaded = _parse(path, issues)
            if loaded is None:
                return Settings(), path, []
            if loaded.data is None:
                return Settings(), path, [(name, loaded.raw)]
            model = _validate(Settings, loaded, issues, _settings_shape_hint)
            return (model or Settings()), path, [(name, loaded.raw)]
    return Settings(), None, []


def _not_a_file(path: str) -> str | None:
    """Why `path` is not a readable regular file ("missing" when nothing is there)."""
    if not os.path.lexists(path):
        return "missing"
    try:
        st = os.stat(path)
    except OSError as exc:
        if os.path.islink(path):
            reason = "a symlink loop" if exc.errno == errno.ELOOP else "a dangling symlink"
            return f"{reason} (-> {os.readlink(path)})"
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return "a directory, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def _account_files(config_dir: str, issues: list[ConfigIssue], required: bool = True) -> list[str]:
    accounts_dir = os.path.join(config_dir, "accounts")
    names: list[str] = []
    candidates: list[str] = []
    if os.path.isdir(accounts_dir):
        candidates = sorted(
            n
            for n in os.listdir(accounts_dir)
            if n.endswith((".yaml", ".yml")) and not n.startswith(".")
        )
        for n in candidates:
            problem = _not_a_file(os.path.join(accounts_dir, n))
            if problem:  # never skipped: its account's planned changes would vanish
                issues.append(
                    ConfigIssue(
                        os.path.join(accounts_dir, n),
                        0,
                        0,
                        f"{problem}; an account file must be a regular file (or a link to one)",
                    )
                )
            else:
                names.append(n)
    if not candidates and required:
        issues.append(
            ConfigIssue(
                accounts_dir,
                0,
                0,
                "no account files (*.yaml, *.yml); "
                "write one per account, or run `reconciler import --account ID`",
            )
        )
    return [os.path.join(accounts_dir, n) for n in names]


# --- account files: parsed here, or in a worker process --------------------------------

# Parsing and validating account files is CPU-bound Python (~1 s for 1,000 files with
# 100,000 numbers). When the caller overlaps loading with reading live state over HTTP,
# parsing in this process would hold the GIL that the reading threads need after every
# socket call, and both would crawl; a worker process parses in parallel instead, and
# sends each account back as plain tuples (see _pack). Only for configs big
# enough to gain (~20,000 numbers and up), only where a fork is cheap and safe (no other
# thread running yet), and any failure of the worker falls back to parsing here.
WORKER_MIN_BYTES = 1_000_000
WORKER_CHUNK_BYTES = 100_000  # a chunk of files per message: the first accounts come early


# What one file claims, for the checks across files: (path, account id or None, the id's
# line, ((number, line), ...)).
_Claims = tuple[str, str | None, int, tuple[tuple[str, int], ...]]
_Owners = tuple[dict[str, Source], dict[str, Source]]  # account id -> source, number -> source


class _Loaded(NamedTuple):
    """One account file: its name for the digest, its bytes, its account or its issues (and
    then what it claims, so that a file with errors is still checked against the others)."""

    name: str
    raw: bytes | None
    account: DesiredAccount | None
    issues: list[ConfigIssue]
    claims: _Claims | None = None


def _big(paths: list[str]) -> bool:
    return sum(os.path.getsize(p) for p in paths) >= WORKER_MIN_BYTES


def _load_account_files(paths: list[str], config_dir: str, in_worker: bool) -> Iterator[_Loaded]:
    """Each file loaded, in order."""
    chunks = _chunks(paths) if in_worker and _can_fork() else []
    done = 0
    if chunks:
        try:
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
        except OSError as exc:  # e.g. no semaphores in this sandbox
            log.debug("config: no worker process (%s); parsing here", exc)
        else:
            try:
                log.debug("config: parsing %d files in a worker process", len(paths))
                for results in pool.map(_load_chunk, chunks, itertools.repeat(config_dir)):
                    yield from map(_unpack, results)
                    done += 1
            except BrokenProcessPool:
                log.warning("config: the worker process died; parsing the rest here")
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    rest = paths if not chunks else [p for chunk in chunks[done:] for p in chunk]
    for path in rest:
        yield _load_account_file(path, config_dir)


def _can_fork() -> bool:
    # A forked worker starts at once with everything imported. Forking is safe only while
    # this process runs a single thread, and only on Linux (macOS frameworks may not
    # survive a fork; Windows has none): elsewhere the files are parsed here.
    return sys.platform.startswith("linux") and threading.active_count() == 1


def _chunks(paths: list[str]) -> list[list[str]]:
    """The first file alone (its account comes back at once: reading live can start), then
    files in chunks of about WORKER_CHUNK_BYTES."""
    chunks: list[list[str]] = [paths[:1], []]
    size = 0
    for path in paths[1:]:
        if size >= WORKER_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(path)
        size += os.path.getsize(path)
    return [chunk for chunk in chunks if chunk]


def _load_chunk(paths: list[str], config_dir: str) -> list[_Packed]:
    """In the worker: these files loaded, packed for the trip back."""
    return [_pack(_load_account_file(path, config_dir)) for path in paths]


# An account as the worker sends it: (id, name, status, until, note, protected, path, line,
# field_lines, numbers), each number (number, calls, swapping, until, note, protected, line,
# field_lines); a number's path and account id are its account's. Pickling 100,000 dataclass
# objects costs a Python call per object each way (~0.7 s of the worker's CPU and ~0.4 s
# of this process's, at 100,000 numbers); tuples of str, int and dict pickle in C, and the
# objects are rebuilt here in one tight loop (~0.15 s).
_Packed = tuple[_Loaded, tuple[Any, ...] | None]


def _pack(loaded: _Loaded) -> _Packed:
    acc = loaded.account
    if acc is None:
        return loaded, None
    numbers = tuple(
        (
            n.number,
            n.calls,
            n.swapping,
            n.until,
            n.note,
            n.protected,
            n.source.line,
            n.field_lines,
            n.start,
        )
        for n in acc.numbers
    )
    path, line = acc.source.path, acc.source.line
    fields = (acc.id, acc.name, acc.status, acc.until, acc.note, acc.protected, path, line)
    return loaded._replace(account=None), (*fields, acc.field_lines, numbers, acc.start)


def _unpack(packed: _Packed) -> _Loaded:
    loaded, acc = packed
    if acc is None:
        return loaded
    account_id, name, status, until, note, protected, path, line, field_lines, numbers, start = acc
    account = DesiredAccount(
        account_id,
        name,
        status,
        until,
        note,
        protected,
        Source(path, line),
        tuple(
            DesiredNumber(
                number,
                account_id,
                calls,
                swap,
                n_until,
                n_note,
                n_prot,
                Source(path, n_line),
                lines,
                n_start,
            )
            for number, calls, swap, n_until, n_note, n_prot, n_line, lines, n_start in numbers
        ),
        field_lines,
        start,
    )
    return loaded._replace(account=account)


def _load_account_file(path: str, config_dir: str) -> _Loaded:
    issues: list[ConfigIssue] = []
    loaded = _parse(path, issues)
    if loaded is None:
        return _Loaded("", None, None, issues)
    name = os.path.relpath(path, config_dir)
    model = _validate(AccountFile, loaded, issues, _account_shape_hint)
    if model is None:
        return _Loaded(name, loaded.raw, None, issues, _partial_claims(loaded))
    return _Loaded(name, loaded.raw, _desired_account(model, loaded), issues)


def _parse(path: str, issues: list[ConfigIssue]) -> LoadedYaml | None:
    try:
        loaded = load_yaml(path)
    except YamlError as exc:
        issues.extend(exc.issues)
        return None
    issues.extend(loaded.issues)  # duplicate keys: reported, and the rest still checked
    return loaded


def _digest(parts: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, raw in sorted(parts):
        h.update(name.replace(os.sep, "/").encode() + b"\0" + raw + b"\0")
    return "sha256:" + h.hexdigest()


def _account_shape_hint(data: Any, raw: bytes) -> str:
    form = "write the account it manages, e.g.\n    account:\n      id: 1001"
    if data is None:
        only = "it holds only comments" if raw.strip() else "the file is empty"
        return f"no `account:` in this file ({only}); {form}"
    return (
        f"file is a {_kind(data)}; an account file is a mapping with `account:` (id, "
        f"status, ...) and `numbers:` (a list): {form}"
    )


def _settings_shape_hint(data: Any, raw: bytes) -> str:
    return (
        f"file is a {_kind(data)}; the settings file is a mapping with optional `provider:`, "
        "`policy:` and `billing:`"
    )


def _kind(data: Any) -> str:
    return {list: "list", str: "single value"}.get(type(data), type(data).__name__)


# --- validation (the messages: config_messages.py) -------------------------------------------------------------


def _validate(
    model: type[BaseModel], loaded: LoadedYaml, issues: list[ConfigIssue], shape_hint: Any
) -> Any:
    if not isinstance(loaded.data, dict):
        where = loaded.where(())
        issues.append(ConfigIssue(loaded.path, *where, shape_hint(loaded.data, loaded.raw)))
        return None
    try:
        return model.model_validate(loaded.data)
    except ValidationError as exc:
        seen: set[Path_] = set()
        for err in exc.errors():
            loc = data_loc(loaded.data, err["loc"], err["type"])
            if loc in seen:  # a union (int | str) reports once per member: say it once
                continue
            seen.add(loc)
            line, col = loaded.where(loc)
            text = message(model, err, loc, loaded.data, loaded.written(loc))
            issues.append(ConfigIssue(loaded.path, line, col, text))
        return None


# --- building the desired state and cross-file checks -----------------------------------


def _desired_account(model: AccountFile, loaded: LoadedYaml) -> DesiredAccount:
    acc = model.account
    account_id = str(acc.id)
    path = loaded.path
    numbers = []
    for i, n in enumerate(model.numbers):
        lines = loaded.key_lines(("numbers", i))  # {key: line} of this entry
        numbers.append(
            DesiredNumber(
                number=n.number,
                account_id=account_id,
                calls=n.calls,
                swapping=n.swapping,
                until=_utc(n.until),
                note=n.note,
                protected=n.protected,
                source=Source(path, lines.get("number", 0)),
                field_lines=lines,
                start=_utc(n.from_),
            )
        )
    return DesiredAccount(
        id=account_id,
        name=acc.name,
        status=acc.status,
        until=_utc(acc.until),
        note=acc.note,
        protected=acc.protected,
        source=Source(path, loaded.where(("account", "id"))[0]),
        numbers=tuple(numbers),
        field_lines=loaded.key_lines(("account",)),
        start=_utc(acc.from_),
    )


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(timezone.utc) if value is not None else None  # checked: in_utc


def _claims_of(account: DesiredAccount) -> _Claims:
    numbers = tuple((n.number, n.source.line) for n in account.numbers)
    return account.source.path, account.id, account.source.line, numbers


def _partial_claims(loaded: LoadedYaml) -> _Claims | None:
    """The account id and numbers that a file with errors writes validly."""
    data = loaded.data
    if not isinstance(data, dict):
        return None
    acc = data.get("account")
    raw_id = acc.get("id") if isinstance(acc, dict) else None
    ok_id = (type(raw_id) is int and raw_id >= 0) or (isinstance(raw_id, str) and raw_id)
    entries = data.get("numbers")
    numbers = tuple(
        (n["number"], loaded.where(("numbers", i, "number"))[0])
        for i, n in enumerate(entries if isinstance(entries, list) else [])
        if isinstance(n, dict) and isinstance(n.get("number"), str) and is_valid_e164(n["number"])
    )
    account_id = str(raw_id) if ok_id else None
    return loaded.path, account_id, loaded.where(("account", "id"))[0], numbers


def _check_unique(claims: _Claims, owners: _Owners, issues: list[ConfigIssue]) -> None:
    """The first file to claim an account id or a number keeps it; later claims are issues."""
    path, account_id, id_line, numbers = claims
    account_owner, number_owner = owners
    if account_id is not None:
        source = Source(path, id_line)
        first = account_owner.setdefault(account_id, source)
        if first is not source:
            issues.append(
                _claimed_twice(
                    source,
                    f"account id {account_id} is also managed in {first}; "
                    "keep one file per account",
                )
            )
    for number, line in numbers:
        source = Source(path, line)
        seen = number_owner.setdefault(number, source)
        if seen is not source:
            issues.append(
                _claimed_twice(
                    source,
                    f"number {number} is listed twice: also at {seen}; "
                    "list each number once, under its account",
                )
            )


def _claimed_twice(source: Source, message: str) -> ConfigIssue:
    return ConfigIssue(source.path, source.line, 1, message)
