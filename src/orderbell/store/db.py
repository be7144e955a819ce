"""Engines and migrations: SQLite (embedded, WAL) by default, PostgreSQL for many workers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, CursorResult, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).parent / "migrations"

#: WAL frames (pages) a commit lets pile up before it checkpoints them into the database
#: file. SQLite's default is 1,000 (~4 MB): a worker marking batches of 100 sent rewrites the
#: same pages batch after batch, and checkpointed every ~1,000 frames it wrote each of them
#: back, with an fsync, many times over. At 10,000 (~40 MB of WAL at most) a page rewritten
#: within that span is written back once: the SQLite pipeline sends 4-7 % more messages a
#: second (docs/deployment.md).
WAL_AUTOCHECKPOINT_PAGES = 10_000

#: Where SQLite keeps its temporary files: statement journals (a statement that may fail
#: halfway, in a transaction that already wrote — each planned event runs in a savepoint —
#: keeps the pages it changes, to undo only itself) and sorting or grouping structures. On
#: disk (this build's default, TEMP_STORE=1), each is a file created in a temporary folder
#: and unlinked at once: every event planned created and deleted one. In memory (they hold
#: kilobytes for these statements) an event is planned and sent in ~11 % less time
#: (docs/deployment.md).
TEMP_STORE = "MEMORY"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute(f"PRAGMA temp_store={TEMP_STORE}")
    cur.close()


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Create an engine; SQLite gets WAL and a busy timeout, its folder is created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        in_memory = database in (None, "", ":memory:")
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            poolclass=NullPool if in_memory else None,
            # One pooled connection per request thread: opening one costs its PRAGMAs.
            **({} if in_memory else {"pool_size": 40, "max_overflow": 10}),
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy issue BEGIN IMMEDIATE itself: one writer at a time, no upgrade deadlocks.
        event.listen(engine, "connect", _disable_pysqlite_begin)
        # Writers in this process queue on a lock instead of SQLite's busy handler, which
        # sleeps in growing steps (up to 100 ms) and turns contention into latency.
        writer = threading.Lock()

        def begin(conn: Any) -> None:
            if conn.get_execution_options().get(READ_ONLY):
                # A reader: WAL lets it run beside the writer, on a snapshot, without the lock.
                conn.exec_driver_sql("BEGIN")
                return
            if not writer.acquire(timeout=30):
                raise TimeoutError("waited 30 s for the SQLite write lock")
            conn.info["orderbell_writer"] = True
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                end(conn)
                raise

        def end(conn: Any) -> None:
            if conn.info.pop("orderbell_writer", False):
                writer.release()

        event.listen(engine, "begin", begin)
        event.listen(engine, "commit", end)
        event.listen(engine, "rollback", end)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


#: Execution option marking a connection that only reads (see `reading`).
READ_ONLY = "orderbell_read_only"


def reading(engine: Engine) -> Connection:
    """A connection for reads only: on SQLite it neither waits for nor holds the write lock
    (WAL readers see the last committed snapshot). Use it as a context manager."""
    return engine.connect().execution_options(**{READ_ONLY: True})


#: SQLSTATEs of a transaction PostgreSQL rolled back so that another could go on: a
#: deadlock it broke (40P01) or a serialization conflict (40001). Run again, it can succeed.
_RETRY_STATES = frozenset(("40P01", "40001"))


def rolled_back_to_retry(exc: BaseException) -> bool:
    """Whether a failed statement's transaction was rolled back only to break a deadlock or
    a serialization conflict, as the driver's error says: raised by a statement run on its
    own cursor (`Driver`) or wrapped by SQLAlchemy."""
    error = getattr(exc, "orig", None) or exc
    return getattr(error, "sqlstate", None) in _RETRY_STATES


def _disable_pysqlite_begin(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the database schema to the newest revision."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def new_id(result: CursorResult[Any]) -> int:
    """The primary key of the row an INSERT just created."""
    key = result.inserted_primary_key
    if key is None or key[0] is None:  # pragma: no cover - every table has an id
        raise RuntimeError("the insert returned no primary key")
    return int(key[0])
