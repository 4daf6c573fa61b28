"""The simulator's exceptions.

The simulator plays the part of vehicle firmware, so it does not import the hub's
exception tree; callers catch `SimError`.
"""

from __future__ import annotations


class SimError(Exception):
    """Base of every error the simulator raises on purpose."""


class ConfigError(SimError, ValueError):
    """A simulator setting is invalid; the message names the setting and how to fix it.

    A `ValueError` too, so msgspec reports it as a validation error when a `SimConfig`
    is decoded from TOML or JSON.
    """


class InvalidDelta(SimError):
    """A `twin/delta` payload is not `{"version": n, "delta": {...}}`."""
