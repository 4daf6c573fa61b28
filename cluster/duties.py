"""What a worker does besides routing its vehicles' messages: duties done once, and duties done per owner.

Done once in the cluster, by the **lead**: the worker holding partition 0 (`JOB_PARTITION`)
once its takeover is done. It turns fleet jobs into commands (cluster/worker.py), forms and
attempts notification deliveries, and sends scheduled reports. The lead moves with that
partition's lease; the stores' claims (a notification item goes to one delivery, a
delivery is attempted by the hub that claimed it, a scheduled report is queued once per
period) keep a worker that has not yet noticed it lost the lead from repeating anything.

Done by each vehicle's **owner**: maintenance due checks, and meter derivation, which runs
in the owner's ingest pipeline. Both are rebuilt from the database when partitions move
(`PartitionListener`), so a worker that gets a vehicle back never continues from what it
knew before another worker had it.
"""

from __future__ import annotations

from collections.abc import Callable

from cluster.partitions import partition_of
from cluster.schema import JOB_PARTITION
from cluster.worker import ClusterWorker
from kernel import VehiclePartitions
from maintenance import MaintenanceService, MeterDeriver
from notifications import NotificationService
from reports import ReportService


class Duties:
    """Wires the hub's services to one worker's leases; see the module docstring."""

    def __init__(self, worker: ClusterWorker) -> None:
        self.worker = worker

    def leads(self) -> bool:
        return JOB_PARTITION in self.worker.ready

    def owns(self, vehicle_id: str) -> bool:
        """Whether the vehicle's partition is held here and its takeover done."""
        return partition_of(vehicle_id, self.worker.settings.partitions) in self.worker.ready

    def held(self) -> VehiclePartitions:
        """The partitions `owns` answers yes for, as the stores choose their vehicles."""
        return VehiclePartitions(frozenset(self.worker.ready), self.worker.settings.partitions)

    def notifications(self, service: NotificationService) -> None:
        service.dispatches = self.leads

    def reports(self, service: ReportService) -> None:
        service.runs_schedules = self.leads

    def maintenance(self, service: MaintenanceService) -> None:
        """Due checks for owned vehicles only; enter the service after this."""
        service.owns = self.owns
        service.held = self.held
        self.worker.listeners.append(service)

    def meters(self, deriver: MeterDeriver) -> None:
        self.worker.listeners.append(_Meters(deriver))


class _Meters:
    """The meter deriver forgets a moved vehicle; its next owner rebuilds it from the twin."""

    def __init__(self, deriver: MeterDeriver) -> None:
        self.deriver = deriver

    async def adopt(self, vehicle: Callable[[str], bool]) -> None:
        self.deriver.forget_all(vehicle)

    def release(self, vehicle: Callable[[str], bool]) -> None:
        self.deriver.forget_all(vehicle)
