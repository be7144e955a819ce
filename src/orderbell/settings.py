"""Settings, read from ORDERBELL_* environment variables once, at the edge."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of orderbell; the README has the table."""

    model_config = SettingsConfigDict(env_prefix="ORDERBELL_", extra="ignore")

    database_url: str = Field(default="sqlite:///./var/orderbell.db")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8000"
    #: creates shops (POST /v1/shops) and manages any shop's credits (/v1/shops/{id}/credits/…);
    #: unset (or blank) = neither, through the API (the CLI still can)
    admin_token: SecretStr | None = None
    #: signs unsubscribe links; unset = generated once into secret_key_file (one machine only:
    #: several machines must share one key through this setting)
    secret_key: SecretStr | None = None
    secret_key_file: Path = Path("./var/secret_key")
    embedded_worker: bool = True
    #: ``console``, or ``package.module:factory`` — a callable ``factory(settings, channel)``
    #: returning a Provider (the seam for gateways outside this package, e.g. in tests)
    sms_provider: str = "console"
    email_provider: Literal["console", "smtp"] = "console"
    outbox_file: Path = Path("./var/outbox.jsonl")
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "orders@example.com"
    worker_batch: int = Field(default=100, ge=1, le=1000)
    worker_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    #: messages handed to a provider per call; a stopping worker gives back what is left
    worker_send_chunk: int = Field(default=100, ge=1, le=1000)
    #: ``database``: on PostgreSQL every worker and API process tells time by the database
    #: server (one clock for all machines); ``system``: this machine's clock
    clock_source: Literal["database", "system"] = "database"
    metrics_port: int | None = Field(default=None, ge=1, le=65535)  #: worker's /metrics port
    lease_seconds: int = Field(default=60, ge=5, le=3600)
    max_attempts: int = Field(default=8, ge=1, le=50)
    retry_base_seconds: float = Field(default=5.0, gt=0)
    retry_cap_seconds: float = Field(default=900.0, gt=0)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    #: how long a verified API key is trusted without a lookup; a revocation made through
    #: another process applies here after at most this long (0: look up on every request)
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    billing: bool = True  #: price, reserve and debit credits (off: costs are not tracked)
    #: a shop's own API key may top up, correct its credit, and set its prices, packages, plan,
    #: billing mode, billing day and charging policy; false (a platform hosting shops that buy
    #: credits from it): those take the admin token, at /v1/shops/{id}/credits/...
    shops_manage_billing: bool = True
    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("admin_token")
    @classmethod
    def _blank_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        """A blank token (an unset variable expanded into the setting) is no token: compared
        with a request without credentials, it would let anyone in."""
        return None if value is None or not value.get_secret_value().strip() else value

    @field_validator("sms_provider")
    @classmethod
    def _provider_name(cls, value: str) -> str:
        if value != "console" and ":" not in value:
            raise ValueError("use 'console' or a factory path 'package.module:function'")
        return value
