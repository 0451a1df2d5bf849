"""SNMP values as plain Python: int, bytes (OCTET STRING), str (dotted OID), or a Missing marker."""

from __future__ import annotations

import enum


class Missing(enum.Enum):
    NO_SUCH_OBJECT = "noSuchObject"
    NO_SUCH_INSTANCE = "noSuchInstance"
    END_OF_MIB_VIEW = "endOfMibView"


Value = int | bytes | str | Missing
