"""A YAML syntax error as `line:col: what is wrong; what to write`.

PyYAML (libyaml or the pure-Python parser, whose wordings differ) says what its parser
expected ("did not find expected key", "expected <block end>, but found '?'"); a person
needs the line, what is off about it (usually its indentation), and what to write. The
hint is worked out from the source lines around the error, never from the library's text,
which is only classified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

INDENT_RULE = (
    "keys of one mapping line up under each other, and list items start with `- ` "
    "at the same indentation"
)
# a value that opens a quote: `key: "…`, `- "…`, `- key: '…`
_QUOTED_VALUE = re.compile(r"""^\s*(?:-\s+)?(?:[^\s'"#][^#]*?:\s+)?(["'])(.*)$""")
_KEY = re.compile(r"""^([^\s'"#\-][^#]*?|"[^"]*"|'[^']*'):(\s|$)""")


@dataclass(frozen=True)
class _Line:
    """One source line as indentation sees it."""

    no: int  # 1-based
    text: str
    indent: int  # spaces before the first character
    dash: bool  # a list item (`- …`)
    key_col: int  # 0-based column of what follows the dashes (the key of an item)

    @property
    def key(self) -> str | None:
        m = _KEY.match(self.text[self.key_col :])
        return m.group(1) if m else None

    @property
    def shown(self) -> str:
        text = self.text.rstrip()
        return f"`{text if len(text) <= 60 else text[:57] + '...'}`"


def _line(lines: list[str], index: int) -> _Line:
    text = lines[index] if 0 <= index < len(lines) else ""
    stripped = text.lstrip(" ")
    indent = len(text) - len(stripped)
    col = indent
    while text[col : col + 2] == "- " or text[col:].rstrip() == "-":
        col += 1
        while col < len(text) and text[col] == " ":
            col += 1
    return _Line(index + 1, text, indent, col > indent, col)


def _content_above(lines: list[str], index: int) -> list[_Line]:
    """Lines above `index` that hold content (not blank, not only a comment), nearest first."""
    out = []
    for i in range(min(index, len(lines)) - 1, -1, -1):
        stripped = lines[i].strip()
        if stripped and not stripped.startswith("#"):
            out.append(_line(lines, i))
    return out


def syntax_hint(source: str, exc: yaml.MarkedYAMLError) -> tuple[int, int, str]:
    """(line, column, message) of a YAML syntax error, 1-based (0, 0 when unknown)."""
    lines = source.splitlines()
    problem = f"{exc.problem or ''}"
    context = f"{exc.context or ''}"
    mark = exc.problem_mark or exc.context_mark
    ctx = exc.context_mark
    if mark is None:
        return 0, 0, "not valid YAML; " + INDENT_RULE
    line, col = mark.line + 1, mark.column + 1
    here = _line(lines, mark.line)
    if "\t" in here.text[: mark.column + 1] or "'\\t'" in problem:
        return line, col, "a tab character here; indent with spaces, not tabs"
    if "single document" in context:
        return line, col, "one YAML document per file: remove the `---` separator and what follows"
    if "quoted scalar" in context and ctx is not None:
        hint = _quote_hint(lines, ctx.line, problem)
        if hint:
            return ctx.line + 1, ctx.column + 1, hint
    unclosed = _unclosed_quote(lines, ctx.line if ctx else 0, mark.line)
    if unclosed is not None and "quoted scalar" not in context:
        return unclosed.no, unclosed.indent + 1, _unclosed_message(unclosed)
    for words, hint in _SIMPLE:
        if any(w in f"{context} {problem}" for w in words):
            return line, col, hint(lines, exc)
    if "mapping values are not allowed" in problem:
        return _colon_hint(lines, mark.line, mark.column)
    if "could not find expected ':'" in problem and ctx is not None:
        key = _line(lines, ctx.line)
        return (
            ctx.line + 1,
            ctx.column + 1,
            f"{key.shown} has no `:`; write `key: value` (a colon and a space after the key), "
            f"or, if it continues the value above, indent it under that value",
        )
    if "sequence entries are not allowed" in problem:
        return (
            line,
            col,
            (
                "a list cannot start on the same line as its key; put each `- ` item on its own "
                "line, indented under the key"
            ),
        )
    if mark.column > here.indent and here.text[: mark.column].strip():
        return (
            line,
            col,
            (
                f"unexpected text after the value in {here.shown}; quote the whole value "
                '(e.g. note: "x y"), or put the next key on its own line'
            ),
        )
    return here.no, here.indent + 1, _indent_hint(lines, here)


def _quote_hint(lines: list[str], index: int, problem: str) -> str | None:
    opened = _line(lines, index)
    if "end of stream" in problem or "document separator" in problem:
        return _unclosed_message(opened)
    if "escape" in problem or "hexdecimal" in problem or "hexadecimal" in problem:
        return (
            'in double quotes a backslash starts an escape (\\n, \\t, \\"); write \\\\ for a '
            "backslash, or use single quotes: note: 'C:\\path'"
        )
    return None


def _unclosed_quote(lines: list[str], start: int, stop: int) -> _Line | None:
    """The first line in [start, stop) whose value opens a quote and does not close it."""
    for i in range(max(start, 0), min(stop, len(lines))):
        m = _QUOTED_VALUE.match(lines[i])
        if m is None:
            continue
        quote, rest = m.group(1), m.group(2)
        closed = re.search(r'(?<!\\)"', rest) if quote == '"' else re.search(r"'(?!')", rest)
        if closed is None:
            return _line(lines, i)
    return None


def _unclosed_message(opened: _Line) -> str:
    return (
        f"a quote opened in {opened.shown} is not closed; end the value with the same "
        'quote on that line, e.g. name: "Acme Dental"'
    )


def _colon_hint(lines: list[str], index: int, column: int) -> tuple[int, int, str]:
    here = _line(lines, index)
    before = here.text[here.key_col : column]
    if ": " in before or before.endswith(":"):
        return (
            index + 1,
            column + 1,
            f"a second `: ` in {here.shown}; quote a value that contains `: ` "
            '(e.g. name: "Acme: Dental"), and put each key on its own line',
        )
    return here.no, here.indent + 1, _indent_hint(lines, here)


def _indent_hint(lines: list[str], here: _Line) -> str:
    """What is off about the indentation of `here`, against the lines above it."""
    above = _content_above(lines, here.no - 1)
    what = f"{here.shown} is indented {_spaces(here.indent)}"
    if not here.dash and here.key is None:
        return (
            f"{here.shown} is not a `key: value` line; write key: value, quote a value that "
            f"starts with a special character, or indent a value's next line under it: "
            f"{INDENT_RULE}"
        )
    if not above:
        return f"{what}; start the first key of the file at column 1: {INDENT_RULE}"
    prev = above[0]
    if here.dash:
        item = next((a for a in above if a.dash), None)
        if item is not None and item.indent != here.indent:
            return (
                f"{what}, the list item above it (line {item.no}) {_spaces(item.indent)}; "
                f"indent it {_spaces(item.indent)}: {INDENT_RULE}"
            )
        return f"{what}; put a list under a key that ends with `:`: {INDENT_RULE}"
    if prev.dash and prev.indent <= here.indent != prev.key_col:
        return (
            f"{what}; to belong to the list item above (line {prev.no}), indent it "
            f"{_spaces(prev.key_col)}, under {_name(prev)}, or start a new item with `- `: "
            f"{INDENT_RULE}"
        )
    if here.indent > prev.key_col:
        return (
            f"{what}, more than {_name(prev)} above it (line {prev.no}); indent it "
            f"{_spaces(prev.key_col)}: {INDENT_RULE}"
        )
    levels = _open_levels(above)
    choices = " or ".join(
        f"{_spaces(a.key_col)} (under {_name(a)}, line {a.no})" for a in levels[:3]
    )
    return f"{what}, under no key above it; indent it {choices}: {INDENT_RULE}"


def _name(line: _Line) -> str:
    return f"`{line.key}:`" if line.key else f"`{line.text.strip()[:30]}`"


def _open_levels(above: list[_Line]) -> list[_Line]:
    """The lines whose keys a new line could line up with: the nearest line, then each
    less-indented line above it (its parents), nearest first."""
    out: list[_Line] = []
    for line in above:
        if not out or line.key_col < out[-1].key_col:
            out.append(line)
    return out


def _spaces(n: int) -> str:
    return f"{n} space{'s' if n != 1 else ''}"


def _char_hint(lines: list[str], exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark
    text = lines[mark.line] if mark and mark.line < len(lines) else ""
    char = text[mark.column] if mark and mark.column < len(text) else "?"
    rest = text[mark.column + 1 :].strip()[:20] if mark else ""
    key = _line(lines, mark.line).key if mark else None
    if key is None or not text[: mark.column].rstrip().endswith(":"):
        return f'a key or value cannot start with {char!r}; quote it, e.g. "{char}{rest}"'
    return f'a value cannot start with {char!r}; quote it, e.g. {key}: "{char}{rest}"'


def _flow_hint(lines: list[str], exc: yaml.MarkedYAMLError) -> str:
    ctx = exc.context_mark
    close = "]" if "sequence" in f"{exc.context}" else "}"
    where = f" at line {ctx.line + 1}" if ctx else ""
    opener = "[" if close == "]" else "{"
    return (
        f"the `{opener}` opened{where} is not closed; close it with `{close}` on the same "
        f"line and separate its items with `, `, or write it as an indented block"
    )


def _node_hint(lines: list[str], exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark
    rest = "\n".join(lines[mark.line :])[mark.column :] if mark else ""
    if mark is None or not rest.strip():  # the file ends inside a [ ... ] or { ... }
        return (
            "the file ends inside a `[` or `{` that is not closed; close it with `]` or `}` "
            "on the same line, or write the value as an indented block"
        )
    char = rest.strip()[0]
    return f'a value cannot start with {char!r}; quote the value, e.g. note: "{char}"'


_SIMPLE = (
    (
        ("found undefined alias",),
        lambda lines, exc: (
            "an alias (`*name`) refers to no anchor (`&name`) above it; write the value out"
        ),
    ),
    (
        ("found duplicate anchor",),
        lambda lines, exc: (
            "the same anchor (`&name`) is defined twice; give each its own name, "
            "or write the values out"
        ),
    ),
    (
        ("directive",),
        lambda lines, exc: "a `%` directive line is not needed in a config file; remove it",
    ),
    (
        ("document start",),
        lambda lines, exc: (
            "content after the end of the document (`...`); remove the `...` "
            "line, one YAML document per file"
        ),
    ),
    (
        ("block scalar",),
        lambda lines, exc: (
            "after `|` or `>` only `-`, `+` or an indentation digit may follow; "
            "write the text on the lines below, indented"
        ),
    ),
    (
        ("while scanning an alias", "while scanning an anchor"),
        lambda lines, exc: (
            "an anchor or alias needs a name (`&name`, `*name`); write the value out, or quote "
            "a value that starts with `&` or `*`"
        ),
    ),
    (
        ("while scanning a tag",),
        lambda lines, exc: (
            "a `!` tag is not allowed; remove it, or quote a value that starts with `!`"
        ),
    ),
    (("cannot start any token",), _char_hint),
    (("flow sequence", "flow mapping"), _flow_hint),
    (("node content",), _node_hint),
)
