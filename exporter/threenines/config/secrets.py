"""Secrets in configuration files are references, never values: a file names an environment variable or a file.

A reference is resolved only where the secret is used. At load a secret that is already there is read once,
only to refuse one that cannot work (empty, or shorter than its protocol allows).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from threenines.config.configfile import ConfigError, Node

ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
FILE_RE = re.compile(r"[^\x00]{1,4096}")  # PATH_MAX; a NUL cannot be in a file name
MAX_SECRET_BYTES = 64 * 1024
Location = tuple[str, int, str]  # (file, line, field path) of a reference in a configuration file


class SecretError(ConfigError):
    """A secret reference could not be resolved or holds an unusable value; the message names the reference
    (with its file, line and field when it came from a configuration file), never a value."""

    def __init__(self, message: str, at: Location = ("", 0, "")) -> None:
        super().__init__(*at, message)


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: an environment variable or a file. repr/str never show the value."""

    env: str | None = None
    file: str | None = None
    at: Location = field(default=("", 0, ""), compare=False, repr=False)

    def resolve(self, min_length: int = 1, rule: str = "") -> str:
        """The value; SecretError when it cannot be read, is blank (an empty token would turn authentication
        off) or is shorter than min_length (rule says why)."""
        return self._usable(self._read(), min_length, rule)

    def check_at_load(self, min_length: int = 1, rule: str = "") -> None:
        """Refuse at load a secret that is there but unusable; one not there yet (`check` on a build host, a
        file only the service user reads) is resolved, and refused, where it is used."""
        try:
            value = self._read()
        except SecretError:
            return
        self._usable(value, min_length, rule)

    def _usable(self, value: str, min_length: int, rule: str) -> str:
        if not value.strip():
            where = f"environment variable {self.env}" if self.env is not None else f"secret file {self.file}"
            raise SecretError(f"{where} is empty: an empty secret would turn authentication off; "
                              f"put the secret in {self._home()}", self.at)
        if len(value) < min_length:
            raise SecretError(f"{self.describe()} holds fewer than {min_length} characters: {rule}; "
                              f"put a longer one in {self._home()}", self.at)
        return value

    def _read(self) -> str:
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise SecretError(f"environment variable {self.env} is not set", self.at)
            return value
        assert self.file is not None
        try:
            with open(self.file, "rb") as handle:  # a secret is small: /dev/zero or a log file is not read whole
                data = handle.read(MAX_SECRET_BYTES + 1)
        except (OSError, ValueError) as err:  # ValueError: a NUL in the name
            reason = err.strerror if isinstance(err, OSError) and err.strerror else "not a file name"
            raise SecretError(f"cannot read secret file {self.file}: {reason}", self.at) from None
        if len(data) > MAX_SECRET_BYTES:
            raise SecretError(f"secret file {self.file} holds more than {MAX_SECRET_BYTES} bytes: name the file "
                              "that holds only the secret", self.at)
        try:
            return data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise SecretError(f"cannot read secret file {self.file}: not UTF-8 text", self.at) from None

    def _home(self) -> str:
        return self.env if self.env is not None else str(self.file)

    def describe(self) -> str:
        return f"env:{self.env}" if self.env is not None else f"file:{self.file}"

    def __str__(self) -> str:
        return f"<secret {self.describe()}>"


def secret_ref(node: Node, min_length: int = 1, rule: str = "") -> SecretRef:
    """A secret reference `{env: VARIABLE}` or `{file: PATH}`; a value written inline is refused."""
    if not node.is_mapping:
        node.fail("secrets are never written inline: use {env: VARIABLE} or {file: /path/to/secret}")
    fields = node.mapping(("env", "file"))
    if len(fields) != 1:
        node.fail("give exactly one of env: or file:")
    at = (node.source, node.line, node.path)
    if "env" in fields:
        ref = SecretRef(env=fields["env"].string(ENV_RE, "an environment variable name"), at=at)
    else:
        ref = SecretRef(file=fields["file"].string(FILE_RE, "a file name of at most 4096 characters"), at=at)
    ref.check_at_load(min_length, rule)
    return ref
