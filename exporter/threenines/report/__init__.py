"""Monthly SLA statements for billing: exact calendar months from Prometheus counters and outage bounds.

Modules, one step each: months (contract-calendar windows), intervals (half-open second arithmetic),
promclient (HTTP API), exclusions (the exclusions ledger), collect (Prometheus → per-service evidence),
statement (figures and credits), close (immutable month-close snapshot), render (table/csv/json), html.
"""
