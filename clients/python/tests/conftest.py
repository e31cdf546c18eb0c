from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aidlc_auth_verifier import Settings, Verifier

from .service import INTROSPECTION_SECRET, Service


@pytest.fixture(scope="session")
def service() -> Iterator[Service]:
    """One aidlc-auth for the tests that change nothing about it (no key changes, no stop)."""
    running = Service().start()
    yield running
    running.close()


@pytest.fixture
def start_service() -> Iterator[Callable[..., Service]]:
    """Starts an aidlc-auth of the test's own (with extra settings); stopped after the test."""
    started: list[Service] = []

    def start(**settings: str) -> Service:
        started.append(Service(**settings).start())
        return started[-1]

    yield start
    for running in started:
        running.close()


def settings_for(service: Service, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "url": service.url,
        "issuer": service.issuer,
        "audience": service.audience,
        "introspection_secret": INTROSPECTION_SECRET,
    }
    values.update(overrides)
    return Settings(**values)


def verifier_for(service: Service, **overrides: Any) -> Verifier:
    return Verifier(settings_for(service, **overrides))


def pytest_configure(config: pytest.Config) -> None:
    # Installed, the package's pytest11 entry point loads its fixtures; from a bare
    # checkout (pythonpath = src) we load them here.
    if not config.pluginmanager.has_plugin("aidlc_auth_verifier"):
        config.pluginmanager.import_plugin("aidlc_auth_verifier.pytest_plugin")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The same switch as the TypeScript suite, so one wiring drives both.
    skip_slow = os.environ.get("AIDLC_AUTH_SKIP_SLOW") == "1"
    for item in items:
        if skip_slow and item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.skip(reason="AIDLC_AUTH_SKIP_SLOW=1"))
