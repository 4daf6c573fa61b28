"""Project-wide test settings."""

import os

from hypothesis import HealthCheck, settings

# The PostgreSQL fixtures (pg_server, pg_database, pg_url; pg_instance, a server of the test's own).
pytest_plugins = ["tests.postgres", "tests.pg_instance"]

# CI gets a fixed, modest example count so the suite's time is predictable on 2 cores.
settings.register_profile(
    "ci", max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else os.environ.get("HYPOTHESIS_PROFILE", "dev"))
