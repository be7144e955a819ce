"""The composition root: settings → storage, clock, providers and services, wired once."""

from __future__ import annotations

import importlib
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from orderbell.api.schemas import ShopPatch
from orderbell.channels.base import Provider
from orderbell.channels.console import ConsoleProvider
from orderbell.channels.pacing import Pacer
from orderbell.clock import Clock, DatabaseClock, SystemClock
from orderbell.domain.model import Channel
from orderbell.engine import segment_holds
from orderbell.engine.dispatcher import Dispatcher, RetryPolicy
from orderbell.engine.ingest import Ingestor
from orderbell.engine.simulate import Simulator
from orderbell.engine.unsubscribe import Links, secret_key
from orderbell.engine.wakeup import Waker, for_engine
from orderbell.errors import InvalidInput
from orderbell.metrics import Metrics
from orderbell.settings import Settings
from orderbell.store import shops as shop_store
from orderbell.store.db import make_engine, migrate
from orderbell.store.providers import Account
from orderbell.store.shops import KeyCache
from orderbell.templates.sandbox import Renderer


def default_providers(settings: Settings) -> dict[Channel, Provider]:
    """The providers the settings ask for: console by default, SMTP for e-mail if set."""
    providers: dict[Channel, Provider] = {
        Channel.SMS: ConsoleProvider(Channel.SMS, path=settings.outbox_file)
        if settings.sms_provider == "console"
        else provider_from_path(settings.sms_provider, settings, Channel.SMS),
    }
    if settings.email_provider == "smtp":
        from orderbell.channels.smtp import SmtpProvider, SmtpSettings

        providers[Channel.EMAIL] = SmtpProvider(
            SmtpSettings(
                host=settings.smtp_host,
                port=settings.smtp_port,
                security=settings.smtp_security,
                username=settings.smtp_username,
                password=settings.smtp_password.get_secret_value()
                if settings.smtp_password
                else None,
                from_address=settings.smtp_from,
            )
        )
    else:
        providers[Channel.EMAIL] = ConsoleProvider(Channel.EMAIL, path=settings.outbox_file)
    return providers


def provider_from_path(path: str, settings: Settings, channel: Channel) -> Provider:
    """A provider built by a factory named ``package.module:function`` — the seam for gateways
    that live outside this package. The factory is called as ``function(settings, channel)``."""
    module_name, _, attribute = path.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(
            f"cannot load provider factory {path!r}: {type(exc).__name__}", field="sms_provider"
        ) from exc
    provider: Provider = factory(settings, channel)
    return provider


def database_clock(engine: Engine, local: Clock | None = None) -> DatabaseClock:
    """A clock that tells the database server's time (for PostgreSQL deployments)."""

    def server_time() -> datetime:
        with engine.connect() as conn:
            value: datetime = conn.execute(select(func.clock_timestamp())).scalar_one()
        return value

    return DatabaseClock(server_time, local=local)


@dataclass(kw_only=True)
class Services:
    """Everything the API, CLI and workers use, built from one Settings."""

    settings: Settings
    engine: Engine
    clock: Clock
    renderer: Renderer
    providers: dict[Channel, Provider]
    metrics: Metrics = field(default_factory=Metrics)
    ingestor: Ingestor = field(init=False)
    simulator: Simulator = field(init=False)
    unsubscribe: Links = field(init=False)
    api_keys: KeyCache = field(init=False)

    def __post_init__(self) -> None:
        secret = self.settings.secret_key
        self.unsubscribe = Links(
            lambda: secret_key(
                secret.get_secret_value() if secret else None, self.settings.secret_key_file
            ),
            self.settings.public_url,
        )
        self.ingestor = Ingestor(
            self.engine, self.clock, self.renderer, billing=self.settings.billing
        )
        self.simulator = Simulator(self.engine, self.clock, self.renderer)
        self.api_keys = KeyCache(self.settings.api_key_cache_seconds)
        self.metrics.watch_queue(self.engine, self.clock)

    def patch_shop(self, conn: Connection, shop_id: int, patch: ShopPatch, actor: str) -> Any:
        """Change a shop's settings (API and admin alike); when its SMS settings changed,
        messages held over the segment cap that fit now are released. Returns the row."""
        before = shop_store.get(conn, shop_id)
        row = shop_store.patch(conn, shop_id, patch)
        after = shop_store.to_shop(row)
        if (before.sms_transliterate, before.sms_max_segments) != (
            after.sms_transliterate,
            after.sms_max_segments,
        ):
            segment_holds.release(
                conn, after, self.renderer, self.clock.now(), billing=self.settings.billing,
                actor=actor,
            )  # fmt: skip
        return row

    def waker(self) -> Waker:
        """What wakes this process's idle workers: LISTEN/NOTIFY on PostgreSQL, else a poll.
        Create it on the event loop that will wait on it."""
        return for_engine(self.engine)

    def _pacer_for(self, account: Account) -> Pacer:
        """The cross-worker pacer of one provider account (rate kept in the database)."""
        return Pacer.for_provider(self.engine, account.id, self.clock)

    def dispatcher(self, worker_id: str | None = None) -> Dispatcher:
        """A dispatcher for one worker."""
        return Dispatcher(
            engine=self.engine,
            clock=self.clock,
            providers=self.providers,
            renderer=self.renderer,
            worker_id=worker_id or f"{socket.gethostname()}:{os.getpid()}",
            batch_size=self.settings.worker_batch,
            lease_seconds=self.settings.lease_seconds,
            retry=RetryPolicy(
                max_attempts=self.settings.max_attempts,
                base_seconds=self.settings.retry_base_seconds,
                cap_seconds=self.settings.retry_cap_seconds,
            ),
            billing=self.settings.billing,
            unsubscribe=self.unsubscribe,
            public_url=self.settings.public_url,
            pacer_for=self._pacer_for,
            send_chunk=self.settings.worker_send_chunk,
            database_time=isinstance(self.clock, DatabaseClock),
            planner=self.ingestor.plan_waiting,
            metrics=self.metrics,
        )


def build(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    providers: dict[Channel, Provider] | None = None,
    run_migrations: bool = True,
) -> Services:
    """Wire orderbell from settings; tests pass their own clock and providers."""
    settings = settings or Settings()
    engine = make_engine(settings.database_url)
    if run_migrations:
        migrate(engine)
    if clock is None:
        on_postgres = engine.dialect.name == "postgresql"
        use_server = on_postgres and settings.clock_source == "database"
        clock = database_clock(engine) if use_server else SystemClock()
    return Services(
        settings=settings,
        engine=engine,
        clock=clock,
        renderer=Renderer(),
        providers=providers if providers is not None else default_providers(settings),
    )
