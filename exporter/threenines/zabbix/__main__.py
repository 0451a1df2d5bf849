"""`python -m threenines.zabbix [--check] [DIR]`: write (or check) the generated templates in zabbix_templates/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from threenines.zabbix.templates import template_files

DEFAULT_DIR = Path(__file__).resolve().parents[3] / "zabbix_templates"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m threenines.zabbix", description=__doc__)
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--check", action="store_true", help="exit 1 when a file differs from what would be written")
    args = parser.parse_args(argv)
    stale = []
    for template in template_files():
        path = args.directory / template.filename
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == template.text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(template.text, encoding="utf-8")
            print(f"wrote {path}")
    if args.check and stale:
        print("out of date (run python -m threenines.zabbix): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
