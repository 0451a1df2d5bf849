"""An asyncio SNMP client: v1, v2c and v3; GET, GETNEXT and multi-column GETBULK walks.

v1/v2c go through threenines.probes.snmp.ber and one shared UDP socket (pysnmp's pyasn1 decoding was most of the
poller's CPU); v3 goes through pysnmp 7, whose one SnmpEngine serves every v3 device. Values come back as
plain Python (threenines.probes.snmp.values) with no MIB resolution, and every failure is a SnmpFailure with a
reason from readings.REASONS. Secrets are resolved here, handed to the wire, and never put in a message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pyasn1.type import univ
from pysnmp.entity import config as engine_config
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    next_cmd,
)
from pysnmp.proto import errind
from pysnmp.proto.rfc1902 import ObjectName
from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance, NoSuchObject
from pysnmp.smi import error as smi_error

from threenines.config.inventory import V3_KEY_MIN_LENGTH, V3_KEY_RULE, SnmpAuth
from threenines.config.secrets import SecretError
from threenines.probes.snmp import ber
from threenines.probes.snmp.profiles import Oid, format_oid
from threenines.probes.snmp.transport import Timeout, UdpRequester
from threenines.probes.snmp.values import Missing, Value

AUTH_PROTOCOLS = {
    "MD5": engine_config.USM_AUTH_HMAC96_MD5,
    "SHA": engine_config.USM_AUTH_HMAC96_SHA,
    "SHA224": engine_config.USM_AUTH_HMAC128_SHA224,
    "SHA256": engine_config.USM_AUTH_HMAC192_SHA256,
    "SHA384": engine_config.USM_AUTH_HMAC256_SHA384,
    "SHA512": engine_config.USM_AUTH_HMAC384_SHA512,
}
# AES-192/256 key localisation as net-snmp and most agents do it (Blumenthal draft).
PRIV_PROTOCOLS = {
    "DES": engine_config.USM_PRIV_CBC56_DES,
    "AES": engine_config.USM_PRIV_CFB128_AES,
    "AES192": engine_config.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "AES256": engine_config.USM_PRIV_CFB256_AES_BLUMENTHAL,
}
_AUTH_ERRORS = (
    errind.WrongDigest, errind.UnknownUserName, errind.DecryptionError, errind.AuthenticationError,
    errind.AuthenticationFailure, errind.UnknownSecurityName, errind.UnsupportedSecurityLevel,
    errind.NotInTimeWindow, errind.UnknownEngineID, errind.UnsupportedAuthProtocol,
    errind.UnsupportedPrivProtocol, errind.NoEncryption, errind.NoAuthentication,
)
# A walk is bounded: no agent table we read has more rows than this many GETBULK rounds can carry.
MAX_WALK_ROUNDS = 2000

T = TypeVar("T")


class SnmpFailure(Exception):
    """A failed SNMP exchange; `reason` is one of readings.REASONS, the message never holds a secret."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    auth: SnmpAuth
    timeout: float = 2.0
    retries: int = 1

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _auth_data(auth: SnmpAuth) -> CommunityData | UsmUserData:
    try:
        if auth.version in ("1", "2c"):
            assert auth.community is not None
            return CommunityData(auth.community.resolve(), mpModel=0 if auth.version == "1" else 1)
        level = auth.security_level or "authPriv"
        kwargs: dict[str, object] = {}
        if level in ("authNoPriv", "authPriv"):
            assert auth.auth_key is not None
            kwargs["authKey"] = auth.auth_key.resolve(V3_KEY_MIN_LENGTH, V3_KEY_RULE)
            kwargs["authProtocol"] = AUTH_PROTOCOLS[auth.auth_protocol or "SHA"]
        if level == "authPriv":
            assert auth.priv_key is not None
            kwargs["privKey"] = auth.priv_key.resolve(V3_KEY_MIN_LENGTH, V3_KEY_RULE)
            kwargs["privProtocol"] = PRIV_PROTOCOLS[auth.priv_protocol or "AES"]
        return UsmUserData(auth.username or "", **kwargs)
    except SecretError as err:
        raise SnmpFailure("config", f"auth {auth.id}: {err}") from None
    except Exception as err:  # pysnmp/pyasn1 messages quote the values they refuse, keys included
        raise SnmpFailure("config", f"auth {auth.id}: pysnmp refused the credentials ({type(err).__name__}): "
                                    "check username, protocols and keys") from None


async def _library(target: Target, what: str, call: Awaitable[T]) -> T:
    """Await a pysnmp call; anything it raises becomes a SnmpFailure naming only the exception's type.

    pysnmp and pyasn1 put the offending value in their messages (a key shorter than 8 characters comes back
    verbatim in a ValueConstraintError), so neither the message nor the traceback may reach a log.
    """
    try:
        return await call
    except Exception as err:
        reason = "config" if isinstance(err, smi_error.WrongValueError) else "protocol"
        raise SnmpFailure(reason, f"{target}: {what} failed inside pysnmp ({type(err).__name__})") from None


def _after(target: Target, asked: Oid, answered: Oid) -> None:
    """GETNEXT and GETBULK answer the OID after the one asked; anything else is a broken agent, not the end of
    a column (taking it as the end would publish a table cut short as if it were whole)."""
    if answered <= asked:
        raise SnmpFailure("protocol", f"{target}: agent returned a non-increasing OID {format_oid(answered)} "
                                      f"after {format_oid(asked)}")


def to_value(value: object) -> Value:
    if isinstance(value, NoSuchObject):
        return Missing.NO_SUCH_OBJECT
    if isinstance(value, NoSuchInstance):
        return Missing.NO_SUCH_INSTANCE
    if isinstance(value, EndOfMibView):
        return Missing.END_OF_MIB_VIEW
    # pyasn1 base types: SNMP's application types (Counter32, Gauge32, TimeTicks, IpAddress, ...) derive
    # from them, and v3 answers may carry the base classes themselves.
    if isinstance(value, univ.OctetString):
        return bytes(value)
    if isinstance(value, univ.ObjectIdentifier):
        return str(value)
    if isinstance(value, univ.Integer):
        return int(value)
    return Missing.NO_SUCH_OBJECT  # Null and anything unexpected carry no reading


def _varbind(vb: ObjectType) -> tuple[Oid, Value]:
    return tuple(vb[0]), to_value(vb[1])


def _plain(value: ber.Value) -> Value:
    return Missing.NO_SUCH_OBJECT if value is ber.NULL else value


class SnmpClient:
    """One UDP requester for all v1/v2c devices, one pysnmp engine for all v3 devices; credentials, addresses
    and encoded OIDs are prepared once."""

    def __init__(self) -> None:
        self._engine: SnmpEngine | None = None
        self._auth: dict[SnmpAuth, CommunityData | UsmUserData] = {}
        self._transports: dict[tuple[str, int, float, int], UdpTransportTarget] = {}
        self._context = ContextData()
        self._udp = UdpRequester()
        self._communities: dict[SnmpAuth, bytes] = {}
        self._encoded: dict[Oid, bytes] = {}

    @property
    def engine(self) -> SnmpEngine:
        if self._engine is None:
            self._engine = SnmpEngine()
        return self._engine

    def close(self) -> None:
        self._udp.close()
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None

    # -- v1/v2c ------------------------------------------------------------------------------------------------

    def _community(self, auth: SnmpAuth) -> bytes:
        community = self._communities.get(auth)
        if community is None:
            try:
                assert auth.community is not None
                community = self._communities[auth] = auth.community.resolve().encode()
            except SecretError as err:
                raise SnmpFailure("config", f"auth {auth.id}: {err}") from None
        return community

    def _oid(self, oid: Oid) -> bytes:
        encoded = self._encoded.get(oid)
        if encoded is None:
            encoded = self._encoded[oid] = ber.encode_oid(oid)
        return encoded

    async def _exchange(self, target: Target, pdu: int, a: int, b: int, names: Sequence[bytes], what: str
                        ) -> tuple[int, int, list[tuple[bytes, ber.Value]]]:
        """One request of encoded OIDs; (error-status, error-index, varbinds) of its response."""
        community = self._community(target.auth)
        try:
            family, address = await self._udp.resolve(target.host, target.port)
        except OSError as err:
            raise SnmpFailure("timeout", f"{target}: cannot resolve address: {err}") from None
        request_id = self._udp.new_request_id()
        message = ber.request(0 if target.auth.version == "1" else 1, community, pdu, request_id, a, b,
                              [ber.null_varbind(n) for n in names])
        try:
            data = await self._udp.exchange(family, address, request_id, message, target.timeout, target.retries)
        except Timeout:
            raise SnmpFailure("timeout", f"{target}: no answer to {what} (timeout/retries exhausted)") from None
        try:
            return ber.response(data)
        except ber.BerError as err:
            raise SnmpFailure("protocol", f"{target}: malformed answer to {what}: {err}") from None

    async def _get_v12(self, target: Target, oids: Sequence[Oid]) -> dict[Oid, Value]:
        pending = list(dict.fromkeys(oids))
        out: dict[Oid, Value] = {}
        while pending:
            status, index, varbinds = await self._exchange(target, ber.GET, 0, 0, [self._oid(o) for o in pending],
                                                           "GET")
            if status == ber.NO_SUCH_NAME and target.auth.version == "1" and 0 < index <= len(pending):
                out[pending.pop(index - 1)] = Missing.NO_SUCH_OBJECT  # v1: drop the unknown OID, ask again
                continue
            if status:
                raise SnmpFailure("protocol", f"{target}: GET answered error-status {status} at index {index}")
            if [name for name, _ in varbinds] != [self._oid(o) for o in pending]:
                raise SnmpFailure("protocol", f"{target}: GET answered other OIDs than it was asked")
            out.update((oid, _plain(value)) for oid, (_, value) in zip(pending, varbinds, strict=True))
            break
        return out

    async def _next_v12(self, target: Target, names: Sequence[bytes]) -> list[tuple[bytes, ber.Value]]:
        """GETNEXT of encoded OIDs, answers in request order; v1's noSuchName (end of the MIB for one of them)
        marks that one END_OF_MIB_VIEW and asks again for the others."""
        answers: dict[int, tuple[bytes, ber.Value]] = {}
        asked = list(range(len(names)))
        while asked:
            status, index, varbinds = await self._exchange(target, ber.GETNEXT, 0, 0, [names[i] for i in asked],
                                                           "GETNEXT")
            if status == ber.NO_SUCH_NAME and target.auth.version == "1" and 0 < index <= len(asked):
                gone = asked.pop(index - 1)
                answers[gone] = (names[gone], Missing.END_OF_MIB_VIEW)
                continue
            if status:
                raise SnmpFailure("protocol", f"{target}: GETNEXT answered error-status {status} at index {index}")
            if len(varbinds) != len(asked):
                raise SnmpFailure("protocol", f"{target}: GETNEXT answered {len(varbinds)} of {len(asked)} OIDs")
            answers.update(zip(asked, varbinds, strict=True))
            break
        return [answers[i] for i in range(len(names))]

    def _decode_name(self, target: Target, name: bytes) -> Oid:
        try:
            return ber.decode_oid(name)
        except ber.BerError as err:
            raise SnmpFailure("protocol", f"{target}: malformed OID in an answer: {err}") from None

    async def _walk_v12(self, target: Target, roots: Sequence[Oid], max_repetitions: int
                        ) -> dict[Oid, dict[Oid, Value]]:
        # Rows are recognised by the encoded column OID as a byte prefix (BER OIDs keep arc boundaries), and
        # only the index after it is decoded: most of a walk's work is on these few lines.
        out: dict[Oid, dict[Oid, Value]] = {root: {} for root in roots}
        active = list(dict.fromkeys(roots))
        prefixes = {root: self._oid(root) for root in active}
        last_name = dict(prefixes)
        last_index: dict[Oid, Oid] = {root: () for root in active}
        repetitions = max_repetitions
        for _ in range(MAX_WALK_ROUNDS):
            if not active:
                return out
            names = [last_name[r] for r in active]
            if target.auth.version == "1":
                answer = await self._next_v12(target, names)
            else:
                status, index, answer = await self._exchange(target, ber.GETBULK, 0, repetitions, names, "GETBULK")
                if status == ber.TOO_BIG and repetitions > 1:
                    repetitions = max(1, repetitions // 2)  # the agent's message size: ask for fewer rows
                    continue
                if status:
                    raise SnmpFailure("protocol", f"{target}: GETBULK answered error-status {status} at index "
                                                  f"{index}")
            if not answer:
                raise SnmpFailure("protocol", f"{target}: empty answer while walking")
            finished: set[Oid] = set()
            width = len(active)
            for position, (name, value) in enumerate(answer):
                root = active[position % width]
                if root in finished:
                    continue
                prefix = prefixes[root]
                if isinstance(value, Missing) or len(name) <= len(prefix) or not name.startswith(prefix):
                    if not isinstance(value, Missing):  # an exception marker carries the name asked
                        _after(target, root + last_index[root], self._decode_name(target, name))
                    finished.add(root)
                    continue
                try:
                    row = ber.decode_arcs(name[len(prefix):])
                except ber.BerError as err:
                    raise SnmpFailure("protocol", f"{target}: malformed OID while walking: {err}") from None
                if row <= last_index[root]:
                    before = format_oid(root + last_index[root])
                    raise SnmpFailure("protocol", f"{target}: agent returned a non-increasing OID "
                                                  f"{format_oid(root + row)} after {before}")
                out[root][row] = Missing.NO_SUCH_OBJECT if value is ber.NULL else value
                last_index[root] = row
                last_name[root] = name
            active = [r for r in active if r not in finished]
        raise SnmpFailure("protocol", f"{target}: walk did not end after {MAX_WALK_ROUNDS} rounds")

    # -- v3 (pysnmp) -------------------------------------------------------------------------------------------

    async def _prepare(self, target: Target) -> tuple[CommunityData | UsmUserData, UdpTransportTarget]:
        auth = self._auth.get(target.auth)
        if auth is None:
            auth = self._auth[target.auth] = _auth_data(target.auth)
        key = (target.host, target.port, target.timeout, target.retries)
        transport = self._transports.get(key)
        if transport is None:
            try:
                transport = await UdpTransportTarget.create(
                    (target.host, target.port), timeout=target.timeout, retries=target.retries
                )
            except Exception as err:  # pysnmp wraps resolver errors in its own exception types
                raise SnmpFailure("timeout", f"{target}: cannot resolve address ({type(err).__name__})") from None
            self._transports[key] = transport
        return auth, transport

    def _check(self, target: Target, indication: object, status: object, index: object, what: str) -> None:
        if indication:
            if isinstance(indication, errind.RequestTimedOut):
                raise SnmpFailure("timeout", f"{target}: no answer to {what} (timeout/retries exhausted)")
            if isinstance(indication, _AUTH_ERRORS):
                raise SnmpFailure("auth", f"{target}: authentication failed ({type(indication).__name__}): "
                                          "check username, protocols and keys")
            raise SnmpFailure("protocol", f"{target}: {what} failed: {type(indication).__name__}")
        if status and int(status) != 0:  # type: ignore[call-overload]
            raise SnmpFailure("protocol", f"{target}: {what} answered error-status {status} at index {index}")

    async def get(self, target: Target, oids: Sequence[Oid]) -> dict[Oid, Value]:
        """GET several OIDs in one request; v1's noSuchName drops the offending OID and retries."""
        if target.auth.version != "3":
            return await self._get_v12(target, oids)
        auth, transport = await self._prepare(target)
        pending = list(dict.fromkeys(oids))
        out: dict[Oid, Value] = {}
        while pending:
            varbinds = [ObjectType(ObjectIdentity(ObjectName(o))) for o in pending]
            indication, status, index, result = await _library(target, "GET", get_cmd(
                self.engine, auth, transport, self._context, *varbinds, lookupMib=False
            ))
            if not indication and status and int(status) == 2 and target.auth.version == "1":
                gone = pending.pop(int(index) - 1)
                out[gone] = Missing.NO_SUCH_OBJECT
                continue
            self._check(target, indication, status, index, "GET")
            out.update(_varbind(vb) for vb in result)
            break
        return out

    async def next(self, target: Target, oids: Sequence[Oid]) -> list[tuple[Oid, Value]]:
        if target.auth.version != "3":
            raw = await self._next_v12(target, [self._oid(o) for o in oids])
            answer = [(self._decode_name(target, name), _plain(value)) for name, value in raw]
        else:
            auth, transport = await self._prepare(target)
            varbinds = [ObjectType(ObjectIdentity(ObjectName(o))) for o in oids]
            indication, status, index, result = await _library(target, "GETNEXT", next_cmd(
                self.engine, auth, transport, self._context, *varbinds, lookupMib=False
            ))
            if not indication and status and int(status) == 2:  # v1: end of MIB for one varbind
                return [(o, Missing.END_OF_MIB_VIEW) if i == int(index) - 1 else (o, Missing.NO_SUCH_OBJECT)
                        for i, o in enumerate(oids)]
            self._check(target, indication, status, index, "GETNEXT")
            answer = [_varbind(vb) for vb in result]
        if len(answer) != len(oids):
            raise SnmpFailure("protocol", f"{target}: GETNEXT answered {len(answer)} of {len(oids)} OIDs")
        for asked, (oid, value) in zip(oids, answer, strict=True):
            if not isinstance(value, Missing):
                _after(target, asked, oid)
        return answer

    async def walk(self, target: Target, roots: Sequence[Oid], max_repetitions: int = 10
                   ) -> dict[Oid, dict[Oid, Value]]:
        """Walk several columns side by side (one GETBULK per round, GETNEXT for v1): {root: {index: value}}."""
        if target.auth.version != "3":
            return await self._walk_v12(target, roots, max_repetitions)
        auth, transport = await self._prepare(target)
        out: dict[Oid, dict[Oid, Value]] = {root: {} for root in roots}
        last = {root: root for root in roots}
        active = list(dict.fromkeys(roots))
        for _ in range(MAX_WALK_ROUNDS):
            if not active:
                return out
            if target.auth.version == "1":
                answer = await self.next(target, [last[r] for r in active])
            else:
                varbinds = [ObjectType(ObjectIdentity(ObjectName(last[r]))) for r in active]
                indication, status, index, result = await _library(target, "GETBULK", bulk_cmd(
                    self.engine, auth, transport, self._context, 0, max_repetitions, *varbinds, lookupMib=False
                ))
                self._check(target, indication, status, index, "GETBULK")
                answer = [_varbind(vb) for vb in result]
            if not answer:
                raise SnmpFailure("protocol", f"{target}: empty answer while walking")
            finished: set[Oid] = set()
            for position, (oid, value) in enumerate(answer):
                root = active[position % len(active)]
                if root in finished:
                    continue
                if isinstance(value, Missing) or oid[: len(root)] != root or len(oid) == len(root):
                    if not isinstance(value, Missing):
                        _after(target, last[root], oid)
                    finished.add(root)
                    continue
                if oid <= last[root]:
                    raise SnmpFailure("protocol", f"{target}: agent returned a non-increasing OID "
                                                  f"{format_oid(oid)} after {format_oid(last[root])}")
                out[root][oid[len(root):]] = value
                last[root] = oid
            active = [r for r in active if r not in finished]
        raise SnmpFailure("protocol", f"{target}: walk did not end after {MAX_WALK_ROUNDS} rounds")


__all__ = ["SnmpClient", "SnmpFailure", "Target"]
