"""Who set a config line, when, and in which pull request: `git blame` of the config.

The ledger (and the plan's `stale_stop` warnings and charges) say for a stopped resource
which commit last set its `calls:`/`status:` line. Git runs as a subprocess, locally, one
`git blame --line-porcelain` per file for all the lines wanted in it (files in parallel);
nothing touches the network (`GIT_TERMINAL_PROMPT=0`, no remote commands).

Provenance is None, never a guess, when it cannot be known: the config is not in a git
work tree (or git is missing, or refuses the directory), the line is not committed yet,
or the history is shallow and the line's commit is the cut (a shallow clone attributes
every older line to its first commit). `History.hint` then says how to get it.

The pull request is read from the commit's subject (`Fix fees (#131)`, `Merge pull
request #131 from …`); for a commit whose subject names none, from the first merge that
brought it into HEAD (`git log --merges --ancestry-path`), when that one names it.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

PR_PATTERNS = (re.compile(r"\(#(\d{1,9})\)\s*$"), re.compile(r"^Merge pull request #(\d{1,9})\b"))
UNCOMMITTED = "0" * 40
FETCH_HINT = (
    "for provenance, fetch the whole history (actions/checkout with `fetch-depth: 0`, or "
    "`git fetch --unshallow`)"
)
_TIMEOUT = 60  # seconds for one git command: a local read, never a network wait


@dataclass(frozen=True)
class Provenance:
    """The commit that last set a config line."""

    commit: str
    author: str
    date: str  # the author date, ISO-8601 UTC
    subject: str
    pr: int | None

    def short(self) -> str:
        """`set by Jane Ops on 2026-06-01 in #131` (the commit's short hash without a PR)."""
        where = f"#{self.pr}" if self.pr is not None else self.commit[:7]
        return f"set by {self.author} on {self.date[:10]} in {where}"

    def to_dict(self) -> dict[str, object]:
        return {
            "commit": self.commit,
            "author": self.author,
            "date": self.date,
            "subject": self.subject,
            "pr": self.pr,
        }


def pr_of(subject: str) -> int | None:
    for pattern in PR_PATTERNS:
        found = pattern.search(subject)
        if found:
            return int(found[1])
    return None


def _git(cwd: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
        "LC_ALL": "C",
        "GIT_PAGER": "cat",
    }
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=_TIMEOUT,
        check=False,
    )


class History:
    """The git history of the work tree holding `directory` (if any)."""

    def __init__(self, directory: str) -> None:
        self.root: str | None = None
        self.shallow_cut: frozenset[str] = frozenset()
        self.hint = ""
        self._prs: dict[str, int | None] = {}
        self._mainline: set[str] | None = None
        where = os.path.abspath(directory)
        try:
            top = _git(where, "rev-parse", "--show-toplevel", "--is-shallow-repository")
        except FileNotFoundError:
            self.hint = "git is not installed: provenance needs it"
            return
        except (OSError, subprocess.SubprocessError) as exc:
            self.hint = f"git could not run ({type(exc).__name__}): no provenance"
            return
        if top.returncode != 0:
            why = top.stderr.strip().splitlines()
            if why and "dubious ownership" in top.stderr:
                self.hint = (
                    f"git refuses {where} (owned by another user): run `git config --global "
                    "--add safe.directory` with that path for provenance"
                )
            else:
                self.hint = (
                    f"{directory} is not in a git work tree: provenance comes from the git "
                    "history of the config (run it in a clone of the config repository)"
                )
            return
        lines = top.stdout.splitlines()
        self.root = lines[0] if lines else None
        if len(lines) > 1 and lines[1].strip() == "true":
            self.shallow_cut = self._shallow_commits()
            self.hint = f"the git history is shallow: older lines have no provenance; {FETCH_HINT}"

    @property
    def available(self) -> bool:
        return self.root is not None

    def _shallow_commits(self) -> frozenset[str]:
        assert self.root is not None
        found = _git(self.root, "rev-parse", "--git-path", "shallow")
        path = os.path.join(self.root, found.stdout.strip()) if found.returncode == 0 else ""
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                return frozenset(line.strip() for line in fh if line.strip())
        except OSError:
            return frozenset()

    def lookup(
        self, lines: Iterable[tuple[str, int]], workers: int = 4
    ) -> dict[tuple[str, int], Provenance | None]:
        """(file as given, line) -> the commit that last set that line, for every line
        asked for; one `git blame` per file, with all of that file's lines."""
        wanted: dict[str, set[int]] = {}
        for path, line in lines:
            wanted.setdefault(path, set()).add(line)
        if self.root is None or not wanted:
            return {(path, line): None for path, found in wanted.items() for line in found}
        jobs = [(path, sorted(found)) for path, found in wanted.items()]
        out: dict[tuple[str, int], Provenance | None] = {}
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
            results = pool.map(lambda job: self._blame(*job), jobs)
            for (path, _), found in zip(jobs, results, strict=True):
                out.update({(path, line): prov for line, prov in found.items()})
        return out

    def _blame(self, path: str, lines: list[int]) -> dict[int, Provenance | None]:
        assert self.root is not None
        missing: dict[int, Provenance | None] = dict.fromkeys(lines)
        ranges = [arg for start, end in _runs(lines) for arg in ("-L", f"{start},{end}")]
        try:
            done = _git(
                self.root,
                "blame",
                "--line-porcelain",
                "--root",
                *ranges,
                "--",
                os.path.abspath(path),
            )
        except (OSError, subprocess.SubprocessError):
            return missing
        if done.returncode != 0:  # not tracked, or changed under us: no provenance
            return missing
        found = parse_blame(done.stdout)
        result: dict[int, Provenance | None] = {}
        for line in lines:
            entry = found.get(line)
            if entry is None or entry.commit == UNCOMMITTED or entry.commit in self.shallow_cut:
                result[line] = None
                continue
            try:
                pr = entry.pr if entry.pr is not None else self._merged_in(entry.commit)
            except (OSError, subprocess.SubprocessError):
                pr = None
            result[line] = Provenance(entry.commit, entry.author, entry.date, entry.subject, pr)
        return result

    def _merged_in(self, commit: str) -> int | None:
        """The PR of the merge that brought `commit` into HEAD's first-parent line, if its
        subject names one (a merge-commit workflow: the line's own commit is on the
        branch). A commit made on that line itself came in with no merge: None."""
        if commit not in self._prs:
            assert self.root is not None
            if self._mainline is None:
                line = _git(self.root, "rev-list", "--first-parent", "HEAD")
                self._mainline = set(line.stdout.split()) if line.returncode == 0 else set()
            first: list[str] = []
            if commit not in self._mainline:
                merges = _git(
                    self.root,
                    "log",
                    "--merges",
                    "--first-parent",
                    "--ancestry-path",
                    "--reverse",
                    "--format=%s",
                    f"{commit}..HEAD",
                )
                first = merges.stdout.splitlines()[:1] if merges.returncode == 0 else []
            self._prs[commit] = pr_of(first[0]) if first else None
        return self._prs[commit]


def _runs(lines: list[int]) -> list[tuple[int, int]]:
    """Sorted line numbers as (start, end) runs: `-L 3,5 -L 9,9`."""
    runs: list[tuple[int, int]] = []
    for line in lines:
        if runs and line == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], line)
        else:
            runs.append((line, line))
    return runs


def parse_blame(text: str) -> dict[int, Provenance]:
    """`git blame --line-porcelain` output -> final line number -> its commit."""
    out: dict[int, Provenance] = {}
    commit, final, headers = "", 0, {}
    for raw in text.split("\n"):
        if raw.startswith("\t"):  # the line's content ends its block
            if commit:
                out[final] = _entry(commit, headers)
            commit, headers = "", {}
            continue
        if not commit:
            parts = raw.split(" ")
            if len(parts) >= 3 and len(parts[0]) in (40, 64):
                commit, final = parts[0], _int(parts[2])
            continue
        key, _, value = raw.partition(" ")
        headers[key] = value
    return out


def _entry(commit: str, headers: dict[str, str]) -> Provenance:
    seconds = _int(headers.get("author-time", "0"))
    try:
        when = datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        when = datetime.fromtimestamp(0, timezone.utc)
    subject = headers.get("summary", "")
    return Provenance(
        commit=commit,
        author=headers.get("author", ""),
        date=when.isoformat().replace("+00:00", "Z"),
        subject=subject,
        pr=pr_of(subject),
    )


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0
