"""Wiring maintenance into the hub: the meter deriver on the ingest path, the service as a twin observer."""

from __future__ import annotations

from fleethub.settings import Settings
from kernel import Database
from maintenance import RULE_PREFIX, MaintenanceService, MeterDeriver, maintenance_store
from rules import RulesEngine
from twin import Store, TwinService


def maintenance_service(
    settings: Settings, db: Database, service: TwinService, twins: Store, rules: RulesEngine | None
) -> MaintenanceService | None:
    """The maintenance service, registered with the twin service; None when maintenance is off.

    The meter deriver is added to ingest whenever meters are on, even with maintenance off,
    so `meters.*` stay continuous. Enter `m.store`, then `m`, once the rules engine runs.
    """
    s = settings.maintenance
    deriver = MeterDeriver(s) if s.meters_enabled else None
    if deriver is not None:
        service.enrichers.append(deriver)
    if not s.enabled:
        return None
    maintenance = MaintenanceService(maintenance_store(db), twins, settings=s, deriver=deriver, alerts=rules)
    if rules is not None:
        rules.reserved_prefixes.append(RULE_PREFIX)
    service.observers.append(maintenance)
    return maintenance
