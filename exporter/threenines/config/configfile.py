"""Read YAML configuration with line numbers, so every error names file, line, field path and the fix.

PyYAML's composer keeps the position of every node; we walk that node tree instead of the constructed
Python objects, which lose positions and silently keep the last of two duplicate keys.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

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


class ConfigErrors(ConfigError):
    """Every error found in one file, so a check reports them all at once, in the order found (a cause before
    its consequence: an unknown key before the required key it misspells). Its source, line, path and message
    are the first error's; str() lists them all, one located error a line."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = tuple(errors)
        first = self.errors[0]
        super().__init__(first.source, first.line, first.path, first.message)

    def __str__(self) -> str:
        return f"{self.source}: {len(self.errors)} errors\n" + "\n".join(f"  {err}" for err in self.errors)


T = TypeVar("T")


class Errors:
    """Collects located errors while a file is parsed: a bad field is recorded and a stand-in value is used, so
    the parse goes on and finds the next error. Nothing parsed from a file with errors is ever returned."""

    def __init__(self) -> None:
        self.found: list[ConfigError] = []
        self._seen: set[tuple[str, int, str, str]] = set()

    @property
    def count(self) -> int:
        return len(self.found)

    def add(self, err: ConfigError) -> None:
        for one in err.errors if isinstance(err, ConfigErrors) else (err,):
            key = (one.source, one.line, one.path, one.message)
            if key not in self._seen:  # a node checked twice (a reference re-reads its item) reports once
                self._seen.add(key)
                self.found.append(one)

    def attempt(self, build: Callable[[], T], stand_in: T) -> T:
        """build(), or stand_in when it raised a ConfigError (which is recorded)."""
        try:
            return build()
        except ConfigError as err:
            self.add(err)
            return stand_in

    def raise_any(self) -> None:
        if len(self.found) == 1:
            raise self.found[0]
        if self.found:
            raise ConfigErrors(self.found)


def shown(value: str, limit: int = 60) -> str:
    """A value quoted for an error message, cut short: a 10 MB value must not become a 10 MB message."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


# An id (customer, port, device, ...) becomes a Prometheus label value and a key between files: bounded, plain.
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}")
ID_RULE = "use letters, digits and _ . : - (start with a letter or digit, at most 63 characters)"
HOSTPORT_RE = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\s]+)(?::(?P<port>[0-9]{1,5}))?")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")
_DECIMAL_RE = re.compile(r"[-+]?(?:0|[1-9][0-9]{0,17})")
_LEADING_ZERO_RE = re.compile(r"[-+]?0[0-9_]{1,17}")
_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def parse_duration(text: str) -> float:
    """Parse a Prometheus duration ("90s", "5m", "1h30m", "250ms") into seconds; ValueError when invalid."""
    # The length bound keeps int() away from thousands of digits (Python refuses past 4300 of them).
    match = _DURATION_RE.match(text.strip()) if len(text) <= 64 else None
    if not text.strip() or not match or not any(match.groups()):
        raise ValueError(f"{shown(text)} is not a duration: use a number with a unit, e.g. 30s, 5m, 1h30m, 250ms")
    return sum(int(part) * unit for part, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if part)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_host_port(text: str, default_port: int, port_zero: bool = False) -> tuple[str, int]:
    """HOST, HOST:PORT, [IPv6] or [IPv6]:PORT → (host, port); ValueError saying what to write instead.
    port_zero: port 0 is allowed (the kernel picks a free port)."""
    value = text.strip()
    match = HOSTPORT_RE.fullmatch(value)
    if not match:
        if value.count(":") > 1 and not value.startswith("["):
            raise ValueError(f"{shown(text)} is not HOST or HOST:PORT: write an IPv6 address in brackets, "
                             f"e.g. [::1]:{default_port}")
        raise ValueError(f"{shown(text)} is not HOST or HOST:PORT, e.g. 127.0.0.1:{default_port} or "
                         f"[::1]:{default_port}")
    host = match["host"]
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{shown(host)} in brackets is not an IPv6 address") from None
    elif not is_ip(host) and not _HOSTNAME_RE.fullmatch(host):
        raise ValueError(f"{shown(host)} is neither an IP address nor a host name")
    port = int(match["port"]) if match["port"] else default_port
    if not (0 if port_zero else 1) <= port <= 65535:
        raise ValueError(f"port {port} is out of range {0 if port_zero else 1}-65535")
    return host, port


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
    """One YAML node with its location; typed accessors raise ConfigError naming the field.

    With a sink (Errors), a mapping's unknown and duplicate keys are recorded there and the parse goes on (the
    first of two duplicates is used); without one they raise. Children share their parent's sink.
    """

    def __init__(self, node: yaml.Node, path: str, source: str, sink: Errors | None = None) -> None:
        self._node = node
        self.path = path
        self.source = source
        self.sink = sink

    def collecting(self, sink: Errors) -> Node:
        """This node, recording its descendants' key errors in sink."""
        return Node(self._node, self.path, self.source, sink)

    @property
    def line(self) -> int:
        return self._node.start_mark.line + 1

    def error(self, message: str) -> ConfigError:
        """The located error, to record (Errors.add) rather than raise."""
        return ConfigError(self.source, self.line, self.path, message)

    def fail(self, message: str) -> NoReturn:
        raise self.error(message)

    def _child_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    # -- containers ---------------------------------------------------------------------------------

    @property
    def is_mapping(self) -> bool:
        return isinstance(self._node, yaml.MappingNode)

    @property
    def is_scalar(self) -> bool:
        return isinstance(self._node, yaml.ScalarNode) and not self.is_null

    @property
    def is_null(self) -> bool:
        return isinstance(self._node, yaml.ScalarNode) and self._node.tag == "tag:yaml.org,2002:null"

    def mapping(self, allowed: Iterable[str], required: Iterable[str] = (), partial: bool = False) -> Fields:
        """The mapping's children by key; unknown, duplicate and missing keys are errors. partial: with a sink,
        missing required keys are recorded too and the children there are returned (the caller reads every
        key with `in`), so the other fields are still checked."""
        if not isinstance(self._node, yaml.MappingNode):
            self.fail(f"expected a mapping (key: value), got {self._kind()}")
        allowed_keys = set(allowed)
        children = Fields()
        errors: list[ConfigError] = []
        for key_node, value_node in self._node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                errors.append(ConfigError(self.source, line, self.path, "keys must be strings"))
                continue
            key_path = self._child_path(key)
            if key not in allowed_keys:
                errors.append(ConfigError(self.source, line, key_path, f"unknown key {shown(key)}; valid keys "
                                          f"here: {', '.join(sorted(allowed_keys))}"))
            elif key in children:
                errors.append(ConfigError(self.source, line, key_path,
                                          f"duplicate key {key!r} (first given on line {children[key].line})"))
            else:
                children[key] = Node(value_node, key_path, self.source, self.sink)
        missing = [key for key in required if key not in children]
        if missing:
            errors.append(ConfigError(self.source, self.line, self.path, f"missing required key {missing[0]!r}"))
        if errors and self.sink is None:
            raise errors[0]
        if missing and not partial:
            raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
        for err in errors:  # recorded; the keys that were valid are still parsed
            assert self.sink is not None
            self.sink.add(err)
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
                                  f"duplicate key {shown(key)} (first given on line {items[key].line})")
            items[key] = Node(value_node, self._child_path(key), self.source, self.sink)
        return list(items.items())

    def sequence(self) -> list[Node]:
        if self.is_null:
            return []
        if not isinstance(self._node, yaml.SequenceNode):
            self.fail(f"expected a list, got {self._kind()}")
        return [Node(child, self._child_path(i), self.source, self.sink) for i, child in enumerate(self._node.value)]

    def _kind(self) -> str:
        if isinstance(self._node, yaml.MappingNode):
            return "a mapping"
        if isinstance(self._node, yaml.SequenceNode):
            return "a list"
        return shown(self._node.value)

    def peek(self, key: str) -> str | None:
        """The plain value under key when this is a mapping that has one; no validation, no error."""
        if isinstance(self._node, yaml.MappingNode):
            for key_node, value_node in self._node.value:
                if getattr(key_node, "value", None) == key and isinstance(value_node, yaml.ScalarNode):
                    return str(value_node.value)
        return None

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
            self.fail(f"{shown(value)} is not valid: {what}")
        return value

    def text(self, max_length: int) -> str:
        """One line of printable text of at most max_length characters: a value that becomes a label value
        (a name, an outlet) must not be empty, multi-line or unbounded."""
        value = self.raw
        if not value.strip():
            self.fail("must not be empty")
        if len(value) > max_length:
            self.fail(f"{shown(value)} is longer than {max_length} characters: shorten it")
        bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs")), None)
        if bad is not None:
            self.fail(f"{shown(value)} contains the line break or control character U+{ord(bad):04X}: write one "
                      "line of printable text")
        return value

    def integer(self, minimum: int | None = None, maximum: int | None = None) -> int:
        node = self._scalar()
        text = node.value.strip()
        # Only plain decimal: YAML 1.1 (PyYAML) reads 010 as octal 8 and 0x10 as 16, YAML 1.2 and most other
        # tools read 010 as 10; a leading zero is refused rather than read either way behind the writer's back.
        if _LEADING_ZERO_RE.fullmatch(text):
            self.fail(f"{shown(node.value)} has a leading zero, which YAML 1.1 reads as octal (010 is 8) and "
                      f"YAML 1.2 as decimal: write {int(text.replace('_', ''))} without it")
        if not _DECIMAL_RE.fullmatch(text):
            self.fail(f"{shown(node.value)} is not a whole number: write decimal digits, e.g. 2")
        value = int(text)
        self._check_range(value, minimum, maximum)
        return value

    def number(self, minimum: float | None = None, maximum: float | None = None) -> float:
        node = self._scalar()
        try:
            value = float(node.value) if len(node.value) <= 64 else math.nan
        except ValueError:
            self.fail(f"{shown(node.value)} is not a number")
        if not math.isfinite(value):
            self.fail(f"{shown(node.value)} is not a finite number")
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
            number = node.value if len(node.value) <= 20 else "30"
            self.fail(f"{shown(node.value)} has no unit: write a duration such as {number}s or {number}m")
        try:
            seconds = parse_duration(node.value)
        except ValueError as err:
            self.fail(str(err))
        if seconds <= minimum:
            self.fail(f"{shown(node.value)} must be longer than {format_duration(minimum)}")
        if maximum is not None and seconds > maximum:
            self.fail(f"{shown(node.value)} must be at most {format_duration(maximum)}")
        return seconds

    def duration_within(self, low: float, high: float, why: str = "") -> float:
        """A duration from low to high, both included; why says where the bounds come from."""
        seconds = self.duration(minimum=-1.0)
        if not low <= seconds <= high:
            self.fail(f"{shown(self.raw)} must be between {format_duration(low)} and {format_duration(high)}"
                      + (f" ({why})" if why else ""))
        return seconds

    def identifier(self) -> str:
        """An id (ID_RE): a customer, port, device, check, ... named in labels and referenced across files."""
        return self.string(ID_RE, ID_RULE)

    def choice(self, options: Iterable[str]) -> str:
        valid = list(options)
        value = self.raw
        if value not in valid:
            self.fail(f"{shown(value)} is not one of: {', '.join(valid)}")
        return value

    def ip_address(self) -> str:
        value = self.raw
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            self.fail(f"{shown(value)} is not an IP address")

    def string_list(self) -> list[str]:
        node_list = self.sequence() if not isinstance(self._node, yaml.ScalarNode) or self.is_null else [self]
        return [item.raw for item in node_list]


class Fields(dict[str, Node]):
    """A mapping's children by key (Node.mapping), with the one way to read a field that may be left out."""

    def value(self, key: str, read: Callable[[Node], T], default: T, errors: Errors | None = None) -> T:
        """read(the field) when the mapping gives key, else default. With errors, a ConfigError from read is
        recorded there and default stands in, so the parse goes on to the next field; without, it raises."""
        if key not in self:
            return default
        if errors is None:
            return read(self[key])
        return errors.attempt(functools.partial(read, self[key]), default)


def load(path: str | Path) -> Node:
    """Compose a YAML file into a located node tree; a syntax error names the file and line."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(source, 0, "", f"cannot read: {err.strerror or err}") from err
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ConfigError(source, line, "", f"byte 0x{data[err.start]:02x} in column {column} is not UTF-8: save "
                          "the file as UTF-8 (YAML files are UTF-8 text)") from None
    return load_text(text, source)


def load_text(text: str, source: str) -> Node:
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError(source, line, "", f"YAML syntax error: {err.problem or err}") from err
    except yaml.reader.ReaderError as err:  # a character YAML does not allow (NUL, other control characters)
        line = text.count("\n", 0, err.position) + 1 if isinstance(err.position, int) else 0
        what = f"the character U+{err.character:04X}" if isinstance(err.character, int) else "a character"
        raise ConfigError(source, line, "", f"YAML does not allow {what} ({err.reason}): remove it") from None
    except yaml.YAMLError as err:
        raise ConfigError(source, 0, "", f"YAML error: {err}") from None
    except RecursionError:
        raise ConfigError(source, 0, "", "YAML nested too deeply") from None
    if root is None:
        raise ConfigError(source, 1, "", "the file is empty")
    return Node(root, "", source)


def clean_items(errors: Errors, nodes: list[Node], build: Callable[[Node], T], what: str | None
                ) -> list[tuple[Node, T]]:
    """The items of a list that parsed without any error (errors recorded); with what, their ids are unique.
    An item with an error is left out of the checks that follow, so one mistake is reported once."""
    clean: list[tuple[Node, T]] = []
    for node in nodes:
        mark = errors.count
        item = errors.attempt(functools.partial(build, node), None)
        if item is not None and errors.count == mark:
            clean.append((node, item))
    if what is not None:
        seen: dict[str, Node] = {}
        for node, item in clean:
            ident = getattr(item, "id", "")
            if ident in seen:
                errors.add(node.error(f"duplicate {what} id {ident!r} (first defined on line {seen[ident].line})"))
            else:
                seen[ident] = node
    return clean


def unique_ids(nodes: Iterator[tuple[str, Node]] | Iterable[tuple[str, Node]], what: str) -> None:
    """Raise on the second occurrence of an id, naming where the first one was."""
    seen: dict[str, Node] = {}
    for ident, node in nodes:
        if ident in seen:
            node.fail(f"duplicate {what} id {ident!r} (first defined on line {seen[ident].line})")
        seen[ident] = node
