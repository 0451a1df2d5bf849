"""The latency check pairs each customer alert with the services its expression can fire for: a second customer
alert (applications) made every connectivity route count twice, and the end-to-end bound test broke on it."""

from __future__ import annotations

from tests.support import REPO
from threenines.alerting.notification_bound import customer_alerts

RULES = REPO / "prometheus" / "rules" / "threenines.alerts.yml"


def test_each_customer_alert_owes_only_the_services_its_expression_selects() -> None:
    alerts = {a.name: a for a in customer_alerts([RULES], 30.0)}
    unavailable, application = alerts["ThreeninesServiceUnavailable"], alerts["ThreeninesApplicationUnavailable"]
    assert [unavailable.fires_for(s) for s in ("connectivity", "power", "application")] == [True, True, False]
    assert [application.fires_for(s) for s in ("connectivity", "power", "application")] == [False, False, True]
