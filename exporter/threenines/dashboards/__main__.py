"""`python -m threenines.dashboards --write`: regenerate grafana/dashboards/*.json; `--check` diffs instead;
`--queries --prometheus URL` prints every panel's PromQL as a link to that Prometheus' graph page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from threenines.dashboards import DASHBOARDS, render_all, to_model
from threenines.dashboards.queries import query_links


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m threenines.dashboards", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("grafana/dashboards"),
                        help="directory of the committed dashboards (default: grafana/dashboards, from the repo root)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write every dashboard's JSON")
    mode.add_argument("--check", action="store_true", help="exit 1 when a committed file differs from the generator")
    mode.add_argument("--queries", action="store_true", help="print every panel's PromQL as a Prometheus graph link")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus URL for --queries")
    parser.add_argument("--rate-interval", default="2m",
                        help="$__rate_interval for --queries: 4 x the scrape interval (default %(default)s)")
    args = parser.parse_args(argv)
    if args.queries:
        models = [to_model(build()) for build in DASHBOARDS.values()]
        print("\n".join(query_links(models, args.prometheus, args.rate_interval)))
        return 0
    stale = []
    for name, text in render_all().items():
        path = args.out / name
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        elif not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(path)
    for path in stale:
        print(f"{path} differs from the generator: run `make dashboards` and commit the result", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
