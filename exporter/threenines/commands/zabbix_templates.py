"""`threenines zabbix-templates -o DIR`: write the Zabbix 6.0 templates generated from the metric contract;
`--check` diffs DIR instead (the repository keeps them in zabbix_templates/)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="directory of the templates")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file in DIR differs")


def run(args: argparse.Namespace) -> int:
    from threenines.zabbix.templates import template_files

    stale = []
    for template in template_files():
        path = args.output / template.filename
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == template.text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(template.text, encoding="utf-8")
            print(f"wrote {path}")
    if args.check and stale:
        print("out of date (run `make zabbix-templates`): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0
