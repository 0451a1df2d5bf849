"""threenines: prove a colocation hosting SLA inside Prometheus, Alertmanager, Grafana and Zabbix."""

__version__ = "0.1.0"
