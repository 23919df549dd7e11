"""Failures that reach Temporal's history carry no URL secrets.

An activity or workflow failure is stored in Temporal's history with its message, its stack trace
and its chain of causes: a ledger error's cause may be a botocore or sqlite error that spells out an
endpoint URL with user information, and a tool's error may quote a signed URL. `LedgerPlugin` wraps
the client's failure converter (whichever it is) so that every message and stack trace of a failure
and of its causes goes through `agentledger._redaction.redact` before it leaves the process.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self

from temporalio.api.failure.v1 import Failure
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverter,
    FailureConverter,
    PayloadConverter,
    SerializationContext,
    WithSerializationContext,
)

from agentledger._redaction import redact

__all__ = ['RedactingFailureConverter', 'redact_failure', 'with_redacted_failures']


def redact_failure(failure: Failure, payload_converter: PayloadConverter) -> None:
    """Redact the message and stack trace of `failure` and of every cause under it, in place.

    A converter that encodes common attributes (`DefaultFailureConverterWithEncodedAttributes`) moves
    them into `encoded_attributes`; they are decoded, redacted and encoded again there.
    """
    while True:
        failure.message = redact(failure.message)
        failure.stack_trace = redact(failure.stack_trace)
        if failure.HasField('encoded_attributes'):
            attributes = payload_converter.from_payload(failure.encoded_attributes, dict)
            if isinstance(attributes, dict):
                redacted = {k: redact(v) if isinstance(v, str) else v for k, v in attributes.items()}
                failure.encoded_attributes.CopyFrom(payload_converter.to_payload(redacted))
        if not failure.HasField('cause'):
            return
        failure = failure.cause


class RedactingFailureConverter(FailureConverter, WithSerializationContext):
    """Converts failures with another failure converter (`inner_class`), then redacts what it wrote."""

    inner_class: ClassVar[type[FailureConverter]] = DefaultFailureConverter
    """The failure converter the client was configured with."""

    def __init__(self, inner: FailureConverter | None = None) -> None:
        self.inner = inner if inner is not None else self.inner_class()
        """The converter that does the conversion; this one only redacts what it wrote."""

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure) -> None:
        """Convert with the inner converter, then redact every message and stack trace in the chain."""
        self.inner.to_failure(exception, payload_converter, failure)
        redact_failure(failure, payload_converter)

    def from_failure(self, failure: Failure, payload_converter: PayloadConverter) -> BaseException:
        """Convert with the inner converter: what comes back from history was redacted on the way in."""
        return self.inner.from_failure(failure, payload_converter)

    def with_context(self, context: SerializationContext) -> Self:
        """Pass the serialization context to the inner converter when it takes one."""
        if isinstance(self.inner, WithSerializationContext):
            inner: Any = self.inner.with_context(context)
            if inner is not self.inner:
                return type(self)(inner)
        return self


def with_redacted_failures(converter: DataConverter) -> DataConverter:
    """`converter` with its failure converter wrapped by a `RedactingFailureConverter` (once)."""
    if issubclass(converter.failure_converter_class, RedactingFailureConverter):
        return converter
    wrapping = type(
        'RedactingFailureConverter', (RedactingFailureConverter,), {'inner_class': converter.failure_converter_class}
    )
    return dataclasses.replace(converter, failure_converter_class=wrapping)
