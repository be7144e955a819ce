"""Wire models: what the HTTP API, the CLI and the Python call accept and return.

Every input model forbids unknown fields, and every string refuses NUL bytes and lone
surrogates, so bad input is stopped at the edge with the field named.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orderbell.domain import attachments as files
from orderbell.domain.model import (
    SMS_MAX_SEGMENTS_DEFAULT,
    SMS_MAX_SEGMENTS_LIMIT,
    Category,
    Channel,
    HolidayMode,
    TemplateKind,
    is_known_event_type,
    text_problem,
)
from orderbell.errors import InvalidInput


def _clean(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _clean_tree(value: Any) -> Any:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        for key, item in value.items():
            _clean(str(key))
            _clean_tree(item)
    elif isinstance(value, list):
        for item in value:
            _clean_tree(item)
    return value


T = TypeVar("T")
Text = Annotated[str, AfterValidator(_clean)]
Short = Annotated[str, Field(max_length=200), AfterValidator(_clean)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_clean)]
Key = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_clean)]
Status = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_clean)]
Country = Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")]
JsonData = Annotated[dict[str, Any], AfterValidator(_clean_tree)]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOUR_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s*$")


class Input(BaseModel):
    """Base of every input model: strict about unknown fields."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


def instant_problem(value: datetime) -> str | None:
    """Why a given date and time cannot be stored as an instant (None when it can): it needs
    an offset, and must fall within years 1-9999 once in UTC (0001-01-01T00:00+14:00 does
    not, and would fail at the database instead of here)."""
    if value.tzinfo is None or value.utcoffset() is None:
        return "must include a timezone offset, e.g. 2026-11-20T14:59:59+03:00"
    try:
        value.astimezone(UTC)
    except OverflowError:
        return "is out of range: in UTC it must fall between years 1 and 9999"
    return None


def _aware(value: datetime | None) -> datetime | None:
    problem = None if value is None else instant_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class CustomerIn(Input):
    """A customer as an event or the API gives it."""

    id: Key | None = Field(default=None, description="the shop's own customer id")
    name: Short | None = None
    phone: Annotated[str, Field(max_length=64), AfterValidator(_clean)] | None = None
    email: Annotated[str, Field(max_length=320), AfterValidator(_clean)] | None = None
    locale: (
        Annotated[str, Field(max_length=16, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z]{2,4})?$")] | None
    ) = None


class CustomerConsentIn(Input):
    """Consent flags; absent ones stay as they are."""

    sms_transactional: bool | None = None
    sms_marketing: bool | None = None
    email_transactional: bool | None = None
    email_marketing: bool | None = None


class CustomerWrite(CustomerIn):
    """A customer created or updated through the API."""

    id: Key = Field(description="the shop's own customer id")
    consent: CustomerConsentIn = Field(default_factory=CustomerConsentIn)


class OrderIn(Input):
    """An order snapshot carried by an event."""

    code: Key
    status: Status | None = None
    total: Decimal | None = Field(default=None, ge=0, le=Decimal("1e12"), decimal_places=6)
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    payment_method: Short | None = None
    courier: Short | None = None
    tracking_number: Annotated[str, Field(max_length=100), AfterValidator(_clean)] | None = None
    tracking_url: Annotated[str, Field(max_length=1000, pattern=r"^https?://")] | None = None
    placed_at: AwareDatetime | None = None
    estimated_delivery: AwareDatetime | None = None
    preparation_minutes: int | None = Field(default=None, ge=0, le=100_000)
    shipping_country: Country | None = None


class AttachmentIn(Input):
    """A file for an e-mail: an event's invoice, or a template's static document."""

    filename: Annotated[str, Field(min_length=1, max_length=files.MAX_FILENAME)]
    content_type: Annotated[str, Field(min_length=1, max_length=100)]
    content_base64: Annotated[
        str, Field(min_length=1, max_length=(files.MAX_BYTES + 2) // 3 * 4 + 20_000)
    ]

    @field_validator("filename")
    @classmethod
    def _filename(cls, value: str) -> str:
        return _domain_check(files.check_filename, value)

    @field_validator("content_type")
    @classmethod
    def _content_type(cls, value: str) -> str:
        return _domain_check(files.check_content_type, value)

    @field_validator("content_base64")
    @classmethod
    def _content(cls, value: str, info: ValidationInfo) -> str:
        data = _domain_check(files.decode_base64, value)
        kind = info.data.get("content_type")
        if kind is not None:  # (None: the content type was refused already)
            try:
                files.check_data(data, kind, "content_base64")
            except InvalidInput as exc:
                raise ValueError(exc.message) from None
        return value

    def data(self) -> bytes:
        """The decoded file."""
        return files.decode_base64(self.content_base64, "content_base64")


def _domain_check(check: Callable[[str, str], T], value: str) -> T:
    """Run a domain check inside a pydantic validator (its InvalidInput → ValueError)."""
    try:
        return check(value, "")
    except InvalidInput as exc:
        raise ValueError(exc.message) from None


class EventIn(Input):
    """An order event pushed by a shop platform."""

    id: Key | None = Field(default=None, description="the platform's event id (idempotency)")
    type: Annotated[str, Field(min_length=1, max_length=100)]
    occurred_at: AwareDatetime
    order: OrderIn
    customer: CustomerIn = Field(default_factory=CustomerIn)
    status: Status | None = Field(default=None, description="target status of a status change")
    from_status: Status | None = None
    data: JsonData = Field(default_factory=dict)
    attachments: list[AttachmentIn] = Field(
        default_factory=list,
        max_length=files.MAX_PER_EVENT,
        description="files for this order's e-mails, e.g. the invoice PDF",
    )

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if not is_known_event_type(value):
            raise ValueError(
                "unknown event type; use order.created, order.status_changed, "
                "order.shipped, order.delivered or custom.<name>"
            )
        return value

    @model_validator(mode="after")
    def _status_needed(self) -> EventIn:
        if self.type == "order.status_changed" and not (self.status or self.order.status):
            raise ValueError("order.status_changed needs 'status' (or order.status)")
        return self


def parse_clock(text: str) -> time:
    """Parse HH:MM (24:00 allowed as end of day → 00:00)."""
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", text)
    if not match:
        raise ValueError("must be HH:MM")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour == 24 and minute == 0:
        return time(0, 0)
    if hour > 23:
        raise ValueError(f"hour {hour} is not between 00 and 23")
    if minute > 59:
        raise ValueError(f"minute {minute} is not between 00 and 59")
    return time(hour, minute)


def _hour_range(value: str) -> str:
    match = HOUR_RANGE.match(value)
    if not match:
        raise ValueError("must be a range HH:MM-HH:MM, e.g. 15:00-00:00")
    start, end = value.replace("–", "-").split("-", 1)
    parse_clock(start)
    parse_clock(end)
    return f"{start.strip()}-{end.strip()}"


HourRangeText = Annotated[str, AfterValidator(_hour_range)]
LocalTime = Annotated[str, AfterValidator(lambda v: parse_clock(v).strftime("%H:%M"))]


class TriggerIn(Input):
    """Which events a rule reacts to."""

    event_type: str
    to_status: Status | None = None
    from_status: Status | None = None

    @field_validator("event_type")
    @classmethod
    def _known(cls, value: str) -> str:
        if not is_known_event_type(value):
            raise ValueError("unknown event type")
        return value


class ConditionsIn(Input):
    """When and for which orders a rule applies."""

    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    hours: list[HourRangeText] = Field(default_factory=list, max_length=24)
    holidays: HolidayMode = HolidayMode.ANY
    payment_methods: list[Short] | None = None
    total_min: Decimal | None = Field(default=None, ge=0)
    total_max: Decimal | None = Field(default=None, ge=0)
    countries: list[Country] | None = None

    @model_validator(mode="after")
    def _range(self) -> ConditionsIn:
        low, high = self.total_min, self.total_max
        if low is not None and high is not None and low > high:
            raise ValueError("total_min is greater than total_max")
        return self


class ActionIn(Input):
    """What a matching rule sends, and when."""

    channel: Channel
    template_id: int = Field(ge=1)
    delay_minutes: int = Field(default=0, ge=0, le=525_600)
    days_after: int | None = Field(default=None, ge=0, le=365)
    at_local_time: LocalTime | None = None
    validity_minutes: int | None = Field(default=None, ge=1, le=525_600)
    send_window: HourRangeText | None = None
    category: Category = Category.TRANSACTIONAL

    @model_validator(mode="after")
    def _consistent(self) -> ActionIn:
        if self.days_after is not None and self.delay_minutes:
            raise ValueError("use either delay_minutes or days_after, not both")
        if self.at_local_time is not None and self.days_after is None:
            raise ValueError("at_local_time needs days_after")
        wait = self.delay_minutes if self.days_after is None else self.days_after * 1440
        if self.validity_minutes is not None and self.validity_minutes <= wait:
            raise ValueError(
                f"validity ({self.validity_minutes} min) is not longer than the delay ({wait} min)"
            )
        return self


class RuleIn(Input):
    """A rule as the API takes it."""

    name: Name
    active: bool = True
    trigger: TriggerIn
    conditions: ConditionsIn = Field(default_factory=ConditionsIn)
    action: ActionIn
    group: Short | None = None
    priority: int = Field(default=100, ge=0, le=1_000_000)


class RulePatch(Input):
    """A partial rule update (e.g. toggling active)."""

    name: Name | None = None
    active: bool | None = None
    trigger: TriggerIn | None = None
    conditions: ConditionsIn | None = None
    action: ActionIn | None = None
    group: Short | None = None
    priority: int | None = Field(default=None, ge=0, le=1_000_000)


class TemplateIn(Input):
    """A template as the API takes it; saving makes a new version."""

    name: Name
    kind: TemplateKind = TemplateKind.ORDER
    channel: Channel
    locale: Annotated[str, Field(max_length=16)] | None = None
    subject: Annotated[str, Field(max_length=1000), AfterValidator(_clean)] | None = None
    body: Annotated[str, Field(min_length=1, max_length=10_000), AfterValidator(_clean)]
    html: Annotated[str, Field(max_length=100_000), AfterValidator(_clean)] | None = None
    active: bool = True


class PreviewIn(Input):
    """Preview a template with a stored order or sample data."""

    order_code: Key | None = None
    event_type: str | None = None
    variables: dict[str, Short] = Field(default_factory=dict)


class ShopIn(Input):
    """A shop as the API and CLI create it."""

    name: Name
    slug: Annotated[str, Field(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    country: Country = "US"
    locale: Annotated[str, Field(max_length=16, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z]{2,4})?$")] = (
        "en"
    )
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    sms_sender: Annotated[str, Field(max_length=16)] | None = None
    email_from: Annotated[str, Field(max_length=320)] | None = None
    email_from_name: Annotated[str, Field(max_length=100)] | None = Field(
        default=None, description="the From display name of the shop's e-mails"
    )
    email_reply_to: Annotated[str, Field(max_length=320)] | None = Field(
        default=None, description="the Reply-To of the shop's e-mails"
    )
    quiet_hours: HourRangeText | None = Field(
        default=None, description="the window SMS may be sent in, e.g. 08:00-21:00"
    )
    transactional_obeys_quiet_hours: bool = False
    closed_dates: list[date] = Field(default_factory=list, max_length=1000)
    billing: Literal["prepaid", "unmetered"] = Field(
        default="prepaid",
        description="prepaid: messages are paid from credit and held without it; "
        "unmetered: costs are shown but not charged",
    )


class ShopPatch(Input):
    """A partial shop update."""

    name: Name | None = None
    timezone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    country: Country | None = None
    locale: (
        Annotated[str, Field(max_length=16, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z]{2,4})?$")] | None
    ) = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    sms_sender: Annotated[str, Field(max_length=16)] | None = None
    email_from: Annotated[str, Field(max_length=320)] | None = None
    email_from_name: Annotated[str, Field(max_length=100)] | None = None
    email_reply_to: Annotated[str, Field(max_length=320)] | None = None
    quiet_hours: HourRangeText | None = None
    transactional_obeys_quiet_hours: bool | None = None
    closed_dates: list[date] | None = Field(default=None, max_length=1000)
    stop_scope: Literal["marketing", "all"] | None = Field(
        default=None, description="what an SMS reply STOP opts out of: marketing SMS, or all SMS"
    )
    sms_transliterate: StrictBool | None = Field(
        default=None,
        description="send Latin letters GSM-7 lacks (ą, č, ş …) as their plain spelling, so "
        "SMS stay GSM-7: fewer segments, lower cost",
    )
    sms_max_segments: Annotated[int, Field(strict=True, ge=1, le=SMS_MAX_SEGMENTS_LIMIT)] | None = (
        Field(
            default=None,
            description=f"an SMS longer than this many segments is held, not sent (default "
            f"{SMS_MAX_SEGMENTS_DEFAULT}); null: no cap. SMS templates whose worst case passes it "
            "are refused",
        )
    )


class SimulateIn(Input):
    """Ask what would be sent for an event, without sending or storing anything."""

    event: EventIn


class ApiKeyIn(Input):
    """Create an API key."""

    name: Name = "default"


DecimalText = Annotated[str, Field(max_length=40, pattern=r"^-?[0-9]+(\.[0-9]+)?$")]


class TopUpIn(Input):
    """Prepaid credit bought by the shop."""

    amount: DecimalText = Field(description='credits, e.g. "25.00" (at most 4 decimal places)')
    reference: Annotated[str, Field(max_length=200), AfterValidator(_clean)] | None = Field(
        default=None, description="e.g. the payment id"
    )


class AdjustmentIn(Input):
    """A manual correction of prepaid credit, and why."""

    amount: DecimalText = Field(
        description='credits given (e.g. "2.50") or taken back ("-2.50"); at most 4 decimal places'
    )
    note: Annotated[
        str, StringConstraints(strip_whitespace=True, max_length=300), AfterValidator(_clean)
    ] = Field(description="why the credit is corrected (shown in the ledger)")


class PriceIn(Input):
    """One line of a price list."""

    channel: Channel
    country: Annotated[str, Field(min_length=1, max_length=2)] = Field(
        description='ISO 3166 alpha-2 destination, or "*" for any'
    )
    unit_price: DecimalText = Field(description="credits per SMS segment / per e-mail")


class PricesIn(Input):
    """The shop's own price lines (replacing the previous ones)."""

    prices: list[PriceIn] = Field(max_length=500)


class CreditSettingsIn(Input):
    """How the shop's credit account behaves."""

    mode: Literal["prepaid", "unmetered"] | None = None
    billing_day: int | None = Field(default=None, ge=1, le=28)
    monthly_cap: DecimalText | None = None
    clear_monthly_cap: bool = False
    low_balance_thresholds: list[DecimalText] | None = Field(default=None, max_length=10)
    charge_failed_after_submission: bool | None = None
    notify_email: Annotated[str, Field(max_length=320)] | None = None
    #: low-balance notices go to the shop's own address again (`notify_email` is ignored)
    clear_notify_email: bool = False
    plan: Annotated[str, Field(max_length=100)] | None = None
    clear_plan: bool = False  #: back to the default price list (`plan` is then ignored)


class PackageIn(Input):
    """A monthly package: an allowance of messages, renewed on the billing day."""

    name: Name
    channel: Channel
    allowance: int = Field(ge=1, le=10_000_000)
    carry_over: Literal["none", "unlimited", "cap", "expire"] = "unlimited"
    carry_cap: int | None = Field(default=None, ge=0, le=10_000_000)
    carry_months: int | None = Field(default=None, ge=1, le=120)
    price: DecimalText | None = None
