"""The migrations build the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from orderbell.compose import Services
from orderbell.store.schema import metadata


def test_the_migrations_build_every_table_column_and_index_of_the_schema(
    services: Services,
) -> None:
    """What `store/schema.py` declares is what the migrations made (a migration missing for
    a change to the schema, or building it otherwise, shows here as a difference)."""
    with services.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []
