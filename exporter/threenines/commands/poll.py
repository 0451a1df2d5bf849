"""`threenines poll`: read one UPS/PDU once and print its normalised readings and the profile that matched.

What an operator runs first when a new PDU model arrives (like snmp_exporter's debug page). Exits non-zero
with the reason on timeout (2), authentication failure (3), no matching profile (4), other failures (1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT = {"timeout": 2, "auth": 3, "no_profile": 4}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--address", help="HOST or HOST:PORT (default port 161)")
    where.add_argument("--device", metavar="ID", help="a device of the inventory (--config): its address, "
                       "credentials (by reference), profile, timeout and retries, as the exporter polls it")
    parser.add_argument("--config", help="inventory YAML, with --device")
    parser.add_argument("--snmp-version", choices=("1", "2c"), default="2c", help="with --community")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--community", help="SNMP v1/v2c community (or set THREENINES_COMMUNITY and pass '-')")
    who.add_argument("--v3-user", help="SNMP v3 user name")
    parser.add_argument("--v3-level", choices=("noAuthNoPriv", "authNoPriv", "authPriv"), default="authPriv")
    parser.add_argument("--v3-auth-protocol", default="SHA", choices=("MD5", "SHA", "SHA224", "SHA256", "SHA384",
                                                                       "SHA512"))
    parser.add_argument("--v3-auth-key-env", default="THREENINES_V3_AUTH_KEY",
                        help="environment variable holding the v3 auth key (keys never go on the command line)")
    parser.add_argument("--v3-priv-protocol", default="AES", choices=("DES", "AES", "AES192", "AES256"))
    parser.add_argument("--v3-priv-key-env", default="THREENINES_V3_PRIV_KEY",
                        help="environment variable holding the v3 privacy key")
    parser.add_argument("--profile", default="auto", help="profile name, or auto (from sysObjectID)")
    parser.add_argument("--kind", choices=("ups", "pdu"), help="restrict auto-detect to UPS or PDU profiles")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--retries", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _auth(args: argparse.Namespace):
    from threenines.config.inventory import SnmpAuth
    from threenines.config.secrets import SecretRef

    if args.community is not None:
        if args.community != "-":
            os.environ["THREENINES_COMMUNITY"] = args.community  # in-process only, never printed
        return SnmpAuth(id="cli", version=args.snmp_version, community=SecretRef(env="THREENINES_COMMUNITY"))
    level = args.v3_level
    return SnmpAuth(
        id="cli", version="3", username=args.v3_user, security_level=level,
        auth_protocol=args.v3_auth_protocol if level != "noAuthNoPriv" else None,
        auth_key=SecretRef(env=args.v3_auth_key_env) if level != "noAuthNoPriv" else None,
        priv_protocol=args.v3_priv_protocol if level == "authPriv" else None,
        priv_key=SecretRef(env=args.v3_priv_key_env) if level == "authPriv" else None,
    )


def _text(reading, profile) -> str:
    lines = [f"profile: {profile.name} ({profile.description}) kind={profile.kind}"]
    if reading.ups is not None:
        ups = reading.ups
        lines.append(f"ups: status={ups.status or 'unknown'} output_source={ups.output_source} "
                     f"battery={ups.battery_status}")
        for name in ("battery_charge_ratio", "battery_runtime_seconds", "battery_low_runtime_seconds"):
            lines.append(f"  {name} = {getattr(ups, name)}")
        for line in ups.lines:
            lines.append(f"  line {line.id}: input_voltage_volts = {line.input_voltage_volts} "
                         f"output_load_ratio = {line.output_load_ratio}")
        if ups.alarms:
            lines.append(f"  alarms = {' '.join(ups.alarms)}")
    for o in reading.outlets:
        state = {True: "on", False: "off", None: "unknown"}[o.on] if reading.switched else "unswitched"
        lines.append(f"outlet {o.id} {o.name or ''!r}: {state} current={o.current_amperes} A "
                     f"power={o.power_watts} W energy={o.energy_joules} J")
    for p in reading.phases:
        lines.append(f"phase {p.id} {p.name or ''!r}: current={p.current_amperes} A voltage={p.voltage_volts} V")
    for problem in reading.problems:
        lines.append(f"problem: {problem.reason} {problem.field}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses

    from threenines.config.configfile import HOSTPORT_RE
    from threenines.probes.snmp.client import SnmpClient, SnmpFailure, Target
    from threenines.probes.snmp.profiles import get_profile
    from threenines.probes.snmp.reader import detect_profile, read_device

    if args.device:
        from threenines.config.configfile import ConfigError
        from threenines.config.inventory_load import load_inventory
        from threenines.probes.power_poller import target_for

        if not args.config:
            print("error: --device needs --config inventory.yml", file=sys.stderr)
            return 1
        try:
            inventory = load_inventory(args.config)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        device = next((d for d in inventory.devices if d.id == args.device), None)
        if device is None:
            known = ", ".join(sorted(d.id for d in inventory.devices)) or "none"
            print(f"error: {args.config}: no device {args.device!r} (devices: {known})", file=sys.stderr)
            return 1
        if device.nut is not None:
            print(f"error: {args.device} is read from a NUT server: use upsc {device.nut.ups}@{device.host}",
                  file=sys.stderr)
            return 1
        target = target_for(device, inventory)
        if args.profile == "auto" and device.profile != "auto":
            args.profile = device.profile
        args.kind = args.kind or device.kind
    else:
        if args.community is None and args.v3_user is None:
            print("error: --address needs --community or --v3-user", file=sys.stderr)
            return 1
        match = HOSTPORT_RE.fullmatch(args.address.strip())
        if not match:
            print(f"error: --address {args.address!r} is not HOST or HOST:PORT", file=sys.stderr)
            return 1
        target = Target(match["host"].strip("[]"), int(match["port"] or 161), _auth(args), args.timeout,
                        args.retries)

    async def poll():
        client = SnmpClient()
        try:
            if args.profile == "auto":
                profile = await detect_profile(client, target, args.kind)
            else:
                profile = get_profile(args.profile)
            return profile, await read_device(client, target, profile)
        finally:
            client.close()

    try:
        profile, reading = asyncio.run(poll())
    except SnmpFailure as err:
        print(f"error: {err.reason}: {err}", file=sys.stderr)
        return EXIT.get(err.reason, 1)
    except KeyError as err:
        print(f"error: no_profile: {err.args[0]}", file=sys.stderr)
        return EXIT["no_profile"]
    if args.json:
        out = dataclasses.asdict(reading)
        out["status"] = reading.ups.status if reading.ups is not None else None
        out["description"] = profile.description
        print(json.dumps(out, indent=2))
    else:
        print(_text(reading, profile))
    return 0
