"""The README's example outputs are real: every fenced block that starts with
`$ reconciler …` is run, in README order, in one fresh copy of the example project (the
bundled sandbox), and its output must match the block.

Time rules are fixed with `--at` in the commands themselves; `apply` acts now, so its
example is scoped to accounts without windows and elides the plan it prints. In a block,
a line `...` (or `... (text) ...`) stands for any lines; write times `(N ms)` freely; the
order of consecutive `  ok ` lines (concurrent writes) is not compared.

Regenerate the blocks without elisions after a change of output:

    python tests/test_readme.py --write
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```[a-z]*\n(\$ reconciler .*?)^```$", re.S | re.M)
ELISION = re.compile(r"^\.\.\.( \(.*\) \.\.\.)?$")
EXIT_ECHO = '; echo "exit $?"'


def blocks(text: str) -> list[re.Match[str]]:
    return list(FENCE.finditer(text))


def steps(block: str) -> list[tuple[str, list[str]]]:
    """(command line, expected output lines) for each `$ ` line of a block."""
    out: list[tuple[str, list[str]]] = []
    for line in block.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            out.append((line[2:], []))
        else:
            out[-1][1].append(line)
    return out


def run_command(command: str) -> list[str]:
    from reconciler.cli import main

    echo = command.endswith(EXIT_ECHO)
    args = shlex.split(command.removesuffix(EXIT_ECHO))
    assert args[0] == "reconciler", command
    result = CliRunner().invoke(main, args[1:])
    assert result.exception is None or isinstance(result.exception, SystemExit), command
    lines = result.output.rstrip("\n").split("\n") if result.output else []
    return [*lines, f"exit {result.exit_code}"] if echo else lines


def normalise(lines: list[str]) -> list[str]:
    lines = [re.sub(r"\(\d+ ms\)", "(N ms)", line) for line in lines]
    out: list[str] = []
    run: list[str] = []
    for line in [*lines, None]:
        if line is not None and line.startswith("  ok "):
            run.append(line)
            continue
        out += sorted(run)
        run = []
        if line is not None:
            out.append(line)
    return out


def matches(expected: list[str], actual: list[str]) -> bool:
    pattern = "".join(
        r"(?:[^\n]*\n)*?" if ELISION.match(line) else re.escape(line) + r"\n"
        for line in normalise(expected)
    )
    return re.fullmatch(pattern, "\n".join(normalise(actual)) + "\n") is not None


# The examples' project: a copy of config/ committed once, so provenance (`ledger`, the
# `stale_stop` warning) names a fixed commit; the sandbox stamps writes at a fixed time.
AUTHOR = {
    "GIT_AUTHOR_NAME": "Jane Ops",
    "GIT_AUTHOR_EMAIL": "jane@example.com",
    "GIT_AUTHOR_DATE": "2026-06-01T10:00:00Z",
    "GIT_COMMITTER_NAME": "Jane Ops",
    "GIT_COMMITTER_EMAIL": "jane@example.com",
    "GIT_COMMITTER_DATE": "2026-06-01T10:00:00Z",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
SUBJECT = "Manage call states as code (#131)"
SANDBOX_CLOCK = "2026-11-30T12:00:00Z"


def in_project(tmp: Path) -> None:
    shutil.copytree(ROOT / "config", tmp / "config")
    os.chdir(tmp)
    env = {**os.environ, **AUTHOR}
    for args in (["init", "-q"], ["add", "config"], ["commit", "-q", "-m", SUBJECT]):
        subprocess.run(["git", *args], cwd=tmp, env=env, check=True, capture_output=True)
    os.environ["RECONCILER_LOCK_DIR"] = str(tmp / "locks")
    os.environ["RECONCILER_SANDBOX_CLOCK"] = SANDBOX_CLOCK
    os.environ["NO_COLOR"] = "1"
    # GitHub Actions variables would turn the Markdown example's sources into links
    github = ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_SHA", "GITHUB_WORKSPACE")
    for name in ("RECONCILER_CONFIG", "GITHUB_STEP_SUMMARY", *github):
        os.environ.pop(name, None)


def test_every_readme_example_is_the_real_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # set first, so that monkeypatch restores what in_project sets (it writes os.environ)
    for name in ("RECONCILER_LOCK_DIR", "RECONCILER_SANDBOX_CLOCK", "NO_COLOR"):
        monkeypatch.setenv(name, "")
    for name in ("RECONCILER_CONFIG", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    in_project(tmp_path)
    found = blocks(README.read_text())
    assert len(found) >= 6
    for block in found:
        for command, expected in steps(block.group(1)):
            actual = run_command(command)
            assert matches(expected, actual), (
                f"README block `$ {command}` differs from the real output "
                "(python tests/test_readme.py --write regenerates it):\n" + "\n".join(actual)
            )


def test_the_matcher_can_fail():
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert not matches(["a", "...", "d"], ["a", "b", "c", "e"])
    assert matches(["  ok  x (3 ms)", "  ok  y (1 ms)"], ["  ok  y (9 ms)", "  ok  x (0 ms)"])
    assert not matches(["x: 119.00"], ["x: 116.00"])


def write() -> None:
    import tempfile

    text = README.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        in_project(Path(tmp))
        try:
            parts: list[str] = []
            last = 0
            for block in blocks(text):
                new = []
                for command, expected in steps(block.group(1)):
                    actual = run_command(command)
                    keep = any(ELISION.match(line) for line in expected)
                    new += [f"$ {command}", *(expected if keep else actual)]
                parts += [text[last : block.start(1)], "\n".join(new) + "\n"]
                last = block.end(1)
            text = "".join([*parts, text[last:]])
        finally:
            os.chdir(cwd)
    README.write_text(text)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests"))
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        sys.exit("usage: python tests/test_readme.py --write")
