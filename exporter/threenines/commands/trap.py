"""`threenines trap`: snmptrapd's `traphandle` program. Reads one trap as snmptrapd hands it over (standard input:
host name, transport address, then one "OID value" line per variable binding) and asks the exporter to poll the
UPS that sent it, and the PDUs it feeds, at once (POST /-/power/trap). The trap is a hint; the poll is the
evidence. See examples/snmptrapd/ for the snmptrapd.conf lines.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:9839/-/power/trap"
SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"      # SNMPv2-MIB::snmpTrapOID.0
SNMP_TRAP_ADDRESS = "1.3.6.1.6.3.18.1.3.0"   # SNMP-COMMUNITY-MIB::snmpTrapAddress.0 (the agent, for v1 traps
                                             # and traps forwarded by a proxy)
_SYMBOLS = {"SNMPv2-MIB::snmpTrapOID.0": SNMP_TRAP_OID, "SNMP-COMMUNITY-MIB::snmpTrapAddress.0": SNMP_TRAP_ADDRESS}
_TRANSPORT = re.compile(r"\[([0-9A-Fa-f:.]+)\]")
_IPV4 = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}")
MAX_LINES = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the exporter's trap route (default {DEFAULT_URL})")
    parser.add_argument("--timeout", type=float, default=5.0)
    http = parser.add_argument_group("exporter HTTP (as set by --web.config.file)")
    http.add_argument("--basic-auth-user")
    http.add_argument("--basic-auth-password-file", help="file holding the password (never on the command line)")
    http.add_argument("--ca-file", help="CA bundle for an https exporter")
    http.add_argument("--insecure-skip-verify", action="store_true")


def _numeric(oid: str) -> str:
    oid = _SYMBOLS.get(oid, oid)
    if oid.startswith("iso."):
        oid = "1." + oid[4:]
    return oid.lstrip(".")


def parse_traphandle(text: str) -> tuple[str, str]:
    """(agent address, trap OID or "") from snmptrapd's traphandle input; ValueError when there is no address."""
    lines = text.splitlines()[:MAX_LINES]
    if len(lines) < 2:
        raise ValueError("expected snmptrapd's traphandle input: host name, transport address, variable bindings")
    address = None
    transport = _TRANSPORT.search(lines[1])
    if transport is not None:
        address = transport[1]
    elif _IPV4.fullmatch(lines[1].strip()):
        address = lines[1].strip()
    trap = ""
    for line in lines[2:]:
        oid, _, value = line.strip().partition(" ")
        oid, value = _numeric(oid), value.strip().strip('"')
        if oid == SNMP_TRAP_OID:
            trap = _numeric(value)
        elif oid == SNMP_TRAP_ADDRESS and _IPV4.fullmatch(value.split()[-1] if value else ""):
            address = value.split()[-1]  # "IpAddress: 10.0.0.5" or "10.0.0.5"
    if address is None:
        raise ValueError(f"no agent address in {lines[1][:80]!r}")
    return address, trap if set(trap) <= set("0123456789.") else ""


def run(args: argparse.Namespace) -> int:
    import requests

    try:
        address, trap = parse_traphandle(sys.stdin.read(256 * 1024))
    except ValueError as err:
        print(f"threenines trap: {err}", file=sys.stderr)
        return 1
    auth = None
    if args.basic_auth_user:
        if not args.basic_auth_password_file:
            print("threenines trap: --basic-auth-user needs --basic-auth-password-file", file=sys.stderr)
            return 1
        auth = (args.basic_auth_user, Path(args.basic_auth_password_file).read_text(encoding="utf-8").strip())
    verify: bool | str = False if args.insecure_skip_verify else (args.ca_file or True)
    try:
        response = requests.post(args.url, data=json.dumps({"address": address, "trap": trap}), auth=auth,
                                 verify=verify, timeout=args.timeout,
                                 headers={"Content-Type": "application/json"})
    except requests.RequestException as err:
        print(f"threenines trap: cannot reach the exporter at {args.url}: {type(err).__name__}", file=sys.stderr)
        return 1
    if response.status_code != 202:
        print(f"threenines trap: {args.url} answered HTTP {response.status_code}: {response.text.strip()[:200]}",
              file=sys.stderr)
        return 1
    return 0
