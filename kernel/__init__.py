"""What every part of the hub shares: the exception tree, the clock, and database access.

`kernel` imports no other part of fleethub; every other part may import it.
"""

from kernel.clock import Clock, isoformat, parse_time
from kernel.errors import ConfigError, FleethubError, InvalidPayload, LimitExceeded, NotFound, StoreError
from kernel.migrate import Migration, load_migrations, split_statements

__all__ = [
    "Clock",
    "ConfigError",
    "FleethubError",
    "InvalidPayload",
    "LimitExceeded",
    "Migration",
    "NotFound",
    "StoreError",
    "isoformat",
    "load_migrations",
    "parse_time",
    "split_statements",
]
