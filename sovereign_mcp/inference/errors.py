"""Errors raised by the inference chain; all derive from :class:`InferenceError`.

* :class:`SovereigntyError`: a provider outside the operator's own machines or network is configured while
  ``sovereign_mode`` is on (sovereign-forge epic: "no cloud API calls in critical path").
* :class:`InferenceRequestError`: a provider answered with a 4xx other than 429. The request itself is
  wrong (bad roles, unknown model, bad key), so another provider would not help: no fallback.
* :class:`InferenceUnavailable`: every provider failed or has its circuit open; ``errors`` maps each
  provider name to its last error.
* :class:`InferenceDeadlineExceeded`: the overall deadline of one call ran out first (a kind of
  :class:`InferenceUnavailable`, so one ``except`` covers both).
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base class of everything this package raises on purpose."""


class SovereigntyError(InferenceError, ValueError):
    """A non-local provider is configured while ``sovereign_mode`` is on; the message names it.

    A ``ValueError``, so pydantic reports it as a validation error of the settings.
    """


class InferenceRequestError(InferenceError):
    """A provider rejected the request (HTTP 4xx other than 429).

    Attributes:
        provider: the provider's configured name.
        status_code: the HTTP status, e.g. 400.
        message: the server's own error message (``error.message`` or ``message`` of the JSON body,
            else the body text), e.g. SGLang's ``Conversation roles must alternate user/assistant/...``.
    """

    def __init__(self, provider: str, status_code: int, message: str) -> None:
        self.provider = provider
        self.status_code = status_code
        self.message = message
        super().__init__(f"{provider} rejected the request (HTTP {status_code}): {message}")


class InferenceUnavailable(InferenceError):
    """No provider could answer. ``errors`` maps provider name -> its last error, in chain order."""

    def __init__(self, errors: dict[str, str], summary: str = "no inference provider available") -> None:
        self.errors = dict(errors)
        detail = "; ".join(f"{name}: {error}" for name, error in self.errors.items())
        super().__init__(f"{summary}: {detail}" if detail else summary)


class InferenceDeadlineExceeded(InferenceUnavailable):
    """The call's overall deadline (``deadline`` seconds) ran out; ``errors`` holds what was seen so far."""

    def __init__(self, deadline: float, errors: dict[str, str]) -> None:
        self.deadline = deadline
        super().__init__(errors, f"inference deadline of {deadline:g} s exceeded")
