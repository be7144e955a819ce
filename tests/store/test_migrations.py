"""The migrations build the schema the code declares, on both databases."""

from __future__ import annotations

from decimal import Decimal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select

from orderbell.compose import Services
from orderbell.store.db import alembic_config, make_engine
from orderbell.store.schema import metadata, prices


def test_the_migrations_build_every_table_column_and_index_of_the_schema(
    services: Services,
) -> None:
    """What `store/schema.py` declares is what the migrations made (a migration missing for
    a change to the schema, or building it otherwise, shows here as a difference)."""
    with services.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []


def test_email_prices_for_one_country_are_removed_and_the_rest_kept(
    database_url: str,
) -> None:
    """Before e-mail lines for one country were refused, a list could hold them (never
    charged); migrating removes them, and leaves every other line as it was."""
    engine = make_engine(database_url)
    try:
        config = alembic_config(database_url)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")  # (the session's PostgreSQL database is there)
            command.downgrade(config, "0012")
            conn.execute(
                insert(prices),
                [
                    {"channel": "email", "country": "*", "unit_price": Decimal("0.05")},
                    {"channel": "email", "country": "PL", "unit_price": Decimal("0.02")},
                    {"channel": "sms", "country": "PL", "unit_price": Decimal("0.07")},
                    {"channel": "sms", "country": "*", "unit_price": Decimal("0.10")},
                ],
            )
            command.upgrade(config, "head")
            left = conn.execute(
                select(prices.c.channel, prices.c.country).order_by(prices.c.id)
            ).all()
        assert [tuple(r) for r in left] == [("email", "*"), ("sms", "PL"), ("sms", "*")]
    finally:
        engine.dispose()
