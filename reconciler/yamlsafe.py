"""A safe YAML loader that remembers where every value was written.

- Only the YAML core types: explicit tags (`!!python/...`, `!custom`) are refused.
- Duplicate keys are errors, not "last one wins".
- Alias expansion is bounded, so a billion-laughs file fails fast.
- Files over 10 MiB are refused before parsing; non-UTF-8 and binary files are named as such.
- ISO timestamps stay strings (the models parse them), so a quoted and an unquoted time
  mean the same thing.

`load_yaml` returns the plain Python value plus where each part of it is written: for the
mapping or sequence at a path (e.g. `("numbers", 2)`), the 1-based line and column of each
of its keys (or items). Pydantic error locations are the same paths, so every error can
name `file:line:col`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.errors import ConfigIssue
from reconciler.yaml_hints import INDENT_RULE, syntax_hint

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_EXPANDED_NODES = 200_000  # nodes visited, aliases counted each time they are used

Path_ = tuple[str | int, ...]

_CORE_TAGS = {
    "tag:yaml.org,2002:" + t
    for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
}


_STRING_TAGS = {"tag:yaml.org,2002:str", "tag:yaml.org,2002:timestamp"}


class YamlError(Exception):
    """The file is not usable YAML; carries the located issues (the first one is `issue`)."""

    def __init__(self, issue: ConfigIssue, *more: ConfigIssue):
        self.issue = issue
        self.issues = [issue, *more]
        super().__init__("\n".join(str(i) for i in self.issues))


@dataclass
class LoadedYaml:
    path: str
    data: Any
    # For the mapping or sequence at a path: line and column of each key (or item index).
    lines: dict[Path_, dict[Any, int]] = field(default_factory=dict)
    cols: dict[Path_, dict[Any, int]] = field(default_factory=dict)
    start: tuple[int, int] = (0, 0)  # of the document's value
    raw: bytes = b""
    # problems that do not stop the file from loading (duplicate keys: the first one is kept)
    issues: list[ConfigIssue] = field(default_factory=list)
    _composed: tuple[str, Node | None] | None = field(default=None, repr=False, compare=False)

    def where(self, loc: Path_) -> tuple[int, int]:
        """Line and column of the deepest known prefix of `loc` (`start` if none)."""
        for end in range(len(loc), 0, -1):
            parent, key = tuple(loc[: end - 1]), loc[end - 1]
            line = self.lines.get(parent, {}).get(key)
            if line is not None:
                return line, self.cols[parent][key]
        return self.start

    def written(self, loc: Path_) -> str | None:
        """The value at `loc` exactly as the file writes it (`14105550188`, `off`, `"3.00"`),
        or None when it is not one line of text. Composes the file again: errors only."""
        if self._composed is None:
            try:
                text = self.raw.decode("utf-8-sig")
                # the pure-Python loader: its marks index the text
                self._composed = (text, yaml.compose(text, Loader=yaml.SafeLoader))
            except (yaml.YAMLError, UnicodeDecodeError):
                self._composed = ("", None)
        text, node = self._composed
        for part in loc:
            if isinstance(node, MappingNode):
                node = next((v for k, v in node.value if k.value == str(part)), None)
            elif isinstance(node, SequenceNode) and isinstance(part, int):
                node = node.value[part] if 0 <= part < len(node.value) else None
            else:
                return None
        if node is None or node.start_mark.line != node.end_mark.line:
            return None
        return text[node.start_mark.index : node.end_mark.index]

    def key_lines(self, at: Path_) -> dict[Any, int]:
        """The line of each key of the mapping at `at` (shared, do not change it)."""
        return self.lines.get(at, {})


# libyaml's C parser when PyYAML has it: composing is ~10x faster (1,000 account files with
# 100,000 numbers load in about a second instead of ten); the pure-Python one otherwise.
_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """Safe loader whose timestamps stay strings (parsed later, with a clear message)."""

    # The composer asks for the tag of every node, and almost every plain scalar of an
    # account file is one of a few words (keys, "stopped", "paused", ids). The tag of a
    # plain scalar depends only on its text, so remember it (bounded) instead of running
    # the resolver's regular expressions again: ~20% of the time to compose 1,000 files.
    _plain_tags: ClassVar[dict[str, str]] = {}

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is not ScalarNode or not implicit[0]:
            return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]
        tag = self._plain_tags.get(value)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(self._plain_tags) < 4096:
                self._plain_tags[value] = tag
        return tag  # type: ignore[no-any-return]


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
    except yaml.MarkedYAMLError as exc:
        raise YamlError(_mark_issue(path, text, exc)) from None
    except yaml.reader.ReaderError as exc:
        raise YamlError(_reader_issue(path, text, exc)) from None
    except yaml.YAMLError as exc:
        raise YamlError(ConfigIssue(path, 0, 0, f"not valid YAML: {exc}")) from None
    finally:
        loader.dispose()
    result = LoadedYaml(path=path, data=None, raw=raw)
    if node is None:
        return result
    builder = _Builder(path, loader, result)
    result.start = (node.start_mark.line + 1, node.start_mark.column + 1)
    try:
        result.data = builder.build(node, ())
    except YamlError as exc:
        raise YamlError(*result.issues, *exc.issues) from None
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


def _mark_issue(path: str, source: str, exc: yaml.MarkedYAMLError) -> ConfigIssue:
    try:
        return ConfigIssue(path, *syntax_hint(source, exc))
    except Exception:  # the hint is a best effort; the error and its place are not
        log.debug("yaml: no hint for %r", exc, exc_info=True)
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        return ConfigIssue(path, line, col, f"not valid YAML here; {INDENT_RULE}")


class _Builder:
    """Turns a composed node graph into Python values, recording where keys and items are
    written and enforcing limits.

    Fleet-sized configs have ~300 nodes per file and 1,000 files: scalars (most nodes) are
    built inline and only containers get a path, which halves the time of a node-per-call
    walk.
    """

    def __init__(self, path: str, loader: _Loader, result: LoadedYaml):
        self.path = path
        self.loader = loader
        self.lines = result.lines
        self.cols = result.cols
        self.issues = result.issues
        self.visited = 0

    def issue(self, node: Node, message: str) -> YamlError:
        m = node.start_mark
        return YamlError(ConfigIssue(self.path, m.line + 1, m.column + 1, message))

    def build(self, node: Node, at: Path_) -> Any:
        """The value of `node` at path `at`."""
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        self.count(node)
        if node.tag not in _CORE_TAGS:
            raise self.tag_issue(node)
        if isinstance(node, SequenceNode):
            return self.build_sequence(node, at)
        return self.build_mapping(node, at)

    def count(self, node: Node) -> None:
        self.visited += 1
        if self.visited > MAX_EXPANDED_NODES:
            raise self.issue(
                node,
                "too many nodes after alias expansion (alias bomb?); "
                "write the values out instead of nesting aliases",
            )

    def tag_issue(self, node: Node) -> YamlError:
        return self.issue(
            node,
            f"YAML tag {node.tag!r} is not allowed; remove the tag "
            "(only plain values, lists and mappings)",
        )

    def scalar(self, node: ScalarNode) -> Any:
        self.count(node)
        tag = node.tag
        if tag in _STRING_TAGS:
            return node.value
        if tag not in _CORE_TAGS:
            raise self.tag_issue(node)
        return self.loader.yaml_constructors[tag](self.loader, node)

    def build_sequence(self, node: SequenceNode, at: Path_) -> list[Any]:
        items: list[Any] = []
        lines: dict[Any, int] = {}
        cols: dict[Any, int] = {}
        self.lines[at], self.cols[at] = lines, cols
        for i, child in enumerate(node.value):
            start = child.start_mark
            lines[i], cols[i] = start.line + 1, start.column + 1
            if isinstance(child, ScalarNode):
                items.append(self.scalar(child))
            else:
                items.append(self.build(child, (*at, i)))
        return items

    def build_mapping(self, node: MappingNode, at: Path_) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        lines: dict[Any, int] = {}
        cols: dict[Any, int] = {}
        self.lines[at], self.cols[at] = lines, cols
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise self.issue(key_node, "merge keys (<<) are not supported; write the keys out")
            if not isinstance(key_node, ScalarNode):
                raise self.issue(key_node, "a mapping key must be a plain value")
            key = self.scalar(key_node)
            if key in out:  # reported, and the first one kept: the rest of the file is checked
                self.issues.append(
                    self.issue(
                        key_node,
                        f"duplicate key {key!r} (first at line {lines[key]}); keep only one",
                    ).issue
                )
                continue
            # errors about a key point at the key itself, not at its value
            start = key_node.start_mark
            lines[key], cols[key] = start.line + 1, start.column + 1
            if isinstance(value_node, ScalarNode):
                out[key] = self.scalar(value_node)
            else:
                out[key] = self.build(value_node, (*at, key))
        return out
