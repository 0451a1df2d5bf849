"""`threenines alertmanager-config`: write the Alertmanager routes and receivers generated from the inventory."""

from __future__ import annotations

import argparse
import sys

from threenines.alerting.alertmanager_config import DEFAULT_RUNBOOK_BASE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="inventory YAML file")
    parser.add_argument("--output", "-o", help="write here instead of standard output (e.g. alertmanager.yml)")
    parser.add_argument("--secrets-dir", default="/etc/alertmanager/secrets",
                        help="where {env: VAR} secrets are read from as files named VAR (default: %(default)s)")
    parser.add_argument("--write-secret-files", action="store_true",
                        help="resolve {env: VAR} secrets from this environment into --secrets-dir (mode 0600)")
    parser.add_argument("--noc-email", action="append", default=[], metavar="ADDRESS",
                        help="the provider's NOC: receives every alert (repeatable)")
    parser.add_argument("--noc-webhook", metavar="URL", help="the provider's NOC as a webhook")
    parser.add_argument("--watchdog-url", metavar="URL",
                        help="dead man's switch endpoint that receives the always-firing ThreeninesWatchdog")
    parser.add_argument("--group-wait", default="30s", help="Alertmanager group_wait (default: %(default)s)")
    parser.add_argument("--group-interval", default="1m", help="Alertmanager group_interval (default: %(default)s)")
    parser.add_argument("--repeat-interval", default="4h", help="Alertmanager repeat_interval (default: %(default)s)")
    parser.add_argument("--runbook-base-url", default=DEFAULT_RUNBOOK_BASE, metavar="URL",
                        help="where docs/ is published: the NOC's messages link BASE + alerting.md#ALERT "
                             "(default: %(default)s, where the Debian package installs the docs)")
    parser.add_argument("--replica-exporter", action="append", default=[], metavar="URL",
                        help="HA: base URL of another replica exporter (serve --peer); every customer receiver also "
                             "posts to its /alertmanager/deliver (repeatable)")


def run(args: argparse.Namespace) -> int:
    from threenines.alerting.alertmanager_config import GeneratorError, Options, render, write, write_secret_files
    from threenines.config.configfile import ConfigError, parse_duration
    from threenines.config.inventory_load import load_inventory
    from threenines.config.secrets import SecretError

    try:
        inventory = load_inventory(args.config)
        options = Options(
            secrets_dir=args.secrets_dir,
            noc_emails=tuple(args.noc_email),
            noc_webhook=args.noc_webhook,
            watchdog_url=args.watchdog_url,
            group_wait=parse_duration(args.group_wait),
            group_interval=parse_duration(args.group_interval),
            repeat_interval=parse_duration(args.repeat_interval),
            runbook_base_url=args.runbook_base_url,
            replica_urls=tuple(args.replica_exporter),
        )
        text = render(inventory, options, source=args.config)
        if args.write_secret_files:
            for path in write_secret_files(inventory, options):
                print(f"wrote secret file {path}", file=sys.stderr)
    except (ConfigError, GeneratorError, SecretError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.output:
        try:
            written = write(args.output, text, options)
        except GeneratorError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"wrote {args.output} ({len(inventory.customers)} customer receivers) and its templates: "
              f"{', '.join(str(p) for p in written[:-1])}", file=sys.stderr)
    else:
        sys.stdout.write(text)
        print("note: alertmanager.yml loads templates/*.tmpl beside it; -o FILE writes them too", file=sys.stderr)
    return 0
