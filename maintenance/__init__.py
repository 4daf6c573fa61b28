"""Maintenance: hub-derived odometer and engine hours, schedules, due dates, service records.

Due-soon and overdue alerts go through the rules engine's alert lifecycle (rule names
`maintenance.{schedule}.due_soon` and `.overdue`), so they are stored, published on
`alerts/...`, listed and acknowledged like every other alert.
"""

from maintenance.due import evaluate
from maintenance.meters import MeterDeriver, distance_m, fast_distance_m
from maintenance.model import Due, Interval, MeterCorrection, Schedule, ScheduleBody, ServiceRecord, Stage
from maintenance.service import RULE_PREFIX, AlertSink, MaintenanceService, alert_rule
from maintenance.settings import MaintenanceSettings
from maintenance.stores import (
    MaintenanceStore,
    MemoryMaintenanceStore,
    RecordQuery,
    SqlMaintenanceStore,
    maintenance_store,
)

__all__ = [
    "RULE_PREFIX",
    "AlertSink",
    "Due",
    "Interval",
    "MaintenanceService",
    "MaintenanceSettings",
    "MaintenanceStore",
    "MemoryMaintenanceStore",
    "MeterCorrection",
    "MeterDeriver",
    "RecordQuery",
    "Schedule",
    "ScheduleBody",
    "ServiceRecord",
    "SqlMaintenanceStore",
    "Stage",
    "alert_rule",
    "distance_m",
    "evaluate",
    "fast_distance_m",
    "maintenance_store",
]
