"""Rule matching: which of a shop's rules apply to an event, and why the others do not.

Rules are tried by priority (then id). Rules sharing a group are exclusive: once one of
them matches, the others in that group are reported as not matching, naming the winner.
"""

from __future__ import annotations

from collections.abc import Sequence

from orderbell.domain.calendar import holiday_name, local
from orderbell.domain.model import HolidayMode, OrderEvent, Rule, RuleVerdict, Shop

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _same(a: str | None, b: str | None) -> bool:
    return (a or "").strip().lower() == (b or "").strip().lower()


def _event_status(event: OrderEvent) -> str | None:
    return event.status or event.order.status


def mismatch(rule: Rule, event: OrderEvent, shop: Shop) -> str | None:
    """Why the rule does not apply to the event (None when it does). Ignores `active`."""
    trigger = rule.trigger
    if trigger.event_type != event.type:
        return f"trigger: waits for {trigger.event_type}, event is {event.type}"
    if trigger.to_status is not None and not _same(trigger.to_status, _event_status(event)):
        return f"status: waits for '{trigger.to_status}', order is '{_event_status(event)}'"
    if trigger.from_status is not None and not _same(trigger.from_status, event.from_status):
        return (
            f"from status: waits for a change from '{trigger.from_status}', "
            f"was '{event.from_status}'"
        )
    moment = local(event.occurred_at, shop.timezone)
    when = f"{WEEKDAY_NAMES[moment.weekday()]} {moment:%Y-%m-%d %H:%M:%S} ({shop.timezone})"
    cond = rule.time
    if cond.weekdays is not None and moment.weekday() not in cond.weekdays:
        days = ", ".join(WEEKDAY_NAMES[d] for d in sorted(cond.weekdays))
        return f"weekday: {when} is not one of {days}"
    if cond.hours and not any(r.contains(moment.time()) for r in cond.hours):
        ranges = ", ".join(f"{r.start:%H:%M}-{r.end:%H:%M}" for r in cond.hours)
        return f"hours: {when} is outside {ranges}"
    if cond.holidays is not HolidayMode.ANY:
        name = holiday_name(moment.date(), shop)
        if cond.holidays is HolidayMode.ONLY and name is None:
            return f"holidays: {moment:%Y-%m-%d} is not a holiday in {shop.country}"
        if cond.holidays is HolidayMode.EXCLUDE and name is not None:
            return f"holidays: {moment:%Y-%m-%d} is a holiday ({name})"
    order = event.order
    oc = rule.order
    if oc.payment_methods is not None and (order.payment_method or "").lower() not in (
        oc.payment_methods
    ):
        return (
            f"payment method: '{order.payment_method}' is not one of {sorted(oc.payment_methods)}"
        )
    if oc.total_min is not None and (order.total is None or order.total < oc.total_min):
        return f"total: {order.total} is below {oc.total_min}"
    if oc.total_max is not None and (order.total is None or order.total > oc.total_max):
        return f"total: {order.total} is above {oc.total_max}"
    if oc.countries is not None and (order.shipping_country or "").upper() not in oc.countries:
        return (
            f"country: destination '{order.shipping_country}' is not one of {sorted(oc.countries)}"
        )
    return None


def matching(rule: Rule, event: OrderEvent, shop: Shop) -> bool:
    """True when an active rule applies to the event (ignoring groups)."""
    return rule.active and mismatch(rule, event, shop) is None


def _describe_match(rule: Rule, event: OrderEvent, shop: Shop) -> str:
    moment = local(event.occurred_at, shop.timezone)
    parts = [f"{event.type} at {WEEKDAY_NAMES[moment.weekday()]} {moment:%Y-%m-%d %H:%M}"]
    if rule.time.hours:
        parts.append("in " + ", ".join(f"{r.start:%H:%M}-{r.end:%H:%M}" for r in rule.time.hours))
    if rule.time.holidays is HolidayMode.ONLY:
        parts.append(f"on a holiday ({holiday_name(moment.date(), shop)})")
    elif rule.time.holidays is HolidayMode.EXCLUDE:
        parts.append("not a holiday")
    return "matched: " + ", ".join(parts)


def evaluate(rules: Sequence[Rule], event: OrderEvent, shop: Shop) -> list[RuleVerdict]:
    """A verdict for every rule, in the order they are tried (priority, then id)."""
    winners: dict[str, Rule] = {}
    verdicts: list[RuleVerdict] = []
    for rule in sorted(rules, key=lambda r: (r.priority, r.id)):
        if not rule.active:
            verdicts.append(_verdict(rule, False, "inactive: the rule is passive (switched off)"))
            continue
        reason = mismatch(rule, event, shop)
        if reason is not None:
            verdicts.append(_verdict(rule, False, reason))
            continue
        if rule.group is not None and rule.group in winners:
            winner = winners[rule.group]
            verdicts.append(
                _verdict(
                    rule,
                    False,
                    f"group '{rule.group}': rule '{winner.name}' matched first "
                    f"(priority {winner.priority})",
                )
            )
            continue
        if rule.group is not None:
            winners[rule.group] = rule
        verdicts.append(_verdict(rule, True, _describe_match(rule, event, shop)))
    return verdicts


def _verdict(rule: Rule, matched: bool, reason: str) -> RuleVerdict:
    return RuleVerdict(rule_id=rule.id, rule_name=rule.name, matched=matched, reason=reason)
