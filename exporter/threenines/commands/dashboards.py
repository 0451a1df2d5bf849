"""`threenines dashboards -o DIR`: write the Grafana dashboards; `--check` diffs DIR instead; `--queries` prints
every panel's PromQL as a link to a Prometheus graph page (for a NOC without Grafana, and the demo)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, metavar="DIR",
                        help="directory of the dashboards' JSON (the repository keeps them in grafana/dashboards)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file in DIR differs")
    parser.add_argument("--queries", action="store_true", help="print every panel's PromQL as a Prometheus graph link")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus URL for --queries")
    parser.add_argument("--rate-interval", default="2m",
                        help="$__rate_interval for --queries: 4 x the scrape interval (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from threenines.dashboards import DASHBOARDS, render_all, to_model
    from threenines.dashboards.queries import query_links

    if args.queries:
        models = [to_model(build()) for build in DASHBOARDS.values()]
        print("\n".join(query_links(models, args.prometheus, args.rate_interval)))
        return 0
    if args.output is None:
        print("error: -o DIR is required (or --queries)", file=sys.stderr)
        return 2
    stale = []
    for name, text in render_all().items():
        path = args.output / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    for path in stale:
        print(f"{path} differs from the generator: run `make dashboards` and commit the result", file=sys.stderr)
    return 1 if stale else 0
