"""What the crash tests share: throw-away PostgreSQL databases, outboxes seeded in bulk,
real `orderbell worker` processes, and a private PostgreSQL cluster that may be restarted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.engine import make_url
from tests.conftest import UNDER_CI
from tests.net import free_port
from tests.ops.gateway import URL_VARIABLE
from tests.support import bare_shop

from orderbell.store.db import make_engine, migrate
from orderbell.store.schema import ledger, messages

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin" / "orderbell"
PG_BIN = Path(os.environ.get("ORDERBELL_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


@contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """A fresh, migrated database on the server at admin_url; dropped afterwards."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"orderbell_ops_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    try:
        yield url
    finally:
        admin.dispose()  # the server may have been restarted meanwhile: a fresh connection
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def database_now(engine: Engine) -> datetime:
    """The database server's clock."""
    with engine.connect() as conn:
        value: datetime = conn.execute(select(func.clock_timestamp())).scalar_one()
    return value


def new_shop(engine: Engine, slug: str) -> int:
    """A shop with no quiet hours, created at the database server's time."""
    return bare_shop(engine, slug, database_now(engine))


def seed(
    engine: Engine,
    shop_id: int,
    count: int,
    *,
    due_at: datetime | None = None,
    expires_at: datetime | None = None,
    category: str = "transactional",
    billed_every: int = 0,
) -> list[int]:
    """`count` due SMS messages (fixed texts, no template); every `billed_every`-th one has
    0.10 credits reserved (settling is per message, so billing all would slow the runs)."""
    now = database_now(engine)
    row: dict[str, Any] = {
        "shop_id": shop_id,
        "channel": "sms",
        "category": category,
        "recipient": "+15550100200",
        "status": "scheduled",
        "reason": "seeded",
        "due_at": due_at or now - timedelta(seconds=1),
        "expires_at": expires_at,
        "context": {"_system": True, "_text": "Your order has shipped"},
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "cost": None,
        "funding": None,
        "billing": None,
    }
    billed = {**row, "cost": 0.10, "funding": "credit", "billing": "reserved"}
    rows = [billed if billed_every and i % billed_every == 0 else row for i in range(count)]
    with engine.begin() as conn:
        first = conn.execute(select(func.coalesce(func.max(messages.c.id), 0))).scalar_one()
        for start in range(0, count, 5000):
            conn.execute(insert(messages), rows[start : start + 5000])
        ids = conn.execute(
            select(messages.c.id).where(messages.c.id > first).order_by(messages.c.id)
        ).scalars()
        return list(ids)


def statuses(engine: Engine) -> dict[str, int]:
    """How many messages are in each status."""
    with engine.connect() as conn:
        rows = conn.execute(select(messages.c.status, func.count()).group_by(messages.c.status))
        return {status: int(n) for status, n in rows}


def double_debits(engine: Engine) -> int:
    """Messages debited more than once."""
    with engine.connect() as conn:
        per_message = (
            select(ledger.c.message_id)
            .where(ledger.c.kind == "debit")
            .group_by(ledger.c.message_id)
            .having(func.count() > 1)
            .subquery()
        )
        return int(conn.execute(select(func.count()).select_from(per_message)).scalar_one())


def worker_env(database_url: str, gateway_url: str, folder: Path, **more: str) -> dict[str, str]:
    """The environment of a worker process that sends SMS to the loopback gateway."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ORDERBELL_DATABASE_URL": database_url,
        "ORDERBELL_SMS_PROVIDER": "tests.ops.gateway:provider",
        URL_VARIABLE: gateway_url,
        "ORDERBELL_OUTBOX_FILE": str(folder / "outbox.jsonl"),
        "ORDERBELL_LEASE_SECONDS": "5",
        "ORDERBELL_WORKER_POLL_SECONDS": "0.2",
        "ORDERBELL_RETRY_BASE_SECONDS": "0.2",
        "ORDERBELL_RETRY_CAP_SECONDS": "0.5",
        "ORDERBELL_MAX_ATTEMPTS": "50",
        "ORDERBELL_LOG_LEVEL": "WARNING",
        "ORDERBELL_LOG_JSON": "true",
    }
    env.update(more)
    return env


class Workers:
    """`orderbell worker` processes this test started (and only those are ever signalled)."""

    def __init__(self, env: dict[str, str], folder: Path, concurrency: int = 2) -> None:
        self.env = env
        self.folder = folder
        self.concurrency = concurrency
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started: dict[int, float] = {}
        self.kills = 0

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start one more worker process."""
        log = (self.folder / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [str(BIN), "worker", "--concurrency", str(self.concurrency)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        self.started[proc.pid] = time.monotonic()
        return proc

    def oldest(self) -> subprocess.Popen[bytes] | None:
        """The longest-running live process."""
        alive = self.alive()
        return min(alive, key=lambda p: self.started[p.pid]) if alive else None

    def busy(self, engine: Engine) -> list[subprocess.Popen[bytes]]:
        """Live processes holding leases right now (claimed, not yet recorded), oldest first."""
        with engine.connect() as conn:
            owners = conn.execute(
                select(messages.c.lease_owner).where(messages.c.status == "sending").distinct()
            ).scalars()
            pids = {int(o.split(":")[1]) for o in owners if o}
        alive = [p for p in self.alive() if p.pid in pids]
        return sorted(alive, key=lambda p: self.started[p.pid])

    def age(self, proc: subprocess.Popen[bytes]) -> float:
        """Seconds since it was started."""
        return time.monotonic() - self.started[proc.pid]

    def alive(self) -> list[subprocess.Popen[bytes]]:
        """The processes still running."""
        return [p for p in self.procs if p.poll() is None]

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL one of ours: no cleanup, no lease release."""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self.kills += 1

    def stop_all(self) -> None:
        """SIGTERM ours, then SIGKILL what did not stop."""
        for proc in self.alive():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def logs(self) -> str:
        """Every worker's output (for assertion messages)."""
        return "\n".join(
            f"== {p.name}\n" + p.read_text(errors="replace")[-3000:]
            for p in sorted(self.folder.glob("worker-*.log"))
        )


def wait_until(condition: Any, seconds: float, step: float = 0.1) -> bool:
    """Poll `condition()` until true or `seconds` pass (bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


class PrivateCluster:
    """A PostgreSQL cluster of our own (initdb into a temp dir) that tests may restart
    with ``-m immediate``; never the shared server on 5432."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="orderbell-pg-"))
        self.data = self.dir / "data"
        self.socket_dir = self.dir
        self._as_postgres = os.geteuid() == 0

    @staticmethod
    def available() -> str | None:
        """Why a private cluster cannot run here, or None."""
        if not (PG_BIN / "initdb").exists():
            return f"PostgreSQL server binaries not found in {PG_BIN}"
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root without runuser to become postgres"
        return None

    def _run(self, *args: str) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout[-800:]} {done.stderr[-800:]}")

    def _pg_ctl(self, action: str, *more: str) -> None:
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=100"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "pg.log"),
            "-w", "-t", "60", action, *more,
        )  # fmt: skip

    def start(self) -> PrivateCluster:
        """initdb and start."""
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self.dir.chmod(0o755)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        self._pg_ctl("start")
        return self

    def restart_immediate(self) -> None:
        """Crash-stop (no checkpoint, connections cut) and start again."""
        self._pg_ctl("restart", "-m", "immediate")

    def stop(self) -> None:
        """Stop and remove the cluster."""
        try:
            self._pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        """The postgres database on this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


def skip_reason_or_fail(reason: str) -> str:
    """A missing service skips on a laptop and fails under CI."""
    if UNDER_CI:
        raise AssertionError(f"{reason} (CI=true: service tests must run)")
    return reason
