"""The HTTP API: a Litestar app over the twin service."""

from api.app import create_app
from api.deps import ApiDeps, BrokerAuthConfig, ComponentHealth, Health

__all__ = ["ApiDeps", "BrokerAuthConfig", "ComponentHealth", "Health", "create_app"]
