"""SNMP polling of UPSes and PDUs: a client, device profiles as data, and normalised readings."""
