"""Which module implements which provider kind: a static map, imported lazily.

A kind's module follows the conventions of :class:`orderbell.channels.base.Gateway`:
``KIND``, ``CHANNEL`` (or ``CHANNELS`` for a module that serves both), ``SECRET_FIELDS``,
``validate(settings)`` and ``build(settings, *, name, callback_url)``, and optionally
``TITLE`` and ``FIELDS`` (:mod:`orderbell.channels.fields`: how a form asks for the settings).
Nothing is discovered by file name: a kind exists when it is listed here and its module loads.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from orderbell.channels.base import Provider
from orderbell.channels.fields import Setting
from orderbell.domain.model import Channel
from orderbell.errors import InvalidInput

MODULES: Mapping[str, str] = {
    "http": "orderbell.channels.http_gateway",
    "kannel": "orderbell.channels.kannel",
    "smsapi": "orderbell.channels.smsapi",
    "serwersms": "orderbell.channels.serwersms",
    "twilio": "orderbell.channels.twilio",
    "smtp": "orderbell.channels.smtp",
    "console": "orderbell.channels.console",
}


@dataclass(frozen=True, slots=True)
class Kind:
    """One provider kind as its module declares it."""

    name: str
    channels: frozenset[Channel]
    secret_fields: frozenset[str]
    validate: Callable[[Mapping[str, Any]], dict[str, Any]]
    build: Callable[..., Provider]
    title: str = ""  #: what people call the provider ("SMSAPI.pl"); the kind's name if unset
    fields: tuple[Setting, ...] = ()  #: how a form asks for the settings; () = not declared
    #: what the provider expects in answer to its callbacks (``CALLBACK_RESPONSE`` and
    #: ``CALLBACK_MEDIA_TYPE``); None: our JSON summary
    callback_response: bytes | None = None
    callback_media_type: str = "text/plain"


def load(kind: str) -> Kind:
    """The module of a kind; an unknown or incomplete one is bad input naming `kind`."""
    path = MODULES.get(kind)
    if path is None:
        raise InvalidInput(
            f"unknown provider kind {kind!r}; one of {sorted(MODULES)}", field="kind"
        )
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        raise InvalidInput(f"provider kind {kind!r} is not available", field="kind") from exc
    validate = getattr(module, "validate", None)
    build = getattr(module, "build", None)
    if not callable(validate) or not callable(build):
        raise InvalidInput(
            f"provider kind {kind!r} cannot be configured per shop yet", field="kind"
        )
    declared = getattr(module, "CHANNELS", None) or {getattr(module, "CHANNEL", None)}
    channels = frozenset(Channel(c) for c in declared if c is not None)
    return Kind(
        name=kind,
        channels=channels,
        secret_fields=frozenset(getattr(module, "SECRET_FIELDS", frozenset())),
        validate=cast(Callable[[Mapping[str, Any]], dict[str, Any]], validate),
        build=cast(Callable[..., Provider], build),
        title=str(getattr(module, "TITLE", "") or kind),
        fields=tuple(getattr(module, "FIELDS", ())),
        callback_response=getattr(module, "CALLBACK_RESPONSE", None),
        callback_media_type=getattr(module, "CALLBACK_MEDIA_TYPE", "text/plain"),
    )


def configurable() -> list[Kind]:
    """The kinds a shop can have an account of: listed, loadable and configurable per shop."""
    kinds = []
    for name in MODULES:
        try:
            kinds.append(load(name))
        except InvalidInput:
            continue  # e.g. console (no per-shop settings) or a module not installed
    return kinds
