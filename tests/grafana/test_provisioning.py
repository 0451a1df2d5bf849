"""grafana/provisioning/ is what grafana-server reads: one datasource and one file provider for the dashboards."""

from __future__ import annotations

from tests.support import REPO
from threenines.config.configfile import load

PROVISIONING = REPO / "grafana" / "provisioning"


def test_datasource_is_prometheus_with_the_scrape_interval():
    root = load(PROVISIONING / "datasources" / "threenines.yaml").mapping({"apiVersion", "datasources"}, {"apiVersion"})
    assert root["apiVersion"].integer() == 1
    (source,) = root["datasources"].sequence()
    fields = source.mapping({"name", "uid", "type", "access", "url", "isDefault", "editable", "jsonData"},
                            {"name", "type", "url"})
    assert fields["type"].string() == "prometheus"
    assert fields["access"].string() == "proxy"
    assert fields["url"].string().startswith("http://")
    assert fields["isDefault"].boolean() is False  # the NOC's Grafana keeps its own default datasource
    json_data = fields["jsonData"].mapping({"timeInterval", "httpMethod", "prometheusType"})
    assert json_data["timeInterval"].duration() > 0


def test_dashboard_provider_reads_a_folder_of_json_files():
    root = load(PROVISIONING / "dashboards" / "threenines.yaml").mapping({"apiVersion", "providers"}, {"apiVersion"})
    (provider,) = root["providers"].sequence()
    fields = provider.mapping({"name", "orgId", "folder", "folderUid", "type", "disableDeletion", "allowUiUpdates",
                               "updateIntervalSeconds", "options"}, {"name", "type", "options"})
    assert fields["type"].string() == "file"
    assert fields["allowUiUpdates"].boolean() is False  # generated dashboards: edit the generator, not the UI
    options = fields["options"].mapping({"path", "foldersFromFilesStructure"}, {"path"})
    assert options["path"].string().startswith("/")
