"""Planning: which messages an event causes, when they are due, and why (or why not).

Pure with respect to storage: the caller hands in the shop, rules, templates and the
customer; ingest stores the plans, the simulator only shows them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orderbell.domain import rules as rule_matching
from orderbell.domain import schedule
from orderbell.domain.addresses import parse_phone, sms_block_reason
from orderbell.domain.model import (
    Category,
    Channel,
    CustomerInfo,
    MessageStatus,
    OrderEvent,
    Rule,
    RuleVerdict,
    Shop,
    TemplateKind,
)
from orderbell.errors import InvalidInput
from orderbell.integrations.tracking import tracking_url
from orderbell.templates.catalogue import build_context
from orderbell.templates.sandbox import TemplateSource


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateInfo:
    """What planning needs to know of a rule's template."""

    id: int
    kind: TemplateKind
    channel: Channel
    active: bool
    locale: str | None
    version: int | None = None
    source: TemplateSource | None = None  #: the active version, for rendering at planning


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedMessage:
    """One message an event causes, with its initial status and the reasons."""

    rule: Rule
    channel: Channel
    status: MessageStatus
    reason: str
    due_at: datetime
    expires_at: datetime | None
    recipient: str | None
    context: dict[str, str]
    notes: tuple[str, ...] = field(default=())


def _fmt(instant: datetime, shop: Shop) -> str:
    from orderbell.domain.calendar import local

    return local(instant, shop.timezone).strftime("%Y-%m-%d %H:%M %Z")


def _recipient(channel: Channel, customer: CustomerInfo) -> str | None:
    return customer.phone if channel is Channel.SMS else customer.email


def _suppression(rule: Rule, customer: CustomerInfo, shop: Shop) -> str | None:
    """Why this customer must not get this rule's message, or None."""
    channel = rule.action.channel
    recipient = _recipient(channel, customer)
    if not recipient:
        return (
            "no_phone: the customer has no phone number"
            if channel is Channel.SMS
            else ("no_email: the customer has no e-mail address")
        )
    if (
        channel is Channel.SMS
        and customer.sms_opt_out
        and (customer.sms_opt_out == "all" or rule.action.category is Category.MARKETING)
    ):
        return f"opted_out: the number replied STOP ({customer.sms_opt_out} SMS)"
    if not customer.consent.allows(channel, rule.action.category):
        return f"opted_out: no consent for {rule.action.category.value} {channel.value}"
    if channel is Channel.SMS:
        try:
            block = sms_block_reason(parse_phone(recipient, shop.country), None)
        except InvalidInput as exc:
            return f"invalid_phone: {exc.message}"
        if block:
            return f"{block}: this number cannot receive SMS"
    return None


def plan(
    *,
    shop: Shop,
    rules: Sequence[Rule],
    event: OrderEvent,
    customer: CustomerInfo,
    templates: Mapping[int, TemplateInfo],
    now: datetime,
) -> tuple[list[RuleVerdict], list[PlannedMessage]]:
    """Match the rules and plan one message per matching rule."""
    verdicts = rule_matching.evaluate(rules, event, shop)
    by_id = {r.id: r for r in rules}
    planned: list[PlannedMessage] = []
    url = tracking_url(
        event.order.courier,
        event.order.tracking_number,
        country=shop.country,
        locale=shop.locale,
        platform_url=event.order.tracking_url,
    )
    for verdict in verdicts:
        if not verdict.matched:
            continue
        rule = by_id[verdict.rule_id]
        timing = schedule.plan(rule, event, shop)
        template = templates.get(rule.action.template_id)
        kind = template.kind if template else TemplateKind.ORDER
        context = build_context(
            kind,
            shop=shop,
            order=event.order,
            customer=customer,
            locale=customer.locale or (template.locale if template else None),
            extra={k: str(v) for k, v in event.data.items() if isinstance(v, str | int)},
            tracking_url=url,
        )
        status, reason = _initial_status(rule, customer, shop, template, timing, now)
        planned.append(
            PlannedMessage(
                rule=rule,
                channel=rule.action.channel,
                status=status,
                reason=reason,
                due_at=timing.due_at,
                expires_at=timing.expires_at,
                recipient=_recipient(rule.action.channel, customer),
                context=context,
                notes=timing.notes,
            )
        )
    return verdicts, planned


def _initial_status(
    rule: Rule,
    customer: CustomerInfo,
    shop: Shop,
    template: TemplateInfo | None,
    timing: Any,
    now: datetime,
) -> tuple[MessageStatus, str]:
    if template is None or not template.active:
        return MessageStatus.SUPPRESSED, "template_inactive: the rule's template is not active"
    suppressed = _suppression(rule, customer, shop)
    if suppressed:
        return MessageStatus.SUPPRESSED, suppressed
    expires_at = timing.expires_at
    if expires_at is not None and (timing.due_at >= expires_at or now >= expires_at):
        return MessageStatus.EXPIRED, (
            f"expired: valid until {_fmt(expires_at, shop)}, "
            f"earliest send {_fmt(max(timing.due_at, now), shop)}"
        )
    notes = "; ".join(timing.notes)
    base = f"rule '{rule.name}' matched; due {_fmt(timing.due_at, shop)}"
    if any("deferred" in n for n in timing.notes):
        return MessageStatus.DEFERRED, f"{base} ({notes})"
    return MessageStatus.SCHEDULED, f"{base}{f' ({notes})' if notes else ''}"
