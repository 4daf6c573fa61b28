"""Command preconditions and fleet-job filters: conditions of the rules language over one twin.

Satisfies `commands.Preconditions`. A condition is compiled once per
distinct text (a few are in use at a time: `speed == 0 and not ignition` for every
unlock) and evaluated on the live twin just before a command goes out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final

from rules.compiler import NO_ZONES, CompiledExpr, Compiler
from rules.twin_context import TwinContext
from rules.zones import Zone
from twin import TwinState

# Distinct condition texts kept compiled; the oldest is dropped beyond this.
CACHE_SIZE: Final = 256


class RulePreconditions:
    def __init__(self, compiler: Compiler, zones: Callable[[], Mapping[str, Zone]] | None = None) -> None:
        self.compiler = compiler
        self._zones = zones
        self._cache: OrderedDict[str, CompiledExpr] = OrderedDict()

    def check(self, source: str) -> None:
        """Raise `RuleSyntaxError` (line, column, caret) unless `source` is a valid condition."""
        self._compiled(source)

    def holds(self, source: str, state: TwinState, now: float) -> bool:
        zones = self._zones() if self._zones is not None else NO_ZONES
        return self._compiled(source).evaluate(TwinContext(state, now), zones)

    def _compiled(self, source: str) -> CompiledExpr:
        found = self._cache.get(source)
        if found is not None:
            self._cache.move_to_end(source)
            return found
        compiled = self.compiler.compile(source)
        self._cache[source] = compiled
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return compiled
