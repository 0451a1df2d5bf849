# Two commands on a fresh Debian machine (as root, or with sudo for apt-get):
#   make demo   install what the demo needs and run it
#   make demo-ha  the same for the HA chain (docs/ha.md): two replicas, two Prometheus, VictoriaMetrics, 2 Alertmanagers
#   make test   install system packages (apt-get) and Python deps (venv), then run the whole suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian's python3 (not a pyenv build): snmpsim drops privileges and must still import its stdlib.
BASE_PYTHON ?= /usr/bin/python3

# Real components the tests start as their own processes on 127.0.0.1.
APT_PACKAGES := python3-venv python3-dev gcc iproute2 nftables fping faketime snmp snmpd snmptrapd nut-server nginx-light \
	dovecot-imapd dovecot-pop3d vsftpd exim4-daemon-light \
	prometheus prometheus-alertmanager prometheus-snmp-exporter prometheus-blackbox-exporter victoria-metrics \
	postgresql php-cli php-pgsql zabbix-server-pgsql zabbix-frontend-php \
	debhelper dh-python help2man pybuild-plugin-pyproject python3-setuptools python3-pip dpkg-dev fakeroot systemd \
	python3-bcrypt python3-cryptography python3-dateutil python3-prometheus-client python3-pyasn1 python3-requests \
	python3-yaml
DEMO_APT_PACKAGES := python3-venv iproute2 fping snmp prometheus prometheus-alertmanager
# APT_PACKAGES' last lines are for tests/packaging: the .deb's build dependencies, then its Depends (as in
# debian/control), installed up front so that the test's `apt-get install ./threenines_*.deb` fetches nothing.
DEB_APT_PACKAGES := debhelper dh-python help2man pybuild-plugin-pyproject python3-dev python3-setuptools python3-pip \
	dpkg-dev fakeroot gcc
DEB_DIR ?= build/deb

STAMP := .make
.PHONY: demo demo-ha test check lint system-deps demo-system-deps demo-ha-system-deps venv bench clean regenerate dashboards alertmanager-example conformance \
	deb deb-system-deps \
	zabbix-templates

$(STAMP):
	mkdir -p $(STAMP)

system-deps: | $(STAMP)
	@if [ ! -f $(STAMP)/apt-$(shell echo $(APT_PACKAGES) | md5sum | cut -c1-8) ]; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null && \
	  touch $(STAMP)/apt-$(shell echo $(APT_PACKAGES) | md5sum | cut -c1-8); fi

demo-system-deps: | $(STAMP)
	@if ! command -v prometheus >/dev/null || ! $(BASE_PYTHON) -c 'import ensurepip' 2>/dev/null; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEMO_APT_PACKAGES) >/dev/null; fi

# The HA demo also runs VictoriaMetrics (it starts without it, saying so) and two Alertmanagers.
demo-ha-system-deps: demo-system-deps
	@if ! command -v victoria-metrics >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEMO_APT_PACKAGES) \
	    victoria-metrics >/dev/null; fi

$(VENV)/.installed: pyproject.toml
	[ -x $(PY) ] || $(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check exporter tests bench

# The pure tests: no root, no network, no real servers; seconds (the contract, intervals, parsers, the audit).
UNIT_TESTS := tests/audit/test_webhook.py tests/audit/test_webhook_hardening.py tests/foundation/test_contract.py \
	tests/foundation/test_inventory.py tests/foundation/test_layout.py tests/foundation/test_inventory_fuzz.py tests/foundation/test_renderer.py \
	tests/foundation/test_runbooks.py tests/foundation/test_scheduler.py tests/foundation/test_clock_steps.py \
	tests/foundation/test_wire_passes.py \
	tests/power/test_power_model.py tests/power/test_blackout_rule.py tests/report/test_exclusions.py \
	tests/report/test_intervals.py tests/report/test_months.py tests/report/test_promclient.py tests/snmp/test_ber.py \
	tests/zabbix/test_sync_plan.py tests/foundation/test_check_secrets.py

# The fast loop (CONTRIBUTING.md): ruff, mypy, the pure tests.
check: lint
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -p no:cacheprovider $(UNIT_TESTS)

# Two workers: most of the suite waits on real processes' timers, which overlap; tests/conftest.py keeps each
# module on one worker and the tests that change host-wide state (namespaces, nftables, dpkg) one at a time.
TEST_WORKERS ?= 2
test: system-deps venv check
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadscope $(addprefix --ignore=,$(UNIT_TESTS))

demo: demo-system-deps venv
	$(VENV)/bin/threenines demo

demo-ha: demo-ha-system-deps venv
	$(VENV)/bin/threenines demo --ha

# The Debian package (README "Install"), built from a copy of the tree (packaging/build-deb):
# $(DEB_DIR)/threenines_VERSION_ARCH.deb. Needs only the build dependencies, not the test suite's.
deb-system-deps:
	@if ! dpkg-checkbuilddeps >/dev/null 2>&1 || ! $(BASE_PYTHON) -m pip --version >/dev/null 2>&1; then \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEB_APT_PACKAGES) >/dev/null; fi

deb: deb-system-deps
	PIP="$(BASE_PYTHON) -m pip" packaging/build-deb $(DEB_DIR)

# Regenerate grafana/dashboards/*.json from exporter/threenines/dashboards/ (tests/grafana fails until committed).
dashboards: venv
	$(VENV)/bin/threenines dashboards -o grafana/dashboards

alertmanager-example: venv
	$(VENV)/bin/threenines alertmanager-config --config examples/inventory.yml --noc-email noc@provider.example \
	  -o alertmanager/alertmanager.yml

# The SNMP conformance target alone (also part of `make test`): needs ../shared/fixtures/snmprec.
conformance: system-deps venv
	$(VENV)/bin/pytest -q -p no:cacheprovider -m conformance tests/snmp

zabbix-templates: venv
	$(VENV)/bin/threenines zabbix-templates -o zabbix_templates

# Every generated artifact, from the code and the example inventory; tests fail until they are committed.
regenerate: dashboards alertmanager-example zabbix-templates

bench: system-deps venv
	$(PY) bench/ping_fleet.py
	$(PY) bench/snmp_fleet.py

clean:
	rm -rf $(STAMP) $(VENV) build *.egg-info exporter/*.egg-info
