"""A safe YAML loader that remembers where every value was written.

- Only the YAML core types: explicit tags (`!!python/...`, `!custom`) are refused.
- Duplicate keys are errors, not "last one wins".
- Alias expansion is bounded, so a billion-laughs file fails fast.
- Files over 10 MiB are refused before parsing; non-UTF-8 and binary files are named as such.
- ISO timestamps stay strings (the models parse them), so a quoted and an unquoted time
  mean the same thing.

`load_yaml` returns the plain Python value plus `marks`: a map from the path of every
mapping key and sequence item (e.g. `("numbers", 2, "calls")`) to its 1-based (line, col).
Pydantic error locations are the same tuples, so every error can name `file:line:col`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.errors import ConfigIssue

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_EXPANDED_NODES = 200_000  # nodes visited, aliases counted each time they are used

Path_ = tuple[str | int, ...]

_CORE_TAGS = {
    "tag:yaml.org,2002:" + t
    for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
}


_STRING_TAGS = {"tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"}


class YamlError(Exception):
    """The file is not usable YAML; carries the located issue."""

    def __init__(self, issue: ConfigIssue):
        self.issue = issue
        super().__init__(str(issue))


@dataclass
class LoadedYaml:
    path: str
    data: Any
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    raw: bytes = b""

    def where(self, loc: Path_) -> tuple[int, int]:
        """Line and column of the deepest known prefix of `loc` (0, 0 if none)."""
        for end in range(len(loc), -1, -1):
            mark = self.marks.get(tuple(loc[:end]))
            if mark:
                return mark
        return (0, 0)


# libyaml's C parser when PyYAML has it: composing is ~10x faster (1,000 account files with
# 100,000 numbers load in about a second instead of ten); the pure-Python one otherwise.
_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """Safe loader whose timestamps stay strings (parsed later, with a clear message)."""


# Resolve timestamps as plain strings: drop the implicit timestamp resolver.
_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_text(path: str) -> tuple[str, bytes]:
    """Read a config file as UTF-8 text, refusing huge, binary and non-UTF-8 files."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise YamlError(ConfigIssue(path, 0, 0, f"cannot read: {exc.strerror}")) from None
    if size > MAX_FILE_BYTES:
        raise YamlError(
            ConfigIssue(path, 0, 0, f"file is {size:,} bytes; the limit is 10 MiB (10,485,760)")
        )
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise YamlError(ConfigIssue(path, 0, 0, f"cannot read: {exc.strerror}")) from None
    if b"\x00" in raw:
        raise YamlError(
            ConfigIssue(path, 0, 0, "binary file (contains NUL bytes); expected YAML text")
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlError(
            ConfigIssue(
                path, line, col, f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8"
            )
        ) from None
    return text, raw


def load_yaml(path: str) -> LoadedYaml:
    """Parse one YAML file into (data, marks). Raises YamlError with a located message."""
    text, raw = read_text(path)
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters up front
        raise YamlError(_reader_issue(path, text, exc)) from None
    try:
        node = loader.get_single_node()
    except yaml.composer.ComposerError as exc:
        raise YamlError(_mark_issue(path, text, exc, _composer_hint(exc))) from None
    except yaml.MarkedYAMLError as exc:
        raise YamlError(_mark_issue(path, text, exc, None)) from None
    except yaml.reader.ReaderError as exc:
        raise YamlError(_reader_issue(path, text, exc)) from None
    except yaml.YAMLError as exc:
        raise YamlError(ConfigIssue(path, 0, 0, f"not valid YAML: {exc}")) from None
    finally:
        loader.dispose()
    result = LoadedYaml(path=path, data=None, raw=raw)
    if node is None:
        return result
    builder = _Builder(path, loader, result.marks)
    result.marks[()] = (node.start_mark.line + 1, node.start_mark.column + 1)
    result.data = builder.build(node, ())
    return result


def _reader_issue(path: str, text: str, exc: yaml.YAMLError) -> ConfigIssue:
    pos = getattr(exc, "position", 0) or 0
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    char = getattr(exc, "character", "")
    code = f"U+{ord(char):04X}" if isinstance(char, str) and len(char) == 1 else repr(char)
    return ConfigIssue(
        path, line, col, f"control character {code} is not allowed in YAML; remove it"
    )


def _composer_hint(exc: yaml.MarkedYAMLError) -> str | None:
    if "single document" in f"{exc.context} {exc.problem}":
        return "one YAML document per file: remove the `---` separator and what follows"
    return None


def _mark_issue(path: str, source: str, exc: yaml.MarkedYAMLError, hint: str | None) -> ConfigIssue:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    problem = exc.problem or exc.context or "invalid YAML"
    text = hint or f"invalid YAML: {problem}"
    lines = source.splitlines()
    if mark and mark.line < len(lines) and "\t" in lines[mark.line][: mark.column + 1]:
        text += "; indent with spaces, not tabs"
    return ConfigIssue(path, line, col, text)


class _Builder:
    """Turns a composed node graph into Python values, recording marks and enforcing limits."""

    def __init__(self, path: str, loader: _Loader, marks: dict[Path_, tuple[int, int]]):
        self.path = path
        self.loader = loader
        self.marks = marks
        self.visited = 0

    def issue(self, node: Node, message: str) -> YamlError:
        m = node.start_mark
        return YamlError(ConfigIssue(self.path, m.line + 1, m.column + 1, message))

    def build(self, node: Node, at: Path_) -> Any:
        """The value of `node`; the mark of `at` is recorded by the caller (a key or an item)."""
        self.visited += 1
        if self.visited > MAX_EXPANDED_NODES:
            raise self.issue(
                node,
                "too many nodes after alias expansion (alias bomb?); "
                "write the values out instead of nesting aliases",
            )
        tag = node.tag
        if tag not in _CORE_TAGS:
            raise self.issue(
                node,
                f"YAML tag {tag!r} is not allowed; remove the tag "
                "(only plain values, lists and mappings)",
            )
        if tag in _STRING_TAGS:
            return node.value
        if isinstance(node, ScalarNode):
            return self.loader.yaml_constructors[tag](self.loader, node)
        if isinstance(node, SequenceNode):
            marks = self.marks
            items = []
            for i, child in enumerate(node.value):
                item_at = (*at, i)
                marks[item_at] = (child.start_mark.line + 1, child.start_mark.column + 1)
                items.append(self.build(child, item_at))
            return items
        return self.build_mapping(node, at)

    def build_mapping(self, node: MappingNode, at: Path_) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        lines: dict[Any, int] = {}
        marks = self.marks
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise self.issue(key_node, "merge keys (<<) are not supported; write the keys out")
            if not isinstance(key_node, ScalarNode):
                raise self.issue(key_node, "a mapping key must be a plain value")
            key = self.build(key_node, at)
            start = key_node.start_mark
            if key in out:
                raise self.issue(
                    key_node, f"duplicate key {key!r} (first at line {lines[key]}); keep only one"
                )
            lines[key] = start.line + 1
            # errors about a key point at the key itself, not at its value
            key_at = (*at, key)
            marks[key_at] = (start.line + 1, start.column + 1)
            out[key] = self.build(value_node, key_at)
        return out
