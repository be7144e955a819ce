"""How a provider kind's settings are asked for: declared as data by the kind's module.

A module may declare ``TITLE`` (what people call the provider) and ``FIELDS``, a tuple of
:class:`Setting`, so the admin can build its form without knowing the kind. Two things are
deliberately *not* here: which settings are credentials (the module's ``SECRET_FIELDS``, said
once) and what a value may be (the module's ``validate()``, the only judge).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SettingType = Literal["text", "number", "choice", "json"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """One setting of a provider kind, as a form asks for it."""

    name: str  #: the key in the account's settings
    label: str
    type: SettingType = "text"  #: "json": a JSON value typed into a text box
    required: bool = False  #: shown as required; ``validate()`` still decides
    hint: str = ""
    choices: tuple[str, ...] = ()  #: for "choice": the allowed values, the default first
