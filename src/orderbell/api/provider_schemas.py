"""Wire models for a shop's provider accounts (gateways it sends through, in failover order)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field

from orderbell.api.schemas import Input, JsonData
from orderbell.domain.model import Channel

ProviderName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
Kind = Annotated[str, Field(min_length=1, max_length=32)]
Rate = Annotated[Decimal, Field(gt=0, le=10_000, max_digits=10, decimal_places=3)]
Concurrency = Annotated[int, Field(ge=1, le=1000)]
Position = Annotated[int, Field(ge=0, le=1000)]


class ProviderIn(Input):
    """A new provider account. `settings` holds the kind's options and its credentials;
    credentials (the kind's secret fields) are stored apart and never shown again."""

    name: ProviderName
    kind: Kind
    channel: Channel | None = None  #: defaults to the kind's channel
    position: Position | None = None  #: failover order, lowest first; default: last
    active: bool = True
    settings: JsonData = Field(default_factory=dict)
    rate_per_second: Rate | None = None
    concurrency: Concurrency | None = None


class ProviderPatch(Input):
    """A change to a provider account. `settings` keys are merged into the stored ones; a key
    set to null is removed. Secret fields left out keep their stored values."""

    name: ProviderName | None = None
    position: Position | None = None
    active: bool | None = None
    settings: JsonData | None = None
    rate_per_second: Rate | None = None
    concurrency: Concurrency | None = None
