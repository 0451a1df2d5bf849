"""Read YAML configuration with line numbers, so every error names file, line, field path and the fix.

PyYAML's composer keeps the position of every node; we walk that node tree instead of the constructed
Python objects, which lose positions and silently keep the last of two duplicate keys.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NoReturn

import yaml

# libyaml's composer keeps the same marks and is ~10x faster: a 50k-port inventory loads in seconds.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigError(Exception):
    """A configuration problem located as `file:line field.path: message`."""

    def __init__(self, source: str, line: int, path: str, message: str) -> None:
        self.source = source
        self.line = line
        self.path = path
        self.message = message
        where = f"{source}:{line}" if line else source
        head = " ".join(part for part in (where, path) if part)  # a secret built in code has no location
        super().__init__(f"{head}: {message}" if head else message)


_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def parse_duration(text: str) -> float:
    """Parse a Prometheus duration ("90s", "5m", "1h30m", "250ms") into seconds; ValueError when invalid."""
    match = _DURATION_RE.match(text.strip())
    if not text.strip() or not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration: use a number with a unit, e.g. 30s, 5m, 1h30m, 250ms")
    return sum(int(part) * unit for part, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if part)


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration string for a number of seconds (inverse of parse_duration)."""
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    out = []
    for unit, suffix in ((86400_000, "d"), (3600_000, "h"), (60_000, "m"), (1000, "s"), (1, "ms")):
        count, millis = divmod(millis, unit)
        if count:
            out.append(f"{count}{suffix}")
    return "".join(out)


class Node:
    """One YAML node with its location; typed accessors raise ConfigError naming the field."""

    def __init__(self, node: yaml.Node, path: str, source: str) -> None:
        self._node = node
        self.path = path
        self.source = source

    @property
    def line(self) -> int:
        return self._node.start_mark.line + 1

    def fail(self, message: str) -> NoReturn:
        raise ConfigError(self.source, self.line, self.path, message)

    def _child_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    # -- containers ---------------------------------------------------------------------------------

    @property
    def is_mapping(self) -> bool:
        return isinstance(self._node, yaml.MappingNode)

    @property
    def is_null(self) -> bool:
        return isinstance(self._node, yaml.ScalarNode) and self._node.tag == "tag:yaml.org,2002:null"

    def mapping(self, allowed: Iterable[str], required: Iterable[str] = ()) -> dict[str, Node]:
        """The mapping's children by key; unknown, duplicate and missing keys are errors."""
        if not isinstance(self._node, yaml.MappingNode):
            self.fail(f"expected a mapping (key: value), got {self._kind()}")
        allowed_keys = set(allowed)
        children: dict[str, Node] = {}
        for key_node, value_node in self._node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            key_path = self._child_path(str(key))
            if not isinstance(key, str):
                raise ConfigError(self.source, key_node.start_mark.line + 1, self.path, "keys must be strings")
            if key not in allowed_keys:
                raise ConfigError(
                    self.source, key_node.start_mark.line + 1, key_path,
                    f"unknown key {key!r}; valid keys here: {', '.join(sorted(allowed_keys))}",
                )
            if key in children:
                raise ConfigError(
                    self.source, key_node.start_mark.line + 1, key_path,
                    f"duplicate key {key!r} (first given on line {children[key].line})",
                )
            children[key] = Node(value_node, key_path, self.source)
        missing = [key for key in required if key not in children]
        if missing:
            self.fail(f"missing required key {missing[0]!r}")
        return children

    def mapping_items(self) -> list[tuple[str, Node]]:
        """A mapping whose keys are data (user names, ...): string keys, no duplicates."""
        if not isinstance(self._node, yaml.MappingNode):
            self.fail(f"expected a mapping (key: value), got {self._kind()}")
        items: dict[str, Node] = {}
        for key_node, value_node in self._node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str) or not key:
                raise ConfigError(self.source, key_node.start_mark.line + 1, self.path, "keys must be strings")
            if key in items:
                raise ConfigError(self.source, key_node.start_mark.line + 1, self._child_path(key),
                                  f"duplicate key {key!r} (first given on line {items[key].line})")
            items[key] = Node(value_node, self._child_path(key), self.source)
        return list(items.items())

    def sequence(self) -> list[Node]:
        if self.is_null:
            return []
        if not isinstance(self._node, yaml.SequenceNode):
            self.fail(f"expected a list, got {self._kind()}")
        return [Node(child, self._child_path(i), self.source) for i, child in enumerate(self._node.value)]

    def _kind(self) -> str:
        if isinstance(self._node, yaml.MappingNode):
            return "a mapping"
        if isinstance(self._node, yaml.SequenceNode):
            return "a list"
        return f"{self._node.value!r}"

    # -- scalars ------------------------------------------------------------------------------------

    def _scalar(self) -> yaml.ScalarNode:
        if not isinstance(self._node, yaml.ScalarNode) or self.is_null:
            self.fail(f"expected a single value, got {self._kind() if not self.is_null else 'nothing'}")
        return self._node

    @property
    def raw(self) -> str:
        return self._scalar().value

    def _plain_number(self) -> bool:
        # A quoted "5" is a string in YAML; only plain scalars resolve to int/float.
        return self._scalar().tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")

    def string(self, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = self.raw
        if not value:
            self.fail("must not be empty")
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(f"{value!r} is not valid: {what}")
        return value

    def integer(self, minimum: int | None = None, maximum: int | None = None) -> int:
        node = self._scalar()
        try:
            value = int(node.value, 0) if node.tag == "tag:yaml.org,2002:int" else int(node.value)
        except ValueError:
            self.fail(f"{node.value!r} is not a whole number")
        self._check_range(value, minimum, maximum)
        return value

    def number(self, minimum: float | None = None, maximum: float | None = None) -> float:
        node = self._scalar()
        try:
            value = float(node.value)
        except ValueError:
            self.fail(f"{node.value!r} is not a number")
        if not math.isfinite(value):
            self.fail(f"{node.value!r} is not a finite number")
        self._check_range(value, minimum, maximum)
        return value

    def _check_range(self, value: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and value < minimum:
            self.fail(f"{value} is below the minimum {minimum}")
        if maximum is not None and value > maximum:
            self.fail(f"{value} is above the maximum {maximum}")

    def boolean(self) -> bool:
        node = self._scalar()
        if node.tag != "tag:yaml.org,2002:bool":
            self.fail(f"{node.value!r} is not a boolean: use true or false")
        return node.value.lower() in ("true", "yes", "on")

    def duration(self, minimum: float = 0.0, maximum: float | None = None) -> float:
        node = self._scalar()
        if self._plain_number():
            self.fail(f"{node.value!r} has no unit: write a duration such as {node.value}s or {node.value}m")
        try:
            seconds = parse_duration(node.value)
        except ValueError as err:
            self.fail(str(err))
        if seconds <= minimum:
            self.fail(f"{node.value!r} must be longer than {format_duration(minimum)}")
        if maximum is not None and seconds > maximum:
            self.fail(f"{node.value!r} must be at most {format_duration(maximum)}")
        return seconds

    def choice(self, options: Iterable[str]) -> str:
        valid = list(options)
        value = self.raw
        if value not in valid:
            self.fail(f"{value!r} is not one of: {', '.join(valid)}")
        return value

    def ip_address(self) -> str:
        value = self.raw
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            self.fail(f"{value!r} is not an IP address")

    def string_list(self) -> list[str]:
        node_list = self.sequence() if not isinstance(self._node, yaml.ScalarNode) or self.is_null else [self]
        return [item.raw for item in node_list]


def load(path: str | Path) -> Node:
    """Compose a YAML file into a located node tree; a syntax error names the file and line."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(source, 0, "", f"cannot read: {err.strerror or err}") from err
    return load_text(text, source)


def load_text(text: str, source: str) -> Node:
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError(source, line, "", f"YAML syntax error: {err.problem or err}") from err
    if root is None:
        raise ConfigError(source, 1, "", "the file is empty")
    return Node(root, "", source)


def unique_ids(nodes: Iterator[tuple[str, Node]] | Iterable[tuple[str, Node]], what: str) -> None:
    """Raise on the second occurrence of an id, naming where the first one was."""
    seen: dict[str, Node] = {}
    for ident, node in nodes:
        if ident in seen:
            node.fail(f"duplicate {what} id {ident!r} (first defined on line {seen[ident].line})")
        seen[ident] = node
