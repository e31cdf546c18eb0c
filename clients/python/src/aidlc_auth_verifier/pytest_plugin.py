"""pytest fixtures for services that use this package (loaded automatically once it is
installed): `aidlc_tokens` and `aidlc_override_caller`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .testing import TokenFactory, make_caller
from .verifier import Caller


@pytest.fixture
def aidlc_tokens() -> TokenFactory:
    """A fresh signing key and its token factory; `aidlc_tokens.auth()` trusts it."""
    return TokenFactory()


@pytest.fixture
def aidlc_override_caller() -> Iterator[Callable[..., Caller]]:
    """`aidlc_override_caller(app, auth, **caller_fields)` makes both `auth.caller` and
    `auth.caller_strict` return that Caller in `app` for the rest of the test."""
    undo: list[tuple[Any, Any]] = []

    def override(app: Any, auth: Any, caller: Caller | None = None, **fields: Any) -> Caller:
        chosen = caller or make_caller(**fields)
        for dependency in (auth.caller, auth.caller_strict):
            # Bound methods compare equal, so this matches what the routes' Depends() hold.
            app.dependency_overrides[dependency] = lambda: chosen
            undo.append((app, dependency))
        return chosen

    yield override
    for app, dependency in undo:
        app.dependency_overrides.pop(dependency, None)
