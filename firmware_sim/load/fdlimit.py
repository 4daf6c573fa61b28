"""Open-file limits: each connection is one file descriptor, on both ends."""

from __future__ import annotations

import resource

from firmware_sim.errors import ConfigError


def ensure_fd_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard limit so `needed` descriptors fit.

    Returns the soft limit now in force; raises `ConfigError` saying how to fix it when
    even the hard limit is too low.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if needed <= soft:
        return soft
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise ConfigError(
            f"this process needs {needed} open files but the hard limit is {hard}: "
            f"raise it (`ulimit -Hn {needed}` as root, or LimitNOFILE= in a systemd unit) "
            "or spread the connections over more worker processes (--workers)"
        )
    target = needed if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def fd_limits() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard
