"""Fixtures of the operations tests: the loopback gateway and throw-away databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from tests.conftest import PG_ADMIN_URL, _skip_or_fail
from tests.ops.gateway import Gateway
from tests.ops.harness import throwaway_database


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = Gateway().start()
    yield gw
    gw.stop()


@pytest.fixture
def ops_db() -> Iterator[str]:
    """A fresh migrated database on the shared server (never restarted by these tests)."""
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        _skip_or_fail(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}")
    with throwaway_database(PG_ADMIN_URL) as url:
        yield url
