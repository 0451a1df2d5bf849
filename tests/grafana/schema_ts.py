"""Type-check dashboard JSON against Grafana's own TypeScript types (npm @grafana/schema) with tsc.

Each dashboard becomes a TypeScript module that assigns the JSON, unchanged, to a `Dashboard`, and each panel's
`options` and `fieldConfig.defaults.custom` to that panel plugin's generated `Options` / `FieldConfig`. Object
literals get TypeScript's excess-property check, so a misspelled key, a string where Grafana wants a number
(`"gridPos": {"x": "0"}`) or an unknown enum value fails. Grafana's string enums are nominal in TypeScript;
`Json<T>` widens them to their string values, which is what the JSON holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.support import REPO

SCHEMA_CHECK = REPO / "grafana" / "schema-check"
NODE_MODULES = SCHEMA_CHECK / "node_modules"
_STAMP = NODE_MODULES / ".threenines-lock-sha256"
_PANELCFG = "@grafana/schema/dist/esm/raw/composable/{dir}/panelcfg/x/{name}PanelCfg_types.gen.js"
# panel type → (directory, type-name prefix, has a FieldConfig type)
PANEL_TYPES = {
    "stat": ("stat", "Stat", False),
    "table": ("table", "Table", True),
    "timeseries": ("timeseries", "TimeSeries", True),
    "state-timeline": ("statetimeline", "StateTimeline", True),
}
_PRELUDE = """\
import type {{ Dashboard }} from "@grafana/schema";
// Data links are `unknown[]` in the v1 dashboard types; the v2 schema has their type.
import type {{ DataLink }} from "@grafana/schema/dist/esm/schema/dashboard/v2alpha0/types.gen.js";
{imports}

// Grafana's string enums are nominal in TypeScript; the JSON holds their values.
type Json<T> =
  T extends string ? `${{T}}` :
  T extends readonly (infer U)[] ? Json<U>[] :
  T extends object ? {{ [K in keyof T]: Json<T[K]> }} :
  T;
"""
TSCONFIG = {
    "compilerOptions": {
        "strict": True, "noEmit": True, "skipLibCheck": True, "module": "esnext", "target": "es2022",
        "moduleResolution": "bundler", "types": [], "noUnusedLocals": False,
    },
    "include": ["*.ts"],
}


def ensure_node_modules(timeout: float = 300.0) -> None:
    """`npm ci` from the committed package-lock.json unless node_modules already matches it."""
    lock = (SCHEMA_CHECK / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock).hexdigest()
    if _STAMP.is_file() and _STAMP.read_text().strip() == digest and (NODE_MODULES / "typescript").is_dir():
        return
    npm = shutil.which("npm") or "/usr/bin/npm"
    result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SCHEMA_CHECK,
                            capture_output=True, text=True, timeout=timeout, check=False,
                            env={**os.environ, "NPM_CONFIG_UPDATE_NOTIFIER": "false"})
    if result.returncode != 0:
        raise RuntimeError(f"npm ci in {SCHEMA_CHECK} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    _STAMP.write_text(digest + "\n")


def _identifier(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)


def module_for(name: str, model: dict) -> str:
    """TypeScript that type-checks one dashboard model and every panel's plugin options."""
    imports = []
    for panel_type, (directory, prefix, has_field_config) in PANEL_TYPES.items():
        del panel_type
        names = [f"Options as {prefix}Options"] + ([f"FieldConfig as {prefix}FieldConfig"] if has_field_config else [])
        imports.append(f'import type {{ {", ".join(names)} }} from "{_PANELCFG.format(dir=directory, name=prefix)}";')
    lines = [_PRELUDE.format(imports="\n".join(imports))]
    ident = _identifier(name)
    lines.append(f"export const {ident}: Json<Dashboard> = {json.dumps(model, indent=2)};\n")
    for panel in _panels(model):
        kind = panel.get("type")
        if kind == "row":
            continue
        if kind not in PANEL_TYPES:
            raise ValueError(f"{name}: panel {panel.get('id')} has type {kind!r}, which the schema check does not know")
        _, prefix, has_field_config = PANEL_TYPES[kind]
        where = f"{ident}_panel_{panel.get('id')}"
        lines.append(f"export const {where}_options: Json<{prefix}Options> = {json.dumps(panel.get('options', {}))};")
        links = panel.get("fieldConfig", {}).get("defaults", {}).get("links")
        if links is not None:
            lines.append(f"export const {where}_links: Json<DataLink>[] = {json.dumps(links)};")
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if has_field_config and custom is not None:
            lines.append(f"export const {where}_custom: Json<{prefix}FieldConfig> = {json.dumps(custom)};")
    return "\n".join(lines) + "\n"


def _panels(model: dict) -> list[dict]:
    out = []
    for panel in model.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def type_check(models: dict[str, dict], workdir: Path, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Write one module per dashboard into workdir and run tsc over them; returns the finished process."""
    workdir.mkdir(parents=True, exist_ok=True)
    link = workdir / "node_modules"
    if not link.exists():
        link.symlink_to(NODE_MODULES, target_is_directory=True)
    for name, model in models.items():
        (workdir / f"{_identifier(name)}.ts").write_text(module_for(name, model), encoding="utf-8")
    (workdir / "tsconfig.json").write_text(json.dumps(TSCONFIG, indent=2), encoding="utf-8")
    node = shutil.which("node") or "/usr/bin/node"
    return subprocess.run([node, str(NODE_MODULES / "typescript" / "bin" / "tsc"), "-p", str(workdir / "tsconfig.json"),
                           "--pretty", "false"], cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          check=False)
