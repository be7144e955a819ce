"""The SQLite engine's connections: WAL, checkpoints every WAL_AUTOCHECKPOINT_PAGES, and
temporary files (statement journals, sorts) kept in memory."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from orderbell.store.db import WAL_AUTOCHECKPOINT_PAGES, make_engine, reading


def test_every_connection_gets_wal_and_the_checkpoint_interval(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'o.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            pages = conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one()
            assert pages == WAL_AUTOCHECKPOINT_PAGES > 1_000
    finally:
        engine.dispose()


def test_every_pooled_connection_keeps_temporary_files_in_memory(tmp_path: Path) -> None:
    """temp_store is per connection: each of several open at once has it (2 = MEMORY), so no
    savepoint's statement journal becomes a file created and deleted for every event."""
    engine = make_engine(f"sqlite:///{tmp_path / 'o.db'}")
    try:
        with reading(engine) as a, reading(engine) as b:
            assert a.connection.dbapi_connection is not b.connection.dbapi_connection
            for conn in (a, b):
                assert conn.execute(text("PRAGMA temp_store")).scalar_one() == 2
    finally:
        engine.dispose()


def test_commits_past_sqlites_default_interval_are_not_checkpointed_yet(tmp_path: Path) -> None:
    """3,000 pages committed 100 at a time: at SQLite's default (1,000) the WAL would have
    been checkpointed and restarted twice, never growing past ~1,000 frames; here every
    frame is still in it."""
    database = tmp_path / "o.db"
    engine = make_engine(f"sqlite:///{database}")
    page = 4096
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB)"))
        for _ in range(30):
            with engine.begin() as conn:
                conn.execute(
                    text("INSERT INTO blobs (body) VALUES (randomblob(:n))"),
                    [{"n": page - 100}] * 100,
                )
        frames = (database.with_name("o.db-wal").stat().st_size - 32) // (page + 24)
        assert frames >= 3_000
    finally:
        engine.dispose()
