"""An SMS template's worst case: the most segments it can cost, checked against the shop's cap.

The template is rendered twice with stand-in values — every variable at its catalogue maximum
in a character its charset may force (branches on a variable take their "set" side), and every
variable empty (the "else" sides) — and the costlier render, as the shop would send it
(transliterated or not), is the worst case. The shop's own name is used as it is. Filters
count as they render (``truncate`` shortens, ``upper`` does not), so a shop can bound a free
text variable in the template itself.

It is a budget at one unit per character, not a bound: a value of emoji (two UTF-16 units
each), of GSM extension characters (``€ ~ { }``: two septets) or of ``…`` transliterated to
``...`` can cost more than its stand-in. The worker's re-check at send holds such a message
(``segment_cap``) rather than sending it over the cap.
"""

from __future__ import annotations

from orderbell.domain.model import Channel, Shop
from orderbell.domain.sms_text import SmsText, costliest, filler
from orderbell.errors import TemplateError
from orderbell.templates.catalogue import variables
from orderbell.templates.sandbox import MAX_OUTPUT, TemplateSource, compile_source

_TOO_LONG = "rendered text is too long"


def worst_case(source: TemplateSource, shop: Shop) -> SmsText | None:
    """The costlier of the two stand-in renders, as this shop would send it (None if it
    cannot render).

    Raises TemplateError when the longest values make the text pass the render limit."""
    known = variables(source.kind)
    longest = {name: filler(v.max_length, v.charset) for name, v in known.items()}
    empty = dict.fromkeys(known, "")
    compiled = compile_source(source)
    texts: list[str] = []
    for context in (longest, empty):
        if "shop_name" in context:
            context["shop_name"] = shop.name
        try:
            texts.append(compiled.render(context).text)
        except TemplateError as exc:
            if exc.message.startswith(_TOO_LONG):
                raise
            # e.g. arithmetic on a stand-in: the real values decide, and the send-time
            # check holds whatever passes the cap
    return costliest(shop, texts)


def check_cap(source: TemplateSource, shop: Shop) -> None:
    """Refuse an SMS template whose worst case passes the shop's segment cap (on `body`)."""
    cap = shop.sms_max_segments
    if source.channel is not Channel.SMS or cap is None:
        return
    try:
        worst = worst_case(source, shop)
    except TemplateError:
        raise TemplateError(
            f"with every variable at its longest the text passes {MAX_OUTPUT['body']} "
            f"characters, far over the shop's cap of {cap} SMS segments (sms_max_segments)",
            field="body",
        ) from None
    if worst is not None and worst.segments > cap:
        raise TemplateError(
            f"the worst case is {worst.segments} SMS segments ({worst.info.encoding}, "
            f"{worst.info.units} characters with every variable at its longest), over the "
            f"shop's cap of {cap} (sms_max_segments)",
            field="body",
        )
