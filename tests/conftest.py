"""Project-wide test settings."""

import os
from typing import Any

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


# First: xdist's own hook would otherwise make the scheduler.
@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`pytest -n N --dist loadscope` (`make test`): a module's tests share one worker, so a module-scoped
    hub starts once, and the browser tests (a hub, a simulator and a Chromium per module) share one worker
    too, so they do not all start at once on a 2-core machine."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesAndBrowser(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith("tests/browser/"):
                return "tests/browser"
            return super()._split_scope(nodeid)

    return ModulesAndBrowser(config, log)
