"""A small Zabbix JSON-RPC client (requests). Zabbix 6.0: `user.login` takes `username`; the session id or
an API token travels in the request's `auth` field. Error messages never contain the token or password."""

from __future__ import annotations

import itertools
from typing import Any

import requests


class ZabbixError(Exception):
    """The API refused a call, or could not be reached; the message says which method and why."""


class ZabbixApi:
    def __init__(self, url: str, timeout: float = 30.0, verify: bool | str = True) -> None:
        self.url = url if url.endswith("api_jsonrpc.php") else url.rstrip("/") + "/api_jsonrpc.php"
        self.timeout = timeout
        self._auth: str | None = None
        self._logged_in = False
        self._ids = itertools.count(1)
        self._session = requests.Session()
        self._session.verify = verify
        self._session.headers["Content-Type"] = "application/json-rpc"

    def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params if params is not None else {},
                                "id": next(self._ids)}
        if self._auth is not None and method not in ("apiinfo.version", "user.login"):
            body["auth"] = self._auth
        try:
            reply = self._session.post(self.url, json=body, timeout=self.timeout)
        except requests.RequestException as err:
            raise ZabbixError(f"{method}: cannot reach {self.url}: {type(err).__name__}") from None
        if reply.status_code != 200:
            raise ZabbixError(f"{method}: HTTP {reply.status_code} from {self.url}")
        try:
            answer = reply.json()
        except ValueError:
            raise ZabbixError(f"{method}: {self.url} did not answer JSON (is it the Zabbix frontend?)") from None
        if "error" in answer:
            error = answer["error"]
            raise ZabbixError(f"{method}: {error.get('message', '')} {error.get('data', '')}".strip())
        return answer["result"]

    def version(self) -> str:
        return str(self.call("apiinfo.version"))

    def login(self, username: str, password: str) -> None:
        self._auth = str(self.call("user.login", {"username": username, "password": password}))
        self._logged_in = True

    def use_token(self, token: str) -> None:
        self._auth = token

    def logout(self) -> None:
        if self._logged_in:
            self.call("user.logout", [])
            self._logged_in = False
        self._auth = None

    def __enter__(self) -> ZabbixApi:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.logout()
        finally:
            self._session.close()

    def import_configuration(self, source: str, fmt: str = "yaml") -> bool:
        """configuration.import with create-or-update rules. templateLinkage takes createMissing only (6.0
        rejects updateExisting there)."""
        both = {"createMissing": True, "updateExisting": True}
        rules = {
            "groups": {"createMissing": True},
            "templates": both,
            "items": {**both, "deleteMissing": True},
            "discoveryRules": {**both, "deleteMissing": True},
            "triggers": {**both, "deleteMissing": True},
            "graphs": {**both, "deleteMissing": True},
            "httptests": {**both, "deleteMissing": True},
            "valueMaps": {**both, "deleteMissing": True},
            "templateLinkage": {"createMissing": True},
            "templateDashboards": {**both, "deleteMissing": True},
        }
        return bool(self.call("configuration.import", {"format": fmt, "source": source, "rules": rules}))
