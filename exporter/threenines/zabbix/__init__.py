"""Zabbix 6.0: templates generated from the metric contract, a JSON-RPC client, and the inventory sync."""
