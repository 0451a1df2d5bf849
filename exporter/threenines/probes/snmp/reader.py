"""Read one device with one profile: a GET of its scalars, a walk of its table columns, then decode."""

from __future__ import annotations

from threenines.probes.snmp.client import SnmpClient, SnmpFailure, Target
from threenines.probes.snmp.decode import decode
from threenines.probes.snmp.profiles import Profile, builtin_profiles, parse_oid
from threenines.probes.snmp.readings import DeviceReading
from threenines.probes.snmp.values import Missing

SYS_OBJECT_ID = parse_oid("1.3.6.1.2.1.1.2.0")


async def read_device(client: SnmpClient, target: Target, profile: Profile) -> DeviceReading:
    scalars = await client.get(target, profile.scalar_oids()) if profile.scalars else {}
    roots = profile.walk_roots()
    columns = await client.walk(target, roots, profile.max_repetitions) if roots else {}
    return decode(profile, scalars, columns)


async def detect_profile(client: SnmpClient, target: Target, kind: str | None = None,
                         profiles: dict[str, Profile] | None = None) -> Profile:
    """Pick a profile from sysObjectID (longest matching prefix first), confirmed by the profile's probe OID.

    Several profiles may share an enterprise prefix (APC rPDU2 vs. legacy rPDU vs. UPS), so each candidate's
    probe subtree is asked for with one GETNEXT; generic profiles (RFC 1628) match on their probe alone.
    """
    profiles = profiles if profiles is not None else builtin_profiles()
    answer = await client.get(target, [SYS_OBJECT_ID])
    raw = answer.get(SYS_OBJECT_ID)
    sys_oid = parse_oid(raw) if isinstance(raw, str) else ()
    ranked: list[tuple[int, int, str, Profile]] = []
    for profile in profiles.values():
        if kind is not None and profile.kind != kind:
            continue
        prefix = max((len(p) for p in profile.sys_object_ids if sys_oid[: len(p)] == p), default=-1)
        if prefix < 0 and profile.sys_object_ids and profile.probe is None:
            continue
        if prefix < 0 and profile.probe is None:
            continue
        ranked.append((prefix, profile.priority, profile.name, profile))
    ranked.sort(key=lambda r: (-r[0], -r[1], r[2]))
    probes = [r[3].probe for r in ranked if r[3].probe is not None]
    present = set()
    if probes:
        for probe, (oid, value) in zip(probes, await client.next(target, probes), strict=False):
            if not isinstance(value, Missing) and oid[: len(probe)] == probe:
                present.add(probe)
    for prefix, _, _, profile in ranked:
        if profile.probe is not None and profile.probe not in present:
            continue
        if prefix < 0 and profile.sys_object_ids and profile.probe is None:
            continue
        return profile
    shown = ".".join(map(str, sys_oid)) if sys_oid else "none"
    raise SnmpFailure("no_profile", f"{target}: no profile matches sysObjectID {shown}"
                                    + (f" for a {kind}" if kind else "")
                                    + "; pass --profile NAME or add a profile YAML")
