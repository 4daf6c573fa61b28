"""A command service that holds and sends only the commands of the vehicles its hub worker owns."""

from commands import CommandQuery, CommandService, CommandsSettings, Job, JobSelector, JobState, MemoryCommandStore
from tests.unit.commands.test_service import Clock, RecordingChannel, Twins, result


async def test_a_command_queued_at_a_non_owner_is_sent_by_the_owner_once() -> None:
    """The node that queues a command for a vehicle it does not own stores it only; the owner adopts and sends it."""
    store, clock = MemoryCommandStore(), Clock()
    twins = Twins("v1")
    elsewhere = CommandService(store, twins, settings=CommandsSettings(), clock=clock)
    owner = CommandService(store, twins, settings=CommandsSettings(), clock=clock)
    for service, owned in ((elsewhere, set[str]()), (owner, {"v1"})):
        service.channel = RecordingChannel()
        service.owns = owned.__contains__
        await service.load()
    elsewhere.vehicle_connected("v1")  # even if it thought the vehicle online, it must not send
    owner.vehicle_connected("v1")
    command, created = await elsewhere.create("v1", "unlock")
    assert created
    await elsewhere.run_once()
    await owner.run_once()
    assert elsewhere.channel.commands() == []  # type: ignore[union-attr]
    assert owner.channel.commands() == []  # type: ignore[union-attr]  (not told yet)
    await owner.adopt({"v1"}.__contains__)  # what NOTIFY fleethub_cluster triggers
    await owner.run_once()
    await owner.run_once()
    assert owner.channel.commands() == [(command.id, 1)]  # type: ignore[union-attr]


async def test_releasing_a_vehicle_stops_its_sends() -> None:
    """After its partition moves away, a vehicle's open commands are neither held nor sent here."""
    store, clock = MemoryCommandStore(), Clock()
    service = CommandService(store, Twins("v1"), settings=CommandsSettings(resend_interval_s=5.0), clock=clock)
    service.channel = RecordingChannel()
    await service.load()
    service.vehicle_connected("v1")
    command, _ = await service.create("v1", "lock")
    await service.run_once()
    assert service.channel.commands() == [(command.id, 1)]  # type: ignore[union-attr]
    service.owns = set[str]().__contains__
    service.release(lambda vid: vid == "v1")
    clock.now += 10.0
    await service.run_once()
    assert service.channel.commands() == [(command.id, 1)]  # type: ignore[union-attr]
    assert (await store.get(command.id)).state.value == "sent"  # type: ignore[union-attr]


async def test_a_job_completes_when_the_store_says_every_target_answered() -> None:
    """The worker dispatching a job holds only its own vehicles' commands: completion waits for the other owner's."""
    store, clock = MemoryCommandStore(), Clock()
    twins = Twins("v1", "v2")
    settings = CommandsSettings(job_check_s=1.0)
    lead = CommandService(store, twins, settings=settings, clock=clock)
    other = CommandService(store, twins, settings=settings, clock=clock)
    for service, owned in ((lead, {"v1"}), (other, {"v2"})):
        service.channel = RecordingChannel()
        service.owns = owned.__contains__
        await service.load()
    other.dispatches_jobs = False
    job = await lead.create_job(JobSelector(vehicle_ids=("v1", "v2")), "unlock", rate=10.0)
    await lead.run_once()
    await other.adopt({"v2"}.__contains__)  # what NOTIFY fleethub_cluster triggers
    for service, vid in ((lead, "v1"), (other, "v2")):
        service.vehicle_connected(vid)
        await service.run_once()
        [(command_id, _)] = service.channel.commands()  # type: ignore[union-attr]
        if vid == "v1":
            await lead.result_received(result(vid, command_id, {"status": "succeeded"}))
            await lead.run_once()
        else:
            v2_command = command_id
    clock.now += 2.0
    await lead.run_once()
    assert (await lead.job(job.id)).state is JobState.RUNNING  # v2 has not answered
    await other.result_received(result("v2", v2_command, {"status": "succeeded"}))
    await other.run_once()
    await lead.run_once()
    assert (await lead.job(job.id)).state is JobState.RUNNING  # asked the store a second ago: not again yet
    clock.now += 1.0
    await lead.run_once()
    assert (await other.job(job.id)).state is JobState.COMPLETED


async def test_cancelling_a_job_cancels_the_commands_other_workers_hold() -> None:
    """A job cancelled on any node cancels its open commands in the store; their owner drops them once told."""
    store, clock = MemoryCommandStore(), Clock()
    twins = Twins("v1", "v2")
    lead = CommandService(store, twins, settings=CommandsSettings(), clock=clock)
    other = CommandService(store, twins, settings=CommandsSettings(), clock=clock)
    for service, owned in ((lead, {"v1"}), (other, {"v2"})):
        service.channel = RecordingChannel()
        service.owns = owned.__contains__
        await service.load()
    other.dispatches_jobs = False
    job = await lead.create_job(JobSelector(vehicle_ids=("v1", "v2")), "unlock", rate=10.0)
    await lead.run_once()
    await other.adopt({"v2"}.__contains__)
    report = await other.cancel_job(job.id, by="ana")  # on the worker that neither dispatches nor holds v1
    assert report.state is JobState.CANCELLED
    states = {c.vehicle_id: c.state.value for c in await store.query(CommandQuery(job_id=job.id, limit=10))}
    assert states == {"v1": "cancelled", "v2": "cancelled"}
    await lead.adopt({"v1"}.__contains__)  # what NOTIFY fleethub_cluster triggers
    for service, vid in ((lead, "v1"), (other, "v2")):
        service.vehicle_connected(vid)
        await service.run_once()
        assert service.channel.commands() == []  # type: ignore[union-attr]
    clock.now += 5.0
    await lead.run_once()  # its copy of the job is stale until NOTIFY reloads it: it must not complete it
    assert (await store.get_job(job.id)).state is JobState.CANCELLED  # type: ignore[union-attr]


class _JobReadsFail(MemoryCommandStore):
    """A store whose reads of a job's progress fail (the database went away for a moment)."""

    failing = False
    failures = 0

    async def get_job(self, job_id: str) -> Job | None:
        if self.failing:
            self.failures += 1
            raise ConnectionError("store connection lost")
        return await super().get_job(job_id)


async def test_a_failed_read_of_job_progress_does_not_lose_the_results_of_the_pass() -> None:
    """Results taken in a pass whose job check fails are still stored and acknowledged."""
    store, clock = _JobReadsFail(), Clock()
    lead = CommandService(store, Twins("v1", "v2"), settings=CommandsSettings(job_check_s=1.0), clock=clock)
    lead.channel = RecordingChannel()
    lead.owns = {"v1"}.__contains__
    await lead.load()
    job = await lead.create_job(JobSelector(vehicle_ids=("v1", "v2")), "unlock", rate=10.0)
    await lead.run_once()
    lead.vehicle_connected("v1")
    await lead.run_once()
    [(command_id, _)] = lead.channel.commands()  # type: ignore[union-attr]
    store.failing = True
    clock.now += 2.0
    answer = result("v1", command_id, {"status": "succeeded"})
    await lead.result_received(answer)
    await lead.run_once()
    assert store.failures > 0
    assert answer.ack is not None
    assert answer.ack.done()
    assert (await store.get(command_id)).state.value == "succeeded"  # type: ignore[union-attr]
    store.failing = False
    assert (await lead.job(job.id)).state is JobState.RUNNING  # v2 has not answered
