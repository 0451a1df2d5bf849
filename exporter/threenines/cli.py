"""`threenines` command line: argument parsing and dispatch only; each command lives in its own module.

A command module provides `add_arguments(parser)` and `run(args) -> int` and keeps heavy imports inside
`run`, so `threenines check` does not pay for pysnmp.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from threenines import __version__
from threenines.logs import FORMATS, LEVELS, configure

# (name, module, one-line help). Add a command by adding a line here and a module beside this one.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("serve", "threenines.commands.serve", "run the exporter: probes, ledgers, /metrics"),
    ("check", "threenines.commands.check", "validate the inventory (and deployment configs) without starting anything"),
    ("demo", "threenines.commands.demo", "run the exporter on a built-in loopback inventory"),
    ("alertmanager-config", "threenines.commands.alertmanager_config",
     "generate Alertmanager routes and receivers from the inventory"),
    ("maintenance", "threenines.commands.maintenance", "sync agreed maintenance windows to Alertmanager silences"),
    ("status", "threenines.commands.status",
     "each customer's services now, open outages and their notification, the month so far"),
    ("report", "threenines.commands.report", "monthly SLA statement for billing (months, exclusions, credits)"),
    ("poll", "threenines.commands.poll", "read one UPS/PDU once over SNMP and print its normalised readings"),
    ("trap", "threenines.commands.trap", "snmptrapd traphandle: have the exporter poll the trapping UPS at once"),
    ("zabbix-sync", "threenines.commands.zabbix_sync", "create/update Zabbix hosts, services and SLAs (inventory)"),
    ("dashboards", "threenines.commands.dashboards", "write the Grafana dashboards, or print their queries"),
    ("zabbix-templates", "threenines.commands.zabbix_templates", "write the Zabbix 6.0 templates"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="threenines", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"threenines {__version__}")
    parser.add_argument("--log.level", "--log-level", dest="log_level", default="info", choices=LEVELS,
                        help="only log messages with this severity or above (default info)")
    parser.add_argument("--log.format", dest="log_format", default="logfmt", choices=FORMATS,
                        help="output format of log messages (default logfmt)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure(args.log_level, args.log_format)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
