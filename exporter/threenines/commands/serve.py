"""`threenines serve --config inventory.yml`: run the exporter until SIGTERM/SIGINT; SIGHUP reloads."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="inventory YAML file")
    parser.add_argument("--listen", help="HOST:PORT for /metrics (overrides exporter.listen)")
    parser.add_argument("--state-dir", type=Path, help="ledger directory (overrides exporter.state_dir)")
    parser.add_argument("--exclusions", type=Path,
                        help="exclusions ledger (exclusions.yml): drives threenines_customer_service_excluded")
    parser.add_argument("--web.config.file", dest="web_config", type=Path,
                        help="exporter-toolkit web config: TLS and basic auth (same file format as node_exporter)")
    parser.add_argument("--shard", default="0/1", type=_shard,
                        help="INDEX/COUNT: watch only the customers whose id hashes to INDEX (default 0/1: all)")
    parser.add_argument("--vantage", type=_vantage,
                        help="NAME of this replica exporter: every contract family gets vantage=NAME (overrides "
                             "exporter.vantage; give each replica its own --state-dir)")
    parser.add_argument("--peer", metavar="URL",
                        help="base URL of the other replica exporter (http://HOST:9839): one of the two delivers "
                             "each customer notification (docs/alerting.md, HA); needs --vantage")
    parser.add_argument("--tick", type=float, default=15.0,
                        help="seconds between counter updates and /metrics renders (default 15)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--privileged", dest="privileged", action="store_true", default=None,
                      help="raw ICMP sockets only (root or CAP_NET_RAW)")
    mode.add_argument("--unprivileged", dest="privileged", action="store_false",
                      help="unprivileged ICMP datagram sockets only (net.ipv4.ping_group_range)")


def _vantage(text: str) -> str:
    from threenines.config.configfile import ID_RE, ID_RULE

    if not ID_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a vantage name: {ID_RULE}")
    return text


def _shard(text: str) -> tuple[int, int]:
    from threenines.config.sharding import parse_shard

    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    from threenines.config.configfile import ConfigError
    from threenines.config.secrets import SecretError
    from threenines.probes.ping import PingSetupError
    from threenines.serve.process import Exporter, ServeOptions

    options = ServeOptions(config=args.config, listen=args.listen, state_dir=args.state_dir, tick=args.tick,
                           privileged=args.privileged, exclusions=args.exclusions,
                           web_config=args.web_config, shard=args.shard, vantage=args.vantage,
                           peer=args.peer)
    try:
        exporter = Exporter(options)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except SecretError as err:
        print(f"error: exporter.audit_token: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: cannot start: {err}", file=sys.stderr)
        return 1
    try:
        asyncio.run(exporter.run())
    except PingSetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
