"""The serving process's own set-up: its heap is frozen once started (`settle_heap`)."""

from __future__ import annotations

import gc

import pytest
from fastapi.testclient import TestClient

from orderbell.api.app import create_app
from orderbell.compose import Services


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_serving_app_freezes_its_heap_once_started(services: Services) -> None:
    """Started with `freeze_heap` (as `orderbell serve` starts it), the objects alive
    then are out of the collector's sight: a full collection walks only newer ones. An
    app made without it (as tests make theirs) freezes nothing."""
    gc.unfreeze()
    try:
        with TestClient(create_app(services, embedded_worker=False)) as plain:
            assert plain.get("/healthz").status_code == 200
            assert gc.get_freeze_count() == 0
        with TestClient(create_app(services, embedded_worker=False, freeze_heap=True)) as app:
            frozen = gc.get_freeze_count()
            assert frozen > 10_000  # the modules, the app, the services
            assert app.get("/healthz").status_code == 200
            tracked = len(gc.get_objects())  # what a full collection still walks
            assert tracked < frozen
    finally:
        gc.unfreeze()
