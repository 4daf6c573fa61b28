"""Project-wide test settings."""

import os

import pytest
from hypothesis import HealthCheck, settings

# The session-end check that no process a test started outlives the run (tests.leftovers), and
# the PostgreSQL fixtures (pg_server, pg_database, pg_url; pg_instance, a server of the test's own).
pytest_plugins = ["tests.leftovers", "tests.postgres", "tests.pg_instance"]

# CI gets a fixed, modest example count so the suite's time is predictable on 2 cores.
settings.register_profile(
    "ci", max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups for `pytest -n N --dist loadgroup` (`make test`): a module's tests share one worker, so a
    module-scoped hub starts once; the browser tests (a hub, a simulator and a Chromium each) share one
    worker, so they do not all start at once on a 2-core machine. A test's own xdist_group mark wins."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        module = item.nodeid.split("::", 1)[0]
        group = "browser" if module.startswith("tests/browser/") else module
        item.add_marker(pytest.mark.xdist_group(group))
