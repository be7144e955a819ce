"""Project exceptions.

Hierarchy::

    OrderbellError                      root; the docstring is the default message
    ├── InvalidInput                    bad input from a user (maps to HTTP 400/422)
    │   ├── TemplateError               template does not compile / uses unknown variables
    │   └── RuleError                   rule definition is inconsistent
    ├── NotFound                        unknown id, or an id of another shop (HTTP 404)
    ├── Conflict                        idempotency key reused with another body, duplicates (409)
    ├── Unauthorized                    missing or bad credentials (401)
    ├── Forbidden                       the credentials may not do this here (403)
    └── ProviderError                   a provider could not take a message
        ├── RetryableProviderError      transient: try again later (timeouts, 429, 5xx)
        └── PermanentProviderError      will never succeed (invalid number, rejected)
"""

from __future__ import annotations


class OrderbellError(Exception):
    """Something went wrong in orderbell."""

    code: str = "error"
    status_code: int = 500

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip().splitlines()[0]
        self.field = field
        super().__init__(self.message)

    def as_dict(self) -> dict[str, object]:
        """The JSON error body the API answers with."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class InvalidInput(OrderbellError):
    """The input is not valid."""

    code = "invalid_input"
    status_code = 422


class TemplateError(InvalidInput):
    """The template is not valid."""

    code = "invalid_template"

    def __init__(
        self,
        message: str | None = None,
        *,
        field: str | None = "body",
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message, field=field)
        self.line = line
        self.column = column

    def as_dict(self) -> dict[str, object]:
        """The error body, with the line and column of the fault when known."""
        body = super().as_dict()
        err = body["error"]
        assert isinstance(err, dict)
        err["line"] = self.line
        err["column"] = self.column
        return body


class RuleError(InvalidInput):
    """The rule is not valid."""

    code = "invalid_rule"


class NotFound(OrderbellError):
    """Not found."""

    code = "not_found"
    status_code = 404


class Conflict(OrderbellError):
    """The request conflicts with what is stored."""

    code = "conflict"
    status_code = 409


class Unauthorized(OrderbellError):
    """Missing or invalid credentials."""

    code = "unauthorized"
    status_code = 401


class Forbidden(OrderbellError):
    """These credentials may not do this."""

    code = "forbidden"
    status_code = 403


class ProviderError(OrderbellError):
    """The provider could not take the message."""

    code = "provider_error"
    status_code = 502


class RetryableProviderError(ProviderError):
    """The provider failed transiently; the message may be retried."""

    code = "provider_retryable"


class PermanentProviderError(ProviderError):
    """The provider rejected the message for good."""

    code = "provider_permanent"
