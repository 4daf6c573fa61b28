"""Remote commands and fleet jobs: a durable per-vehicle queue, delivery, results and rollouts.

A command waits (durably) until its vehicle is online and its precondition holds, is
sent on `vehicles/{vid}/commands/{id}`, and ends with the vehicle's result or the
hub's own verdict (expired, cancelled, precondition failed). A job is one command
rolled out to many vehicles at a bounded rate. `commands` sees twins through
`twin`'s public surface and knows nothing of MQTT or HTTP.
"""

from commands.jobs import JobReport, Preconditions, TwinReader
from commands.metrics import CommandMetrics
from commands.model import (
    Command,
    CommandResult,
    CommandsSettings,
    CommandState,
    CommandView,
    Job,
    JobSelector,
    JobState,
    Transition,
    command_view,
)
from commands.service import CommandClosed, CommandService
from commands.stores import (
    CommandQuery,
    CommandStore,
    MemoryCommandStore,
    SqlCommandStore,
    command_store,
)

__all__ = [
    "Command",
    "CommandClosed",
    "CommandMetrics",
    "CommandQuery",
    "CommandResult",
    "CommandService",
    "CommandState",
    "CommandStore",
    "CommandView",
    "CommandsSettings",
    "Job",
    "JobReport",
    "JobSelector",
    "JobState",
    "MemoryCommandStore",
    "Preconditions",
    "SqlCommandStore",
    "Transition",
    "TwinReader",
    "command_store",
    "command_view",
]
