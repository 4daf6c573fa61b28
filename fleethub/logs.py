"""structlog set-up: one pipeline for fleethub and for the stdlib loggers of amqtt and uvicorn."""

from __future__ import annotations

import logging
import sys
from typing import Any

import msgspec
import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_json_encode = msgspec.json.Encoder(enc_hook=str).encode


def _msgspec_dumps(obj: Any, **_: Any) -> str:
    return _json_encode(obj).decode()


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and route stdlib logging through it; call once in main()."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_msgspec_dumps)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    # Third-party loggers chat per connection or request at INFO; the hub logs what matters itself.
    for noisy in ("amqtt", "transitions", "uvicorn.access", "uvicorn.error", "aiosqlite", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, _LEVELS[level]))
