"""Fixtures for the security tests: a PostgreSQL for the store contract, and secure hubs."""

from tests.integration.store.conftest import pg_database, pg_server, pg_url

__all__ = ["pg_database", "pg_server", "pg_url"]
