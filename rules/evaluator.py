"""The engine's pure core: per-vehicle rule state, timers and alert transitions, no I/O.

`Evaluator.observe` takes the twin updates of one committed batch and evaluates only
the rules whose fields those updates touched (rules are indexed by the first name of
each field path). Time enters through a `TimerHeap`: a `for` window ends at its
deadline, and a rule that reads the clock (`age`, `no_data_for`, `connected`) is
re-checked when one of its thresholds can next be crossed, never by scanning every
vehicle. Transitions and timer changes accumulate as `Effects`, which the shell
(`rules.engine.RulesEngine`) persists and publishes; backtests drive the same core
with device time.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import structlog

from rules.alerts import Alert, AlertEventKind, AlertState, new_alert_id
from rules.builtins import Eval
from rules.context import MISSING, Path, Source
from rules.definitions import CompiledRule
from rules.errors import RuleError
from rules.paths import parse_path
from rules.stores.protocol import PendingTimer, TimerKind
from rules.syntax import Call, Compare, DurationLit, Expr, Field, NumberLit, StringLit, Unary, children
from rules.timers import TimerHeap
from rules.twin_context import TwinContext
from rules.zones import Zone
from twin import PATH_SEP, ReportedEntry, TwinState, TwinUpdate, UpdateKind, VehicleSelector

log = structlog.get_logger(__name__)

Key = tuple[str, str]
"""(rule name, vehicle id)."""

_NO_ENTRIES: Final[Mapping[str, ReportedEntry | None]] = {}
# A strict threshold (`age(x) > 5m`) is crossed just after the deadline, not at it.
_AFTER: Final = 0.001
# Message shapes whose affected rules are remembered at most.
_MAX_SHAPES: Final = 4096


class TimerPurpose(enum.Enum):
    # The end of a `for` or `clear_for` window.
    WINDOW = "window"
    # A clock-reading rule may change its outcome now; or a cooldown ended.
    RECHECK = "recheck"


class AlertNotOpen(RuleError):
    """An acknowledgement or manual clear of an alert that is not open."""


@dataclass(slots=True)
class Slot:
    """What is going on for one rule and vehicle; absent when nothing is."""

    # The open alert, if any.
    alert: Alert | None = None
    # Pending window: raising when `alert` is None, clearing otherwise.
    since: float | None = None
    due: float | None = None
    values: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class Effects:
    """Accumulated since the last `take_effects`: transitions in order, timers by key."""

    events: list[tuple[Alert, AlertEventKind]] = field(default_factory=list)
    # A pending window started (a PendingTimer) or ended (None), last one per key wins.
    timers: dict[Key, PendingTimer | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.events or self.timers)


@dataclass(frozen=True, slots=True)
class _Threshold:
    function: str
    path: Path
    seconds: float


def _constant(node: Expr) -> float | None:
    match node:
        case NumberLit(value=value) | DurationLit(seconds=value):
            return value
        case Unary(op="-", operand=NumberLit(value=value) | DurationLit(seconds=value)):
            return -value
        case _:
            return None


def _clock_call(node: Expr) -> tuple[str, Path] | None:
    if not isinstance(node, Call) or node.name not in ("age", "no_data_for") or len(node.args) != 1:
        return None
    arg = node.args[0]
    if isinstance(arg, Field):
        return node.name, arg.path
    if isinstance(arg, StringLit):
        return node.name, parse_path(arg.value)[1]
    return None


def thresholds(tree: Expr) -> tuple[list[_Threshold], bool]:
    """Comparisons of `age`/`no_data_for` with a constant, and whether every clock read is one.

    When every clock-reading call is compared with a constant, the outcome can only
    change at `reported_at + constant`; otherwise the rule is re-checked periodically.
    """
    found: list[_Threshold] = []
    complete = True

    def walk(node: Expr) -> None:
        nonlocal complete
        if isinstance(node, Compare):
            for side, other in ((node.left, node.right), (node.right, node.left)):
                call, value = _clock_call(side), _constant(other)
                if call is not None and value is not None:
                    found.append(_Threshold(call[0], call[1], value))
                    walk(other)
                    return
        if isinstance(node, Call) and node.name in ("age", "no_data_for"):
            complete = False
        for child in children(node):
            walk(child)

    walk(tree)
    return found, complete


@dataclass(frozen=True, slots=True)
class _Indexed:
    rule: CompiledRule
    thresholds: tuple[_Threshold, ...]
    # Every clock read is a threshold comparison, so rechecks can be exact.
    exact: bool
    # Taken out of `rule` once: `_evaluate` runs for every affected rule of every message.
    name: str
    when: Eval
    clear_when: Eval | None
    enabled: bool
    selector: VehicleSelector | None
    uses_time: bool
    desired_reads: frozenset[Path]
    # Tags the rule reads, in its condition or its selector.
    tag_reads: frozenset[Path]


def _related(a: Path, b: Path) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _touches(changed: Iterable[Path], fields: Iterable[Path]) -> bool:
    """Whether an operator write of `changed` can affect `fields`; an update naming no paths may touch any."""
    fields = tuple(fields)
    if not fields:
        return False
    changed = tuple(changed)
    return not changed or any(_related(c, f) for c in changed for f in fields)


def _plain(value: object) -> object:
    return None if value is MISSING else value


class Evaluator:
    """Rules, per-vehicle state and deadlines; see the module docstring."""

    def __init__(self, *, recheck_s: float = 10.0) -> None:
        self.recheck_s = recheck_s
        self.zones: Mapping[str, Zone] = {}
        self._rules: dict[str, _Indexed] = {}
        self._by_head: dict[str, list[tuple[str, frozenset[Path]]]] = {}
        self._time_by_head: dict[str, list[tuple[str, frozenset[Path]]]] = {}
        self._shapes: dict[tuple[tuple[Path, ...], tuple[str, ...]], list[_Indexed]] = {}
        self._slots: dict[Key, Slot] = {}
        self._cooldown_until: dict[Key, float] = {}
        self._timers: TimerHeap[tuple[str, str, TimerPurpose]] = TimerHeap()
        self._twins: dict[str, TwinState] = {}
        self._effects = Effects()
        self.evaluations = 0

    # -- rules ------------------------------------------------------------------------

    @property
    def rules(self) -> dict[str, CompiledRule]:
        return {name: indexed.rule for name, indexed in self._rules.items()}

    def put_rule(self, rule: CompiledRule, now: float) -> None:
        """Add or replace a rule; its pending windows restart, its open alerts stay."""
        if rule.name in self._rules:
            self._drop_windows(rule.name)
        found: list[_Threshold] = []
        exact = True
        for expr in (rule.when, rule.clear_when):
            if expr is not None and expr.uses_time:
                more, complete = thresholds(expr.tree)
                found += more
                exact = exact and complete
        clear_when = rule.clear_when.run if rule.clear_when is not None else None
        definition = rule.definition
        selector = definition.selector
        selected = frozenset((key,) for key in selector.tags) if selector is not None else frozenset()
        self._rules[rule.name] = _Indexed(
            rule,
            tuple(found),
            exact,
            rule.name,
            rule.when.run,
            clear_when,
            definition.enabled,
            selector,
            rule.uses_time,
            rule.desired_fields,
            rule.tag_fields | selected,
        )
        self._reindex()

    def remove_rule(self, name: str, now: float) -> None:
        """Forget a rule: its pending windows end and its open alerts are cleared."""
        if name not in self._rules:
            return
        self._drop_windows(name)
        for key in [k for k in self._slots if k[0] == name]:
            slot = self._slots.pop(key)
            if slot.alert is not None:
                self._emit_clear(slot.alert, now, "rule-deleted", {})
        del self._rules[name]
        self._reindex()

    def _drop_windows(self, name: str) -> None:
        for key, slot in list(self._slots.items()):
            if key[0] != name:
                continue
            self._timers.cancel((*key, TimerPurpose.RECHECK))
            if slot.due is not None:
                self._end_window(key, slot)
            if slot.alert is None:
                del self._slots[key]

    def _reindex(self) -> None:
        by_head: dict[str, list[tuple[str, frozenset[Path]]]] = {}
        time_by_head: dict[str, list[tuple[str, frozenset[Path]]]] = {}
        for name, indexed in self._rules.items():
            rule = indexed.rule
            if not indexed.enabled:
                continue
            fields = rule.fields
            for head in {path[0] for path in fields}:
                by_head.setdefault(head, []).append((name, fields))
                if rule.uses_time:
                    time_by_head.setdefault(head, []).append((name, fields))
        self._by_head, self._time_by_head = by_head, time_by_head
        self._shapes.clear()

    # -- restoring persisted state ------------------------------------------------------

    def restore(self, alerts: Iterable[Alert], timers: Iterable[PendingTimer], cleared: Iterable[Alert]) -> None:
        """Take back open alerts, pending windows and recent clears after a restart."""
        for alert in alerts:
            if alert.state.open:
                self._slots[(alert.rule, alert.vehicle_id)] = Slot(alert=alert)
        for alert in cleared:
            rule = self._rules.get(alert.rule)
            if rule is not None and alert.cleared_at is not None and rule.rule.cooldown_s > 0:
                self._cooldown_until[(alert.rule, alert.vehicle_id)] = alert.cleared_at + rule.rule.cooldown_s
        for timer in timers:
            key = (timer.rule, timer.vehicle_id)
            if timer.rule not in self._rules:
                self._effects.timers[key] = None
                continue
            slot = self._slots.get(key)
            if timer.kind is TimerKind.RAISE and slot is None:
                slot = self._slots[key] = Slot()
            elif slot is None or (timer.kind is TimerKind.CLEAR and slot.alert is None):
                self._effects.timers[key] = None
                continue
            slot.since, slot.due, slot.values = timer.since, timer.due, dict(timer.values)
            self._timers.schedule((*key, TimerPurpose.WINDOW), timer.due)

    def forget(self, vehicle: Callable[[str], bool]) -> None:
        """Drop every slot, cooldown, deadline and twin of the vehicles `vehicle` selects.

        A hub worker that loses (or is about to rebuild) a vehicle's partition calls it;
        `restore` then takes back what the store holds for the vehicles it now owns.
        """
        for key in [k for k in self._slots if vehicle(k[1])]:
            del self._slots[key]
        for key in [k for k in self._cooldown_until if vehicle(k[1])]:
            del self._cooldown_until[key]
        for timer in [t for t in self._timers.scheduled() if vehicle(t[1])]:
            self._timers.cancel(timer)
        for vid in [v for v in self._twins if vehicle(v)]:
            del self._twins[vid]

    def open_alert(self, rule: str, vehicle_id: str) -> Alert | None:
        slot = self._slots.get((rule, vehicle_id))
        return slot.alert if slot else None

    def pending(self, rule: str, vehicle_id: str) -> Slot | None:
        slot = self._slots.get((rule, vehicle_id))
        return slot if slot and slot.due is not None else None

    # -- evaluation -------------------------------------------------------------------

    def observe(self, updates: list[TwinUpdate], now: float) -> None:
        """Evaluate the rules each update can affect, in order."""
        overlays = self._overlays(updates)
        for update, overlay in zip(updates, overlays, strict=True):
            state = update.state
            self._twins[update.vehicle_id] = state
            affected = self._affected(update)
            if not affected:
                continue
            ctx = TwinContext(state, now, update.previous, overlay)
            for indexed in affected:
                self._evaluate(indexed, state, ctx, now)

    @staticmethod
    def _overlays(updates: list[TwinUpdate]) -> list[Mapping[str, ReportedEntry | None]]:
        # `state` holds the end of the batch; an earlier update of the same vehicle sees
        # the entries later updates replaced as they were before them.
        overlays: list[Mapping[str, ReportedEntry | None]] = [_NO_ENTRIES] * len(updates)
        later: dict[str, dict[str, ReportedEntry | None]] = {}
        for i in range(len(updates) - 1, -1, -1):
            update = updates[i]
            replaced = later.get(update.vehicle_id)
            if replaced:
                overlays[i] = dict(replaced)
            if update.previous:
                later.setdefault(update.vehicle_id, {}).update(update.previous)
        return overlays

    def _affected(self, update: TwinUpdate) -> list[_Indexed]:
        kind = update.kind
        if kind is UpdateKind.TELEMETRY:
            # Vehicles send messages of few shapes: the rules one shape touches are looked up once.
            shape = (update.changed, tuple(update.previous) if self._time_by_head else ())
            found = self._shapes.get(shape)
            if found is None:
                names: dict[str, None] = {}
                self._match(update.changed, self._by_head, names)
                if shape[1]:
                    self._match([tuple(key.split(PATH_SEP)) for key in shape[1]], self._time_by_head, names)
                found = [self._rules[name] for name in names]
                if len(self._shapes) >= _MAX_SHAPES:
                    self._shapes.clear()
                self._shapes[shape] = found
            return found
        if kind is UpdateKind.DESIRED:
            return [i for i in self._rules.values() if i.enabled and _touches(update.changed, i.desired_reads)]
        if kind is UpdateKind.TAGS:
            # A write naming no paths (provisioning) may also have moved the vehicle to another
            # fleet: every rule with a selector can be affected.
            return [
                i
                for i in self._rules.values()
                if i.enabled
                and (_touches(update.changed, i.tag_reads) or (not update.changed and i.selector is not None))
            ]
        if kind in (UpdateKind.CONNECTED, UpdateKind.DISCONNECTED):
            return [i for i in self._rules.values() if i.uses_time and i.enabled]
        return []

    @staticmethod
    def _match(
        paths: Iterable[tuple[str, ...]], index: Mapping[str, list[tuple[str, frozenset[Path]]]], out: dict[str, None]
    ) -> None:
        for path in paths:
            candidates = index.get(path[0])
            if not candidates:
                continue
            for name, fields in candidates:
                if name not in out and any(_related(path, f) for f in fields):
                    out[name] = None

    def check_twin(self, state: TwinState, now: float, *, names: Iterable[str] | None = None) -> None:
        """Evaluate clock-reading rules (or `names`) on a twin as it is, e.g. at start-up."""
        ctx = TwinContext(state, now)
        for name in self._rules if names is None else names:
            indexed = self._rules.get(name)
            if indexed is not None and (names is not None or indexed.rule.uses_time):
                self._evaluate(indexed, state, ctx, now)

    def _evaluate(self, indexed: _Indexed, state: TwinState, ctx: TwinContext, now: float) -> None:
        if not indexed.enabled:
            return
        self.evaluations += 1
        key = (indexed.name, state.vehicle_id)
        slot = self._slots.get(key)
        selector = indexed.selector
        if selector is not None and not selector.admits(state):
            if slot is not None and slot.alert is None:
                self._end_window(key, slot)
                del self._slots[key]
            return
        zones = self.zones
        if slot is None:
            # Most evaluations: nothing open, nothing pending, and the condition does not hold.
            if indexed.when(ctx, zones) is True:
                self._holds(indexed, key, None, ctx, now)
        elif slot.alert is None:
            if indexed.when(ctx, zones) is True:
                self._holds(indexed, key, slot, ctx, now)
            else:
                self._end_window(key, slot)
                del self._slots[key]
        else:
            rule = indexed.rule
            clear = indexed.clear_when
            clears = clear(ctx, zones) is True if clear else indexed.when(ctx, zones) is not True
            if clears:
                if rule.clear_for_s <= 0:
                    self._clear_by_condition(key, slot, ctx, now)
                elif slot.due is None:
                    self._start_window(key, slot, TimerKind.CLEAR, now, now + rule.clear_for_s, self._values(rule, ctx))
            elif slot.due is not None:
                self._end_window(key, slot)
        if indexed.uses_time:
            self._schedule_recheck(indexed, key, ctx, now)

    def _holds(self, indexed: _Indexed, key: Key, slot: Slot | None, ctx: TwinContext, now: float) -> None:
        rule = indexed.rule
        if slot is not None:
            return  # the window is already running
        until = self._cooldown_until.get(key)
        if until is not None:
            if now < until:
                self._timers.schedule((*key, TimerPurpose.RECHECK), until)
                return
            del self._cooldown_until[key]
        values = self._values(rule, ctx)
        if rule.for_s <= 0:
            self._raise(key, Slot(), rule, ctx, now, now, values)
            return
        slot = self._slots[key] = Slot()
        self._start_window(key, slot, TimerKind.RAISE, now, now + rule.for_s, values)

    def _start_window(
        self, key: Key, slot: Slot, kind: TimerKind, now: float, due: float, values: dict[str, object]
    ) -> None:
        slot.since, slot.due, slot.values = now, due, values
        self._timers.schedule((*key, TimerPurpose.WINDOW), due)
        self._effects.timers[key] = PendingTimer(key[0], key[1], kind, now, due, dict(values))

    def _end_window(self, key: Key, slot: Slot) -> None:
        slot.since = slot.due = None
        slot.values = {}
        self._timers.cancel((*key, TimerPurpose.WINDOW))
        self._effects.timers[key] = None

    def _schedule_recheck(self, indexed: _Indexed, key: Key, ctx: TwinContext, now: float) -> None:
        recheck = (*key, TimerPurpose.RECHECK)
        if not indexed.exact:
            self._timers.schedule(recheck, now + self.recheck_s)
            return
        best: float | None = None
        for threshold in indexed.thresholds:
            at = ctx.reported_at(threshold.path)
            if at is None and threshold.function == "no_data_for":
                at = ctx.connected_since()
            if at is None:
                continue
            deadline = at + threshold.seconds + _AFTER
            if deadline > now and (best is None or deadline < best):
                best = deadline
        cooldown = self._cooldown_until.get(key)
        if cooldown is not None and cooldown > now and (best is None or cooldown < best):
            best = cooldown
        if best is None:
            self._timers.cancel(recheck)
            return
        # An earlier re-check than needed only re-evaluates and moves on, so a vehicle that
        # reports often does not push a new deadline onto the heap with every message.
        current = self._timers.deadline(recheck)
        if current is None or current <= now or best < current:
            self._timers.schedule(recheck, best)

    def _values(self, rule: CompiledRule, ctx: TwinContext) -> dict[str, object]:
        values: dict[str, object] = {}
        for path in sorted(rule.fields):
            values[".".join(path)] = _plain(ctx.value(path, Source.REPORTED))
        for path in sorted(rule.desired_fields):
            values["desired." + ".".join(path)] = _plain(ctx.value(path, Source.DESIRED))
        for path in sorted(rule.tag_fields):
            values["tags." + ".".join(path)] = _plain(ctx.value(path, Source.TAGS))
        for key, value in rule.message.collect(ctx).items():
            values.setdefault(key, _plain(value))
        return values

    # -- transitions ------------------------------------------------------------------

    def _raise(
        self,
        key: Key,
        slot: Slot,
        rule: CompiledRule,
        ctx: TwinContext,
        since: float,
        now: float,
        values: dict[str, object],
    ) -> None:
        state = ctx.state
        alert = Alert(
            id=new_alert_id(),
            rule=rule.name,
            vehicle_id=state.vehicle_id,
            fleet=state.fleet,
            severity=rule.definition.severity.value,
            state=AlertState.ACTIVE,
            message=rule.message.render(ctx),
            values=values,
            since=since,
            raised_at=now,
            updated_at=now,
        )
        slot.alert = alert
        self._slots[key] = slot
        self._effects.events.append((alert, AlertEventKind.RAISED))

    def _clear_by_condition(self, key: Key, slot: Slot, ctx: TwinContext, now: float) -> None:
        alert = slot.alert
        if alert is None:
            return
        rule = self._rules[key[0]].rule
        if slot.due is not None:
            self._end_window(key, slot)
        del self._slots[key]
        self._emit_clear(alert, now, "condition", self._values(rule, ctx))
        if rule.cooldown_s > 0:
            self._cooldown_until[key] = now + rule.cooldown_s

    def _emit_clear(self, alert: Alert, now: float, by: str, values: dict[str, object]) -> None:
        cleared = msgspec.structs.replace(
            alert, state=AlertState.CLEARED, cleared_at=now, cleared_by=by, clear_values=values, updated_at=now
        )
        self._effects.events.append((cleared, AlertEventKind.CLEARED))

    def acknowledge(self, alert_id: str, user: str, note: str | None, now: float) -> Alert:
        _, slot, alert = self._find(alert_id)
        if alert.state is not AlertState.ACTIVE:
            raise AlertNotOpen(f"alert {alert_id} is already acknowledged")
        slot.alert = msgspec.structs.replace(
            alert,
            state=AlertState.ACKNOWLEDGED,
            acknowledged_at=now,
            acknowledged_by=user,
            note=note,
            updated_at=now,
        )
        self._effects.events.append((slot.alert, AlertEventKind.ACKNOWLEDGED))
        return slot.alert

    def clear(self, alert_id: str, user: str, note: str | None, now: float) -> Alert:
        """Clear an open alert by hand; the rule may raise a new one when its condition next holds."""
        key, slot, alert = self._find(alert_id)
        if slot.due is not None:
            self._end_window(key, slot)
        del self._slots[key]
        if note is not None:
            alert = msgspec.structs.replace(alert, clear_note=note)
        self._emit_clear(alert, now, user, {})
        rule = self._rules.get(key[0])
        if rule is not None and rule.rule.cooldown_s > 0:
            self._cooldown_until[key] = now + rule.rule.cooldown_s
        return self._effects.events[-1][0]

    def raise_external(
        self,
        rule: str,
        vehicle_id: str,
        fleet: str,
        severity: str,
        message: str,
        values: dict[str, Any],
        now: float,
    ) -> Alert | None:
        """Raise an alert that another part of the hub decides (maintenance), unless one is open for it."""
        key = (rule, vehicle_id)
        slot = self._slots.get(key)
        if slot is not None and slot.alert is not None:
            return None
        alert = Alert(
            id=new_alert_id(),
            rule=rule,
            vehicle_id=vehicle_id,
            fleet=fleet,
            severity=severity,
            state=AlertState.ACTIVE,
            message=message,
            values=values,
            since=now,
            raised_at=now,
            updated_at=now,
        )
        self._slots[key] = Slot(alert=alert)
        self._effects.events.append((alert, AlertEventKind.RAISED))
        return alert

    def clear_external(self, rule: str, vehicle_id: str, by: str, values: dict[str, Any], now: float) -> Alert | None:
        """Clear the open alert of `rule` for a vehicle, if there is one."""
        key = (rule, vehicle_id)
        slot = self._slots.get(key)
        if slot is None or slot.alert is None:
            return None
        del self._slots[key]
        self._emit_clear(slot.alert, now, by, values)
        return self._effects.events[-1][0]

    def _find(self, alert_id: str) -> tuple[Key, Slot, Alert]:
        for key, slot in self._slots.items():
            if slot.alert is not None and slot.alert.id == alert_id:
                return key, slot, slot.alert
        raise AlertNotOpen(f"alert {alert_id} is not open")

    # -- time -----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()

    def pop_due(self, now: float) -> list[tuple[float, tuple[str, str, TimerPurpose]]]:
        return self._timers.pop_due(now)

    def twin(self, vehicle_id: str) -> TwinState | None:
        return self._twins.get(vehicle_id)

    def fire(self, timer: tuple[str, str, TimerPurpose], state: TwinState | None, now: float) -> None:
        """A deadline passed: end a window, or re-check a clock-reading rule."""
        name, vehicle_id, purpose = timer
        key = (name, vehicle_id)
        indexed = self._rules.get(name)
        if indexed is None or not indexed.enabled:
            return
        if state is not None:
            self._twins.setdefault(vehicle_id, state)
        if purpose is TimerPurpose.RECHECK:
            if state is not None:
                self._evaluate(indexed, state, TwinContext(state, now), now)
            return
        slot = self._slots.get(key)
        if slot is None or slot.due is None:
            return
        rule = indexed.rule
        ctx = TwinContext(state, now) if state is not None else None
        if slot.alert is None:
            # Without clock reads, nothing changes between updates: the condition still holds.
            if rule.uses_time and ctx is not None and not rule.when.evaluate(ctx, self.zones):
                self._end_window(key, slot)
                del self._slots[key]
                return
            since, values = slot.since or now, slot.values
            self._end_window(key, slot)
            if ctx is None:
                log.warning("twin not found when a window ended", rule=name, vehicle_id=vehicle_id)
                del self._slots[key]
                return
            self._raise(key, slot, rule, ctx, since, now, values)
        else:
            if rule.uses_time and ctx is not None:
                clear = rule.clear_when
                clears = clear.evaluate(ctx, self.zones) if clear else not rule.when.evaluate(ctx, self.zones)
                if not clears:
                    self._end_window(key, slot)
                    return
            values = slot.values
            self._end_window(key, slot)
            alert = slot.alert
            del self._slots[key]
            self._emit_clear(alert, now, "condition", values)
            if rule.cooldown_s > 0:
                self._cooldown_until[key] = now + rule.cooldown_s

    # -- output ---------------------------------------------------------------------------

    def take_effects(self) -> Effects:
        effects, self._effects = self._effects, Effects()
        return effects

    @property
    def has_effects(self) -> bool:
        return bool(self._effects)
