"""The composition root: settings → storage, clock, providers and services, wired once."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from sqlalchemy import Engine

from orderbell.channels.base import Provider
from orderbell.channels.console import ConsoleProvider
from orderbell.channels.pacing import Pacer
from orderbell.clock import Clock, SystemClock
from orderbell.domain.model import Channel
from orderbell.engine.dispatcher import Dispatcher, RetryPolicy
from orderbell.engine.ingest import Ingestor
from orderbell.engine.simulate import Simulator
from orderbell.engine.unsubscribe import Links, secret_key
from orderbell.settings import Settings
from orderbell.store.db import make_engine, migrate
from orderbell.store.providers import Account
from orderbell.templates.sandbox import Renderer


def default_providers(settings: Settings) -> dict[Channel, Provider]:
    """The providers the settings ask for: console by default, SMTP for e-mail if set."""
    providers: dict[Channel, Provider] = {
        Channel.SMS: ConsoleProvider(Channel.SMS, path=settings.outbox_file),
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


@dataclass(kw_only=True)
class Services:
    """Everything the API, CLI and workers use, built from one Settings."""

    settings: Settings
    engine: Engine
    clock: Clock
    renderer: Renderer
    providers: dict[Channel, Provider]
    ingestor: Ingestor = field(init=False)
    simulator: Simulator = field(init=False)
    unsubscribe: Links = field(init=False)

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
    return Services(
        settings=settings,
        engine=engine,
        clock=clock or SystemClock(),
        renderer=Renderer(),
        providers=providers if providers is not None else default_providers(settings),
    )
